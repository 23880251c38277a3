"""Every knob fraudapp has, read from the environment once.

One frozen object instead of ``os.environ`` lookups scattered through the code: the
worker, the CLI and the tests all see the same values, and a typo in a variable's
value fails at start-up with the variable's name rather than deep inside an agent.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

#: Bytes in a megabyte, for the RocksDB budget (:mod:`fraudapp.engine.storage` applies it).
MB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class RocksDBBudget:
    """Memory one table partition's database may use (MB)."""

    write_buffer_mb: int = 4
    write_buffers: int = 2
    block_cache_mb: int = 8
    #: Files kept open (each open file pins its index in memory); RocksDB's default
    #: in faust is nearly a million.
    max_open_files: int = 256

    def table_options(self) -> dict[str, Any]:
        """faust's ``options=`` for a RocksDB-backed table."""
        return {
            "write_buffer_size": self.write_buffer_mb * MB,
            "max_write_buffer_number": self.write_buffers,
            "block_cache_size": self.block_cache_mb * MB,
            "max_open_files": self.max_open_files,
        }

    def per_database_mb(self) -> int:
        return self.write_buffer_mb * self.write_buffers + self.block_cache_mb

    def bound_mb(self, databases: int) -> int:
        """The most all ``databases`` may hold in memtables and block cache together."""
        return databases * self.per_database_mb()


#: ``COMMIT_EVERY``'s default (see ``Settings.commit_every``), also the bulk feed's when
#: it is given none (:mod:`fraudapp.engine.bulkfeed`).
DEFAULT_COMMIT_EVERY = 2000


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


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name}={raw!r} is not one of true/false/1/0/yes/no/on/off")


def _share(env: Mapping[str, str], name: str, default: float) -> float:
    value = _float(env, name, default)
    if not 0.0 <= value <= 1.0:
        raise SettingsError(f"{name}={value} must lie between 0 and 1")
    return value


def _fp_rate(env: Mapping[str, str], name: str, default: float) -> float:
    value = _float(env, name, default)
    if not 0.0 < value < 0.5:
        raise SettingsError(f"{name}={value} must lie strictly between 0 and 0.5")
    return value


def _str(env: Mapping[str, str], name: str, default: str) -> str:
    raw = env.get(name)
    return default if raw is None or raw.strip() == "" else raw.strip()


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    value = _str(env, name, default).lower()
    if value not in choices:
        raise SettingsError(f"{name}={value!r} is not one of {', '.join(choices)}")
    return value


#: What faust's ``-D``/``--datadir`` option leaves in ``F_DATADIR`` when it is not
#: given (faust.types._env.DATADIR's default: faust fills in the app's name).
FAUST_DEFAULT_DATADIR = "{conf.name}-data"


def _datadir(env: Mapping[str, str]) -> Path:
    """Where the worker keeps its state: faust's ``-D DIR`` first (see
    :func:`with_faust_flags`; faust's own variables ``F_DATADIR``/``FAUST_DATADIR``
    likewise), then ``FRAUDAPP_DATADIR`` or faust's ``APP_DATADIR``, then
    ``./fraudapp-data``. Passing our own default to faust regardless made two workers
    started with different ``-D`` share one directory."""
    for name in ("F_DATADIR", "FAUST_DATADIR"):
        flag = (env.get(name) or "").strip()
        if flag and flag != FAUST_DEFAULT_DATADIR:
            return Path(flag)
    return Path(_str(env, "FRAUDAPP_DATADIR", _str(env, "APP_DATADIR", "fraudapp-data")))


def with_faust_flags(env: Mapping[str, str], argv: Sequence[str]) -> dict[str, str]:
    """``env`` with faust's ``-D DIR``/``--datadir DIR`` from the command line, as
    ``F_DATADIR``. faust's command line sets that variable itself, but only after it
    has imported the app (to find its commands), so the app's settings would never
    see it; faust reads ``-A`` from ``argv`` the same way, before parsing."""
    out = dict(env)
    for i, arg in enumerate(argv):
        value = None
        if arg in ("-D", "--datadir") and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith("--datadir="):
            value = arg.partition("=")[2]
        if value:
            out["F_DATADIR"] = value
    return out


def _optional_int(env: Mapping[str, str], name: str, minimum: int) -> int | None:
    """An integer setting whose absence means "derived" (None)."""
    if not (env.get(name) or "").strip():
        return None
    return _int(env, name, minimum, minimum=minimum)


def _drift(env: Mapping[str, str], span: int | None) -> int | None:
    """``WATERMARK_MAX_DRIFT_MS``: 0 (off), or more than ``COMMIT_SPAN_MS`` (``span``)
    when both are set, else a partition could be held for records it has not
    committed yet, which only a timed commit would release."""
    value = _optional_int(env, "WATERMARK_MAX_DRIFT_MS", minimum=0)
    if value and span is not None and value <= span:
        raise SettingsError(
            f"WATERMARK_MAX_DRIFT_MS={value} must be 0 or more than COMMIT_SPAN_MS={span}"
        )
    return value


#: Shorter bearer tokens are refused: they can be guessed.
MIN_TOKEN_CHARS = 16


def _token(env: Mapping[str, str], name: str) -> str | None:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return None
    if len(raw.strip()) < MIN_TOKEN_CHARS:
        raise SettingsError(f"{name} must be at least {MIN_TOKEN_CHARS} characters long")
    return raw.strip()


@dataclass(frozen=True, slots=True)
class Topics:
    """Topic names: settings, because every shop has its own naming scheme."""

    clicks: str = "clicks"
    click_verdicts: str = "click-verdicts"
    alerts: str = "alerts"
    dead_letter: str = "dead-letter"
    atm_txns: str = "atm-txns"
    accounts: str = "accounts"
    ip_blocklist: str = "ip-blocklist"
    rules: str = "rules"
    shadow_alerts: str = "shadow-alerts"
    #: Each case's state, keyed by case id (compacted; :mod:`fraudapp.core.cases`).
    cases: str = "cases"
    #: Analysts' labels of alerts and cases, keyed by their id (compacted).
    labels: str = "labels"
    #: The snooze in force per case, keyed by case id (compacted).
    snoozes: str = "snoozes"
    #: The audit log of actions: snoozes, automatic blocks and their lifting.
    actions: str = "actions"

    @property
    def clicks_by_session(self) -> str:
        """Internal topic that re-keys clicks that arrived on the wrong partition."""
        return f"{self.clicks}-by-session"

    def stage(self, name: str) -> str:
        """Internal topic feeding one ad-network stage (``source``, ``campaign``, ``area``)."""
        return f"{self.clicks}-by-{name}"

    @property
    def atm_by_account(self) -> str:
        """Internal topic that re-keys transactions that arrived on the wrong partition."""
        return f"{self.atm_txns}-by-account"

    def external(self) -> list[str]:
        """The topics users produce to or consume from (created by ``fraudapp demo``);
        ``accounts`` is not among them: it must be compacted (see :meth:`compacted`)."""
        return [
            self.clicks,
            self.click_verdicts,
            self.alerts,
            self.shadow_alerts,
            self.dead_letter,
            self.atm_txns,
            self.actions,
        ]

    def compacted(self) -> list[str]:
        """Reference-data topics, one current record per key."""
        return [
            self.accounts,
            self.ip_blocklist,
            self.rules,
            self.cases,
            self.labels,
            self.snoozes,
        ]


@dataclass(frozen=True, slots=True)
class ClickBurstSettings:
    """The click-fraud rule: ``threshold`` clicks on one URL in one session within
    ``window_ms`` of event time, accepting events up to ``lateness_ms`` late."""

    threshold: int = 3
    window_ms: int = 10_000
    lateness_ms: int = 30_000


#: How much each check's firing weighs in a click's ``risk_score``
#: (1 - prod(1 - weight) over the checks that fired).
DEFAULT_WEIGHTS: dict[str, float] = {
    "click_burst": 0.6,
    "stacked_ads": 0.7,
    "ip_blocklist": 0.9,
    "suspicious_location": 0.3,
    "heavy_hitter": 0.5,
    "rate_limit": 0.4,
}


@dataclass(frozen=True, slots=True)
class AdnetSettings:
    """The ad-network checks (docs/rules.md, "Ad-network checks"); each can be switched off."""

    stacked_enabled: bool = True
    stacked_threshold: int = 3
    stacked_window_ms: int = 200
    stacked_min_ads: int = 2
    blocklist_enabled: bool = True
    blocklist_expected_ips: int = 1_000_000
    blocklist_fp_rate: float = 0.001
    location_enabled: bool = True
    location_radius_km: float = 100.0
    location_window_ms: int = 3_600_000
    location_bucket_ms: int = 60_000
    location_threshold: float = 0.2
    location_min_clicks: int = 50
    heavy_enabled: bool = True
    heavy_window_ms: int = 3_600_000
    heavy_bucket_ms: int = 300_000
    heavy_threshold: float = 0.2
    heavy_min_clicks: int = 100
    heavy_lg_map_size: int = 10
    rate_enabled: bool = True
    rate_per_minute: float = 20.0
    rate_burst: int = 5
    #: Lateness the stages after the session stage accept: besides the producers'
    #: disorder, they see the disorder of the session stage's parallel partitions.
    lateness_ms: int = 300_000
    weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> AdnetSettings:
        d = cls()
        weights = dict(DEFAULT_WEIGHTS)
        for rule in weights:
            weights[rule] = _share(env, f"RISK_WEIGHT_{rule.upper()}", weights[rule])
        return cls(
            stacked_enabled=_bool(env, "STACKED_ADS_ENABLED", d.stacked_enabled),
            stacked_threshold=_int(env, "STACKED_ADS_THRESHOLD", d.stacked_threshold, minimum=2),
            stacked_window_ms=_int(env, "STACKED_ADS_WINDOW_MS", d.stacked_window_ms),
            stacked_min_ads=_int(env, "STACKED_ADS_MIN_ADS", d.stacked_min_ads, minimum=1),
            blocklist_enabled=_bool(env, "IP_BLOCKLIST_ENABLED", d.blocklist_enabled),
            blocklist_expected_ips=_int(
                env, "IP_BLOCKLIST_EXPECTED_IPS", d.blocklist_expected_ips, minimum=1
            ),
            blocklist_fp_rate=_fp_rate(env, "IP_BLOCKLIST_FP_RATE", d.blocklist_fp_rate),
            location_enabled=_bool(env, "LOCATION_ENABLED", d.location_enabled),
            location_radius_km=_float(env, "LOCATION_RADIUS_KM", d.location_radius_km),
            location_window_ms=_int(env, "LOCATION_WINDOW_MS", d.location_window_ms, minimum=1),
            location_bucket_ms=_int(env, "LOCATION_BUCKET_MS", d.location_bucket_ms, minimum=1),
            location_threshold=_share(env, "LOCATION_THRESHOLD", d.location_threshold),
            location_min_clicks=_int(env, "LOCATION_MIN_CLICKS", d.location_min_clicks, minimum=1),
            heavy_enabled=_bool(env, "HEAVY_HITTERS_ENABLED", d.heavy_enabled),
            heavy_window_ms=_int(env, "HEAVY_HITTERS_WINDOW_MS", d.heavy_window_ms, minimum=1),
            heavy_bucket_ms=_int(env, "HEAVY_HITTERS_BUCKET_MS", d.heavy_bucket_ms, minimum=1),
            heavy_threshold=_share(env, "HEAVY_HITTERS_THRESHOLD", d.heavy_threshold),
            heavy_min_clicks=_int(env, "HEAVY_HITTERS_MIN_CLICKS", d.heavy_min_clicks, minimum=1),
            heavy_lg_map_size=_int(
                env, "HEAVY_HITTERS_LG_MAP_SIZE", d.heavy_lg_map_size, minimum=3
            ),
            rate_enabled=_bool(env, "RATE_LIMIT_ENABLED", d.rate_enabled),
            rate_per_minute=_float(env, "RATE_LIMIT_PER_MINUTE", d.rate_per_minute),
            rate_burst=_int(env, "RATE_LIMIT_BURST", d.rate_burst, minimum=1),
            lateness_ms=_int(env, "ADNET_ALLOWED_LATENESS_MS", d.lateness_ms),
            weights=weights,
        )


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
class CaseSettings:
    """Cases (:mod:`fraudapp.core.cases`): when a quiet case resolves, how often an
    active one writes its state, how long a resolved one is kept; all event time."""

    enabled: bool = True
    quiet_ms: int = 600_000
    update_every_ms: int = 300_000
    keep_ms: int = 7 * 86_400_000


_CASES = CaseSettings()


@dataclass(frozen=True, slots=True)
class Settings:
    """The whole configuration; see docs/configuration.md for each variable."""

    app_id: str = "fraudapp"
    broker_url: str = "kafka://127.0.0.1:9092"
    datadir: Path = Path("fraudapp-data")
    web_port: int = 6066
    web_bind: str = "127.0.0.1"
    web_host: str = "127.0.0.1"
    partitions: int = 4
    session_timeout_s: float = 10.0
    heartbeat_interval_s: float = 1.0
    #: How long the producer waits to fill a batch (ms). Each produce request has a
    #: fixed cost; at 2 ms it was paid every few records and the worker fell behind
    #: (bench: 2x the throughput and a tenth of the alert latency at 50 ms under
    #: load). Kafka Streams defaults its producers to 100 ms for the same reason.
    producer_linger_ms: float = 50.0
    #: The longest the broker may hold the worker's fetch when it finds nothing new
    #: (ms). faust fixes 1 500, which stalled a busy worker's input for up to that
    #: long (fraudapp.engine.bulkfeed._FetchWaitThread says how); an idle worker sends ~1
    #: fetch per wait, so lower costs a little idle CPU.
    fetch_max_wait_ms: int = 100
    #: Within a long fetched batch (a worker catching up), a worker commits its read
    #: offsets after this many records handled; otherwise faust's commits apply
    #: (every 2.8 s or 10 000 records). While a worker catches up, event time runs
    #: far ahead of the wall clock, and a record not yet committed must still be in
    #: its key's state if a crash makes the worker read it again, or it is refused
    #: as late. The rules keep state for their window plus lateness (40 s for click
    #: bursts): 2 000 records stay well inside it at the benchmarks' and tests'
    #: densities.
    commit_every: int = DEFAULT_COMMIT_EVERY
    #: Event time (ms) a source partition may read past its last commit before the
    #: worker commits (inside a long fetched batch), whatever the record count: the
    #: stages' state is held until records are committed (fraudapp.core.watermarks), so
    #: sparse traffic read fast would otherwise hold it for thousands of records.
    #: None (the default): per domain, three quarters of the shortest time its state
    #: is kept (:meth:`retention_ms`): 30 s for clicks, 45 min for ATM transactions,
    #: so state is held at most that much longer than its rules keep it. One span for
    #: both would be either loose for clicks or, at 30 s, a commit every few ATM
    #: transactions (the ATM backlog bench ran at 0.19x). Set, it applies to both.
    commit_span_ms: int | None = None
    #: How far (ms of event time) a source partition may run ahead of the slowest
    #: source partition of its domain, on any worker, before it is held until that
    #: one catches up half way (watermark alignment, as Flink's): bounds the state a
    #: lagging partition makes every stage hold while workers catch up. Workers learn
    #: each other's progress from markers, so a smaller drift paces sparse backlogs
    #: by the markers' round trip (two workers on 3.4 h of sparse clicks: 93 s at 30 s,
    #: 54 s at 60 s, 46 s at 120 s, 52 s with no alignment). None (the default): four
    #: commit spans per domain (120 s for clicks, 3 h for ATM). 0 turns alignment off;
    #: set, it applies to both domains and must exceed their commit spans.
    max_drift_ms: int | None = None
    #: A source partition with nothing left to read that gets no record for this
    #: long (wall clock, ms) stops holding its domain's watermark back (Flink's idleness).
    idle_ms: int = 5_000
    #: How often (ms) a worker checks idleness and tells the workers that own the
    #: internal topics' other partitions its watermarks (marker records).
    watermark_interval_ms: int = 200
    #: Largest batch of records for one topic-partition (KB), the unit the outbox
    #: sends (fraudapp.engine.outbox). faust's default is 16; 256 made the click rule 17 %
    #: faster (fewer produce requests) and stays well under Kafka's 1 MB request limit.
    producer_batch_kb: int = 256
    #: How often (s) a worker gives the C heap's free memory back (fraudapp.engine.heap); 0 = never.
    heap_trim_interval_s: float = 30.0
    max_record_bytes: int = 64 * 1024
    #: The worker's event loop: ``uvloop`` (libuv: cheaper callbacks, futures and
    #: socket I/O, which is most of what faust's per-event path does) or ``asyncio``.
    #: faust's own ``-L``/``FAUST_LOOP``, when given, wins.
    event_loop: str = "uvloop"
    #: How the domain agents get their records: ``bulk`` hands each fetched
    #: partition's records to the handler straight from faust's consumer
    #: (:mod:`fraudapp.engine.bulkfeed`), ``faust`` takes each through faust's stream.
    delivery: str = "bulk"
    #: How long (event time) ``GET /alerts/{id}`` can find an alert; 0 keeps no index.
    alert_index_retention_ms: int = 3_600_000
    api_token: str | None = None
    ingest_token: str | None = None
    topics: Topics = field(default_factory=Topics)
    click_burst: ClickBurstSettings = field(default_factory=ClickBurstSettings)
    atm: AtmSettings = field(default_factory=AtmSettings)
    adnet: AdnetSettings = field(default_factory=AdnetSettings)
    notify: NotifySettings = field(default_factory=NotifySettings)
    cases: CaseSettings = field(default_factory=CaseSettings)
    rocksdb: RocksDBBudget = field(default_factory=RocksDBBudget)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``env`` (the process environment by default).

        Faust's own variable names (``BROKER_URL``, ``WEB_PORT``, ``APP_DATADIR`` …)
        are honoured so that people who know faust need not learn new ones.
        """
        env = os.environ if env is None else env
        d = cls()
        t = Topics()
        r = RocksDBBudget()
        broker = _str(env, "BROKER_URL", d.broker_url)
        if "://" not in broker:
            broker = f"kafka://{broker}"
        commit_span = _optional_int(env, "COMMIT_SPAN_MS", minimum=1)
        return cls(
            app_id=_str(env, "FRAUDAPP_APP_ID", d.app_id),
            broker_url=broker,
            datadir=_datadir(env),
            web_port=_int(env, "WEB_PORT", d.web_port, minimum=1),
            web_bind=_str(env, "WEB_BIND", d.web_bind),
            web_host=_str(env, "WEB_HOST", d.web_host),
            partitions=_int(env, "FRAUDAPP_PARTITIONS", d.partitions, minimum=1),
            session_timeout_s=_float(env, "BROKER_SESSION_TIMEOUT", d.session_timeout_s),
            heartbeat_interval_s=_float(env, "BROKER_HEARTBEAT_INTERVAL", d.heartbeat_interval_s),
            producer_linger_ms=_float(env, "PRODUCER_LINGER_MS", d.producer_linger_ms),
            producer_batch_kb=_int(env, "PRODUCER_BATCH_KB", d.producer_batch_kb, minimum=1),
            fetch_max_wait_ms=_int(env, "FETCH_MAX_WAIT_MS", d.fetch_max_wait_ms, minimum=0),
            commit_every=_int(env, "COMMIT_EVERY", d.commit_every, minimum=1),
            commit_span_ms=commit_span,
            max_drift_ms=_drift(env, commit_span),
            idle_ms=_int(env, "WATERMARK_IDLE_MS", d.idle_ms, minimum=1),
            watermark_interval_ms=_int(
                env, "WATERMARK_INTERVAL_MS", d.watermark_interval_ms, minimum=10
            ),
            heap_trim_interval_s=_float(env, "HEAP_TRIM_INTERVAL_S", d.heap_trim_interval_s),
            event_loop=_choice(env, "FRAUDAPP_LOOP", d.event_loop, ("uvloop", "asyncio")),
            delivery=_choice(env, "FRAUDAPP_DELIVERY", d.delivery, ("bulk", "faust")),
            max_record_bytes=_int(
                env, "FRAUDAPP_MAX_RECORD_BYTES", d.max_record_bytes, minimum=256
            ),
            alert_index_retention_ms=_int(
                env, "ALERT_INDEX_RETENTION_MS", d.alert_index_retention_ms, minimum=0
            ),
            api_token=_token(env, "FRAUDAPP_API_TOKEN"),
            ingest_token=_token(env, "FRAUDAPP_INGEST_TOKEN"),
            topics=Topics(
                clicks=_str(env, "CLICKS_TOPIC", t.clicks),
                click_verdicts=_str(env, "CLICK_VERDICTS_TOPIC", t.click_verdicts),
                alerts=_str(env, "ALERTS_TOPIC", t.alerts),
                dead_letter=_str(env, "DEAD_LETTER_TOPIC", t.dead_letter),
                atm_txns=_str(env, "ATM_TXNS_TOPIC", t.atm_txns),
                accounts=_str(env, "ACCOUNTS_TOPIC", t.accounts),
                ip_blocklist=_str(env, "IP_BLOCKLIST_TOPIC", t.ip_blocklist),
                rules=_str(env, "RULES_TOPIC", t.rules),
                shadow_alerts=_str(env, "SHADOW_ALERTS_TOPIC", t.shadow_alerts),
                cases=_str(env, "CASES_TOPIC", t.cases),
                labels=_str(env, "LABELS_TOPIC", t.labels),
                snoozes=_str(env, "SNOOZES_TOPIC", t.snoozes),
                actions=_str(env, "ACTIONS_TOPIC", t.actions),
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
            adnet=AdnetSettings.from_env(env),
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
            cases=CaseSettings(
                enabled=_bool(env, "CASES_ENABLED", True),
                quiet_ms=_int(env, "CASE_QUIET_MS", _CASES.quiet_ms, minimum=1),
                update_every_ms=_int(
                    env, "CASE_UPDATE_EVERY_MS", _CASES.update_every_ms, minimum=1
                ),
                keep_ms=_int(env, "CASE_KEEP_MS", _CASES.keep_ms, minimum=0),
            ),
            rocksdb=RocksDBBudget(
                write_buffer_mb=_int(env, "ROCKSDB_WRITE_BUFFER_MB", r.write_buffer_mb, minimum=1),
                write_buffers=_int(env, "ROCKSDB_WRITE_BUFFERS", r.write_buffers, minimum=2),
                block_cache_mb=_int(env, "ROCKSDB_BLOCK_CACHE_MB", r.block_cache_mb, minimum=1),
                max_open_files=_int(env, "ROCKSDB_MAX_OPEN_FILES", r.max_open_files, minimum=16),
            ),
        )

    @property
    def alert_index_topic(self) -> str:
        """Internal topic of the alert index (fraudapp.live.alertindex), one per app."""
        return f"{self.app_id}-alert-index"

    @property
    def case_feed_topic(self) -> str:
        """Internal topic that brings each alert to its case's partition (fraudapp.live.cases)."""
        return f"{self.app_id}-case-feed"

    def describe(self) -> dict[str, object]:
        """Flat view for logs and ``fraudapp demo`` output; secrets masked."""
        secret = {"api_token", "ingest_token"}
        return {
            f.name: ("***" if getattr(self, f.name) else None)
            if f.name in secret
            else getattr(self, f.name)
            for f in fields(self)
        }
