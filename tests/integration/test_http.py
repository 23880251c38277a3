"""The worker's HTTP surface on a real broker: ingest, session views, errors, routing."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from fraudapp.cli.workerproc import WorkerProcess
from fraudapp.core.settings import RocksDBBudget
from tests.integration.helpers import AppSpace, running, wait_for

T0 = 1_767_225_600_000


@pytest.fixture(scope="module")
def space(kafka_broker) -> AppSpace:
    # The seed's topic name works as well as ours: topic names are settings.
    space = AppSpace(kafka_broker.bootstrap, "http")
    space.topics["clicks"] = f"fcd-producer-{space.name}"
    space.env["CLICKS_TOPIC"] = space.topics["clicks"]
    space.create_topics()
    return space


@pytest.fixture(scope="module")
def worker(space: AppSpace, tmp_path_factory) -> WorkerProcess:
    with running(space.worker(tmp_path_factory.mktemp("http"))) as worker:
        yield worker


def test_posted_clicks_are_judged_and_the_session_view_shows_them(
    worker: WorkerProcess, space: AppSpace
) -> None:
    status, body = worker.request(
        "POST",
        "/clicks",
        {"click_id": "h1", "session_id": "web-1", "url": "https://a.example/x", "timestamp": T0},
    )
    assert (status, body["accepted"]) == (202, 1)
    burst = [
        {
            "click_id": f"h{i}",
            "session_id": "web-1",
            "url": "https://a.example/x",
            "timestamp": T0 + i * 1000,
        }
        for i in (2, 3)
    ]
    status, body = worker.request("POST", "/clicks", burst)
    assert (status, body) == (202, {"accepted": 2, "click_ids": ["h2", "h3"]})

    def alerted():
        status, view = worker.get("/sessions/web-1")
        return view if status == 200 and view["alerts"] else None

    view = wait_for(alerted)
    assert view, "the session view never showed the alert"
    assert [c["click_id"] for c in view["urls"]["https://a.example/x"]] == ["h1", "h2", "h3"]
    assert [a["click_id"] for a in view["alerts"]] == ["h3"]
    alerts = space.consume("alerts", until=1)["alerts"]
    assert alerts[0]["alert_id"] == view["alerts"][0]["alert_id"]


def test_ingest_fills_in_id_and_time(worker: WorkerProcess) -> None:
    status, body = worker.request("POST", "/clicks", {"session_id": "web-2", "url": "u"})
    assert status == 202 and len(body["click_ids"][0]) == 36


@pytest.mark.parametrize(
    ("body", "reason", "says"),
    [
        (b"{nope", "not_json", "not JSON"),
        (b"[]", "not_object", "empty"),
        (b'"a string"', "not_object", "not a JSON object"),
        (b'[{"session_id":"s","url":"u"},{"url":"u"}]', "missing_field", "click #1"),
        (b'{"session_id":"s","url":"u","timestamp":"later"}', "bad_timestamp", "timestamp"),
        (b'{"session_id":"s","url":"u","lat":"x","lon":1}', "bad_location", "lat"),
    ],
)
def test_bad_requests_get_400_with_a_reason(
    worker: WorkerProcess, body: bytes, reason: str, says: str
) -> None:
    status, answer = worker.request("POST", "/clicks", body)
    assert status == 400
    assert answer["reason"] == reason and says in answer["error"]


def test_oversized_body_is_refused(worker: WorkerProcess) -> None:
    status, answer = worker.request("POST", "/clicks", b"[" + b" " * 2_000_000 + b"]")
    assert status == 413 and answer["reason"] == "oversized"


def test_unknown_session_is_404_with_a_reason(worker: WorkerProcess) -> None:
    status, answer = worker.get("/sessions/never-seen")
    assert status == 404 and "never-seen" in answer["error"]


def test_link_click_page_and_health(worker: WorkerProcess) -> None:
    status, page = worker.get("/")
    assert status == 200 and 'fetch("/clicks"' in page and "data-url" in page
    status, health = worker.get("/health")
    assert status == 200 and health["status"] == "ready"
    assert worker.get("/no/such/page") == (404, {"error": "Not Found", "reason": "not_found"})


def test_any_worker_answers_for_any_session(kafka_broker, tmp_path: Path) -> None:
    """Two workers share the partitions; each session's and account's view comes
    from its owner, whichever worker is asked."""
    space = AppSpace(kafka_broker.bootstrap, "route")
    space.create_topics()
    first, second = space.worker(tmp_path / "a"), space.worker(tmp_path / "b")
    with running(first), running(second):

        def both_own_partitions():
            owners = set()
            for w in (first, second):
                status, health = w.get("/health")
                if status != 200 or not health["assigned_partitions"]:
                    return False
                owners.add(w.url)
            return len(owners) == 2

        assert wait_for(both_own_partitions, timeout=60)
        sessions = [f"r{i}" for i in range(16)]
        clicks = [
            {"click_id": f"{s}-{i}", "session_id": s, "url": "u", "timestamp": T0 + i}
            for s in sessions
            for i in range(3)
        ]
        assert first.request("POST", "/clicks", clicks)[0] == 202
        space.consume("verdicts", until=len(clicks))
        served_by = set()
        for session in sessions:
            views = [w.get(f"/sessions/{session}") for w in (first, second)]
            assert views[0] == views[1], session
            status, view = views[0]
            assert status == 200 and len(view["alerts"]) == 1
            served_by.add(view["served_by"])
        assert served_by == {first.url, second.url}

        accounts = [f"acct{i}" for i in range(12)]
        txns = [
            (
                a,
                {
                    "account_id": a,
                    "transaction_id": f"{a}-{i}",
                    "atm": "x",
                    "amount": 20,
                    "location": {"lat": 50 + i, "lon": 0},
                    "timestamp": T0 + i * 60_000,
                },
            )
            for a in accounts
            for i in range(2)
        ]
        space.produce(txns, topic="atm")
        space.consume("alerts", until=len(sessions) + len(accounts))
        owners = set()
        for account in accounts:
            views = [w.get(f"/accounts/{account}") for w in (first, second)]
            assert views[0] == views[1], account
            status, view = views[0]
            assert status == 200 and len(view["alerts"]) == 1 and view["customer"] is None
            owners.add(view["served_by"])
        assert owners == {first.url, second.url}


def test_a_worker_without_tokens_refuses_to_start(space: AppSpace, tmp_path: Path) -> None:
    worker = space.worker(tmp_path, FRAUDAPP_API_TOKEN="", FRAUDAPP_INGEST_TOKEN="")
    worker.start()
    try:
        assert worker.proc is not None and worker.proc.wait(timeout=60) != 0
    finally:
        worker.stop()
    log = worker.log_path.read_text()
    assert "FRAUDAPP_API_TOKEN and FRAUDAPP_INGEST_TOKEN must be set" in log
    assert "Traceback" not in log


# -- auth, metrics, the dashboard's stream and the simulator ---------------------------

#: Every endpoint the worker serves, with a request that would succeed with a token.
ENDPOINTS = [
    ("GET", "/"),
    ("GET", "/dashboard"),
    ("GET", "/dashboard/events"),
    ("GET", "/static/dashboard.js"),
    ("GET", "/metrics"),
    ("GET", "/sessions/web-1"),
    ("GET", "/accounts/acct-1"),
    ("GET", "/campaigns/cmp-1/top"),
    ("GET", "/rules"),
    ("GET", "/watermarks"),
    ("GET", "/alerts/click_burst-0123"),
    ("POST", "/clicks"),
    ("POST", "/simulate/click"),
    ("POST", "/simulate/transaction"),
    ("GET", "/no/such/page"),
]


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_every_endpoint_but_health_needs_a_token(
    worker: WorkerProcess, method: str, path: str
) -> None:
    body = b"{}" if method == "POST" else None
    status, answer = worker.request(method, path, body, token=None)
    assert status == 401 and answer["reason"] == "missing_token", answer
    status, answer = worker.request(method, path, body, token="x" * 32)
    assert status == 401 and answer["reason"] == "invalid_token", answer
    other = worker.api_token if method == "POST" else worker.ingest_token
    status, answer = worker.request(method, path, body, token=other)
    assert status == 403 and answer["reason"] == "wrong_scope", answer
    assert worker.get("/health", token=None)[0] == 200


HOSTILE = [
    ("GET", "/campaigns/c/top?k=abc", None),
    ("GET", "/campaigns/c/top?k=-1", None),
    ("GET", "/campaigns/c/top?k=1e3", None),
    ("GET", "/campaigns/c/top?k=" + "9" * 40, None),
    ("GET", "/campaigns/c/top?k=10&k=11", None),
    ("GET", "/sessions/" + "x" * 4000, None),
    ("GET", "/sessions/%00%ff%fe", None),
    ("GET", "/accounts/..%2F..%2Fetc%2Fpasswd", None),
    ("GET", "/static/..%2F..%2F..%2Fpyproject.toml", None),
    ("GET", "/static/%2e%2e/%2e%2e/settings.py", None),
    ("POST", "/metrics", b"{}"),
    ("POST", "/rules", b'{"rule": "click_burst"}'),
    ("GET", "/alerts/" + "a" * 300, None),
    ("GET", "/alerts/no-such-alert", None),
    ("POST", "/clicks", b"[" * 100_000 + b"]" * 100_000),
    ("POST", "/clicks", b'{"session_id": "s", "url": "u", "timestamp": 1e400}'),
    ("POST", "/clicks", b'{"session_id": {"$gt": ""}, "url": "u"}'),
    ("POST", "/clicks", b"\xff\xfe\x00"),
    ("POST", "/simulate/click", b"{nope"),
    ("POST", "/simulate/click", b"[1, 2]"),
    ("POST", "/simulate/click", b'{"session_id": "s", "url": "u", "lat": 1e999, "lon": 0}'),
    ("POST", "/simulate/transaction", b'{"account_id": 5}'),
    ("POST", "/simulate/transaction", b"\xff\xfe"),
    ("POST", "/simulate/transaction", b'{"account_id": "a", "location": "here"}'),
]


@pytest.mark.parametrize(("method", "path", "body"), HOSTILE)
def test_hostile_requests_get_a_clear_refusal_and_no_trace(
    worker: WorkerProcess, method: str, path: str, body: bytes | None
) -> None:
    """Query strings and bodies on every endpoint are validated: each of these gets a
    4xx with a JSON reason (never a 500, never a stack trace, never a file outside
    the static folder), and the worker stays ready."""
    status, answer = worker.request(method, path, body, timeout=30)
    assert 400 <= status < 500, (status, answer)
    assert isinstance(answer, dict) and answer.get("reason"), answer
    text = str(answer)
    for leak in ("Traceback", 'File "', "site-packages", "[project]", "Settings("):
        assert leak not in text, text
    assert worker.get("/health", token=None)[0] == 200


def test_metrics_count_events_alerts_and_latency(worker: WorkerProcess, space: AppSpace) -> None:
    now = int(time.time() * 1000)
    clicks = [
        {"click_id": f"m{i}", "session_id": "metrics-1", "url": "u", "timestamp": now + i}
        for i in range(3)
    ]
    assert worker.request("POST", "/clicks", clicks)[0] == 202
    assert worker.request("POST", "/clicks", b'{"session_id": 1}')[0] == 400

    def scraped():
        status, text = worker.get("/metrics")
        assert status == 200
        return text if 'fraudapp_alerts_total{rule="click_burst"}' in text else None

    text = wait_for(scraped)
    assert text, "no click_burst alert counted"
    lines = text.splitlines()
    assert any(line.startswith("fraudapp_events_in_total{topic=") for line in lines)
    assert any(line.startswith('fraudapp_verdicts_total{fraud="true"}') for line in lines)
    assert any(
        line.startswith('fraudapp_detection_latency_seconds_count{rule="click_burst"}')
        for line in lines
    )
    assert any(line.startswith("fraudapp_consumer_lag{partition=") for line in lines)
    for series in ("process_resident_memory_bytes ", "fraudapp_python_allocated_blocks "):
        assert any(line.startswith(series) and float(line.split()[1]) > 0 for line in lines)
    # RocksDB's memory per table: the session just written sits in a memtable, and
    # no table holds more than the budget of its open partitions.
    rocks = {
        (m["table"], m["kind"]): float(v)
        for m, v in (
            (dict(re.findall(r'(\w+)="([^"]*)"', labels)), value)
            for labels, value in re.findall(r"^fraudapp_rocksdb_bytes\{(.*)\} (\S+)$", text, re.M)
        )
    }
    assert rocks[("click-sessions", "memtables")] > 0, rocks
    budget = RocksDBBudget().bound_mb(space.partitions) * 1024 * 1024
    for table in {table for table, _ in rocks}:
        assert rocks[(table, "memtables")] + rocks[(table, "block_cache")] <= budget, rocks


def test_dashboard_login_sets_a_cookie_that_opens_reads_only(worker: WorkerProcess) -> None:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", worker.web_port, timeout=10)
    conn.request("GET", f"/dashboard?access_token={worker.api_token}")
    response = conn.getresponse()
    response.read()
    assert response.status == 303 and response.getheader("Location") == "/dashboard"
    cookie = response.getheader("Set-Cookie")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    jar = cookie.split(";", 1)[0]
    conn.request("GET", "/dashboard", headers={"Cookie": jar})
    page = conn.getresponse()
    assert page.status == 200 and b"<html" in page.read().lower()
    conn.request("POST", "/clicks", body=b"{}", headers={"Cookie": jar})
    refused = conn.getresponse()
    assert refused.status == 401
    refused.read()
    conn.request("GET", "/dashboard?access_token=wrong-wrong-wrong-wrong")
    assert conn.getresponse().status == 401


def test_simulated_clicks_come_back_with_their_verdict(worker: WorkerProcess) -> None:
    answers = [
        worker.request(
            "POST",
            "/simulate/click",
            {"session_id": "sim-1", "url": "https://a.example/sim", "lat": 51.5, "lon": -0.1},
            timeout=30,
        )
        for _ in range(3)
    ]
    assert [status for status, _ in answers] == [200, 200, 200]
    first, third = answers[0][1], answers[2][1]
    assert first["verdict"]["fraud"] is False and first["alerts"] == []
    assert third["verdict"]["fraud"] is True and third["verdict"]["reasons"] == ["click_burst"]
    (alert,) = third["alerts"]
    assert alert["rule"] == "click_burst" and alert["click_id"] == third["click"]["click_id"]
    assert alert["location"] == {"lat": 51.5, "lon": -0.1, "by": "click"}
    status, answer = worker.request("POST", "/simulate/click", {"url": "u"})
    assert status == 400 and answer["reason"] == "missing_field"


def test_simulated_transactions_come_back_with_their_alerts(worker: WorkerProcess) -> None:
    txn = {"account_id": "sim-acct", "amount": 20, "location": {"lat": 51.5, "lon": -0.1}}
    status, first = worker.request("POST", "/simulate/transaction", txn, timeout=30)
    assert status == 200 and first["alerts"] == []
    far = {**txn, "location": {"lat": 40.7, "lon": -74.0}}
    status, second = worker.request("POST", "/simulate/transaction", far, timeout=30)
    assert status == 200
    (alert,) = second["alerts"]
    assert alert["rule"] == "atm_impossible_travel"
    assert alert["t2_transaction_id"] == second["transaction"]["transaction_id"]


def test_the_event_stream_replays_and_follows_alerts(worker: WorkerProcess) -> None:
    import urllib.request

    request = urllib.request.Request(
        worker.url + "/dashboard/events",
        headers={"Authorization": f"Bearer {worker.api_token}"},
    )
    with urllib.request.urlopen(request, timeout=15) as stream:
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        now = int(time.time() * 1000)
        clicks = [
            {"click_id": f"ev{i}", "session_id": "events-1", "url": "u", "timestamp": now + i}
            for i in range(3)
        ]
        assert worker.request("POST", "/clicks", clicks)[0] == 202
        kinds, alert_ids = set(), []
        deadline = time.monotonic() + 30
        event = None
        while time.monotonic() < deadline and "ev2" not in alert_ids:
            line = stream.readline().decode().strip()
            if line.startswith("event: "):
                event = line[7:]
                kinds.add(event)
            elif line.startswith("data: ") and event == "alert":
                alert_ids.append(json.loads(line[6:]).get("click_id"))
        assert "ev2" in alert_ids and "rates" in kinds


def test_watermarks_name_every_level_and_input_partition(
    worker: WorkerProcess, space: AppSpace
) -> None:
    """An operator sees each stage's event time and what it waits on (the worker has
    read clicks by now, so its click levels are known)."""
    status, body = worker.get("/watermarks")
    assert status == 200, body
    assert list(body["levels"]["clicks"]) == [
        "read",
        "session",
        "source",
        "campaign",
        "area_in",
        "area",
        "index",
        "cases",
    ]
    assert list(body["levels"]["atm"]) == ["read", "account", "index", "cases"]
    assert f"{space.topics['clicks']}[0]" in body["sources"], sorted(body["sources"])
    assert set(body["waiting_on"]) == {"clicks", "atm"}
    assert body["paused_for_alignment"] == []
