"""Sending results: JSON records to output topics and refused input to dead-letter.

The one place where records leave a worker, so that every agent encodes keys the
same way (raw UTF-8, matching the source topics and the tables: faust's router
then sends a keyed HTTP request to the worker that owns the key).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any

import faust
import orjson
from faust.types import EventT

from fraudapp import alertindex, alerts, liverules, metrics
from fraudapp.app import (
    alerts_topic,
    dead_letter_topic,
    outbox,
    output_topic,
    outputs_declared,
    settings,
)
from fraudapp.badinput import BadInput
from fraudapp.origin import origin_of

log = logging.getLogger(__name__)

#: The input record whose handling is under way (a click's or a transaction's, also at
#: later stages): its topic and ``partition:offset``, named by the alerts it raises.
raised_by: ContextVar[dict[str, str] | None] = ContextVar("raised_by", default=None)

shadow_alerts_topic = output_topic(settings.topics.shadow_alerts)


def key_bytes(key: str | bytes | None) -> bytes | None:
    """Keys travel as raw UTF-8, never JSON-quoted."""
    if key is None or isinstance(key, bytes):
        return key
    return key.encode("utf-8")


async def send_json(
    topic: faust.TopicT,
    key: str | bytes | None,
    value: dict[str, Any],
    partition: int | None = None,
) -> None:
    """Queue one JSON record in the outbox, which faust's flush before committing
    offsets sends first."""
    if not outputs_declared.is_set():
        await outputs_declared.wait()
    await outbox.send(topic.get_topic_name(), key_bytes(key), orjson.dumps(value), partition)


async def send_alert(
    key: str | bytes, alert: dict[str, Any], received: float | None = None
) -> None:
    """Produce one alert and count it, with its latency from ``received`` (epoch s;
    default: when the record being handled was taken). The rule's version in force
    decides where it goes: ``alerts``, ``shadow-alerts`` (a candidate measured on real
    traffic, never notifying) or nowhere (paused)."""
    mode = liverules.route(alert)
    if mode == "live":
        topic = alerts_topic
        metrics.alert_sent(alert["rule"], received)
    elif mode == "shadow":
        topic = shadow_alerts_topic
    else:
        return
    await send_json(topic, key, alert)
    await alertindex.index(alert, topic.get_topic_name(), raised_by.get())


async def send_dead_letter(event: EventT, error: BadInput) -> None:
    """Refuse one input record without losing it: original bytes, origin and reason."""
    message = event.message
    log.warning(
        "dead letter %s from %s[%s]@%s: %s",
        error.reason,
        message.topic,
        message.partition,
        message.offset,
        error.message,
    )
    record = alerts.dead_letter(
        raw=message.value,
        key=message.key,
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        reason=error.reason,
        message=error.message,
    )
    await send_json(dead_letter_topic, message.key, record)
    metrics.dead_letter_sent(error.reason, message.topic)


async def guarded(event: EventT, handle: Callable[[EventT], Awaitable[None]]) -> None:
    """Run one record's handler; an unexpected error dead-letters the record (reason
    ``internal_error``, with the exception) instead of killing the agent, so one
    poisonous record can neither stop a worker nor vanish."""
    metrics.event_in(event.message.topic)
    raised_by.set({"topic": event.message.topic, "at": origin_of(event)})
    liverules.current()
    try:
        await handle(event)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.exception(
            "unexpected error on %s[%s]@%s",
            event.message.topic,
            event.message.partition,
            event.message.offset,
        )
        await send_dead_letter(event, BadInput("internal_error", f"{type(exc).__name__}: {exc}"))
