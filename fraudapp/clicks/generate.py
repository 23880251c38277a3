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


#: The generator's fraud hotspot: ``10.1.0.0/16`` is Lagos in ``tables/geoip.csv``.
HOTSPOT_PREFIX = "10.1"
#: Click farms: sources that take a large share of one campaign's clicks.
FARM_DEVICE = "farm-device-1"
FARM_IP = "10.1.200.7"
FARM_URL = "https://ads.example/casino"
FARM_CAMPAIGN = "cmp-casino"


#: The demo's recurring fraudsters (:func:`live_clicks`).
BOTS = 6
STACKERS = 4
LISTED = 6
FARM_SESSIONS = 2


def blocklisted_ip(rng: random.Random) -> str:
    """An address on the shipped blocklist (``tables/blocklist``): a single listed IP,
    one inside a listed IPv4 range, or one inside the listed IPv6 range."""
    kind = rng.random()
    if kind < 0.3:
        i = rng.randrange(1000)
        return f"10.250.{i // 200}.{i % 200 + 1}"
    if kind < 0.65:
        return f"10.251.{rng.randrange(256)}.{rng.randrange(1, 255)}"
    return f"2001:db8:bad::{rng.randrange(1, 0xFFFF):x}"


def _ip(rng: random.Random, *, hotspot: bool = False) -> str:
    first = HOTSPOT_PREFIX if hotspot else f"10.{rng.randrange(2, 250)}"
    return f"{first}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


def _click(rng: random.Random, session: str, url: str, ts: int, ip: str) -> dict[str, Any]:
    return {
        "click_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "session_id": session,
        "url": url,
        "timestamp": ts,
        "ip": ip,
        "user_agent": rng.choice(USER_AGENTS),
        "ad_id": url.rsplit("/", 1)[-1],
        "campaign_id": f"cmp-{URLS.index(url) % 5}" if url in URLS else FARM_CAMPAIGN,
    }


def generate_clicks(
    count: int,
    *,
    seed: int = 1,
    start_ms: int = 1_767_225_600_000,  # 2026-01-01T00:00:00Z
    rate_per_s: float = 500.0,
    bot_share: float = 0.2,
    duplicate_share: float = 0.01,
    adnet: bool = True,
) -> list[dict[str, Any]]:
    """``count`` clicks in event-time order.

    Humans browse a few URLs with gaps of seconds (now and then three clicks land
    inside 10 s by chance, as in real traffic); bots fire bursts of 3-8 clicks on one
    URL, some with identical timestamps, some spaced exactly 10 000 or 10 001 ms
    apart to sit on the rule's boundary. A share of clicks is redelivered with the
    same click id, as an at-least-once producer would.

    With ``adnet`` (the default) the stream also exercises the ad-network checks:
    some sessions carry a ``device_id``; stacking bots fire 3-4 clicks on different
    ads within 150 ms; a few sessions come from blocklisted IPs (single, ranged and
    IPv6); click farms (one device, one IP) pour clicks into one campaign, taking a
    heavy share of it and going over the rate limit; and most bots sit in one city
    (``10.1.x.x``, Lagos), which makes it a suspicious location. ``adnet=False``
    gives the plain stream of the click-burst rule alone.
    """
    rng = random.Random(seed)
    span_ms = max(1, int(count / rate_per_s * 1000))
    clicks: list[dict[str, Any]] = []
    session_no = 0
    while len(clicks) < count:
        session_no += 1
        session = f"s{seed}-{session_no}"
        t = start_ms + rng.randrange(span_ms)
        kind = rng.random()
        if not adnet:
            kind = 1.0
        if kind < 0.003:
            _blocklisted_session(rng, clicks, session, t)
        elif kind < 0.02:
            _stacking_session(rng, clicks, session, t)
        elif kind < 0.04:
            _farm_clicks(rng, clicks, session, t)
        elif rng.random() < bot_share:
            # Most bots operate from the hotspot, which is what makes it one.
            ip = _ip(rng, hotspot=adnet and rng.random() < 0.97)
            url = rng.choice(URLS)
            pattern = rng.random()
            for i in range(rng.randint(3, 8)):
                if pattern < 0.2:
                    ts = t  # all at once
                elif pattern < 0.4:
                    # first-to-third span of exactly 10 000 ms (fraud) or 10 002 ms (not)
                    ts = t + i * rng.choice((5_000, 5_001))
                else:
                    ts = t + rng.randrange(0, 10_000)
                clicks.append(_click(rng, session, url, ts, ip))
        else:
            ip = (
                _ip(rng)
                if adnet
                else f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
            )
            device = f"dev-{seed}-{session_no}" if adnet and rng.random() < 0.3 else None
            urls = rng.sample(URLS, rng.randint(1, 3))
            for _ in range(rng.randint(1, 6)):
                t += (
                    4_000 + int(rng.expovariate(1 / 10_000))
                    if adnet
                    else int(rng.expovariate(1 / 3_000))
                )
                click = _click(rng, session, rng.choice(urls), t, ip)
                if device:
                    click["device_id"] = device
                clicks.append(click)
            if adnet and rng.random() < 0.06:  # now and then a person tries the casino
                clicks.append(_click(rng, session, FARM_URL, t + 500, ip))
        if len(clicks) >= 2 and rng.random() < duplicate_share * 5:
            clicks.append(dict(rng.choice(clicks[-5:])))
    clicks = clicks[:count]
    clicks.sort(key=lambda c: c["timestamp"])
    return clicks


def _blocklisted_session(
    rng: random.Random, clicks: list[dict[str, Any]], session: str, t: int, ip: str | None = None
) -> None:
    ip = ip or blocklisted_ip(rng)
    for _ in range(rng.randint(1, 3)):
        t += int(rng.expovariate(1 / 4_000))
        clicks.append(_click(rng, session, rng.choice(URLS), t, ip))


def _stacking_session(
    rng: random.Random,
    clicks: list[dict[str, Any]],
    session: str,
    t: int,
    device: str | None = None,
) -> None:
    """One click on a page with ads stacked on top of each other: a click each."""
    device = device or f"stack-{session}"
    ip = _ip(rng)
    for url in rng.sample(URLS, rng.randint(3, 4)):
        click = _click(rng, session, url, t + rng.choice((0, 0, rng.randrange(150))), ip)
        click["device_id"] = device
        clicks.append(click)


def _farm_clicks(rng: random.Random, clicks: list[dict[str, Any]], session: str, t: int) -> None:
    """Two click farms (a device, an IP) working the casino campaign, a few clicks each."""
    for i in range(4):
        click = _click(rng, session, FARM_URL, t + i * rng.randrange(100, 400), FARM_IP)
        click["campaign_id"] = FARM_CAMPAIGN
        if i % 2:
            click["device_id"] = FARM_DEVICE
            click["lat"] = round(6.45 + rng.uniform(-0.1, 0.1), 5)
            click["lon"] = round(3.39 + rng.uniform(-0.1, 0.1), 5)
        clicks.append(click)


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
    """An endless stream for the demo, stamped with the current time as it goes.

    Every check gets traffic: about one session in seven is a bot clicking one ad 3-5
    times (most from the Lagos hotspot); stacked ads, blocklisted IPs and the casino
    click farm (heavy hitter, over the rate limit) come along every few seconds.

    The fraud comes from a few recurring actors, as it does in real traffic: a handful
    of bots that keep their session and IP, a few pages whose ads are stacked (one
    device each), a short list of listed IPs. A stream that invented a new identity for
    every fraudulent visit would make one case of every visit, which is not what the
    people the cases are for see (docs/cases.md).
    """
    rng = random.Random(seed)
    bots = [(f"bot-{seed}-{n}", _ip(rng, hotspot=n < 4), rng.choice(URLS)) for n in range(BOTS)]
    stackers = [f"stack-{seed}-{n}" for n in range(STACKERS)]
    listed = [blocklisted_ip(rng) for _ in range(LISTED)]
    session_no = 0
    while True:
        session_no += 1
        session = f"live-{seed}-{session_no}"
        kind = rng.random()
        batch: list[dict[str, Any]] = []
        if kind < 0.03:
            _blocklisted_session(rng, batch, session, 0, ip=rng.choice(listed))
        elif kind < 0.07:
            _stacking_session(rng, batch, session, 0, device=rng.choice(stackers))
        elif kind < 0.17:
            _farm_clicks(rng, batch, f"farm-{seed}-{rng.randrange(FARM_SESSIONS)}", 0)
        elif rng.random() < 0.15:
            bot, ip, url = rng.choice(bots)
            for _ in range(rng.randint(3, 5)):
                batch.append(_click(rng, bot, url, 0, ip))
        else:
            ip = _ip(rng)
            url = rng.choice(URLS)
            device = f"dev-live-{seed}-{session_no}" if rng.random() < 0.3 else None
            for _ in range(rng.randint(1, 2)):
                click = _click(rng, session, url, 0, ip)
                if device:
                    click["device_id"] = device
                batch.append(click)
        # Offsets within a batch are kept (stacked ads are milliseconds apart), but
        # every batch starts now: a live stream never runs ahead of the clock.
        base = min(c["timestamp"] for c in batch)
        now = now_ms()
        for click in batch:
            click["timestamp"] = now + min(click["timestamp"] - base, 1_000)
            yield click
