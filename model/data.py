"""Training data: the seeded synthetic churn table, and reading any CSV into a checked frame.

Every problem with a data file (missing, empty, no target column, text in a numeric column,
a target that is not binary) is a `UserError` naming the file, the column and the row.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mlship.errors import UserError

SYNTHETIC = "synthetic"
SYNTHETIC_TARGET = "churned"

CONTRACTS = ("month-to-month", "one-year", "two-year")
PAYMENT_METHODS = ("electronic-check", "mailed-check", "bank-transfer", "credit-card")
INTERNET_SERVICES = ("dsl", "fiber", "none")
REGIONS = ("north", "south", "east", "west")

# A column whose filled values are at least this share numbers is numeric; the rest is then a typo.
NUMERIC_SHARE = 0.9
# How strongly the latent risk drives churn, and the offset that puts the churn rate near 30%.
SIGNAL, INTERCEPT = 3.0, -7.5
TRUE_WORDS = {"1", "true", "yes", "y", "t"}
FALSE_WORDS = {"0", "false", "no", "n", "f"}


def synthetic_churn(rows: int, seed: int) -> pd.DataFrame:
    """A customer-churn table with a learnable, realistic signal.

    Churn is driven by a latent risk score: short tenure, month-to-month contracts, electronic
    checks, fiber customers with high bills, support calls, late payments, long absences and low
    satisfaction raise it; long contracts, bundles and discounts lower it. About a quarter of the
    customers churn. Some values are missing, as in real exports.
    """
    if rows < 50:
        raise UserError(f"synthetic data needs at least 50 rows, got {rows}")
    rng = np.random.default_rng(seed)
    contract = rng.choice(CONTRACTS, rows, p=[0.5, 0.28, 0.22])
    payment = rng.choice(PAYMENT_METHODS, rows, p=[0.33, 0.2, 0.23, 0.24])
    internet = rng.choice(INTERNET_SERVICES, rows, p=[0.35, 0.45, 0.2])
    region = rng.choice(REGIONS, rows)
    long_contract = contract != "month-to-month"
    tenure = np.clip(rng.gamma(1.6, 14, rows) + 18 * long_contract, 0, 72).round().astype(int)
    base_charge = np.select([internet == "fiber", internet == "dsl"], [75.0, 52.0], 22.0)
    monthly = np.clip(base_charge + rng.normal(0, 12, rows), 18, 120).round(2)
    total = (monthly * np.maximum(tenure, 1) * rng.uniform(0.95, 1.05, rows)).round(2)
    age = np.clip(rng.normal(45, 15, rows), 18, 85).round().astype(int)
    products = rng.integers(1, 6, rows)
    support_calls = rng.poisson(1.2 + 1.0 * (internet == "fiber"), rows)
    late_payments = rng.poisson(0.5 + 0.8 * (payment == "electronic-check"), rows)
    last_login = np.clip(rng.exponential(12, rows), 0, 180).round().astype(int)
    session_minutes = np.clip(rng.lognormal(3.0, 0.5, rows), 1, 300).round(1)
    data_usage = np.clip(rng.gamma(2.0, 8.0, rows) * (internet != "none"), 0, None).round(2)
    discount = np.clip(rng.choice([0, 5, 10, 15, 20, 25], rows, p=[0.5, 0.15, 0.15, 0.1, 0.06, 0.04]), 0, 30).astype(float)
    satisfaction = np.clip(rng.normal(6.5, 1.8, rows) - 0.35 * support_calls, 1, 10).round(1)

    risk = SIGNAL * (
        -0.2
        - 0.055 * tenure
        + 2.0 * (contract == "month-to-month")
        - 0.9 * (contract == "two-year")
        + 0.8 * (payment == "electronic-check")
        + 0.9 * (internet == "fiber") * (monthly > 80)
        + 0.028 * (monthly - 60)
        + 0.45 * support_calls
        + 0.55 * late_payments
        + 0.045 * last_login
        - 0.55 * (satisfaction - 6.5)
        - 0.35 * (products - 3)
        - 0.05 * discount
        - 0.012 * (age - 45)
        + rng.normal(0, 0.6, rows)
    ) + INTERCEPT
    churned = (rng.uniform(size=rows) < 1 / (1 + np.exp(-risk))).astype(int)

    frame = pd.DataFrame(
        {
            "tenure_months": tenure,
            "monthly_charges": monthly,
            "total_charges": total,
            "age": age,
            "num_products": products,
            "support_calls_90d": support_calls,
            "late_payments_12m": late_payments,
            "days_since_last_login": last_login,
            "avg_session_minutes": session_minutes,
            "data_usage_gb": data_usage,
            "discount_pct": discount,
            "satisfaction_score": satisfaction,
            "contract": contract,
            "payment_method": payment,
            "internet_service": internet,
            "region": region,
            SYNTHETIC_TARGET: churned,
        }
    )
    # Real exports have holes: total charges not yet billed, skipped surveys, unknown regions.
    for column, share in (("total_charges", 0.02), ("satisfaction_score", 0.08), ("avg_session_minutes", 0.03), ("region", 0.04), ("payment_method", 0.01)):
        holes = rng.uniform(size=rows) < share
        values = frame[column].to_numpy(dtype=object if column in ("region", "payment_method") else float, copy=True)
        values[holes] = None if values.dtype == object else np.nan
        frame[column] = values
    for column in ("contract", "internet_service"):
        frame[column] = frame[column].to_numpy(dtype=object)
    return frame


@dataclass(frozen=True)
class Dataset:
    """Features and a 0/1 target, in column order, with where they came from."""

    features: pd.DataFrame
    target: pd.Series
    source: str
    fingerprint: str  # sha256 of the bytes the data came from (the CSV, or the generated table)


def fingerprint_frame(frame: pd.DataFrame) -> str:
    return hashlib.sha256(frame.to_csv(index=False).encode()).hexdigest()


def load_synthetic(rows: int, seed: int, target: str) -> Dataset:
    frame = synthetic_churn(rows, seed)
    if target != SYNTHETIC_TARGET:
        raise UserError(f"the synthetic data's target column is {SYNTHETIC_TARGET!r}, not {target!r}")
    return _split_target(frame, target, f"synthetic(rows={rows}, seed={seed})", fingerprint_frame(frame))


def load_csv(path: Path, target: str, categorical: tuple[str, ...] = ()) -> Dataset:
    """Read a CSV with a header row into numeric and categorical columns, checking every cell."""
    if not path.is_file():
        raise UserError(f"data file {path} not found")
    raw = path.read_bytes()
    if not raw.strip():
        raise UserError(f"data file {path} is empty; expected a header row and data rows")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], skipinitialspace=True)
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise UserError(f"data file {path} is not a readable CSV: {str(error).splitlines()[0]}") from None
    if frame.empty:
        raise UserError(f"data file {path} has a header but no data rows")
    if target not in frame.columns:
        raise UserError(f"target column {target!r} not in {path}; its columns are {', '.join(map(str, frame.columns))}")
    typed = frame.copy()
    for column in frame.columns:
        if column != target and column not in categorical:
            typed[column] = _numeric_or_text(frame[column], column, path)
    return _split_target(typed, target, str(path), hashlib.sha256(raw).hexdigest())


def _numeric_or_text(values: pd.Series, column: str, path: Path) -> pd.Series:
    """Numbers if the column is (nearly) all numbers, else text; a stray word in numbers is an error."""
    filled = values.dropna()
    if filled.empty:
        raise UserError(f"column {column!r} in {path} has no values at all; remove it or fill it")
    numbers = pd.to_numeric(filled, errors="coerce")
    bad = numbers.isna() | ~np.isfinite(numbers.fillna(0))
    if not bad.any():
        return pd.to_numeric(values)
    if bad.mean() <= 1 - NUMERIC_SHARE:
        row = int(bad.idxmax()) + 2  # +1 for 1-based, +1 for the header line
        raise UserError(
            f"{path} line {row}, column {column!r}: {filled[bad].iloc[0]!r} is not a number "
            f"(the column is numeric; leave the cell empty for a missing value)"
        )
    return values.astype(object).where(values.notna(), None)


def _split_target(frame: pd.DataFrame, target: str, source: str, fingerprint: str) -> Dataset:
    labels = frame[target]
    missing = labels.isna()
    if missing.any():
        raise UserError(f"target column {target!r} is empty at data row {int(missing.idxmax()) + 1} of {source}")
    words = labels.astype(str).str.strip().str.lower()
    words = words.where(~words.str.fullmatch(r"[01]\.0"), words.str[0])
    unknown = ~words.isin(TRUE_WORDS | FALSE_WORDS)
    if unknown.any():
        row = int(unknown.to_numpy().argmax())
        raise UserError(f"target column {target!r}, data row {row + 1} of {source}: {labels.iloc[row]!r} is not a class; "
                        "use 0/1, true/false or yes/no")
    if words.isin(TRUE_WORDS).all() or words.isin(FALSE_WORDS).all():
        raise UserError(f"target column {target!r} of {source} holds only one class ({labels.iloc[0]!r}); it needs both")
    features = frame.drop(columns=[target])
    if features.shape[1] == 0:
        raise UserError(f"{source} has no feature columns besides the target {target!r}")
    return Dataset(features, words.isin(TRUE_WORDS).astype(int).rename(target), source, fingerprint)
