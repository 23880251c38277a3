"""A second worker joins a live group, is SIGKILLed, and comes back, while clicks
flow at a steady rate with every check on (issue 26): nothing the exact checks
find is lost, every click gets its verdict, and after each step the worker that
takes partitions over answers keyed views as their owner. The restarted worker gets
partitions again (faust-streaming #93: a rejoining worker left with none), and a
worker joining costs no re-reading (faust-streaming #502).

The full run at 2 000 clicks/s, with the latency through each rebalance, is
``bench/rebalance.py``; this one runs slowly enough for a busy CI machine.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fraudapp.clicks.generate import arrival_order, generate_clicks
from tests.integration.helpers import AppSpace
from tests.integration.underload import TABLE_HEAD, rebalance_under_load, rules_table, table

pytestmark = pytest.mark.integration

RATE = 250.0
PHASE_S = 10.0


def test_rebalances_under_load_lose_nothing(kafka_broker, tmp_path: Path) -> None:
    space = AppSpace(kafka_broker.bootstrap, "underload")
    space.create_topics()
    # The four phases and two minutes more: each step's own waits lengthen its phase.
    count = int(RATE * (PHASE_S * 4 + 120))
    clicks = generate_clicks(count, seed=61, rate_per_s=RATE)
    arrived = arrival_order(clicks, max_delay_ms=2_000, seed=62)
    run = rebalance_under_load(space, arrived, tmp_path, rate=RATE, phase_s=PHASE_S)

    print("\n" + "\n".join([*TABLE_HEAD, *table(run), "", *rules_table(run)]))
    print(
        f"{run.alerts} alert records, {run.distinct_alerts} distinct"
        f" ({run.raw_duplicates} raw duplicates); {run.extra_verdicts} extra verdicts"
    )
    assert run.missing == {"click_burst": 0, "stacked_ads": 0, "rate_limit": 0}
    assert run.unwanted == {"click_burst": 0, "stacked_ads": 0, "rate_limit": 0}
    assert run.blocklist_missing == 0
    assert run.clicks_without_verdict == 0
    assert not run.ran_out, "the clicks ran out before the last phase ended"
    for step in run.steps[1:]:
        assert step.answered_s is not None, f"{step.name}: the new owner never answered"
    assert run.owners_after_restart == 2, "the restarted worker got no partitions (#93)"
    # faust-streaming #502 dropped the acks since the last timed commit before the
    # revoke-time commit: this test's join re-handled 188 clicks (7.5 % of the phase)
    # and its restart 602 (24 %) before the fix. Since, the restart 0 in each run read;
    # the join 0 in most, but 86 (3.5 %) in one run here and 97 of 30 000 in one
    # bench/rebalance.py run, cause not found. The bound keeps the defect out and
    # leaves that residual visible (printed above). Only the SIGKILL's re-reads are
    # expected, which the survivor handles again.
    joins, restart = run.steps[1], run.steps[3]
    again, sent = joins.rehandled + restart.rehandled, joins.sent + restart.sent
    assert again <= sent // 20, (joins.rehandled, restart.rehandled, sent)
    assert all(step.latencies_ms for step in run.steps), "a phase raised no alert"
