"""The engine: the only code that touches faust, aiokafka, mode or rocksdict below
their public API.

fraudapp is fast because it drives faust below its public surface: records go to
the handlers straight from the consumer's fetches, state writes go into one RocksDB
WriteBatch per database, every record a worker produces leaves through one outbox.
Each use of a library internal lives in one module here, says why, and is checked
by ``tests/unit/test_engine_contract.py`` (the attribute exists with the signature
we call; each faust function we mirror has the source we read, keyed by version) and
by ``tests/unit/test_private_names.py`` (no private name of those libraries is used
outside this package). ``constraints.txt`` pins the four libraries exactly and
:mod:`fraudapp.engine.pins` refuses a worker on other versions.

The interface the rest of fraudapp uses, by module:

* :mod:`~fraudapp.engine.bulkfeed`: the consumer (``BulkConsumer``) that hands
  records to bulk handlers from its fetches; acks and commits (faust's ``ack``
  mirrored, commit spans per domain), the consumer's fetch settings.
* :mod:`~fraudapp.engine.consumerstate`: a partition's read and committed offsets
  (the consumer-lag gauge), whether the group coordinator is known (``/health``).
* :mod:`~fraudapp.engine.faustapp`: the app class whose consumer is the bulk feed's.
* :mod:`~fraudapp.engine.invariants`: the faust settings the above rests on,
  checked when a worker starts.
* :mod:`~fraudapp.engine.outbox`: the producer hook; every output and changelog
  record is batched here and flushed before faust commits.
* :mod:`~fraudapp.engine.statetable` / :mod:`~fraudapp.engine.statewrites`: state
  tables whose writes are batched per table partition's RocksDB database.
* :mod:`~fraudapp.engine.tablescan` / :mod:`~fraudapp.engine.storage`: a table
  partition's database (scans, memory figures, info-log bounds).
* :mod:`~fraudapp.engine.globaltable`: global tables fed from a topic.
* :mod:`~fraudapp.engine.origin`: the current event's origin and headers.
* :mod:`~fraudapp.engine.owned`: which partitions this worker owns, kept from the
  consumer's assignment.
* :mod:`~fraudapp.engine.bulkrestore`: state tables' changelog records applied in
  bulk while recovery restores their partitions (active and standby).
* :mod:`~fraudapp.engine.changelogpause`, :mod:`~fraudapp.engine.fetchbuffer`:
  changelog partitions paused in aiokafka too, and what its fetcher holds unread.
* :mod:`~fraudapp.engine.kafkaio`, :mod:`~fraudapp.engine.httpauth`,
  :mod:`~fraudapp.engine.httperrors`, :mod:`~fraudapp.engine.heap`,
  :mod:`~fraudapp.engine.pins`: public Kafka and HTTP plumbing below the app, and the
  version pins.
"""
