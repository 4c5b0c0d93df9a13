"""Buy, book and cancel-reservation over HTTP: success shapes and rule violations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import trio

from .support import (
    ANNA,
    DEPARTURE_TEXT,
    IVAN,
    TIME_FORMAT,
    assert_error,
    parse_time,
    seat_request,
    seed_flight,
    set_flight_status,
    snapshot,
    ticket_row,
)

FLIGHT_BODY = {"company": "SU", "departure": "Moscow", "arrival": "Berlin", "departure_time": DEPARTURE_TEXT}
IVAN_BODY = {"firstname": "Ivan", "lastname": "Ivanov", "pass_number": "4322-22-333-45"}
# The default booking TTL of test_settings, in seconds.
BOOKING_TTL = 900


def now_to_the_second() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


async def test_buy_available(live_server):
    _, tickets = await seed_flight(live_server.database)
    before = now_to_the_second()

    response = await live_server.client.post("/api/v1/tickets/buy", json=seat_request(tickets[4]))

    after = now_to_the_second()
    assert response.status_code == 201
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    body = response.json()
    assert set(body) == {"flight", "passenger", "ticket"}
    assert body["flight"] == FLIGHT_BODY
    assert body["passenger"] == IVAN_BODY
    assert set(body["ticket"]) == {"id", "seat", "date_of_sale", "status"}
    assert body["ticket"]["id"] == tickets[4]
    assert body["ticket"]["seat"] == 5
    assert body["ticket"]["status"] == "sold"
    assert TIME_FORMAT.match(body["ticket"]["date_of_sale"])
    assert before <= parse_time(body["ticket"]["date_of_sale"]) <= after


async def test_buy_stores_sale(live_server):
    _, tickets = await seed_flight(live_server.database)

    response = await live_server.client.post("/api/v1/tickets/buy", json=seat_request(tickets[0]))

    row = await ticket_row(live_server.database, tickets[0])
    assert row["status"] == "sold"
    assert (row["email"], row["pass_number"]) == (IVAN["email"], IVAN["passNumber"])
    assert (row["firstname"], row["lastname"]) == (IVAN["firstname"], IVAN["lastname"])
    assert row["date_of_sale"].replace(microsecond=0) == parse_time(response.json()["ticket"]["date_of_sale"])


async def test_book_available(live_server):
    _, tickets = await seed_flight(live_server.database)
    before = now_to_the_second()

    response = await live_server.client.post("/api/v1/tickets/book", json=seat_request(tickets[1]))

    after = now_to_the_second() + timedelta(seconds=1)
    assert response.status_code == 201
    body = response.json()
    assert body["flight"] == FLIGHT_BODY
    assert body["passenger"] == IVAN_BODY
    assert set(body["ticket"]) == {"id", "seat", "date_of_sale", "status", "booked_until"}
    assert body["ticket"]["id"] == tickets[1]
    assert body["ticket"]["seat"] == 2
    assert body["ticket"]["status"] == "booked"
    assert body["ticket"]["date_of_sale"] is None
    assert TIME_FORMAT.match(body["ticket"]["booked_until"])
    booked_until = parse_time(body["ticket"]["booked_until"])
    assert before + timedelta(seconds=BOOKING_TTL) <= booked_until <= after + timedelta(seconds=BOOKING_TTL)
    row = await ticket_row(live_server.database, tickets[1])
    assert (row["status"], row["email"]) == ("booked", IVAN["email"])
    assert row["booked_until"].replace(microsecond=0) == booked_until


async def test_buy_own_booking(live_server):
    _, tickets = await seed_flight(live_server.database)
    client = live_server.client
    await client.post("/api/v1/tickets/book", json=seat_request(tickets[0]))

    response = await client.post("/api/v1/tickets/buy", json=seat_request(tickets[0]))

    assert response.status_code == 201
    ticket = response.json()["ticket"]
    assert ticket["status"] == "sold"
    assert "booked_until" not in ticket
    assert TIME_FORMAT.match(ticket["date_of_sale"])
    row = await ticket_row(live_server.database, tickets[0])
    assert (row["status"], row["booked_until"]) == ("sold", None)


async def test_buy_own_booking_identity(live_server):
    """Email and document number identify a passenger, whatever the email's case and the names."""
    _, tickets = await seed_flight(live_server.database)
    client = live_server.client
    await client.post("/api/v1/tickets/book", json=seat_request(tickets[0]))
    same_passenger = {**IVAN, "email": "Ivan@MAIL.com", "firstname": "Vanya"}

    response = await client.post("/api/v1/tickets/buy", json=seat_request(tickets[0], same_passenger))

    assert response.status_code == 201
    assert response.json()["passenger"]["firstname"] == "Vanya"
    row = await ticket_row(live_server.database, tickets[0])
    assert (row["email"], row["firstname"]) == ("ivan@mail.com", "Vanya")


async def test_cancel_reservation(live_server):
    _, tickets = await seed_flight(live_server.database)
    client = live_server.client
    await client.post("/api/v1/tickets/book", json=seat_request(tickets[2]))

    response = await client.post("/api/v1/tickets/cancel-reservation", json=seat_request(tickets[2]))

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    assert response.json() == {"ticket": {"id": tickets[2], "seat": 3, "status": "available"}}
    row = await ticket_row(live_server.database, tickets[2])
    assert (row["status"], row["email"], row["booked_until"]) == ("available", None, None)


async def test_cancel_then_others_book(live_server):
    _, tickets = await seed_flight(live_server.database)
    client = live_server.client
    await client.post("/api/v1/tickets/book", json=seat_request(tickets[0]))
    await client.post("/api/v1/tickets/cancel-reservation", json=seat_request(tickets[0]))

    response = await client.post("/api/v1/tickets/book", json=seat_request(tickets[0], ANNA))

    assert response.status_code == 201
    row = await ticket_row(live_server.database, tickets[0])
    assert row["email"] == ANNA["email"]


# Rule violations -------------------------------------------------------

OTHER_PASS_NUMBER = {**IVAN, "passNumber": "9999-99-999-99"}

# (case, steps before, request, expected code). Each step and the request is
# (endpoint, ticket index, passenger), and every step must succeed. A ticket
# index of None means a ticket id that does not exist.
RULE_VIOLATIONS = [
    ("unknown ticket", [], ("buy", None, IVAN), "ticket_not_found"),
    ("unknown ticket book", [], ("book", None, IVAN), "ticket_not_found"),
    ("unknown ticket cancel", [], ("cancel-reservation", None, IVAN), "ticket_not_found"),
    ("buy sold", [("buy", 0, ANNA)], ("buy", 0, IVAN), "ticket_unavailable"),
    ("buy own sold", [("buy", 0, IVAN)], ("buy", 0, IVAN), "ticket_unavailable"),
    ("buy others booking", [("book", 0, ANNA)], ("buy", 0, IVAN), "ticket_unavailable"),
    ("buy other pass number", [("book", 0, IVAN)], ("buy", 0, OTHER_PASS_NUMBER), "ticket_unavailable"),
    ("book booked", [("book", 0, ANNA)], ("book", 0, IVAN), "ticket_unavailable"),
    ("book own booked", [("book", 0, IVAN)], ("book", 0, IVAN), "ticket_unavailable"),
    ("book sold", [("buy", 0, ANNA)], ("book", 0, IVAN), "ticket_unavailable"),
    ("cancel others booking", [("book", 0, ANNA)], ("cancel-reservation", 0, IVAN), "not_reservation_owner"),
    (
        "cancel other pass number",
        [("book", 0, IVAN)],
        ("cancel-reservation", 0, OTHER_PASS_NUMBER),
        "not_reservation_owner",
    ),
    ("cancel available", [], ("cancel-reservation", 0, IVAN), "ticket_not_booked"),
    ("cancel sold", [("buy", 0, IVAN)], ("cancel-reservation", 0, IVAN), "ticket_not_booked"),
    ("cancel twice", [("book", 0, IVAN), ("cancel-reservation", 0, IVAN)], ("cancel-reservation", 0, IVAN), "ticket_not_booked"),
]


@pytest.mark.parametrize(
    ("steps", "request_", "code"),
    [case[1:] for case in RULE_VIOLATIONS],
    ids=[case[0] for case in RULE_VIOLATIONS],
)
async def test_rule_violation(live_server, steps, request_, code):
    _, tickets = await seed_flight(live_server.database, seats=3)
    client = live_server.client
    for endpoint, index, passenger in steps:
        step = await client.post(f"/api/v1/tickets/{endpoint}", json=seat_request(tickets[index], passenger))
        assert step.status_code in (200, 201), step.text
    before = await snapshot(live_server.database)

    endpoint, index, passenger = request_
    ticket_id = tickets[-1] + 1000 if index is None else tickets[index]
    response = await client.post(f"/api/v1/tickets/{endpoint}", json=seat_request(ticket_id, passenger))

    assert_error(response, 400, code)
    assert await snapshot(live_server.database) == before


@pytest.mark.parametrize(
    ("flight_status", "code"), [("sales_closed", "sales_closed"), ("canceled", "flight_canceled")]
)
@pytest.mark.parametrize("endpoint", ["buy", "book"])
async def test_off_sale_violation(live_server, flight_status, code, endpoint):
    flight_id, tickets = await seed_flight(live_server.database, seats=3)
    await set_flight_status(live_server.database, flight_id, flight_status)
    before = await snapshot(live_server.database)

    response = await live_server.client.post(f"/api/v1/tickets/{endpoint}", json=seat_request(tickets[0]))

    assert_error(response, 400, code)
    assert await snapshot(live_server.database) == before


async def test_cancel_on_canceled_flight(live_server):
    flight_id, tickets = await seed_flight(live_server.database, seats=3)
    await set_flight_status(live_server.database, flight_id, "canceled")

    response = await live_server.client.post("/api/v1/tickets/cancel-reservation", json=seat_request(tickets[0]))

    assert_error(response, 400, "flight_canceled")


# Unicode ---------------------------------------------------------------

UNICODE_PASSENGERS = [
    ("cyrillic", {"email": "ivan@mail.ru", "firstname": "Иван", "lastname": "Иванов-Щукин", "passNumber": "4510 123456"}),
    ("emoji", {"email": "fun@mail.com", "firstname": "Zoë 🎉", "lastname": "👨‍👩‍👧 Ünïcødé", "passNumber": "A1"}),
    ("idn email", {"email": "пример@пример.рф", "firstname": "Пётр", "lastname": "Ёлкин", "passNumber": "77"}),
    ("100 emoji", {"email": "long@mail.com", "firstname": "🎉" * 100, "lastname": "Я" * 100, "passNumber": "8"}),
]


@pytest.mark.parametrize("passenger", [case[1] for case in UNICODE_PASSENGERS], ids=[case[0] for case in UNICODE_PASSENGERS])
async def test_unicode_names_round_trip(live_server, passenger):
    _, tickets = await seed_flight(live_server.database)

    response = await live_server.client.post("/api/v1/tickets/buy", json=seat_request(tickets[0], passenger))

    assert response.status_code == 201, response.text
    assert response.json()["passenger"] == {
        "firstname": passenger["firstname"],
        "lastname": passenger["lastname"],
        "pass_number": passenger["passNumber"],
    }
    row = await ticket_row(live_server.database, tickets[0])
    assert row["firstname"] == passenger["firstname"]
    assert row["lastname"] == passenger["lastname"]
    assert row["pass_number"] == passenger["passNumber"]
    assert row["email"] == passenger["email"]


# Holds that lapse ------------------------------------------------------


async def test_hold_lapses(live_server_factory):
    server = await live_server_factory(booking_ttl=1)
    flight_id, tickets = await seed_flight(server.database, seats=3)
    client = server.client
    booked = await client.post("/api/v1/tickets/book", json=seat_request(tickets[0]))
    assert booked.status_code == 201

    # The actor wakes when the hold lapses and writes the release itself.
    with trio.fail_after(10):
        while (await ticket_row(server.database, tickets[0]))["status"] != "available":
            await trio.sleep(0.05)

    row = await ticket_row(server.database, tickets[0])
    assert (row["email"], row["booked_until"]) == (None, None)
    [flight] = (await client.get("/api/v1/flights")).json()
    assert flight["seats_available"] == 3
    listed = (await client.get(f"/api/v1/tickets/flight-{flight_id}")).json()
    assert tickets[0] in [ticket["id"] for ticket in listed]
    response = await client.post("/api/v1/tickets/buy", json=seat_request(tickets[0], ANNA))
    assert response.status_code == 201
    cancel = await client.post("/api/v1/tickets/cancel-reservation", json=seat_request(tickets[0]))
    assert_error(cancel, 400, "ticket_not_booked")
