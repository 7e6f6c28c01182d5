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
import time
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
        # Drain whatever has queued up and write it in one go, flushing at most once per interval:
        # one wake-up and one write per burst, not per record, keeps the thread off the GIL.
        last_flush = time.monotonic()
        while True:
            try:
                batch = [self._queue.get(timeout=self._flush_interval)]
            except queue.Empty:
                batch = []
            while len(batch) < 1000:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = _STOP in batch
            records = [item for item in batch if item is not _STOP]
            if records:
                try:
                    self._write(records)
                except OSError:
                    self.failed += len(records)
                    log.exception("capture: could not write %d record(s) under %s", len(records), self.root)
            if stop:
                self._close_file()
                return
            if time.monotonic() - last_flush >= self._flush_interval:
                self._flush()
                last_flush = time.monotonic()

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
