"""Forwarding over real loopback sockets: a broken connection fails its calls, not the process."""

from __future__ import annotations

import socket
import struct
from datetime import UTC, datetime

import pytest
import trio

from api.forwarding import ConnectionForwarder, ForwardingServer, FrameReader, frame
from api.outcomes import render_reservation_canceled
from engine.commands import Buy, CancelReservation, SeatReply
from engine.errors import ForwardFailed
from engine.idempotency import IdempotentRequest
from engine.ownership import Holder, PeerUnreachable
from engine.seats import FlightInfo, Passenger, TicketStatus, TicketView

pytestmark = pytest.mark.trio

PASSENGER = Passenger("ivan@mail.com", "4322-000001", "Ivan", "Ivanov")
NOW = datetime(2026, 12, 4, 20, 0, tzinfo=UTC)
REPLY = SeatReply(FlightInfo(1, "SU", "Moscow", "Berlin", NOW), TicketView(5, 5, TicketStatus.SOLD, None, NOW), PASSENGER)


class ReplyingRegistry:
    def __init__(self) -> None:
        self.idempotency: list[IdempotentRequest | None] = []

    async def ask_owned(self, flight_id, command, deadline, *, idempotency=None):
        self.idempotency.append(idempotency)
        await trio.sleep(0.001)
        return REPLY


async def listen(nursery: trio.Nursery, handler) -> Holder:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    nursery.start_soon(trio.serve_listeners, handler, listeners)
    return Holder("node-b", f"127.0.0.1:{listeners[0].socket.getsockname()[1]}", 5.0)


async def reset_after_first_frame(stream: trio.SocketStream) -> None:
    await FrameReader(stream).receive()
    # SO_LINGER with a zero timeout makes close() send RST, as a killed
    # process's kernel does for a connection with unread data.
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    stream.socket.close()


async def test_pipelined_calls_get_their_replies(nursery):
    holder = await listen(nursery, ForwardingServer(ReplyingRegistry()).handle_connection)
    forwarder = ConnectionForwarder(nursery, reply_grace=1.0, stall_timeout=5.0)
    replies = []

    async def forward() -> None:
        replies.append(await forwarder.forward(holder, 1, Buy(5, PASSENGER), trio.current_time() + 5))

    async with trio.open_nursery() as calls:
        for _ in range(100):
            calls.start_soon(forward)

    assert replies == [REPLY] * 100


async def test_reset_connection_fails_calls_only(nursery):
    holder = await listen(nursery, reset_after_first_frame)
    forwarder = ConnectionForwarder(nursery, reply_grace=1.0, stall_timeout=5.0)

    with pytest.raises(ForwardFailed, match="may have been applied"):
        await forwarder.forward(holder, 1, Buy(5, PASSENGER), trio.current_time() + 5)
    await trio.sleep(0.05)

    # The forwarder and its nursery survive and connect again.
    with pytest.raises(ForwardFailed):
        await forwarder.forward(holder, 1, Buy(5, PASSENGER), trio.current_time() + 5)


async def test_refused_connection_is_unreachable(nursery):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    forwarder = ConnectionForwarder(nursery, reply_grace=1.0, stall_timeout=5.0)

    with pytest.raises(PeerUnreachable, match="cannot connect"):
        await forwarder.forward(Holder("node-b", f"127.0.0.1:{port}", 5.0), 1, Buy(5, PASSENGER), trio.current_time() + 5)


async def test_client_reset_leaves_server_serving(nursery):
    server = ForwardingServer(ReplyingRegistry())
    holder = await listen(nursery, server.handle_connection)
    host, port = holder.address.rsplit(":", 1)

    stream = await trio.open_tcp_stream(host, int(port))
    await stream.send_all(struct.pack(">II", 5, 1) + b"{bad}")
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    stream.socket.close()
    await trio.sleep(0.05)

    forwarder = ConnectionForwarder(nursery, reply_grace=1.0, stall_timeout=5.0)
    assert await forwarder.forward(holder, 1, Buy(5, PASSENGER), trio.current_time() + 5) == REPLY


async def test_silent_owner_fails_call_after_stall_timeout(nursery):
    async def swallow(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()

    holder = await listen(nursery, swallow)
    forwarder = ConnectionForwarder(nursery, reply_grace=10.0, stall_timeout=0.3)
    start = trio.current_time()

    with pytest.raises(ForwardFailed, match="did not reply in time"):
        await forwarder.forward(holder, 1, Buy(5, PASSENGER), start + 5)

    assert trio.current_time() - start < 2.0


async def test_keyed_call_rebuilds_idempotency(nursery):
    registry = ReplyingRegistry()
    holder = await listen(nursery, ForwardingServer(registry).handle_connection)
    forwarder = ConnectionForwarder(nursery, reply_grace=1.0, stall_timeout=5.0)
    sent = IdempotentRequest("cancel-1", bytes(range(32)), lambda outcome: (500, b""))

    await forwarder.forward(holder, 1, CancelReservation(5, PASSENGER), trio.current_time() + 5, idempotency=sent)
    await forwarder.forward(holder, 1, Buy(5, PASSENGER), trio.current_time() + 5)

    keyed, unkeyed = registry.idempotency
    assert keyed is not None
    assert keyed.key == "cancel-1"
    assert keyed.request_hash == bytes(range(32))
    assert keyed.render is render_reservation_canceled
    assert unkeyed is None


async def test_invalid_idempotency_answered_invalid_forward(nursery):
    registry = ReplyingRegistry()
    holder = await listen(nursery, ForwardingServer(registry).handle_connection)
    host, port = holder.address.rsplit(":", 1)
    stream = await trio.open_tcp_stream(host, int(port))
    bad = (
        b'{"flight": 1, "timeout": 5, "command": ["buy", 5, ["ivan@mail.com", "4322-000001", "Ivan", "Ivanov"]],'
        b' "idempotency": {"key": "k", "request_hash": "not hex"}}'
    )
    good = bad.replace(b'"not hex"', b'"' + b"ab" * 32 + b'"')

    await stream.send_all(frame(1, bad) + frame(2, good))
    reader = FrameReader(stream)
    replies = dict([await reader.receive(), await reader.receive()])
    await stream.aclose()

    assert b'"invalid_forward"' in replies[1]
    assert b"request_hash must be a hex string" in replies[1]
    assert replies[2].startswith(b'{"reply":')
    assert len(registry.idempotency) == 1
