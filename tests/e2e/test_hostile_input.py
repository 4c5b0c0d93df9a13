"""Bad requests on every endpoint: each gets its 4xx JSON error with a stable code, and
the database does not change. Names in any script, emoji and internationalised
emails are valid and round-trip unchanged."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest

from tests.conftest import CALLBACK_SECRET
from tests.support import seed_one_flight, snapshot

pytestmark = pytest.mark.trio

BUY = "/api/v1/tickets/buy"
BOOK = "/api/v1/tickets/book"
CANCEL = "/api/v1/tickets/cancel-reservation"
EVENTS = "/api/v1/callback/events"
JSON = {"Content-Type": "application/json"}


def person(**overrides: object) -> dict:
    values: dict[str, object] = {
        "email": "ivan@mail.com",
        "firstname": "Ivan",
        "lastname": "Ivanov",
        "passNumber": "4322-22-333-45",
    }
    values.update(overrides)
    return values


def seat(ticket_id: object = 2, **passenger: object) -> bytes:
    return json.dumps({"ticketId": ticket_id, "passenger": person(**passenger)}).encode()


def seat_with(**fields: object) -> bytes:
    body: dict[str, object] = {"ticketId": 2, "passenger": person()}
    body.update(fields)
    return json.dumps(body).encode()


def event(**overrides: object) -> bytes:
    data: dict[str, object] = {
        "flight_id": 1,
        "triggered_at": 1585012345,
        "event": "flight_canceled",
        "secret_key": CALLBACK_SECRET,
    }
    data.update(overrides)
    return json.dumps({"data": data}).encode()


def nested(depth: int) -> bytes:
    return b'{"ticketId": 2, "passenger": %s, "extra": %s%s}' % (
        json.dumps(person()).encode(),
        b"[" * depth,
        b"]" * depth,
    )


async def chunks(body: bytes, size: int = 1000):
    for start in range(0, len(body), size):
        yield body[start : start + size]


@dataclass
class Case:
    name: str
    method: str
    path: str
    body: bytes | None
    status: int
    code: str
    words: str
    headers: dict[str, str] | list[tuple[str, str]] = field(default_factory=lambda: dict(JSON))
    chunked: bool = False


BIG = "x" * 10_000
CASES = [
    # Bytes that are not one valid JSON value.
    Case("truncated json", "POST", BUY, b'{"ticketId": 2, "passenger": {', 400, "invalid_json", "not valid JSON"),
    Case("unquoted keys", "POST", BUY, b"{ticketId: 2}", 400, "invalid_json", "not valid JSON"),
    Case("trailing comma", "POST", BUY, b'{"ticketId": 2,}', 400, "invalid_json", "not valid JSON"),
    Case("single quotes", "POST", BOOK, b"{'ticketId': 2}", 400, "invalid_json", "not valid JSON"),
    Case("two values", "POST", BUY, seat() + b" {}", 400, "invalid_json", "not valid JSON"),
    Case("empty body", "POST", BUY, b"", 400, "invalid_json", "empty"),
    Case("whitespace body", "POST", CANCEL, b"  \n ", 400, "invalid_json", "empty"),
    Case("duplicate top key", "POST", BUY, b'{"ticketId": 2, "ticketId": 3, "passenger": ' + json.dumps(person()).encode() + b"}", 400, "invalid_json", "duplicate key 'ticketId'"),
    Case("duplicate nested key", "POST", BOOK, seat().replace(b'"email"', b'"email": "a@b.com", "email"'), 400, "invalid_json", "duplicate key 'email'"),
    Case("nesting 33 levels", "POST", BUY, nested(33), 400, "invalid_json", "nested deeper than 32"),
    Case("nesting 5000 levels", "POST", BUY, nested(5000), 400, "invalid_json", "nested deeper than 32"),
    Case("NaN", "POST", BUY, b'{"ticketId": NaN}', 400, "invalid_json", "NaN is not a JSON number"),
    Case("Infinity", "POST", BUY, b'{"ticketId": -Infinity}', 400, "invalid_json", "-Infinity is not a JSON number"),
    Case("1001 digit integer", "POST", BUY, seat_with(ticketId=10**1000), 400, "invalid_json", "1001 digits"),
    Case("invalid utf-8", "POST", BUY, seat(firstname="Iv\udcffan").replace(b"\\udcff", b"\xff"), 400, "invalid_json", "not valid UTF-8"),
    Case("utf-8 byte order mark", "POST", BUY, b"\xef\xbb\xbf" + seat(), 400, "invalid_json", "not valid JSON"),
    Case("utf-16 body", "POST", BUY, seat().decode().encode("utf-16"), 400, "invalid_json", "not valid UTF-8"),
    Case("lone surrogate", "POST", BUY, seat(firstname="\ud800"), 400, "invalid_json", "passenger.firstname"),
    Case("top-level null", "POST", BUY, b"null", 400, "invalid_request", "object"),
    Case("top-level array", "POST", BOOK, b"[1, 2]", 400, "invalid_request", "object"),
    Case("top-level string", "POST", CANCEL, b'"buy"', 400, "invalid_request", "object"),
    Case("top-level number", "POST", BUY, b"42", 400, "invalid_request", "object"),
    # Size limits, with and without Content-Length.
    Case("body over limit", "POST", BUY, seat_with(padding="x" * 20_000), 413, "body_too_large", "16384"),
    Case("chunked body over limit", "POST", BUY, seat_with(padding="x" * 20_000), 413, "body_too_large", "16384", chunked=True),
    Case("chunked deep nesting", "POST", BUY, nested(3000), 400, "invalid_json", "nested deeper than 32", chunked=True),
    Case("chunked truncated json", "POST", BOOK, seat()[:-5], 400, "invalid_json", "not valid JSON", chunked=True),
    # ticketId of every wrong kind.
    Case("ticketId string", "POST", BUY, seat("2"), 400, "invalid_request", "ticketId"),
    Case("ticketId true", "POST", BUY, seat(True), 400, "invalid_request", "ticketId"),
    Case("ticketId false", "POST", BOOK, seat(False), 400, "invalid_request", "ticketId"),
    Case("ticketId 2.0", "POST", BUY, seat(2.0), 400, "invalid_request", "ticketId"),
    Case("ticketId 2.5", "POST", BUY, seat(2.5), 400, "invalid_request", "ticketId"),
    Case("ticketId 1e3", "POST", BUY, b'{"ticketId": 1e3, "passenger": ' + json.dumps(person()).encode() + b"}", 400, "invalid_request", "ticketId"),
    Case("ticketId zero", "POST", BUY, seat(0), 400, "invalid_request", "greater than 0"),
    Case("ticketId negative", "POST", CANCEL, seat(-1), 400, "invalid_request", "greater than 0"),
    Case("ticketId 2**63", "POST", BUY, seat(2**63), 400, "invalid_request", "less than or equal to 9223372036854775807"),
    Case("ticketId 10**30", "POST", BOOK, seat(10**30), 400, "invalid_request", "ticketId"),
    Case("ticketId null", "POST", BUY, seat(None), 400, "invalid_request", "ticketId"),
    Case("ticketId object", "POST", BUY, seat({"id": 2}), 400, "invalid_request", "ticketId"),
    Case("ticketId missing", "POST", BUY, json.dumps({"passenger": person()}).encode(), 400, "invalid_request", "ticketId: Field required"),
    Case("unknown ticket", "POST", BUY, seat(999_999), 400, "ticket_not_found", "999999"),
    # Passenger fields.
    Case("passenger missing", "POST", BUY, b'{"ticketId": 2}', 400, "invalid_request", "passenger: Field required"),
    Case("passenger string", "POST", BOOK, seat_with(passenger="Ivan"), 400, "invalid_request", "passenger"),
    Case("passenger list", "POST", BUY, seat_with(passenger=[person()]), 400, "invalid_request", "passenger"),
    Case("email missing", "POST", BUY, seat_with(passenger={k: v for k, v in person().items() if k != "email"}), 400, "invalid_request", "passenger.email: Field required"),
    Case("email number", "POST", BUY, seat(email=123), 400, "invalid_request", "passenger.email"),
    Case("email invalid", "POST", BUY, seat(email="not-an-email"), 400, "invalid_request", "passenger.email"),
    Case("email without dot", "POST", BOOK, seat(email="ivan@localhost"), 400, "invalid_request", "passenger.email"),
    Case("email with space", "POST", BUY, seat(email="ivan @mail.com"), 400, "invalid_request", "passenger.email"),
    Case("email 10000 chars", "POST", BUY, seat(email=BIG + "@mail.com"), 400, "invalid_request", "passenger.email"),
    Case("email with NUL", "POST", BUY, seat(email="iv\u0000an@mail.com"), 400, "invalid_request", "passenger.email"),
    Case("firstname 10000 chars", "POST", BUY, seat(firstname=BIG), 400, "invalid_request", "passenger.firstname: String should have at most 100 characters"),
    Case("lastname 10000 chars", "POST", BOOK, seat(lastname=BIG), 400, "invalid_request", "passenger.lastname"),
    Case("firstname NUL", "POST", BUY, seat(firstname="Iv\u0000an"), 400, "invalid_request", "passenger.firstname: must not contain control characters"),
    Case("lastname escape char", "POST", BUY, seat(lastname="Iv\u001b[31man"), 400, "invalid_request", "passenger.lastname"),
    Case("firstname empty", "POST", BUY, seat(firstname=""), 400, "invalid_request", "passenger.firstname"),
    Case("firstname blank", "POST", CANCEL, seat(firstname="   "), 400, "invalid_request", "must not be blank"),
    Case("firstname number", "POST", BUY, seat(firstname=5), 400, "invalid_request", "passenger.firstname"),
    Case("firstname true", "POST", BUY, seat(firstname=True), 400, "invalid_request", "passenger.firstname"),
    Case("passNumber 10000 chars", "POST", BUY, seat(passNumber=BIG), 400, "invalid_request", "passenger.passNumber"),
    Case("passNumber NUL", "POST", BUY, seat(passNumber="4322\u000022"), 400, "invalid_request", "passenger.passNumber"),
    Case("passNumber symbols", "POST", BOOK, seat(passNumber="12#$%"), 400, "invalid_request", "only letters, digits, spaces and hyphens"),
    Case("passNumber number", "POST", BUY, seat(passNumber=432222), 400, "invalid_request", "passenger.passNumber"),
    # Seat rules that reject without changing anything.
    Case("cancel free ticket", "POST", CANCEL, seat(2), 400, "ticket_not_booked", "not booked"),
    Case("buy someone's hold", "POST", BUY, seat(1, email="other@mail.com"), 400, "ticket_unavailable", "booked by another passenger"),
    Case("cancel someone's hold", "POST", CANCEL, seat(1, passNumber="9999"), 400, "not_reservation_owner", "another passenger"),
    # Content types.
    Case("text/plain", "POST", BUY, seat(), 415, "unsupported_media_type", "text/plain", headers={"Content-Type": "text/plain"}),
    Case("no content type", "POST", BUY, seat(), 415, "unsupported_media_type", "none", headers={}),
    Case("form encoded", "POST", BOOK, b"ticketId=2", 415, "unsupported_media_type", "application/x-www-form-urlencoded", headers={"Content-Type": "application/x-www-form-urlencoded"}),
    Case("multipart", "POST", BUY, b"--x\r\n\r\n--x--", 415, "unsupported_media_type", "multipart/form-data", headers={"Content-Type": "multipart/form-data; boundary=x"}),
    Case("xml", "POST", CANCEL, b"<ticket/>", 415, "unsupported_media_type", "application/xml", headers={"Content-Type": "application/xml"}),
    Case("latin-1 charset", "POST", BUY, seat(), 415, "unsupported_media_type", "charset=latin-1", headers={"Content-Type": "application/json; charset=latin-1"}),
    Case("webhook text/plain", "POST", EVENTS, event(), 415, "unsupported_media_type", "text/plain", headers={"Content-Type": "text/plain"}),
    # Methods, paths and query strings.
    Case("GET buy", "GET", BUY, None, 405, "method_not_allowed", "GET is not allowed"),
    Case("PUT book", "PUT", BOOK, seat(), 405, "method_not_allowed", "PUT is not allowed"),
    Case("DELETE flights", "DELETE", "/api/v1/flights", None, 405, "method_not_allowed", "DELETE"),
    Case("PATCH webhook", "PATCH", EVENTS, event(), 405, "method_not_allowed", "PATCH"),
    Case("POST flights", "POST", "/api/v1/flights", b"{}", 405, "method_not_allowed", "POST"),
    Case("flight id letters", "GET", "/api/v1/tickets/flight-abc", None, 400, "invalid_request", "flight id"),
    Case("flight id zero", "GET", "/api/v1/tickets/flight-0", None, 400, "invalid_request", "between 1 and"),
    Case("flight id huge", "GET", "/api/v1/tickets/flight-" + "9" * 30, None, 400, "invalid_request", "between 1 and"),
    Case("flight id arabic digits", "GET", "/api/v1/tickets/flight-١٢", None, 400, "invalid_request", "positive integer"),
    Case("flight id NUL", "GET", "/api/v1/tickets/flight-%00", None, 400, "invalid_request", "flight id"),
    Case("unknown flight", "GET", "/api/v1/tickets/flight-999", None, 404, "flight_not_found", "999"),
    Case("unknown path", "GET", "/api/v1/nope", None, 404, "not_found", "/api/v1/nope"),
    Case("old api version", "GET", "/api/v2/flights", None, 404, "not_found", "/api/v2/flights"),
    Case("path suffix", "GET", "/api/v1/tickets/flight-1/extra", None, 404, "not_found", "no endpoint"),
    Case("query on buy", "POST", BUY + "?ticketId=3", seat(), 400, "invalid_request", "query parameters are not accepted"),
    Case("query on webhook", "POST", EVENTS + "?debug=1", event(), 400, "invalid_request", "query parameters are not accepted"),
    # The webhook.
    Case("webhook duplicate key", "POST", EVENTS, event().replace(b'"event"', b'"event": "flight_canceled", "event"'), 400, "invalid_json", "duplicate key 'event'"),
    Case("webhook flight_id true", "POST", EVENTS, event(flight_id=True), 400, "invalid_request", "data.flight_id"),
    Case("webhook event 10000 chars", "POST", EVENTS, event(event=BIG), 400, "invalid_request", "data.event"),
    Case("webhook triggered_at float", "POST", EVENTS, event(triggered_at=1585012345.0), 400, "invalid_request", "data.triggered_at"),
    Case("webhook triggered_at huge", "POST", EVENTS, event(triggered_at=10**30), 400, "invalid_request", "data.triggered_at"),
    Case("webhook secret NUL", "POST", EVENTS, event(secret_key="\u0000"), 403, "invalid_secret", "secret_key"),
    Case("webhook data null", "POST", EVENTS, b'{"data": null}', 400, "invalid_request", "data"),
    # The Idempotency-Key header.
    Case("idempotency key too long", "POST", BUY, seat(), 400, "invalid_request", "Idempotency-Key", headers={**JSON, "Idempotency-Key": "k" * 256}),
    Case("two idempotency keys", "POST", BUY, seat(), 400, "invalid_request", "one Idempotency-Key", headers=[("Content-Type", "application/json"), ("Idempotency-Key", "a"), ("Idempotency-Key", "b")]),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
async def test_hostile_request_rejected(live_server, case):
    await seed_one_flight(live_server.database)
    held = await live_server.client.post(BOOK, content=seat(1), headers=JSON)
    assert held.status_code == 201
    before = await snapshot(live_server.database)

    content = chunks(case.body) if case.chunked and case.body is not None else case.body
    response = await live_server.client.request(case.method, case.path, content=content, headers=case.headers)

    assert response.status_code == case.status, response.text
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    assert response.json()["code"] == case.code
    assert case.words in response.json()["error"]
    assert await snapshot(live_server.database) == before


async def test_hostile_table_is_large():
    assert len(CASES) >= 60
    assert len({case.name for case in CASES}) == len(CASES)


@pytest.mark.parametrize(
    ("firstname", "lastname"),
    [
        ("محمد", "عبد الله"),  # Arabic, right to left
        ("שרה", "כהן"),  # Hebrew
        ("Zoë 👩\u200d🚀", "O'Brien-Łukasiewicz"),  # emoji with a zero-width joiner
        ("美玲", "王"),
        ("\u202eevil", "Override"),  # a bidi override is text, not a control character
    ],
)
async def test_names_round_trip(live_server, firstname, lastname):
    await seed_one_flight(live_server.database)
    body = {"ticketId": 3, "passenger": person(firstname=firstname, lastname=lastname)}

    response = await live_server.client.post(BUY, json=body)

    assert response.status_code == 201
    assert response.json()["passenger"]["firstname"] == firstname
    assert response.json()["passenger"]["lastname"] == lastname
    row = await live_server.database.fetch("SELECT firstname, lastname FROM passengers")
    assert (row[0]["firstname"], row[0]["lastname"]) == (firstname, lastname)


@pytest.mark.parametrize(
    ("email", "stored"),
    [
        ("иван@пример.рф", "иван@пример.рф"),
        ("用户@例子.广告", "用户@例子.广告"),
        ("José.Müller@Beispiel.de", "josé.müller@beispiel.de"),
        ("ivan@xn--e1afmkfd.xn--p1ai", "ivan@пример.рф"),
    ],
)
async def test_international_email_accepted(live_server, email, stored):
    await seed_one_flight(live_server.database)

    booked = await live_server.client.post(BOOK, json={"ticketId": 4, "passenger": person(email=email)})
    bought = await live_server.client.post(BUY, json={"ticketId": 4, "passenger": person(email=stored.upper())})

    assert booked.status_code == 201
    assert bought.status_code == 201
    assert await live_server.database.fetchval("SELECT email FROM passengers") == stored
