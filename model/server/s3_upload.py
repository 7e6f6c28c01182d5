"""Uploads closed capture files to S3 under the same key layout SageMaker's capture uses:
`s3://bucket/prefix/<endpoint>/<variant>/yyyy/mm/dd/hh/<file>.jsonl`.

Runs in its own thread; a failed upload is retried with exponential backoff (transient network
or throttling errors are the normal case on an EC2 host), and files still not uploaded are
logged by name so that an operator can copy them by hand. The local file stays: the hourly
monitor on the host reads the local capture folder.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

from mlship.errors import UserError

log = logging.getLogger(__name__)


def parse_s3_url(url: str) -> tuple[str, str]:
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise UserError(f"--capture-s3 {url!r}: expected s3://bucket/prefix")
    return parsed.netloc, parsed.path.strip("/")


class S3Uploader:
    def __init__(self, url: str, root: Path, client=None, attempts: int = 5, backoff: float = 0.5):
        self.bucket, self.prefix = parse_s3_url(url)
        self.root = Path(root)
        if client is None:
            import boto3

            client = boto3.client("s3")
        self._client = client
        self._attempts = attempts
        self._backoff = backoff
        self._queue: queue.Queue = queue.Queue()
        self.uploaded = 0
        self.failed = 0
        self.retries = 0
        self._thread = threading.Thread(target=self._run, name="capture-s3", daemon=True)
        self._thread.start()

    def key_for(self, path: Path) -> str:
        relative = path.relative_to(self.root).as_posix()
        return f"{self.prefix}/{relative}" if self.prefix else relative

    def submit(self, path: Path) -> None:
        self._queue.put(path)

    def close(self, timeout: float | None = None) -> None:
        """Uploads what was submitted (retrying), then stops."""
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while (path := self._queue.get()) is not None:
            self._upload(path)

    def _upload(self, path: Path) -> None:
        key = self.key_for(path)
        for attempt in range(1, self._attempts + 1):
            try:
                self._client.upload_file(str(path), self.bucket, key)
                self.uploaded += 1
                log.info("capture: uploaded %s to s3://%s/%s", path.name, self.bucket, key)
                return
            except Exception as error:  # noqa: BLE001 - any failure is retried, then reported
                if attempt == self._attempts:
                    self.failed += 1
                    log.error("capture: gave up uploading %s to s3://%s/%s after %d attempts: %s",
                              path, self.bucket, key, attempt, error)
                    return
                self.retries += 1
                delay = self._backoff * 2 ** (attempt - 1)
                log.warning("capture: upload of %s failed (%s); retrying in %.1fs", path.name, error, delay)
                time.sleep(delay)
