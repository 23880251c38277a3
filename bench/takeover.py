"""How long until a survivor answers a SIGKILLed worker's keys, with 0 and with 1
standby replica.

Two workers of one app share a stream (every check on); once it is handled and
committed, the sessions the victim serves are found through the keyed view's
``served_by``; then the victim is SIGKILLed and the survivor is asked for those
sessions until it answers every one itself. The time counts the broker noticing the
death (the session timeout, ``BROKER_SESSION_TIMEOUT``, 10 s by default), the
rebalance, and restoring the victim's partitions from the changelog where no warm
standby holds them. Each setting once per round, interleaved, on embedded Apache
Kafka.

    .venv/bin/python bench/takeover.py --clicks 20000 --runs 2
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.results import write_section  # noqa: E402
from fraudapp.cli.brokers import KafkaBroker  # noqa: E402
from fraudapp.clicks.generate import arrival_order, generate_clicks  # noqa: E402
from tests.integration.helpers import AppSpace, metric, running, wait_for  # noqa: E402


def takeover_s(bootstrap: str, clicks: list[dict], workdir: Path, standby: str) -> float:
    space = AppSpace(bootstrap, f"takeover-{standby}", TABLE_STANDBY_REPLICAS=standby)
    space.create_topics()
    survivor, victim = space.worker(workdir / "a"), space.worker(workdir / "b")
    survivor.log_level = victim.log_level = "warn"
    with running(survivor), running(victim):
        assert wait_for(
            lambda: all(w.get("/health")[1].get("assigned_partitions") for w in (survivor, victim)),
            timeout=90,
        ), "the two workers never shared partitions"
        space.produce([(c["session_id"], c) for c in clicks])
        assert wait_for(
            lambda: (
                all(metric(w, "fraudapp_consumer_lag") == 0 for w in (survivor, victim))
                and (metric(survivor, "fraudapp_verdicts_total") or 0)
                + (metric(victim, "fraudapp_verdicts_total") or 0)
                >= len(clicks)
            ),
            timeout=300,
        ), "the stream was never handled"
        time.sleep(4.0)  # past faust's commit interval
        sessions = sorted({c["session_id"] for c in clicks})[:200]
        theirs = [
            s for s in sessions if victim.get(f"/sessions/{s}")[1].get("served_by") == victim.url
        ]
        assert theirs, "the victim serves no session"
        assert victim.proc is not None
        killed = time.monotonic()
        os.kill(victim.proc.pid, signal.SIGKILL)
        victim.proc.wait(timeout=10)
        left = set(theirs)
        while left:
            assert time.monotonic() - killed < 300, f"{len(left)} sessions never answered"
            for session in sorted(left):
                status, body = survivor.get(f"/sessions/{session}", timeout=5)
                if status == 200 and body.get("served_by") == survivor.url:
                    left.discard(session)
            time.sleep(0.1)
        return time.monotonic() - killed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clicks", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--out", default=str(Path(__file__).with_name("RESULTS.md")))
    args = parser.parse_args()

    clicks = arrival_order(generate_clicks(args.clicks, seed=41), max_delay_ms=20_000, seed=42)
    workdir = Path(tempfile.mkdtemp(prefix="fraudapp-takeover-"))
    times: dict[str, list[float]] = {"0": [], "1": []}
    with KafkaBroker() as broker:
        for run in range(args.runs):
            for standby in ("0", "1"):
                seconds = takeover_s(
                    broker.bootstrap, clicks, workdir / f"{standby}-{run}", standby
                )
                times[standby].append(seconds)
                print(
                    f"run {run + 1} standby {standby}: answered after {seconds:.1f} s", flush=True
                )
    rows = [
        f"| {s} | {statistics.median(t):.1f} s | {min(t):.1f}–{max(t):.1f} s |"
        for s, t in times.items()
    ]
    section = "\n".join(
        [
            f"## Takeover after a SIGKILL (`bench/takeover.py --clicks {args.clicks}"
            f" --runs {args.runs}`)",
            "",
            f"Two workers, {args.clicks:,} clicks handled and committed, then one SIGKILLed;"
            " time until the survivor answers every session the victim served (up to 200)."
            " It counts the broker noticing (10 s session timeout), the rebalance and, without"
            " a standby, restoring the victim's partitions from the changelog.",
            "",
            "| standby replicas | until the survivor answers (median) | min–max |",
            "|---|---|---|",
            *rows,
        ]
    )
    print(section)
    write_section("takeover", section, Path(args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
