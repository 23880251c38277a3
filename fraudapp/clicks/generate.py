"""Synthetic click streams: ordinary browsing, bots, boundary cases, redeliveries.

Used by ``fraudapp demo`` and ``fraudapp generate``, by the tests and by the
benchmarks. Deterministic for a seed, so a failing comparison can be reproduced.
Event times are laid out at ``rate_per_s`` from ``start_ms``; :func:`arrival_order`
then shuffles them the way a real pipeline delivers them, late but within bounds.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Iterator
from typing import Any

URLS = [
    f"https://ads.example/{name}"
    for name in (
        "shoes",
        "rome",
        "card",
        "phone",
        "laptop",
        "loan",
        "hotel",
        "car",
        "watch",
        "bike",
    )
]
USER_AGENTS = ["Mozilla/5.0 (X11; Linux x86_64)", "Mozilla/5.0 (iPhone)", "curl/8.5.0"]


def _click(rng: random.Random, session: str, url: str, ts: int, ip: str) -> dict[str, Any]:
    return {
        "click_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "session_id": session,
        "url": url,
        "timestamp": ts,
        "ip": ip,
        "user_agent": rng.choice(USER_AGENTS),
        "ad_id": url.rsplit("/", 1)[-1],
        "campaign_id": f"cmp-{URLS.index(url) % 5}",
    }


def generate_clicks(
    count: int,
    *,
    seed: int = 1,
    start_ms: int = 1_767_225_600_000,  # 2026-01-01T00:00:00Z
    rate_per_s: float = 500.0,
    bot_share: float = 0.2,
    duplicate_share: float = 0.01,
) -> list[dict[str, Any]]:
    """``count`` clicks in event-time order.

    Humans browse a few URLs with gaps of seconds (now and then three clicks land
    inside 10 s by chance, as in real traffic); bots fire bursts of 3-8 clicks on one
    URL, some with identical timestamps, some spaced exactly 10 000 or 10 001 ms
    apart to sit on the rule's boundary. A share of clicks is redelivered with the
    same click id, as an at-least-once producer would.
    """
    rng = random.Random(seed)
    span_ms = max(1, int(count / rate_per_s * 1000))
    clicks: list[dict[str, Any]] = []
    session_no = 0
    while len(clicks) < count:
        session_no += 1
        session = f"s{seed}-{session_no}"
        ip = f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        t = start_ms + rng.randrange(span_ms)
        if rng.random() < bot_share:
            url = rng.choice(URLS)
            pattern = rng.random()
            for i in range(rng.randint(3, 8)):
                if pattern < 0.2:
                    ts = t  # stacked: all at once
                elif pattern < 0.4:
                    # first-to-third span of exactly 10 000 ms (fraud) or 10 002 ms (not)
                    ts = t + i * rng.choice((5_000, 5_001))
                else:
                    ts = t + rng.randrange(0, 10_000)
                clicks.append(_click(rng, session, url, ts, ip))
        else:
            urls = rng.sample(URLS, rng.randint(1, 3))
            for _ in range(rng.randint(1, 6)):
                t += int(rng.expovariate(1 / 3_000))
                clicks.append(_click(rng, session, rng.choice(urls), t, ip))
        if len(clicks) >= 2 and rng.random() < duplicate_share * 5:
            clicks.append(dict(rng.choice(clicks[-5:])))
    clicks = clicks[:count]
    clicks.sort(key=lambda c: c["timestamp"])
    return clicks


def arrival_order(
    events: list[dict[str, Any]], *, max_delay_ms: int, seed: int = 2
) -> list[dict[str, Any]]:
    """Shuffle events as a real pipeline delivers them: each one delayed by up to
    ``max_delay_ms`` of event time, so no event arrives after one stamped more than
    ``max_delay_ms`` later (it stays within an allowed lateness of that size)."""
    rng = random.Random(seed)
    keyed = [(e["timestamp"] + rng.uniform(0, max_delay_ms), i) for i, e in enumerate(events)]
    keyed.sort()
    return [events[i] for _, i in keyed]


def live_clicks(*, seed: int, now_ms: Callable[[], int]) -> Iterator[dict[str, Any]]:
    """An endless stream for the demo, stamped with the current time as it goes;
    about one session in seven is a bot that clicks one ad 3-5 times in a row."""
    rng = random.Random(seed)
    session_no = 0
    while True:
        session_no += 1
        session = f"live-{seed}-{session_no}"
        ip = f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        url = rng.choice(URLS)
        burst = rng.random() < 0.15
        for _ in range(rng.randint(3, 5) if burst else rng.randint(1, 2)):
            yield _click(rng, session, url, now_ms(), ip)
