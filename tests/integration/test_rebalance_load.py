"""A second worker joins a live group, is SIGKILLed, and comes back, while clicks
flow at a steady rate with every check on (issue 26): nothing the exact checks
find is lost, every click gets its verdict, and after each step the worker that
takes partitions over answers keyed views as their owner. The restarted worker gets
partitions again (faust-streaming #93: a rejoining worker left with none). Whether a
join or a restart re-handles (almost) nothing (faust-streaming #502) is a test of its
own on the same run, expected to fail for now: see its reason.

The full run at 2 000 clicks/s, with the latency through each rebalance, is
``bench/rebalance.py``; this one runs slowly enough for a busy CI machine.
"""

from __future__ import annotations

import pytest

from fraudapp.clicks.generate import arrival_order, generate_clicks
from tests.integration.helpers import AppSpace
from tests.integration.underload import (
    TABLE_HEAD,
    LoadRun,
    rebalance_under_load,
    rules_table,
    table,
)

pytestmark = pytest.mark.integration

RATE = 250.0
PHASE_S = 10.0


@pytest.fixture(scope="module")
def run(kafka_broker, tmp_path_factory: pytest.TempPathFactory) -> LoadRun:
    """One run of the scenario, which both tests below read."""
    space = AppSpace(kafka_broker.bootstrap, "underload")
    space.create_topics()
    # The four phases and two minutes more: each step's own waits lengthen its phase.
    count = int(RATE * (PHASE_S * 4 + 120))
    clicks = generate_clicks(count, seed=61, rate_per_s=RATE)
    arrived = arrival_order(clicks, max_delay_ms=2_000, seed=62)
    done = rebalance_under_load(
        space, arrived, tmp_path_factory.mktemp("underload"), rate=RATE, phase_s=PHASE_S
    )
    print("\n" + "\n".join([*TABLE_HEAD, *table(done), "", *rules_table(done)]))
    print(
        f"{done.alerts} alert records, {done.distinct_alerts} distinct"
        f" ({done.raw_duplicates} raw duplicates); {done.extra_verdicts} extra verdicts"
    )
    return done


def test_rebalances_under_load_lose_nothing(run: LoadRun) -> None:
    assert run.missing == {"click_burst": 0, "stacked_ads": 0, "rate_limit": 0}
    assert run.unwanted == {"click_burst": 0, "stacked_ads": 0, "rate_limit": 0}
    assert run.blocklist_missing == 0
    assert run.clicks_without_verdict == 0
    assert not run.ran_out, "the clicks ran out before the last phase ended"
    for step in run.steps[1:]:
        assert step.answered_s is not None, f"{step.name}: the new owner never answered"
    assert run.owners_after_restart == 2, "the restarted worker got no partitions (#93)"
    assert all(step.latencies_ms for step in run.steps), "a phase raised no alert"


@pytest.mark.xfail(
    strict=False,
    reason="faust-streaming #502 is fixed only in part: a join and a restart re-handle 0"
    " in most runs, but 86 (3.5 %) at a join in one local run and 410 (16 %) at a restart"
    " in one clean-clone CI run; cause not found (issue 26's note)",
)
def test_a_join_and_a_restart_re_handle_almost_nothing(run: LoadRun) -> None:
    # faust-streaming #502 dropped the acks since the last timed commit before the
    # revoke-time commit: this run's join re-handled 188 clicks (7.5 % of the phase)
    # and its restart 602 (24 %) before the bulk consumer's fix. Only the SIGKILL's
    # re-reads are expected, which the survivor handles again.
    joins, restart = run.steps[1], run.steps[3]
    again, sent = joins.rehandled + restart.rehandled, joins.sent + restart.sent
    assert again <= sent // 20, (joins.rehandled, restart.rehandled, sent)
