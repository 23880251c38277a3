"""Webhook notifications, one per case transition: a case of a notifying rule is
POSTed as JSON when it opens, reopens, escalates and resolves.

Per case, not per alert: a click farm over the rate limit is one thing to tell a
person about, not 145 (:mod:`fraudapp.core.cases`). The seed had a separate notifier
script; here it is one more agent, reading the ``cases`` topic in the same consumer
group, so it scales and restarts with the workers. Delivery is at-least-once: each
notification is retried with exponential backoff before the agent moves on (and so
before its offset can be committed), and carries ``Idempotency-Key:
<case_id>:<episode>:<transition>`` (escalations add the severity) so the receiver can
drop the repeats a retry or a restart produces. One that still cannot be delivered
goes to dead-letter with reason ``notify_failed``, so nothing is lost silently. A
case snoozed (:mod:`fraudapp.live.snoozes`) is counted as ``snoozed`` and not sent.
Notifications are sent one at a time, in order: a webhook that is down delays the
ones behind it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import orjson
from faust.types import EventT

from fraudapp.app import app, settings
from fraudapp.core.badinput import BadInput
from fraudapp.core.cases import NOTIFYING
from fraudapp.live import metrics, snoozes
from fraudapp.live.cases import cases_topic
from fraudapp.live.send import send_dead_letter

log = logging.getLogger(__name__)
config = settings.notify

#: Client errors that will not improve with a retry (408 and 429 will).
PERMANENT = {400, 401, 403, 404, 405, 410, 413, 422}


def backoff_delays(attempts: int, initial_s: float, max_s: float) -> list[float]:
    """The pauses between attempts: doubling from ``initial_s``, capped at ``max_s``."""
    return [min(max_s, initial_s * 2**i) for i in range(max(0, attempts - 1))]


def idempotency_key(case: dict[str, Any]) -> str:
    """The same for every delivery of one transition of one episode of a case."""
    key = f"{case['case_id']}:{case.get('episode', 1)}:{case['transition']}"
    return f"{key}:{case.get('severity')}" if case["transition"] == "escalated" else key


async def deliver(session: aiohttp.ClientSession, url: str, case: dict[str, Any]) -> str | None:
    """POST one notification until it is accepted; returns None, or why it finally failed."""
    delays = backoff_delays(config.max_attempts, config.backoff_initial_s, config.backoff_max_s)
    body = orjson.dumps(case)
    key = idempotency_key(case)
    headers = {"Content-Type": "application/json", "Idempotency-Key": key}
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
            log.warning("notify %s: attempt %d failed (%s)", key, attempt + 1, why)
            await asyncio.sleep(delays[attempt])
    return f"{why} after {attempt + 1} attempt(s)"


def wants_notice(case: dict[str, Any]) -> bool:
    """The case says whether its rule's version in force notifies (``rules`` topic,
    ``fraudapp rules set NAME notify=true``), as its alerts did; without it, the
    rule is looked up in ``NOTIFY_RULES``."""
    flag = case.get("notify")
    return flag if isinstance(flag, bool) else case.get("rule") in config.rules


async def notify(event: EventT, session: aiohttp.ClientSession, url: str) -> None:
    value = event.message.value
    if value is None:
        return  # a case that expired
    try:
        case = orjson.loads(value)
    except orjson.JSONDecodeError:
        return  # not one of ours; the cases topic is written by fraudapp only
    if not isinstance(case, dict) or case.get("transition") not in NOTIFYING:
        return
    if not wants_notice(case):
        return
    rule = str(case.get("rule"))
    snooze = snoozes.active(str(case["case_id"]))
    if snooze is not None:
        metrics.notification(rule, "snoozed")
        log.info("case %s %s: snoozed until %s", case["case_id"], case["transition"], snooze)
        return
    failure = await deliver(session, url, case)
    if failure is not None:
        metrics.notification(rule, "failed")
        await send_dead_letter(event, BadInput("notify_failed", f"webhook {url}: {failure}"))
    else:
        metrics.notification(rule, "sent")


if config.webhook_url:
    webhook_url = config.webhook_url

    @app.agent(cases_topic, name="notify-webhook")
    async def notify_webhook(stream: Any) -> None:
        """POST each transition of a case whose rule notifies to ``NOTIFY_WEBHOOK_URL``."""
        async with aiohttp.ClientSession() as session:
            async for event in stream.events():
                await notify(event, session, webhook_url)
