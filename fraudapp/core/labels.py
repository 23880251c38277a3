"""Analysts' labels of alerts and cases: the record, the live tally, backtest scoring.

An analyst who has looked at an alert (or at a whole case) says whether it was fraud
or not. Each label is one record on the compacted ``labels`` topic, keyed by the id
it labels, so the latest word on an id is what counts and a tombstone withdraws it.
Every label names the rule and the version of it that raised what it labels, so the
precision of each rule version (fraud labels over all labels) is known while the
version runs, and a backtest of a candidate version is scored with the same labels
(alert ids and case ids are derived from what was found, so a replay raises the same
ids: :func:`fraudapp.core.alerts.alert_id`, :func:`fraudapp.core.caseids.case_of`).

Pure: the worker, the HTTP view, the CLI and replay share it (docs/feedback.md).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from fraudapp.core import caseids
from fraudapp.core.badinput import BadInput, decode_object, optional_str

LABELS = ("fraud", "legit")
KINDS = ("alert", "case")
#: The fields of a label record, in the order they are written.
FIELDS = ("id", "kind", "label", "rule", "rule_version", "by", "note", "labelled_at")
MAX_ID = 256
MAX_BY = 256
MAX_NOTE = 4096
#: A label record on the topic is small; anything larger is not one.
MAX_RECORD_BYTES = 16 * 1024

#: ``<rule>-<24 hex>`` (an alert) or ``case-<rule>-<24 hex>`` (a case).
_ID = re.compile(r"(?:case-)?[a-z_]+-[0-9a-f]{24}")


@dataclass(frozen=True, slots=True)
class Target:
    """What an id labels: an alert or a case, and the rule that raised it."""

    id: str
    kind: str
    rule: str


def target_of(value: Any) -> Target:
    """The alert or case an id names; BadInput when it names neither."""
    if not isinstance(value, str) or not value:
        raise BadInput("bad_field_type", "id must be an alert id or a case id (a string)")
    if len(value) > MAX_ID:
        raise BadInput("bad_field_type", f"an id is at most {MAX_ID} characters")
    rule = caseids.rule_of(value)
    if rule is None or not _ID.fullmatch(value):
        raise BadInput(
            "bad_field_type",
            f"{value!r} is neither an alert id (<rule>-<24 hex digits>) nor a case id"
            " (case-<rule>-<24 hex digits>) of a known rule",
        )
    return Target(value, "case" if caseids.is_case_id(value) else "alert", rule)


def label_of(value: Any) -> str:
    if value not in LABELS:
        raise BadInput(
            "bad_field_type", f"label must be {' or '.join(LABELS)}, not {_shown(value)}"
        )
    return str(value)


def version_of(value: Any, name: str = "rule_version") -> int:
    """A rule version: a whole number from 1 (numeric text accepted, as from a form)."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BadInput("bad_field_type", f"{name} must be a whole number >= 1, not {_shown(value)}")
    return value


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


@dataclass(frozen=True, slots=True)
class LabelRequest:
    """An analyst's label as asked for (``POST /labels``, ``fraudapp label``), before
    the rule version is known: ``rule_version`` is the one the analyst gave, if any,
    used only when the alert or case can no longer be looked up."""

    target: Target
    label: str
    by: str | None = None
    note: str | None = None
    rule_version: int | None = None


def request_of(body: Any) -> LabelRequest:
    """Validate a label request: ``{"id", "label", "by"?, "note"?, "rule_version"?}``."""
    if not isinstance(body, dict):
        raise BadInput("not_object", "the body must be a JSON object")
    if body.get("id") is None:
        raise BadInput("missing_field", "field 'id' is missing")
    if body.get("label") is None:
        raise BadInput("missing_field", f"field 'label' is missing ({' or '.join(LABELS)})")
    unknown = sorted(set(body) - {"id", "label", "by", "note", "rule_version"})
    if unknown:
        raise BadInput("bad_field_type", f"unknown field(s) {unknown}")
    version = body.get("rule_version")
    return LabelRequest(
        target=target_of(body["id"]),
        label=label_of(body["label"]),
        by=optional_str(body, "by", max_len=MAX_BY),
        note=optional_str(body, "note", max_len=MAX_NOTE),
        rule_version=None if version is None else version_of(version),
    )


def record_of(request: LabelRequest, rule_version: int, labelled_at: int) -> dict[str, Any]:
    """The record written to the ``labels`` topic (keyed by ``id``)."""
    target = request.target
    return {
        "id": target.id,
        "kind": target.kind,
        "label": request.label,
        "rule": target.rule,
        "rule_version": version_of(rule_version),
        "by": request.by,
        "note": request.note,
        "labelled_at": labelled_at,
    }


def validate(obj: Any) -> dict[str, Any]:
    """A label record as read from the topic or a dump of it, normalised to
    :data:`FIELDS`; ``kind`` and ``rule``, derived from the id, must agree with it
    when given."""
    if not isinstance(obj, dict):
        raise BadInput("not_object", "a label record must be a JSON object")
    for name in ("id", "label", "rule_version"):
        if obj.get(name) is None:
            raise BadInput("missing_field", f"field {name!r} is missing")
    target = target_of(obj["id"])
    for name, derived in (("kind", target.kind), ("rule", target.rule)):
        if obj.get(name) is not None and obj[name] != derived:
            raise BadInput(
                "bad_field_type",
                f"{name} {_shown(obj[name])} does not match id {target.id!r} ({derived})",
            )
    stamp = obj.get("labelled_at")
    if stamp is not None and (isinstance(stamp, bool) or not isinstance(stamp, int)):
        raise BadInput("bad_field_type", "labelled_at must be epoch milliseconds")
    return {
        "id": target.id,
        "kind": target.kind,
        "label": label_of(obj["label"]),
        "rule": target.rule,
        "rule_version": version_of(obj["rule_version"]),
        "by": optional_str(obj, "by", max_len=MAX_BY),
        "note": optional_str(obj, "note", max_len=MAX_NOTE),
        "labelled_at": stamp,
    }


def decode(key: bytes | None, value: bytes | None) -> tuple[str, dict[str, Any] | None]:
    """One record of the ``labels`` topic: (id, record), or (id, None) for a tombstone
    (the label withdrawn). The key must be the record's id: compaction keeps the
    latest record per key, and only that makes "the latest label per id" hold."""
    if key is None:
        raise BadInput("missing_field", "a label record needs its id as the key")
    try:
        some_id = key.decode("utf-8")
    except UnicodeDecodeError:
        raise BadInput("bad_field_type", "the key is not UTF-8") from None
    if value is None:
        return some_id, None
    record = validate(decode_object(value, MAX_RECORD_BYTES))
    if record["id"] != some_id:
        raise BadInput(
            "bad_field_type", f"the key {some_id!r} is not the record's id {record['id']!r}"
        )
    return some_id, record


# -- the live tally ------------------------------------------------------------------------------


@dataclass(slots=True)
class Counts:
    """Labels of one rule version."""

    fraud: int = 0
    legit: int = 0

    @property
    def precision(self) -> float | None:
        """fraud / (fraud + legit); None without labels."""
        total = self.fraud + self.legit
        return self.fraud / total if total else None


class Tally:
    """Fraud and legit labels per (rule, rule version), the latest label per id
    counting once: relabelling an id moves it, a withdrawal (None) removes it."""

    def __init__(self) -> None:
        self._by_id: dict[str, tuple[str, int, str]] = {}
        self._counts: dict[tuple[str, int], Counts] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def apply(self, some_id: str, record: Mapping[str, Any] | None) -> bool:
        """Take the latest record of ``some_id`` (a validated one, or None to withdraw
        its label); whether the tally changed."""
        new = None if record is None else (record["rule"], record["rule_version"], record["label"])
        old = self._by_id.get(some_id)
        if old == new:
            return False
        if old is not None:
            self._count(old, -1)
            del self._by_id[some_id]
        if new is not None:
            self._count(new, 1)
            self._by_id[some_id] = new
        return True

    def _count(self, entry: tuple[str, int, str], step: int) -> None:
        rule, version, label = entry
        counts = self._counts.setdefault((rule, version), Counts())
        if label == "fraud":
            counts.fraud += step
        else:
            counts.legit += step
        if not counts.fraud and not counts.legit:
            del self._counts[(rule, version)]

    def counts(self) -> dict[tuple[str, int], Counts]:
        return {key: Counts(c.fraud, c.legit) for key, c in self._counts.items()}

    def rows(self) -> list[dict[str, Any]]:
        """Per rule version, by rule and version: its labels and precision."""
        return [
            {
                "rule": rule,
                "rule_version": version,
                "fraud": counts.fraud,
                "legit": counts.legit,
                "precision": counts.precision,
            }
            for (rule, version), counts in sorted(self._counts.items())
        ]


# -- backtests -----------------------------------------------------------------------------------


def read_dump(lines: Iterable[bytes | str]) -> tuple[dict[str, dict[str, Any]], int]:
    """The labels in force in a dump of the ``labels`` topic, in topic order: lines of
    label records (``kcat -C -e``), or kcat's ``-J`` envelopes (``{"key", "payload"}``,
    a null payload withdrawing its key's label). The latest line per id wins, as
    compaction would have it. Returns the labels by id and how many lines were refused
    (not a label record: the workers dead-letter those too). A line that is not JSON
    raises BadInput: that is not a dump."""
    labels: dict[str, dict[str, Any]] = {}
    refused = 0
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise BadInput("not_json", f"line {number} is not JSON: {exc}") from None
        key = None
        if isinstance(obj, dict) and "payload" in obj and "id" not in obj:
            key, payload = obj.get("key"), obj["payload"]
            if payload is None:
                if isinstance(key, str):
                    labels.pop(key, None)
                continue
            try:
                obj = orjson.loads(payload) if isinstance(payload, str | bytes) else payload
            except orjson.JSONDecodeError:
                refused += 1
                continue
        try:
            record = validate(obj)
        except BadInput:
            refused += 1
            continue
        if key is not None and key != record["id"]:
            refused += 1
            continue
        labels.pop(record["id"], None)  # keep dict order = order of the latest records
        labels[record["id"]] = record
    return labels, refused


@dataclass(slots=True)
class Score:
    """A replayed rule version judged by the labels: labelled fraud it alerted (true
    positives), labelled legit it alerted (false positives), labelled fraud it did not
    alert (missed), labelled legit it did not alert (cleared)."""

    rule: str
    rule_version: int
    fraud_alerted: int = 0
    legit_alerted: int = 0
    fraud_missed: int = 0
    legit_cleared: int = 0

    @property
    def precision(self) -> float | None:
        alerted = self.fraud_alerted + self.legit_alerted
        return self.fraud_alerted / alerted if alerted else None

    @property
    def recall(self) -> float | None:
        """Of the labelled fraud, the share alerted."""
        fraud = self.fraud_alerted + self.fraud_missed
        return self.fraud_alerted / fraud if fraud else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "rule_version": self.rule_version,
            "fraud_alerted": self.fraud_alerted,
            "legit_alerted": self.legit_alerted,
            "fraud_missed": self.fraud_missed,
            "legit_cleared": self.legit_cleared,
            "precision": self.precision,
            "recall": self.recall,
        }


def score(
    alerts: Iterable[Mapping[str, Any]],
    labels: Mapping[str, Mapping[str, Any]],
    versions: Mapping[str, int],
) -> list[Score]:
    """Score a backtest's alerts with labels (by id, as :func:`read_dump` gives them).

    An alert label matches the replayed alert of the same id; a case label matches
    when any replayed alert belongs to the case. ``versions`` are the replayed rules'
    (rule -> version): a label that matches nothing counts against the version that
    was replayed for its rule; labels of rules not replayed are left out. One row per
    rule version with labels, by rule and version."""
    alerted: dict[str, int] = {}
    cases: dict[str, int] = {}
    for alert in alerts:
        version = alert.get("rule_version")
        if not isinstance(version, int):
            continue
        alerted[alert["alert_id"]] = version
        with contextlib.suppress(KeyError):  # an alert without its entity names no case
            cases.setdefault(caseids.case_of(dict(alert)), version)
    rows: dict[tuple[str, int], Score] = {}
    for some_id, record in labels.items():
        rule = record["rule"]
        hit = (cases if record["kind"] == "case" else alerted).get(some_id)
        version = hit if hit is not None else versions.get(rule)
        if version is None:
            continue
        row = rows.setdefault((rule, version), Score(rule, version))
        fraud = record["label"] == "fraud"
        if hit is not None:
            if fraud:
                row.fraud_alerted += 1
            else:
                row.legit_alerted += 1
        elif fraud:
            row.fraud_missed += 1
        else:
            row.legit_cleared += 1
    return [rows[key] for key in sorted(rows)]
