"""The faust application: settings applied, shared topics, domain modules loaded.

Start a worker the faust way::

    faust -A fraudapp.app worker -l info

Broker, web port and data directory come from the environment (see
:mod:`fraudapp.core.settings` and docs/configuration.md); the web server binds to 127.0.0.1 unless
``WEB_BIND`` says otherwise, because faust's own default is every interface.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import sys
import uuid

import faust
import mode.loop

from fraudapp.core.settings import Settings, with_faust_flags
from fraudapp.core.timedomains import atm_domain, click_domain
from fraudapp.core.watermarks import Watermarks
from fraudapp.engine import heap
from fraudapp.engine.faustapp import FeedOptions, FraudApp
from fraudapp.engine.httpauth import require_tokens
from fraudapp.engine.httperrors import application_options
from fraudapp.engine.invariants import require_invariants
from fraudapp.engine.outbox import Outbox
from fraudapp.engine.owned import OwnedPartitions
from fraudapp.engine.pins import require_pinned
from fraudapp.engine.statetable import StateTable
from fraudapp.engine.statewrites import StateWrites
from fraudapp.engine.storage import bound_info_logs


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


#: The modules that register agents, tasks, tables and views on the app, in the order
#: faust's autodiscovery imports them (``faust -A fraudapp.app worker`` and
#: ``app.main()`` call :meth:`faust.App.discover`; in-process users such as the tests
#: call :func:`load_modules`). They import this module; this module never imports
#: them, so any of them, or any module they use, can be imported first.
MODULES = (
    "fraudapp.live.livewatermarks",
    "fraudapp.live.cases",
    "fraudapp.live.notify",
    "fraudapp.web",
    "fraudapp.adnet.agents",
    "fraudapp.web.adnet_view",
    "fraudapp.atm.agents",
    "fraudapp.web.atm_view",
    "fraudapp.clicks.agents",
    "fraudapp.web.clicks_view",
    "fraudapp.web.alerts_view",
    "fraudapp.web.cases_view",
    "fraudapp.web.dashboard",
    "fraudapp.web.metrics_view",
    "fraudapp.web.rules_view",
    "fraudapp.live.labels",
    "fraudapp.web.labels_view",
    "fraudapp.web.watermarks_view",
)

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
    autodiscover=list(MODULES),
)


@app.on_worker_init.connect
def _refuse_an_open_api(sender: object = None, **kwargs: object) -> None:
    require_pinned(os.environ)
    require_invariants(app.conf)
    require_tokens(settings)


#: Every record a worker produces for an event, changelogs included, leaves through
#: here in batches (:mod:`fraudapp.engine.outbox` says why and what it keeps).
outbox = Outbox(lambda: app.producer, settings.producer_linger_ms / 1000.0)
#: The state tables' writes while the bulk feed hands records over, written in one
#: go per database, always before the outbox sends (:mod:`fraudapp.engine.statewrites`).
state_writes = StateWrites()
outbox.before_send = state_writes.flush


#: This worker's event time: its source partitions' watermarks and every stage's
#: (:mod:`fraudapp.core.watermarks` says why; :mod:`fraudapp.live.livewatermarks` wires it).
watermarks = Watermarks(
    [click_domain(settings), atm_domain(settings)], settings.partitions, uuid.uuid4().hex[:12]
)

#: The bulk consumer's settings (:mod:`fraudapp.engine.faustapp`): read when faust
#: first builds the consumer, after this module has run.
app.feed = FeedOptions(
    on_caught_up=outbox.send_soon,
    writes=state_writes,
    fetch_max_wait_ms=settings.fetch_max_wait_ms,
    batch_commit_every=settings.commit_every,
    watermarks=watermarks,
)

#: Which topic partitions this worker owns: work keyed to one of them (a click's later
#: stage, an alert's index entry) runs inline instead of through its topic
#: (:mod:`fraudapp.engine.owned` says why).
owned = OwnedPartitions()
app.on_partitions_assigned.connect(owned.on_assigned)
app.on_partitions_revoked.connect(owned.on_revoked)


def state_table(name: str) -> faust.Table:
    """A table of raw bytes keyed like the topics (raw UTF-8), partitioned like them,
    on RocksDB with fraudapp's memory budget (:mod:`fraudapp.engine.storage`), its changelog
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


def output_topic(name: str, **kwargs: object) -> faust.TopicT:
    """An output topic of a domain module, declared at start-up with the shared ones."""
    topic = internal_topic(name, **kwargs)
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
        """Free C heap back to the system (:mod:`fraudapp.engine.heap` says why)."""
        heap.give_back()


def main() -> None:
    """``python -m fraudapp.app``: faust's own command line for this app."""
    app.main()


def load_modules() -> None:
    """Import :data:`MODULES` (their agents, tables and views register on :data:`app`)
    outside faust's command line, which discovers them itself. Importing them one by
    one is enough: faust's scan only looks for decorators the import already ran."""
    for name in MODULES:
        importlib.import_module(name)
