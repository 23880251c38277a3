"""Decoding clicks and timestamps: what is accepted and why the rest is refused."""

from __future__ import annotations

from datetime import datetime

import hypothesis
import pytest
from hypothesis import strategies as st

from fraudapp.clicks.models import decode_click
from fraudapp.core.alerts import alert_id, dead_letter, make_alert
from fraudapp.core.badinput import BadInput
from fraudapp.core.timeparse import TimestampError, parse_event_time

GOOD = b'{"click_id":"c1","session_id":"s1","url":"https://a.example/x","timestamp":1767225600000}'


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1_767_225_600_000, 1_767_225_600_000),
        ("1767225600000", 1_767_225_600_000),
        ("2026-01-01T00:00:00Z", 1_767_225_600_000),
        ("2026-01-01T00:00:00", 1_767_225_600_000),  # no zone means UTC
        ("2026-01-01T01:00:00+01:00", 1_767_225_600_000),
        ("2026-01-01T00:00:00.250+00:00", 1_767_225_600_250),
        ("2018-10-07 20:40:48 +0000", 1_538_944_848_000),  # ksqlDB's form
        ("2018-10-07T20:40:48.585666", 1_538_944_848_585),  # the gess generator's form
    ],
)
def test_timestamps_accepted(value: object, expected: int) -> None:
    assert parse_event_time(value) == expected


@pytest.mark.parametrize(
    "value", [None, True, "yesterday", 1_767_225_600, float("nan"), "2026-13-01T00:00:00", [1]]
)
def test_timestamps_refused(value: object) -> None:
    with pytest.raises(TimestampError):
        parse_event_time(value)


def test_good_click() -> None:
    c = decode_click(GOOD, 4096)
    assert (c.click_id, c.session_id, c.timestamp) == ("c1", "s1", 1_767_225_600_000)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"not json", "not_json"),
        (None, "not_json"),
        (b"[1,2]", "not_object"),
        (b'{"session_id":"s","url":"u","timestamp":1767225600000}', "missing_field"),
        (b'{"click_id":{},"session_id":"s","url":"u","timestamp":1767225600000}', "bad_field_type"),
        (b'{"click_id":"c","session_id":"s","url":"u","timestamp":"soon"}', "bad_timestamp"),
        (
            b'{"click_id":"c","session_id":"s","url":"u","timestamp":1767225600000,"lat":91,'
            b'"lon":0}',
            "bad_location",
        ),
        (
            b'{"click_id":"c","session_id":"s","url":"u","timestamp":1767225600000,"lat":1}',
            "bad_location",
        ),
        (b"{" + b" " * 5000 + b"}", "oversized"),
    ],
)
def test_bad_clicks_name_their_reason(raw: bytes | None, reason: str) -> None:
    with pytest.raises(BadInput) as info:
        decode_click(raw, 4096)
    assert info.value.reason == reason


def test_alert_envelope_and_deterministic_id() -> None:
    alert = make_alert(
        rule="click_burst",
        rule_version=1,
        key="s1",
        event_time=5,
        identity=("s1", "u", "c"),
        evidence={"click_id": "c"},
        detected_at=9,
    )
    assert alert == {
        "alert_id": alert_id("click_burst", "s1", "u", "c"),
        "rule": "click_burst",
        "rule_version": 1,
        "key": "s1",
        "event_time": 5,
        "detected_at": 9,
        "click_id": "c",
    }
    assert alert_id("click_burst", "s1", "u", "c") != alert_id("click_burst", "s1", "u", "d")
    with pytest.raises(ValueError):
        make_alert(
            rule="r",
            rule_version=1,
            key="k",
            event_time=1,
            identity=("x",),
            evidence={"rule": "other"},
        )


def test_dead_letter_keeps_original_bytes() -> None:
    text = dead_letter(
        raw=b"{oops", topic="clicks", partition=1, offset=7, reason="not_json", message="m"
    )
    assert text["value"] == "{oops" and text["offset"] == 7 and text["source_topic"] == "clicks"
    binary = dead_letter(
        raw=b"\xff\x00", topic="clicks", partition=0, offset=0, reason="not_json", message="m"
    )
    assert binary["value_base64"] == "/wA="


def test_timestamps_far_ahead_of_the_clock_are_refused() -> None:
    """One event dated next year would drag its partition's watermark along."""
    import time

    now = time.time_ns() // 1_000_000
    assert parse_event_time(now + 59 * 60_000) == now + 59 * 60_000
    with pytest.raises(TimestampError, match="ahead of this worker's clock"):
        parse_event_time(now + 61 * 60_000)


def reference_ms(day: str, clock: str, fraction: str, zone: str) -> int:
    """The text form's value by way of datetime, as it was parsed before days and
    zones were cached (``clock`` is HH:MM:SS, ``zone`` ±HH:MM)."""
    moment = datetime.fromisoformat(f"{day}T{clock}{zone}")
    millis = int((fraction + "000")[:3]) if fraction else 0
    return int(moment.timestamp()) * 1000 + millis


@hypothesis.settings(max_examples=500)
@hypothesis.given(
    moment=st.datetimes(min_value=datetime(1990, 1, 2), max_value=datetime(2025, 12, 31)),
    fraction=st.sampled_from(["", "5", "25", "250", "585666", "123456789"]),
    offset_min=st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59),
    separator=st.sampled_from(["T", " "]),
    zone_form=st.sampled_from(["{sign}{h:02d}:{m:02d}", " {sign}{h:02d}{m:02d}", "Z", ""]),
)
def test_text_timestamps_match_datetime(
    moment: datetime, fraction: str, offset_min: int, separator: str, zone_form: str
) -> None:
    day, clock = moment.strftime("%Y-%m-%d"), moment.strftime("%H:%M:%S")
    sign, h, m = "-" if offset_min < 0 else "+", abs(offset_min) // 60, abs(offset_min) % 60
    zone = zone_form.format(sign=sign, h=h, m=m)
    iso_zone = {"Z": "+00:00", "": "+00:00"}.get(zone, f"{sign}{h:02d}:{m:02d}")
    text = f"{day}{separator}{clock}{'.' + fraction if fraction else ''}{zone}"
    assert parse_event_time(text) == reference_ms(day, clock, fraction, iso_zone)


@pytest.mark.parametrize(
    "text",
    [
        "2026-02-30 00:00:00 +0000",
        "2026-01-01T24:00:00Z",
        "2026-01-01T23:60:00Z",
        "2026-01-01T23:59:60Z",
        "2026-01-01T00:00:00+24:00",
        "2026-01-01T00:00:00+01:60",
        "2026-00-10T00:00:00Z",
    ],
)
def test_impossible_text_timestamps_refused(text: str) -> None:
    with pytest.raises(TimestampError, match="out of range|must be in"):
        parse_event_time(text)
