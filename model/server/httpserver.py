"""A small HTTP/1.1 server on asyncio (uvloop when installed), made for this one job.

Why not uvicorn: without httptools (not installed here) uvicorn parses HTTP with h11 in pure
Python, which costs more per request than the rest of the server; a request to a model server is
a short head plus a Content-Length body, which a few lines parse. Keep-alive and pipelining are
supported; chunked request bodies are refused with 411 (SageMaker's runtime and curl send
Content-Length). A body over the limit is refused with 413 from its Content-Length, before it is read.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Awaitable, Callable

log = logging.getLogger(__name__)

MAX_HEAD_BYTES = 64 * 1024
KEEP_ALIVE_SECONDS = 75.0


@dataclass
class Request:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    remote: str = ""


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)


App = Callable[[Request], Awaitable[Response]]


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def encode_response(response: Response, keep_alive: bool, head_only: bool = False) -> bytes:
    """The response's bytes; for HEAD, the head GET would send (its Content-Length too) without the body."""
    head = [f"HTTP/1.1 {response.status} {_reason(response.status)}",
            f"Content-Type: {response.content_type}",
            f"Content-Length: {len(response.body)}"]
    head += [f"{name}: {value}" for name, value in response.headers]
    if not keep_alive:
        head.append("Connection: close")
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + (b"" if head_only else response.body)


class ConnectionTracker:
    """Open connections and requests in progress, so that shutdown can drain them."""

    def __init__(self) -> None:
        self.connections: set[HttpProtocol] = set()
        self.closing = False
        self.busy = 0
        self.idle = asyncio.Event()
        self.idle.set()

    def close_idle(self) -> None:
        self.closing = True
        for connection in list(self.connections):
            if not connection.busy:
                connection.close()


class HttpProtocol(asyncio.Protocol):
    def __init__(self, app: App, tracker: ConnectionTracker, max_body: int, on_rejected: Callable[[Request | None, Response], None]):
        self._app = app
        self._tracker = tracker
        self._max_body = max_body
        self._on_rejected = on_rejected
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None
        self._remote = ""
        self._idle_timer: asyncio.TimerHandle | None = None
        self.busy = False

    # asyncio callbacks
    def connection_made(self, transport) -> None:
        self._transport = transport
        peer = transport.get_extra_info("peername")
        self._remote = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else ""
        self._tracker.connections.add(self)
        self._arm_idle_timer()

    def connection_lost(self, exc) -> None:
        self._tracker.connections.discard(self)
        if self._idle_timer:
            self._idle_timer.cancel()
        self._transport = None

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if not self.busy:
            self._next_request()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    # request handling
    def _arm_idle_timer(self) -> None:
        if self._idle_timer:
            self._idle_timer.cancel()
        self._idle_timer = asyncio.get_running_loop().call_later(KEEP_ALIVE_SECONDS, self.close)

    def _reject(self, status: int, message: str, request: Request | None = None) -> None:
        response = Response(status, (message + "\n").encode(), headers=[])
        self._on_rejected(request, response)
        if self._transport is not None:
            self._transport.write(encode_response(response, keep_alive=False))
            self._transport.close()
        self._buffer.clear()
        self.busy = True  # nothing more is read from this connection

    def _next_request(self) -> None:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > MAX_HEAD_BYTES:
                self._reject(431, f"request head larger than {MAX_HEAD_BYTES} bytes")
            return
        try:
            lines = bytes(self._buffer[:end]).decode("latin-1").split("\r\n")
            method, target, version = lines[0].split(" ")
            if not version.startswith("HTTP/1."):
                raise ValueError(version)
            headers: dict[str, str] = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if not _ or not name or name != name.strip():
                    raise ValueError(line)
                headers[name.lower()] = value.strip()
        except ValueError:
            self._reject(400, "malformed HTTP request head")
            return
        path, _, query = target.partition("?")
        request = Request(method, path, query, headers, b"", self._remote)
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self._reject(411, "send the body with a Content-Length header; chunked bodies are not accepted", request)
            return
        length_text = headers.get("content-length", "0") or "0"
        if not length_text.isdigit():
            self._reject(400, f"Content-Length {length_text!r} is not a number", request)
            return
        length = int(length_text)
        if length > self._max_body:
            self._reject(413, f"body of {length} bytes is over the {self._max_body}-byte limit", request)
            return
        start = end + 4
        if len(self._buffer) < start + length:
            return
        request.body = bytes(self._buffer[start:start + length])
        del self._buffer[:start + length]
        keep_alive = headers.get("connection", "").lower() != "close" and (
            version == "HTTP/1.1" or headers.get("connection", "").lower() == "keep-alive")
        self.busy = True
        self._tracker.busy += 1
        self._tracker.idle.clear()
        asyncio.get_running_loop().create_task(self._respond(request, keep_alive))

    async def _respond(self, request: Request, keep_alive: bool) -> None:
        try:
            response = await self._app(request)
        except Exception:  # noqa: BLE001 - the app maps errors itself; this is the last guard
            log.exception("unhandled error answering %s %s", request.method, request.path)
            response = Response(500, b"internal server error\n")
        finally:
            self._tracker.busy -= 1
            if self._tracker.busy == 0:
                self._tracker.idle.set()
        keep_alive = keep_alive and not self._tracker.closing
        if self._transport is None:
            return
        self._transport.write(encode_response(response, keep_alive, head_only=request.method == "HEAD"))
        if not keep_alive:
            self._transport.close()
            return
        self.busy = False
        self._arm_idle_timer()
        if self._buffer:
            self._next_request()
