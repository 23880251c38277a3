"""What every peer shares with the suite: its command line and how it hands back results.

A peer is a program the suite starts as a child process, so its peak RSS is its own
and a framework that leaks or crashes cannot take the suite with it. It reads
``--count`` clicks from ``--topic`` on ``--bootstrap`` and writes one JSON file,
``--out``: how many records it read, the seconds from its first record to its last,
its own peak RSS so far, and the click ids it condemned. The suite checks those ids
against the oracle.

Standard library only: the Quix Streams and Bytewax peers run in a virtualenv of
their own, without fraudapp or faust.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Iterable
from pathlib import Path


def parse_args(description: str, modes: tuple[str, ...] = ()) -> argparse.Namespace:
    """The suite's arguments; ``modes``, when given, adds a ``--mode`` to choose from."""
    parser = argparse.ArgumentParser(description=description)
    if modes:
        parser.add_argument("--mode", choices=modes, default=modes[0])
    parser.add_argument("--bootstrap", required=True, help="host:port of the broker")
    parser.add_argument("--topic", required=True, help="the clicks, keyed by session id")
    parser.add_argument("--count", type=int, required=True, help="records to read, then stop")
    parser.add_argument("--out", type=Path, required=True, help="where the result JSON goes")
    parser.add_argument("--workdir", type=Path, help="state and data directory of this run")
    parser.add_argument("--app-id", default=f"bench-peer-{os.getpid()}", help="group / app id")
    parser.add_argument(
        "--session-timeout",
        type=float,
        default=10.0,
        help="consumer group session timeout, s (Tansu makes JoinGroup wait half of it)",
    )
    return parser.parse_args()


class Clock:
    """Seconds from the first record to the last: start-up and group joins are not
    the peer's per-record speed, and the suite does not count them for anyone."""

    def __init__(self) -> None:
        self.first: float | None = None
        self.last: float | None = None

    def tick(self) -> None:
        now = time.perf_counter()
        if self.first is None:
            self.first = now
        self.last = now

    @property
    def elapsed(self) -> float:
        return (self.last or 0.0) - (self.first or 0.0)


def peak_rss_mb() -> float:
    """``VmHWM``, the high-water mark of this process's own memory. Not ``ru_maxrss``:
    Linux carries that over from the parent at fork and keeps it across exec, so every
    peer would report at least the suite's own RSS."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def write_result(out: Path, records: int, elapsed_s: float, alerts: Iterable[str]) -> None:
    """Written to a temporary name and renamed: the suite polls for the file and must
    never read half of it. The peak RSS is the kernel's high-water mark for this
    process, which a sampler outside could miss for a peer that is done in a second."""
    result = {
        "records": records,
        "elapsed_s": elapsed_s,
        "max_rss_mb": peak_rss_mb(),
        "alerts": sorted(set(alerts)),
    }
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(result))
    os.replace(tmp, out)
