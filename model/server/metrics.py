"""The server's Prometheus metrics (text exposition format 0.0.4), for every worker in one scrape.

Each worker counts in its own memory (no lock, no shared write on the request path). With several
workers, each one also writes a snapshot of its samples to a folder the workers share, once a
second; whichever worker answers /metrics renders its own live samples together with the others'
latest snapshots, every sample labelled with its `worker`. A scrape therefore sees every worker,
at most a second behind for the others. A restarted worker starts its counters again from zero,
which Prometheus's rate() treats as a counter reset.
"""

from __future__ import annotations

import json
import logging
from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from model.files import write_atomic

log = logging.getLogger("mlship.serve")

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
SNAPSHOT_SECONDS = 1.0

# A sample: (family, sample name, labels after `worker`, value). The family names HELP and TYPE.
Sample = tuple[str, str, str, float]

FAMILIES = {
    "mlship_requests_total": ("counter", "HTTP requests answered, by path and status."),
    "mlship_request_duration_seconds": ("histogram", "Time from a complete request to its response."),
    "mlship_requests_in_flight": ("gauge", "Requests being answered now."),
    "mlship_model_info": ("gauge", "The model being served (1 once loaded)."),
    "mlship_capture_records_written_total": ("counter", "Capture records written to disk."),
    "mlship_capture_records_dropped_total": ("counter", "Capture records dropped because the buffer was full."),
    "mlship_capture_records_failed_total": ("counter", "Capture records that could not be written."),
    "mlship_capture_records_pending": ("gauge", "Capture records waiting for the writer."),
    "mlship_capture_files_uploaded_total": ("counter", "Closed capture files uploaded to S3."),
    "mlship_capture_files_upload_failed_total": ("counter", "Closed capture files whose upload failed after its retries."),
    "mlship_capture_upload_retries_total": ("counter", "Retried capture file uploads."),
    "mlship_predict_batches_total": ("counter", "predict_fn calls."),
    "mlship_predict_batched_requests_total": ("counter", "Requests answered by those calls."),
}


@dataclass
class Metrics:
    worker: int = 0
    requests: Counter = field(default_factory=Counter)  # (path, status) -> count
    latency_counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    latency_sum: float = 0.0
    in_flight: int = 0

    def observe(self, path: str, status: int, seconds: float) -> None:
        self.requests[(path, status)] += 1
        self.latency_counts[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.latency_sum += seconds

    def samples(self, model: dict[str, str], capture: dict[str, int], batching: dict[str, int]) -> list[Sample]:
        """This worker's samples now; `capture` and `batching` are counters by name (without `mlship_`)."""
        requests = "mlship_requests_total"
        samples: list[Sample] = [(requests, requests, f'path="{path}",status="{status}"', count)
                                 for (path, status), count in sorted(self.requests.items())]
        duration = "mlship_request_duration_seconds"
        cumulative = 0
        for bound, count in zip((*LATENCY_BUCKETS, "+Inf"), self.latency_counts):
            cumulative += count
            samples.append((duration, f"{duration}_bucket", f'le="{bound}"', cumulative))
        samples += [(duration, f"{duration}_sum", "", round(self.latency_sum, 6)),
                    (duration, f"{duration}_count", "", cumulative),
                    ("mlship_requests_in_flight", "mlship_requests_in_flight", "", self.in_flight),
                    ("mlship_model_info", "mlship_model_info",
                     f'name="{model["name"]}",version="{model["version"]}",sha256="{model["sha256"]}"',
                     1 if model["loaded"] == "true" else 0)]
        for prefix, values in (("mlship_capture_", capture), ("mlship_", batching)):
            samples += [(prefix + name, prefix + name, "", value) for name, value in values.items()]
        return samples


def render(workers: dict[int, list[Sample]]) -> str:
    """The exposition text of every worker's samples: each family once, its samples together."""
    by_family: dict[str, list[str]] = {}
    for worker, samples in sorted(workers.items()):
        for family, name, labels, value in samples:
            label_text = f'worker="{worker}"' + (f",{labels}" if labels else "")
            by_family.setdefault(family, []).append(f"{name}{{{label_text}}} {_number(value)}")
    lines = []
    for family, family_lines in by_family.items():
        kind, description = FAMILIES.get(family, ("untyped", family))
        lines += [f"# HELP {family} {description}", f"# TYPE {family} {kind}", *family_lines]
    return "\n".join(lines) + "\n"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class SharedSnapshots:
    """The folder where workers leave their samples for each other (made and removed by the parent)."""

    def __init__(self, folder: Path, worker: int):
        self.folder = Path(folder)
        self.worker = worker
        self.path = self.folder / f"worker-{worker}.json"

    def write(self, samples: list[Sample]) -> None:
        write_atomic(self.path, json.dumps(samples).encode())  # readers see the old snapshot or the new one

    def others(self) -> dict[int, list[Sample]]:
        found: dict[int, list[Sample]] = {}
        for path in self.folder.glob("worker-*.json"):
            worker = int(path.stem.split("-", 1)[1])
            if worker == self.worker:
                continue
            try:
                found[worker] = [tuple(sample) for sample in json.loads(path.read_text())]
            except (OSError, ValueError) as error:  # a worker that died mid-write leaves nothing half-read
                log.warning("metrics of worker %d unreadable: %s", worker, error)
        return found
