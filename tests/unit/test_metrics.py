"""The worker's own metrics that are not about records: garbage-collector pauses."""

from __future__ import annotations

import gc

from fraudapp.live import metrics


def _full_collections() -> float:
    value = metrics.registry.get_sample_value(
        "fraudapp_gc_pause_seconds_count", {"generation": "2"}
    )
    return value or 0.0


def test_every_full_collection_is_timed() -> None:
    before = _full_collections()
    gc.collect()
    gc.collect()
    assert _full_collections() == before + 2
    assert (
        metrics.registry.get_sample_value("fraudapp_gc_pause_seconds_sum", {"generation": "2"}) > 0
    )
