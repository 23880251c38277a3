"""The faust application: settings applied, shared topics, domain modules loaded.

Start a worker the faust way::

    faust -A fraudapp.app worker -l info

Broker, web port and data directory come from the environment (see
:mod:`fraudapp.settings` and the README); the web server binds to 127.0.0.1 unless
``WEB_BIND`` says otherwise, because faust's own default is every interface.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import uuid

import faust
import mode.loop

from fraudapp import heap
from fraudapp.bulkfeed import BulkConsumer, Handler
from fraudapp.httpauth import require_tokens
from fraudapp.httperrors import application_options
from fraudapp.outbox import Outbox
from fraudapp.owned import OwnedPartitions
from fraudapp.pins import require_pinned
from fraudapp.settings import Settings, with_faust_flags
from fraudapp.statetable import StateTable
from fraudapp.statewrites import StateWrites
from fraudapp.storage import bound_info_logs
from fraudapp.timedomains import atm_domain, click_domain
from fraudapp.watermarks import Watermarks


def use_event_loop(name: str) -> None:
    """Make a faust worker run on ``name``'s event loop (see ``Settings.event_loop``).

    Only in a ``faust ... worker`` process, before its loop exists, and only when
    faust was not told a loop itself (its ``-L``/``FAUST_LOOP`` sets ``FAUST_LOOP``):
    tests, the CLI and replay import this module too and keep the loop they have.
    """
    if name != "uvloop" or "worker" not in sys.argv[1:] or "FAUST_LOOP" in os.environ:
        return
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        mode.loop.use("uvloop")


class FraudApp(faust.App):
    """faust's app with fraudapp's consumer: records of topics with a bulk handler go
    to it straight from the consumer's fetches (:mod:`fraudapp.bulkfeed`)."""

    bulk_handlers: dict[str, Handler]

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.bulk_handlers = {}

    def _new_consumer(self) -> faust.types.ConsumerT:
        transport = self.transport
        if not issubclass(BulkConsumer, transport.Consumer):  # not aiokafka: faust's own
            return super()._new_consumer()
        consumer = BulkConsumer(
            transport,
            callback=self.topics.on_message,
            on_partitions_revoked=self._on_partitions_revoked,
            on_partitions_assigned=self._on_partitions_assigned,
            beacon=self.beacon,
            loop=transport.loop,
        )
        consumer.use(
            self.bulk_handlers,
            on_caught_up=outbox.send_soon,
            writes=state_writes,
            fetch_max_wait_ms=settings.fetch_max_wait_ms,
            batch_commit_every=settings.commit_every,
            watermarks=watermarks,
        )
        return consumer


settings = Settings.from_env(with_faust_flags(os.environ, sys.argv))
bound_info_logs()
use_event_loop(settings.event_loop)

app = FraudApp(
    settings.app_id,
    broker=settings.broker_url,
    store="rocksdb://",
    datadir=str(settings.datadir),
    web_port=settings.web_port,
    web_bind=settings.web_bind,
    web_host=settings.web_host,
    topic_partitions=settings.partitions,
    topic_replication_factor=1,
    # Clicks and transactions are processed from the start of the topic the first
    # time a consumer group runs: a new deployment must not skip what is waiting.
    consumer_auto_offset_reset="earliest",
    broker_session_timeout=settings.session_timeout_s,
    broker_heartbeat_interval=settings.heartbeat_interval_s,
    # Records are plain JSON bytes decoded by the agents themselves, so that bad
    # input becomes a dead letter instead of an exception in faust's decoder.
    key_serializer="raw",
    value_serializer="raw",
    producer_linger_ms=settings.producer_linger_ms,
    producer_max_batch_size=settings.producer_batch_kb * 1024,
    web_application_options=application_options(settings),
)


@app.on_worker_init.connect
def _refuse_an_open_api(sender: object = None, **kwargs: object) -> None:
    require_pinned(os.environ)
    require_tokens(settings)


#: Every record a worker produces for an event, changelogs included, leaves through
#: here in batches (:mod:`fraudapp.outbox` says why and what it keeps).
outbox = Outbox(lambda: app.producer, settings.producer_linger_ms / 1000.0)
#: The state tables' writes while the bulk feed hands records over, written in one
#: go per database, always before the outbox sends (:mod:`fraudapp.statewrites`).
state_writes = StateWrites()
outbox.before_send = state_writes.flush


#: This worker's event time: its source partitions' watermarks and every stage's
#: (:mod:`fraudapp.watermarks` says why; :mod:`fraudapp.livewatermarks` wires it).
watermarks = Watermarks(
    [click_domain(settings), atm_domain(settings)], settings.partitions, uuid.uuid4().hex[:12]
)

#: Which topic partitions this worker owns: work keyed to one of them (a click's later
#: stage, an alert's index entry) runs inline instead of through its topic
#: (:mod:`fraudapp.owned` says why).
owned = OwnedPartitions()
app.on_partitions_assigned.connect(owned.on_assigned)
app.on_partitions_revoked.connect(owned.on_revoked)


def state_table(name: str) -> faust.Table:
    """A table of raw bytes keyed like the topics (raw UTF-8), partitioned like them,
    on RocksDB with fraudapp's memory budget (:mod:`fraudapp.storage`), its changelog
    sent through the outbox."""
    table = StateTable(
        app,
        name=name,
        beacon=app.tables.beacon,
        partitions=settings.partitions,
        key_type=bytes,
        value_type=bytes,
        options=settings.rocksdb.table_options(),
        outbox=outbox,
        writes=state_writes,
    )
    return app.tables.add(table)


def internal_topic(name: str, **kwargs: object) -> faust.TopicT:
    """A topic of raw bytes with fraudapp's partition count, created by the app."""
    return app.topic(
        name,
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.partitions,
        internal=True,
        **kwargs,
    )


alerts_topic = internal_topic(settings.topics.alerts)
dead_letter_topic = internal_topic(settings.topics.dead_letter)

#: Set once the output topics exist, so the first alert cannot auto-create its topic
#: with the broker's default partition count.
outputs_declared = asyncio.Event()


@app.task
async def declare_outputs() -> None:
    """Create the output topics (no-op when they exist) and learn their partitions
    and the changelogs' before anything is sent."""
    outputs = (alerts_topic, dead_letter_topic, *_extra_outputs)
    changelogs = [table.changelog_topic for table in app.tables.values()]
    for topic in (*outputs, *changelogs):
        await topic.maybe_declare()  # changelogs: compacted, as faust declares them
    await outbox.learn([topic.get_topic_name() for topic in (*outputs, *changelogs)])
    outputs_declared.set()


_extra_outputs: list[faust.TopicT] = []


def output_topic(name: str) -> faust.TopicT:
    """An output topic of a domain module, declared at start-up with the shared ones."""
    topic = internal_topic(name)
    _extra_outputs.append(topic)
    return topic


@app.task
async def log_only_what_is_shown() -> None:
    """faust's worker leaves the root logger at DEBUG for its console spinner, so each
    ``logger.debug`` on the produce path builds a record only to drop it: 14 % of a
    busy worker's time in a profile. Lower the bar only as far as a handler shows."""
    levels = [h.level for h in logging.root.handlers if type(h).__name__ != "SpinnerHandler"]
    if levels:
        logging.root.setLevel(max(logging.root.level, min(levels)))


if settings.heap_trim_interval_s > 0 and heap.available():

    @app.timer(interval=settings.heap_trim_interval_s)
    async def give_back_free_heap() -> None:
        """Free C heap back to the system (:mod:`fraudapp.heap` says why)."""
        heap.give_back()


def main() -> None:
    """``python -m fraudapp.app``: faust's own command line for this app."""
    app.main()


# Domain modules register their agents, tables and views on import.
from fraudapp import livewatermarks as _livewatermarks  # noqa: E402,F401
from fraudapp import notify as _notify  # noqa: E402,F401
from fraudapp import web as _web  # noqa: E402,F401
from fraudapp.adnet import agents as _adnet_agents  # noqa: E402,F401
from fraudapp.adnet import views as _adnet_views  # noqa: E402,F401
from fraudapp.atm import agents as _atm_agents  # noqa: E402,F401
from fraudapp.atm import views as _atm_views  # noqa: E402,F401
from fraudapp.clicks import agents as _click_agents  # noqa: E402,F401
from fraudapp.clicks import views as _click_views  # noqa: E402,F401
from fraudapp.web import alerts_view as _alerts_view  # noqa: E402,F401
from fraudapp.web import dashboard as _dashboard  # noqa: E402,F401
from fraudapp.web import metrics_view as _metrics_view  # noqa: E402,F401
from fraudapp.web import rules_view as _rules_view  # noqa: E402,F401
from fraudapp.web import watermarks_view as _watermarks_view  # noqa: E402,F401
