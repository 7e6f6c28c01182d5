"""Regenerate the committed example baseline that the offline plan uses when no release is packaged.

    python -m infra.examples.make_baseline

The offline plan (`mlship plan`, the tests) reads the deployed version's baseline from
dist/<name>-<version>/baseline/ when that release was packaged here, and otherwise from
infra/examples/<name>/baseline/. This writes the latter for the default model (churn): the
project's synthetic churn table (model.data, same seed as model/settings.yaml) through the real
baseline writer (monitoring.baseline), on a few hundred rows so the committed files stay small.
Only the feature list matters to the plan (one drift alarm per feature); the files are complete.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROWS = 300
SEED = 42
EXAMPLES = Path(__file__).resolve().parent


def main() -> int:
    from model.data import SYNTHETIC_TARGET, synthetic_churn
    from monitoring import formats
    from monitoring.baseline import write_baseline

    out = EXAMPLES / "churn" / "baseline"
    frame = synthetic_churn(ROWS, SEED)
    statistics, constraints = write_baseline(frame, out, exclude=[SYNTHETIC_TARGET])
    for extra in out.iterdir():  # the plan needs the two Model Monitor files, not the PCA baseline
        if extra.name not in (formats.STATISTICS_FILE, formats.CONSTRAINTS_FILE):
            extra.unlink()
    print(f"wrote {statistics} and {constraints} from {ROWS} synthetic churn rows (seed {SEED})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
