"""cancel-storm: one flight_canceled webhook, then wait for every passenger's email.

An aiosmtpd server started here on 127.0.0.1 receives the service's mail
(TICKETS_MAIL_URL=smtp://127.0.0.1:<port>) and counts the messages and
their recipients. The scenario measures the webhook's reply time and the
time from sending it until the last expected message arrived. Then it
replays the webhook to check that no second email goes out, and audits the
database: flight canceled, every held ticket canceled, one outbox row per
passenger, all sent.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from typing import TYPE_CHECKING, Any

from aiosmtpd.controller import Controller

from .audit import Check
from .database import read_canceled_flight, seed_held_flight_template
from .layouts import ONE_PROCESS
from .processes import free_port, wait_until_ready
from .scenarios import IMPLEMENTATIONS, SERVICE, Scenario

if TYPE_CHECKING:
    from .runner import Suite

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/api/v1/callback/events"
# Time a replay gets to (wrongly) send more mail before the count is final.
SETTLE_SECONDS = 2.0


class CountingHandler:
    """aiosmtpd handler that stores each message's recipients and arrival time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.recipients: Counter[str] = Counter()
        self.arrivals: list[float] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd hook name
        now = time.monotonic()
        with self._lock:
            self.arrivals.append(now)
            for recipient in envelope.rcpt_tos:
                self.recipients[recipient.lower()] += 1
        return "250 Message accepted for delivery"

    @property
    def messages(self) -> int:
        with self._lock:
            return len(self.arrivals)


def post_event(base_url: str, flight_id: int, secret: str, timeout: float) -> tuple[int, dict[str, Any] | None, float]:
    """POST a flight_canceled event; return (status, JSON body or None, seconds until the reply)."""
    body = json.dumps(
        {
            "data": {
                "flight_id": flight_id,
                "triggered_at": int(time.time()),
                "event": "flight_canceled",
                "secret_key": secret,
            }
        }
    ).encode()
    request = urllib.request.Request(
        base_url + WEBHOOK_PATH, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, payload = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, payload = error.code, error.read()
    elapsed = time.monotonic() - started
    try:
        parsed = json.loads(payload)
    except ValueError:
        parsed = None
    return status, parsed, elapsed


def run(suite: Suite, scenario: Scenario) -> dict[str, Any]:
    quick = suite.options.quick
    _, seats = scenario.size(quick)
    wait_limit = 15.0 if quick else 300.0
    # Stop waiting earlier when no email arrived for this long.
    stall_limit = 10.0 if quick else 30.0
    result: dict[str, Any] = {
        "scenario": scenario.name,
        "implementation": SERVICE,
        # --workers and --nodes apply to the load scenarios only.
        "layout": ONE_PROCESS.as_dict(),
        "repetition": 1,
        "data": {"flights": 1, "passengers": seats},
        "error": None,
        "skipped": None,
    }
    checks: list[Check] = []
    template = f"{suite.prefix}_cancel_storm_tpl"
    database_name = f"{suite.prefix}_cancel_storm_service"
    handler = CountingHandler()
    controller = None
    server = None
    created = []
    try:
        log.info("%s: seeding one flight with %d held seats", scenario.name, seats)
        seeded = seed_held_flight_template(suite.server, template, seats)
        created.append(template)
        url = suite.server.create_database(database_name, template)
        created.append(database_name)
        if seeded.held_tickets != seats:
            raise RuntimeError(f"seeding held {seeded.held_tickets} of {seats} seats")

        smtp_port = free_port()
        controller = Controller(handler, hostname="127.0.0.1", port=smtp_port)
        controller.start()

        secret = secrets.token_hex(12)
        env = dict(os.environ)
        env.update(
            {
                "TICKETS_DATABASE_URL": url,
                "TICKETS_LOG_LEVEL": "WARNING",
                "TICKETS_CALLBACK_SECRET": secret,
                "TICKETS_MAIL_URL": f"smtp://127.0.0.1:{smtp_port}",
            }
        )
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        server_log = suite.raw_dir / f"{scenario.name}-service.server.log"
        server = suite.processes.start(
            IMPLEMENTATIONS[SERVICE].command(port, suite.options.switch_interval), env=env, log_path=server_log
        )
        wait_until_ready(server, base_url + "/api/v1/flights", 60.0, server_log)

        started = time.monotonic()
        status, body, reply_seconds = post_event(base_url, seeded.flight_first, secret, timeout=120.0)
        result["webhook"] = {"status": status, "body": body, "reply_s": round(reply_seconds, 3)}
        if status in (404, 405) and not (isinstance(body, dict) and body.get("code") == "flight_not_found"):
            result["skipped"] = (
                f"POST {WEBHOOK_PATH} answered {status} {body}: the webhook is not implemented in this build, "
                "so the scenario could not run"
            )
            log.warning("%s: %s", scenario.name, result["skipped"])
            return result
        checks.append(Check("webhook_accepted", status == 200, f"first webhook answered {status} {body}"))

        deadline = started + wait_limit
        last_count, last_progress = 0, started
        while handler.messages < seats and time.monotonic() < deadline and server.poll() is None:
            time.sleep(0.02)
            if handler.messages != last_count:
                last_count, last_progress = handler.messages, time.monotonic()
            elif time.monotonic() - last_progress > stall_limit:
                log.warning("%s: no email for %.0f s after %d of %d; giving up", scenario.name, stall_limit, last_count, seats)
                break
        arrivals = list(handler.arrivals)
        result["emails"] = {
            "expected": seats,
            "received_in_time": len(arrivals),
            "wait_limit_s": wait_limit,
            "stall_limit_s": stall_limit,
            "first_s": round(arrivals[0] - started, 3) if arrivals else None,
            "last_s": round(arrivals[min(seats, len(arrivals)) - 1] - started, 3) if arrivals else None,
        }
        if arrivals and len(arrivals) >= seats:
            span = arrivals[seats - 1] - started
            result["emails"]["per_second"] = round(seats / span, 1) if span > 0 else None

        replay_status, replay_body, _ = post_event(base_url, seeded.flight_first, secret, timeout=60.0)
        time.sleep(SETTLE_SECONDS)
        checks.append(Check("replay_accepted", replay_status == 200, f"replayed webhook answered {replay_status} {replay_body}"))

        received = handler.messages
        duplicates = sum(count - 1 for count in handler.recipients.values() if count > 1)
        result["emails"]["received_total"] = received
        result["emails"]["distinct_recipients"] = len(handler.recipients)
        checks.append(
            Check(
                "every_passenger_emailed_once",
                received == seats and len(handler.recipients) == seats and duplicates == 0,
                f"{received} messages to {len(handler.recipients)} recipients ({duplicates} repeats) "
                f"for {seats} passengers, within {wait_limit:.0f} s and after a replay",
            )
        )

        state = read_canceled_flight(url, seeded.flight_first)
        result["database"] = {
            "flight_status": state.flight_status,
            "tickets_by_status": state.tickets_by_status,
            "outbox_by_status": state.outbox_by_status,
        }
        checks.append(
            Check(
                "flight_and_tickets_canceled",
                state.flight_status == "canceled" and state.tickets_by_status == {"canceled": seats},
                f"flight {state.flight_status}, tickets {state.tickets_by_status}",
            )
        )
        checks.append(
            Check(
                "outbox_one_row_per_passenger_sent",
                state.outbox_rows == seats
                and state.distinct_outbox_passengers == seats
                and state.outbox_by_status.get("sent", 0) == seats,
                f"{state.outbox_rows} outbox rows for {state.distinct_outbox_passengers} passengers, by status {state.outbox_by_status}",
            )
        )
        exit_code = suite.processes.stop(server)
        server = None
        result["server_exit_code"] = exit_code
    except Exception as error:  # noqa: BLE001 - recorded as a failed run; the suite goes on
        log.exception("%s: run failed", scenario.name)
        result["error"] = f"{type(error).__name__}: {error}"
        checks.append(Check("run_completed", False, result["error"]))
    finally:
        if server is not None:
            suite.processes.stop(server)
        if controller is not None:
            controller.stop()
        for name in reversed(created):
            suite.drop_database(name)
        result["audit"] = {
            "passed": all(check.passed for check in checks),
            "checks": [check.as_dict() for check in checks],
        }
    return result
