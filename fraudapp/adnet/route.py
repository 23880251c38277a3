"""Which stage a click goes to next, and under which key.

A click visits the stages in a fixed order and skips any whose checks are off or
that cannot judge it (no source, no campaign, no location); the last stage it
visits writes the verdict. Pure, so the order is tested without a broker.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from fraudapp.adnet.envelope import Checked
from fraudapp.adnet.source import source_of

#: Stages after the session stage (click bursts, blocklist and location lookup).
STAGES = ("source", "campaign", "area")

KeyOf = Callable[[Checked], str | None]


def stage_keys(area_key: KeyOf) -> dict[str, KeyOf]:
    """The partitioning key of each stage for a click (None: the stage cannot judge it)."""

    def campaign(checked: Checked) -> str | None:
        click = checked.click
        return click.campaign_id if click.campaign_id and (click.ip or click.device_id) else None

    return {
        "source": lambda checked: source_of(checked.click),
        "campaign": campaign,
        "area": area_key,
    }


def next_stage(
    checked: Checked,
    after: str | None,
    enabled: Mapping[str, bool],
    keys: Mapping[str, KeyOf],
) -> tuple[str, str] | None:
    """The next stage to visit after ``after`` (None: the session stage) and its key."""
    start = 0 if after is None or after not in STAGES else STAGES.index(after) + 1
    for stage in STAGES[start:]:
        if not enabled.get(stage):
            continue
        key = keys[stage](checked)
        if key is not None:
            return stage, key
    return None
