"""One worker against two on the same 4-partition topic: does adding a worker add speed?

The click rule alone (issue 7's target: two workers on 4 partitions at least 1.6x
one worker on this 2-core machine). Each round measures the bare consumer (the
baseline), then one worker, then two workers of one app, on embedded Apache Kafka,
with the same clicks; the two-worker run is timed from when both hold their
partitions. Every run's alerts are compared with the oracle.

    .venv/bin/python bench/scaling.py --clicks 50000 --runs 3

Writes the table between the ``scaling`` markers of ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.cpuuse import CpuMeter  # noqa: E402
from bench.results import rate_table, write_section  # noqa: E402
from bench.throughput import bare_consumer, run_clicks  # noqa: E402
from fraudapp.cli.brokers import KAFKA_VERSION, KafkaBroker  # noqa: E402
from fraudapp.clicks.generate import arrival_order, generate_clicks  # noqa: E402
from tests.integration.helpers import AppSpace  # noqa: E402

TARGET = 1.6
PROCESSES = ("worker-0", "worker-1", "broker", "bench")


def cpu_row(label: str, meter: CpuMeter, clicks: int) -> str:
    """One timed window's CPU: how full the machine was, and what each process used
    (the bench process produces the clicks and reads the verdicts)."""
    per = [f"{meter.used[p] * 1e6 / clicks:.0f} ms" if p in meter.used else "—" for p in PROCESSES]
    return f"| {label} | {meter.share_of_machine():.0%} | " + " | ".join(per) + " |"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clicks", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", default=str(Path(__file__).with_name("RESULTS.md")))
    args = parser.parse_args()

    clicks = arrival_order(generate_clicks(args.clicks, seed=7), max_delay_ms=30_000, seed=8)
    rows: dict[str, list[float]] = {"bare": [], "one": [], "two": []}
    correct = {"one": True, "two": True}
    meters: dict[str, list[CpuMeter]] = {"one": [], "two": []}
    workdir = Path(tempfile.mkdtemp(prefix="fraudapp-scaling-"))
    with KafkaBroker() as broker:
        baseline = AppSpace(broker.bootstrap, "scale-bare")
        baseline.create_topics()
        baseline.produce([(c["session_id"], c) for c in clicks])
        for run in range(args.runs):
            seconds = asyncio.run(
                bare_consumer(broker.bootstrap, baseline.topics["clicks"], args.clicks)
            )
            rows["bare"].append(args.clicks / seconds)
            for name, workers in (("one", 1), ("two", 2)):
                seconds, ok, meter = run_clicks(
                    broker.bootstrap,
                    clicks,
                    workdir,
                    workers=workers,
                    cpu={"broker": broker.pid} if broker.pid else {},
                )
                rows[name].append(args.clicks / seconds)
                correct[name] &= ok
                if meter is not None:
                    meters[name].append(meter)
            print(
                f"run {run + 1}: " + ", ".join(f"{k} {v[-1]:,.0f}/s" for k, v in rows.items()),
                flush=True,
            )
    medians = {name: statistics.median(values) for name, values in rows.items()}
    labels = {
        "bare": "bare aiokafka consumer, decode only",
        "one": "one fraudapp worker, click rule alone",
        "two": "two fraudapp workers of one app, click rule alone",
    }
    lines = rate_table(rows, labels, correct, unit="clicks/s")
    ratio = medians["two"] / medians["one"]
    verdict = "met" if ratio >= TARGET else "**not met**"
    section = "\n".join(
        [
            f"## Two workers against one (`bench/scaling.py --clicks {args.clicks}"
            f" --runs {args.runs}`)",
            "",
            f"{args.clicks:,} clicks (the throughput benchmark's traffic, shuffled up to 30 s)"
            f" on a 4-partition topic, embedded Apache Kafka {KAFKA_VERSION}, this 2-core"
            " machine, which also runs the broker and the producing and reading client."
            f" Medians of {args.runs} rounds; each round measures the bare consumer, then"
            " one worker, then two workers of one app (timed once both hold their"
            " partitions), each from the first click produced to the last verdict read.",
            "",
            *lines,
            "",
            f"- two workers vs one: {ratio:.2f}x (target ≥ {TARGET}x): {verdict}",
            "",
            "CPU used over each timed window (all threads), as a share of the machine's"
            f" {os.cpu_count()} cores, and per process in CPU milliseconds per 1 000 clicks:",
            "",
            "| run | machine busy | " + " | ".join(PROCESSES) + " |",
            "|---|---|" + "---|" * len(PROCESSES),
            *(
                cpu_row(f"{name} {label}, round {n + 1}", m, args.clicks)
                for name, label in (("one", "worker"), ("two", "workers"))
                for n, m in enumerate(meters[name])
            ),
        ]
    )
    print(section)
    write_section("scaling", section, Path(args.out))
    return 0 if all(correct.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
