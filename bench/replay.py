"""A backtest of a million clicks on one core: ``fraudapp replay``'s engine beside the
floor of reading the same file.

The clicks are generated in chunks (each its own sessions, then a pause of event time
longer than any window and lateness, shuffled up to 20 s as a pipeline delivers them)
and written as JSON lines. In the same run, pinned to one CPU: the baseline reads the
file and decodes every line with orjson (no detection: the floor of any Python
replay), then the backtest runs every check over it, ``--rounds`` times each; medians
and their ratio are reported. Each replay's exact checks are compared with the brute-
force oracles, computed per chunk (no session, source or window reaches across
chunks): a fast wrong answer does not count.

    .venv/bin/python bench/replay.py --clicks 1000000 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.results import write_section  # noqa: E402
from fraudapp.adnet import oracle  # noqa: E402
from fraudapp.clicks.generate import arrival_order, generate_clicks  # noqa: E402
from fraudapp.clicks.oracle import fraudulent_click_ids  # noqa: E402
from fraudapp.core.reference import tables_dir  # noqa: E402
from fraudapp.core.rulebook import defaults  # noqa: E402
from fraudapp.core.settings import Settings  # noqa: E402
from fraudapp.replay import Backtest, Outcome, run  # noqa: E402

CHUNK = 100_000
#: Event time between one chunk's last click and the next one's first: past every
#: window and lateness, so nothing reaches across (the oracles run per chunk).
CHUNK_GAP_MS = 400_000
START_MS = 1_767_225_600_000
EXACT = ("click_burst", "stacked_ads", "rate_limit")


def write_clicks(path: Path, count: int) -> dict[str, set[str]]:
    """The clicks to ``path``; the oracles' click ids per exact rule."""
    expected: dict[str, set[str]] = {rule: set() for rule in EXACT}
    start = START_MS
    with path.open("wb") as out:
        for k, at in enumerate(range(0, count, CHUNK)):
            n = min(CHUNK, count - at)
            clicks = generate_clicks(n, seed=1000 + k, start_ms=start)
            start = max(c["timestamp"] for c in clicks) + CHUNK_GAP_MS
            expected["click_burst"] |= fraudulent_click_ids(clicks)
            expected["stacked_ads"] |= oracle.stacked_click_ids(clicks)
            expected["rate_limit"] |= oracle.over_limit_click_ids(clicks)
            for click in arrival_order(clicks, max_delay_ms=20_000, seed=2000 + k):
                out.write(orjson.dumps(click) + b"\n")
    return expected


def baseline(path: Path) -> float:
    """Seconds to read and decode every line."""
    started = time.perf_counter()
    with path.open("rb") as handle:
        for line in handle:
            orjson.loads(line)
    return time.perf_counter() - started


def replay(path: Path) -> tuple[float, Outcome]:
    settings = Settings()
    engine = Backtest(defaults(settings, tables_dir() / "rules.json"), settings, tables_dir())
    engine.blocklist()  # loaded before the clock starts, as a worker loads it at start
    started = time.perf_counter()
    with path.open("rb") as handle:
        outcome = run(engine, handle)
    return time.perf_counter() - started, outcome


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clicks", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cpu", type=int, default=0, help="the one CPU to run on")
    parser.add_argument("--results", default=str(Path(__file__).with_name("RESULTS.md")))
    args = parser.parse_args()
    os.sched_setaffinity(0, {args.cpu})
    with tempfile.TemporaryDirectory(prefix="fraudapp-replay-") as tmp:
        path = Path(tmp) / "clicks.jsonl"
        expected = write_clicks(path, args.clicks)
        size_mb = path.stat().st_size / 1e6
        floors, times, correct, alerts = [], [], [], {}
        for round_ in range(args.rounds):
            floors.append(baseline(path))
            seconds, outcome = replay(path)
            times.append(seconds)
            got = {rule: set() for rule in EXACT}
            alerts = {}
            for alert in outcome.alerts:
                alerts[alert["rule"]] = alerts.get(alert["rule"], 0) + 1
                if alert["rule"] in got:
                    got[alert["rule"]].add(alert["click_id"])
            ok = got == expected and not outcome.dead_letters
            for rule in EXACT:
                if got[rule] != expected[rule]:
                    print(
                        f"{rule}: {len(got[rule] - expected[rule])} extra,"
                        f" {len(expected[rule] - got[rule])} missing"
                    )
            correct.append(ok)
            print(
                f"round {round_ + 1}: decode {args.clicks / floors[-1]:,.0f}/s,"
                f" replay {args.clicks / seconds:,.0f}/s, oracle {'ok' if ok else 'WRONG'}",
                flush=True,
            )
    floor, took = statistics.median(floors), statistics.median(times)
    rate, floor_rate = args.clicks / took, args.clicks / floor
    counts = ", ".join(f"{rule} {n:,}" for rule, n in sorted(alerts.items()))
    section = "\n".join(
        [
            f"## Replay (`bench/replay.py --clicks {args.clicks} --rounds {args.rounds}`)",
            "",
            f"{args.clicks:,} clicks ({size_mb:,.0f} MB of JSON lines, every check on) through"
            f" `fraudapp replay`'s engine on one pinned CPU, medians of {args.rounds} rounds,"
            " the decode-only floor measured in the same run:",
            "",
            "| | clicks/s | vs. decode only | seconds |",
            "|---|---|---|---|",
            f"| read + orjson decode (floor) | {floor_rate:,.0f} | 1.0 | {floor:,.1f} |",
            f"| replay, all checks | {rate:,.0f} | {rate / floor_rate:.3f} | {took:,.1f} |",
            "",
            f"- exact checks equal to their oracles in every round: "
            f"{'yes' if all(correct) else '**NO**'} ({', '.join(EXACT)})",
            f"- alerts: {counts}",
        ]
    )
    print(section)
    write_section("replay", section, Path(args.results))
    return 0 if all(correct) else 1


if __name__ == "__main__":
    sys.exit(main())
