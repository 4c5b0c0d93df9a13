"""Prometheus metrics of one app instance, served at /metrics in the text format.

Request, 503 and batch metrics are counted as they happen. Gauges of actors,
mailboxes, the database pool and the outbox backlog are read at scrape time,
so they cost nothing between scrapes. A scrape also includes prometheus-client's
default registry: the process and Python collectors, and the email counters
of ``notify.metrics``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import trio
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from quart import Response
from quart_trio import QuartTrio

import notify.metrics  # noqa: F401  (registers the email counters for every scrape)
from engine.registry import Registry
from persistence.database import Database
from persistence.errors import DatabaseError
from persistence.group_commit import GroupCommitter
from persistence.stats import pending_emails, pool_usage

log = logging.getLogger(__name__)

# The *_created series double every counter and histogram, and Prometheus
# does not need them to compute rates.
disable_created_metrics()

# Request latency buckets, in seconds: from a cached read to the request deadline.
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)

# A scrape waits at most this long for the outbox count, in seconds. A
# scrape that does not get the count in time leaves the backlog series out.
_OUTBOX_QUERY_TIMEOUT = 1.0

# Route label of a request that matched no route (404) or failed before routing.
UNMATCHED_ROUTE = "unmatched"


class Metrics:
    """The metrics of one runtime: its own registry, fed as the engine's observer and by the app."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "tickets_http_requests_total",
            "HTTP requests answered, by method, route template and status code.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.request_duration = Histogram(
            "tickets_http_request_duration_seconds",
            "Time from receiving a request to having its response, by method and route template.",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.unavailable = Counter(
            "tickets_http_unavailable_total",
            "503 responses, by cause (the error code in the body).",
            ["cause"],
            registry=self.registry,
        )
        self.batch_commands = Histogram(
            "tickets_batch_commands",
            "Commands decided per committed flight batch (one actor's batch; batches of several flights may share a transaction).",
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        self.commit_duration = Histogram(
            "tickets_batch_commit_duration_seconds",
            "Time to commit one flight batch, including the wait for its group and the thread crossing to asyncpg.",
            buckets=_COMMIT_BUCKETS,
            registry=self.registry,
        )
        self.batch_failures = Counter(
            "tickets_batch_failures_total",
            "Flight batches whose transaction failed; their callers got 503.",
            registry=self.registry,
        )
        self._scrape_time = _ScrapeTimeCollector()
        self.registry.register(self._scrape_time)

    def watch(self, flights: Registry, database: Database, committer: GroupCommitter | None = None) -> None:
        """Read the scrape-time gauges from these actors, this database and this group committer from now on."""
        self._scrape_time.flights = flights
        self._scrape_time.database = database
        self._scrape_time.committer = committer

    # EngineObserver --------------------------------------------------------

    def batch_committed(self, commands: int, seconds: float) -> None:
        self.batch_commands.observe(commands)
        self.commit_duration.observe(seconds)

    def batch_failed(self, commands: int, seconds: float) -> None:
        self.batch_failures.inc()

    # HTTP ------------------------------------------------------------------

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.request_duration.labels(method, route).observe(seconds)

    def count_unavailable(self, cause: str) -> None:
        self.unavailable.labels(cause).inc()

    async def render(self) -> bytes:
        """Read the database gauges, then render this app's and the default registry's metrics."""
        await self._scrape_time.refresh_outbox()
        return generate_latest(self.registry) + generate_latest(REGISTRY)


class _ScrapeTimeCollector(Collector):
    """Gauges computed when scraped: actors, mailboxes, pool and outbox backlog."""

    def __init__(self) -> None:
        self.flights: Registry | None = None
        self.database: Database | None = None
        self.committer: GroupCommitter | None = None
        self._pending_emails: int | None = None

    async def refresh_outbox(self) -> None:
        self._pending_emails = None
        if self.database is None:
            return
        with trio.move_on_after(_OUTBOX_QUERY_TIMEOUT) as scope:
            try:
                self._pending_emails = await pending_emails(self.database)
            except DatabaseError as error:
                log.warning("metrics: outbox backlog not read: %s", error)
        if scope.cancelled_caught:
            log.warning("metrics: outbox backlog not read within %.0f s", _OUTBOX_QUERY_TIMEOUT)

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        if self.committer is not None:
            committer = self.committer
            yield CounterMetricFamily(
                "tickets_commit_groups_total", "Transactions that committed flight batches.", committer.groups_committed
            )
            yield CounterMetricFamily(
                "tickets_commit_group_batches_total",
                "Flight batches those transactions wrote; divided by tickets_commit_groups_total, the mean group size.",
                committer.batches_committed,
            )
            yield CounterMetricFamily(
                "tickets_commit_group_splits_total",
                "Groups that one flight's failed guard rolled back, then written one flight at a time.",
                committer.groups_split,
            )
        if self.flights is not None:
            depths = self.flights.mailbox_depths()
            yield GaugeMetricFamily("tickets_actors_active", "Flight actors running in this process.", len(depths))
            yield GaugeMetricFamily("tickets_mailbox_depth", "Commands queued in all flight mailboxes.", sum(depths))
            yield GaugeMetricFamily(
                "tickets_mailbox_depth_max", "Commands queued in the fullest flight mailbox.", max(depths, default=0)
            )
        if self.database is None:
            return

        in_use, size, maximum = pool_usage(self.database)
        yield GaugeMetricFamily("tickets_db_pool_connections_in_use", "Database connections lent out.", in_use)
        yield GaugeMetricFamily("tickets_db_pool_connections", "Database connections open.", size)
        yield GaugeMetricFamily("tickets_db_pool_max_connections", "Most database connections the pool opens.", maximum)

        if self._pending_emails is not None:
            yield GaugeMetricFamily(
                "tickets_outbox_pending_emails", "Outbox emails not yet sent or given up.", self._pending_emails
            )


def register_metrics(app: QuartTrio, metrics: Metrics) -> None:
    """Add GET /metrics to the app."""

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        """Prometheus metrics in the text exposition format."""
        return Response(await metrics.render(), status=200, content_type=CONTENT_TYPE_LATEST)
