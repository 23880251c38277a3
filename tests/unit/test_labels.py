"""Analysts' labels, pure parts: the record and its validation, the live tally
(relabelling and withdrawals), reading a dump of the topic, and scoring a backtest
with alert and case labels; the CLI against a stand-in worker."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import orjson
import pytest

from fraudapp.cli import replaycli
from fraudapp.cli.main import build_parser, main
from fraudapp.core import labels as L
from fraudapp.core.alerts import alert_id
from fraudapp.core.badinput import BadInput
from fraudapp.core.caseids import case_id, case_of
from fraudapp.core.rulebook import RuleRecord

HEX = "0123456789abcdef01234567"
ALERT = f"click_burst-{HEX}"
CASE = f"case-click_burst-{HEX}"


def record(some_id: str, label: str, version: int = 1, **extra: Any) -> dict[str, Any]:
    return L.validate({"id": some_id, "label": label, "rule_version": version, **extra})


def burst(session: str, click: str, version: int = 1) -> dict[str, Any]:
    """A click-burst alert as the rule builds it (the fields scoring reads)."""
    return {
        "alert_id": alert_id("click_burst", session, "u", click),
        "rule": "click_burst",
        "rule_version": version,
        "key": session,
        "click_id": click,
    }


# -- ids and records -----------------------------------------------------------------------------


def test_an_id_names_an_alert_or_a_case_of_a_known_rule() -> None:
    assert L.target_of(ALERT) == L.Target(ALERT, "alert", "click_burst")
    assert L.target_of(CASE) == L.Target(CASE, "case", "click_burst")
    real = case_of({"rule": "heavy_hitter", "key": "cmp-1", "source": "10.0.0.1", "kind": "ip"})
    assert L.target_of(real).kind == "case" and L.target_of(real).rule == "heavy_hitter"
    for bad in (
        "",
        "nope",
        f"no_such_rule-{HEX}",
        "click_burst-123",
        f"click_burst-{HEX.upper()}",
        f"case-{HEX}",
        "x" * 300,
        42,
        None,
    ):
        with pytest.raises(BadInput):
            L.target_of(bad)


def test_a_request_is_validated_and_becomes_a_record_naming_rule_and_version() -> None:
    asked = L.request_of({"id": CASE, "label": "legit", "by": "ana", "note": "known customer"})
    assert asked.rule_version is None
    written = L.record_of(asked, 3, 1_700_000_000_000)
    assert list(written) == list(L.FIELDS)
    assert written == {
        "id": CASE,
        "kind": "case",
        "label": "legit",
        "rule": "click_burst",
        "rule_version": 3,
        "by": "ana",
        "note": "known customer",
        "labelled_at": 1_700_000_000_000,
    }
    assert L.validate(written) == written  # what the workers read back
    assert L.request_of({"id": ALERT, "label": "fraud", "rule_version": "2"}).rule_version == 2


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ([], "not_object"),
        ({"label": "fraud"}, "missing_field"),
        ({"id": ALERT}, "missing_field"),
        ({"id": ALERT, "label": "maybe"}, "bad_field_type"),
        ({"id": ALERT, "label": "FRAUD"}, "bad_field_type"),
        ({"id": "nope", "label": "fraud"}, "bad_field_type"),
        ({"id": ALERT, "label": "fraud", "rule_version": 0}, "bad_field_type"),
        ({"id": ALERT, "label": "fraud", "rule_version": True}, "bad_field_type"),
        ({"id": ALERT, "label": "fraud", "rule_version": 1.5}, "bad_field_type"),
        ({"id": ALERT, "label": "fraud", "by": ["x"]}, "bad_field_type"),
        ({"id": ALERT, "label": "fraud", "note": "n" * 5000}, "bad_field_type"),
        ({"id": ALERT, "label": "fraud", "colour": "red"}, "bad_field_type"),
    ],
)
def test_bad_requests_are_refused_with_a_reason(body: Any, reason: str) -> None:
    with pytest.raises(BadInput) as refused:
        L.request_of(body)
    assert refused.value.reason == reason and refused.value.message


def test_records_on_the_topic_are_decoded_and_checked_against_their_key() -> None:
    value = orjson.dumps(record(ALERT, "fraud"))
    assert L.decode(ALERT.encode(), value) == (ALERT, record(ALERT, "fraud"))
    assert L.decode(ALERT.encode(), None) == (ALERT, None)  # withdrawn
    for key, raw in (
        (None, value),
        (CASE.encode(), value),  # another id's key
        (ALERT.encode(), b"not json"),
        (ALERT.encode(), b"[1]"),
        (ALERT.encode(), orjson.dumps({"id": ALERT, "label": "fraud"})),  # no version
        (ALERT.encode(), orjson.dumps({**record(ALERT, "fraud"), "kind": "case"})),
        (ALERT.encode(), orjson.dumps({**record(ALERT, "fraud"), "rule": "rate_limit"})),
        (ALERT.encode(), orjson.dumps({**record(ALERT, "fraud"), "labelled_at": "now"})),
        (ALERT.encode(), b"{" + b" " * L.MAX_RECORD_BYTES + b"}"),
    ):
        with pytest.raises(BadInput):
            L.decode(key, raw)


# -- the live tally ------------------------------------------------------------------------------


def test_the_tally_counts_labels_per_rule_version() -> None:
    tally = L.Tally()
    ids = [f"click_burst-{i:024x}" for i in range(5)]
    for some_id, label in zip(ids, ["fraud", "fraud", "fraud", "legit", "fraud"], strict=True):
        assert tally.apply(some_id, record(some_id, label))
    other = f"rate_limit-{HEX}"
    tally.apply(other, record(other, "legit", version=2))
    tally.apply(CASE, record(CASE, "legit", version=2))
    assert tally.rows() == [
        {"rule": "click_burst", "rule_version": 1, "fraud": 4, "legit": 1, "precision": 0.8},
        {"rule": "click_burst", "rule_version": 2, "fraud": 0, "legit": 1, "precision": 0.0},
        {"rule": "rate_limit", "rule_version": 2, "fraud": 0, "legit": 1, "precision": 0.0},
    ]
    assert len(tally) == 7


def test_relabelling_replaces_the_label_and_a_withdrawal_removes_it() -> None:
    tally = L.Tally()
    tally.apply(ALERT, record(ALERT, "fraud"))
    assert not tally.apply(ALERT, record(ALERT, "fraud", by="someone else"))  # same word
    assert tally.counts() == {("click_burst", 1): L.Counts(1, 0)}
    assert tally.apply(ALERT, record(ALERT, "legit"))
    assert tally.counts() == {("click_burst", 1): L.Counts(0, 1)}
    # a relabel naming another version moves the id to that version
    tally.apply(ALERT, record(ALERT, "legit", version=2))
    assert tally.counts() == {("click_burst", 2): L.Counts(0, 1)}
    assert tally.apply(ALERT, None)
    assert tally.counts() == {} and tally.rows() == [] and len(tally) == 0
    assert not tally.apply(ALERT, None)  # withdrawing nothing changes nothing
    assert L.Counts().precision is None


# -- backtests -----------------------------------------------------------------------------------


def test_a_dump_keeps_the_latest_label_per_id_and_honours_tombstones() -> None:
    other = f"click_burst-{'f' * 24}"
    lines = [
        orjson.dumps(record(ALERT, "fraud")),
        b"",
        orjson.dumps({"not": "a label"}),
        orjson.dumps(record(other, "fraud")),
        # kcat -J envelopes: a relabel of ALERT, then a tombstone for other
        json.dumps(
            {"topic": "labels", "key": ALERT, "payload": json.dumps(record(ALERT, "legit"))}
        ),
        json.dumps({"topic": "labels", "key": other, "payload": None}),
        json.dumps({"key": CASE, "payload": json.dumps(record(ALERT, "fraud"))}),  # wrong key
    ]
    labels, refused = L.read_dump(lines)
    assert labels == {ALERT: record(ALERT, "legit")}
    assert refused == 2
    with pytest.raises(BadInput):
        L.read_dump([b"{broken"])


def test_a_backtest_is_scored_by_alert_and_case_labels() -> None:
    alerts = [burst("s1", "c3", version=2), burst("s1", "c4", version=2), burst("s2", "c9", 2)]
    case_s1 = case_of(alerts[0])
    quiet_case = case_id("click_burst", "s-never-alerted")
    labels = {
        alerts[0]["alert_id"]: record(alerts[0]["alert_id"], "fraud"),  # true positive
        alerts[2]["alert_id"]: record(alerts[2]["alert_id"], "legit"),  # false positive
        case_s1: record(case_s1, "fraud"),  # a case label: s1 alerted, true positive
        quiet_case: record(quiet_case, "fraud"),  # missed
        alert_id("click_burst", "s7", "u", "c1"): record(
            alert_id("click_burst", "s7", "u", "c1"), "legit"
        ),  # not alerted by this version: cleared
        f"rate_limit-{HEX}": record(f"rate_limit-{HEX}", "fraud"),  # rate_limit missed
        f"stacked_ads-{HEX}": record(f"stacked_ads-{HEX}", "fraud"),  # rule not replayed
    }
    rows = L.score(alerts, labels, {"click_burst": 2, "rate_limit": 1})
    assert [row.as_dict() for row in rows] == [
        {
            "rule": "click_burst",
            "rule_version": 2,
            "fraud_alerted": 2,
            "legit_alerted": 1,
            "fraud_missed": 1,
            "legit_cleared": 1,
            "precision": 2 / 3,
            "recall": 2 / 3,
        },
        {
            "rule": "rate_limit",
            "rule_version": 1,
            "fraud_alerted": 0,
            "legit_alerted": 0,
            "fraud_missed": 1,
            "legit_cleared": 0,
            "precision": None,
            "recall": 0.0,
        },
    ]
    # the labels were made under version 1: scoring is by the version replayed
    assert all(r["rule_version"] == 1 for r in labels.values())


def test_replay_prints_the_scores_of_the_replayed_versions(capsys, tmp_path) -> None:
    from fraudapp.replay import Outcome

    alerts = [burst("s1", "c3"), burst("s2", "c9")]
    dump = tmp_path / "labels.jsonl"
    dump.write_bytes(
        b"\n".join(
            orjson.dumps(record(a["alert_id"], word))
            for a, word in zip(alerts, ["fraud", "legit"], strict=True)
        )
        + b"\n"
    )
    labels = replaycli.read_labels(dump)
    rules = {"click_burst": RuleRecord(rule="click_burst", version=1, params={})}
    replaycli.print_label_scores(Outcome(alerts=alerts), labels, rules)
    out = capsys.readouterr().out
    assert "labels: 2 (1 fraud, 1 legit)" in out
    line = next(x for x in out.splitlines() if x.startswith("click_burst"))
    assert line.split() == ["click_burst", "1", "1", "1", "0.500", "0"]


# -- the CLI -------------------------------------------------------------------------------------


class _Worker(BaseHTTPRequestHandler):
    """A stand-in worker: answers POST /labels and DELETE /labels/{id} as a worker
    would, keeping what it was asked."""

    asked: list[tuple[str, str, str | None, Any]] = []

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        raw = orjson.dumps(body)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = orjson.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.asked.append(("POST", self.path, self.headers.get("Authorization"), body))
        try:
            asked = L.request_of(body)
        except BadInput as exc:
            return self._answer(400, {"error": exc.message, "reason": exc.reason})
        if asked.rule_version is None and asked.target.id != ALERT:
            return self._answer(404, {"error": "no alert in the index", "reason": "not_found"})
        written = L.record_of(asked, asked.rule_version or 1, 1)
        return self._answer(200, {"label": written, "topic": "labels", "partition": 2, "offset": 7})

    def do_DELETE(self) -> None:  # noqa: N802
        self.asked.append(("DELETE", self.path, self.headers.get("Authorization"), None))
        self._answer(
            200,
            {"withdrawn": ALERT, "previous": None, "topic": "labels", "partition": 2, "offset": 8},
        )

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def worker() -> Iterator[str]:
    _Worker.asked = []
    server = HTTPServer(("127.0.0.1", 0), _Worker)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_the_cli_posts_the_label_and_prints_what_was_written(worker, capsys) -> None:
    token = "t" * 20
    code = main(["label", ALERT, "fraud", "--by", "ana", "--url", worker, "--token", token])
    out = capsys.readouterr().out
    assert code == 0, out
    assert _Worker.asked == [
        ("POST", "/labels", f"Bearer {token}", {"id": ALERT, "label": "fraud", "by": "ana"})
    ]
    assert f"labelled alert {ALERT} fraud (click_burst v1, by ana)" in out
    assert orjson.loads(out.splitlines()[-1])["label"] == "fraud"

    code = main(["label", ALERT, "--withdraw", "--url", worker, "--token", token])
    assert code == 0 and "withdrew the label" in capsys.readouterr().out
    assert _Worker.asked[-1][:2] == ("DELETE", f"/labels/{ALERT}")


def test_the_cli_exits_2_with_a_clear_message(worker, capsys, monkeypatch) -> None:
    monkeypatch.delenv("FRAUDAPP_API_TOKEN", raising=False)
    assert main(["label", ALERT, "fraud", "--url", worker]) == 2
    assert "--token" in capsys.readouterr().err
    monkeypatch.setenv("FRAUDAPP_API_TOKEN", "t" * 20)
    assert main(["label", "nope", "fraud", "--url", worker]) == 2
    assert "neither an alert id" in capsys.readouterr().err
    assert main(["label", ALERT, "--url", worker]) == 2  # no label, no --withdraw
    assert "--withdraw" in capsys.readouterr().err
    assert main(["label", CASE, "legit", "--url", worker]) == 2  # the worker's 404
    err = capsys.readouterr().err
    assert "404" in err and "no alert in the index" in err
    assert main(["label", ALERT, "fraud", "--url", "http://127.0.0.1:9"]) == 2
    assert "cannot reach the worker" in capsys.readouterr().err
    with pytest.raises(SystemExit) as refused:
        build_parser().parse_args(["label", ALERT, "maybe"])
    assert refused.value.code == 2
