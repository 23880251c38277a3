"""The faust settings the engine's reach-ins rest on, checked when a worker starts.

Each is faust's default; a worker started with another (an environment variable, a
changed ``faust.App`` argument) would run without error and lose or repeat records:

* ``stream_wait_empty``: before a rebalance faust waits for the events in flight,
  and the bulk feed registers each batch as in flight (:mod:`fraudapp.engine.bulkfeed`),
  so that no partition is handed over in the middle of one.
* at-least-once processing: the outbox (:mod:`fraudapp.engine.outbox`) sends outputs
  and changelog records before faust commits the offsets they came from; exactly-once
  would make faust produce through transactions the outbox does not take part in.
* a producer on the event loop (not ``producer_threaded``): the outbox hooks the
  producer's flush and sends through it from the loop.
* ``consumer_auto_offset_reset`` earliest: recovery seeks to one below a changelog's
  first offset, and to persisted offsets a truncated changelog may no longer hold;
  with ``latest`` the reset jumps to the end, nothing is read and recovery waits for
  ever (faust-streaming #176, #651); a new input partition would also skip its first
  records. faust's settings take ``CONSUMER_AUTO_OFFSET_RESET`` from the
  environment over the app's own argument, hence a check at start.
"""

from __future__ import annotations

from typing import Any

from faust.types.enums import ProcessingGuarantee


def broken(conf: Any) -> list[str]:
    """One phrase per invariant ``conf`` (faust's app settings) breaks."""
    out = []
    if not conf.stream_wait_empty:
        out.append("stream_wait_empty is off (a rebalance would not wait for a batch in flight)")
    if conf.processing_guarantee != ProcessingGuarantee.AT_LEAST_ONCE:
        out.append(
            f"processing_guarantee is {conf.processing_guarantee.value}"
            " (the outbox sends outside faust's transactions: at_least_once only)"
        )
    if conf.producer_threaded:
        out.append("producer_threaded is on (the outbox sends from the event loop)")
    if conf.consumer_auto_offset_reset != "earliest":
        out.append(
            f"consumer_auto_offset_reset is {conf.consumer_auto_offset_reset} (recovery of a"
            " truncated changelog would never end, faust-streaming #176/#651: earliest only)"
        )
    return out


def require_invariants(conf: Any) -> None:
    """Refuse to start a worker whose settings break an invariant, in one line."""
    wrong = broken(conf)
    if wrong:
        raise SystemExit(f"fraudapp: {'; '.join(wrong)}")
