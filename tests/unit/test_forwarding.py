"""The forwarding protocol without sockets: commands, replies and errors survive the trip, frames split right."""

from __future__ import annotations

from datetime import UTC, datetime

import pydantic_core
import pytest
import trio
import trio.testing

from api.forwarding import (
    FRAME_HEADER,
    MAX_FRAME_BYTES,
    FrameReader,
    ProtocolError,
    decode_command,
    decode_error,
    decode_reply,
    decode_request,
    decode_response,
    encode_command,
    encode_error,
    encode_reply,
    encode_request,
    frame,
)
from api.idempotency import request_hash
from api.outcomes import render_event_applied, render_reservation_canceled, render_seat_created
from engine.commands import (
    Book,
    Buy,
    CancelFlight,
    CancelReservation,
    CloseSales,
    EventReply,
    ListTickets,
    SeatReply,
    TicketsReply,
)
from engine.errors import (
    CommitFailed,
    FlightNotFound,
    OwnerUnavailable,
    SeatRuleViolation,
    ServiceUnavailable,
    TicketUnavailable,
)
from engine.idempotency import IdempotentRequest
from engine.ownership import Holder, NotOwner
from engine.seats import FlightInfo, Passenger, TicketStatus, TicketView

PASSENGER = Passenger("ivan@mail.com", "4322-22-333-45", "Ivan", "Иванов")
MOMENT = datetime(2026, 12, 4, 20, 26, 15, 123456, tzinfo=UTC)
FLIGHT = FlightInfo(7, "SU", "Moscow", "Berlin", MOMENT)


def round_trip(value):
    """JSON-encode and decode, as the wire does."""
    return pydantic_core.from_json(pydantic_core.to_json(value))


@pytest.mark.parametrize(
    "command",
    [
        Book(5, PASSENGER),
        Buy(5, PASSENGER),
        CancelReservation(5, PASSENGER),
        ListTickets(),
        CloseSales(MOMENT),
        CancelFlight(MOMENT),
    ],
)
def test_command_round_trip(command):
    assert decode_command(round_trip(encode_command(command))) == command


def test_request_round_trip_without_key():
    forwarded = decode_request(encode_request(7, Buy(5, PASSENGER), 2.5))

    assert forwarded.flight_id == 7
    assert forwarded.timeout == 2.5
    assert forwarded.command == Buy(5, PASSENGER)
    assert forwarded.idempotency is None


@pytest.mark.parametrize(
    ("command", "render"),
    [
        (Buy(5, PASSENGER), render_seat_created),
        (Book(5, PASSENGER), render_seat_created),
        (CancelReservation(5, PASSENGER), render_reservation_canceled),
        (CloseSales(MOMENT), render_event_applied),
        (CancelFlight(MOMENT), render_event_applied),
    ],
)
def test_request_round_trip_with_key(command, render):
    fingerprint = request_hash("POST", "/api/v1/tickets/buy", b'{"ticketId": 5}')
    # The owner picks the render by command type and never receives the sender's.
    sent = IdempotentRequest("key-0b6f2a4e", fingerprint, lambda outcome: (500, b""))

    forwarded = decode_request(encode_request(7, command, 2.5, sent))

    assert forwarded.command == command
    assert forwarded.idempotency is not None
    assert forwarded.idempotency.key == "key-0b6f2a4e"
    assert forwarded.idempotency.request_hash == fingerprint
    assert forwarded.idempotency.render is render


def test_request_carries_hash_as_hex():
    fingerprint = bytes(range(32))
    sent = IdempotentRequest("k", fingerprint, render_seat_created)

    payload = pydantic_core.from_json(encode_request(7, Buy(5, PASSENGER), 2.5, sent))

    assert payload["idempotency"] == {"key": "k", "request_hash": fingerprint.hex()}


VALID_HASH = "ab" * 32
BUY = encode_command(Buy(5, PASSENGER))


@pytest.mark.parametrize(
    ("idempotency", "command", "message"),
    [
        ("k", BUY, "must be an object"),
        ({"request_hash": VALID_HASH}, BUY, "key must be"),
        ({"key": "", "request_hash": VALID_HASH}, BUY, "key must be"),
        ({"key": "with space", "request_hash": VALID_HASH}, BUY, "key must be"),
        ({"key": "k" * 256, "request_hash": VALID_HASH}, BUY, "key must be"),
        ({"key": 17, "request_hash": VALID_HASH}, BUY, "key must be"),
        ({"key": "k"}, BUY, "request_hash must be a hex string"),
        ({"key": "k", "request_hash": "zz" * 32}, BUY, "request_hash must be a hex string"),
        ({"key": "k", "request_hash": 12}, BUY, "request_hash must be a hex string"),
        ({"key": "k", "request_hash": "ab" * 31}, BUY, "must be 32 bytes"),
        ({"key": "k", "request_hash": VALID_HASH}, ["list_tickets"], "does not take an Idempotency-Key"),
    ],
)
def test_request_invalid_idempotency_rejected(idempotency, command, message):
    payload = pydantic_core.to_json({"flight": 7, "timeout": 2.5, "command": command, "idempotency": idempotency})

    with pytest.raises(ProtocolError, match=message):
        decode_request(payload)


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"[]",
        b'"text"',
        b'{"timeout": 1, "command": ["list_tickets"]}',
        b'{"flight": "x", "timeout": 1, "command": ["list_tickets"]}',
        b'{"flight": 7, "timeout": 1, "command": ["fly"]}',
    ],
)
def test_request_invalid_rejected(payload):
    with pytest.raises(ProtocolError):
        decode_request(payload)


@pytest.mark.parametrize(
    ("render", "reply"),
    [
        (render_seat_created, SeatReply(FLIGHT, TicketView(5, 5, TicketStatus.BOOKED, MOMENT, None), PASSENGER)),
        (render_seat_created, SeatReply(FLIGHT, TicketView(5, 5, TicketStatus.SOLD, None, MOMENT), PASSENGER)),
        (render_reservation_canceled, SeatReply(FLIGHT, TicketView(5, 5, TicketStatus.AVAILABLE, None, None), PASSENGER)),
        (render_event_applied, EventReply(True)),
        (render_seat_created, TicketUnavailable("ticket 5 is sold, not available")),
    ],
)
def test_owner_render_matches_forwarded_render(render, reply):
    # The owner stores render(reply). The forwarding process renders what
    # came back over the wire, and the client must get the same bytes.
    if isinstance(reply, SeatRuleViolation):
        received = decode_error(round_trip(encode_error(reply)))
    else:
        received = decode_reply(round_trip(encode_reply(reply)))

    assert render(received) == render(reply)


@pytest.mark.parametrize(
    "reply",
    [
        SeatReply(FLIGHT, TicketView(5, 5, TicketStatus.BOOKED, MOMENT, None), PASSENGER),
        SeatReply(FLIGHT, TicketView(5, 5, TicketStatus.SOLD, None, MOMENT), PASSENGER),
        TicketsReply(FLIGHT, [TicketView(1, 1, TicketStatus.AVAILABLE, None, None), TicketView(2, 2, TicketStatus.AVAILABLE, None, None)]),
        TicketsReply(FLIGHT, []),
        EventReply(True),
        EventReply(False),
    ],
)
def test_reply_round_trip(reply):
    assert decode_reply(round_trip(encode_reply(reply))) == reply


@pytest.mark.parametrize(
    "error",
    [
        TicketUnavailable("ticket 5 is sold, not available"),
        FlightNotFound("flight 9 does not exist"),
        CommitFailed("flight 7: the change could not be saved; retry later"),
        OwnerUnavailable("owner silent", retry_after=4),
    ],
)
def test_error_round_trip(error):
    decoded = decode_error(round_trip(encode_error(error)))

    assert type(decoded) is type(error)
    assert str(decoded) == str(error)
    assert decoded.code == error.code
    assert getattr(decoded, "retry_after", None) == getattr(error, "retry_after", None)


@pytest.mark.parametrize(
    ("kind", "base"), [("rule", SeatRuleViolation), ("unavailable", ServiceUnavailable), ("not_found", FlightNotFound)]
)
def test_unknown_error_code_keeps_kind(kind, base):
    decoded = decode_error({"code": "added_later", "kind": kind, "message": "something new"})

    assert isinstance(decoded, base)
    assert decoded.code == "added_later"
    assert str(decoded) == "something new"


def test_response_not_owner_names_holder():
    with pytest.raises(NotOwner) as raised:
        decode_response(pydantic_core.to_json({"not_owner": ["node-b", "10.0.0.2:9000", 1.5]}))

    assert raised.value.holder == Holder("node-b", "10.0.0.2:9000", 1.5)


@pytest.mark.parametrize("payload", [b"not json", b"{}", b'{"reply": ["nonsense"]}', b'{"reply": ["seat", [1]]}'])
def test_response_invalid_raises_protocol_error(payload):
    with pytest.raises(ProtocolError):
        decode_response(payload)


@pytest.mark.parametrize("data", [[], ["fly"], ["buy", "x", []], ["cancel_flight", "yesterday"]])
def test_command_invalid_raises_protocol_error(data):
    with pytest.raises(ProtocolError):
        decode_command(data)


def test_invalid_command_error_hides_passport():
    passport = "4322-22-333-45"

    with pytest.raises(ProtocolError) as raised:
        decode_command(["buy", "not a ticket id", ["ivan@mail.com", passport, "Ivan", "Ivanov"]])

    assert passport not in str(raised.value)
    assert "'buy' command" in str(raised.value)


def test_invalid_reply_error_hides_passport():
    passport = "4322-22-333-45"
    payload = pydantic_core.to_json({"reply": ["seat", [1], [2], ["ivan@mail.com", passport, "Ivan", "Ivanov"]]})

    with pytest.raises(ProtocolError) as raised:
        decode_response(payload)

    assert passport not in str(raised.value)


async def test_frame_reader_splits_chunked_stream():
    send, receive = trio.testing.memory_stream_one_way_pair()
    payloads = [b"first", b"", b"x" * 70_000, "третий".encode()]
    data = b"".join(frame(number, payload) for number, payload in enumerate(payloads, start=1))
    reader = FrameReader(receive)

    async def feed() -> None:
        for start in range(0, len(data), 3001):
            await send.send_all(data[start : start + 3001])
        await send.aclose()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(feed)
        received = [await reader.receive() for _ in payloads]
        assert await reader.receive() is None

    assert received == list(enumerate(payloads, start=1))


async def test_frame_reader_rejects_oversized_frame():
    send, receive = trio.testing.memory_stream_one_way_pair()
    await send.send_all(FRAME_HEADER.pack(MAX_FRAME_BYTES + 1, 1))

    with pytest.raises(ProtocolError, match="exceeds the limit"):
        await FrameReader(receive).receive()


async def test_frame_reader_rejects_truncated_frame():
    send, receive = trio.testing.memory_stream_one_way_pair()
    await send.send_all(frame(1, b"complete payload")[:-3])
    await send.aclose()

    with pytest.raises(ProtocolError, match="inside a frame"):
        await FrameReader(receive).receive()
