"""Settings read from the environment: where state lives, and event-time knobs that
must agree with each other."""

from __future__ import annotations

from pathlib import Path

import pytest

from fraudapp.core.settings import FAUST_DEFAULT_DATADIR, Settings, SettingsError, with_faust_flags
from fraudapp.core.timedomains import atm_domain, click_domain


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "fraudapp-data"),
        ({"APP_DATADIR": "/faust-env"}, "/faust-env"),
        ({"FRAUDAPP_DATADIR": "/ours", "APP_DATADIR": "/faust-env"}, "/ours"),
        # faust's -D/--datadir reaches the app as F_DATADIR and wins over both.
        ({"F_DATADIR": "/flag", "FRAUDAPP_DATADIR": "/ours"}, "/flag"),
        # Without -D, faust's command line leaves its own template there: not a choice.
        ({"F_DATADIR": FAUST_DEFAULT_DATADIR, "FRAUDAPP_DATADIR": "/ours"}, "/ours"),
    ],
)
def test_the_data_directory_follows_faust_flag_then_environment_then_default(
    env: dict[str, str], expected: str
) -> None:
    assert Settings.from_env(env).datadir == Path(expected)


@pytest.mark.parametrize(
    "argv",
    [
        ["faust", "-A", "fraudapp.app", "-D", "/flag", "worker"],
        ["faust", "-A", "fraudapp.app", "--datadir", "/flag", "worker"],
        ["faust", "-A", "fraudapp.app", "--datadir=/flag", "worker"],
    ],
)
def test_faust_datadir_flag_is_read_from_the_command_line(argv: list[str]) -> None:
    """faust imports the app before it sets F_DATADIR from -D: read the flag itself."""
    env = with_faust_flags({"FRAUDAPP_DATADIR": "/ours"}, argv)
    assert Settings.from_env(env).datadir == Path("/flag")
    assert with_faust_flags({}, ["faust", "-A", "fraudapp.app", "worker"]) == {}


def test_alignment_must_allow_more_than_a_commit_span() -> None:
    assert Settings.from_env({"WATERMARK_MAX_DRIFT_MS": "0"}).max_drift_ms == 0
    with pytest.raises(SettingsError, match="WATERMARK_MAX_DRIFT_MS"):
        Settings.from_env({"WATERMARK_MAX_DRIFT_MS": "20000", "COMMIT_SPAN_MS": "20000"})


def test_commit_span_and_drift_follow_each_domains_state_retention() -> None:
    """Unset, the span is 3/4 of the shortest state a domain keeps (click bursts 40 s;
    the ATM rule 70 min, the alert index 1 h) and the drift four spans."""
    default = Settings.from_env({})
    assert (click_domain(default).commit_span_ms, click_domain(default).max_drift_ms) == (
        30_000,
        120_000,
    )
    assert (atm_domain(default).commit_span_ms, atm_domain(default).max_drift_ms) == (
        2_700_000,
        10_800_000,
    )
    longer = Settings.from_env({"CLICK_ALLOWED_LATENESS_MS": "70000"})
    assert click_domain(longer).commit_span_ms == 60_000
    both = Settings.from_env({"COMMIT_SPAN_MS": "5000", "WATERMARK_MAX_DRIFT_MS": "60000"})
    assert {(d.commit_span_ms, d.max_drift_ms) for d in (click_domain(both), atm_domain(both))} == {
        (5_000, 60_000)
    }
    # A drift alone caps the derived spans at half of it.
    drift = Settings.from_env({"WATERMARK_MAX_DRIFT_MS": "40000"})
    assert atm_domain(drift).commit_span_ms == 20_000
    off = Settings.from_env({"WATERMARK_MAX_DRIFT_MS": "0"})
    assert atm_domain(off).max_drift_ms == 0 and atm_domain(off).commit_span_ms == 2_700_000
    with pytest.raises(SettingsError, match="commit span"):
        click_domain(Settings(commit_span_ms=50_000, max_drift_ms=40_000))


def test_internal_topic_names_come_from_the_settings() -> None:
    settings = Settings.from_env({"ATM_TXNS_TOPIC": "txns", "FRAUDAPP_APP_ID": "shop"})
    assert settings.topics.atm_by_account == "txns-by-account"
    assert settings.alert_index_topic == "shop-alert-index"
