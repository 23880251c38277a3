"""The stage order, the envelope between stages, the score, and the settings."""

from __future__ import annotations

import pytest

from fraudapp.adnet.envelope import Checked, risk_score, verdict
from fraudapp.adnet.route import next_stage, stage_keys
from fraudapp.clicks.models import Click
from fraudapp.core.settings import DEFAULT_WEIGHTS, Settings, SettingsError

ALL_ON = {"source": True, "campaign": True, "area": True}
KEYS = stage_keys(lambda checked: "region-1" if checked.lat is not None else None)


def checked(**fields) -> Checked:
    click = Click("c1", "s1", "https://ads.example/shoes", 1000, **fields)
    located = fields.get("lat") is not None
    return Checked(
        click, lat=fields.get("lat"), lon=fields.get("lon"), located_by="click" if located else None
    )


def test_a_full_click_visits_every_stage_in_order() -> None:
    c = checked(ip="10.0.0.1", device_id="d", campaign_id="cmp-1", lat=1.0, lon=2.0)
    assert next_stage(c, None, ALL_ON, KEYS) == ("source", "device:d")
    assert next_stage(c, "source", ALL_ON, KEYS) == ("campaign", "cmp-1")
    assert next_stage(c, "campaign", ALL_ON, KEYS) == ("area", "region-1")
    assert next_stage(c, "area", ALL_ON, KEYS) is None


def test_stages_that_cannot_judge_or_are_off_are_skipped() -> None:
    bare = checked()
    assert next_stage(bare, None, ALL_ON, KEYS) is None
    c = checked(ip="10.0.0.1", campaign_id="cmp-1")
    assert next_stage(c, None, {**ALL_ON, "source": False}, KEYS) == ("campaign", "cmp-1")
    assert next_stage(c, "campaign", ALL_ON, KEYS) is None  # no location


def test_envelope_round_trips_and_verdict_lists_reasons_and_score() -> None:
    c = checked(ip="10.0.0.1", lat=1.5, lon=-2.5)
    c.fired("stacked_ads")
    c.fired("stacked_ads")
    c.skipped["rate_limit"] = "late"
    again = Checked.decode(c.encode())
    assert again == c
    v = verdict(again, DEFAULT_WEIGHTS)
    assert v["reasons"] == ["stacked_ads"] and v["fraud"]
    assert v["risk_score"] == pytest.approx(0.7)
    assert v["location"] == {"lat": 1.5, "lon": -2.5, "by": "click"}


def test_risk_score_grows_with_each_check_and_stays_below_one() -> None:
    assert risk_score([], DEFAULT_WEIGHTS) == 0
    one = risk_score(["rate_limit"], DEFAULT_WEIGHTS)
    two = risk_score(["rate_limit", "heavy_hitter"], DEFAULT_WEIGHTS)
    every = risk_score(list(DEFAULT_WEIGHTS), DEFAULT_WEIGHTS)
    assert 0 < one < two < every < 1
    assert two == pytest.approx(1 - 0.6 * 0.5)


def test_adnet_settings_from_env() -> None:
    s = Settings.from_env(
        {"STACKED_ADS_ENABLED": "off", "RATE_LIMIT_BURST": "9", "RISK_WEIGHT_RATE_LIMIT": "0.25"}
    )
    assert not s.adnet.stacked_enabled and s.adnet.rate_burst == 9
    assert s.adnet.weights["rate_limit"] == 0.25
    with pytest.raises(SettingsError, match="STACKED_ADS_ENABLED"):
        Settings.from_env({"STACKED_ADS_ENABLED": "maybe"})
    with pytest.raises(SettingsError, match="between 0 and 1"):
        Settings.from_env({"LOCATION_THRESHOLD": "1.5"})


def test_producer_linger_is_a_setting() -> None:
    assert Settings.from_env({}).producer_linger_ms == 50.0
    assert Settings.from_env({"PRODUCER_LINGER_MS": "5"}).producer_linger_ms == 5.0


def test_producer_batch_size_is_a_setting() -> None:
    assert Settings.from_env({}).producer_batch_kb == 256
    assert Settings.from_env({"PRODUCER_BATCH_KB": "64"}).producer_batch_kb == 64
    with pytest.raises(SettingsError):
        Settings.from_env({"PRODUCER_BATCH_KB": "0"})


def test_fetch_wait_is_a_setting() -> None:
    assert Settings.from_env({}).fetch_max_wait_ms == 100
    assert Settings.from_env({"FETCH_MAX_WAIT_MS": "10"}).fetch_max_wait_ms == 10
    with pytest.raises(SettingsError):
        Settings.from_env({"FETCH_MAX_WAIT_MS": "-1"})


def test_event_loop_is_a_setting() -> None:
    assert Settings.from_env({}).event_loop == "uvloop"
    assert Settings.from_env({"FRAUDAPP_LOOP": "asyncio"}).event_loop == "asyncio"
    with pytest.raises(SettingsError, match="FRAUDAPP_LOOP"):
        Settings.from_env({"FRAUDAPP_LOOP": "trio"})
