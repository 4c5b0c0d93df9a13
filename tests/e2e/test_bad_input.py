"""Malformed requests: each gets a 4xx JSON error and changes nothing in the database.

Every case runs against a seeded flight whose first ticket has id 1, so a
request that slipped past validation would sell or book a real ticket.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from .support import IVAN, assert_error, seed_flight, snapshot

JSON = {"Content-Type": "application/json"}
BUY = "/api/v1/tickets/buy"


def body(ticket_id: Any = 1, **passenger_fields: Any) -> bytes:
    """Return a buy body for ticket 1 with some passenger fields replaced.

    A value of None removes the field.
    """
    passenger = {**IVAN, **passenger_fields}
    passenger = {name: value for name, value in passenger.items() if value is not None}
    return json.dumps({"ticketId": ticket_id, "passenger": passenger}, ensure_ascii=False).encode()


# Longer than the 254 characters an email address may have.
EMAIL_255_CHARS = "a" * 64 + "@" + "b" * 63 + "." + "c" * 63 + "." + "d" * 58 + ".com"


def raw(text: str) -> bytes:
    return text.encode()


# (case, method, path, headers, content, status, code)
BAD_REQUESTS = [
    # Body is not a JSON object.
    ("malformed json", "POST", BUY, JSON, raw('{"ticketId": 1,'), 400, "invalid_json"),
    ("trailing garbage", "POST", BUY, JSON, body() + b"}", 400, "invalid_json"),
    ("not utf-8", "POST", BUY, JSON, raw('{"ticketId": 1, "passenger": "') + b"\xff\xfe" + raw('"}'), 400, "invalid_json"),
    ("lone surrogate", "POST", BUY, JSON, body(firstname="x").replace(b'"x"', b'"\\ud800"'), 400, "invalid_json"),
    ("empty body", "POST", BUY, JSON, b"", 400, "invalid_json"),
    ("blank body", "POST", BUY, JSON, b"  \n ", 400, "invalid_json"),
    ("json array", "POST", BUY, JSON, raw("[1, 2]"), 400, "invalid_request"),
    ("json string", "POST", BUY, JSON, raw('"buy"'), 400, "invalid_request"),
    ("json number", "POST", BUY, JSON, raw("1"), 400, "invalid_request"),
    ("json null", "POST", BUY, JSON, raw("null"), 400, "invalid_request"),
    # Content-Type.
    ("text plain", "POST", BUY, {"Content-Type": "text/plain"}, body(), 415, "unsupported_media_type"),
    ("form", "POST", BUY, {"Content-Type": "application/x-www-form-urlencoded"}, raw("ticketId=1"), 415, "unsupported_media_type"),
    ("no content type", "POST", BUY, {}, body(), 415, "unsupported_media_type"),
    ("json lookalike", "POST", BUY, {"Content-Type": "application/jsonx"}, body(), 415, "unsupported_media_type"),
    # Missing fields.
    ("empty object", "POST", BUY, JSON, raw("{}"), 400, "invalid_request"),
    ("no passenger", "POST", BUY, JSON, raw('{"ticketId": 1}'), 400, "invalid_request"),
    ("no ticket id", "POST", BUY, JSON, raw(json.dumps({"passenger": IVAN})), 400, "invalid_request"),
    ("no email", "POST", BUY, JSON, body(email=None), 400, "invalid_request"),
    ("no firstname", "POST", BUY, JSON, body(firstname=None), 400, "invalid_request"),
    ("no lastname", "POST", BUY, JSON, body(lastname=None), 400, "invalid_request"),
    ("no pass number", "POST", BUY, JSON, body(passNumber=None), 400, "invalid_request"),
    ("snake case pass number", "POST", BUY, JSON, body(passNumber=None, pass_number="1"), 400, "invalid_request"),
    # Mistyped fields.
    ("ticket id string", "POST", BUY, JSON, body("1"), 400, "invalid_request"),
    ("ticket id bool", "POST", BUY, JSON, body(True), 400, "invalid_request"),
    ("ticket id float", "POST", BUY, JSON, body(1.0), 400, "invalid_request"),
    ("ticket id fraction", "POST", BUY, JSON, body(1.5), 400, "invalid_request"),
    ("ticket id exponent", "POST", BUY, JSON, body().replace(b'"ticketId": 1', b'"ticketId": 1e0'), 400, "invalid_request"),
    ("ticket id null", "POST", BUY, JSON, body(None), 400, "invalid_request"),
    ("ticket id list", "POST", BUY, JSON, body([1]), 400, "invalid_request"),
    ("passenger string", "POST", BUY, JSON, raw('{"ticketId": 1, "passenger": "Ivan"}'), 400, "invalid_request"),
    ("passenger list", "POST", BUY, JSON, raw('{"ticketId": 1, "passenger": []}'), 400, "invalid_request"),
    ("name number", "POST", BUY, JSON, body(firstname=5), 400, "invalid_request"),
    ("pass number number", "POST", BUY, JSON, body(passNumber=4322), 400, "invalid_request"),
    ("email list", "POST", BUY, JSON, body(email=["ivan@mail.com"]), 400, "invalid_request"),
    # Ids out of range in the body.
    ("ticket id zero", "POST", BUY, JSON, body(0), 400, "invalid_request"),
    ("ticket id negative", "POST", BUY, JSON, body(-1), 400, "invalid_request"),
    ("ticket id 2**63", "POST", BUY, JSON, body(2**63), 400, "invalid_request"),
    ("ticket id 2**64", "POST", BUY, JSON, body(2**64), 400, "invalid_request"),
    ("ticket id huge", "POST", BUY, JSON, body(10**30), 400, "invalid_request"),
    # Names, document numbers and emails.
    ("firstname 101 chars", "POST", BUY, JSON, body(firstname="a" * 101), 400, "invalid_request"),
    ("lastname 101 chars", "POST", BUY, JSON, body(lastname="Я" * 101), 400, "invalid_request"),
    ("firstname empty", "POST", BUY, JSON, body(firstname=""), 400, "invalid_request"),
    ("lastname blank", "POST", BUY, JSON, body(lastname="   "), 400, "invalid_request"),
    ("firstname nul", "POST", BUY, JSON, body(firstname="Iv\u0000an"), 400, "invalid_request"),
    ("lastname nul", "POST", BUY, JSON, body(lastname="\u0000"), 400, "invalid_request"),
    ("firstname newline", "POST", BUY, JSON, body(firstname="Ivan\nIvanov"), 400, "invalid_request"),
    ("pass number nul", "POST", BUY, JSON, body(passNumber="43\u000022"), 400, "invalid_request"),
    ("pass number empty", "POST", BUY, JSON, body(passNumber=""), 400, "invalid_request"),
    ("pass number 33 chars", "POST", BUY, JSON, body(passNumber="1" * 33), 400, "invalid_request"),
    ("pass number symbols", "POST", BUY, JSON, body(passNumber="<script>"), 400, "invalid_request"),
    ("email no at", "POST", BUY, JSON, body(email="ivan.mail.com"), 400, "invalid_request"),
    ("email no domain dot", "POST", BUY, JSON, body(email="ivan@mail"), 400, "invalid_request"),
    ("email two ats", "POST", BUY, JSON, body(email="ivan@mail@mail.com"), 400, "invalid_request"),
    ("email empty", "POST", BUY, JSON, body(email=""), 400, "invalid_request"),
    ("email spaces", "POST", BUY, JSON, body(email="ivan ivanov@mail.com"), 400, "invalid_request"),
    ("email nul", "POST", BUY, JSON, body(email="ivan\u0000@mail.com"), 400, "invalid_request"),
    ("email 255 chars", "POST", BUY, JSON, body(email=EMAIL_255_CHARS), 400, "invalid_request"),
    # The same checks guard book and cancel-reservation.
    ("book malformed", "POST", "/api/v1/tickets/book", JSON, raw("{"), 400, "invalid_json"),
    ("book ticket id zero", "POST", "/api/v1/tickets/book", JSON, body(0), 400, "invalid_request"),
    ("book text plain", "POST", "/api/v1/tickets/book", {"Content-Type": "text/plain"}, body(), 415, "unsupported_media_type"),
    ("cancel malformed", "POST", "/api/v1/tickets/cancel-reservation", JSON, raw("{"), 400, "invalid_json"),
    ("cancel bad email", "POST", "/api/v1/tickets/cancel-reservation", JSON, body(email="x"), 400, "invalid_request"),
    ("cancel empty body", "POST", "/api/v1/tickets/cancel-reservation", JSON, b"", 400, "invalid_json"),
    # Ids in the path.
    ("path id zero", "GET", "/api/v1/tickets/flight-0", {}, None, 400, "invalid_request"),
    ("path id letters", "GET", "/api/v1/tickets/flight-abc", {}, None, 400, "invalid_request"),
    ("path id negative", "GET", "/api/v1/tickets/flight--1", {}, None, 400, "invalid_request"),
    ("path id fraction", "GET", "/api/v1/tickets/flight-1.5", {}, None, 400, "invalid_request"),
    ("path id 2**63", "GET", f"/api/v1/tickets/flight-{2**63}", {}, None, 400, "invalid_request"),
    ("path id huge", "GET", "/api/v1/tickets/flight-99999999999999999999999", {}, None, 400, "invalid_request"),
    ("path id non-ascii digits", "GET", "/api/v1/tickets/flight-%D9%A3", {}, None, 400, "invalid_request"),
    ("path id missing", "GET", "/api/v1/tickets/flight-", {}, None, 404, "not_found"),
    # Methods and paths.
    ("get buy", "GET", BUY, {}, None, 405, "method_not_allowed"),
    ("put book", "PUT", "/api/v1/tickets/book", JSON, body(), 405, "method_not_allowed"),
    ("delete cancel", "DELETE", "/api/v1/tickets/cancel-reservation", {}, None, 405, "method_not_allowed"),
    ("post flights", "POST", "/api/v1/flights", JSON, body(), 405, "method_not_allowed"),
    ("post tickets list", "POST", "/api/v1/tickets/flight-1", JSON, body(), 405, "method_not_allowed"),
    ("unknown path", "GET", "/api/v1/nothing", {}, None, 404, "not_found"),
    ("unknown action", "POST", "/api/v1/tickets/sell", JSON, body(), 404, "not_found"),
    ("root", "GET", "/", {}, None, 404, "not_found"),
    ("old version", "GET", "/api/v2/flights", {}, None, 404, "not_found"),
]


@pytest.fixture
async def seeded_server(live_server) -> AsyncIterator[Any]:
    """The live server over one flight of three seats with ticket ids 1, 2 and 3."""
    _, tickets = await seed_flight(live_server.database, seats=3)
    assert tickets == [1, 2, 3]
    yield live_server


@pytest.mark.parametrize(
    ("method", "path", "headers", "content", "status", "code"),
    [case[1:] for case in BAD_REQUESTS],
    ids=[case[0] for case in BAD_REQUESTS],
)
async def test_bad_request(seeded_server, method, path, headers, content, status, code):
    before = await snapshot(seeded_server.database)

    response = await seeded_server.client.request(method, path, headers=headers, content=content)

    assert_error(response, status, code)
    assert await snapshot(seeded_server.database) == before


async def test_405_lists_allowed_methods(seeded_server):
    response = await seeded_server.client.get(BUY)

    assert "POST" in response.headers["allow"]


async def test_json_with_charset_accepted(seeded_server):
    headers = {"Content-Type": "application/json; charset=utf-8"}

    response = await seeded_server.client.post(BUY, headers=headers, content=body())

    assert response.status_code == 201


async def test_extra_fields_ignored(seeded_server):
    content = json.dumps({"ticketId": 1, "passenger": {**IVAN, "age": 30}, "coupon": "FREE"}).encode()

    response = await seeded_server.client.post(BUY, headers=JSON, content=content)

    assert response.status_code == 201


async def test_name_100_chars_accepted(seeded_server):
    response = await seeded_server.client.post(BUY, headers=JSON, content=body(firstname="a" * 100))

    assert response.status_code == 201


# Oversized bodies ------------------------------------------------------

MAX_BODY = 256


@pytest.fixture
async def small_body_server(live_server_factory) -> AsyncIterator[Any]:
    server = await live_server_factory(max_body_bytes=MAX_BODY)
    _, tickets = await seed_flight(server.database, seats=3)
    assert tickets == [1, 2, 3]
    yield server


def oversized_body() -> bytes:
    content = body(firstname="a" * 100, lastname="b" * 100)
    content = content.replace(b'"ticketId"', b'"padding": "' + b" " * (4 * MAX_BODY) + b'", "ticketId"')
    assert len(content) > MAX_BODY
    return content


async def test_body_limit_content_length(small_body_server):
    before = await snapshot(small_body_server.database)

    response = await small_body_server.client.post(BUY, headers=JSON, content=oversized_body())

    assert_error(response, 413, "body_too_large")
    assert await snapshot(small_body_server.database) == before


async def test_body_limit_chunked(small_body_server):
    content = oversized_body()
    before = await snapshot(small_body_server.database)

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(content), 100):
            yield content[start : start + 100]

    response = await small_body_server.client.post(BUY, headers=JSON, content=chunks())

    assert response.request.headers["transfer-encoding"] == "chunked"
    assert "content-length" not in response.request.headers
    assert_error(response, 413, "body_too_large")
    assert await snapshot(small_body_server.database) == before


async def test_body_under_limit_accepted(small_body_server):
    content = body()
    assert len(content) <= MAX_BODY

    response = await small_body_server.client.post(BUY, headers=JSON, content=content)

    assert response.status_code == 201
