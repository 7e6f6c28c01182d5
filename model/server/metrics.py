"""The server's Prometheus metrics (text exposition format 0.0.4), kept per worker process.

With several workers each one answers /metrics for itself; the `worker` label tells them apart,
so a scraper summing over scrapes over time sees every worker.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass, field

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


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

    def render(self, model: dict[str, str], capture: dict[str, int], batching: dict[str, int]) -> str:
        worker = f'worker="{self.worker}"'
        lines = ["# HELP mlship_requests_total HTTP requests answered, by path and status.",
                 "# TYPE mlship_requests_total counter"]
        for (path, status), count in sorted(self.requests.items()):
            lines.append(f'mlship_requests_total{{{worker},path="{path}",status="{status}"}} {count}')
        lines += ["# HELP mlship_request_duration_seconds Time from a complete request to its response.",
                  "# TYPE mlship_request_duration_seconds histogram"]
        cumulative = 0
        for bound, count in zip((*LATENCY_BUCKETS, "+Inf"), self.latency_counts):
            cumulative += count
            lines.append(f'mlship_request_duration_seconds_bucket{{{worker},le="{bound}"}} {cumulative}')
        lines.append(f"mlship_request_duration_seconds_sum{{{worker}}} {self.latency_sum:.6f}")
        lines.append(f"mlship_request_duration_seconds_count{{{worker}}} {cumulative}")
        lines += ["# HELP mlship_requests_in_flight Requests being answered now.",
                  "# TYPE mlship_requests_in_flight gauge",
                  f"mlship_requests_in_flight{{{worker}}} {self.in_flight}",
                  "# HELP mlship_model_info The model being served (1 once loaded).",
                  "# TYPE mlship_model_info gauge",
                  f'mlship_model_info{{{worker},name="{model["name"]}",version="{model["version"]}",'
                  f'sha256="{model["sha256"]}"}} {1 if model["loaded"] == "true" else 0}']
        for name, value in capture.items():
            lines += [f"# TYPE mlship_capture_{name} {'gauge' if name == 'pending' else 'counter'}",
                      f"mlship_capture_{name}{{{worker}}} {value}"]
        for name, value in batching.items():
            lines += [f"# TYPE mlship_{name} counter", f"mlship_{name}{{{worker}}} {value}"]
        return "\n".join(lines) + "\n"
