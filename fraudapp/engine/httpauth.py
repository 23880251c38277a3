"""Bearer tokens for the HTTP API: who may read state, who may write events.

State views expose customer records, so every endpoint but the health check needs
a token. Two scopes, two tokens, because the systems that push events (ingest) are
not the people who read accounts (API): a leaked ingest token must not open the
views. A browser cannot put a header on a page load, an ``<img>`` or an
``EventSource``, so ``/dashboard?access_token=…`` trades the API token once for an
HttpOnly, SameSite=Strict cookie that stands for it on same-origin reads.

The decision is a pure function (:func:`decide`) so its table is tested without a
server; the middleware only gathers the credentials and renders the answer.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum

from aiohttp import web

from fraudapp.core.settings import Settings

COOKIE = "fraudapp_token"
#: Pages a person opens in a browser: their URL may carry ``access_token`` once.
PAGES = frozenset({"/", "/dashboard"})
#: Paths anyone may GET: load balancers and orchestrators probe them without secrets.
PUBLIC = frozenset({"/health"})
#: (method, path) pairs that write events: they take the ingest token (a path
#: ending in "/" stands for everything under it).
INGEST = (("POST", "/clicks"), ("POST", "/simulate/"))


class Scope(Enum):
    PUBLIC = "public"
    API = "api"
    INGEST = "ingest"


def scope_of(method: str, path: str) -> Scope:
    """Which token a request needs. Unknown paths need the API token too, so a
    probe without one learns nothing, not even which paths exist."""
    if path in PUBLIC and method in ("GET", "HEAD"):
        return Scope.PUBLIC
    for ingest_method, prefix in INGEST:
        under = prefix.endswith("/") and path.startswith(prefix)
        if method == ingest_method and (path == prefix or under):
            return Scope.INGEST
    return Scope.API


@dataclass(frozen=True, slots=True)
class Decision:
    status: int  # 200 = let through
    reason: str = ""
    message: str = ""


def _same(given: str, expected: str | None) -> bool:
    # compare_digest takes time independent of where the strings differ.
    return expected is not None and hmac.compare_digest(given.encode(), expected.encode())


def decide(scope: Scope, presented: str | None, *, api: str | None, ingest: str | None) -> Decision:
    """Let through, 401 (no or unknown token) or 403 (a token of the other scope)."""
    if scope is Scope.PUBLIC:
        return Decision(200)
    if not presented:
        return Decision(401, "missing_token", f"this endpoint needs the {scope.value} token")
    # Both comparisons always run, so timing tells nothing about which token matched.
    is_api, is_ingest = _same(presented, api), _same(presented, ingest)
    if (scope is Scope.API and is_api) or (scope is Scope.INGEST and is_ingest):
        return Decision(200)
    if is_api or is_ingest:
        return Decision(403, "wrong_scope", f"this endpoint needs the {scope.value} token")
    return Decision(401, "invalid_token", "the token is not valid")


def presented_token(request: web.Request) -> str | None:
    """The bearer header, else the dashboard cookie (reads only), else
    ``access_token`` in the query of a page's entry URL (``/``, ``/dashboard``)."""
    header = request.headers.get("Authorization", "")
    if header:
        kind, _, value = header.partition(" ")
        return value.strip() if kind.lower() == "bearer" else None
    if request.method in ("GET", "HEAD"):
        cookie = request.cookies.get(COOKIE)
        if cookie:
            return cookie
        if request.path in PAGES:
            return request.query.get("access_token")
    return None


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def require_tokens(settings: Settings) -> None:
    """Refuse to start a worker without both tokens: an open state API is a leak."""
    missing = [
        name
        for name, value in (
            ("FRAUDAPP_API_TOKEN", settings.api_token),
            ("FRAUDAPP_INGEST_TOKEN", settings.ingest_token),
        )
        if not value
    ]
    if missing:
        raise SystemExit(
            f"fraudapp: {' and '.join(missing)} must be set (bearer tokens for the HTTP API;"
            " e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)."
            " `fraudapp demo` makes its own."
        )
    if settings.api_token == settings.ingest_token:
        raise SystemExit("fraudapp: FRAUDAPP_API_TOKEN and FRAUDAPP_INGEST_TOKEN must differ")


def middleware(settings: Settings) -> Callable[..., Awaitable[web.StreamResponse]]:
    """aiohttp middleware enforcing :func:`decide` on every request."""

    @web.middleware
    async def bearer_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        decision = decide(
            scope_of(request.method, request.path),
            presented_token(request),
            api=settings.api_token,
            ingest=settings.ingest_token,
        )
        if decision.status == 200:
            return await handler(request)
        return web.json_response(
            {"error": decision.message, "reason": decision.reason},
            status=decision.status,
            headers={"WWW-Authenticate": 'Bearer realm="fraudapp"'},
        )

    return bearer_auth
