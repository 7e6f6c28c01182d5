"""Writes data capture files in SageMaker's layout, off the request path.

A request only enqueues its record (`offer`): a bounded queue, drained by one background thread
that appends to `<capture-dir>/<endpoint>/<variant>/yyyy/mm/dd/hh/<MM>-<SS>-<mmm>-<uuid>.jsonl`
and rolls to a new file when the hour changes. A full queue drops the record and counts it; the
request is never made to wait. `close()` drains the queue, so every record offered before it is on
disk. Closed files go to `on_closed` (the S3 uploader). The record format is monitoring.capture's.
"""

from __future__ import annotations

import logging
import queue
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from monitoring.capture import CaptureRecord, file_name, hour_folder

log = logging.getLogger(__name__)

_STOP = object()


class CaptureWriter:
    def __init__(
        self,
        root: Path,
        endpoint: str,
        variant: str,
        capacity: int = 10_000,
        on_closed: Callable[[Path], None] | None = None,
        flush_interval: float = 1.0,
    ):
        self.root = Path(root)
        self.endpoint = endpoint
        self.variant = variant
        self._queue: queue.Queue = queue.Queue(maxsize=capacity)
        self._on_closed = on_closed
        self._flush_interval = flush_interval
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
        return self._queue.qsize()

    def offer(self, record: CaptureRecord) -> bool:
        """Enqueues a record; False (and counted as dropped) when the buffer is full."""
        try:
            self._queue.put_nowait(record)
            return True
        except queue.Full:
            self.dropped += 1
            return False

    def close(self, timeout: float | None = None) -> None:
        """Writes everything offered so far, closes the open file, stops the thread."""
        self._queue.put(_STOP)
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=self._flush_interval)
            except queue.Empty:
                self._flush()
                continue
            if item is _STOP:
                self._close_file()
                return
            try:
                self._write(item)
            except OSError:
                self.failed += 1
                log.exception("capture: could not write a record under %s", self.root)

    def _write(self, record: CaptureRecord) -> None:
        at = record.inference_time or datetime.now(timezone.utc)
        hour = (at.year, at.month, at.day, at.hour)
        if hour != self._hour:
            self._close_file()
            folder = self.root / hour_folder(self.endpoint, self.variant, at)
            folder.mkdir(parents=True, exist_ok=True)
            self._path = folder / file_name(at)
            self._file = open(self._path, "ab")
            self._hour = hour
        self._file.write(record.to_line())
        self.written += 1
        if self._queue.empty():
            self._flush()

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
