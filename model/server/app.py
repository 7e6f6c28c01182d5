"""The routes of the model server and the life of one worker process.

A worker starts listening at once and loads the model in a thread: /ping answers 503 until
model_fn has returned, and stays 503 (the log says why) if it raised, e.g. ModelIntegrityError
on a checksum mismatch. Bad input maps to 4xx, never 5xx: InvalidInput and any other failure of
input_fn -> 400, UnsupportedContentType -> 415, an Accept the handlers cannot write -> 406.
"""

from __future__ import annotations

import asyncio
import logging
import random
import signal
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import orjson

from model.server import openapi
from model.server.batching import MicroBatcher
from model.server.capture_writer import CaptureWriter
from model.server.httpserver import ConnectionTracker, HttpProtocol, Request, Response
from model.server.metrics import SNAPSHOT_SECONDS, Metrics, SharedSnapshots, render
from model.server.package import Handlers, ModelIdentity

log = logging.getLogger(__name__)
access_log = logging.getLogger("mlship.access")

MAX_BODY_BYTES = 6 * 1024 * 1024  # SageMaker's real-time payload limit
SUPPORTED_TYPES = ("text/csv", "application/json")
JSON = "application/json"


@dataclass(frozen=True)
class ServeSettings:
    model_dir: Path
    capture_dir: Path | None = None
    capture_sampling: float = 100.0
    capture_s3: str | None = None
    endpoint_name: str = "mlship"
    variant: str = "AllTraffic"
    capture_buffer: int = 10_000
    max_batch_rows: int = 512
    onnx: bool = False
    shutdown_timeout: float = 30.0
    metrics_dir: Path | None = None  # shared by the workers of one server, so /metrics shows them all


def _media_type(value: str) -> str:
    return value.split(";", 1)[0].strip().lower()


def choose_accept(accept: str, content_type: str) -> str | None:
    """The response type: the first supported type the Accept header allows; None if none is."""
    request_type = _media_type(content_type)
    fallback = request_type if request_type in SUPPORTED_TYPES else JSON
    if not accept.strip():
        return fallback
    for part in accept.split(","):
        wanted = _media_type(part)
        if wanted in SUPPORTED_TYPES:
            return wanted
        if wanted in ("*/*", "text/*", "application/*"):
            return fallback if wanted == "*/*" else ("text/csv" if wanted == "text/*" else JSON)
    return None


def _text(status: int, message: str) -> Response:
    return Response(status, (message.rstrip("\n") + "\n").encode("utf-8"))


class ModelServer:
    """One worker's state and routes."""

    def __init__(self, settings: ServeSettings, worker: int = 0):
        self.settings = settings
        self.metrics = Metrics(worker=worker)
        self.snapshots = SharedSnapshots(settings.metrics_dir, worker) if settings.metrics_dir else None
        self.started = time.monotonic()
        self.identity = ModelIdentity.read(settings.model_dir)
        self.handlers: Handlers | None = None
        self.load_error: str | None = None
        self.batcher: MicroBatcher | None = None
        self.uploader = None
        self.capture: CaptureWriter | None = None
        self._openapi = openapi.render(self.identity.name, self.identity.version)
        self._routes = {
            ("GET", "/ping"): self.ping, ("POST", "/invocations"): self.invocations,
            ("GET", "/health"): self.health, ("GET", "/metrics"): self.prometheus,
            ("GET", "/openapi.json"): self.openapi_json, ("GET", "/docs"): self.docs,
        }
        self._paths = {path for _, path in self._routes}

    # lifecycle
    def start_capture(self) -> None:
        settings = self.settings
        if settings.capture_dir is None:
            return
        on_closed = None
        if settings.capture_s3:
            from model.server.s3_upload import S3Uploader

            self.uploader = S3Uploader(settings.capture_s3, settings.capture_dir)
            on_closed = self.uploader.submit
        self.capture = CaptureWriter(settings.capture_dir, settings.endpoint_name, settings.variant,
                                     capacity=settings.capture_buffer, on_closed=on_closed)

    async def load_model(self) -> None:
        try:
            self.handlers = await asyncio.get_running_loop().run_in_executor(None, self._load)
        except Exception as error:  # noqa: BLE001 - any failure means: do not serve this model
            self.load_error = f"{type(error).__name__}: {error}"
            log.error("model not served: %s (from %s); /ping answers 503", self.load_error, self.settings.model_dir)
            return
        self.batcher = MicroBatcher(self.handlers.predict, max_rows=self.settings.max_batch_rows)
        self.batcher.start()
        log.info("model %s %s loaded; /ping answers 200", self.identity.name, self.identity.version)

    def _load(self) -> Handlers:
        handlers = Handlers.load(self.settings.model_dir)
        if self.settings.onnx:
            from model.server.compiled import compiled_model

            handlers.serving_model = compiled_model(handlers, list(self.identity.features)) or handlers.model
        return handlers

    async def stop(self) -> None:
        if self.batcher:
            await self.batcher.stop()
        if self.capture:
            self.capture.close()
        if self.uploader:
            self.uploader.close()

    # HTTP entry point
    async def __call__(self, request: Request) -> Response:
        started = time.perf_counter()
        self.metrics.in_flight += 1
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        try:
            # HEAD is GET without the body (load balancers probe /ping with it); httpserver drops the body.
            method = "GET" if request.method == "HEAD" else request.method
            route = self._routes.get((method, request.path))
            if route is not None:
                response = await route(request)
            elif request.path in self._paths:
                allowed = ", ".join(sorted(m for m, p in self._routes if p == request.path))
                response = _text(405, f"{request.method} not allowed on {request.path}; allowed: {allowed}")
                response.headers.append(("Allow", allowed))
            else:
                response = _text(404, f"no route {request.path}; routes: {', '.join(sorted(self._paths))}")
        finally:
            self.metrics.in_flight -= 1
        response.headers.append(("X-Request-Id", request_id))
        self.record(request, response, time.perf_counter() - started, request_id)
        return response

    def record(self, request: Request | None, response: Response, seconds: float, request_id: str = "") -> None:
        """Counts a response in the metrics and writes its access-log line."""
        path = request.path if request is not None and request.path in self._paths else "other"
        self.metrics.observe(path, response.status, seconds)
        if access_log.isEnabledFor(logging.INFO):
            access_log.info(orjson.dumps({
                "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "request_id": request_id,
                "method": request.method if request else "", "path": request.path if request else "",
                "status": response.status, "duration_ms": round(seconds * 1000, 3),
                "bytes_in": len(request.body) if request else 0, "bytes_out": len(response.body),
                "remote": request.remote if request else "",
                "inference_id": request.headers.get("x-amzn-sagemaker-inference-id", "") if request else "",
            }).decode())

    # routes
    async def ping(self, request: Request) -> Response:
        if self.handlers is not None:
            return Response(200, b"", content_type="text/plain")
        reason = self.load_error or "model is loading"
        return _text(503, f"not ready: {reason}")

    async def invocations(self, request: Request) -> Response:
        handlers = self.handlers
        if handlers is None:
            return _text(503, f"not ready: {self.load_error or 'model is loading'}")
        content_type = request.headers.get("content-type", "")
        accept = choose_accept(request.headers.get("accept", ""), content_type)
        if accept is None:
            return _text(406, f"Accept {request.headers.get('accept')!r}; allowed: {', '.join(SUPPORTED_TYPES)}")
        try:
            data = handlers.input(request.body, content_type)
        except handlers.unsupported as error:
            return _text(415, str(error))
        except Exception as error:  # noqa: BLE001 - input_fn only reads the body: its failures are the body's
            return _text(400, str(error) if isinstance(error, handlers.invalid_input) else
                         f"could not read the {_media_type(content_type) or 'request'} body: {error}")
        try:
            prediction = await self.batcher.predict(data)
        except Exception:  # noqa: BLE001
            log.exception("predict_fn failed")
            return _text(500, "prediction failed; see the server log")
        try:
            body, output_type = handlers.output(prediction, accept)
        except handlers.unsupported as error:
            return _text(406, str(error))
        self._capture(request, content_type, body, output_type)
        return Response(200, body, content_type=output_type,
                        headers=[("X-Amzn-Invoked-Production-Variant", self.settings.variant)])

    def _capture(self, request: Request, content_type: str, output: bytes, output_type: str) -> None:
        if self.capture is None or random.random() * 100 >= self.settings.capture_sampling:
            return
        self.capture.offer_exchange(request.body, content_type, output, output_type,
                                    request.headers.get("x-amzn-sagemaker-inference-id"))

    def capture_state(self) -> dict[str, int]:
        if self.capture is None:
            return {}
        state = {"records_written_total": self.capture.written, "records_dropped_total": self.capture.dropped,
                 "records_failed_total": self.capture.failed, "records_pending": self.capture.pending}
        if self.uploader is not None:
            state |= {"files_uploaded_total": self.uploader.uploaded, "files_upload_failed_total": self.uploader.failed,
                      "upload_retries_total": self.uploader.retries}
        return state

    async def health(self, request: Request) -> Response:
        body = {
            "status": "ready" if self.handlers else "failed" if self.load_error else "loading",
            "reason": self.load_error,
            "model": {"name": self.identity.name, "version": self.identity.version, "sha256": self.identity.sha256},
            "uptime_seconds": round(time.monotonic() - self.started, 3),
            "worker": self.metrics.worker,
            "inference_path": None if self.handlers is None else
            "onnxruntime" if self.handlers.serving_model is not self.handlers.model else "joblib",
            "capture": {"enabled": self.capture is not None, "sampling_percent": self.settings.capture_sampling,
                        **self.capture_state()},
        }
        return Response(200, orjson.dumps(body), content_type=JSON)

    def metric_samples(self) -> list:
        model = {"name": self.identity.name, "version": self.identity.version, "sha256": self.identity.sha256,
                 "loaded": "true" if self.handlers else "false"}
        batching = {}
        if self.batcher is not None:
            batching = {"predict_batches_total": self.batcher.batches,
                        "predict_batched_requests_total": self.batcher.batched_requests}
        return self.metrics.samples(model, self.capture_state(), batching)

    async def share_metrics(self) -> None:
        """Leaves this worker's samples for the others to show, once a second, until cancelled."""
        while True:
            try:
                self.snapshots.write(self.metric_samples())
            except OSError as error:
                log.warning("worker %d: cannot share metrics: %s", self.metrics.worker, error)
            await asyncio.sleep(SNAPSHOT_SECONDS)

    async def prometheus(self, request: Request) -> Response:
        workers = self.snapshots.others() if self.snapshots else {}
        workers[self.metrics.worker] = self.metric_samples()
        return Response(200, render(workers).encode(), content_type="text/plain; version=0.0.4; charset=utf-8")

    async def openapi_json(self, request: Request) -> Response:
        return Response(200, self._openapi, content_type=JSON)

    async def docs(self, request: Request) -> Response:
        return Response(200, openapi.DOCS_PAGE, content_type="text/html; charset=utf-8")


def run_worker(sock: socket.socket, settings: ServeSettings, worker: int = 0) -> None:
    """Serves on an already bound, listening socket until SIGTERM or SIGINT, then drains."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(_serve(sock, settings, worker))


async def _serve(sock: socket.socket, settings: ServeSettings, worker: int) -> None:
    loop = asyncio.get_running_loop()
    app = ModelServer(settings, worker)
    app.start_capture()
    tracker = ConnectionTracker()

    def rejected(request: Request | None, response: Response) -> None:
        app.record(request, response, 0.0)

    server = await loop.create_server(
        lambda: HttpProtocol(app, tracker, MAX_BODY_BYTES, rejected), sock=sock, backlog=2048)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loader = loop.create_task(app.load_model())
    sharing = loop.create_task(app.share_metrics()) if app.snapshots else None
    await stop.wait()
    log.info("worker %d: stopping: no new connections, finishing requests in progress", worker)
    server.close()
    tracker.close_idle()
    try:
        await asyncio.wait_for(tracker.idle.wait(), settings.shutdown_timeout)
    except asyncio.TimeoutError:
        log.warning("worker %d: %d requests still running after %.0fs; stopping anyway",
                    worker, tracker.busy, settings.shutdown_timeout)
    await asyncio.sleep(0)  # let the last responses be written before their connections close
    for connection in list(tracker.connections):
        connection.close()
    loader.cancel()
    if sharing:
        sharing.cancel()
    await app.stop()
    log.info("worker %d: stopped; capture records written: %s", worker,
             app.capture.written if app.capture else "capture off")
