"""Geo-IP lookups against a brute-force scan of the networks with ``ipaddress``."""

from __future__ import annotations

import ipaddress
import random
from pathlib import Path

import pytest

from fraudapp.adnet.geoip import (
    DEMO_CITIES,
    HEADER,
    GeoIpTable,
    GeoPoint,
    demo_rows,
    load_geoip,
)
from fraudapp.core.geo import geo_distance_km
from fraudapp.core.reference import tables_dir

SHIPPED = Path(__file__).resolve().parents[2] / "tables" / "geoip.csv"


Networks = list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, GeoPoint]]


def brute_force(networks: Networks, ip: str) -> GeoPoint | None:
    """The point of the longest-prefix network holding ``ip``, by scanning them all."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return None
    best: tuple[int, GeoPoint] | None = None
    for net, point in networks:
        holds = net.version == addr.version and addr in net
        if holds and (best is None or net.prefixlen > best[0]):
            best = (net.prefixlen, point)
    return best[1] if best else None


def random_networks(rng: random.Random) -> list[tuple[str, GeoPoint]]:
    """Nested and disjoint networks in a small corner of each address space, so random
    addresses hit containers, holes and the gaps between them."""
    seen: set[str] = set()
    out = []
    for i in range(300):
        if rng.random() < 0.7:
            prefix = rng.randint(8, 30)
            base = (10 << 24) | rng.getrandbits(24)
            net = ipaddress.ip_network((base, prefix), strict=False)
        else:
            prefix = rng.randint(32, 126)
            base = (0x20010DB8 << 96) | (rng.getrandbits(24) << 80)
            net = ipaddress.ip_network((base, prefix), strict=False)
        if str(net) not in seen:
            seen.add(str(net))
            out.append((str(net), GeoPoint(float(i % 90), float(i % 180), f"c{i}")))
    return out


def test_lookup_matches_brute_force_with_nested_networks() -> None:
    rng = random.Random(7)
    networks = random_networks(rng)
    table = GeoIpTable(networks)
    assert len(table) == len(networks)
    probes: list[str] = []
    for text, _ in networks:  # every boundary: first, last, and just outside
        net = ipaddress.ip_network(text)
        first, last = int(net.network_address), int(net.broadcast_address)
        cls = ipaddress.IPv4Address if net.version == 4 else ipaddress.IPv6Address
        top = 2**32 - 1 if net.version == 4 else 2**128 - 1
        for n in (first - 1, first, first + 1, last - 1, last, last + 1):
            if 0 <= n <= top:
                probes.append(str(cls(n)))
    probes += [str(ipaddress.IPv4Address((10 << 24) | rng.getrandbits(24))) for _ in range(2000)]
    probes += [
        str(ipaddress.IPv6Address((0x20010DB8 << 96) | (rng.getrandbits(24) << 80)))
        for _ in range(500)
    ]
    probes += ["0.0.0.0", "255.255.255.255", "::", "11.0.0.1"]
    parsed = [(ipaddress.ip_network(text), point) for text, point in networks]
    for ip in probes:
        assert table.lookup(ip) == brute_force(parsed, ip), ip


def test_shipped_table() -> None:
    table = load_geoip(tables_dir() / "geoip.csv")
    assert len(table) == 258
    lagos = table.lookup("10.1.2.3")
    assert lagos is not None and lagos.city == "Lagos"
    assert geo_distance_km(lagos.lat, lagos.lon, 6.45, 3.39) < 10  # the generator's farm
    london = table.lookup("10.0.5.6")
    assert london is not None and london.city == "London"
    assert table.lookup("10.24.0.1") == london  # a % 24
    assert table.lookup("10.255.255.255") is not None
    assert table.lookup("192.0.2.77") is not None
    assert table.lookup("2001:db8:bad::1") is not None
    assert table.lookup("::ffff:10.1.0.9") == lagos  # IPv4-mapped IPv6
    assert table.lookup("8.8.8.8") is None
    assert table.lookup("2001:4860::8888") is None
    for garbage in ("", "garbage", "10.1.2", "10.1.2.300", " 10.1.2.3", "10.1.2.3/32", None, 5):
        assert table.lookup(garbage) is None  # type: ignore[arg-type]


def test_shipped_file_is_exactly_the_demo_rows() -> None:
    lines = SHIPPED.read_text(encoding="utf-8").splitlines()
    assert lines[0] == ",".join(HEADER)
    assert lines[1:] == [",".join(row) for row in demo_rows()]


def test_demo_cities_are_well_separated() -> None:
    assert [c[0] for c in DEMO_CITIES[:2]] == ["London", "Lagos"]
    assert len(DEMO_CITIES) == 24
    for i, (name, _, lat, lon) in enumerate(DEMO_CITIES):
        for other, _, lat2, lon2 in DEMO_CITIES[i + 1 :]:
            assert geo_distance_km(lat, lon, lat2, lon2) >= 300, (name, other)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "geoip.csv"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("row", "needle"),
    [
        ("10.0.0.0/33,1,2,X,Y", "line 3"),
        ("10.0.0.1/16,1,2,X,Y", "line 3"),  # host bits set
        ("not-an-ip,1,2,X,Y", "line 3"),
        ("10.2.0.0/16,north,2,X,Y", "line 3"),
        ("10.2.0.0/16,91,2,X,Y", "line 3"),
        ("10.2.0.0/16,1,nan,X,Y", "line 3"),
        ("10.2.0.0/16,1,2,X", "line 3"),
    ],
)
def test_bad_row_names_its_line(tmp_path: Path, row: str, needle: str) -> None:
    path = write(tmp_path, f"network,lat,lon,city,country\n10.1.0.0/16,1,2,A,B\n{row}\n")
    with pytest.raises(ValueError, match=needle):
        GeoIpTable.load(path)


def test_bad_header_and_duplicate_network(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="line 1"):
        GeoIpTable.load(write(tmp_path, "cidr,lat,lon\n10.0.0.0/8,1,2\n"))
    dup = "network,lat,lon,city,country\n10.0.0.0/8,1,2,A,B\n10.0.0.0/8,3,4,C,D\n"
    with pytest.raises(ValueError, match="twice"):
        GeoIpTable.load(write(tmp_path, dup))


def test_empty_city_blank_lines_and_missing_file(tmp_path: Path) -> None:
    table = GeoIpTable.load(write(tmp_path, "network,lat,lon,city,country\n\n10.0.0.0/8,1,2,,\n"))
    assert table.lookup("10.9.9.9") == GeoPoint(1.0, 2.0)
    empty = load_geoip(tmp_path / "missing.csv")
    assert len(empty) == 0 and empty.lookup("10.1.2.3") is None


@pytest.mark.parametrize(
    "ip",
    [
        "10.1.2.3",
        "::ffff:10.1.2.3",
        "2001:db8::1",
        "01.2.3.4",
        "1.2.3",
        "10.1.2.3 ",
        "",
        "x",
        "10.1.2.3\x00",
        "\u0661.2.3.4",
        "::ffff:1.2.3",
        "10.1.2.256",
    ],
)
def test_lookup_parses_addresses_as_ipaddress_does(ip: str) -> None:
    """The lookup parses with ``inet_pton`` for speed; what it accepts and how it reads
    an IPv4-mapped address must be what ``ipaddress`` would say."""
    networks = [
        ("10.1.0.0/16", GeoPoint(6.45, 3.39, "Lagos", "NG")),
        ("2001:db8::/32", GeoPoint(0.0, 0.0, "Doc", "ZZ")),
    ]
    parsed = [(ipaddress.ip_network(text), point) for text, point in networks]
    try:
        mapped = getattr(ipaddress.ip_address(ip), "ipv4_mapped", None)
    except ValueError:
        mapped = None
    expected = brute_force(parsed, str(mapped) if mapped else ip)
    assert GeoIpTable(networks).lookup(ip) == expected
