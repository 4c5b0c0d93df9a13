"""Responses kept under a client's Idempotency-Key.

The API hands the actor an ``IdempotentRequest`` with each command that
carries the header. After deciding the batch, the actor renders each such
command's outcome with the request's pure ``render`` function and writes the
result in the batch's own transaction, so a stored response exists exactly
when its change is committed. The engine knows nothing about HTTP: ``render``
is the API's function and returns a status code and body bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .commands import Reply
    from .errors import SeatRuleViolation


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """A rendered response to write under ``key``; ``request_hash`` identifies the request body."""

    key: str
    request_hash: bytes
    status: int
    body: bytes


@dataclass(frozen=True, slots=True)
class IdempotentRequest:
    """The Idempotency-Key of a command, the hash of its request, and how to render its outcome."""

    key: str
    request_hash: bytes
    render: Callable[[Reply | SeatRuleViolation], tuple[int, bytes]]

    def stored_response(self, outcome: Reply | SeatRuleViolation) -> StoredResponse | None:
        """Render ``outcome``; return None for a server error, which is never stored."""
        status, body = self.render(outcome)
        if status >= 500:
            return None
        return StoredResponse(self.key, self.request_hash, status, body)
