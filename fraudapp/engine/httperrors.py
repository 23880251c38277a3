"""JSON for every HTTP error, including the ones aiohttp raises before a view runs.

Clients of an API want a machine-readable reason, and a stack trace in a response
tells an attacker more than a user; so unknown paths, wrong methods, oversized
bodies and unexpected exceptions all answer ``{"error": ..., "reason": ...}``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from fraudapp.core.settings import Settings
from fraudapp.engine import httpauth

log = logging.getLogger(__name__)

#: Request bodies larger than this are refused with 413 before they are read whole.
MAX_REQUEST_BYTES = 1 << 20

_REASONS = {404: "not_found", 405: "method_not_allowed", 413: "oversized"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return web.json_response(
            {"error": exc.reason, "reason": _REASONS.get(exc.status, "http_error")},
            status=exc.status,
        )
    except Exception:
        log.exception("unexpected error answering %s %s", request.method, request.path)
        return web.json_response(
            {"error": "internal error; see the worker's log", "reason": "internal"}, status=500
        )


def application_options(settings: Settings) -> dict[str, object]:
    """faust's ``web_application_options``: the aiohttp Application's settings.
    JSON errors outermost, so a refusal by the token check is JSON as well."""
    return {
        "client_max_size": MAX_REQUEST_BYTES,
        "middlewares": [json_errors, httpauth.middleware(settings)],
    }
