"""Create the fraud-detection example repo with synthetic data (deterministic per seed).

Data is laid out relative to ``now`` so the newest rows are fresh: online reads after
materialization come back PRESENT rather than OUTSIDE_MAX_AGE.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from tureen.errors import InvalidRequestError

TEMPLATE = Path(__file__).with_name("fraud_repo")


def create_repo(dest: Path, *, accounts: int = 1000, days: int = 30, seed: int = 7,
                now: datetime | None = None, force: bool = False) -> Path:
    """Copy the template into ``dest`` and write its data files. Returns ``dest``."""
    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()) and not force:
        raise InvalidRequestError(
            f"{dest} exists and is not empty; choose a new folder or pass --force."
        )
    dest.mkdir(parents=True, exist_ok=True)
    for item in TEMPLATE.iterdir():
        if item.name == "__pycache__":
            continue
        if item.is_dir():  # pipelines/
            shutil.copytree(item, dest / item.name, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(item, dest / item.name)
    write_data(dest / "data", accounts=accounts, days=days, seed=seed, now=now)
    return dest


def write_data(data_dir: Path, *, accounts: int, days: int, seed: int,
               now: datetime | None = None) -> None:
    rng = np.random.default_rng(seed)
    now = (now or datetime.now(UTC)).replace(minute=0, second=0, microsecond=0)
    start = now - timedelta(days=days)
    data_dir.mkdir(parents=True, exist_ok=True)
    ids = np.arange(1001, 1001 + accounts, dtype=np.int64)

    # Profiles: one row at the start of the window plus an update for ~30% of accounts.
    base_score = rng.normal(680, 60, accounts).clip(300, 850).astype(np.int64)
    age = rng.integers(1, 3000, accounts)
    twofa = rng.random(accounts) < 0.6
    upd = rng.random(accounts) < 0.3
    upd_at = start + pd.to_timedelta(rng.integers(1, days * 24, accounts), unit="h")
    profile = pd.concat([
        pd.DataFrame({"account_id": ids, "credit_score": base_score,
                      "account_age_days": age, "has_2fa_installed": twofa,
                      "event_timestamp": pd.Timestamp(start)}),
        pd.DataFrame({"account_id": ids[upd],
                      "credit_score": (base_score[upd] + rng.integers(-40, 40, upd.sum())),
                      "account_age_days": age[upd] + 10, "has_2fa_installed": ~twofa[upd],
                      "event_timestamp": upd_at[upd]}),
    ], ignore_index=True)
    profile["created"] = profile["event_timestamp"] + pd.Timedelta(minutes=5)
    profile.to_parquet(data_dir / "account_profile.parquet", index=False)

    # Daily 7-day transaction aggregates; risky accounts transact more and see fraud.
    risk = 1.0 / (1.0 + np.exp((base_score - 600) / 40.0)) + np.where(twofa, 0.0, 0.15)
    rows = []
    for d in range(days + 1):
        ts = start + timedelta(days=d)
        n = rng.poisson(5 + 20 * risk)
        total = n * rng.gamma(2.0, 40.0 + 80 * risk)
        fraud = rng.random(accounts) < 0.05 + 0.5 * risk
        rows.append(pd.DataFrame({
            "account_id": ids, "num_transactions_7d": n.astype(np.int64),
            "total_amount_7d": total.astype(np.float64), "has_fraud_7d": fraud,
            "event_timestamp": ts, "created": ts + timedelta(minutes=10)}))
    stats = pd.concat(rows, ignore_index=True)
    stats_dir = data_dir / "transaction_stats"
    stats_dir.mkdir(exist_ok=True)
    stats.to_parquet(stats_dir / "part-000.parquet", index=False)

    # Labels: transactions at random times with an outcome that depends on the features.
    n_labels = accounts * 5
    who = rng.integers(0, accounts, n_labels)
    when = start + pd.to_timedelta(rng.integers(24 * 3600, days * 86400, n_labels), unit="s")
    amount = rng.gamma(2.0, 50.0, n_labels)
    p = 1 / (1 + np.exp(-(-3.0 + 4.0 * risk[who] + amount / 300.0)))
    labels = pd.DataFrame({"account_id": ids[who], "event_timestamp": when,
                           "amount": amount, "is_fraud": rng.random(n_labels) < p})
    labels.sort_values("event_timestamp").to_parquet(data_dir / "labels.parquet", index=False)
