"""The notifier task: claim due outbox rows, email each passenger, record the result."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import trio

from persistence.database import Database
from persistence.errors import DatabaseError, DatabaseUnavailable

from .backoff import retry_delay
from .messages import render_message, validate_locale
from .metrics import EMAILS_FAILED, EMAILS_SENT
from .notice import Notice
from .outbox import Claim, OutboxStore
from .senders import Sender, SendError
from .wakeup import OutboxListener

log = logging.getLogger(__name__)

# Maximum wait between retries of a failing claim or result write, in
# seconds. It is also the longest the notifier may stay idle after the
# database recovers.
MAX_DATABASE_RETRY_DELAY = 30.0


class Notifier:
    """The outbox delivery task: it claims due rows, sends their emails and marks them sent or failed.

    Wake-ups come from LISTEN on the outbox channel, plus a poll every
    ``poll_interval`` seconds that also picks up rows whose retry became
    due. At most ``concurrency`` emails are in flight. Each row is claimed
    for ``claim_timeout`` seconds. A failed send is retried after a random
    delay of up to ``min(max_delay, base_delay * 2**attempts)`` seconds,
    and the row is marked failed after ``max_attempts`` attempts. Every SMTP
    error counts as an attempt, including permanent (5xx) rejections. A row
    whose email cannot be rendered (an invalid recipient address) is marked
    failed at once.

    Several notifiers, in this process or others, may run on one database.
    Run it in a nursery and cancel it before closing ``database``. On
    cancellation the emails already being sent finish and get recorded,
    each within its claim timeout.
    """

    def __init__(
        self,
        database: Database,
        sender: Sender,
        *,
        locale: str = "ru",
        concurrency: int = 8,
        max_attempts: int = 8,
        base_delay: float = 1.0,
        max_delay: float = 300.0,
        claim_timeout: float = 60.0,
        poll_interval: float = 1.0,
    ) -> None:
        validate_locale(locale)
        _require(concurrency >= 1, f"concurrency must be >= 1, got {concurrency}")
        _require(max_attempts >= 1, f"max_attempts must be >= 1, got {max_attempts}")
        _require(base_delay > 0, f"base_delay must be > 0 seconds, got {base_delay}")
        _require(max_delay >= base_delay, f"max_delay must be >= base_delay ({base_delay}), got {max_delay}")
        _require(claim_timeout > 0, f"claim_timeout must be > 0 seconds, got {claim_timeout}")
        _require(poll_interval > 0, f"poll_interval must be > 0 seconds, got {poll_interval}")

        self._sender = sender
        self._locale = locale
        self._concurrency = concurrency
        self._max_attempts = max_attempts
        self._base_delay = base_delay
        self._max_delay = max_delay
        self._claim_timeout = claim_timeout
        self._poll_interval = poll_interval
        self._store = OutboxStore(database)
        self._listener = OutboxListener(database, self._wake)
        self._wakeup = trio.Event()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Deliver due rows until cancelled. Reports started once LISTEN has been tried."""
        log.info(
            "notifier started: sender %s, locale %s, concurrency %d, max attempts %d",
            self._sender,
            self._locale,
            self._concurrency,
            self._max_attempts,
        )
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(self._listener.run)
                task_status.started()
                await self._dispatch(nursery, trio.Semaphore(self._concurrency))
        finally:
            log.info("notifier stopped")

    def _wake(self) -> None:
        self._wakeup.set()

    async def _dispatch(self, nursery: trio.Nursery, slots: trio.Semaphore) -> None:
        """Claim as many rows as there are free send slots and start a delivery task for each."""
        failures = 0
        while True:
            await slots.acquire()
            # A fresh event before the claim: a NOTIFY that arrives during
            # the claim sets it, so the wait below cannot miss new rows.
            self._wakeup = wakeup = trio.Event()
            # Only this loop acquires slots, so the free ones stay free until taken.
            limit = 1 + slots.value
            claimed_at = trio.current_time()
            try:
                claim = await self._claim(limit)
            except DatabaseError as error:
                slots.release()
                failures += 1
                delay = retry_delay(failures, self._poll_interval, MAX_DATABASE_RETRY_DELAY)
                log.warning(
                    "cannot claim outbox rows (failure %d in a row), retrying in %.1f s: %s", failures, delay, error
                )
                await trio.sleep(delay)
                continue
            if failures:
                log.info("outbox claims work again after %d failures", failures)
                failures = 0

            # No checkpoint from the claim to start_soon: a cancellation
            # cannot strand claimed rows, because each delivery task shields
            # itself before its first checkpoint.
            notices = claim.notices
            if notices:
                for _ in notices[1:]:
                    slots.acquire_nowait()
            else:
                slots.release()
            deadline = claimed_at + self._claim_timeout
            for notice in notices:
                nursery.start_soon(self._deliver, notice, deadline, slots)

            if len(notices) < limit:
                with trio.move_on_after(self._poll_interval):
                    await wakeup.wait()

    async def _claim(self, limit: int) -> Claim:
        """Claim up to ``limit`` rows; raise DatabaseError if the claim fails or overruns its timeout."""
        claim = None
        # Shielded so that a cancellation cannot arrive after the claim has
        # committed but before its rows are handed to delivery tasks.
        with trio.CancelScope(shield=True, deadline=trio.current_time() + self._claim_timeout):
            claim = await self._store.claim(limit, claim_timeout=self._claim_timeout, max_attempts=self._max_attempts)
        if claim is None:
            raise DatabaseUnavailable(f"outbox claim did not finish within {self._claim_timeout:.1f} s")
        for row in claim.exhausted:
            log.error(
                "outbox %d (flight %d, passenger %d) marked failed: its claim lapsed on the last of %d attempts",
                row.outbox_id,
                row.flight_id,
                row.passenger_id,
                row.attempts,
            )
        return claim

    async def _deliver(self, notice: Notice, deadline: float, slots: trio.Semaphore) -> None:
        """Send one email and record the result, shielded from cancellation until ``deadline``."""
        sent = False
        try:
            with trio.CancelScope(shield=True, deadline=deadline) as scope:
                try:
                    message = render_message(notice, mail_from=self._sender.mail_from, locale=self._locale)
                except ValueError as error:
                    # The row's data cannot change, so a retry would fail the same way.
                    await self._record_failure(notice, f"cannot render the email: {error}", final=True)
                    return
                try:
                    await self._sender.send(message)
                except SendError as error:
                    await self._record_failure(notice, str(error))
                    return
                except Exception as error:
                    # A bug in a sender must not stop the other deliveries.
                    log.exception("outbox %d: unexpected error in sender %s", notice.outbox_id, self._sender)
                    await self._record_failure(notice, f"{type(error).__name__}: {error}")
                    return
                sent = True
                EMAILS_SENT.labels(kind=notice.kind).inc()
                log.info(
                    "outbox %d: %s email sent (flight %d, passenger %d, attempt %d)",
                    notice.outbox_id,
                    notice.kind,
                    notice.flight_id,
                    notice.passenger_id,
                    notice.attempts,
                )
                await self._write_result(notice, self._store.mark_sent, notice.outbox_id)
            if scope.cancelled_caught and sent:
                log.error(
                    "outbox %d (flight %d, passenger %d): email sent but not marked sent within the %.1f s claim, "
                    "so it will be sent again when the claim lapses",
                    notice.outbox_id,
                    notice.flight_id,
                    notice.passenger_id,
                    self._claim_timeout,
                )
            elif scope.cancelled_caught:
                log.error(
                    "outbox %d (flight %d, passenger %d): delivery did not finish within the %.1f s claim, "
                    "so the row is due again when the claim lapses",
                    notice.outbox_id,
                    notice.flight_id,
                    notice.passenger_id,
                    self._claim_timeout,
                )
        finally:
            slots.release()

    async def _record_failure(self, notice: Notice, error: str, *, final: bool = False) -> None:
        """Schedule a retry, or mark the row failed if ``final`` or its attempts are used up."""
        if final or notice.attempts >= self._max_attempts:
            await self._write_result(notice, self._store.mark_failed, notice.outbox_id, notice.attempts, error)
            EMAILS_FAILED.labels(kind=notice.kind).inc()
            log.error(
                "outbox %d (flight %d, passenger %d): marked failed on attempt %d of %d: %s",
                notice.outbox_id,
                notice.flight_id,
                notice.passenger_id,
                notice.attempts,
                self._max_attempts,
                error,
            )
            return
        delay = retry_delay(notice.attempts, self._base_delay, self._max_delay)
        await self._write_result(
            notice, self._store.schedule_retry, notice.outbox_id, notice.attempts, delay, error
        )
        log.warning(
            "outbox %d (flight %d, passenger %d): attempt %d of %d failed, retrying in %.1f s: %s",
            notice.outbox_id,
            notice.flight_id,
            notice.passenger_id,
            notice.attempts,
            self._max_attempts,
            delay,
            error,
        )

    async def _write_result(self, notice: Notice, write: Callable[..., Awaitable[bool]], *args: object) -> None:
        """Run one of the store's result writes, retrying database errors until the caller's deadline."""
        failures = 0
        while True:
            try:
                updated = await write(*args)
                break
            except DatabaseError as error:
                failures += 1
                delay = retry_delay(failures, self._poll_interval, MAX_DATABASE_RETRY_DELAY)
                log.warning(
                    "outbox %d: cannot record the delivery result (failure %d in a row), retrying in %.1f s: %s",
                    notice.outbox_id,
                    failures,
                    delay,
                    error,
                )
                await trio.sleep(delay)
        if not updated:
            log.warning(
                "outbox %d: result not recorded because the row was no longer pending under this claim "
                "(another notifier claimed it after this claim lapsed)",
                notice.outbox_id,
            )


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)
