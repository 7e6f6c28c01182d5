"""SageMaker data capture records: the one place that reads and writes them.

A record is one JSON object a line (see shared/DESIGN.md, "File formats"):

    {"captureData": {"endpointInput": {...}, "endpointOutput": {...}},
     "eventMetadata": {"eventId": "...", "inferenceId": "...", "inferenceTime": "2026-01-02T03:04:05Z"},
     "eventVersion": "0"}

Files live under `<prefix>/<endpoint>/<variant>/yyyy/mm/dd/hh/<MM>-<SS>-<mmm>-<uuid>.jsonl`.
The server writes records with `CaptureRecord.to_line`; the monitor reads them with
`parse_line`, which never raises on a bad line but says why it could not use it.
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import PurePosixPath

import orjson

ENCODINGS = ("CSV", "JSON", "BASE64")
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


class CaptureFormatError(ValueError):
    """A line that is not a usable capture record; the message says why."""


@dataclass(frozen=True, slots=True)
class CapturedPayload:
    """One side of a captured request: what came in, or what went out."""

    content_type: str
    data: str
    encoding: str  # one of ENCODINGS

    @classmethod
    def from_bytes(cls, body: bytes, content_type: str) -> CapturedPayload:
        """Chooses the encoding SageMaker would: CSV and JSON as text, anything else as BASE64."""
        media_type = content_type.split(";", 1)[0].strip().lower()
        encoding = "CSV" if media_type == "text/csv" else "JSON" if media_type.endswith("json") else "BASE64"
        if encoding != "BASE64":
            try:
                return cls(content_type, body.decode("utf-8"), encoding)
            except UnicodeDecodeError:
                encoding = "BASE64"
        return cls(content_type, base64.b64encode(body).decode("ascii"), encoding)

    def text(self) -> str:
        """The payload as text, whatever its encoding; BASE64 is decoded as UTF-8."""
        if self.encoding == "BASE64":
            try:
                return base64.b64decode(self.data, validate=True).decode("utf-8")
            except (ValueError, UnicodeDecodeError) as error:
                raise CaptureFormatError(f"BASE64 payload is not UTF-8 text: {error}") from None
        return self.data

    def media_type(self) -> str:
        """The content type without parameters, lower case: `text/csv`, `application/json`."""
        return self.content_type.split(";", 1)[0].strip().lower()

    def _as_json(self, mode: str) -> dict:
        return {"observedContentType": self.content_type, "mode": mode, "data": self.data, "encoding": self.encoding}


@dataclass(frozen=True, slots=True)
class CaptureRecord:
    event_id: str
    inference_time: datetime | None  # None when the record's time could not be parsed
    inference_id: str | None = None
    input: CapturedPayload | None = None
    output: CapturedPayload | None = None

    @classmethod
    def new(
        cls,
        input: CapturedPayload | None,
        output: CapturedPayload | None,
        inference_id: str | None = None,
        at: datetime | None = None,
    ) -> CaptureRecord:
        """A record for a request answered now (or `at`), with a fresh event id."""
        when = (at or datetime.now(timezone.utc)).astimezone(timezone.utc)
        return cls(str(uuid.uuid4()), when, inference_id or None, input, output)

    def to_line(self) -> bytes:
        """The record as one JSON line, newline included, as SageMaker writes it."""
        capture: dict = {}
        if self.input is not None:
            capture["endpointInput"] = self.input._as_json("INPUT")
        if self.output is not None:
            capture["endpointOutput"] = self.output._as_json("OUTPUT")
        metadata: dict = {"eventId": self.event_id}
        if self.inference_id:
            metadata["inferenceId"] = self.inference_id
        if self.inference_time is not None:
            metadata["inferenceTime"] = self.inference_time.strftime(_TIME_FORMAT)
        record = {"captureData": capture, "eventMetadata": metadata, "eventVersion": "0"}
        return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)


def parse_time(text: str) -> datetime | None:
    """Parses SageMaker's inferenceTime (`2026-01-02T03:04:05Z`, fractions allowed); None if it cannot."""
    if not isinstance(text, str) or not text:
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.replace(tzinfo=timezone.utc) if parsed.tzinfo is None else parsed.astimezone(timezone.utc)


def _payload(side: object, name: str) -> CapturedPayload | None:
    if side is None:
        return None
    if not isinstance(side, dict) or not isinstance(side.get("data"), str):
        raise CaptureFormatError(f"{name} has no text 'data'")
    encoding = str(side.get("encoding", "CSV")).upper()
    if encoding not in ENCODINGS:
        raise CaptureFormatError(f"{name} has encoding {encoding!r}; allowed: {', '.join(ENCODINGS)}")
    return CapturedPayload(str(side.get("observedContentType", "")), side["data"], encoding)


def parse_line(line: bytes | str) -> CaptureRecord:
    """One capture line as a record. Raises CaptureFormatError naming what is wrong.

    An unparseable inferenceTime is not an error: the record comes back with
    `inference_time=None` so that the caller can count it and go on.
    """
    try:
        raw = orjson.loads(line)
    except orjson.JSONDecodeError as error:
        raise CaptureFormatError(f"not JSON: {error}") from None
    if not isinstance(raw, dict):
        raise CaptureFormatError("not a JSON object")
    capture = raw.get("captureData")
    metadata = raw.get("eventMetadata")
    if not isinstance(capture, dict) or not isinstance(metadata, dict):
        raise CaptureFormatError("missing 'captureData' or 'eventMetadata'")
    inference_id = metadata.get("inferenceId")
    return CaptureRecord(
        event_id=str(metadata.get("eventId", "")),
        inference_time=parse_time(metadata.get("inferenceTime", "")),
        inference_id=str(inference_id) if inference_id else None,
        input=_payload(capture.get("endpointInput"), "endpointInput"),
        output=_payload(capture.get("endpointOutput"), "endpointOutput"),
    )


def hour_folder(endpoint: str, variant: str, at: datetime) -> PurePosixPath:
    """`<endpoint>/<variant>/yyyy/mm/dd/hh`, the folder SageMaker writes an hour's capture into."""
    at = at.astimezone(timezone.utc)
    return PurePosixPath(endpoint, variant, f"{at:%Y}", f"{at:%m}", f"{at:%d}", f"{at:%H}")


def file_name(opened_at: datetime) -> str:
    """`<MM>-<SS>-<mmm>-<uuid>.jsonl`, named for the moment the file was opened."""
    at = opened_at.astimezone(timezone.utc)
    return f"{at:%M}-{at:%S}-{at.microsecond // 1000:03d}-{uuid.uuid4()}.jsonl"


# ---------------------------------------------------------------- the monitor's bulk reader


@dataclass(slots=True)
class CaptureColumns:
    """Many records' payloads as plain lists, split by payload format: the monitor's fast path.

    Reading a million records one CaptureRecord at a time costs more than the whole
    analysis; this reader keeps only the texts the monitor parses in bulk, and counts
    every line it could not use by reason instead of raising.
    """

    csv_inputs: list[str | bytes]
    json_inputs: list[str]
    csv_outputs: list[str | bytes]
    json_outputs: list[str]
    # (eventId, inferenceId, output media is JSON, output text) for matching ground truth; only when asked for
    keyed_outputs: list[tuple[str, str | None, bool, str]]
    records: int = 0
    outside_window: int = 0
    unparseable_time: int = 0
    without_input: int = 0
    without_output: int = 0
    problems: dict[str, int] | None = None  # reason -> count of lines that could not be used

    @classmethod
    def empty(cls) -> CaptureColumns:
        return cls([], [], [], [], [], problems={})

    def problem(self, reason: str) -> None:
        self.problems[reason] = self.problems.get(reason, 0) + 1


def _side_text(side: dict) -> tuple[bool, str]:
    """(is JSON, text) of one captured side; raises CaptureFormatError for anything else."""
    data = side["data"]
    encoding = side.get("encoding", "CSV")
    if encoding == "BASE64":
        try:
            data = base64.b64decode(data, validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            raise CaptureFormatError("BASE64 payload is not UTF-8 text") from None
    elif encoding not in ("CSV", "JSON"):
        raise CaptureFormatError(f"encoding {encoding!r} is not one of {', '.join(ENCODINGS)}")
    if not isinstance(data, str):
        raise CaptureFormatError("payload 'data' is not text")
    media = side.get("observedContentType", "")
    if "csv" in media or (not media and encoding == "CSV"):
        return False, data
    if "json" in media or (not media and encoding == "JSON"):
        return True, data
    raise CaptureFormatError(f"content type {media!r} is neither CSV nor JSON")


# The one record shape that nearly all capture has (SageMaker's and CaptureRecord.to_line's
# CSV traffic, compact JSON), cut by byte search instead of parsing: JSON parsing and dict
# lookups cost more than the whole analysis of a record. A line without a backslash has
# no escapes, so the bytes between these markers are exactly the payload's text.
_CSV_IN = b'{"captureData":{"endpointInput":{"observedContentType":"text/csv","mode":"INPUT","data":"'
_CSV_OUT = b'","encoding":"CSV"},"endpointOutput":{"observedContentType":"text/csv","mode":"OUTPUT","data":"'
_METADATA = b'","encoding":"CSV"}},"eventMetadata":{'
_TIME = b'"inferenceTime":"'
_END = b'},"eventVersion":"0"}'


def read_columns(
    lines: list[bytes],
    into: CaptureColumns,
    start: datetime | None = None,
    end: datetime | None = None,
    keep_ids: bool = False,
) -> CaptureColumns:
    """Adds the usable payloads of `lines` to `into`, keeping records with start <= inferenceTime < end.

    With a window, a record whose time cannot be parsed is counted and left out; without
    one it is kept (and still counted). CSV payloads of the common record shape are added
    as bytes, others as text.
    """
    windowed = start is not None or end is not None
    times: dict = {}
    csv_in, csv_out = into.csv_inputs, into.csv_outputs
    n_in, n_out, n_meta, n_time = len(_CSV_IN), len(_CSV_OUT), len(_METADATA), len(_TIME)
    for line in lines:
        if line.startswith(_CSV_IN) and b"\\" not in line:
            middle = line.find(_CSV_OUT, n_in)
            metadata = line.find(_METADATA, middle + n_out) if middle > 0 else -1
            stamp_at = line.find(_TIME, metadata + n_meta) if metadata > 0 else -1
            closing = line.rfind(_END)
            if stamp_at > 0 and closing > stamp_at and not line[closing + len(_END):].strip():
                stamp = line[stamp_at + n_time:line.find(b'"', stamp_at + n_time)]
                when = times.get(stamp, _MISSING)
                if when is _MISSING:
                    when = times[stamp] = parse_time(stamp.decode("utf-8", "replace"))
                if when is None:
                    into.unparseable_time += 1
                    if windowed:
                        continue
                elif windowed and ((start is not None and when < start) or (end is not None and when >= end)):
                    into.outside_window += 1
                    continue
                into.records += 1
                csv_in.append(line[n_in:middle])
                csv_out.append(line[middle + n_out:metadata])
                if keep_ids:
                    _keep_ids(into, line[metadata + n_meta - 1:closing + 1], line[middle + n_out:metadata].decode())
                continue
        _read_line(line, into, start, end, keep_ids, times)
    return into


def _keep_ids(into: CaptureColumns, metadata: bytes, output: str) -> None:
    try:
        ids = orjson.loads(metadata)
    except orjson.JSONDecodeError:
        into.problem("eventMetadata is not JSON")
        return
    inference_id = ids.get("inferenceId")
    into.keyed_outputs.append((str(ids.get("eventId", "")), str(inference_id) if inference_id else None, False, output))


def _read_line(line: bytes, into: CaptureColumns, start: datetime | None, end: datetime | None, keep_ids: bool, times: dict) -> None:
    """Any other record: parsed as JSON, every encoding and content type, every odd case counted."""
    if not line.strip():
        return
    try:
        raw = orjson.loads(line)
        capture = raw["captureData"]
        metadata = raw["eventMetadata"]
        stamp = metadata.get("inferenceTime")
        when = parse_time(stamp) if isinstance(stamp, str) else None
        if when is None:
            into.unparseable_time += 1
            if start is not None or end is not None:
                return
        elif (start is not None and when < start) or (end is not None and when >= end):
            into.outside_window += 1
            return
        side_in = capture.get("endpointInput")
        side_out = capture.get("endpointOutput")
        parsed_in = _side_text(side_in) if side_in is not None else None
        parsed_out = _side_text(side_out) if side_out is not None else None
    except CaptureFormatError as error:
        into.problem(str(error))
        return
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        into.problem("not a capture record (JSON object with captureData and eventMetadata)")
        return
    into.records += 1
    if parsed_in is None:
        into.without_input += 1
    else:
        (into.json_inputs if parsed_in[0] else into.csv_inputs).append(parsed_in[1])
    if parsed_out is None:
        into.without_output += 1
        return
    (into.json_outputs if parsed_out[0] else into.csv_outputs).append(parsed_out[1])
    if keep_ids:
        inference_id = metadata.get("inferenceId")
        into.keyed_outputs.append((str(metadata.get("eventId", "")), str(inference_id) if inference_id else None, *parsed_out))


_MISSING = object()
