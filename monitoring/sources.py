"""Where capture and ground truth come from: a file, a folder tree, or an S3 prefix.

A source lists its files (skipping hour folders that lie wholly outside the window) and
reads each one as chunks of lines, so that no more than a chunk is held at a time.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from mlship.errors import UserError

CHUNK_BYTES = 16 * 1024 * 1024
_HOUR = re.compile(r"(?:^|/)(\d{4})/(\d{2})/(\d{2})/(\d{2})/[^/]*$")


@dataclass(frozen=True)
class Location:
    """A local folder or file, or an S3 prefix (bucket + key prefix)."""

    path: Path | None = None
    bucket: str | None = None
    prefix: str = ""

    @classmethod
    def parse(cls, text: str, what: str) -> Location:
        if text.startswith("s3://"):
            bucket, _, prefix = text[5:].partition("/")
            if not bucket:
                raise UserError(f"{what} {text!r} names no bucket; use s3://BUCKET/PREFIX")
            return cls(bucket=bucket, prefix=prefix)
        path = Path(text)
        if not path.exists():
            raise UserError(f"{what} {text!r} does not exist; give a capture file, a folder, or s3://BUCKET/PREFIX")
        return cls(path=path)

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.bucket else str(self.path)


@dataclass(frozen=True)
class S3Access:
    region: str | None = None
    endpoint_url: str | None = None

    def client(self):
        import boto3

        return boto3.client("s3", region_name=self.region, endpoint_url=self.endpoint_url)


def hour_of(key: str) -> datetime | None:
    """The hour a file's folder names (`.../yyyy/mm/dd/hh/file`), if it is in that layout."""
    found = _HOUR.search(key)
    if not found:
        return None
    try:
        return datetime(*map(int, found.groups()), tzinfo=timezone.utc)
    except ValueError:
        return None


def _in_window(key: str, start: datetime | None, end: datetime | None) -> bool:
    hour = hour_of(key)
    if hour is None:
        return True
    return not ((start is not None and hour + timedelta(hours=1) <= start) or (end is not None and hour >= end))


def list_files(location: Location, access: S3Access, start: datetime | None = None, end: datetime | None = None) -> list[tuple[str, int]]:
    """(file, size in bytes) of every .jsonl file under the location whose hour may overlap the window."""
    if location.path is not None:
        if location.path.is_file():
            return [(str(location.path), location.path.stat().st_size)]
        found = sorted(p for p in location.path.rglob("*") if p.is_file() and p.suffix in (".jsonl", ".jsonlines"))
        return [(str(p), p.stat().st_size) for p in found if _in_window(p.relative_to(location.path).as_posix(), start, end)]
    files = []
    try:
        pages = access.client().get_paginator("list_objects_v2").paginate(Bucket=location.bucket, Prefix=location.prefix)
        for page in pages:
            for item in page.get("Contents", []):
                if _in_window(item["Key"], start, end) and not item["Key"].endswith("/"):
                    files.append((f"s3://{location.bucket}/{item['Key']}", int(item["Size"])))
    except Exception as error:  # botocore's errors share no useful base class
        raise UserError(f"cannot list {location}: {error}") from None
    return files


def read_chunks(file: str, access: S3Access) -> Iterator[list[bytes]]:
    """The file's lines, a chunk (about CHUNK_BYTES) at a time."""
    if file.startswith("s3://"):
        from botocore.exceptions import BotoCoreError, ClientError

        bucket, _, key = file[5:].partition("/")
        try:
            body = access.client().get_object(Bucket=bucket, Key=key)["Body"]
        except (BotoCoreError, ClientError) as error:
            raise OSError(f"cannot read {file}: {error}") from None
        rest = b""
        while chunk := body.read(CHUNK_BYTES):
            lines = (rest + chunk).split(b"\n")
            rest = lines.pop()
            yield lines
        if rest:
            yield [rest]
        return
    with open(file, "rb") as handle:
        while lines := handle.readlines(CHUNK_BYTES):
            yield lines
