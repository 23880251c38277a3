"""Rules as data: every detector's parameters as a versioned record, and the book of
the versions in force.

A fraud team changes a threshold far more often than it deploys code, and must be
able to say afterwards which version of a rule raised an alert. So each rule is a
record (``tables/rules.json`` ships version 1 of each; the compacted ``rules`` topic
carries changes, keyed by rule name), validated on arrival, and every alert names
the rule and version that fired. A version also holds the thresholds its findings
are graded by (:func:`grade`: an alert's ``severity`` comes from its evidence, the
version's ``severity`` field is only the fallback) and the action its cases ask for
(``action``, ``action_ttl_ms``). Pure Python: the worker, the CLI and replay share
it, and it is tested without a broker.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson

from fraudapp.core.caseids import case_of
from fraudapp.core.settings import Settings

MODES = ("live", "shadow")
SEVERITIES = ("low", "medium", "high", "critical")
#: What a rule version asks to be done when a case of it opens (carried out by the
#: case stage, not here): nothing, or block the traffic source's IP for a while.
ACTIONS = ("none", "block_ip")
#: The rules whose case entity is a traffic source (an IP or a device): the only
#: ones whose findings name something an IP block can stop.
SOURCE_RULES = ("rate_limit", "stacked_ads", "heavy_hitter")
#: How long (event time) a block asked for by a rule lasts, unless the version says.
DEFAULT_ACTION_TTL_MS = 3_600_000


@dataclass(frozen=True, slots=True)
class Param:
    """One parameter's type and range; ``share`` is a fraction in (0, 1].

    ``default``: the parameter may be left out of a record and takes this value. Only
    parameters added after records were written have one: a record on a user's
    ``rules`` topic from before stays valid, and means what it meant."""

    kind: type
    minimum: float | None = None
    share: bool = False
    default: float | None = None

    def check(self, name: str, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise RuleError("bad_rule", f"parameter {name!r} must be a number, not {value!r}")
        if self.kind is int:
            if isinstance(value, float) and not value.is_integer():
                raise RuleError("bad_rule", f"parameter {name!r} must be a whole number")
            value = int(value)
        else:
            value = float(value)
            if not math.isfinite(value):
                raise RuleError("bad_rule", f"parameter {name!r} must be finite")
        if self.share and not 0 < value <= 1:
            raise RuleError("bad_rule", f"parameter {name!r} must be in (0, 1], not {value}")
        if self.minimum is not None and value < self.minimum:
            raise RuleError("bad_rule", f"parameter {name!r} must be >= {self.minimum:g}")
        return value


_MS = Param(int, minimum=0)
_COUNT = Param(int, minimum=1)

#: The severities a grading rule's thresholds lead to, highest first; below the
#: ``medium`` threshold a finding is ``low``.
_GRADES = ("critical", "high", "medium")


def _grades(
    unit: str, kind: type, medium: float, high: float, critical: float, **bounds: Any
) -> dict[str, Param]:
    """The three thresholds (``medium_<unit>``, ``high_<unit>``, ``critical_<unit>``)
    that grade a rule's findings by the measure its evidence gives in ``unit``."""
    values = {"medium": medium, "high": high, "critical": critical}
    return {f"{grade}_{unit}": Param(kind, default=values[grade], **bounds) for grade in values}


#: Every rule fraudapp knows, with its parameters. The grading thresholds' defaults,
#: and why (each threshold is inclusive: a finding at it has that severity):
SCHEMAS: dict[str, dict[str, Param]] = {
    "click_burst": {
        "threshold": _COUNT,
        "window_ms": _MS,
        "lateness_ms": _MS,
        # Clicks in the window / threshold: 2x (6 clicks on one URL in 10 s at the
        # defaults), 4x (12: over one a second, past what a hand keeps up), 10x (30,
        # three a second: a script).
        **_grades("ratio", float, 2.0, 4.0, 10.0, minimum=1),
    },
    "atm_impossible_travel": {
        "window_ms": _MS,
        "lateness_ms": _MS,
        # The speed the pair needs (distance / time, km/h). Below 50, neighbouring
        # ATMs, walked or driven to; from 50, faster than a car in town (urban limits
        # are 50 km/h, door to door far less); from 150, faster than a car on a
        # motorway (100-130 km/h) or an intercity train, door to door inside the
        # window: hardly one person; from 1000, faster than an airliner cruises
        # (~900 km/h): no one can, the card or its number is in two hands.
        **_grades("kmh", float, 50.0, 150.0, 1000.0, minimum=0),
    },
    "stacked_ads": {
        "threshold": Param(int, minimum=2),
        "window_ms": _MS,
        "min_ads": _COUNT,
        # Different ads stacked in the interval. Two make a stack (``min_ads``); 3 is
        # more than one ad hidden under another, 5 a placement built to stack, 10 a
        # scheme hiding a page of ads under one click.
        **_grades("ads", int, 3, 5, 10, minimum=1),
    },
    "rate_limit": {
        "per_minute": Param(float, minimum=1e-6),
        "burst": _COUNT,
        # The source's clicks in the minute ending at the click / ``per_minute`` (the
        # GCRA's own excess is capped at one burst, so it cannot say how far over).
        # Below 1 a burst too quick but no faster than allowed over the minute; 2x the
        # allowed rate, 5x (100 a minute at the defaults: automation), 10x (200 a
        # minute, over three a second for a whole minute: a click farm or a bot).
        **_grades("ratio", float, 2.0, 5.0, 10.0, minimum=0),
    },
    "ip_blocklist": {},
    "heavy_hitter": {
        "share_threshold": Param(float, share=True),
        "min_clicks": _COUNT,
        # The source's guaranteed share of the campaign's clicks: absolute shares, not
        # multiples of the threshold, since a share ends at 1. 0.3, half the campaign
        # from one source (0.5), nearly all of it (0.8).
        **_grades("share", float, 0.3, 0.5, 0.8, share=True),
    },
    "suspicious_location": {
        "threshold": Param(float, share=True),
        "min_clicks": _COUNT,
        # The share of fraud among the clicks nearby, likewise: 0.3, half (0.5), most
        # of the area's traffic (0.8).
        **_grades("share", float, 0.3, 0.5, 0.8, share=True),
    },
}

#: The unit of each grading rule's thresholds (``medium_<unit>`` ...); a rule not
#: here does not grade from its parameters.
GRADED: dict[str, str] = {
    rule: name.removeprefix("medium_")
    for rule, schema in SCHEMAS.items()
    for name in schema
    if name.startswith("medium_")
}

_FIELDS = {
    "rule",
    "version",
    "enabled",
    "mode",
    "severity",
    "notify",
    "action",
    "action_ttl_ms",
    "params",
    "changed_by",
}


def default_params(rule: str) -> dict[str, Any]:
    """``rule``'s parameters that have a default, with it (the grading thresholds):
    what a detector grades by when it is not handed the version in force."""
    return {name: p.default for name, p in SCHEMAS[rule].items() if p.default is not None}


def grade(value: float, params: Mapping[str, Any], unit: str) -> str:
    """The severity of a finding whose evidence measures ``value`` (in ``unit``): the
    highest whose threshold ``<severity>_<unit>`` in ``params`` it reaches, else
    ``low``. The rules' modules say what they measure; this only climbs the ladder."""
    for severity in _GRADES:
        if value >= params[f"{severity}_{unit}"]:
            return severity
    return "low"


class RuleError(ValueError):
    """A rule record that cannot be used; ``reason`` goes to the dead letter."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True, slots=True)
class RuleRecord:
    """One version of one rule. ``mode`` ``shadow`` sends its alerts to
    ``shadow-alerts`` only and keeps them out of verdicts, so a candidate is measured
    on real traffic before it notifies anyone; a paused rule (``enabled`` false)
    keeps its state but raises nothing, so resuming it loses no history."""

    rule: str
    version: int
    enabled: bool = True
    mode: str = "live"
    severity: str = "medium"
    notify: bool = False
    #: ``block_ip``: a case of this version blocks its source's IP for
    #: ``action_ttl_ms`` of event time (traffic-source rules only, :data:`SOURCE_RULES`).
    action: str = "none"
    action_ttl_ms: int = DEFAULT_ACTION_TTL_MS
    params: Mapping[str, Any] = field(default_factory=dict)
    changed_by: str | None = None

    @property
    def counts(self) -> bool:
        """Whether its findings are alerts and verdict reasons (live and enabled)."""
        return self.enabled and self.mode == "live"

    def as_dict(self) -> dict[str, Any]:
        out = {
            "rule": self.rule,
            "version": self.version,
            "enabled": self.enabled,
            "mode": self.mode,
            "severity": self.severity,
            "notify": self.notify,
            "action": self.action,
            "action_ttl_ms": self.action_ttl_ms,
            "params": dict(self.params),
        }
        if self.changed_by:
            out["changed_by"] = self.changed_by
        return out

    def encode(self) -> bytes:
        return orjson.dumps(self.as_dict())

    def changed(self, **changes: Any) -> RuleRecord:
        """The next version with ``changes`` (fields, or parameters by name)."""
        params = dict(self.params)
        fields_ = {}
        for name, value in changes.items():
            if name in SCHEMAS[self.rule]:
                params[name] = value
            else:
                fields_[name] = value
        return validate(
            {**self.as_dict(), **fields_, "params": params, "version": self.version + 1}
        )


def _flag(obj: Mapping[str, Any], name: str, default: bool) -> bool:
    value = obj.get(name, default)
    if not isinstance(value, bool):
        raise RuleError("bad_rule", f"field {name!r} must be true or false, not {value!r}")
    return value


def _choice(obj: Mapping[str, Any], name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = obj.get(name, default)
    if value not in allowed:
        raise RuleError("bad_rule", f"field {name!r} must be one of {allowed}, not {value!r}")
    return str(value)


def _whole(obj: Mapping[str, Any], name: str, default: int, minimum: int) -> int:
    value = obj.get(name, default)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise RuleError("bad_rule", f"field {name!r} must be a whole number >= {minimum}")
    return value


def _ascending(name: str, params: Mapping[str, Any]) -> None:
    """A grading rule's thresholds must not cross: a finding that reaches ``high``
    reached ``medium`` too."""
    unit = GRADED.get(name)
    if unit is None:
        return
    values = [params[f"{severity}_{unit}"] for severity in reversed(_GRADES)]
    if values != sorted(values):
        raise RuleError(
            "bad_rule",
            f"{name}: medium_{unit} <= high_{unit} <= critical_{unit} must hold,"
            f" not {' / '.join(f'{v:g}' for v in values)}",
        )


def validate(obj: Any, key: str | None = None) -> RuleRecord:
    """A rule record from decoded JSON, or :class:`RuleError` saying what is wrong.

    Every parameter of the rule must be given (a version is the whole rule, so two
    versions can be compared and replayed on their own), except those with a default,
    added after records were written: a record without them takes the default and the
    record in force holds them all. ``key``, when the record came from the topic,
    must name the same rule. ``action`` ``block_ip`` is for the traffic-source rules
    only: the others' cases are about a session, an account, an IP already listed or
    an area, none of which an IP block of their source stops.
    """
    if not isinstance(obj, dict):
        raise RuleError("bad_rule", f"a rule is a JSON object, not {type(obj).__name__}")
    unknown = set(obj) - _FIELDS
    if unknown:
        raise RuleError("bad_rule", f"unknown fields {sorted(unknown)}")
    name = obj.get("rule")
    if name not in SCHEMAS:
        raise RuleError("unknown_rule", f"no rule named {name!r}; known: {sorted(SCHEMAS)}")
    if key is not None and key != name:
        raise RuleError("bad_rule", f"record keyed {key!r} holds rule {name!r}")
    version = obj.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise RuleError("bad_rule", f"version must be a whole number >= 1, not {version!r}")
    params = obj.get("params", {})
    if not isinstance(params, dict):
        raise RuleError("bad_rule", "params must be an object")
    schema = SCHEMAS[name]
    params = {
        **{p: spec.default for p, spec in schema.items() if spec.default is not None},
        **params,
    }
    extra, missing = set(params) - set(schema), set(schema) - set(params)
    if extra or missing:
        raise RuleError(
            "bad_rule",
            f"{name} takes parameters {sorted(schema)}"
            + (f"; unknown {sorted(extra)}" if extra else "")
            + (f"; missing {sorted(missing)}" if missing else ""),
        )
    changed_by = obj.get("changed_by")
    if changed_by is not None and not isinstance(changed_by, str):
        raise RuleError("bad_rule", "changed_by must be a string")
    action = _choice(obj, "action", "none", ACTIONS)
    if action == "block_ip" and name not in SOURCE_RULES:
        raise RuleError(
            "bad_rule",
            f"action 'block_ip' is for the rules about a traffic source"
            f" ({', '.join(SOURCE_RULES)}), not {name}",
        )
    checked = {p: schema[p].check(p, params[p]) for p in sorted(schema)}
    _ascending(name, checked)
    return RuleRecord(
        rule=name,
        version=version,
        enabled=_flag(obj, "enabled", True),
        mode=_choice(obj, "mode", "live", MODES),
        severity=_choice(obj, "severity", "medium", SEVERITIES),
        notify=_flag(obj, "notify", False),
        action=action,
        action_ttl_ms=_whole(obj, "action_ttl_ms", DEFAULT_ACTION_TTL_MS, 1),
        params=checked,
        changed_by=changed_by,
    )


def decode(raw: bytes | None, key: bytes | None = None) -> RuleRecord:
    """A record from the ``rules`` topic."""
    if raw is None:
        raise RuleError("bad_rule", "a rule cannot be deleted (tombstone); pause it instead")
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise RuleError("bad_rule", f"not JSON: {exc}") from None
    return validate(obj, None if key is None else key.decode("utf-8", "replace"))


def load_rules(path: Path) -> dict[str, RuleRecord]:
    """A rules file (a JSON list of records, one per rule), e.g. ``tables/rules.json``."""
    try:
        items = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise RuleError("bad_rule", f"{path}: not JSON: {exc}") from None
    if not isinstance(items, list):
        raise RuleError("bad_rule", f"{path}: expected a list of rules")
    records = [validate(item) for item in items]
    by_name = {record.rule: record for record in records}
    if len(by_name) != len(records):
        raise RuleError("bad_rule", f"{path}: a rule is listed twice")
    missing = set(SCHEMAS) - set(by_name)
    if missing:
        raise RuleError("bad_rule", f"{path}: rules missing: {sorted(missing)}")
    return by_name


Listener = Callable[[RuleRecord], None]


class RuleBook:
    """The version of each rule in force on this worker.

    A record replaces the one in force only when its version is higher: the topic
    is read again from the start at every restart and by every worker, so applying
    the same records twice must change nothing, and a stale write (an older version
    sent late) must not undo a newer one.
    """

    def __init__(self, defaults: Mapping[str, RuleRecord]) -> None:
        self._records = dict(defaults)
        self._listeners: dict[str, list[Listener]] = {}

    def __getitem__(self, name: str) -> RuleRecord:
        return self._records[name]

    def records(self) -> list[RuleRecord]:
        return [self._records[name] for name in sorted(self._records)]

    def on_change(self, name: str, listener: Listener) -> None:
        """Call ``listener`` with each new version of ``name`` (not the current one)."""
        self._listeners.setdefault(name, []).append(listener)

    def apply(self, record: RuleRecord) -> bool:
        """Put ``record`` in force if it is newer; True if it was.

        Raises :class:`RuleError` ``stale_rule`` for an older version than the one in
        force (a repeat of the same version is silently ignored)."""
        current = self._records.get(record.rule)
        if current is not None and record.version <= current.version:
            if record.version < current.version:
                raise RuleError(
                    "stale_rule",
                    f"{record.rule} v{record.version} is older than v{current.version} in force",
                )
            return False
        self._records[record.rule] = record
        for listener in self._listeners.get(record.rule, ()):
            listener(record)
        return True

    def route(self, alert: dict[str, Any]) -> str | None:
        """Where an alert goes: ``live``, ``shadow``, or None when its rule is paused;
        the alert gains its ``case_id`` (:mod:`fraudapp.core.caseids`), whether to
        ``notify``, and the version's ``severity`` unless
        its rule graded it from the evidence already (that grade is the finding's own,
        the version's field only a fallback for a rule that does not grade)."""
        record = self._records[alert["rule"]]
        if not record.enabled:
            return None
        if alert.get("severity") not in SEVERITIES:
            alert["severity"] = record.severity
        alert["notify"] = record.notify and record.mode == "live"
        alert["case_id"] = case_of(alert)
        return record.mode

    def counts(self, rule: str) -> bool:
        """Whether ``rule``'s findings count as verdict reasons now (live and enabled)."""
        return self._records[rule].counts

    def apply_all(self, records: Iterable[RuleRecord]) -> None:
        for record in records:
            try:
                self.apply(record)
            except RuleError:
                continue


def defaults(config: Settings, path: Path) -> dict[str, RuleRecord]:
    """The rules file (``tables/rules.json``) with the environment's settings over
    it (their defaults are the file's values; a unit test keeps the two equal)."""
    shipped = load_rules(path)
    adnet = config.adnet
    notify = set(config.notify.rules)
    overrides: dict[str, tuple[bool, dict[str, Any]]] = {
        "click_burst": (
            True,
            {
                "threshold": config.click_burst.threshold,
                "window_ms": config.click_burst.window_ms,
                "lateness_ms": config.click_burst.lateness_ms,
            },
        ),
        "atm_impossible_travel": (
            True,
            {"window_ms": config.atm.window_ms, "lateness_ms": config.atm.lateness_ms},
        ),
        "stacked_ads": (
            adnet.stacked_enabled,
            {
                "threshold": adnet.stacked_threshold,
                "window_ms": adnet.stacked_window_ms,
                "min_ads": adnet.stacked_min_ads,
            },
        ),
        "rate_limit": (
            adnet.rate_enabled,
            {"per_minute": adnet.rate_per_minute, "burst": adnet.rate_burst},
        ),
        "ip_blocklist": (adnet.blocklist_enabled, {}),
        "heavy_hitter": (
            adnet.heavy_enabled,
            {"share_threshold": adnet.heavy_threshold, "min_clicks": adnet.heavy_min_clicks},
        ),
        "suspicious_location": (
            adnet.location_enabled,
            {"threshold": adnet.location_threshold, "min_clicks": adnet.location_min_clicks},
        ),
    }
    out = {}
    for name, record in shipped.items():
        enabled, params = overrides[name]
        out[name] = replace(
            with_params(record, params),
            enabled=record.enabled and enabled,
            notify=name in notify,
        )
    return out


def with_params(record: RuleRecord, params: Mapping[str, Any]) -> RuleRecord:
    """The same version with other parameters: the environment's settings over the
    shipped defaults, at start (still version 1, as no change was made live)."""
    return replace(record, params={**record.params, **params})
