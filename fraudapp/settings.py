"""Every knob fraudapp has, read from the environment once.

One frozen object instead of ``os.environ`` lookups scattered through the code: the
worker, the CLI and the tests all see the same values, and a typo in a variable's
value fails at start-up with the variable's name rather than deep inside an agent.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path


class SettingsError(ValueError):
    """A variable in the environment has a value fraudapp cannot use."""


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a whole number") from None
    if value < minimum:
        raise SettingsError(f"{name}={value} must be at least {minimum}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None


def _str(env: Mapping[str, str], name: str, default: str) -> str:
    raw = env.get(name)
    return default if raw is None or raw.strip() == "" else raw.strip()


@dataclass(frozen=True, slots=True)
class Topics:
    """Topic names: settings, because every shop has its own naming scheme."""

    clicks: str = "clicks"
    click_verdicts: str = "click-verdicts"
    alerts: str = "alerts"
    dead_letter: str = "dead-letter"
    atm_txns: str = "atm-txns"
    accounts: str = "accounts"

    @property
    def clicks_by_session(self) -> str:
        """Internal topic that re-keys clicks that arrived on the wrong partition."""
        return f"{self.clicks}-by-session"

    def external(self) -> list[str]:
        """The topics users produce to or consume from (created by ``fraudapp demo``);
        ``accounts`` is not among them: it must be compacted (see :meth:`compacted`)."""
        return [self.clicks, self.click_verdicts, self.alerts, self.dead_letter, self.atm_txns]

    def compacted(self) -> list[str]:
        """Reference-data topics, one current record per key."""
        return [self.accounts]


@dataclass(frozen=True, slots=True)
class ClickBurstSettings:
    """The click-fraud rule: ``threshold`` clicks on one URL in one session within
    ``window_ms`` of event time, accepting events up to ``lateness_ms`` late."""

    threshold: int = 3
    window_ms: int = 10_000
    lateness_ms: int = 30_000


@dataclass(frozen=True, slots=True)
class AtmSettings:
    """The ATM rule (ksqlDB's ``ATM_POSSIBLE_FRAUD``): two transactions of one account
    at different locations within ``window_ms`` of event time."""

    window_ms: int = 600_000
    lateness_ms: int = 3_600_000


@dataclass(frozen=True, slots=True)
class NotifySettings:
    """Webhook notifications: which rules' alerts are POSTed where, and how hard to try."""

    webhook_url: str | None = None
    rules: tuple[str, ...] = ("atm_impossible_travel",)
    max_attempts: int = 6
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    timeout_s: float = 10.0


@dataclass(frozen=True, slots=True)
class Settings:
    """The whole configuration; see README "Configuration" for each variable."""

    app_id: str = "fraudapp"
    broker_url: str = "kafka://127.0.0.1:9092"
    datadir: Path = Path("fraudapp-data")
    web_port: int = 6066
    web_bind: str = "127.0.0.1"
    web_host: str = "127.0.0.1"
    partitions: int = 4
    session_timeout_s: float = 10.0
    heartbeat_interval_s: float = 1.0
    max_record_bytes: int = 64 * 1024
    topics: Topics = field(default_factory=Topics)
    click_burst: ClickBurstSettings = field(default_factory=ClickBurstSettings)
    atm: AtmSettings = field(default_factory=AtmSettings)
    notify: NotifySettings = field(default_factory=NotifySettings)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``env`` (the process environment by default).

        Faust's own variable names (``BROKER_URL``, ``WEB_PORT``, ``APP_DATADIR`` …)
        are honoured so that people who know faust need not learn new ones.
        """
        env = os.environ if env is None else env
        d = cls()
        t = Topics()
        broker = _str(env, "BROKER_URL", d.broker_url)
        if "://" not in broker:
            broker = f"kafka://{broker}"
        return cls(
            app_id=_str(env, "FRAUDAPP_APP_ID", d.app_id),
            broker_url=broker,
            datadir=Path(_str(env, "FRAUDAPP_DATADIR", _str(env, "APP_DATADIR", "fraudapp-data"))),
            web_port=_int(env, "WEB_PORT", d.web_port, minimum=1),
            web_bind=_str(env, "WEB_BIND", d.web_bind),
            web_host=_str(env, "WEB_HOST", d.web_host),
            partitions=_int(env, "FRAUDAPP_PARTITIONS", d.partitions, minimum=1),
            session_timeout_s=_float(env, "BROKER_SESSION_TIMEOUT", d.session_timeout_s),
            heartbeat_interval_s=_float(env, "BROKER_HEARTBEAT_INTERVAL", d.heartbeat_interval_s),
            max_record_bytes=_int(
                env, "FRAUDAPP_MAX_RECORD_BYTES", d.max_record_bytes, minimum=256
            ),
            topics=Topics(
                clicks=_str(env, "CLICKS_TOPIC", t.clicks),
                click_verdicts=_str(env, "CLICK_VERDICTS_TOPIC", t.click_verdicts),
                alerts=_str(env, "ALERTS_TOPIC", t.alerts),
                dead_letter=_str(env, "DEAD_LETTER_TOPIC", t.dead_letter),
                atm_txns=_str(env, "ATM_TXNS_TOPIC", t.atm_txns),
                accounts=_str(env, "ACCOUNTS_TOPIC", t.accounts),
            ),
            click_burst=ClickBurstSettings(
                threshold=_int(env, "CLICK_BURST_THRESHOLD", 3, minimum=1),
                window_ms=_int(env, "CLICK_BURST_WINDOW_MS", 10_000, minimum=0),
                lateness_ms=_int(env, "CLICK_ALLOWED_LATENESS_MS", 30_000, minimum=0),
            ),
            atm=AtmSettings(
                window_ms=_int(env, "ATM_WINDOW_MS", 600_000, minimum=0),
                lateness_ms=_int(env, "ATM_ALLOWED_LATENESS_MS", 3_600_000, minimum=0),
            ),
            notify=NotifySettings(
                webhook_url=env.get("NOTIFY_WEBHOOK_URL") or None,
                rules=tuple(
                    r.strip()
                    for r in _str(env, "NOTIFY_RULES", "atm_impossible_travel").split(",")
                    if r.strip()
                ),
                max_attempts=_int(env, "NOTIFY_MAX_ATTEMPTS", 6, minimum=1),
                backoff_initial_s=_float(env, "NOTIFY_BACKOFF_INITIAL_S", 0.5),
                backoff_max_s=_float(env, "NOTIFY_BACKOFF_MAX_S", 30.0),
                timeout_s=_float(env, "NOTIFY_TIMEOUT_S", 10.0),
            ),
        )

    def describe(self) -> dict[str, object]:
        """Flat view for logs and ``fraudapp demo`` output."""
        return {f.name: getattr(self, f.name) for f in fields(self)}
