"""Check a run's database against what its replies confirmed, and the replies themselves.

The Lua scripts write, for every ticket that got a 2xx, the state it must
have now: ``booked P`` or ``sold P`` (P is the holder's pass number), or
``booked|sold P`` / ``booked|available P`` when a later buy or cancel by P
was sent but not answered before wrk stopped. P is ``?`` when the reply
named a passenger the script never sent, and ``corrupt ?`` marks a line
whose text was damaged inside wrk; such tickets are only counted. The audit compares those
lines with the tickets table, counts the held tickets against the 2xx
tally, and checks the replies (no 5xx, every body JSON) and the schema's
invariants that a bug could still break (one ticket per seat, each flight's
``seats_available`` equal to its available tickets).
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .database import DatabaseState


@dataclass
class Check:
    name: str
    passed: bool
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "detail": self.detail}


@dataclass
class Expectation:
    allowed: frozenset[str]
    pass_number: str


UNKNOWN_PASSENGER = "?"
_STATES = {"booked", "sold", "available"}
_LINE = re.compile(r"^(?P<ticket>\d+) (?P<state>[a-z|]+) (?P<pass_number>\?|[A-Z]+\d*-\d+)$")


@dataclass
class Expectations:
    tickets: dict[int, Expectation] = field(default_factory=dict)
    conflicts: list[str] = field(default_factory=list)
    superseded: int = 0
    # Lines damaged inside wrk or naming an unknown passenger: held by someone, holder not checked.
    unreadable: int = 0


def _parse_line(line: str) -> tuple[int, Expectation] | None:
    match = _LINE.match(line)
    if match is None:
        return None
    states = frozenset(match["state"].split("|"))
    if not states <= _STATES:
        return None
    return int(match["ticket"]), Expectation(states, match["pass_number"])


def load_expectations(path: Path) -> Expectations:
    """Read the scripts' expectation lines and merge the lines of different wrk threads."""
    by_ticket: dict[int, list[Expectation]] = defaultdict(list)
    unreadable = 0
    if path.exists():
        for line in path.read_text(errors="replace").splitlines():
            if not line.strip():
                continue
            parsed = _parse_line(line)
            if parsed is None:
                ticket_text = line.split(" ", 1)[0]
                if not ticket_text.isdigit():
                    raise ValueError(f"{path}: unreadable expectation line {line!r}")
                parsed = int(ticket_text), Expectation(frozenset(_STATES), UNKNOWN_PASSENGER)
            if parsed[1].pass_number == UNKNOWN_PASSENGER:
                unreadable += 1
            by_ticket[parsed[0]].append(parsed[1])

    result = Expectations(unreadable=unreadable)
    for ticket, entries in by_ticket.items():
        if len(entries) == 1:
            result.tickets[ticket] = entries[0]
            continue
        certain = [entry for entry in entries if len(entry.allowed) == 1]
        uncertain = [entry for entry in entries if len(entry.allowed) > 1]
        # A hold whose cancel was unanswered may have been released and then
        # taken by a passenger of another thread, who got the 2xx.
        if len(certain) == 1 and all("available" in entry.allowed for entry in uncertain):
            # An unreadable line is uncertain and allows "available" too.
            result.tickets[ticket] = certain[0]
            result.superseded += len(uncertain)
            continue
        shown = ", ".join(f"{'|'.join(sorted(entry.allowed))} {entry.pass_number}" for entry in entries)
        result.conflicts.append(f"ticket {ticket}: {shown}")
    return result


def held_tally(ok: dict[str, int]) -> int:
    """Return how many tickets the 2xx replies confirm as held: booked or bought outright, minus reservations canceled.

    A buy of a ticket its passenger had booked (``buy_held``) moves it from
    booked to sold, so it does not change the number.
    """
    return ok.get("book", 0) + ok.get("buy", 0) - ok.get("cancel", 0)


def audit_replies(tallies: dict[str, Any], *, overload_expected: bool = False) -> list[Check]:
    """Check that no reply was a 5xx and every body was JSON.

    With ``overload_expected``, 503 replies (load shed: a full queue, a
    deadline or a pool wait that ran out) pass, and other 5xx still fail.
    """
    statuses = {int(status): count for status, count in tallies.get("statuses", {}).items()}
    shed = statuses.get(503, 0)
    other_5xx = sum(count for status, count in statuses.items() if status >= 500 and status != 503)
    non_json = tallies.get("non_json", 0)
    if overload_expected:
        passed = other_5xx == 0
        detail = f"{other_5xx} responses with a 5xx other than 503; {shed} with 503 (load shed, allowed at this load)"
    else:
        passed = other_5xx == 0 and shed == 0
        detail = f"{other_5xx + shed} responses with status 5xx ({shed} of them 503)"
    return [
        Check("no_5xx", passed, detail),
        Check("all_json", non_json == 0, f"{non_json} response bodies did not start with {{ or ["),
    ]


def audit_database(tallies: dict[str, Any], expectations: Expectations, state: DatabaseState) -> list[Check]:
    checks = []

    conflicts = expectations.conflicts
    checks.append(
        Check(
            "one_holder_per_seat",
            state.duplicate_seats == 0 and not conflicts,
            f"{state.duplicate_seats} seats with more than one ticket row; {len(conflicts)} tickets confirmed "
            f"to two passengers" + (f": {'; '.join(conflicts[:3])}" if conflicts else ""),
        )
    )

    mismatches = []
    for ticket, expected in expectations.tickets.items():
        status, holder = state.held.get(ticket, ("available", None))
        holder_known = expected.pass_number != UNKNOWN_PASSENGER
        if status not in expected.allowed or (status != "available" and holder_known and holder != expected.pass_number):
            mismatches.append(
                f"ticket {ticket}: expected {'|'.join(sorted(expected.allowed))} by {expected.pass_number}, "
                f"database has {status}" + (f" by {holder}" if holder else "")
            )
    checks.append(
        Check(
            "confirmed_writes_in_database",
            not mismatches,
            f"{len(expectations.tickets)} tickets confirmed by a 2xx, {len(mismatches)} differ in the database"
            + (f": {'; '.join(mismatches[:3])}" if mismatches else "")
            + (
                f"; {expectations.unreadable} expectation lines unreadable (damaged inside wrk or naming an "
                "unknown passenger), their tickets checked for existence only"
                if expectations.unreadable
                else ""
            ),
        )
    )

    ok = tallies.get("ok", {})
    tally = held_tally(ok)
    held = len(state.held)
    unanswered = max(0, tallies.get("sent_total", 0) - tallies.get("received", 0))
    # A reply whose passenger could not be read may have been a buy of an
    # own hold (no change) counted as an outright buy (+1).
    unknown = tallies.get("unknown_passengers", 0)
    unexpected = [ticket for ticket in state.held if ticket not in expectations.tickets]
    difference = held - tally + expectations.superseded
    if unanswered == 0 and unknown == 0:
        passed = difference == 0 and not unexpected
        bound = "exact, every request was answered"
    else:
        # A write that committed but whose reply wrk never read is in the
        # database without a 2xx; a cancel likewise removes one.
        slack = unanswered + unknown
        passed = abs(difference) <= slack and len(unexpected) <= unanswered
        bound = (
            f"{unanswered} requests unanswered when wrk stopped and {unknown} replies with an unreadable "
            f"passenger, so the counts may differ by {slack}"
        )
    checks.append(
        Check(
            "held_count_matches_2xx",
            passed,
            f"booked+sold in database {held} ({state.status_counts.get('booked', 0)} booked, "
            f"{state.status_counts.get('sold', 0)} sold); 201 book {ok.get('book', 0)} + 201 buy {ok.get('buy', 0)} "
            f"- 200 cancel {ok.get('cancel', 0)} = {tally}; held without a 2xx: {len(unexpected)} ({bound})",
        )
    )

    counters = state.counter_mismatches
    checks.append(
        Check(
            "seats_available_matches_tickets",
            not counters,
            "every flight's seats_available equals its available tickets"
            if not counters
            else "; ".join(f"flight {flight}: seats_available {value}, available tickets {actual}" for flight, value, actual in counters[:3]),
        )
    )
    return checks
