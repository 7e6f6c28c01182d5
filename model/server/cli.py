"""`mlship serve`: serve a packaged model over HTTP with SageMaker's container contract.

    mlship serve --model dist/churn-1.0.0 --port 8080 --workers 2 --capture-dir /data/capture

The parent process binds the port, then forks the workers (each loads the model itself and
micro-batches its own requests) and restarts a worker that dies. SIGTERM or SIGINT is passed to
every worker, which stops accepting, finishes the requests in progress and writes out its capture
buffer before exiting.
"""

from __future__ import annotations

import argparse
import atexit
import dataclasses
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path

from mlship.errors import UserError

log = logging.getLogger(__name__)


def _percent(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number; give a percent from 0 to 100") from None
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"{value} is outside 0-100")
    return value


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give a whole number of at least 1")
    return int(text)


def parser() -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(prog="mlship serve", description=__doc__.split("\n\n")[0])
    cli.add_argument("--model", type=Path, required=True,
                     help="a model.tar.gz, a dist/<name>-<version>/ folder, or an extracted model directory")
    cli.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0; 127.0.0.1 for local only)")
    cli.add_argument("--port", type=int, default=8080, help="port (default 8080, SageMaker's; 0 picks a free one)")
    cli.add_argument("--workers", type=_positive, default=os.cpu_count() or 1,
                     help="worker processes (default: one per core)")
    cli.add_argument("--capture-dir", type=Path, help="write SageMaker data capture under this folder")
    cli.add_argument("--capture-sampling", type=_percent, default=100.0, help="percent of requests captured (default 100)")
    cli.add_argument("--capture-s3", default=os.environ.get("MLSHIP_CAPTURE_S3") or None,
                     help="also upload closed capture files to s3://bucket/prefix (default: $MLSHIP_CAPTURE_S3)")
    cli.add_argument("--capture-buffer", type=_positive, default=10_000,
                     help="records held for the capture writer before new ones are dropped (default 10000)")
    cli.add_argument("--endpoint-name", default="mlship", help="endpoint name in the capture layout (default mlship)")
    cli.add_argument("--variant", default="AllTraffic", help="variant name in the capture layout (default AllTraffic)")
    cli.add_argument("--max-batch-rows", type=_positive, default=512, help="most rows in one micro-batched predict")
    cli.add_argument("--onnx", action="store_true",
                     help="predict with an ONNX Runtime twin of the model (~50x less per call, float32: "
                          "probabilities within 0.05, see model/server/compiled.py); off: the joblib model")
    cli.add_argument("--no-access-log", action="store_true", help="do not write the JSON access log")
    return cli


def _settings(args: argparse.Namespace, model_dir: Path):
    from model.server.app import ServeSettings

    if args.capture_s3 and not args.capture_dir:
        raise UserError("--capture-s3 needs --capture-dir (files are written locally, then uploaded)")
    if args.capture_s3:
        from model.server.s3_upload import parse_s3_url

        parse_s3_url(args.capture_s3)
    return ServeSettings(model_dir=model_dir, capture_dir=args.capture_dir, capture_sampling=args.capture_sampling,
                         capture_s3=args.capture_s3, endpoint_name=args.endpoint_name, variant=args.variant,
                         capture_buffer=args.capture_buffer, max_batch_rows=args.max_batch_rows,
                         onnx=args.onnx)


def _bind(host: str, port: int) -> socket.socket:
    try:
        sock = socket.create_server((host, port), reuse_port=False, backlog=2048)
    except OSError as error:
        raise UserError(f"cannot listen on {host}:{port}: {error.strerror}") from None
    sock.setblocking(False)
    return sock


def _configure_logging(access_log: bool) -> None:
    access = logging.getLogger("mlship.access")
    access.propagate = False
    if access_log:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        access.addHandler(handler)
        access.setLevel(logging.INFO)
    else:
        access.setLevel(logging.WARNING)


def main(argv: list[str]) -> int:
    # Each worker predicts on one core; OpenMP threads in several workers would fight over the cores.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    args = parser().parse_args(argv)
    from model.server.package import extraction_dir, resolve_model_dir

    scratch = extraction_dir()
    atexit.register(shutil.rmtree, scratch, True)  # workers leave with os._exit: only this process cleans up
    model_dir = resolve_model_dir(args.model, scratch)
    settings = _settings(args, model_dir)
    _configure_logging(not args.no_access_log)
    sock = _bind(args.host, args.port)
    host, port = sock.getsockname()[:2]
    print(f"mlship serve: listening on http://{host}:{port} ({args.workers} worker(s), model {model_dir})", flush=True)
    if args.workers == 1:
        from model.server.app import run_worker

        run_worker(sock, settings)
        return 0
    # The workers leave their metrics here for each other, so that any of them answers for all.
    shared = Path(tempfile.mkdtemp(prefix="mlship-metrics-"))
    atexit.register(shutil.rmtree, shared, True)
    return _supervise(sock, dataclasses.replace(settings, metrics_dir=shared), args.workers)


def _spawn(sock: socket.socket, settings, worker: int) -> int:
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            from model.server.app import run_worker

            run_worker(sock, settings, worker)
        except BaseException:  # noqa: BLE001 - a worker must never return into the parent's code
            log.exception("worker %d crashed", worker)
            code = 1
        finally:
            logging.shutdown()
            os._exit(code)
    return pid


def _supervise(sock: socket.socket, settings, workers: int) -> int:
    stopping = False

    def stop(signum, frame):
        nonlocal stopping
        stopping = True
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    children: dict[int, int] = {}
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for worker in range(workers):
        children[_spawn(sock, settings, worker)] = worker
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        worker = children.pop(pid, None)
        if worker is None:
            continue
        if not stopping:
            log.error("worker %d (pid %d) exited with status %d; starting a new one", worker, pid, status)
            time.sleep(0.5)
            if not stopping:
                children[_spawn(sock, settings, worker)] = worker
    return 0
