"""Where an IP address is: a geo-IP range table, looked up by bisection.

A click without its own ``lat``/``lon`` is placed by its IP. The table is a CSV of
CIDR networks (IPv4 and IPv6) with a point each::

    network,lat,lon,city,country
    10.0.0.0/16,51.5074,-0.1278,London,GB

Networks may nest (a /24 inside a /16, as commercial geo-IP data does for a city
inside a country's block): the most specific network wins. Loading flattens the
nested networks into disjoint integer ranges, so a lookup is one ``bisect`` over
sorted range starts; the same network twice is ambiguous and rejected.

The shipped ``tables/geoip.csv`` is synthetic and only covers the click generator's
addresses: one row per ``10.a.0.0/16`` (a = 0..255) placed in ``DEMO_CITIES[a % 24]``,
24 world cities at least 300 km apart, so ``10.0.x.x`` is London and ``10.1.x.x`` is
Lagos (the generator's fraud hotspot); plus the documentation ranges
``192.0.2.0/24`` and ``2001:db8::/32``. It is written by :func:`demo_rows`
(``write_demo_table(Path("tables/geoip.csv"))`` regenerates it), and a unit test
checks the file against it.
"""

from __future__ import annotations

import csv
import ipaddress
import math
from bisect import bisect_right
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from fraudapp.adnet.ipparse import BAD_IP, packed_ip

HEADER = ("network", "lat", "lon", "city", "country")

#: (city, country, lat, lon): well-separated cities for the synthetic table. London
#: must stay first and Lagos second: the generator's ``10.1.x.x`` hotspot is Lagos.
DEMO_CITIES: tuple[tuple[str, str, float, float], ...] = (
    ("London", "GB", 51.5074, -0.1278),
    ("Lagos", "NG", 6.4541, 3.3947),
    ("New York", "US", 40.7128, -74.0060),
    ("Tokyo", "JP", 35.6762, 139.6503),
    ("Sydney", "AU", -33.8688, 151.2093),
    ("Sao Paulo", "BR", -23.5505, -46.6333),
    ("Mumbai", "IN", 19.0760, 72.8777),
    ("Cairo", "EG", 30.0444, 31.2357),
    ("Moscow", "RU", 55.7558, 37.6173),
    ("Beijing", "CN", 39.9042, 116.4074),
    ("Los Angeles", "US", 34.0522, -118.2437),
    ("Mexico City", "MX", 19.4326, -99.1332),
    ("Buenos Aires", "AR", -34.6037, -58.3816),
    ("Johannesburg", "ZA", -26.2041, 28.0473),
    ("Nairobi", "KE", -1.2921, 36.8219),
    ("Singapore", "SG", 1.3521, 103.8198),
    ("Dubai", "AE", 25.2048, 55.2708),
    ("Istanbul", "TR", 41.0082, 28.9784),
    ("Madrid", "ES", 40.4168, -3.7038),
    ("Berlin", "DE", 52.5200, 13.4050),
    ("Chicago", "US", 41.8781, -87.6298),
    ("Seoul", "KR", 37.5665, 126.9780),
    ("Auckland", "NZ", -36.8485, 174.7633),
    ("Reykjavik", "IS", 64.1466, -21.9426),
)


@dataclass(frozen=True, slots=True)
class GeoPoint:
    """A located point; ``city``/``country`` are for evidence only."""

    lat: float
    lon: float
    city: str | None = None
    country: str | None = None


class GeoIpTable:
    """Disjoint integer ranges per IP version, each mapped to a :class:`GeoPoint`."""

    __slots__ = ("_starts", "_ends", "_points", "_networks")

    def __init__(self, networks: Iterable[tuple[str, GeoPoint]] = ()) -> None:
        """Build from ``(cidr, point)`` pairs; raises ValueError on a bad or repeated
        network (the message names it)."""
        parsed: dict[int, list[tuple[int, int, GeoPoint]]] = {4: [], 6: []}
        seen: set[ipaddress.IPv4Network | ipaddress.IPv6Network] = set()
        for text, point in networks:
            try:
                net = ipaddress.ip_network(text.strip(), strict=True)
            except ValueError as exc:
                raise ValueError(f"bad network {text!r}: {exc}") from None
            if net in seen:
                raise ValueError(f"network {net} listed twice")
            seen.add(net)
            start = int(net.network_address)
            parsed[net.version].append((start, start + net.num_addresses - 1, point))
        self._networks = len(seen)
        self._starts: dict[int, list[int]] = {}
        self._ends: dict[int, list[int]] = {}
        self._points: dict[int, list[GeoPoint]] = {}
        for version, ranges in parsed.items():
            flat = _flatten(ranges)
            self._starts[version] = [s for s, _, _ in flat]
            self._ends[version] = [e for _, e, _ in flat]
            self._points[version] = [p for _, _, p in flat]

    @classmethod
    def load(cls, path: Path) -> GeoIpTable:
        """Read a CSV with header ``network,lat,lon,city,country``; a bad row raises
        ValueError naming the file and line, so a broken table fails at start-up."""
        with open(path, newline="", encoding="utf-8") as handle:
            return cls(_read_rows(handle, str(path)))

    def lookup(self, ip: object) -> GeoPoint | None:
        """The point of the most specific network holding ``ip``; None when no network
        holds it or ``ip`` is not an address. Never raises: clicks carry what the
        client sent. An IPv4-mapped IPv6 address is looked up as its IPv4 address."""
        try:
            packed = packed_ip(ip)  # type: ignore[arg-type]
        except BAD_IP:
            return None
        version, n = (4 if len(packed) == 4 else 6), int.from_bytes(packed)
        i = bisect_right(self._starts[version], n) - 1
        if i >= 0 and n <= self._ends[version][i]:
            return self._points[version][i]
        return None

    def __len__(self) -> int:
        """Networks loaded (not the flattened ranges)."""
        return self._networks

    def __repr__(self) -> str:
        ranges = sum(len(s) for s in self._starts.values())
        return f"GeoIpTable({self._networks} networks, {ranges} ranges)"


def load_geoip(path: Path) -> GeoIpTable:
    """The table at ``path``; an empty one when the file does not exist, so a deployment
    without geo-IP data still runs (clicks without coordinates are then not located)."""
    if not path.exists():
        return GeoIpTable()
    return GeoIpTable.load(path)


def _read_rows(lines: Iterable[str], name: str) -> Iterator[tuple[str, GeoPoint]]:
    reader = csv.reader(lines)
    header = next(reader, None)
    if header is None or tuple(h.strip() for h in header) != HEADER:
        raise ValueError(f"{name}: line 1: header must be {','.join(HEADER)}, got {header!r}")
    for row in reader:
        line = reader.line_num
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        try:
            if len(row) != len(HEADER):
                raise ValueError(f"expected {len(HEADER)} fields, got {len(row)}")
            network, lat_text, lon_text, city, country = (field.strip() for field in row)
            lat, lon = float(lat_text), float(lon_text)
            if not (math.isfinite(lat) and -90.0 <= lat <= 90.0):
                raise ValueError(f"lat {lat_text!r} is not in [-90, 90]")
            if not (math.isfinite(lon) and -180.0 <= lon <= 180.0):
                raise ValueError(f"lon {lon_text!r} is not in [-180, 180]")
            # Validate the network here too, so its error carries the line number.
            ipaddress.ip_network(network, strict=True)
        except ValueError as exc:
            raise ValueError(f"{name}: line {line}: {exc}: {row!r}") from None
        yield network, GeoPoint(lat, lon, city or None, country or None)


def _flatten(ranges: list[tuple[int, int, GeoPoint]]) -> list[tuple[int, int, GeoPoint]]:
    """Disjoint ranges where each address keeps its most specific network.

    CIDR networks are either nested or disjoint, so after sorting by start, widest
    first, a sweep keeps the networks open at the cursor on a stack whose top is the
    most specific one: every address from the cursor to the next event belongs to it.
    """
    out: list[tuple[int, int, GeoPoint]] = []
    stack: list[tuple[int, int, GeoPoint]] = []
    cursor = 0  # first address not yet emitted

    def emit(upto: int, point: GeoPoint) -> None:
        nonlocal cursor
        if cursor <= upto:
            out.append((cursor, upto, point))
        cursor = upto + 1

    for start, end, point in sorted(ranges, key=lambda r: (r[0], -r[1])):
        while stack and stack[-1][1] < start:
            _, top_end, top_point = stack.pop()
            emit(top_end, top_point)
        if stack:
            emit(start - 1, stack[-1][2])
        cursor = start
        stack.append((start, end, point))
    while stack:
        _, top_end, top_point = stack.pop()
        emit(top_end, top_point)
    return out


def demo_rows() -> list[tuple[str, str, str, str, str]]:
    """The rows of the shipped synthetic ``tables/geoip.csv`` (header excluded)."""
    rows = []
    for a in range(256):
        city, country, lat, lon = DEMO_CITIES[a % len(DEMO_CITIES)]
        rows.append((f"10.{a}.0.0/16", str(lat), str(lon), city, country))
    for network, index in (("192.0.2.0/24", 4), ("2001:db8::/32", 19)):  # Sydney, Berlin
        city, country, lat, lon = DEMO_CITIES[index]
        rows.append((network, str(lat), str(lon), city, country))
    return rows


def write_demo_table(path: Path) -> None:
    """Write :func:`demo_rows` as the CSV the app loads."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(HEADER)
        writer.writerows(demo_rows())
