"""Email counters, shared by the notifier (which counts) and /metrics (which exposes them).

They live in prometheus-client's default registry, so the notifier imports
them without importing anything from ``api``, and every scrape of /metrics
includes them. Count one email per outbox row: ``EMAILS_SENT`` when the
sender accepted it, ``EMAILS_FAILED`` when its last attempt failed and the
row is marked failed.

    from notify.metrics import EMAILS_SENT
    EMAILS_SENT.labels(kind="flight_canceled").inc()
"""

from __future__ import annotations

from prometheus_client import Counter

# Values of outbox.kind, the reason an email is sent.
EMAIL_KINDS = ("flight_canceled", "reservation_released")

EMAILS_SENT = Counter("tickets_emails_sent_total", "Passenger emails the sender accepted, by outbox kind.", ["kind"])
EMAILS_FAILED = Counter(
    "tickets_emails_failed_total", "Passenger emails given up after their last attempt, by outbox kind.", ["kind"]
)

# Create every series at zero, so a rate() over them works before the first email.
for _kind in EMAIL_KINDS:
    EMAILS_SENT.labels(kind=_kind)
    EMAILS_FAILED.labels(kind=_kind)
