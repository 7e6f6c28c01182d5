"""`mlship demo`: the whole lifecycle on this machine, against an embedded AWS emulator.

Trains, gates, packages and publishes a model to moto's S3 and model registry, prints the
offline plan of the dev stack, serves the model with data capture, sends three phases of
traffic (normal, a drifted population, bad requests), runs the monitor with ground truth,
publishes its metrics and alert to the emulator's CloudWatch and SNS, writes the HTML report,
and ends with a summary of what happened and where every file is.

Every step runs the same `mlship` commands a person would type, as child processes, so the
demo shows nothing the command line could not do. Every process it starts is stopped when
it ends, also on Ctrl-C or SIGTERM, and it can be run again: it starts from an empty folder.
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from mlship.errors import UserError

REPO = Path(__file__).resolve().parents[1]
MARKER = ".mlship-demo"  # only a folder holding this file is ever emptied by the demo
REGION = "us-east-1"
BUCKET = "mlship-demo-artifacts"
GROUP = "mlship-demo-churn"
ENDPOINT = "mlship-demo"
SCHEDULE = "mlship-demo-hourly"
# The drifted population: what changes, and how. Two features move; the rest stay as trained.
DRIFT = {
    "monthly_charges": lambda column: column * 1.6 + 25.0,
    "days_since_last_login": lambda column: column * 4 + 30,
}


@dataclass
class Traffic:
    """What the traffic phases sent and what came back."""

    statuses: dict[str, Counter] = field(default_factory=dict)

    def record(self, phase: str, status: int) -> None:
        self.statuses.setdefault(phase, Counter())[status] += 1


def _parser() -> argparse.ArgumentParser:
    class Parser(argparse.ArgumentParser):
        def error(self, message: str):
            raise UserError(message)

    parser = Parser(prog="mlship demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path(".demo"), help="where every file goes (default .demo/)")
    parser.add_argument("--requests", type=_count, default=600, help="requests per traffic phase (default 600)")
    parser.add_argument("--train-rows", type=_count, default=8000, help="rows of synthetic training data (default 8000)")
    parser.add_argument("--skip-plan", action="store_true", help="do not print the offline plan of the dev stack")
    return parser


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 50:
        raise argparse.ArgumentTypeError(f"{value} is too few; at least 50")
    return value


class Demo:
    def __init__(self, args: argparse.Namespace, stack: ExitStack):
        self.workdir: Path = args.workdir.resolve()
        self.requests: int = args.requests
        self.train_rows: int = args.train_rows
        self.skip_plan: bool = args.skip_plan
        self.stack = stack
        self.step = 0
        self.started = time.monotonic()
        self.env = dict(os.environ)
        self.env.update(AWS_ACCESS_KEY_ID="demo", AWS_SECRET_ACCESS_KEY="demo", AWS_DEFAULT_REGION=REGION,
                        AWS_REGION=REGION, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
                        OMP_NUM_THREADS="1")
        self.env.pop("AWS_PROFILE", None)
        self.endpoint_url = ""

    # ----------------------------------------------------------------- the steps
    def run(self) -> int:
        self._fresh_workdir()
        self._say("starting the AWS emulator (moto) on 127.0.0.1")
        self._start_emulator()
        topic, queue_url = self._create_alert_path()

        settings = ["--set", f"build_dir={self.workdir / 'build'}", "--set", f"dist_dir={self.workdir / 'dist'}",
                    "--set", f"data.rows={self.train_rows}"]
        self._say("training the churn model on seeded synthetic data")
        self._mlship("model", "train", *settings)
        self._say("evaluating it against the quality gate")
        self._mlship("model", "evaluate", *settings)
        self._say("packaging it (model.tar.gz, manifest, drift baseline)")
        self._mlship("model", "package", *settings)
        release = next((self.workdir / "dist").iterdir())
        self._say(f"publishing {release.name} to the emulator's S3 and model registry")
        self._mlship("model", "publish", *settings, "--bucket", BUCKET, "--group", GROUP,
                     "--region", REGION, "--endpoint-url", self.endpoint_url)
        self._mlship("model", "list", "--bucket", BUCKET, "--group", GROUP, "--region", REGION,
                     "--endpoint-url", self.endpoint_url)

        if not self.skip_plan:
            self._say("the offline plan of the dev stack (what `pulumi up --stack dev` would create)")
            plan = self._mlship("plan", "--stack", "dev", quiet=True)
            lines = plan.splitlines()
            for line in lines[:12]:
                print(f"    {line}")
            print(f"    ... {len(lines)} lines in all: run `mlship plan --stack dev` for the whole plan")

        self._say("serving the model with data capture on")
        port = self._start_server(release)
        traffic = Traffic()
        truth: list[bytes] = []
        self._say(f"phase 1: {self.requests} requests from the population the model was trained on")
        self._send_rows(port, "normal", seed=101, drift=False, traffic=traffic, truth=truth)
        self._say(f"phase 2: {self.requests} requests from a drifted population ({', '.join(DRIFT)} shifted)")
        self._send_rows(port, "drifted", seed=202, drift=True, traffic=traffic, truth=truth)
        self._say("phase 3: bad requests (wrong content type, malformed CSV and JSON, text in numbers, too large)")
        self._send_bad(port, traffic)
        self._say("stopping the server (SIGTERM: every answered request's capture is flushed to disk)")
        self._stop_server()
        truth_dir = self.workdir / "ground-truth"
        truth_dir.mkdir()
        (truth_dir / "labels.jsonl").write_bytes(b"".join(truth))

        self._say("running the monitor: data quality, drift, prediction drift, model quality vs ground truth")
        monitor_out = self.workdir / "monitor"
        code = self._mlship("monitor", "run", "--capture", str(self.workdir / "capture"),
                            "--baseline", str(release / "baseline"), "--ground-truth", str(truth_dir),
                            "--out", str(monitor_out), "--endpoint-name", ENDPOINT, "--schedule-name", SCHEDULE,
                            "--publish-cloudwatch", "--sns-topic", topic, "--region", REGION,
                            "--endpoint-url", self.endpoint_url, allowed=(0, 3), returncode=True)
        self._say("writing the HTML report")
        report = self.workdir / "report.html"
        self._mlship("monitor", "report", "--in", str(monitor_out), "--baseline", str(release / "baseline"),
                     "--out", str(report))
        self._summary(release, traffic, monitor_out, report, queue_url, code)
        return 0

    # ----------------------------------------------------------------- pieces
    def _say(self, text: str) -> None:
        self.step += 1
        print(f"[{time.monotonic() - self.started:6.1f}s] {self.step:>2}. {text}", flush=True)

    def _fresh_workdir(self) -> None:
        if self.workdir.exists():
            if not (self.workdir / MARKER).exists():
                raise UserError(f"{self.workdir} exists and was not made by the demo; choose another --workdir")
            shutil.rmtree(self.workdir)
        self.workdir.mkdir(parents=True)
        (self.workdir / MARKER).write_text("made by `mlship demo`; emptied by its next run\n")

    def _mlship(self, *args: str, quiet: bool = False, allowed=(0,), returncode: bool = False):
        result = subprocess.run([sys.executable, "-m", "mlship", *args], env=self.env, cwd=REPO,
                                capture_output=True, text=True)
        if result.returncode not in allowed:
            detail = (result.stderr.strip() or result.stdout.strip()).splitlines()[-1:] or ["no output"]
            raise UserError(f"`mlship {' '.join(args[:2])}` failed (exit {result.returncode}): {detail[0]}")
        if not quiet:
            for line in result.stdout.strip().splitlines():
                print(f"    {line}")
        return result.returncode if returncode else result.stdout

    def _start_emulator(self) -> None:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # its access log would drown the demo's output
        port = _free_port()
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        self.stack.callback(server.stop)
        self.endpoint_url = f"http://127.0.0.1:{port}"

    def _client(self, service: str):
        import boto3

        return boto3.client(service, region_name=REGION, endpoint_url=self.endpoint_url,
                            aws_access_key_id="demo", aws_secret_access_key="demo")

    def _create_alert_path(self) -> tuple[str, str]:
        """The infrastructure the stack would own: the artifact bucket, the alert topic, an inbox."""
        self._client("s3").create_bucket(Bucket=BUCKET)
        sns, sqs = self._client("sns"), self._client("sqs")
        topic = sns.create_topic(Name="mlship-demo-alerts")["TopicArn"]
        queue_url = sqs.create_queue(QueueName="mlship-demo-inbox")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        # Stands in for the on-call e-mail subscription that the stack creates.
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"})
        return topic, queue_url

    def _start_server(self, release: Path) -> int:
        port = _free_port()
        log = (self.workdir / "server.log").open("wb")
        self.stack.callback(log.close)
        self.server = subprocess.Popen(
            [sys.executable, "-m", "mlship", "serve", "--model", str(release), "--host", "127.0.0.1",
             "--port", str(port), "--workers", "1", "--capture-dir", str(self.workdir / "capture"),
             "--endpoint-name", ENDPOINT],
            env=self.env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.stack.callback(self._stop_server)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.server.poll() is not None:
                raise UserError(f"the server exited with {self.server.returncode}; see {self.workdir / 'server.log'}")
            try:
                if _request(port, "GET", "/ping")[0] == 200:
                    print(f"    listening on http://127.0.0.1:{port} (log: {self.workdir / 'server.log'})")
                    return port
            except OSError:
                pass
            time.sleep(0.2)
        raise UserError(f"the server did not answer /ping within 60 s; see {self.workdir / 'server.log'}")

    def _stop_server(self) -> None:
        server = getattr(self, "server", None)
        if server is None or server.poll() is not None:
            return
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()

    def _send_rows(self, port: int, phase: str, seed: int, drift: bool, traffic: Traffic, truth: list[bytes]) -> None:
        from model.data import SYNTHETIC_TARGET, synthetic_churn
        from monitoring.quality import ground_truth_line

        frame = synthetic_churn(self.requests, seed)
        labels = frame.pop(SYNTHETIC_TARGET).tolist()
        if drift:
            for column, shift in DRIFT.items():
                frame[column] = shift(frame[column])
        rows = [",".join("" if value != value else str(value) for value in row) for row in frame.itertuples(index=False)]

        def send(index: int) -> None:
            inference_id = f"{phase}-{index}"
            status, _ = _request(port, "POST", "/invocations", rows[index].encode(),
                                 {"Content-Type": "text/csv", "Accept": "text/csv",
                                  "X-Amzn-SageMaker-Inference-Id": inference_id})
            traffic.record(phase, status)
            if status == 200:
                truth.append(ground_truth_line(inference_id, [labels[index]]))

        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(send, range(len(rows))))
        print(f"    answers: {_statuses(traffic.statuses[phase])}")

    def _send_bad(self, port: int, traffic: Traffic) -> None:
        bad = [
            ("wrong content type", b"<xml/>", "application/xml"),
            ("malformed CSV (too few columns)", b"1,2,3", "text/csv"),
            ("text in a numeric column", b"abc" + b",1" * 15, "text/csv"),
            ("malformed JSON", b'{"instances": [', "application/json"),
            ("JSON without instances", b'{"rows": []}', "application/json"),
            ("empty body", b"", "text/csv"),
        ]
        answers = [(label, *_request(port, "POST", "/invocations", body, {"Content-Type": content_type}))
                   for label, body, content_type in bad]
        answers.append(("over SageMaker's 6 MB payload limit", *_announce_body(port, 6 * 1024 * 1024 + 1)))
        for label, status, answer in answers:
            traffic.record("bad", status)
            message = answer.decode("utf-8", "replace").strip().replace("\n", " ")[:90]
            print(f"    {status}  {label}: {message}")
        if _request(port, "GET", "/ping")[0] != 200:
            raise UserError("the server stopped answering /ping after the bad requests")
        print("    the server still answers /ping")

    def _summary(self, release: Path, traffic: Traffic, monitor_out: Path, report: Path, queue_url: str, code: int) -> None:
        violations = json.loads((monitor_out / "constraint_violations.json").read_text())["violations"]
        drifted = sorted({v["feature_name"] for v in violations if v["constraint_check_type"] == "baseline_drift_check"})
        other = Counter(v["constraint_check_type"] for v in violations if v["constraint_check_type"] != "baseline_drift_check")
        metrics = self._client("cloudwatch").list_metrics(Namespace="aws/sagemaker/Endpoints/data-metrics")["Metrics"]
        quality = self._client("cloudwatch").list_metrics(Namespace="aws/sagemaker/Endpoints/model-metrics")["Metrics"]
        messages = self._client("sqs").receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=0).get("Messages", [])
        published = self._client("s3").list_objects_v2(Bucket=BUCKET, Prefix="models/").get("KeyCount", 0)
        packages = self._client("sagemaker").list_model_packages(ModelPackageGroupName=GROUP)["ModelPackageSummaryList"]
        caught = sorted(set(DRIFT) & set(drifted))
        missed = sorted(set(DRIFT) - set(drifted))

        print()
        print("summary")
        print(f"  model          {release.name}: trained, passed the gate, packaged, published "
              f"({published} objects in s3://{BUCKET}/models/, {len(packages)} package(s) in registry group {GROUP})")
        print(f"  traffic        normal {_statuses(traffic.statuses['normal'])}; drifted {_statuses(traffic.statuses['drifted'])}; "
              f"bad {_statuses(traffic.statuses['bad'])}")
        print(f"  drift injected {', '.join(DRIFT)}")
        print(f"  drift flagged  {', '.join(drifted) or 'none'}"
              + (f"  (missed: {', '.join(missed)})" if missed else f"  (both injected features caught)" if caught else ""))
        if other:
            print(f"  other checks   {', '.join(f'{kind} x{count}' for kind, count in sorted(other.items()))}")
        predictions = json.loads((monitor_out / "drift.json").read_text())["prediction"]
        print("  predictions    " + ", ".join(
            f"{d['name']} distance {d['distance']:.3f} ({'over' if d['drifted'] else 'within'} the threshold {d['threshold']})"
            for d in predictions) if predictions else "  predictions    no prediction baseline")
        print(f"  monitor exit   {code} ({'violations found' if code == 3 else 'no violations'}); "
              f"{len(metrics)} data metrics and {len(quality)} model-quality metrics in the emulator's CloudWatch")
        for message in messages[:1]:
            first = message["Body"].strip().splitlines()[0] if message["Body"].strip() else ""
            print(f"  alert fired    SNS -> on-call inbox: {first if len(first) <= 110 else first[:109] + '…'}")
        if not messages:
            print("  alert fired    none")
        print("  files")
        for label, path in (("release", release), ("capture", self.workdir / "capture"),
                            ("ground truth", self.workdir / "ground-truth"), ("monitor output", monitor_out),
                            ("report", report), ("server log", self.workdir / "server.log")):
            print(f"    {label:<15}{_shown(path)}")
        print(f"done in {time.monotonic() - self.started:.0f} s; open {_shown(report)} in a browser")


def _shown(path: Path) -> Path:
    """A path as the user would type it: relative when it lies under the current folder."""
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path


def _statuses(counts: Counter) -> str:
    return ", ".join(f"{count} x {status}" for status, count in sorted(counts.items()))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _request(port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _announce_body(port: int, length: int) -> tuple[int, bytes]:
    """Announces a body of `length` bytes and waits for the answer before sending any of it,
    as a client that honours an early refusal does: the server judges the size by its header."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.putrequest("POST", "/invocations")
        connection.putheader("Content-Type", "text/csv")
        connection.putheader("Content-Length", str(length))
        connection.endheaders()
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    # SIGTERM (a CI runner, `kill`) cleans up like Ctrl-C does.
    previous = signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        with ExitStack() as stack:
            return Demo(args, stack).run()
    finally:
        signal.signal(signal.SIGTERM, previous)
