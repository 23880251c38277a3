"""ksqlDB's ATM self-join by brute force, for checking the streaming detector.

Every pair of every account's transactions is tried, with no windows, no sorting,
no state; the distance uses its own haversine (the textbook form, radius 6371 km),
so comparing it with the detector's GEO_DISTANCE to 1e-9 relative checks both.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0 * math.asin(math.sqrt(h))


def expected_pairs(
    txns: Iterable[Mapping[str, Any]], *, window_ms: int = 600_000
) -> dict[tuple[str, str, str], dict[str, float]]:
    """(account, t1 id, t2 id) → distance, ms, km/h, for dicts with ``account_id``,
    ``transaction_id``, ``lat``, ``lon`` (floats) and ``timestamp`` (epoch ms)."""
    by_account: dict[str, dict[str, Mapping[str, Any]]] = defaultdict(dict)
    for txn in txns:
        by_account[txn["account_id"]].setdefault(txn["transaction_id"], txn)
    pairs = {}
    for account, group in by_account.items():
        for a in group.values():
            for b in group.values():
                elapsed = b["timestamp"] - a["timestamp"]
                moved = a["lat"] != b["lat"] or a["lon"] != b["lon"]
                if a is not b and 0 < elapsed <= window_ms and moved:
                    distance = haversine_km(a["lat"], a["lon"], b["lat"], b["lon"])
                    pairs[(account, a["transaction_id"], b["transaction_id"])] = {
                        "distance_km": distance,
                        "milliseconds": elapsed,
                        "kmh": distance / (elapsed / 3_600_000),
                    }
    return pairs
