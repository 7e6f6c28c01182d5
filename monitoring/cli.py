"""`mlship monitor baseline|run|byoc|report`: the monitor's command line."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

from mlship.errors import UserError

log = logging.getLogger(__name__)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, like every mlship error
        raise UserError(message)


def _time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a time; use ISO 8601 such as 2026-01-02T03:00:00Z") from None
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def _workers(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of processes; use 1, 2, ... or 0 for one per CPU (at most 2)")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mlship monitor", description="Baselines, data and model quality checks, drift, alerts and reports (SageMaker Model Monitor formats).")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    baseline = commands.add_parser("baseline", help="statistics.json and constraints.json from training data")
    baseline.add_argument("--data", required=True, type=Path, help="CSV with a header row")
    baseline.add_argument("--out", required=True, type=Path, help="folder to write the baseline into")
    baseline.add_argument("--exclude", action="append", default=[], metavar="COLUMN", help="a column to leave out (the label); repeatable")
    baseline.add_argument("--min-accuracy", type=float, default=0.6, help="model-quality constraint: accuracy below this is a violation (default 0.6)")

    run = commands.add_parser("run", help="check a window of captured traffic against a baseline")
    run.add_argument("--capture", required=True, help="capture file, folder tree, or s3://bucket/prefix")
    run.add_argument("--baseline", required=True, type=Path, help="folder with statistics.json and constraints.json")
    run.add_argument("--out", required=True, type=Path, help="folder for the results")
    run.add_argument("--start", type=_time, help="window start (inclusive), ISO 8601")
    run.add_argument("--end", type=_time, help="window end (exclusive), ISO 8601")
    run.add_argument("--ground-truth", help="ground truth file, folder, or s3://bucket/prefix")
    run.add_argument("--endpoint-name", default="local")
    run.add_argument("--schedule-name", default="mlship-monitor")
    run.add_argument("--publish-cloudwatch", action="store_true", help="put the metrics to CloudWatch")
    run.add_argument("--sns-topic", metavar="ARN", help="publish an alert here when there are violations")
    run.add_argument("--report-url", help="where the report lives, for the alert (default: the --out folder)")
    run.add_argument("--region", default=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"))
    run.add_argument("--endpoint-url", help="AWS endpoint URL (an emulator)")
    run.add_argument("--workers", type=_workers, default=0, help="reader processes (default: CPUs, at most 2)")

    commands.add_parser("byoc", help="run as a SageMaker Model Monitor bring-your-own container (reads its environment)")

    report = commands.add_parser("report", help="one self-contained HTML report from run folders")
    report.add_argument("--in", dest="inputs", action="append", required=True, type=Path, metavar="DIR", help="a run's output folder; repeatable, oldest first")
    report.add_argument("--baseline", type=Path, help="baseline folder (default: none; distributions show the windows only)")
    report.add_argument("--out", required=True, type=Path, help="the HTML file to write")
    return parser


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    return {"baseline": _baseline, "run": _run, "byoc": _byoc, "report": _report}[args.command](args)


def _baseline(args) -> int:
    import pandas

    from monitoring import formats
    from monitoring.baseline import write_baseline

    try:
        frame = pandas.read_csv(args.data)
    except (OSError, ValueError) as error:
        raise UserError(f"cannot read --data {args.data}: {error}") from None
    statistics, constraints = write_baseline(frame, args.out, args.exclude)
    quality = {"accuracy": formats.ModelQualityConstraint(args.min_accuracy, "LessThanThreshold")}
    formats.write_json(args.out / formats.MODEL_QUALITY_CONSTRAINTS_FILE, formats.model_quality_constraints_to_json(quality))
    print(f"baseline of {len(frame)} rows, {len(frame.columns) - len(args.exclude)} features: {statistics}, {constraints}")
    return 0


def _run(args) -> int:
    from monitoring.run import RunOptions, run
    from monitoring.sources import S3Access

    options = RunOptions(capture=args.capture, baseline=args.baseline, out=args.out, start=args.start, end=args.end,
                         ground_truth=args.ground_truth, endpoint_name=args.endpoint_name, schedule_name=args.schedule_name,
                         access=S3Access(args.region, args.endpoint_url), workers=args.workers)
    result = run(options)
    print(summary_line(result.summary))
    _publish(result, args.publish_cloudwatch, args.sns_topic, args.report_url or str(args.out), S3Access(args.region, args.endpoint_url))
    return result.exit_status


def _publish(result, cloudwatch: bool, topic: str | None, report: str, access) -> None:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    from monitoring import publish

    try:
        if cloudwatch:
            publish.put_metrics(result, boto3.client("cloudwatch", region_name=access.region, endpoint_url=access.endpoint_url))
        if topic and result.exit_status:
            publish.send_alert(result, boto3.client("sns", region_name=access.region, endpoint_url=access.endpoint_url), topic, report)
    except (BotoCoreError, ClientError) as error:
        raise UserError(f"results are written to {result.out}, but publishing failed: {error}") from None


def _count(number: int, noun: str) -> str:
    return f"{number:,} {noun}" + ("" if number == 1 else "s")


def summary_line(summary: dict) -> str:
    window = summary["window"]
    parts = [_count(summary["records"], "record")]
    if summary.get("rows", summary["records"]) != summary["records"]:
        parts[0] += f" ({_count(summary['rows'], 'row')})"
    if window["start"] or window["end"]:
        parts[0] += f" in [{window['start'] or '...'}, {window['end'] or '...'})"
    checks = ", ".join(f"{k}: {v}" for k, v in sorted(summary["violations_by_check"].items()))
    parts.append(_count(summary["violations"], "violation") + (f" ({checks})" if checks else ""))
    if summary["drifted_features"]:
        parts.append("drift in " + ", ".join(summary["drifted_features"]))
    if summary.get("prediction_drift"):
        parts.append("prediction drift in " + ", ".join(summary["prediction_drift"]))
    if summary["multivariate_drift"]:
        parts.append("multivariate drift")
    if summary["model_quality"]:
        quality = summary["model_quality"]
        parts.append(f"accuracy {quality.get('accuracy', float('nan')):.3f} on {quality['rows_with_ground_truth']:,} rows with ground truth")
    skipped = sum(summary["skipped"].values())
    if skipped:
        parts.append(f"{skipped:,} skipped ({', '.join(f'{k}: {v}' for k, v in sorted(summary['skipped'].items()))})")
    if summary["empty_window"]:
        parts.append("EMPTY WINDOW")
    parts.append("retrain recommended" if summary["retrain_recommended"] else "no retraining needed")
    return f"mlship monitor: {'; '.join(parts)} -> {summary['out']}"


def _byoc(args) -> int:
    from monitoring.byoc import run_container

    result = run_container(os.environ)
    print(summary_line(result.summary))
    return 0


def _report(args) -> int:
    from monitoring.report import write_report

    path = write_report(args.inputs, args.out, args.baseline)
    print(f"report: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
