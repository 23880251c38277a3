"""The IP blocklist's Bloom filter at scale: load time, size, false-positive rate, lookup time.

Generates ``--ips`` distinct random IPv4 addresses (plus ``--queries`` more, distinct
from them, as non-members), writes the members one per line to a temporary file, and
measures:

* ``load_file`` of that file, in a fresh child process so its peak RSS is the loading
  alone (interpreter + imports + filter + one slice of lines), not this script's test
  data; and ``load_blocklist`` of its directory (which also counts the lines to size
  the filter);
* ``add_ips`` on the same addresses already in memory as a list of strings;
* the filter's real size against the theoretical ``-n ln p / (ln 2)^2`` bits;
* the false-positive rate measured on the non-members, with its 95 % interval;
* ``match()`` per call: misses (the common case), filter hits, IPv6 misses.

    .venv/bin/python bench/blocklist.py --ips 10000000

Prints a Markdown table. numpy (a dependency of datasketches) only makes the random
addresses quickly.
"""

from __future__ import annotations

import argparse
import json
import math
import operator
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fraudapp.adnet.blocklist import Blocklist, load_blocklist, theoretical_bytes  # noqa: E402


def peak_rss_mb() -> float:
    """This process's peak resident set. ``VmHWM``, not ``ru_maxrss``: Linux carries
    ``ru_maxrss`` over from the parent through fork and exec, so a child would report
    this script's test data as its own."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def random_ipv4(count: int, seed: int) -> list[int]:
    """``count`` distinct random 32-bit ints in random order."""
    import numpy as np

    rng = np.random.default_rng(seed)
    drawn = np.unique(rng.integers(0, 2**32, size=count + count // 50 + 1000, dtype=np.uint64))
    while len(drawn) < count:  # only with absurd counts; keeps the draw honest
        more = rng.integers(0, 2**32, size=count - len(drawn) + 1000, dtype=np.uint64)
        drawn = np.unique(np.concatenate([drawn, more]))
    rng.shuffle(drawn)
    return drawn[:count].tolist()


def as_text(ints: list[int]) -> list[str]:
    return list(map(socket.inet_ntoa, map(operator.methodcaller("to_bytes", 4), ints)))


def child(mode: str, target: Path, ips: int, fp_rate: float) -> None:
    """Load in a process that holds nothing else; print timings and RSS as JSON."""
    before = peak_rss_mb()
    started = time.perf_counter()
    if mode == "file":
        blocklist = Blocklist(expected_ips=ips, fp_rate=fp_rate)
        blocklist.load_file(target)
    else:
        blocklist = load_blocklist(target, expected_ips=ips, fp_rate=fp_rate)
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "seconds": seconds,
                "loaded": blocklist.ips_loaded,
                "rss_before_mb": before,
                "rss_peak_mb": peak_rss_mb(),
                "filter_bytes": blocklist.filter_bytes,
            }
        )
    )


def run_child(mode: str, target: Path, ips: int, fp_rate: float) -> dict[str, float]:
    args = [sys.executable, __file__, "--child", mode, str(target)]
    args += ["--ips", str(ips), "--fp-rate", str(fp_rate)]
    out = subprocess.run(args, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def per_call_us(blocklist: Blocklist, queries: list[str]) -> tuple[float, int]:
    match = blocklist.match
    started = time.perf_counter()
    hits = sum(1 for q in queries if match(q) is not None)
    return (time.perf_counter() - started) / len(queries) * 1e6, hits


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--ips", type=int, default=10_000_000)
    parser.add_argument("--queries", type=int, default=1_000_000)
    parser.add_argument("--fp-rate", type=float, default=0.001)
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--child", nargs=2, metavar=("MODE", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    n, q, p = args.ips, args.queries, args.fp_rate
    if args.child:
        child(args.child[0], Path(args.child[1]), n, p)
        return 0

    started = time.perf_counter()
    ints = random_ipv4(n + q, args.seed)
    members, others = as_text(ints[:n]), as_text(ints[n:])
    del ints
    generated = time.perf_counter() - started
    print(f"generated {n:,} + {q:,} addresses in {generated:.1f} s", file=sys.stderr)

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ips.txt"
        with path.open("w") as f:
            f.write("# benchmark: random IPv4 addresses\n")
            f.write("\n".join(members))
            f.write("\n")
        size_mb = path.stat().st_size / 1e6
        from_file = run_child("file", path, n, p)
        from_dir = run_child("dir", Path(tmp), n, p)
    assert from_file["loaded"] == n and from_dir["loaded"] == n

    blocklist = Blocklist(expected_ips=n, fp_rate=p)
    started = time.perf_counter()
    blocklist.add_ips(members)
    from_list = time.perf_counter() - started

    miss_us, false_positives = per_call_us(blocklist, others)
    hit_us, hits = per_call_us(blocklist, members[: min(n, 200_000)])
    assert hits == min(n, 200_000), "false negative"
    v6_us, _ = per_call_us(
        blocklist, [f"2001:db8:{i >> 16:x}::{i & 0xFFFF:x}" for i in range(200_000)]
    )
    measured = false_positives / q
    half_width = 1.96 * math.sqrt(measured * (1 - measured) / q)
    theory = theoretical_bytes(n, p)
    real = blocklist.filter_bytes

    rows = [
        (f"`load_file`, {n:,} lines ({size_mb:.0f} MB file)", f"{from_file['seconds']:.2f} s"),
        ("  per line", f"{from_file['seconds'] / n * 1e9:.0f} ns"),
        (
            "`load_blocklist` of that directory (counts lines, then loads)",
            f"{from_dir['seconds']:.2f} s",
        ),
        (
            f"`add_ips`, list of {n:,} strings",
            f"{from_list:.2f} s ({from_list / n * 1e9:.0f} ns/IP)",
        ),
        ("filter size (real bit array)", f"{real / 1e6:.3f} MB ({real * 8 / n:.4f} bits/IP)"),
        (f"theoretical size at p = {p:g}", f"{theory / 1e6:.3f} MB ({theory * 8 / n:.4f} bits/IP)"),
        ("real / theoretical", f"{real / theory:.7f}"),
        (
            f"false-positive rate, {q:,} non-members",
            f"{measured:.5f} ± {half_width:.5f} (95 %), {measured / p:.2f}x configured",
        ),
        ("`match()` miss (IPv4, not listed)", f"{miss_us:.2f} µs"),
        ("`match()` filter hit (builds the evidence)", f"{hit_us:.2f} µs"),
        ("`match()` miss (IPv6)", f"{v6_us:.2f} µs"),
        (
            "peak RSS, `load_file` child (after imports)",
            f"{from_file['rss_peak_mb']:.0f} MB ({from_file['rss_before_mb']:.0f} MB)",
        ),
        ("peak RSS, this process (holds the test data)", f"{peak_rss_mb():.0f} MB"),
    ]
    print(f"| {n:,} IPv4 at p = {p:g} | |")
    print("|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
