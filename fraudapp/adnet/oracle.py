"""The ad-network checks by brute force, for checking the streaming detectors.

Written apart from the detectors, the obvious way: whole event sets, no
incremental state, no bisecting. Tests and benchmarks compare the live alerts with
these. Clicks are dicts as produced to ``clicks``; a click id seen twice counts once.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

Click = Mapping[str, Any]


def _source(click: Click) -> str | None:
    if click.get("device_id"):
        return f"device:{click['device_id']}"
    if click.get("ip"):
        return f"ip:{click['ip']}"
    return None


def _distinct(clicks: Iterable[Click]) -> dict[str, Click]:
    """Each click id once, as first seen (a redelivery is the same click)."""
    seen: dict[str, Click] = {}
    for click in clicks:
        seen.setdefault(str(click["click_id"]), click)
    return seen


def _by_source(clicks: Iterable[Click]) -> dict[str, dict[str, Click]]:
    groups: dict[str, dict[str, Click]] = defaultdict(dict)
    for click in clicks:
        source = _source(click)
        if source is not None:
            groups[source].setdefault(str(click["click_id"]), click)
    return groups


def stacked_click_ids(
    clicks: Iterable[Click], *, threshold: int = 3, window_ms: int = 200, min_ads: int = 2
) -> set[str]:
    """Clicks lying in some ``window_ms`` interval that holds ``threshold``+ clicks of
    their source on ``min_ads``+ different ads (ad = ``ad_id``, else the URL)."""
    found: set[str] = set()
    for group in _by_source(clicks).values():
        items = [(int(c["timestamp"]), cid, c.get("ad_id") or c["url"]) for cid, c in group.items()]
        for start, _, _ in items:
            inside = [item for item in items if start <= item[0] <= start + window_ms]
            if len(inside) >= threshold and len({item[2] for item in inside}) >= min_ads:
                found.update(item[1] for item in inside)
    return found


def over_limit_click_ids(
    clicks: Iterable[Click], *, per_minute: float = 20.0, burst: int = 5
) -> set[str]:
    """The counting, capped GCRA run over each source's clicks in event-time order
    (ties by click id), exactly as :mod:`fraudapp.adnet.source` defines it."""
    interval = 60_000.0 / per_minute
    found: set[str] = set()
    for group in _by_source(clicks).values():
        tat: float | None = None
        for click_id, click in sorted(group.items(), key=lambda kv: (kv[1]["timestamp"], kv[0])):
            t = int(click["timestamp"])
            if tat is not None and tat - t > (burst - 1) * interval:
                found.add(click_id)
            tat = min(max(t if tat is None else tat, t) + interval, t + burst * interval)
    return found


def blocklisted_click_ids(clicks: Iterable[Click], directory: Path) -> set[str]:
    """Clicks whose IP is listed (single IP or CIDR) in the ``*.txt`` files."""
    networks = []
    for path in sorted(directory.glob("*.txt")):
        for line in path.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                networks.append(ipaddress.ip_network(line, strict=False))
    found = set()
    for click in clicks:
        ip = click.get("ip")
        if not ip:
            continue
        address = ipaddress.ip_address(ip)
        if any(address.version == net.version and address in net for net in networks):
            found.add(str(click["click_id"]))
    return found


def campaign_shares(clicks: Iterable[Click]) -> dict[tuple[str, str, str], float]:
    """Exact share of each (campaign, kind, source) in its campaign's clicks, over the
    whole stream (tests keep streams inside one window)."""
    seen = _distinct(clicks)
    totals: dict[str, int] = defaultdict(int)
    counts: dict[tuple[str, str, str], int] = defaultdict(int)
    for click in seen.values():
        campaign = click.get("campaign_id")
        if not campaign or not (click.get("ip") or click.get("device_id")):
            continue
        totals[campaign] += 1
        for kind, field in (("ip", "ip"), ("device", "device_id")):
            if click.get(field):
                counts[(campaign, kind, str(click[field]))] += 1
    return {key: n / totals[key[0]] for key, n in counts.items()}


def load_geoip_rows(path: Path) -> list[tuple[Any, float, float, str]]:
    """(network, lat, lon, city) rows of the geo-IP CSV, read the slow, obvious way."""
    import csv

    with open(path, newline="", encoding="utf-8") as handle:
        return [
            (
                ipaddress.ip_network(row["network"]),
                float(row["lat"]),
                float(row["lon"]),
                row["city"],
            )
            for row in csv.DictReader(handle)
        ]


def click_location(
    click: Click, rows: list[tuple[Any, float, float, str]]
) -> tuple[float, float] | None:
    """The click's lat/lon, else its IP's row (most specific network) in the table."""
    if click.get("lat") is not None and click.get("lon") is not None:
        return float(click["lat"]), float(click["lon"])
    if not click.get("ip"):
        return None
    address = ipaddress.ip_address(click["ip"])
    best = None
    for network, lat, lon, _ in rows:
        inside = address.version == network.version and address in network
        if inside and (best is None or network.prefixlen > best[0].prefixlen):
            best = (network, lat, lon)
    return None if best is None else (best[1], best[2])


def area_shares(
    clicks: Iterable[Click],
    fraud_ids: set[str],
    centres: Mapping[str, tuple[float, float]],
    rows: list[tuple[Any, float, float, str]],
    radius_km: float = 100.0,
) -> dict[str, tuple[int, float]]:
    """For each named centre: (clicks within ``radius_km``, share of them in
    ``fraud_ids``), by exact great-circle distance, over the whole stream."""
    from fraudapp.core.geo import geo_distance_km

    seen = _distinct(clicks)
    located = [(cid, click_location(c, rows)) for cid, c in seen.items()]
    shares = {}
    for name, (lat, lon) in centres.items():
        near = [
            cid
            for cid, at in located
            if at is not None and geo_distance_km(lat, lon, at[0], at[1]) <= radius_km
        ]
        fraud = sum(1 for cid in near if cid in fraud_ids)
        shares[name] = (len(near), fraud / len(near) if near else 0.0)
    return shares
