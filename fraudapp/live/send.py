"""How one record leaves a worker: JSON to an output topic through the outbox, a
refused input record to dead-letter, a handler guarded so that an unexpected error
dead-letters its record instead of killing the agent.

The one place where records leave a worker, so that every agent encodes keys the
same way (raw UTF-8, matching the source topics and the tables: faust's router
then sends a keyed HTTP request to the worker that owns the key). Alerts go through
:mod:`fraudapp.live.outputs`, which adds the rule's routing and the alert index.
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

from fraudapp.app import dead_letter_topic, outbox, outputs_declared
from fraudapp.core import alerts
from fraudapp.core.badinput import BadInput
from fraudapp.engine.origin import origin_of
from fraudapp.live import metrics

log = logging.getLogger(__name__)

#: The input record whose handling is under way (a click's or a transaction's, also at
#: later stages): its topic and ``partition:offset``, named by the alerts it raises.
raised_by: ContextVar[dict[str, str] | None] = ContextVar("raised_by", default=None)


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
