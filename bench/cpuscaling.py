"""Scaling measured in CPU: the group's CPU seconds per 1 000 clicks with 1, 2 and 3
workers, beside their throughput.

A 2-core machine cannot show two or three workers going faster than one when one
already fills a core and the broker the other; what it can show is whether adding
workers costs CPU per click (rebalancing, standbys, re-keying between workers,
forwarding). The same clicks are produced while the workers run (every check on),
each worker count once per round, interleaved, on embedded Apache Kafka; CPU of the
workers from when all hold their partitions to the last verdict; every run is checked
against its oracle. Target (issue 26): 2 and 3 workers within 1.15x of one.

    .venv/bin/python bench/cpuscaling.py --clicks 15000 --runs 2
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

COUNTS = (1, 2, 3)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clicks", type=int, default=15_000)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument(
        "--partitions",
        type=int,
        default=4,
        help="per topic; on 4, faust leaves a third worker without any (faust-streaming #93)",
    )
    parser.add_argument("--out", default=str(Path(__file__).with_name("RESULTS.md")))
    args = parser.parse_args()

    clicks = arrival_order(generate_clicks(args.clicks, seed=61), max_delay_ms=20_000, seed=62)
    workdir = Path(tempfile.mkdtemp(prefix="fraudapp-cpuscaling-"))
    cpu: dict[int, list[float]] = {n: [] for n in COUNTS}
    rate: dict[int, list[float]] = {n: [] for n in COUNTS}
    wrong = []
    with KafkaBroker() as broker:
        for run in range(args.runs):
            for workers in COUNTS:
                clicks_s, cpu_s, ok = run_group(
                    broker.bootstrap,
                    clicks,
                    workdir / f"{workers}-{run}",
                    workers=workers,
                    partitions=args.partitions,
                )
                rate[workers].append(clicks_s)
                cpu[workers].append(cpu_s)
                if not ok:
                    wrong.append(f"{workers} workers, run {run + 1}")
                print(
                    f"run {run + 1}, {workers} worker(s): {rate[workers][-1]:,.0f} clicks/s,"
                    f" {cpu[workers][-1]:.2f} CPU s per 1 000 clicks",
                    flush=True,
                )

    one_cpu, one_rate = statistics.median(cpu[1]), statistics.median(rate[1])
    rows = [
        f"| {n} | {statistics.median(cpu[n]):.2f} | {min(cpu[n]):.2f}–{max(cpu[n]):.2f}"
        f" | {statistics.median(cpu[n]) / one_cpu:.2f}x"
        f" | {statistics.median(rate[n]):,.0f} | {statistics.median(rate[n]) / one_rate:.2f}x |"
        for n in COUNTS
    ]
    section = "\n".join(
        [
            f"## Scaling in CPU (`bench/cpuscaling.py --clicks {args.clicks} --runs {args.runs}"
            + ("" if args.partitions == 4 else f" --partitions {args.partitions}")
            + "`)",
            "",
            f"{args.clicks:,} clicks produced while 1, 2 or 3 workers of one app run"
            f" ({args.partitions} partitions a topic), every"
            " check on, each count once per round, interleaved, on embedded Apache Kafka"
            " (2 cores); CPU of the workers from when all hold their partitions to the last"
            " verdict."
            + (
                f" Not matching the oracle: {', '.join(wrong)}."
                if wrong
                else " Every run matched the oracle."
            ),
            "",
            "| workers | group CPU s per 1 000 clicks (median) | min–max | vs. one"
            " | clicks/s (median) | vs. one |",
            "|---|---|---|---|---|---|",
            *rows,
        ]
    )
    print(section)
    name = "cpuscaling" if args.partitions == 4 else f"cpuscaling-{args.partitions}"
    write_section(name, section, Path(args.out))
    return 1 if wrong else 0


if __name__ == "__main__":
    raise SystemExit(main())
