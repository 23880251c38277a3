"""faust-streaming #93 as it stands for fraudapp: faust's own assignor, run on the
assignment a group of two workers holds, with fraudapp's 4 input partitions.

With standby replicas (faust's default of 1, kept by bench/standby.py), the assignor
trims each member's sticky partitions only down to ceil(partitions / members); two
members holding 2 each keep them, and a third joins with nothing, neither active nor
standby. Without standbys it trims to the floor and the newcomer gets one. This pins
faust's behaviour: if an upgrade fixes it, this fails and docs/operations.md
("Adding workers") and the worker's warning (fraudapp/live/livewatermarks.py) go.
"""

from __future__ import annotations

import pytest
from faust.assignor.client_assignment import CopartitionedAssignment
from faust.assignor.copartitioned_assignor import CopartitionedAssignor

from fraudapp.core.settings import Settings

TOPICS = {"clicks", "clicks-by-session"}


def third_joins(partitions: int, replicas: int) -> dict[str, CopartitionedAssignment]:
    half = partitions // 2
    first, second = set(range(half)), set(range(half, partitions))
    held = {
        "a": CopartitionedAssignment(actives=set(first), standbys=set(second), topics=TOPICS),
        "b": CopartitionedAssignment(actives=set(second), standbys=set(first), topics=TOPICS),
        "c": CopartitionedAssignment(topics=TOPICS),
    }
    return CopartitionedAssignor(
        topics=TOPICS, cluster_asgn=held, num_partitions=partitions, replicas=replicas
    ).get_assignment()


def test_fraudapp_runs_four_partitions_by_default() -> None:
    assert Settings.from_env({}).partitions == 4


@pytest.mark.parametrize(
    ("partitions", "replicas", "newcomer_actives"),
    [(4, 1, 0), (4, 0, 1), (6, 1, 2), (8, 1, 2)],
)
def test_a_third_worker_gets_partitions_only_where_faust_trims(
    partitions: int, replicas: int, newcomer_actives: int
) -> None:
    got = third_joins(partitions, replicas)
    assert len(got["c"].actives) == newcomer_actives
    assert sorted(p for a in got.values() for p in a.actives) == list(range(partitions))
