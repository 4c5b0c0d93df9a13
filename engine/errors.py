"""Errors the engine reports when it rejects a command or cannot complete it.

Each error carries a stable ``code`` that the API returns unchanged. Rule
violations (``SeatRuleViolation``) are the client's to fix; ``ServiceUnavailable``
errors mean "try again later" and map to 503 with Retry-After.
"""

from __future__ import annotations


class EngineError(Exception):
    """Base class of every error the engine reports to callers."""

    code = "engine_error"


class SeatRuleViolation(EngineError):
    """A seat rule forbids the command; nothing was changed."""

    code = "rule_violation"


class TicketNotFound(SeatRuleViolation):
    """No ticket has this id."""

    code = "ticket_not_found"


class TicketUnavailable(SeatRuleViolation):
    """The ticket is booked by someone else, sold, or canceled."""

    code = "ticket_unavailable"


class TicketNotBooked(SeatRuleViolation):
    """The ticket holds no reservation to cancel."""

    code = "ticket_not_booked"


class NotReservationOwner(SeatRuleViolation):
    """The reservation belongs to another passenger."""

    code = "not_reservation_owner"


class SalesClosed(SeatRuleViolation):
    """The airline closed sales for this flight."""

    code = "sales_closed"


class FlightCanceled(SeatRuleViolation):
    """The airline canceled this flight."""

    code = "flight_canceled"


class FlightNotFound(EngineError):
    """No flight has this id."""

    code = "flight_not_found"


class ServiceUnavailable(EngineError):
    """The command could not be completed now; retrying later may succeed."""

    code = "service_unavailable"
    retry_after = 1


class Overloaded(ServiceUnavailable):
    """The flight's mailbox is full."""

    code = "overloaded"


class DeadlineExceeded(ServiceUnavailable):
    """No reply came within the request deadline; the command was not applied."""

    code = "deadline_exceeded"


class CommitFailed(ServiceUnavailable):
    """The batch's transaction failed; none of its changes were applied."""

    code = "database_unavailable"


class CommitOutcomeUnknown(ServiceUnavailable):
    """The database failed during the batch's transaction and could not be reached to check it.

    The change may have been committed. A retry with the same
    Idempotency-Key returns the stored response if it was.
    """

    code = "commit_outcome_unknown"


class ActorCrashed(ServiceUnavailable):
    """The flight's actor failed while the command was pending."""

    code = "actor_restarting"


class OwnershipLost(ServiceUnavailable):
    """Another process took over the flight's lease; the command was not applied."""

    code = "flight_moved"


class OwnerUnavailable(ServiceUnavailable):
    """The process that owns the flight does not respond and its lease has not lapsed yet.

    The command was not applied. ``retry_after`` is the number of seconds until the lease lapses.
    """

    code = "owner_unavailable"

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ForwardFailed(ServiceUnavailable):
    """The command reached the flight's owner, but no reply came back; it may have been applied."""

    code = "forward_failed"
