"""A worker keeps its state where faust's ``-D``/``--datadir`` says.

fraudapp used to hand faust its own default (``./fraudapp-data``, or
``FRAUDAPP_DATADIR``), which silently won over the flag: two workers started from one
directory with different ``-D`` shared their RocksDB state. The flag now comes first,
then ``FRAUDAPP_DATADIR``/``APP_DATADIR``, then the default
(tests/unit/test_settings.py holds the order; this holds a real worker to it).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.helpers import AppSpace, running

pytestmark = pytest.mark.integration


def test_faust_datadir_flag_wins_over_the_environment(kafka_broker, tmp_path: Path) -> None:
    space = AppSpace(kafka_broker.bootstrap, "datadir")
    space.create_topics()
    worker = space.worker(tmp_path / "w")  # FRAUDAPP_DATADIR=<w>/state
    worker.faust_datadir = tmp_path / "flag"
    with running(worker):
        status, _ = worker.get("/health")
        assert status == 200
    tables = sorted(p.name for p in (tmp_path / "flag").rglob("*.db"))
    assert any(name.startswith("click-sessions") for name in tables), tables
    assert not (tmp_path / "w" / "state").exists(), "state went to FRAUDAPP_DATADIR"
