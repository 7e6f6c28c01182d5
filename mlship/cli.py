"""The `mlship` command: routes each command group to the module that owns it.

Each group's module exposes `main(argv) -> int` and is imported only when used, so
`mlship serve` does not pay for importing Pulumi and `mlship plan` does not pay for
scikit-learn.
"""

from __future__ import annotations

import importlib
import logging
import sys

from mlship import __version__
from mlship.errors import UserError

COMMANDS: dict[str, tuple[str, str]] = {
    "model": ("model.cli", "train, evaluate, package, publish and list model versions"),
    "serve": ("model.server.cli", "serve a packaged model over HTTP (SageMaker container contract)"),
    "monitor": ("monitoring.cli", "baselines, data and model quality checks, drift, alerts, reports"),
    "plan": ("infra.plan", "show what a stack would create, offline (no cloud, no Pulumi CLI)"),
    "review": ("infra.review.cli", "turn `pulumi preview --json` into a risk-first Markdown review"),
    "demo": ("mlship.demo", "run the whole lifecycle locally against an embedded AWS emulator"),
}


def _usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = [f"usage: mlship <command> [options]   (mlship {__version__})", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {summary}" for name, (_, summary) in COMMANDS.items()]
    lines += ["", "`mlship <command> --help` describes a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if argv[0] == "--version":
        print(f"mlship {__version__}")
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"mlship: error: unknown command {command!r}; choose one of {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    module = importlib.import_module(COMMANDS[command][0])
    try:
        return int(module.main(rest) or 0)
    except UserError as error:
        print(f"mlship {command}: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print(f"mlship {command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`mlship plan --json | head`): not an error of ours.
        sys.stdout = None  # type: ignore[assignment]  # keeps the interpreter from flushing into the closed pipe
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
