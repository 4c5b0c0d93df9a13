"""One log line and one metrics sample per request, the X-Request-ID header, and body draining.

The app's ``handle_request`` is wrapped rather than adding before- and
after-request hooks: one wrapper handles every response, including the error
handlers' and a request cancelled because its client went away, and costs
one function call.

With quart-trio 0.12 on Hypercorn 0.18's trio worker, a keep-alive
connection sometimes hangs on its next request when a response was sent
before the request body had arrived in full (a 405, 415 or 404 for a request
with a body, an automatic OPTIONS). A raw ASGI app on the same Hypercorn
does not hang. The wrapper therefore waits for the rest of such a body
before returning the response, and closes the connection when it cannot.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Awaitable, Callable

import trio
from quart import Request
from werkzeug.exceptions import HTTPException
from quart_trio import QuartTrio

from .logs import REQUEST_ID
from .metrics import UNMATCHED_ROUTE, Metrics

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-ID"

# An incoming id is used as given only if it is short and made of characters
# that need no escaping in a log line or a header. Otherwise a new one is made.
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._~:;=+/@-]{1,128}$")

# Status logged for a request whose client disconnected before the response (as nginx logs it).
CLIENT_CLOSED_REQUEST = 499

# How long a response waits for the unread rest of its request's body, in seconds.
_BODY_DRAIN_TIMEOUT = 1.0


def request_id_for(request: Request) -> str:
    """Return the request's valid X-Request-ID, or a new random id."""
    # getlist, because werkzeug's get builds and catches an HTTP exception
    # for a missing header, which showed in the profile of every request.
    values = request.headers.getlist(REQUEST_ID_HEADER)
    if values and _VALID_REQUEST_ID.match(values[0]):
        return values[0]
    return uuid.uuid4().hex


def instrument_requests(app: QuartTrio, metrics: Metrics) -> None:
    """Wrap ``app.handle_request`` to set the request id, log the request and count it."""
    handle_request: Callable[[Request], Awaitable] = app.handle_request

    async def handle_logged_request(request: Request):
        request_id = request_id_for(request)
        REQUEST_ID.set(request_id)
        started = trio.current_time()
        status = 500
        try:
            response = await handle_request(request)
            status = response.status_code
            response.headers[REQUEST_ID_HEADER] = request_id
            if _has_body(request):
                await _finish_body(request, response)
            return response
        except trio.Cancelled:
            status = CLIENT_CLOSED_REQUEST
            raise
        finally:
            seconds = trio.current_time() - started
            route = request.url_rule.rule if request.url_rule is not None else UNMATCHED_ROUTE
            metrics.observe_request(request.method, route, status, seconds)
            if log.isEnabledFor(logging.INFO):
                log.info(
                    "%s %s %d %.1f ms",
                    request.method,
                    request.path,
                    status,
                    seconds * 1000,
                    extra={
                        "method": request.method,
                        "path": request.path,
                        "status": status,
                        "duration_ms": round(seconds * 1000, 3),
                    },
                )

    app.handle_request = handle_logged_request  # type: ignore[method-assign]


def _has_body(request: Request) -> bool:
    length = request.headers.get("Content-Length")
    return (length is not None and length != "0") or "Transfer-Encoding" in request.headers


async def _finish_body(request: Request, response) -> None:
    """Wait until the request body has arrived, or mark the response to close the connection."""
    if response.status_code == 413:
        response.headers["Connection"] = "close"
        return
    with trio.move_on_after(_BODY_DRAIN_TIMEOUT) as scope:
        try:
            await request.body
        except HTTPException:
            # Too large, or it timed out: the rest stays unread.
            response.headers["Connection"] = "close"
    if scope.cancelled_caught:
        response.headers["Connection"] = "close"
