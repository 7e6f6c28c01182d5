"""Writes data capture files in SageMaker's layout, off the request path.

A request only appends its exchange to a bounded in-memory buffer (`offer_exchange`: no lock, no
thread wake-up, about a microsecond); one background thread wakes every `drain_interval`, turns
what has gathered into records and appends them to
`<capture-dir>/<endpoint>/<variant>/yyyy/mm/dd/hh/<MM>-<SS>-<mmm>-<uuid>.jsonl`, rolling to a new
file when the hour changes. Waking per interval rather than per record matters: a thread woken for
every request fights the event loop for the GIL (measured: a 44% throughput loss at 4,000 req/s).
A full buffer drops the exchange and counts it; the request never waits. `close()` drains the
buffer, so every exchange offered before it is on disk. Closed files go to `on_closed` (the S3
uploader). The record format is monitoring.capture's.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from monitoring.capture import CapturedPayload, CaptureRecord, file_name, hour_folder

log = logging.getLogger(__name__)


class CaptureWriter:
    def __init__(
        self,
        root: Path,
        endpoint: str,
        variant: str,
        capacity: int = 10_000,
        on_closed: Callable[[Path], None] | None = None,
        flush_interval: float = 1.0,
        drain_interval: float = 0.05,
    ):
        self.root = Path(root)
        self.endpoint = endpoint
        self.variant = variant
        self._capacity = capacity
        self._buffer: deque = deque()  # append/popleft are atomic: no lock on the request path
        self._on_closed = on_closed
        self._flush_interval = flush_interval
        self._drain_interval = drain_interval
        self._stop = threading.Event()
        self.written = 0
        self.dropped = 0
        self.failed = 0
        self._file = None
        self._path: Path | None = None
        self._hour: tuple | None = None
        self._thread = threading.Thread(target=self._run, name="capture-writer", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def offer(self, record: CaptureRecord) -> bool:
        """Buffers a record; False (and counted as dropped) when the buffer is full."""
        if len(self._buffer) >= self._capacity:
            self.dropped += 1
            return False
        self._buffer.append(record)
        return True

    def offer_exchange(self, body: bytes, content_type: str, output: bytes, output_type: str,
                       inference_id: str | None) -> bool:
        """Buffers a request and its answer as they are; the writer thread makes the record."""
        return self.offer((body, content_type, output, output_type, inference_id, time.time()))

    def close(self, timeout: float | None = None) -> None:
        """Writes everything offered so far, closes the open file, stops the thread."""
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        last_flush = time.monotonic()
        while True:
            stopping = self._stop.wait(self._drain_interval)
            self._drain()
            if stopping:
                self._close_file()
                return
            if time.monotonic() - last_flush >= self._flush_interval:
                self._flush()
                last_flush = time.monotonic()

    def _drain(self) -> None:
        while self._buffer:
            records = []
            while self._buffer and len(records) < 1000:
                records.append(_as_record(self._buffer.popleft()))
            try:
                self._write(records)
            except OSError:
                self.failed += len(records)
                log.exception("capture: could not write %d record(s) under %s", len(records), self.root)

    def _write(self, records: list[CaptureRecord]) -> None:
        start = 0
        for index in range(1, len(records) + 1):
            if index == len(records) or self._hour_of(records[index]) != self._hour_of(records[start]):
                self._open_for(records[start])
                self._file.write(b"".join(record.to_line() for record in records[start:index]))
                self.written += index - start
                start = index

    @staticmethod
    def _hour_of(record: CaptureRecord) -> tuple:
        at = record.inference_time or datetime.now(timezone.utc)
        return at.year, at.month, at.day, at.hour

    def _open_for(self, record: CaptureRecord) -> None:
        hour = self._hour_of(record)
        if hour == self._hour:
            return
        self._close_file()
        at = record.inference_time or datetime.now(timezone.utc)
        folder = self.root / hour_folder(self.endpoint, self.variant, at)
        folder.mkdir(parents=True, exist_ok=True)
        self._path = folder / file_name(at)
        self._file = open(self._path, "ab")
        self._hour = hour

    def _flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def _close_file(self) -> None:
        if self._file is None:
            return
        self._file.close()
        closed, self._file, self._path, self._hour = self._path, None, None, None
        if self._on_closed is not None:
            self._on_closed(closed)


def _as_record(item: CaptureRecord | tuple) -> CaptureRecord:
    if isinstance(item, CaptureRecord):
        return item
    body, content_type, output, output_type, inference_id, at = item
    return CaptureRecord.new(CapturedPayload.from_bytes(body, content_type),
                             CapturedPayload.from_bytes(output, output_type), inference_id=inference_id,
                             at=datetime.fromtimestamp(at, timezone.utc))
