"""Faust wiring of the ATM rule: transactions in, account state, enriched alerts out.

Thin, like the click agent: decode (the Kafka record's timestamp stands in for a
missing ``timestamp`` field, as ksqlDB's ROWTIME), move the record to its account's
partition if needed, run :mod:`fraudapp.atm.detect` through the shared keyed
runner, and send one alert per pair, enriched with the customer record.
"""

from __future__ import annotations

from typing import Any

from faust.types import EventT

from fraudapp.app import app, settings, state_table
from fraudapp.atm.customers import enrichment
from fraudapp.atm.detect import RULE_NAME, AtmStep, TravelPair, TravelRule, travel_alert
from fraudapp.atm.models import Txn, decode_txn
from fraudapp.core.badinput import BadInput
from fraudapp.core.rulebook import RuleRecord
from fraudapp.engine.origin import origin_of
from fraudapp.live import liverules, livewatermarks
from fraudapp.live.keyedagent import KeyedRunner, keyed_topics
from fraudapp.live.outputs import send_alert
from fraudapp.live.recordagent import record_agent
from fraudapp.live.send import send_dead_letter


def travel_rule(record: RuleRecord) -> TravelRule:
    """The rule as a version of the ``rules`` topic gives it."""
    params = record.params
    return TravelRule(
        window_ms=params["window_ms"], lateness_ms=params["lateness_ms"], version=record.version
    )


rule = travel_rule(liverules.book[RULE_NAME])
topics = settings.topics

#: Transactions still inside window + lateness, per account (raw UTF-8 account id).
accounts_state = state_table("atm-accounts")

txn_source, txns_topic, txns_by_account = keyed_topics(
    app, topics.atm_txns, topics.atm_by_account, settings.partitions
)

runner: KeyedRunner[Txn, AtmStep] = KeyedRunner(
    rule=rule,
    table=accounts_state,
    partitions=settings.partitions,
    rekey_topic=txns_by_account,
    what="transaction",
    watermark=lambda: livewatermarks.level(livewatermarks.ATM, "account"),
)
liverules.book.on_change(RULE_NAME, lambda record: runner.set_rule(travel_rule(record)))


def pair_alert(pair: TravelPair) -> dict[str, Any]:
    params = liverules.current()[RULE_NAME].params  # its grading thresholds, live
    return travel_alert(pair, runner.rule.version, enrichment(pair.account_id), params)


async def handle(event: EventT) -> None:
    message = event.message
    try:
        # faust gives the record's timestamp in float seconds; back to exact ms.
        record_ms = round(message.timestamp * 1000) if message.timestamp else None
        txn = decode_txn(message.value, settings.max_record_bytes, record_ms, origin_of(event))
    except BadInput as error:
        await send_dead_letter(event, error)
        return
    key = txn.account_id.encode("utf-8")
    placed = await runner.place(event, key, txn.timestamp)
    if placed is None:
        return  # on its way to its account's partition, owned by another worker
    partition, seen, context = placed
    with context:
        result = await runner.process(event, partition, txn, seen)
        if result is None:
            return
        for pair in result.pairs:
            await send_alert(key, pair_alert(pair))


@app.on_partitions_revoked.connect
async def _forget_expiry(sender: Any, revoked: Any = None, **kwargs: Any) -> None:
    runner.reset()


#: Every transaction: an enriched alert for each pair it completes.
detect_impossible_travel = record_agent(txn_source, "atm-travel", handle)
