"""An unexpected error in a handler becomes a dead letter, not a dead agent."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from fraudapp.live import send


def test_unexpected_error_is_dead_lettered_and_cancellation_is_not(monkeypatch) -> None:
    sent = []

    async def capture(event, error):
        sent.append((event, error))

    monkeypatch.setattr(send, "send_dead_letter", capture)
    event = SimpleNamespace(message=SimpleNamespace(topic="clicks", partition=1, offset=9))

    async def broken(_event):
        raise KeyError("boom")

    asyncio.run(send.guarded(event, broken))
    ((dead_event, error),) = sent
    assert dead_event is event
    assert error.reason == "internal_error" and "KeyError" in error.message

    async def cancelled(_event):
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(send.guarded(event, cancelled))
    assert len(sent) == 1
