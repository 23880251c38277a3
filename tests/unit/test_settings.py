"""Settings read from the environment: where state lives, and event-time knobs that
must agree with each other."""

from __future__ import annotations

from pathlib import Path

import pytest

from fraudapp.settings import FAUST_DEFAULT_DATADIR, Settings, SettingsError, with_faust_flags


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
    assert Settings.from_env({}).max_drift_ms > Settings.from_env({}).commit_span_ms
    assert Settings.from_env({"WATERMARK_MAX_DRIFT_MS": "0"}).max_drift_ms == 0
    with pytest.raises(SettingsError, match="WATERMARK_MAX_DRIFT_MS"):
        Settings.from_env({"WATERMARK_MAX_DRIFT_MS": "20000", "COMMIT_SPAN_MS": "20000"})


def test_internal_topic_names_come_from_the_settings() -> None:
    settings = Settings.from_env({"ATM_TXNS_TOPIC": "txns", "FRAUDAPP_APP_ID": "shop"})
    assert settings.topics.atm_by_account == "txns-by-account"
    assert settings.alert_index_topic == "shop-alert-index"
