"""Webhook notifications: alerts of chosen rules POSTed as JSON to a URL.

The seed had a separate notifier script; here it is one more agent, reading the
alerts topic in the same consumer group, so it scales and restarts with the
workers. Delivery is at-least-once: each alert is retried with exponential backoff
before the agent moves on (and so before its offset can be committed), and carries
``Idempotency-Key: <alert_id>`` so the receiver can drop the repeats a retry or a
restart produces. An alert that still cannot be delivered goes to dead-letter with
reason ``notify_failed``, so nothing is lost silently. Notifications are sent one
at a time, in order: a webhook that is down delays the ones behind it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import orjson
from faust.types import EventT

from fraudapp.app import alerts_topic, app, settings
from fraudapp.core.badinput import BadInput
from fraudapp.live.send import send_dead_letter

log = logging.getLogger(__name__)
config = settings.notify

#: Client errors that will not improve with a retry (408 and 429 will).
PERMANENT = {400, 401, 403, 404, 405, 410, 413, 422}


def backoff_delays(attempts: int, initial_s: float, max_s: float) -> list[float]:
    """The pauses between attempts: doubling from ``initial_s``, capped at ``max_s``."""
    return [min(max_s, initial_s * 2**i) for i in range(max(0, attempts - 1))]


async def deliver(session: aiohttp.ClientSession, url: str, alert: dict[str, Any]) -> str | None:
    """POST one alert until it is accepted; returns None, or why it finally failed."""
    delays = backoff_delays(config.max_attempts, config.backoff_initial_s, config.backoff_max_s)
    body = orjson.dumps(alert)
    headers = {"Content-Type": "application/json", "Idempotency-Key": str(alert["alert_id"])}
    why = "not attempted"
    for attempt in range(config.max_attempts):
        try:
            async with session.post(
                url,
                data=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=config.timeout_s),
            ) as response:
                if 200 <= response.status < 300:
                    return None
                why = f"HTTP {response.status} from the webhook"
                if response.status in PERMANENT:
                    break
        except (aiohttp.ClientError, TimeoutError) as exc:
            why = f"{type(exc).__name__}: {exc}"
        if attempt < len(delays):
            log.warning("notify %s: attempt %d failed (%s)", alert["alert_id"], attempt + 1, why)
            await asyncio.sleep(delays[attempt])
    return f"{why} after {attempt + 1} attempt(s)"


def wants_notice(alert: dict[str, Any]) -> bool:
    """The alert says whether its rule's version in force notifies (``rules`` topic,
    ``fraudapp rules set NAME notify=true``); alerts written before rules were data
    do not, and fall back to ``NOTIFY_RULES``."""
    flag = alert.get("notify")
    return flag if isinstance(flag, bool) else alert.get("rule") in config.rules


async def notify(event: EventT, session: aiohttp.ClientSession, url: str) -> None:
    try:
        alert = orjson.loads(event.message.value)
    except orjson.JSONDecodeError:
        return  # not one of ours; the alerts topic is written by fraudapp only
    if not isinstance(alert, dict) or not wants_notice(alert):
        return
    failure = await deliver(session, url, alert)
    if failure is not None:
        await send_dead_letter(event, BadInput("notify_failed", f"webhook {url}: {failure}"))


if config.webhook_url:
    webhook_url = config.webhook_url

    @app.agent(alerts_topic, name="notify-webhook")
    async def notify_webhook(stream: Any) -> None:
        """POST each alert whose rule notifies to ``NOTIFY_WEBHOOK_URL``."""
        async with aiohttp.ClientSession() as session:
            async for event in stream.events():
                await notify(event, session, webhook_url)
