"""Rebalances under load: clicks at a steady 2 000/s with every check on while a
second worker joins, is SIGKILLed and restarts (issue 26, item 3).

One run on embedded Apache Kafka (:func:`tests.integration.underload.rebalance_under_load`):
per phase, the detection latency of the alerts whose click was sent in it (click
handed to the producer -> alert read by a plain consumer), beside the steady phase
of the same run as the baseline; the time until the worker taking partitions over
answers keyed views as their owner; and, over the whole stream, alerts lost or
unwanted against the oracles of the exact checks, and raw duplicate records.

    .venv/bin/python bench/rebalance.py --rate 2000 --phase-s 30
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.results import write_section  # noqa: E402
from fraudapp.cli.brokers import KafkaBroker  # noqa: E402
from fraudapp.clicks.generate import arrival_order, generate_clicks  # noqa: E402
from tests.integration.helpers import AppSpace  # noqa: E402
from tests.integration.underload import TABLE_HEAD, rebalance_under_load, rules_table, table  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=2_000.0)
    parser.add_argument("--phase-s", type=float, default=30.0)
    parser.add_argument("--out", default=str(Path(__file__).with_name("RESULTS.md")))
    args = parser.parse_args()

    # Enough for the four phases and five minutes more: each step's own waits (a
    # worker starting, the new owner answering, the survivor catching up) lengthen it.
    count = int(args.rate * (args.phase_s * 4 + 300))
    clicks = generate_clicks(count, seed=71, rate_per_s=args.rate)
    arrived = arrival_order(clicks, max_delay_ms=2_000, seed=72)
    workdir = Path(tempfile.mkdtemp(prefix="fraudapp-rebalance-"))
    with KafkaBroker() as broker:
        space = AppSpace(broker.bootstrap, "rebalance")
        space.create_topics()
        run = rebalance_under_load(space, arrived, workdir, rate=args.rate, phase_s=args.phase_s)

    lost = sum(run.missing.values())
    unwanted = sum(run.unwanted.values())
    verdict = (
        "Against the oracles (click bursts, stacked ads, rate limit; blocklisted clicks):"
        f" {lost} alerts lost, {unwanted} unwanted, {run.blocklist_missing} blocklisted"
        f" clicks without an alert, {run.clicks_without_verdict} clicks without a verdict."
    )
    section = "\n".join(
        [
            f"## Rebalances under load (`bench/rebalance.py --rate {args.rate:.0f}"
            f" --phase-s {args.phase_s:.0f}`)",
            "",
            f"{run.clicks:,} clicks (2 s of arrival disorder) produced at {args.rate:,.0f}/s"
            f" (sent in {run.sent_s:.0f} s), every check on, 4 partitions, one run: worker A"
            f" alone for {args.phase_s:.0f} s, then B joins, {args.phase_s:.0f} s later B is"
            f" SIGKILLed, {args.phase_s:.0f} s (or the survivor catching up) later B restarts"
            " on its data directory; each phase also waits for the new owner to answer."
            + (" The clicks ran out before the last phase ended." if run.ran_out else "")
            + f" After the last click, {run.drain_s:.0f} s until every click had its verdict."
            " Latency = alert read by a plain consumer − its click handed to the producer,"
            ' counted in the phase its click was sent in; "new owner answered" = from the'
            " step (process spawned, or SIGKILL) until the worker taking partitions over"
            " answers 16 recent sessions, as their owner for one at least (all, after the"
            " SIGKILL).",
            "",
            *TABLE_HEAD,
            *table(run),
            "",
            "Each rule's latency per phase (p50 / p99 ms):",
            "",
            *rules_table(run),
            "",
            verdict + f" {run.alerts:,} alert records, {run.distinct_alerts:,} distinct ids:"
            f" {run.raw_duplicates:,} raw duplicates (same id, sent again after a re-read);"
            f" {run.extra_verdicts:,} verdicts beyond one per click record."
            f" Workers reading input partitions after the restart: {run.owners_after_restart}.",
        ]
    )
    print(section)
    write_section(f"rebalance-{args.rate:.0f}", section, Path(args.out))
    return 0 if run.exact else 1


if __name__ == "__main__":
    raise SystemExit(main())
