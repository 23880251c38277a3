"""What faust's consumer has fetched and nobody has read yet.

Why: faust "pauses" a partition only by not asking aiokafka's ``getmany`` for it;
aiokafka's background fetcher goes on fetching it, and while a partition's fetched
records sit unread it sends no fetch to that broker for ``prefetch_backoff``
(100 ms). A worker's own changelog partitions held up its input that way after each
start until :mod:`fraudapp.engine.changelogpause` paused them in aiokafka too; this gauge
shows any partition that stays in the buffer, so such a hold-up can be seen.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any


def unread_by_topic(consumer: Any) -> Iterator[tuple[list[str], float]]:
    """Per topic, the partitions whose fetched records wait in aiokafka's buffer
    unread (``fraudapp_fetched_unread_partitions``). Source partitions pass through
    it between fetches; a partition that stays there is one nobody reads, and it
    held up the fetches once. Read from aiokafka's fetcher (no public reader), a
    copy of its keys taken under the GIL."""
    aio = getattr(getattr(consumer, "_thread", None), "_consumer", None)
    fetcher = getattr(aio, "_fetcher", None)
    if fetcher is None:
        return
    for topic, count in sorted(Counter(tp.topic for tp in list(fetcher._records)).items()):
        yield [topic], float(count)
