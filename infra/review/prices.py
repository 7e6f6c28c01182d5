"""The dated price table the review uses to put a monthly cost on instance changes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

PRICE_TABLE = Path(__file__).with_name("prices.json")


@dataclass(frozen=True)
class PriceTable:
    as_of: str
    region: str
    currency: str
    hours_per_month: float
    hourly: dict[str, dict[str, float]]  # service ("ec2" | "sagemaker") -> instance type -> hourly price

    def monthly(self, service: str, instance_type: str, count: float = 1) -> float | None:
        """Monthly cost of `count` always-on instances, or None when the type is not in the table."""
        price = self.hourly.get(service, {}).get(instance_type)
        return None if price is None else price * self.hours_per_month * count


@lru_cache(maxsize=None)
def load_prices(path: Path = PRICE_TABLE) -> PriceTable:
    raw = json.loads(path.read_text(encoding="utf-8"))
    return PriceTable(as_of=raw["as_of"], region=raw["region"], currency=raw["currency"],
                      hours_per_month=float(raw["hours_per_month"]),
                      hourly={service: dict(raw[service]) for service in ("ec2", "sagemaker")})
