"""The pinned versions: one list in constraints.txt and fraudapp.engine.pins, and a worker on
other versions refuses to start with a one-line reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from fraudapp.engine.pins import PINNED, mismatches, require_pinned

ROOT = Path(__file__).resolve().parents[2]


def test_constraints_file_pins_exactly_what_the_worker_checks() -> None:
    lines = [
        line.split("#")[0].strip() for line in (ROOT / "constraints.txt").read_text().splitlines()
    ]
    pins = dict(line.split("==") for line in lines if line)
    assert pins == PINNED


def test_this_environment_has_the_pinned_versions() -> None:
    assert mismatches() == []


def test_other_versions_are_named_and_refused_unless_allowed(monkeypatch) -> None:
    found = {**PINNED, "aiokafka": "0.15.0"}
    assert mismatches(PINNED, found.get) == ["aiokafka 0.15.0 (pinned 0.14.0)"]
    assert mismatches({"nothing-here": "1.0"}, {}.get) == [
        "nothing-here not installed (pinned 1.0)"
    ]
    monkeypatch.setattr(
        "fraudapp.engine.pins.mismatches", lambda: ["aiokafka 0.15.0 (pinned 0.14.0)"]
    )
    with pytest.raises(SystemExit, match=r"^fraudapp: aiokafka 0\.15\.0 \(pinned 0\.14\.0\)"):
        require_pinned({})
    require_pinned({"FRAUDAPP_ALLOW_UNPINNED": "1"})
