"""Where a faust worker's time goes: the rate of one faust building block at a time.

One embedded Apache Kafka broker, the suite's clicks on a 4-partition topic, and in
each round, after a bare aiokafka consumer as the baseline, one faust worker per
mode of ``bench/peers/faust_wall.py``: reading values, reading events, sending each
record on (``Topic.send``), writing it to a RocksDB table with its changelog, both,
sending it straight to faust's aiokafka producer, and taking records in batches and
sending them as one aiokafka batch per partition. Figures are medians of the rounds,
each also as a ratio to the bare consumer of the same rounds. It measures faust,
not fraudapp: a worker that does per event what a row does can go no faster here.

    .venv/bin/python bench/wall.py --clicks 50000 --runs 3
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.peers.launch import run_peer  # noqa: E402
from bench.results import write_section  # noqa: E402
from bench.suite import MAIN_PYTHON, clicks_for, produce  # noqa: E402
from bench.throughput import bare_consumer  # noqa: E402
from fraudapp.cli.brokers import KafkaBroker  # noqa: E402

PEERS = Path(__file__).with_name("peers")

#: Mode of faust_wall.py and what a worker does per event in it.
MODES = {
    "values": "`async for value in stream` (nothing else)",
    "events": "`async for event in stream.events()` (nothing else)",
    "send": "+ one `Topic.send` per event",
    "table": "+ one RocksDB table write per event (and its changelog record)",
    "send+table": "+ one send and one table write per event (a stateful rule's least)",
    "producer-send": "+ one send straight to faust's aiokafka producer per event",
    "take+batch": "`stream.take(500)`, one aiokafka batch per partition sent",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clicks", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--out", default=str(Path(__file__).with_name("RESULTS.md")))
    args = parser.parse_args()
    modes = args.modes.split(",")
    workdir = Path(tempfile.mkdtemp(prefix="fraudapp-wall-"))
    rates: dict[str, list[float]] = {"bare": [], **{mode: [] for mode in modes}}
    with KafkaBroker() as broker:
        data = produce(broker.bootstrap, "wall-clicks", clicks_for(args.clicks))
        for number in range(args.runs):
            elapsed = asyncio.run(bare_consumer(broker.bootstrap, data.topic, args.clicks))
            rates["bare"].append(args.clicks / elapsed)
            for mode in modes:
                app_id = f"wall-{mode.replace('+', '-')}-{number}-{time.monotonic_ns() % 10**9}"
                run = run_peer(
                    MAIN_PYTHON,
                    PEERS / "faust_wall.py",
                    bootstrap=broker.bootstrap,
                    topic=data.topic,
                    count=args.clicks,
                    workdir=workdir / app_id,
                    app_id=app_id,
                    timeout_s=300,
                    extra=("--mode", mode),
                )
                rates[mode].append(run.records / run.elapsed_s)
            print(
                f"round {number + 1}: "
                + ", ".join(f"{name} {values[-1]:,.0f}/s" for name, values in rates.items()),
                flush=True,
            )
    bare = statistics.median(rates["bare"])
    values = statistics.median(rates[modes[0]])
    lines = [
        "| faust worker doing per event | events/s (median) | min–max"
        f" | vs. bare consumer | vs. `{modes[0]}` |",
        "|---|---|---|---|---|",
        f"| bare aiokafka consumer, decode only | {bare:,.0f} | "
        f"{min(rates['bare']):,.0f}–{max(rates['bare']):,.0f} | 1.0000 | — |",
    ]
    for mode in modes:
        median = statistics.median(rates[mode])
        lines.append(
            f"| `{mode}`: {MODES[mode]} | {median:,.0f} | {min(rates[mode]):,.0f}–"
            f"{max(rates[mode]):,.0f} | {median / bare:.4f} | {median / values:.2f} |"
        )
    table = "\n".join(lines)
    print(table)
    head = (
        "## faust's own wall (`bench/wall.py`)\n\n"
        f"Last run {time.strftime('%Y-%m-%d')}, {args.clicks:,} clicks, {args.runs} rounds,"
        " embedded Apache Kafka:\n\n"
        f"    .venv/bin/python bench/wall.py --clicks {args.clicks} --runs {args.runs}\n\n"
    )
    write_section("wall", head + table + "\n", Path(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
