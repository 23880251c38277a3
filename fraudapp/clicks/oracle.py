"""The click-burst rule by brute force, for checking the streaming detector.

Written independently of :mod:`fraudapp.clicks.detect` (no sorting, no bisecting,
no state): for every click, count the clicks of its session and URL whose event
time lies in the 10 s ending at it. Quadratic per (session, url) and obviously
right, which is the point. Tests and benchmarks compare the live alerts with it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any


def fraudulent_click_ids(
    clicks: Iterable[Mapping[str, Any]], *, threshold: int = 3, window_ms: int = 10_000
) -> set[str]:
    """Click ids the rule condemns; a click id seen twice in a group counts once.

    ``clicks`` are dicts with ``click_id``, ``session_id``, ``url`` and an integer
    epoch-ms ``timestamp``.
    """
    groups: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
    for click in clicks:
        group = groups[(str(click["session_id"]), str(click["url"]))]
        group.setdefault(str(click["click_id"]), int(click["timestamp"]))
    fraud: set[str] = set()
    for group in groups.values():
        for click_id, ts in group.items():
            in_window = sum(1 for other in group.values() if ts - window_ms <= other <= ts)
            if in_window >= threshold:
                fraud.add(click_id)
    return fraud
