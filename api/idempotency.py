"""The Idempotency-Key header of POST requests: replay, reject reuse, keep duplicates out.

The first response to a key is stored by the flight actor in the same
transaction as the change it reports (see ``engine.idempotency``). A later
request with the same key and the same method, path and body gets that
response again, with ``Idempotent-Replayed: true``. The same key with another
request gets 422 ``idempotency_key_reused``. A duplicate that arrives while
the first is still running gets 409 ``idempotency_key_in_progress``.

Stored: every response the flight actor decided, which is a 2xx or a 400
seat-rule rejection. Not stored, so a retry runs again: requests rejected
before reaching the actor (invalid body, unknown ticket or flight, wrong
secret, 413, 415) and every 5xx. None of those changed anything.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Awaitable, Callable

import trio
from quart import Response, request

from engine.errors import DeadlineExceeded, ServiceUnavailable
from engine.idempotency import IdempotentRequest
from persistence.database import Database
from persistence.errors import DatabaseError
from persistence.idempotency_store import find_response

from .errors import ApiError
from .outcomes import Render
from .rendering import bytes_response

log = logging.getLogger(__name__)

IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255
# Length of ``request_hash``'s SHA-256 digest, which the stored hash's column requires.
REQUEST_HASH_BYTES = 32

# Visible ASCII, no spaces: UUIDs, ULIDs and random tokens all fit.
_KEY = re.compile(r"[\x21-\x7e]{1,%d}" % MAX_KEY_LENGTH)


def is_valid_key(key: str) -> bool:
    """Return whether ``key`` is 1 to MAX_KEY_LENGTH visible ASCII characters, as the header must be."""
    return _KEY.fullmatch(key) is not None


def request_key() -> str | None:
    """Return the request's Idempotency-Key, or None; raise ApiError (400) for a malformed one."""
    values = request.headers.getlist(IDEMPOTENCY_HEADER)
    if not values:
        return None
    if len(values) > 1:
        raise ApiError(400, "invalid_request", f"send one {IDEMPOTENCY_HEADER} header, got {len(values)}")
    key = values[0]
    if not is_valid_key(key):
        raise ApiError(
            400,
            "invalid_request",
            f"{IDEMPOTENCY_HEADER} header must be 1 to {MAX_KEY_LENGTH} visible ASCII characters "
            f"without spaces; got {len(key)} characters",
        )
    return key


def request_hash(method: str, path: str, body: bytes) -> bytes:
    """Return the SHA-256 of method, path and body, which distinguishes two requests under one key."""
    digest = hashlib.sha256()
    digest.update(f"{method} {path}\n".encode())
    digest.update(body)
    return digest.digest()


class IdempotencyKeys:
    """Runs each keyed POST request at most once per key while its stored response lives.

    NOTE: the in-progress check covers one process. Two processes that get
    the same new key at once both run the command. The second batch to
    commit then finds the key taken and fails as a whole, so every caller in
    that batch gets 503.
    """

    def __init__(self, database: Database) -> None:
        self._database = database
        self._running: set[str] = set()

    async def run(
        self,
        body: bytes,
        render: Render,
        execute: Callable[[IdempotentRequest | None], Awaitable[Response]],
        deadline: float,
    ) -> Response:
        """Run ``execute`` once for the request's key, or return the stored response."""
        key = request_key()
        if key is None:
            return await execute(None)
        if key in self._running:
            raise ApiError(
                409,
                "idempotency_key_in_progress",
                f"a request with this {IDEMPOTENCY_HEADER} is still being processed; retry after it completes",
                {"Retry-After": "1"},
            )

        fingerprint = request_hash(request.method, request.path, body)
        self._running.add(key)
        try:
            stored = await self._find(key, deadline)
            if stored is not None:
                if stored.request_hash != fingerprint:
                    raise ApiError(
                        422,
                        "idempotency_key_reused",
                        f"this {IDEMPOTENCY_HEADER} was used for a different request; "
                        "send a new key for a new request",
                    )
                log.info("replayed the stored %d response for Idempotency-Key %r on %s", stored.status, key, request.path)
                response = bytes_response(stored.status, stored.body)
                response.headers[REPLAYED_HEADER] = "true"
                return response
            return await execute(IdempotentRequest(key, fingerprint, render))
        finally:
            self._running.discard(key)

    async def _find(self, key: str, deadline: float):
        with trio.move_on_at(deadline) as scope:
            try:
                return await find_response(self._database, key)
            except DatabaseError as error:
                log.warning("lookup of Idempotency-Key %r on %s failed: %s", key, request.path, error)
                raise ServiceUnavailable("the idempotency key could not be checked; retry later") from error
        assert scope.cancelled_caught
        raise DeadlineExceeded("the idempotency key could not be checked in time; retry later")
