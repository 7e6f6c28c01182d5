"""Adaptive micro-batching: one predict_fn call for the rows of many concurrent requests.

A one-row predict_proba of a ColumnTransformer pipeline costs ~10 ms, nearly all of it
scikit-learn's per-call validation (DESIGN.md, "Measured here"); 50 rows cost about the same.
So while one predict runs (in a worker thread, keeping the event loop free to read requests),
arriving requests queue up, and the next predict takes all of them at once. An idle server
predicts immediately: batching adds no wait at low load, and amortizes the per-call cost under load.

Rows are combined and split by type (numpy arrays, pandas frames, lists, and dicts/tuples of
those), so any inference.py whose input_fn returns rows and whose predict_fn returns one result
per row can be batched. If a batched predict fails, each request is predicted alone, so one
request cannot fail its neighbours.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

log = logging.getLogger(__name__)


def row_count(data: Any) -> int:
    shape = getattr(data, "shape", None)
    return int(shape[0]) if shape else len(data)


def combine(parts: list[Any]) -> Any:
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    if type(first).__name__ == "DataFrame":
        import pandas

        return pandas.concat(parts, ignore_index=True)
    if hasattr(first, "shape"):
        import numpy

        return numpy.concatenate(parts)
    if isinstance(first, list):
        return [row for part in parts for row in part]
    raise TypeError(f"cannot batch input_fn results of type {type(first).__name__}")


def split(prediction: Any, sizes: list[int]) -> list[Any]:
    """The inverse of combine for predict_fn's result: one slice per request, in order."""
    if len(sizes) == 1:
        return [prediction]
    if isinstance(prediction, dict):
        columns = {key: split(value, sizes) for key, value in prediction.items()}
        return [{key: columns[key][index] for key in prediction} for index in range(len(sizes))]
    if isinstance(prediction, tuple):
        columns = [split(value, sizes) for value in prediction]
        return [tuple(column[index] for column in columns) for index in range(len(sizes))]
    if row_count(prediction) != sum(sizes):
        raise ValueError(f"predict_fn returned {row_count(prediction)} rows for {sum(sizes)}")
    slices, start = [], 0
    for size in sizes:
        slices.append(prediction[start:start + size] if hasattr(prediction, "__getitem__") else None)
        start += size
    return slices


def batchable(data: Any) -> bool:
    return type(data).__name__ == "DataFrame" or hasattr(data, "shape") or isinstance(data, list)


class MicroBatcher:
    """Runs `predict` over batches of concurrent requests' rows (at most `max_rows` rows a batch)."""

    def __init__(self, predict: Callable[[Any], Any], max_rows: int = 512):
        self._predict = predict
        self._max_rows = max_rows
        self._pending: list[tuple[Any, int, asyncio.Future]] = []
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="predict")
        self._task: asyncio.Task | None = None
        self.batches = 0
        self.batched_requests = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._executor.shutdown(wait=True)

    async def predict(self, data: Any) -> Any:
        if not batchable(data):
            return await asyncio.get_running_loop().run_in_executor(self._executor, self._predict, data)
        future = asyncio.get_running_loop().create_future()
        self._pending.append((data, row_count(data), future))
        self._wakeup.set()
        return await future

    def _take(self) -> list[tuple[Any, int, asyncio.Future]]:
        batch, rows = [], 0
        while self._pending and (not batch or rows + self._pending[0][1] <= self._max_rows):
            item = self._pending.pop(0)
            batch.append(item)
            rows += item[1]
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._pending:
                self._wakeup.clear()
                await self._wakeup.wait()
            batch = self._take()
            self.batches += 1
            self.batched_requests += len(batch)
            try:
                results = await loop.run_in_executor(self._executor, self._predict_batch, batch)
            except Exception as error:  # noqa: BLE001 - each request gets its own error
                results = [error] * len(batch)
            for (_, _, future), result in zip(batch, results):
                if future.done():
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    def _predict_batch(self, batch: list[tuple[Any, int, asyncio.Future]]) -> list[Any]:
        if len(batch) > 1:
            try:
                return split(self._predict(combine([data for data, _, _ in batch])), [rows for _, rows, _ in batch])
            except Exception:  # noqa: BLE001 - retry alone below, so the culprit fails by itself
                log.warning("batched predict of %d requests failed; predicting each alone", len(batch), exc_info=True)
        results: list[Any] = []
        for data, _, _ in batch:
            try:
                results.append(self._predict(data))
            except Exception as error:  # noqa: BLE001
                results.append(error)
        return results
