"""One monitoring window's data, streamed into sketches and counters.

Records arrive in batches (a few tens of thousands of rows); each batch is parsed in
bulk, folded into per-feature state and dropped, so memory depends on the number of
features, not on the number of records. Two windows' states merge, so that parts of a
window can be read in parallel.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field

import numpy as np
import orjson
import pandas

from monitoring.formats import FeatureStatistics, Statistics
from monitoring.multivariate import PcaModel
from monitoring.sketches import WeightedCdf, equal_width_buckets, new_sketch, to_layout

MAX_CATEGORIES = 10_000  # distinct values kept per string feature; more are counted as out of domain


@dataclass
class NumericState:
    integral: bool
    present: int = 0
    missing: int = 0
    wrong_type: int = 0  # present values that are not numbers (or not whole, for an Integral feature)
    negative: int = 0
    total: float = 0.0
    mean: float = 0.0
    m2: float = 0.0  # sum of squared deviations from the mean
    low: float = math.inf
    high: float = -math.inf
    sketch: object = field(default_factory=new_sketch)

    def add(self, values: np.ndarray, wrong_type: int) -> None:
        """values: floats of one batch, NaN where missing or not a number."""
        numbers = values[~np.isnan(values)]
        self.missing += len(values) - len(numbers) - wrong_type
        self.wrong_type += wrong_type
        if self.integral:
            self.wrong_type += int(np.count_nonzero(numbers != np.floor(numbers)))
        if not len(numbers):
            return
        self.negative += int(np.count_nonzero(numbers < 0))
        batch_mean = float(numbers.mean())
        self._combine(len(numbers), float(numbers.sum()), batch_mean, float(((numbers - batch_mean) ** 2).sum()), float(numbers.min()), float(numbers.max()))
        self.sketch.update(numbers)

    def _combine(self, count: int, total: float, mean: float, m2: float, low: float, high: float) -> None:
        # Chan et al.'s parallel variance: exact merge of two partial means and M2s.
        n = self.present + count
        delta = mean - self.mean
        self.m2 += m2 + delta * delta * self.present * count / n
        self.mean += delta * count / n
        self.present, self.total = n, self.total + total
        self.low, self.high = min(self.low, low), max(self.high, high)

    def merge(self, other: NumericState) -> None:
        self.missing += other.missing
        self.wrong_type += other.wrong_type
        self.negative += other.negative
        if other.present:
            self._combine(other.present, other.total, other.mean, other.m2, other.low, other.high)
            self.sketch.merge(other.sketch)

    def statistics(self, name: str) -> FeatureStatistics:
        feature = FeatureStatistics(name, "Integral" if self.integral else "Fractional", self.present + self.wrong_type, self.missing)
        feature.sum, feature.sketch = self.total, to_layout(self.sketch)
        if self.present:
            feature.mean, feature.std_dev = self.mean, math.sqrt(self.m2 / self.present)
            feature.min, feature.max = self.low, self.high
            feature.buckets = equal_width_buckets(WeightedCdf.from_sketch(self.sketch), self.low, self.high, self.present)
        return feature

    def __getstate__(self) -> dict:
        state = dict(vars(self))
        state["sketch"] = self.sketch.serialize()
        return state

    def __setstate__(self, state: dict) -> None:
        from datasketches import kll_doubles_sketch

        state["sketch"] = kll_doubles_sketch.deserialize(state["sketch"])
        vars(self).update(state)


@dataclass
class StringState:
    present: int = 0
    missing: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    overflow: int = 0  # values not kept because MAX_CATEGORIES distinct values were already seen

    def add(self, values: pandas.Series) -> None:
        present = values.dropna()
        self.missing += len(values) - len(present)
        self.present += len(present)
        self._count(present.astype(str).value_counts().items())

    def _count(self, items) -> None:
        counts = self.counts
        for value, count in items:
            if value in counts:
                counts[value] += int(count)
            elif len(counts) < MAX_CATEGORIES:
                counts[value] = int(count)
            else:
                self.overflow += int(count)

    def merge(self, other: StringState) -> None:
        self.present += other.present
        self.missing += other.missing
        self.overflow += other.overflow
        self._count(other.counts.items())

    def statistics(self, name: str) -> FeatureStatistics:
        return FeatureStatistics(name, "String", self.present, self.missing, distinct_count=float(len(self.counts)), categories={k: float(v) for k, v in sorted(self.counts.items())})


@dataclass
class ColumnCounts:
    """Rows whose shape did not match the baseline's columns."""

    rows: int = 0
    missing_columns: int = 0  # rows with fewer columns than the baseline has features
    extra_columns: int = 0  # rows with more
    absent: dict[str, int] = field(default_factory=dict)  # feature -> rows that did not have it
    unreadable: dict[str, int] = field(default_factory=dict)  # reason -> payloads that could not be parsed

    def merge(self, other: ColumnCounts) -> None:
        self.rows += other.rows
        self.missing_columns += other.missing_columns
        self.extra_columns += other.extra_columns
        for mine, theirs in ((self.absent, other.absent), (self.unreadable, other.unreadable)):
            for key, count in theirs.items():
                mine[key] = mine.get(key, 0) + count

    def note(self, reason: str, count: int = 1) -> None:
        self.unreadable[reason] = self.unreadable.get(reason, 0) + count


class FrameSide:
    """One side of the traffic (the model's input or its output): its features' states."""

    def __init__(self, features: list[tuple[str, str]]):
        self.names = [name for name, _ in features]
        self.states: list[NumericState | StringState] = [
            StringState() if kind == "String" else NumericState(integral=kind == "Integral") for _, kind in features
        ]
        self.columns = ColumnCounts()

    def merge(self, other: FrameSide) -> None:
        for mine, theirs in zip(self.states, other.states):
            mine.merge(theirs)
        self.columns.merge(other.columns)

    def statistics(self) -> list[FeatureStatistics]:
        return [state.statistics(name) for name, state in zip(self.names, self.states)]

    def add_csv(self, payloads: list[str] | list[bytes]) -> dict[int, np.ndarray] | None:
        """Parses CSV payloads (one or many rows each, no header) and folds them in; returns the numeric columns."""
        if not payloads:
            return None
        try:
            blob = b"\n".join(payloads)
        except TypeError:  # some payloads came as text (records read the slow way)
            blob = b"\n".join(p if isinstance(p, bytes) else p.encode() for p in payloads)
        if b"\r" in blob:
            blob = blob.replace(b"\r", b"")
        width = len(self.names)
        # Fields per line from byte positions (one pass in numpy, not one call per row).
        raw = np.frombuffer(blob, dtype=np.uint8)
        ends = np.append(np.flatnonzero(raw == 10), len(raw))
        commas = np.concatenate([[0], np.cumsum(raw == 44, dtype=np.int32)])
        starts = np.concatenate([[0], ends[:-1] + 1])
        per_line = commas[ends] - commas[starts]
        odd = np.flatnonzero((per_line != width - 1) & (ends > starts))
        if len(odd):
            blob = self._reshape(blob.decode("utf-8", "replace").split("\n"), odd).encode()
        string_columns = {j: object for j, state in enumerate(self.states) if isinstance(state, StringState)}
        if not blob.strip():
            self.columns.note("CSV payload without rows", len(payloads))
            return None
        try:
            # Quotes are plain characters: one stray quote must not swallow the rows after it.
            frame = pandas.read_csv(io.BytesIO(blob), header=None, names=range(width), dtype=string_columns, engine="c", quoting=csv.QUOTE_NONE)
        except (pandas.errors.ParserError, UnicodeDecodeError):
            # Bytes that are not UTF-8 and the like: the standard library's reader takes each line as it comes.
            rows = [row[:width] + [None] * (width - len(row)) for row in csv.reader(blob.decode("utf-8", "replace").splitlines(), quoting=csv.QUOTE_NONE) if row]
            frame = pandas.DataFrame(rows, columns=range(width), dtype=object).replace("", None)
        return self._add(frame)

    def _reshape(self, lines: list[str], odd: np.ndarray) -> str:
        """Pads rows with too few fields and cuts rows with too many, counting both."""
        width = len(self.names)
        for index in odd:
            fields = lines[index].split(",")
            if len(fields) < width:
                self.columns.missing_columns += 1
                for name in self.names[len(fields):]:
                    self.columns.absent[name] = self.columns.absent.get(name, 0) + 1
                fields += [""] * (width - len(fields))
            else:
                self.columns.extra_columns += 1
                fields = fields[:width]
            lines[index] = ",".join(fields)
        return "\n".join(lines)

    def add_rows(self, rows: list[list]) -> dict[int, np.ndarray] | None:
        """Rows already split into values (from JSON payloads), in feature order, None for missing."""
        if not rows:
            return None
        return self._add(pandas.DataFrame(rows, columns=range(len(self.names)), dtype=object))

    def _add(self, frame: pandas.DataFrame) -> dict[int, np.ndarray]:
        """Folds a batch in; returns the numeric columns as floats (NaN = missing or not a number)."""
        self.columns.rows += len(frame)
        numeric: dict[int, np.ndarray] = {}
        for j, state in enumerate(self.states):
            column = frame[j]
            if isinstance(state, StringState):
                state.add(column)
                continue
            if column.dtype == object or column.dtype.kind not in "iuf":
                present = int(column.notna().sum())
                column = pandas.to_numeric(column, errors="coerce")
                wrong = present - int(column.notna().sum())
            else:
                wrong = 0
            numeric[j] = column.to_numpy(dtype=np.float64, na_value=np.nan)
            state.add(numeric[j], wrong)
        return numeric


class Window:
    """All that a monitoring run keeps about its window: mergeable, bounded in size."""

    def __init__(self, inputs: list[tuple[str, str]], outputs: list[tuple[str, str]], pca: PcaModel | None):
        self.inputs = FrameSide(inputs)
        self.outputs = FrameSide(outputs)
        self.pca = pca
        self.pca_columns = [self.inputs.names.index(n) for n in pca.features] if pca and set(pca.features) <= set(self.inputs.names) else None
        self.pca_errors = NumericState(integral=False)
        self.records = 0
        self.capture_counts: dict[str, int] = {}  # outside_window, unparseable_time, ...
        self.matched_truth = np.empty((0, 3))  # rows of (probability, predicted label, true label)

    def merge(self, other: Window) -> None:
        self.inputs.merge(other.inputs)
        self.outputs.merge(other.outputs)
        self.pca_errors.merge(other.pca_errors)
        self.records += other.records
        for key, count in other.capture_counts.items():
            self.capture_counts[key] = self.capture_counts.get(key, 0) + count
        self.matched_truth = np.concatenate([self.matched_truth, other.matched_truth])

    def count(self, key: str, value: int) -> None:
        if value:
            self.capture_counts[key] = self.capture_counts.get(key, 0) + value

    def add_inputs(self, csv_payloads: list[str], json_payloads: list[str]) -> None:
        self._add_reconstruction_errors(self.inputs.add_csv(csv_payloads))
        self._add_reconstruction_errors(self.inputs.add_rows(self._json_rows(json_payloads, self.inputs, "instances")))

    def add_input_frame(self, frame: pandas.DataFrame) -> None:
        """Rows already in memory, columns in baseline feature order (names are not read)."""
        self.records += len(frame)
        self._add_reconstruction_errors(self.inputs._add(frame.set_axis(range(frame.shape[1]), axis=1)))

    def _add_reconstruction_errors(self, numeric: dict[int, np.ndarray] | None) -> None:
        if numeric is not None and self.pca_columns is not None:
            self.pca_errors.add(self.pca.errors(np.column_stack([numeric[j] for j in self.pca_columns])), 0)

    def add_outputs(self, csv_payloads: list[str], json_payloads: list[str]) -> None:
        self.outputs.add_csv(csv_payloads)
        self.outputs.add_rows(self._json_rows(json_payloads, self.outputs, "predictions"))

    @staticmethod
    def _json_rows(payloads: list[str], side: FrameSide, key: str) -> list[list]:
        rows: list[list] = []
        for payload in payloads:
            try:
                document = orjson.loads(payload)
                items = document[key] if isinstance(document, dict) else document
                if not isinstance(items, list):
                    raise TypeError
            except (orjson.JSONDecodeError, KeyError, TypeError):
                side.columns.note(f"JSON payload without a list under {key!r}")
                continue
            for item in items:
                row = json_row(item, side.names, side.columns)
                if row is not None:
                    rows.append(row)
        return rows

    def statistics(self) -> Statistics:
        return Statistics(self.records, self.inputs.statistics() + self.outputs.statistics())


def json_row(item: object, names: list[str], columns: ColumnCounts) -> list | None:
    """One JSON instance (a list by position, an object by name, or a bare value) as a row."""
    width = len(names)
    if isinstance(item, dict):
        row = [item.get(name) for name in names]
        absent = [name for name in names if name not in item]
        if absent:
            columns.missing_columns += 1
            for name in absent:
                columns.absent[name] = columns.absent.get(name, 0) + 1
        if len(item) > width - len(absent):
            columns.extra_columns += 1
        return row
    if not isinstance(item, list):
        item = [item]
    if len(item) < width:
        columns.missing_columns += 1
        for name in names[len(item):]:
            columns.absent[name] = columns.absent.get(name, 0) + 1
        return list(item) + [None] * (width - len(item))
    if len(item) > width:
        columns.extra_columns += 1
    return list(item[:width])
