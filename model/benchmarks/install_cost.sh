#!/usr/bin/env bash
# What the SageMaker Python SDK costs to install and import, each candidate in its own fresh venv.
#   usage: model/benchmarks/install_cost.sh [WORKDIR]   (default: a new temp dir, removed at the end)
# Prints one Markdown table row per candidate: install time, venv size, package's own size,
# number of distributions, and the median of 5 cold-process import times.
set -euo pipefail
PYTHON=${PYTHON:-python3.11}
WORK=${1:-$(mktemp -d)}
CANDIDATES=(${CANDIDATES:-"sagemaker-core==2.27.0" "sagemaker==3.27.0"})
IMPORT=${IMPORT:-"from sagemaker.core import image_uris"}

baseline_venv() {  # an empty venv's size, subtracted so the figure is what the SDK adds
  "$PYTHON" -m venv "$WORK/empty" && du -sm "$WORK/empty" | cut -f1
}
EMPTY_MB=$(baseline_venv)
echo "| candidate | install (s) | added to venv (MB) | package itself (MB) | distributions | \`$IMPORT\` (s, median of 5) |"
echo "|---|---|---|---|---|---|"
for spec in "${CANDIDATES[@]}"; do
  venv="$WORK/venv-${spec//[^a-zA-Z0-9.]/_}"
  "$PYTHON" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip==25.3 >/dev/null
  start=$(date +%s.%N)
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-cache-dir "$spec" >"$venv.log" 2>&1 \
    || { echo "| $spec | install failed: $(tail -1 "$venv.log") | | | | |"; continue; }
  end=$(date +%s.%N)
  total_mb=$(( $(du -sm "$venv" | cut -f1) - EMPTY_MB ))
  name=${spec%%==*}
  own_kb=$("$venv/bin/python" - "$name" <<'PY'
import sys, importlib.metadata as md, pathlib
dist = md.distribution(sys.argv[1])
print(sum(pathlib.Path(dist.locate_file(f)).stat().st_size for f in dist.files if pathlib.Path(dist.locate_file(f)).exists()) // 1024)
PY
)
  dists=$("$venv/bin/python" -m pip list --format=freeze --disable-pip-version-check | grep -cvE '^(pip|setuptools)==')
  times=()
  for _ in 1 2 3 4 5; do
    times+=("$("$venv/bin/python" -c "import time; t=time.perf_counter(); exec('''$IMPORT'''); print(f'{time.perf_counter()-t:.2f}')" 2>/dev/null || echo fail)")
  done
  median=$(printf '%s\n' "${times[@]}" | sort | sed -n 3p)
  printf '| %s | %.0f | %s | %s | %s | %s |\n' "$spec" "$(echo "$end - $start" | bc)" "$total_mb" "$(( own_kb / 1024 ))" "$dists" "$median"
done
[ -z "${1:-}" ] && rm -rf "$WORK"
