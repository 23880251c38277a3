"""The engine's contract with faust, aiokafka, mode and rocksdict, checked without a
broker: every internal it uses exists with the signature it calls, and every faust
function it mirrors or overrides still has the source it was written against.

An upgrade of one of those libraries fails here until someone has read the new code:
then update the fingerprints (and ``constraints.txt`` and
:data:`fraudapp.engine.pins.PINNED`). Where each is used, and why, is written in the
engine module named beside it (:mod:`fraudapp.engine` lists them).
"""

from __future__ import annotations

import contextvars
import hashlib
import importlib
import inspect
from importlib import metadata

import faust
import pytest

from fraudapp.engine.invariants import broken

#: Methods used or overridden -> parameter names (``self`` first), and the engine
#: module that relies on them.
METHODS: dict[str, tuple[list[str], str]] = {
    "faust.transport.consumer.Consumer.ack": (["self", "message"], "bulkfeed"),
    "faust.transport.consumer.Consumer._drain_messages": (["self", "fetcher"], "bulkfeed"),
    "faust.transport.consumer.Consumer._wait_next_records": (["self", "timeout"], "bulkfeed"),
    "faust.transport.consumer.Consumer._add_gap": (
        ["self", "tp", "offset_from", "offset_to"],
        "bulkfeed",
    ),
    "faust.transport.consumer.Consumer._to_message": (["self", "tp", "record"], "bulkfeed"),
    "faust.transport.consumer.Consumer.perform_seek": (["self"], "bulkfeed"),
    "faust.transport.consumer.Consumer.highwater": (["self", "tp"], "bulkfeed"),
    "faust.transport.consumer.Consumer.pause_partitions": (["self", "tps"], "changelogpause"),
    "faust.transport.consumer.Consumer.resume_partitions": (["self", "tps"], "changelogpause"),
    "faust.transport.drivers.aiokafka.Consumer._new_consumer_thread": (["self"], "bulkfeed"),
    "faust.transport.drivers.aiokafka.AIOKafkaConsumerThread._commit": (
        ["self", "offsets"],
        "bulkfeed",
    ),
    "faust.transport.drivers.aiokafka.AIOKafkaConsumerThread.seek_to_committed": (
        ["self"],
        "bulkfeed",
    ),
    "faust.transport.drivers.aiokafka.AIOKafkaConsumerThread._create_worker_consumer": (
        ["self", "transport"],
        "bulkfeed",
    ),
    "faust.transport.drivers.aiokafka.AIOKafkaConsumerThread._ensure_consumer": (
        ["self"],
        "bulkfeed",
    ),
    "faust.transport.drivers.aiokafka.AIOKafkaConsumerThread.call_thread": (
        ["self", "fun", "args", "kwargs"],
        "bulkfeed",
    ),
    "faust.app.base.App._new_consumer": (["self"], "faustapp"),
    "faust.app.base.App._on_partitions_revoked": (["self", "revoked"], "faustapp"),
    "faust.app.base.App._on_partitions_assigned": (
        ["self", "assigned", "generation_id"],
        "faustapp",
    ),
    "faust.tables.base.Collection._verify_source_topic_partitions": (
        ["self", "source_topic"],
        "statetable",
    ),
    "faust.stores.rocksdb.Store._db_for_partition": (["self", "partition"], "statetable"),
    "faust.stores.rocksdb.Store._visible_items": (["self", "db"], "tablescan"),
    "faust.transport.drivers.aiokafka.Producer._ensure_producer": (["self"], "outbox"),
    "faust.transport.drivers.aiokafka.Producer.flush": (["self"], "outbox"),
    "aiokafka.AIOKafkaProducer.create_batch": (["self"], "outbox"),
    "aiokafka.AIOKafkaProducer.send_batch": (["self", "batch", "topic", "partition"], "outbox"),
    "aiokafka.AIOKafkaProducer.partitions_for": (["self", "topic"], "outbox"),
    "aiokafka.AIOKafkaConsumer.seek_to_committed": (["self", "partitions"], "bulkfeed"),
    "aiokafka.AIOKafkaConsumer.pause": (["self", "partitions"], "changelogpause"),
    "aiokafka.AIOKafkaConsumer.resume": (["self", "partitions"], "changelogpause"),
}

#: Attributes read or written on instances: (class, attribute, engine module). Found
#: in the class's (or a base's) annotations or as ``self.<attribute>`` in its source.
ATTRIBUTES: list[tuple[str, str, str]] = [
    ("faust.transport.consumer.Consumer", "_read_offset", "bulkfeed, consumerstate"),
    ("faust.transport.consumer.Consumer", "_committed_offset", "bulkfeed, consumerstate"),
    ("faust.transport.consumer.Consumer", "_acked", "bulkfeed"),
    ("faust.transport.consumer.Consumer", "_acked_index", "bulkfeed"),
    ("faust.transport.consumer.Consumer", "_n_acked", "bulkfeed"),
    ("faust.transport.consumer.Consumer", "_unacked_messages", "bulkfeed"),
    ("faust.transport.consumer.Consumer", "_waiting_for_ack", "bulkfeed"),
    ("faust.transport.consumer.Consumer", "_buffered_partitions", "bulkfeed"),
    ("faust.transport.consumer.Consumer", "_commit_every", "bulkfeed"),
    ("faust.transport.consumer.Consumer", "suspend_flow", "bulkfeed"),
    ("faust.transport.consumer.ThreadDelegateConsumer", "_thread", "changelogpause"),
    ("faust.transport.drivers.aiokafka.AIOKafkaConsumerThread", "_consumer", "consumerstate"),
    ("faust.transport.drivers.aiokafka.AIOKafkaConsumerThread", "tp_last_committed_at", "bulkfeed"),
    ("faust.stores.rocksdb.Store", "_dbs", "storage, globaltable"),
    ("mode.services.Service", "_stopped", "bulkfeed"),
    ("faust.tables.recovery.Recovery", "active_tps", "bulkrestore"),
    ("faust.tables.recovery.Recovery", "standby_tps", "bulkrestore"),
    ("faust.tables.recovery.Recovery", "active_offsets", "bulkrestore"),
    ("faust.tables.recovery.Recovery", "standby_offsets", "bulkrestore"),
    ("faust.tables.recovery.Recovery", "tp_to_table", "bulkrestore"),
    ("faust.stores.rocksdb.Store", "offset_key", "bulkrestore"),
    ("faust.tables.manager.TableManager", "recovery", "bulkfeed"),
    ("aiokafka.AIOKafkaConsumer", "_fetch_max_wait_ms", "bulkfeed"),
    ("aiokafka.AIOKafkaConsumer", "_fetcher", "fetchbuffer"),
    ("aiokafka.AIOKafkaConsumer", "_coordinator", "consumerstate"),
    ("aiokafka.consumer.fetcher.Fetcher", "_records", "fetchbuffer"),
    ("aiokafka.consumer.group_coordinator.GroupCoordinator", "coordinator_id", "consumerstate"),
]

#: faust's functions the engine mirrors or overrides, by the source they had when it
#: was read: sha256 of ``inspect.getsource``, first 16 hex digits, per version.
FINGERPRINTS: dict[str, dict[str, str]] = {
    "0.15.3": {
        # bulkfeed._ack_offsets is this, for many offsets at once
        "faust.transport.consumer.Consumer.ack": "5fcf41cf45153475",
        # BulkConsumer._drain_messages replaces this loop for bulk topics
        "faust.transport.consumer.Consumer._drain_messages": "44a2500309e83c63",
        # the drain loop drops records fetched after the flow stopped, as this does
        "faust.transport.consumer.Consumer.getmany": "4b168d84882a70d6",
        "faust.transport.consumer.Consumer._wait_next_records": "6218e1969a636b3f",
        "faust.transport.consumer.Consumer._add_gap": "4df2573ded7c1c2c",
        # _FetchWaitThread._commit is this with commit metadata
        "faust.transport.drivers.aiokafka.AIOKafkaConsumerThread._commit": "932852ce7a23f658",
        # _FetchWaitThread.seek_to_committed replaces this
        "faust.transport.drivers.aiokafka.AIOKafkaConsumerThread.seek_to_committed": (
            "775ab0adc4b052ab"
        ),
        # _FetchWaitThread sets the fetch wait on what this builds
        "faust.transport.drivers.aiokafka.AIOKafkaConsumerThread._create_worker_consumer": (
            "c2701bfc3e6f6cad"
        ),
        "faust.transport.drivers.aiokafka.Consumer._new_consumer_thread": "0870ec53dea75083",
        # faustapp.FraudApp._new_consumer builds BulkConsumer with this one's arguments
        "faust.app.base.App._new_consumer": "bff6ccd646b71ea9",
        "faust.tables.base.Collection._verify_source_topic_partitions": "6814da56b0d83f93",
        "faust.stores.rocksdb.Store._db_for_partition": "cb7e67d5f9efc4bc",
        "faust.stores.rocksdb.Store._visible_items": "545dc16a2b25e4a4",
        # bulkrestore applies what this loop would (offset past the one seen, active or
        # standby), and relies on its check for the end of recovery after each record
        "faust.tables.recovery.Recovery._slurp_changelogs": "7825c7e50f766d5a",
        # the outbox's hook runs before this
        "faust.transport.drivers.aiokafka.Producer.flush": "36d0cb3615f65b01",
    },
}


def resolve(dotted: str) -> object:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found: object = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for part in parts[cut:]:
            found = getattr(found, part)
        return found
    raise ImportError(dotted)


def fingerprint(function: object) -> str:
    # A mode service task (``@Service.task``) keeps its function in ``fun``.
    source = inspect.getsource(getattr(function, "fun", function))  # type: ignore[arg-type]
    return hashlib.sha256(source.encode()).hexdigest()[:16]


@pytest.mark.parametrize("dotted", sorted(METHODS))
def test_each_method_the_engine_calls_exists_with_its_parameters(dotted: str) -> None:
    expected, module = METHODS[dotted]
    function = resolve(dotted)
    names = list(inspect.signature(function).parameters)
    assert names == expected, f"{dotted} (used by fraudapp.engine.{module}) takes {names}"


def _declares(cls: type, attribute: str) -> bool:
    for klass in cls.__mro__:
        if attribute in getattr(klass, "__annotations__", {}) or attribute in vars(klass):
            return True
        try:
            source = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        if f"self.{attribute} =" in source or f"self.{attribute}: " in source:
            return True
    return False


@pytest.mark.parametrize(("owner", "attribute", "module"), ATTRIBUTES)
def test_each_attribute_the_engine_reads_is_kept_by_its_class(
    owner: str, attribute: str, module: str
) -> None:
    cls = resolve(owner)
    assert isinstance(cls, type)
    assert _declares(cls, attribute), f"{owner}.{attribute} (fraudapp.engine.{module}) is gone"


def test_faust_functions_the_engine_mirrors_have_the_source_it_was_written_against() -> None:
    version = metadata.version("faust-streaming")
    assert version in FINGERPRINTS, (
        f"faust-streaming {version}: no fingerprints; read the functions in FINGERPRINTS"
        " against the engine's copies and overrides, then add this version"
    )
    changed = [
        dotted
        for dotted, expected in FINGERPRINTS[version].items()
        if fingerprint(resolve(dotted)) != expected
    ]
    assert changed == [], f"changed in faust-streaming {version}; read them: {changed}"


def test_the_module_level_internals_are_what_the_engine_takes_them_for() -> None:
    from faust.streams import _current_event
    from faust.types.tuples import ack_lock
    from mode.utils.futures import notify
    from rocksdict import Rdict, WriteBatch

    assert isinstance(_current_event, contextvars.ContextVar)  # bulkfeed, owned
    # bulkfeed: reentrant, as faust's ack takes it inside Message.ack
    with ack_lock, ack_lock:
        pass
    assert callable(notify)
    batch = WriteBatch(raw_mode=True)  # statewrites
    batch.put(b"k", b"v")
    batch.delete(b"k")
    assert callable(Rdict.write)


def test_fingerprints_see_a_change() -> None:
    """A fingerprint is of the source: one changed character changes it."""

    def before() -> int:
        return 1

    def after() -> int:
        return 2

    assert fingerprint(before) != fingerprint(after)


def test_faust_defaults_keep_the_engine_invariants_and_others_are_refused() -> None:
    app = faust.App("contract-test")
    assert broken(app.conf) == []
    app = faust.App(
        "contract-test-2",
        stream_wait_empty=False,
        processing_guarantee="exactly_once",
        producer_threaded=True,
        consumer_auto_offset_reset="latest",
    )
    wrong = broken(app.conf)
    assert len(wrong) == 4
    assert any("stream_wait_empty" in w for w in wrong)
    assert any("exactly_once" in w for w in wrong)
    assert any("producer_threaded" in w for w in wrong)
    assert any("consumer_auto_offset_reset is latest" in w for w in wrong)


def test_the_environment_cannot_slip_an_offset_reset_past_the_app(monkeypatch) -> None:
    """faust takes ``CONSUMER_AUTO_OFFSET_RESET`` from the environment over the app's
    explicit argument (what fraudapp's app.py passes): the start check sees it."""
    monkeypatch.setenv("CONSUMER_AUTO_OFFSET_RESET", "latest")
    app = faust.App("contract-test-3", consumer_auto_offset_reset="earliest")
    assert app.conf.consumer_auto_offset_reset == "latest"
    assert any("consumer_auto_offset_reset" in w for w in broken(app.conf))
