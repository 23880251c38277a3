"""Synthetic ATM transactions in the style of the seed's generator (gess).

Normal withdrawals at random ATMs for random customers; after every 6-16 of them,
one fraudulent withdrawal on the last customer's account at another ATM, stamped
60-600 s in the past (so it arrives out of order) with a transaction id starting
``xxx``. Account ids come from the shipped customer list, so alerts are enriched.
Timestamps use ksqlDB's ``yyyy-MM-dd HH:mm:ss +0000`` form, as the seed's data does.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from fraudapp.core.reference import account_ids, load_atms

AMOUNTS = (20, 50, 100, 200, 300, 400)


def ksql_time(millis: int) -> str:
    return datetime.fromtimestamp(millis // 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S +0000")


def _txn(
    rng: random.Random, account: str, atm: tuple[float, float, str], ts: int, prefix: str = ""
) -> dict[str, Any]:
    lat, lon, label = atm
    return {
        "account_id": account,
        "atm": label,
        "amount": rng.choice(AMOUNTS),
        "location": {"lat": repr(lat), "lon": repr(lon)},
        "transaction_id": prefix + str(uuid.UUID(int=rng.getrandbits(128), version=1)),
        "timestamp": ksql_time(ts),
    }


def txn_stream(*, seed: int, clock: Callable[[], int]) -> Iterator[dict[str, Any]]:
    """Endless gess-style transactions; ``clock`` gives each normal one's time."""
    rng = random.Random(seed)
    atms = load_atms()
    accounts = account_ids()
    while True:
        last: dict[str, Any] | None = None
        last_atm = atms[0]
        last_ts = 0
        for _ in range(rng.randint(6, 16)):
            last_ts = clock()
            last_atm = rng.choice(atms)
            last = _txn(rng, rng.choice(accounts), last_atm, last_ts)
            yield last
        assert last is not None
        other = rng.choice([atm for atm in atms if atm[:2] != last_atm[:2]])
        stamp = last_ts - rng.randint(60, 600) * 1000
        yield _txn(rng, last["account_id"], other, stamp, prefix="xxx")


def generate_txns(
    count: int, *, seed: int = 1, start_ms: int = 1_767_225_600_000, rate_per_s: float = 0.5
) -> list[dict[str, Any]]:
    """``count`` transactions in arrival order (frauds arrive late), event times
    advancing ``1/rate_per_s`` seconds per normal transaction from ``start_ms``."""
    step = 1000 / rate_per_s
    ticks = iter(range(10**12))
    stream = txn_stream(seed=seed, clock=lambda: start_ms + int(next(ticks) * step))
    return [next(stream) for _ in range(count)]


def live_txns(seed: int | None = None) -> Iterator[dict[str, Any]]:
    """For the demo: stamped with the current time as they are made."""
    return txn_stream(seed=seed or int(time.time()), clock=lambda: time.time_ns() // 1_000_000)
