"""Standby replicas, 0 against 1: what the group's CPU pays per 1 000 clicks for
keeping every partition's state warm on a second worker.

faust's ``table_standby_replicas`` (environment ``TABLE_STANDBY_REPLICAS``) is 1 by
default: each worker also applies the other workers' changelogs, so that it can take
over their partitions without restoring them first. Two workers of one app take the
same clicks with every check on, once with each setting, interleaved in each round on
embedded Apache Kafka; the CPU of both workers is measured from when both hold their
partitions to the last verdict, and every run is checked against its oracle.

    .venv/bin/python bench/standby.py --clicks 15000 --runs 2

The other half of the choice, how long a survivor takes to answer a SIGKILLed
worker's keys with and without a warm standby, is not measured here yet.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.results import write_section  # noqa: E402
from bench.throughput import run_group  # noqa: E402
from fraudapp.cli.brokers import KafkaBroker  # noqa: E402
from fraudapp.clicks.generate import arrival_order, generate_clicks  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clicks", type=int, default=15_000)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--out", default=str(Path(__file__).with_name("RESULTS.md")))
    args = parser.parse_args()

    clicks = arrival_order(generate_clicks(args.clicks, seed=31), max_delay_ms=20_000, seed=32)
    workdir = Path(tempfile.mkdtemp(prefix="fraudapp-standby-"))
    cpu: dict[str, list[float]] = {"0": [], "1": []}
    rate: dict[str, list[float]] = {"0": [], "1": []}
    wrong = []
    with KafkaBroker() as broker:
        for run in range(args.runs):
            for standby in ("0", "1"):
                clicks_s, cpu_s, ok = run_group(
                    broker.bootstrap,
                    clicks,
                    workdir / f"{standby}-{run}",
                    workers=2,
                    env={"TABLE_STANDBY_REPLICAS": standby},
                )
                rate[standby].append(clicks_s)
                cpu[standby].append(cpu_s)
                if not ok:
                    wrong.append(f"standby {standby}, run {run + 1}")
                print(
                    f"run {run + 1} standby {standby}: {rate[standby][-1]:,.0f} clicks/s,"
                    f" {cpu[standby][-1]:.2f} CPU s per 1 000 clicks",
                    flush=True,
                )

    def row(standby: str) -> str:
        c, r = cpu[standby], rate[standby]
        return (
            f"| {standby} | {statistics.median(c):.2f} | {min(c):.2f}–{max(c):.2f}"
            f" | {statistics.median(r):,.0f} |"
        )

    ratio = statistics.median(cpu["1"]) / statistics.median(cpu["0"])
    section = "\n".join(
        [
            f"## Standby replicas, 0 against 1 (`bench/standby.py --clicks {args.clicks}"
            f" --runs {args.runs}`)",
            "",
            f"Two workers of one app, {args.clicks:,} clicks produced while they run, every"
            " check on, each setting once per round, interleaved, on embedded Apache Kafka;"
            " CPU of both workers from when both hold their partitions to the last verdict."
            + (
                f" Not matching the oracle: {', '.join(wrong)}."
                if wrong
                else " Every run matched the oracle."
            ),
            "",
            "| standby replicas | group CPU s per 1 000 clicks (median) | min–max"
            " | clicks/s (median) |",
            "|---|---|---|---|",
            row("0"),
            row("1"),
            "",
            f"A warm standby costs the group {ratio:.2f}x the CPU per click here. The time"
            " until a survivor answers a SIGKILLed worker's keys with and without it is not"
            " measured yet, so the default (faust's 1) is not chosen by this table alone.",
        ]
    )
    print(section)
    write_section("standby", section, Path(args.out))
    return 1 if wrong else 0


if __name__ == "__main__":
    raise SystemExit(main())
