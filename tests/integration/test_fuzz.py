"""Tens of thousands of random and mutated records through a real worker.

The promise: bad input never stops a worker and is never silently dropped. Each
record produced here must come out exactly once as a verdict (a click it could
judge; a resent click gets a second verdict marked ``duplicate``) or as a dead
letter naming its source topic, partition and offset, with a reason; the worker
must still be running and ready at the end, and the dead-letter counts per reason
must add up with the worker's own metrics.

Hypothesis draws the records; each example only produces its batch (recording
where each record landed), so that one worker judges all of them and the ledger is
checked once at the end: a worker per example would take hours.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import re
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from fraudapp.atm.oracle import expected_pairs
from fraudapp.cli.workerproc import WorkerProcess
from tests.integration.helpers import AppSpace, as_oracle_row, running, wait_until_idle

pytestmark = pytest.mark.integration

T0 = 1_767_225_600_000
EXAMPLES = 200  # × up to 120 records each
MAX_RECORD = 64 * 1024  # FRAUDAPP_MAX_RECORD_BYTES's default


@dataclass(frozen=True)
class Sent:
    topic: str
    partition: int
    offset: int
    value: bytes | None
    click_id: str | None  # the click id it carries, if any (see carried_id)


LEDGER: list[Sent] = []


@pytest.fixture(scope="module")
def space(kafka_broker) -> AppSpace:
    space = AppSpace(kafka_broker.bootstrap, "fuzz")
    space.create_topics()
    return space


@pytest.fixture(scope="module")
def worker(space: AppSpace, tmp_path_factory) -> WorkerProcess:
    with running(space.worker(Path(tmp_path_factory.mktemp("fuzz")))) as worker:
        yield worker


# -- what to send -----------------------------------------------------------------------

text = st.text(st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=40)
ip = st.one_of(
    st.ip_addresses().map(str),
    st.sampled_from(["999.1.1.1", "10.1.200.7", "::zz", "", "1.2.3", "0.0.0.0"]),
    text,
)
coordinate = st.one_of(
    st.floats(-90, 90),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["51.5", "north", "", "1e999"]),
)
timestamp = st.one_of(
    # up to 5 s past the valid clicks' 20 s (which stay within the 30 s lateness);
    # the earlier half of these are late
    st.integers(T0 + 250_000, T0 + 325_000),
    st.integers(T0, T0 + 600_000).map(lambda ms: ms // 1000),  # epoch seconds
    st.integers(-(2**63), 2**63 - 1),
    st.sampled_from(["2026-01-01T00:00:05Z", "2026-01-01 00:00:05", "yesterday", "", "1e30"]),
    st.floats(allow_nan=False),
)
json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(text, children, max_size=4),
    max_leaves=10,
)


@st.composite
def click(draw: st.DrawFn, number: int) -> dict[str, Any]:
    record: dict[str, Any] = {
        "click_id": f"fz-{number:09d}",  # fixed width: a drawn length may depend on it
        "session_id": draw(st.sampled_from(["s1", "s2", "s3"]) | text),
        "url": draw(st.sampled_from(["https://a.example/x", "https://a.example/y"]) | text),
        # within 20 s of each other: within the allowed lateness whatever the order
        "timestamp": draw(st.integers(T0 + 300_000, T0 + 320_000)),
    }
    for name, strategy in (
        ("ip", ip),
        ("device_id", text),
        ("ad_id", text),
        ("campaign_id", st.sampled_from(["cmp-1", "cmp-2"]) | text),
        ("user_agent", text),
    ):
        if draw(st.booleans()):
            record[name] = draw(strategy)
    if draw(st.booleans()):
        record["lat"] = draw(st.floats(-90, 90) | st.sampled_from(["51.5", -90, 90]))
        record["lon"] = draw(st.floats(-180, 180) | st.sampled_from(["-0.12", 180]))
    return record


def dumps(value: Any) -> bytes:
    """The standard library's JSON: unlike orjson it writes integers beyond 64 bits,
    which a producer in another language may well send."""
    return json.dumps(value, ensure_ascii=False).encode("utf-8")


@st.composite
def mutated(draw: st.DrawFn, number: int) -> bytes | None:
    """A click, then one thing done to it that a producer could get wrong."""
    record = draw(click(number))
    how = draw(
        st.sampled_from(
            [
                "drop",
                "retype",
                "timestamp",
                "coordinates",
                "one_coordinate",
                "bad_coordinate",
                "huge",
                "truncate",
                "not_object",
                "garbage",
                "tombstone",
                "non_utf8",
                "extra_fields",
            ]
        )
    )
    if how == "drop":
        del record[draw(st.sampled_from(["click_id", "session_id", "url", "timestamp"]))]
    elif how == "retype":
        field = draw(st.sampled_from(["click_id", "session_id", "url", "ip", "device_id"]))
        record[field] = draw(json_value)
    elif how == "timestamp":
        record["timestamp"] = draw(timestamp)
    elif how == "coordinates":
        record["lat"], record["lon"] = draw(coordinate), draw(coordinate)
    elif how == "one_coordinate":
        record[draw(st.sampled_from(["lat", "lon"]))] = draw(coordinate)
        record.pop(draw(st.sampled_from(["lat", "lon"])), None)
    elif how == "bad_coordinate":
        record["lat"] = draw(st.sampled_from([91, -90.5, 1e300, "NaN", "inf", [], {}]))
        record["lon"] = 0
    elif how == "huge":
        record["user_agent"] = "x" * draw(st.integers(MAX_RECORD, 2 * MAX_RECORD))
    elif how == "extra_fields":
        record.update(draw(st.dictionaries(text, json_value, max_size=5)))
    raw = dumps(record)
    if how == "truncate":
        return raw[: draw(st.integers(0, len(raw) - 1))]
    if how == "not_object":
        return dumps(draw(json_value.filter(lambda v: not isinstance(v, dict))))
    if how == "garbage":
        return draw(st.binary(max_size=300))
    if how == "tombstone":
        return None
    if how == "non_utf8":
        return b'{"click_id": "\xff\xfe", "session_id": "s1"}'
    if how == "bad_coordinate" and draw(st.booleans()):
        return raw.replace(b'"NaN"', b"NaN")  # not JSON at all
    return raw


def kafka_key(value: bytes | None, draw: st.DrawFn) -> bytes | None:
    """Mostly the session id, as a producer should; sometimes none or junk bytes."""
    choice = draw(st.sampled_from(["session", "session", "none", "junk"]))
    if choice == "junk" or value is None:  # a tombstone needs a key
        return draw(st.binary(min_size=1, max_size=20))
    if choice == "none":
        return None
    try:
        session = orjson.loads(value).get("session_id")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return str(session).encode() if isinstance(session, str) else None


class Producer:
    """One producer for every example, on its own event loop: starting one per
    example (~520 of them) took ~25 s of the file's ~120."""

    def __init__(self, bootstrap: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.producer = self.loop.run_until_complete(self._start(bootstrap))

    async def _start(self, bootstrap: str) -> AIOKafkaProducer:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=4 * 1024 * 1024)
        await producer.start()
        return producer

    def send(self, topic: str, records: list[tuple[bytes | None, bytes | None]]) -> list[Any]:
        """Every record sent and acknowledged: where each landed."""
        return self.loop.run_until_complete(self._send(topic, records))

    async def _send(self, topic: str, records: list[tuple[bytes | None, bytes | None]]):
        futures = [await self.producer.send(topic, value, key=key) for key, value in records]
        return [await f for f in futures]

    def close(self) -> None:
        self.loop.run_until_complete(self.producer.stop())
        self.loop.close()


@pytest.fixture(scope="module")
def producer(space: AppSpace):
    producer = Producer(space.bootstrap)
    yield producer
    producer.close()


_numbers = iter(range(10**9))


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
    # Shrinking would re-run examples against a worker whose state they changed.
    phases=[Phase.explicit, Phase.generate],
)
@given(data=st.data())
def test_fuzzed_records_are_produced(
    data, space: AppSpace, worker: WorkerProcess, producer: Producer
) -> None:
    records: list[tuple[bytes | None, bytes | None, str | None]] = []
    for _ in range(data.draw(st.integers(1, 120))):
        number = next(_numbers)
        kind = data.draw(st.sampled_from(["valid", "valid", "mutated", "resend"]))
        earlier = [(v, c) for _, v, c in records if c]
        if kind == "resend" and earlier:  # a redelivery: the same bytes again
            value, click_id = data.draw(st.sampled_from(earlier))
        elif kind == "mutated":
            value, click_id = data.draw(mutated(number)), None
        else:
            record = data.draw(click(number))
            value, click_id = orjson.dumps(record), record["click_id"]
        records.append((kafka_key(value, data.draw), value, click_id))
    topic = space.topics["clicks"]
    landed = producer.send(topic, [(k, v) for k, v, _ in records])
    for (_, value, _), meta in zip(records, landed, strict=True):
        LEDGER.append(Sent(topic, meta.partition, meta.offset, value, carried_id(value)))


def carried_id(value: bytes | None) -> str | None:
    """The click id a record carries, as the worker would read it, if it has one: a
    verdict with that id can only come from a record carrying it (ids are unique per
    drawn record; resends and retyped ids share theirs, and are counted together)."""
    try:
        found = json.loads(value).get("click_id") if value is not None else None
    except (ValueError, AttributeError, UnicodeDecodeError, RecursionError):
        return None
    if isinstance(found, bool) or not isinstance(found, str | int):
        return None
    return str(found)


def _dead_value(dead: dict[str, Any]) -> bytes | None:
    if "value_base64" in dead:
        return base64.b64decode(dead["value_base64"])
    value = dead.get("value")
    return None if value is None else value.encode("utf-8")


def test_every_fuzzed_record_is_accounted_for_once(space: AppSpace, worker: WorkerProcess) -> None:
    # Its examples' sizes are random: 200 gave 9 607 records in one CI run, ~12 000 on
    # average; the guard only asks that it ran (it was 10 000 for 400 examples).
    assert len(LEDGER) > EXAMPLES * 20, "the fuzzing test did not run first"
    # Wait for the worker to catch up: verdicts + dead letters >= records.
    deadline = time.monotonic() + 600
    out: dict[str, list[dict[str, Any]]] = {}
    seen, progress = -1, time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - progress < 30:
        out = space.consume("verdicts", "dead", idle_s=5.0)
        count = len(out["verdicts"]) + len(out["dead"])
        if count >= len(LEDGER):
            break
        if count > seen:  # still coming in; stop waiting once it has stalled
            seen, progress = count, time.monotonic()
    assert worker.proc is not None and worker.proc.poll() is None, "the worker died"
    assert worker.get("/health")[0] == 200

    verdicts = Counter(v["click_id"] for v in out["verdicts"])
    by_offset: Counter[tuple[str, int, int]] = Counter()
    by_click: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    for dead in out["dead"]:
        assert dead["reason"] and dead["message"], dead
        reasons[dead["reason"]] += 1
        if dead["source_topic"] == space.topics["clicks"]:
            by_offset[(dead["source_topic"], dead["partition"], dead["offset"])] += 1
        else:  # refused after its detour to the session's partition: name it by its id
            by_click[carried_id(_dead_value(dead))] += 1

    expected_verdicts: Counter[str] = Counter()
    unaccounted, twice = [], []
    for sent in LEDGER:
        dead_here = by_offset[(sent.topic, sent.partition, sent.offset)]
        if sent.click_id is None:
            if dead_here != 1:
                (unaccounted if dead_here == 0 else twice).append(sent)
            continue
        expected_verdicts[sent.click_id] += 1 - dead_here
        if dead_here > 1:
            twice.append(sent)
    for click_id, n in by_click.items():
        expected_verdicts[click_id] -= n
    wrong = {cid: (verdicts[cid], n) for cid, n in expected_verdicts.items() if verdicts[cid] != n}
    assert not unaccounted, f"{len(unaccounted)} records vanished, e.g. {unaccounted[:3]}"
    assert not twice, f"{len(twice)} records dead-lettered twice, e.g. {twice[:3]}"
    assert not wrong, (
        f"{len(wrong)} clicks with the wrong number of verdicts: {list(wrong.items())[:5]}"
    )
    assert set(verdicts) <= set(expected_verdicts), "a verdict for a click never sent"

    status, text = worker.get("/metrics")
    counted = {
        reason: float(n)
        for reason, n in re.findall(
            r'^fraudapp_dead_letters_total\{reason="([^"]+)"\} (\S+)$', text, re.M
        )
    }
    assert {r: float(n) for r, n in reasons.items()} == counted
    assert sum(verdicts.values()) + sum(reasons.values()) == len(LEDGER)
    assert not math.isnan(sum(counted.values()))
    print(
        f"\nfuzzed {len(LEDGER)} records: {sum(verdicts.values())} verdicts,"
        f" {sum(reasons.values())} dead letters {dict(reasons)}"
    )


# -- the ATM topic: after the clicks' ledger is closed -------------------------------------


@dataclass(frozen=True)
class SentTxn:
    partition: int
    offset: int
    value: bytes | None
    valid: bool  # what the worker must accept (True) or dead-letter once (False)


ATM_LEDGER: list[SentTxn] = []
ATM_EXAMPLES = 120  # × up to 60 records each


@st.composite
def txn(draw: st.DrawFn, number: int) -> dict[str, Any]:
    coordinate_text = draw(st.booleans())  # the seed's generator sends strings
    lat = draw(st.floats(-90, 90))
    lon = draw(st.floats(-180, 180))
    return {
        "account_id": draw(st.integers(1, 300).map(lambda n: f"a{n}") | text),
        "transaction_id": f"fz-atm-{number:09d}",
        "atm": draw(text),
        "amount": draw(st.integers(0, 1000) | st.floats(0, 1e6)),
        "location": {
            "lat": repr(lat) if coordinate_text else lat,
            "lon": repr(lon) if coordinate_text else lon,
        },
        # 40 minutes: within the hour of allowed lateness whatever the order
        "timestamp": draw(st.integers(T0, T0 + 2_400_000)),
    }


@st.composite
def broken_txn(draw: st.DrawFn, number: int) -> bytes | None:
    """A transaction with one thing wrong that it must be refused for."""
    record = draw(txn(number))
    how = draw(
        st.sampled_from(
            [
                "drop",
                "retype_id",
                "amount",
                "location",
                "coordinate",
                "timestamp",
                "huge",
                "truncate",
                "not_object",
                "garbage",
                "tombstone",
                "non_utf8",
            ]
        )
    )
    if how == "drop":
        del record[draw(st.sampled_from(["account_id", "transaction_id", "atm", "amount"]))]
    elif how == "retype_id":
        field = draw(st.sampled_from(["account_id", "transaction_id", "atm"]))
        # (a whole number is a valid id: producers in other languages send them)
        record[field] = draw(st.sampled_from([True, [], {}, 2.5, ""]))
    elif how == "amount":
        record["amount"] = draw(st.sampled_from(["abc", [], {}, True, -1, "1e999", "NaN"]))
    elif how == "location":
        record["location"] = draw(st.sampled_from([None, "here", [1, 2], {}, {"lat": 1}]))
    elif how == "coordinate":
        name = draw(st.sampled_from(["lat", "lon"]))
        outside = [90.5, -91] if name == "lat" else [180.5, -181]
        record["location"][name] = draw(
            st.sampled_from([*outside, "north", "NaN", "inf", [], True, 1e300])
        )
    elif how == "timestamp":
        record["timestamp"] = draw(
            st.sampled_from(["later", "", -5, 10**20, "2999-01-01T00:00:00Z", [], True])
        )
    elif how == "huge":
        record["atm"] = "x" * draw(st.integers(MAX_RECORD, 2 * MAX_RECORD))
    raw = dumps(record)
    if how == "truncate":
        return raw[: draw(st.integers(0, len(raw) - 1))]
    if how == "not_object":
        return dumps(draw(json_value.filter(lambda v: not isinstance(v, dict))))
    if how == "garbage":
        return draw(st.binary(max_size=300).filter(lambda b: not _is_object(b)))
    if how == "tombstone":
        return None
    if how == "non_utf8":
        return b'{"account_id": "\xff\xfe", "transaction_id": "t"}'
    return raw


def _is_object(raw: bytes) -> bool:
    try:
        return isinstance(json.loads(raw), dict)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return False


@settings(
    max_examples=ATM_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.generate],
)
@given(data=st.data())
def test_fuzzed_atm_records_are_produced(
    data, space: AppSpace, worker: WorkerProcess, producer: Producer
) -> None:
    records: list[tuple[bytes | None, bytes | None, bool]] = []
    for _ in range(data.draw(st.integers(1, 60))):
        number = next(_numbers)
        kind = data.draw(st.sampled_from(["valid", "valid", "broken", "resend"]))
        earlier = [(v, ok) for _, v, ok in records if ok]
        if kind == "resend" and earlier:
            value, valid = data.draw(st.sampled_from(earlier))
        elif kind == "broken":
            value, valid = data.draw(broken_txn(number)), False
        else:
            value, valid = dumps(data.draw(txn(number))), True
        key_kind = data.draw(st.sampled_from(["account", "account", "none", "junk"]))
        key = None
        if value is None or key_kind == "junk":
            key = data.draw(st.binary(min_size=1, max_size=20))
        elif key_kind == "account" and valid:
            key = json.loads(value)["account_id"].encode("utf-8")
        records.append((key, value, valid))
    topic = space.topics["atm"]
    landed = producer.send(topic, [(k, v) for k, v, _ in records])
    for (_, value, valid), meta in zip(records, landed, strict=True):
        ATM_LEDGER.append(SentTxn(meta.partition, meta.offset, value, valid))


def test_every_fuzzed_atm_record_is_accounted_for(space: AppSpace, worker: WorkerProcess) -> None:
    """Each broken transaction is dead-lettered once at its offset, no valid one is,
    and the valid ones (resends included) give exactly the oracle's pairs: nothing
    accepted was silently lost either."""
    assert len(ATM_LEDGER) > 2_000, "the ATM fuzzing test did not run first"
    wait_until_idle(worker)
    out = space.consume("dead", "alerts", idle_s=5.0)
    assert worker.proc is not None and worker.proc.poll() is None, "the worker died"
    assert worker.get("/health")[0] == 200
    atm_topic = space.topics["atm"]
    dead_at = Counter(
        (d["partition"], d["offset"]) for d in out["dead"] if d["source_topic"] == atm_topic
    )
    assert all(d["reason"] and d["message"] for d in out["dead"])
    wrong = [
        (sent, dead_at[(sent.partition, sent.offset)])
        for sent in ATM_LEDGER
        if dead_at[(sent.partition, sent.offset)] != (0 if sent.valid else 1)
    ]
    assert not wrong, f"{len(wrong)} ATM records misjudged, e.g. {wrong[:3]}"

    accepted = {}
    for sent in ATM_LEDGER:
        if sent.valid:
            record = json.loads(sent.value)
            accepted[record["transaction_id"]] = as_oracle_row(record)
    expected = set(expected_pairs(list(accepted.values())))

    def pairs(alerts: list[dict]) -> set[tuple[str, str, str]]:
        return {
            (a["account_id"], a["t1_transaction_id"], a["t2_transaction_id"])
            for a in alerts
            if a["rule"] == "atm_impossible_travel"
        }

    # Idle by the worker's metrics is not done: a pair can wait on the account
    # stage's watermark (idleness) after the lag is 0, longer on a busy machine.
    # Read again until the pairs are the oracle's or a generous bound passes.
    found, deadline = pairs(out["alerts"]), time.monotonic() + 120
    while found != expected and time.monotonic() < deadline:
        time.sleep(2.0)
        out = space.consume("dead", "alerts", idle_s=3.0)
        found = pairs(out["alerts"])
    assert expected and found == expected

    status, text = worker.get("/metrics")
    counted = sum(
        float(n) for n in re.findall(r"^fraudapp_dead_letters_total\{[^}]*\} (\S+)$", text, re.M)
    )
    assert counted == len(out["dead"])
    print(
        f"\nfuzzed {len(ATM_LEDGER)} ATM records: {sum(not s.valid for s in ATM_LEDGER)} broken,"
        f" all dead-lettered once; {len(expected)} pairs among the valid ones, all alerted"
    )
