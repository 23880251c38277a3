"""The token table: which endpoint needs which token, and what a refusal says."""

from __future__ import annotations

import pytest

from fraudapp.core.settings import Settings, SettingsError
from fraudapp.engine.httpauth import Scope, decide, require_tokens, scope_of

API, INGEST = "a" * 32, "i" * 32


@pytest.mark.parametrize(
    ("method", "path", "scope"),
    [
        ("GET", "/health", Scope.PUBLIC),
        ("HEAD", "/health", Scope.PUBLIC),
        ("POST", "/health", Scope.API),
        ("GET", "/", Scope.API),
        ("GET", "/dashboard", Scope.API),
        ("GET", "/dashboard/events", Scope.API),
        ("GET", "/static/dashboard.js", Scope.API),
        ("GET", "/metrics", Scope.API),
        ("GET", "/sessions/s-1", Scope.API),
        ("GET", "/accounts/a-1", Scope.API),
        ("GET", "/campaigns/c/top", Scope.API),
        ("GET", "/rules", Scope.API),
        ("GET", "/alerts/a-1", Scope.API),
        ("GET", "/no/such/path", Scope.API),
        ("GET", "/clicks", Scope.API),
        ("POST", "/clicks", Scope.INGEST),
        ("POST", "/simulate/click", Scope.INGEST),
        ("POST", "/simulate/transaction", Scope.INGEST),
        ("POST", "/clicksX", Scope.API),
    ],
)
def test_each_endpoint_needs_its_scope(method: str, path: str, scope: Scope) -> None:
    assert scope_of(method, path) is scope


@pytest.mark.parametrize(
    ("scope", "token", "status", "reason"),
    [
        (Scope.PUBLIC, None, 200, ""),
        (Scope.API, None, 401, "missing_token"),
        (Scope.API, "", 401, "missing_token"),
        (Scope.API, "nope", 401, "invalid_token"),
        (Scope.API, API + "x", 401, "invalid_token"),
        (Scope.API, API, 200, ""),
        (Scope.API, INGEST, 403, "wrong_scope"),
        (Scope.INGEST, INGEST, 200, ""),
        (Scope.INGEST, API, 403, "wrong_scope"),
        (Scope.INGEST, None, 401, "missing_token"),
    ],
)
def test_decisions(scope: Scope, token: str | None, status: int, reason: str) -> None:
    decision = decide(scope, token, api=API, ingest=INGEST)
    assert (decision.status, decision.reason) == (status, reason)


def test_no_configured_token_lets_nothing_through() -> None:
    assert decide(Scope.API, "x" * 20, api=None, ingest=None).status == 401


def test_worker_refuses_to_start_without_both_tokens() -> None:
    with pytest.raises(SystemExit, match="FRAUDAPP_API_TOKEN and FRAUDAPP_INGEST_TOKEN"):
        require_tokens(Settings.from_env({}))
    with pytest.raises(SystemExit, match="FRAUDAPP_INGEST_TOKEN must be set"):
        require_tokens(Settings.from_env({"FRAUDAPP_API_TOKEN": API}))
    with pytest.raises(SystemExit, match="must differ"):
        require_tokens(Settings.from_env({"FRAUDAPP_API_TOKEN": API, "FRAUDAPP_INGEST_TOKEN": API}))
    require_tokens(Settings.from_env({"FRAUDAPP_API_TOKEN": API, "FRAUDAPP_INGEST_TOKEN": INGEST}))


def test_short_tokens_are_refused() -> None:
    with pytest.raises(SettingsError, match="at least 16"):
        Settings.from_env({"FRAUDAPP_API_TOKEN": "short"})


def test_tokens_are_masked_in_descriptions() -> None:
    described = Settings.from_env({"FRAUDAPP_API_TOKEN": API}).describe()
    assert described["api_token"] == "***" and described["ingest_token"] is None


def test_tokens_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every comparison of a presented token goes through hmac.compare_digest (its time
    does not depend on where the strings differ), never through ``==``."""
    import fraudapp.engine.httpauth as httpauth

    calls: list[tuple[bytes, bytes]] = []
    real = httpauth.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(httpauth.hmac, "compare_digest", spy)
    presented = API[:-1] + "b"  # differs only in the last character
    assert decide(Scope.API, presented, api=API, ingest=INGEST).status == 401
    assert (presented.encode(), API.encode()) in calls
    assert (presented.encode(), INGEST.encode()) in calls
    calls.clear()
    assert decide(Scope.INGEST, INGEST, api=API, ingest=INGEST).status == 200
    assert calls, "a matching token was accepted without compare_digest"
