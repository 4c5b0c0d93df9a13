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
    decode_response,
    encode_command,
    encode_error,
    encode_reply,
    frame,
)
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
