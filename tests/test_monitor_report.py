"""`mlship monitor baseline` and `mlship monitor report` from the command line."""

from __future__ import annotations

import re
from datetime import datetime, timezone

import orjson

from mlship.cli import main as mlship
from monitoring import synthetic


def test_baseline_run_and_report_from_the_command_line(tmp_path, capsys):
    training = synthetic.frame(3_000, seed=1)
    probability, label = synthetic.predict(training)
    training.assign(churned=label).to_csv(tmp_path / "train.csv", index=False)
    assert mlship(["monitor", "baseline", "--data", str(tmp_path / "train.csv"), "--out", str(tmp_path / "base"), "--exclude", "churned"]) == 0
    assert "3000 rows, 12 features" in capsys.readouterr().out
    runs = []
    for hour, drift in ((3, []), (4, ["f1", "plan"])):
        start = datetime(2026, 1, 2, hour, tzinfo=timezone.utc)
        window = synthetic.frame(1_000, seed=hour, drift=drift)
        records = synthetic.write_capture(tmp_path / "capture", window, start, seconds_apart=1.0)
        _, predicted = synthetic.predict(window)
        truth = b"\n".join(orjson.dumps({"groundTruthData": {"data": str(int(y)), "encoding": "CSV"}, "eventMetadata": {"eventId": r.event_id}}) for r, y in zip(records, predicted))
        (tmp_path / f"truth-{hour}.jsonl").write_bytes(truth)
        out = tmp_path / f"run-{hour}"
        mlship(["monitor", "run", "--capture", str(tmp_path / "capture"), "--baseline", str(tmp_path / "base"), "--out", str(out),
                "--start", start.isoformat(), "--end", start.replace(hour=hour + 1).isoformat(), "--ground-truth", str(tmp_path / f"truth-{hour}.jsonl"), "--workers", "1"])
        runs += ["--in", str(out)]
    assert mlship(["monitor", "report", *runs, "--baseline", str(tmp_path / "base"), "--out", str(tmp_path / "report.html")]) == 0
    page = (tmp_path / "report.html").read_text()
    assert "src='http" not in page and "src=\"http" not in page  # self-contained
    assert len(re.findall(r"data:image/png;base64,", page)) == 12 + 2 + 1  # every feature, the output, the trend
    drift_rows = re.findall(r"<tr class='bad'><td>([^<]+)</td>", page)
    assert drift_rows[:2] and set(drift_rows) == {"f1", "plan"}  # drifted features lead the sorted table
    assert "Retraining recommended" in page and "accuracy" in page


def test_report_refuses_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert mlship(["monitor", "report", "--in", str(tmp_path), "--out", str(tmp_path / "r.html")]) == 2
    assert "not a monitoring run" in capsys.readouterr().err
    assert not (tmp_path / "r.html").exists()


def test_baseline_refuses_unreadable_data(tmp_path, capsys):
    assert mlship(["monitor", "baseline", "--data", str(tmp_path / "none.csv"), "--out", str(tmp_path / "b")]) == 2
    assert "cannot read --data" in capsys.readouterr().err
