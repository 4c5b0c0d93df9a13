"""Forward flight commands to the process that owns the flight, and serve the ones forwarded here.

Each process listens on an internal TCP port and publishes its address with
its leases. A process that gets a command for a flight it does not own sends
it to the owner over one persistent connection per owner. Requests are
pipelined: each frame is a 4-byte payload length, a 4-byte request id and a
JSON payload, many requests may wait on one connection, and replies come
back in any order, matched by id. The owner runs the command on its actor
and returns the engine's reply or error, which the forwarding process
renders exactly as the owner would have.

A command sent with an Idempotency-Key carries the key and the request's
SHA-256 hash (hex), but no render function: the owner takes the one for the
command's type from ``api.outcomes.RENDERS``, which the forwarding process
renders its reply with too, so the response the owner stores for replays is
byte-identical to the one the client got. An owner of an earlier version
ignores the key, so it stores nothing and a retry runs the command again.

The internal port runs any command it receives, the webhook's events
included, without checking a secret: it must be reachable only from the
service's own processes (loopback, or a private network).
"""

from __future__ import annotations

import itertools
import logging
import math
import struct
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pydantic_core
import trio

from engine.commands import (
    Book,
    Buy,
    CancelFlight,
    CancelReservation,
    CloseSales,
    Command,
    EventReply,
    ListTickets,
    Reply,
    SeatReply,
    TicketsReply,
)
from engine.errors import EngineError, FlightNotFound, ForwardFailed, SeatRuleViolation, ServiceUnavailable
from engine.idempotency import IdempotentRequest
from engine.ownership import Holder, NotOwner, PeerUnreachable
from engine.registry import Registry
from engine.seats import FlightInfo, Passenger, TicketStatus, TicketView

from .idempotency import MAX_KEY_LENGTH, REQUEST_HASH_BYTES, is_valid_key
from .outcomes import RENDERS

log = logging.getLogger(__name__)

# Payload length and request id, both unsigned 32-bit big-endian.
FRAME_HEADER = struct.Struct(">II")
MAX_FRAME_BYTES = 16 * 1024 * 1024
_RECEIVE_BYTES = 65536


class ProtocolError(Exception):
    """A peer sent bytes that are not a valid frame or message."""


# Failures that end one forwarding connection and nothing else.
_CONNECTION_ERRORS = (OSError, trio.BrokenResourceError, trio.ClosedResourceError, ProtocolError)


# Codec ------------------------------------------------------------------


def _time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _encode_passenger(passenger: Passenger) -> list[str]:
    return [passenger.email, passenger.pass_number, passenger.firstname, passenger.lastname]


def _encode_flight(flight: FlightInfo) -> list[Any]:
    return [flight.id, flight.company, flight.departure, flight.arrival, flight.departure_time]


def _encode_ticket(ticket: TicketView) -> list[Any]:
    return [ticket.id, ticket.seat, ticket.status.value, ticket.booked_until, ticket.date_of_sale]


def _decode_flight(data: list[Any]) -> FlightInfo:
    return FlightInfo(data[0], data[1], data[2], data[3], datetime.fromisoformat(data[4]))


def _decode_ticket(data: list[Any]) -> TicketView:
    return TicketView(data[0], data[1], TicketStatus(data[2]), _time(data[3]), _time(data[4]))


_SEAT_COMMANDS: dict[str, type[Book] | type[Buy] | type[CancelReservation]] = {
    "book": Book,
    "buy": Buy,
    "cancel_reservation": CancelReservation,
}


def encode_command(command: Command) -> list[Any]:
    """Return a command as a JSON-ready list whose first item names its type."""
    match command:
        case Book(ticket_id, passenger):
            return ["book", ticket_id, _encode_passenger(passenger)]
        case Buy(ticket_id, passenger):
            return ["buy", ticket_id, _encode_passenger(passenger)]
        case CancelReservation(ticket_id, passenger):
            return ["cancel_reservation", ticket_id, _encode_passenger(passenger)]
        case ListTickets():
            return ["list_tickets"]
        case CloseSales(triggered_at):
            return ["close_sales", triggered_at]
        case CancelFlight(triggered_at):
            return ["cancel_flight", triggered_at]
    raise TypeError(f"cannot forward command {command!r}")


def decode_command(data: list[Any]) -> Command:
    """Rebuild a command from ``encode_command``'s output; raise ProtocolError if it is not one."""
    try:
        kind = data[0]
        if kind in _SEAT_COMMANDS:
            return _SEAT_COMMANDS[kind](int(data[1]), Passenger(*data[2]))
        if kind == "list_tickets":
            return ListTickets()
        if kind == "close_sales":
            return CloseSales(datetime.fromisoformat(data[1]))
        if kind == "cancel_flight":
            return CancelFlight(datetime.fromisoformat(data[1]))
    except (IndexError, KeyError, TypeError, ValueError) as error:
        # The data contains passenger details, so the message names only the
        # type and the logged text carries no passport number.
        raise ProtocolError(f"invalid {_type_name(data)} command: {error}") from error
    raise ProtocolError(f"unknown command type {str(kind)[:40]!r}")


def _type_name(data: object) -> str:
    """Return the type named by an encoded command or reply, for error messages."""
    if isinstance(data, list) and data and isinstance(data[0], str):
        return repr(data[0][:40])
    return "untyped"


def encode_reply(reply: Reply) -> list[Any]:
    """Return a reply as a JSON-ready list whose first item names its type."""
    match reply:
        case SeatReply(flight, ticket, passenger):
            return ["seat", _encode_flight(flight), _encode_ticket(ticket), _encode_passenger(passenger)]
        case TicketsReply(flight, tickets):
            return ["tickets", _encode_flight(flight), [_encode_ticket(ticket) for ticket in tickets]]
        case EventReply(applied):
            return ["event", applied]
    raise TypeError(f"cannot forward reply {reply!r}")


def decode_reply(data: list[Any]) -> Reply:
    """Rebuild a reply from ``encode_reply``'s output; raise ProtocolError if it is not one."""
    try:
        kind = data[0]
        if kind == "seat":
            return SeatReply(_decode_flight(data[1]), _decode_ticket(data[2]), Passenger(*data[3]))
        if kind == "tickets":
            return TicketsReply(_decode_flight(data[1]), [_decode_ticket(ticket) for ticket in data[2]])
        if kind == "event":
            return EventReply(bool(data[1]))
    except (IndexError, KeyError, TypeError, ValueError) as error:
        raise ProtocolError(f"invalid {_type_name(data)} reply: {error}") from error
    raise ProtocolError(f"unknown reply type {str(kind)[:40]!r}")


def _error_classes(base: type[EngineError]) -> dict[str, type[EngineError]]:
    classes = {base.code: base}
    for subclass in base.__subclasses__():
        classes.update(_error_classes(subclass))
    return classes


_ERROR_CLASSES = _error_classes(EngineError)

# The API maps an engine error to a status by its base class, so a code
# this version does not know is rebuilt from its kind.
_KINDS: list[tuple[str, type[EngineError]]] = [
    ("rule", SeatRuleViolation),
    ("not_found", FlightNotFound),
    ("unavailable", ServiceUnavailable),
]


def encode_error(error: EngineError) -> dict[str, Any]:
    kind = next((name for name, base in _KINDS if isinstance(error, base)), "other")
    encoded: dict[str, Any] = {"code": error.code, "kind": kind, "message": str(error)}
    if isinstance(error, ServiceUnavailable):
        encoded["retry_after"] = error.retry_after
    return encoded


def decode_error(data: dict[str, Any]) -> EngineError:
    code = str(data.get("code", "engine_error"))
    message = str(data.get("message", "the owner of the flight failed"))
    cls = _ERROR_CLASSES.get(code) or dict(_KINDS).get(str(data.get("kind")), EngineError)
    error = cls(message)
    if code != cls.code:
        error.code = code
    if "retry_after" in data:
        error.retry_after = int(data["retry_after"])
    return error


@dataclass(frozen=True, slots=True)
class ForwardedRequest:
    """A command another process forwarded, with the seconds left until its deadline."""

    flight_id: int
    timeout: float
    command: Command
    idempotency: IdempotentRequest | None = None


def encode_request(
    flight_id: int, command: Command, timeout: float, idempotency: IdempotentRequest | None = None
) -> bytes:
    message: dict[str, Any] = {"flight": flight_id, "timeout": timeout, "command": encode_command(command)}
    if idempotency is not None:
        message["idempotency"] = {"key": idempotency.key, "request_hash": idempotency.request_hash.hex()}
    return pydantic_core.to_json(message)


def decode_request(payload: bytes) -> ForwardedRequest:
    """Rebuild a request from ``encode_request``'s output; raise ProtocolError if it is not one."""
    try:
        message = pydantic_core.from_json(payload)
        flight_id = int(message["flight"])
        timeout = float(message["timeout"])
        command_data = message["command"]
    except KeyError as error:
        raise ProtocolError(f"missing field {error}") from error
    except (ValueError, TypeError) as error:
        raise ProtocolError(str(error)) from error
    command = decode_command(command_data)
    return ForwardedRequest(flight_id, timeout, command, _decode_idempotency(message.get("idempotency"), command))


def _decode_idempotency(data: Any, command: Command) -> IdempotentRequest | None:
    # The key and hash must meet the rules of the HTTP header and of the
    # table's CHECK constraints, because a row the database rejects fails
    # the flight's whole batch, other callers' commands included.
    if data is None:
        return None
    render = RENDERS.get(type(command))
    if render is None:
        raise ProtocolError(f"command {type(command).__name__} does not take an Idempotency-Key")
    if not isinstance(data, dict):
        raise ProtocolError(f"idempotency must be an object with key and request_hash, got {type(data).__name__}")
    key = data.get("key")
    if not isinstance(key, str) or not is_valid_key(key):
        raise ProtocolError(f"idempotency key must be a string of 1 to {MAX_KEY_LENGTH} visible ASCII characters")
    try:
        request_hash = bytes.fromhex(data["request_hash"])
    except (KeyError, TypeError, ValueError) as error:
        raise ProtocolError(f"idempotency request_hash must be a hex string: {error}") from error
    if len(request_hash) != REQUEST_HASH_BYTES:
        raise ProtocolError(
            f"idempotency request_hash must be {REQUEST_HASH_BYTES} bytes ({REQUEST_HASH_BYTES * 2} hex digits), "
            f"got {len(request_hash)} bytes"
        )
    return IdempotentRequest(key, request_hash, render)


def decode_response(payload: bytes) -> Reply:
    """Return the owner's reply; raise its engine error, or NotOwner if it does not own the flight."""
    try:
        message = pydantic_core.from_json(payload)
    except ValueError as error:
        raise ProtocolError(f"reply is not JSON: {error}") from error
    if "reply" in message:
        return decode_reply(message["reply"])
    if "error" in message:
        raise decode_error(message["error"])
    if "not_owner" in message:
        holder = message["not_owner"]
        raise NotOwner(None if holder is None else Holder(holder[0], holder[1], float(holder[2])))
    fields = ", ".join(sorted(str(key)[:40] for key in message)[:10]) if isinstance(message, dict) else type(message).__name__
    raise ProtocolError(f"reply has no known field; it has: {fields}")


def frame(request_id: int, payload: bytes) -> bytes:
    if len(payload) > MAX_FRAME_BYTES:
        raise ProtocolError(f"message of {len(payload)} bytes exceeds the frame limit of {MAX_FRAME_BYTES}")
    return FRAME_HEADER.pack(len(payload), request_id) + payload


class FrameReader:
    """Splits a byte stream into (request id, payload) frames."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self._stream = stream
        self._buffer = bytearray()
        self._frames: list[tuple[int, bytes]] = []

    async def receive(self) -> tuple[int, bytes] | None:
        """Return the next frame, or None when the peer closed the stream between frames."""
        while not self._frames:
            data = await self._stream.receive_some(_RECEIVE_BYTES)
            if not data:
                if self._buffer:
                    raise ProtocolError(f"connection closed inside a frame ({len(self._buffer)} bytes pending)")
                return None
            self._buffer += data
            self._split()
        return self._frames.pop(0)

    def _split(self) -> None:
        buffer = self._buffer
        offset = 0
        while len(buffer) - offset >= FRAME_HEADER.size:
            length, request_id = FRAME_HEADER.unpack_from(buffer, offset)
            if length > MAX_FRAME_BYTES:
                raise ProtocolError(f"frame of {length} bytes exceeds the limit of {MAX_FRAME_BYTES}")
            end = offset + FRAME_HEADER.size + length
            if end > len(buffer):
                break
            self._frames.append((request_id, bytes(buffer[offset + FRAME_HEADER.size : end])))
            offset = end
        del buffer[:offset]


async def _write_frames(stream: trio.abc.SendStream, frames: trio.MemoryReceiveChannel[bytes]) -> None:
    # Frames queued while a send is under way leave in one send_all.
    async for first in frames:
        batch = [first]
        while True:
            try:
                batch.append(frames.receive_nowait())
            except trio.WouldBlock:
                break
        await stream.send_all(b"".join(batch))


# Owner side -----------------------------------------------------------------


class ForwardingServer:
    """Runs commands that other processes forwarded on this process's registry."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    async def handle_connection(self, stream: trio.SocketStream) -> None:
        peer = _peer_name(stream)
        log.info("forwarding connection from %s opened", peer)
        replies_in, replies_out = trio.open_memory_channel[bytes](math.inf)
        reader = FrameReader(stream)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_write_frames, stream, replies_out)
                while True:
                    received = await reader.receive()
                    if received is None:
                        break
                    request_id, payload = received
                    nursery.start_soon(self._answer, request_id, payload, replies_in)
                nursery.cancel_scope.cancel()
        # The nursery wraps errors in groups; any of them must end only this
        # connection, never the listener and with it the server.
        except* _CONNECTION_ERRORS as group:
            log.warning("forwarding connection from %s failed: %s", peer, group.exceptions[0])
        except* Exception as group:
            log.error("forwarding connection from %s failed unexpectedly", peer, exc_info=group)
        finally:
            await trio.aclose_forcefully(stream)
        log.info("forwarding connection from %s closed", peer)

    async def _answer(self, request_id: int, payload: bytes, replies: trio.MemorySendChannel[bytes]) -> None:
        try:
            forwarded = decode_request(payload)
        except ProtocolError as error:
            log.warning("forwarded request %d is invalid: %s", request_id, error)
            response: dict[str, Any] = {
                "error": {"code": "invalid_forward", "kind": "other", "message": f"invalid forwarded request: {error}"}
            }
        else:
            response = await self._run(forwarded, trio.current_time() + forwarded.timeout)
        replies.send_nowait(frame(request_id, pydantic_core.to_json(response)))

    async def _run(self, forwarded: ForwardedRequest, deadline: float) -> dict[str, Any]:
        flight_id, command = forwarded.flight_id, forwarded.command
        try:
            reply = await self._registry.ask_owned(flight_id, command, deadline, idempotency=forwarded.idempotency)
        except NotOwner as not_owner:
            holder = not_owner.holder
            return {"not_owner": None if holder is None else [holder.owner, holder.address, holder.expires_in]}
        except EngineError as error:
            return {"error": encode_error(error)}
        except Exception:
            log.exception("flight %d: forwarded command %s failed", flight_id, type(command).__name__)
            return {"error": {"code": "internal_error", "kind": "other", "message": "internal error on the flight's owner"}}
        return {"reply": encode_reply(reply)}


def _peer_name(stream: trio.SocketStream) -> str:
    try:
        host, port = stream.socket.getpeername()[:2]
    except OSError:
        return "unknown peer"
    return f"{host}:{port}"


# Forwarding side ----------------------------------------------------------------


@dataclass(eq=False, slots=True)
class _Call:
    done: trio.Event
    payload: bytes | None = None
    error: Exception | None = None
    # The frame was handed to the socket: the owner may have run it.
    written: bool = False
    # The caller stopped waiting before the frame was written: skip it.
    abandoned: bool = False


class _PeerConnection:
    """One persistent, pipelined connection to one owner process."""

    def __init__(self, address: str, nursery: trio.Nursery, *, connect_timeout: float, stall_timeout: float) -> None:
        self.address = address
        host, _, port = address.rpartition(":")
        self._host = host.strip("[]")
        self._port = int(port)
        self._nursery = nursery
        self._connect_timeout = connect_timeout
        self._stall_timeout = stall_timeout
        self._ids = itertools.count(1)
        self._calls: dict[int, _Call] = {}
        self._outbox: trio.MemorySendChannel[tuple[int, bytes, _Call]] | None = None
        self._stream: trio.SocketStream | None = None
        self._connecting = trio.Lock()
        # Last time a reply arrived, or the wait for one began.
        self._last_progress = trio.current_time()

    def _stalled(self) -> bool:
        return bool(self._calls) and trio.current_time() - self._last_progress > self._stall_timeout

    async def call(self, payload: bytes, reply_deadline: float) -> bytes:
        outbox = await self._connected()
        request_id = next(self._ids) & 0xFFFFFFFF
        call = _Call(trio.Event())
        if not self._calls:
            self._last_progress = trio.current_time()
        self._calls[request_id] = call
        outbox.send_nowait((request_id, payload, call))
        try:
            # A silent owner fails its waiting calls after stall_timeout
            # rather than at the deadline plus the commit grace.
            while not call.done.is_set() and trio.current_time() < reply_deadline and not self._stalled():
                with trio.move_on_at(min(reply_deadline, self._last_progress + self._stall_timeout + 0.01)):
                    await call.done.wait()
        finally:
            if not call.done.is_set():
                self._calls.pop(request_id, None)
                call.abandoned = True

        if not call.done.is_set():
            if not call.written:
                raise PeerUnreachable(f"{self.address} did not take the request in time")
            raise ForwardFailed(
                f"the flight's owner at {self.address} did not reply in time; the request may have been applied, "
                "check before retrying"
            )
        if call.error is not None:
            raise call.error
        assert call.payload is not None
        return call.payload

    async def _connected(self) -> trio.MemorySendChannel[tuple[int, bytes, _Call]]:
        async with self._connecting:
            if self._outbox is not None:
                return self._outbox
            try:
                with trio.fail_after(self._connect_timeout):
                    stream = await trio.open_tcp_stream(self._host, self._port)
            except (OSError, trio.TooSlowError) as error:
                raise PeerUnreachable(f"cannot connect to {self.address}: {error or type(error).__name__}") from error
            outbox, frames = trio.open_memory_channel[tuple[int, bytes, _Call]](math.inf)
            self._stream = stream
            self._outbox = outbox
            self._nursery.start_soon(self._run, stream, outbox, frames)
            log.info("forwarding connection to %s opened", self.address)
            return outbox

    async def _run(
        self,
        stream: trio.SocketStream,
        outbox: trio.MemorySendChannel[tuple[int, bytes, _Call]],
        frames: trio.MemoryReceiveChannel[tuple[int, bytes, _Call]],
    ) -> None:
        error: Exception = PeerUnreachable(f"connection to {self.address} closed")
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._write, stream, frames)
                await self._read(stream)
                nursery.cancel_scope.cancel()
        except* _CONNECTION_ERRORS as group:
            error = group.exceptions[0]
            log.warning("forwarding connection to %s failed: %s", self.address, error)
        except* Exception as group:
            error = group.exceptions[0]
            log.error("forwarding connection to %s failed unexpectedly", self.address, exc_info=group)
        finally:
            self._outbox = None
            self._stream = None
            outbox.close()
            self._fail_calls(error, frames)
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(stream)
        log.info("forwarding connection to %s closed", self.address)

    def _fail_calls(self, error: Exception, frames: trio.MemoryReceiveChannel[tuple[int, bytes, _Call]]) -> None:
        calls, self._calls = self._calls, {}
        for call in calls.values():
            if call.written:
                call.error = ForwardFailed(
                    f"the connection to the flight's owner at {self.address} broke after the request was sent "
                    f"({error}); it may have been applied, check before retrying"
                )
            else:
                call.error = PeerUnreachable(f"connection to {self.address} broke before the request was sent: {error}")
            call.done.set()
        frames.close()

    async def _write(self, stream: trio.SocketStream, frames: trio.MemoryReceiveChannel[tuple[int, bytes, _Call]]) -> None:
        async for first in frames:
            batch = [first]
            while True:
                try:
                    batch.append(frames.receive_nowait())
                except trio.WouldBlock:
                    break
            parts = []
            for request_id, payload, call in batch:
                if call.abandoned:
                    continue
                call.written = True
                parts.append(frame(request_id, payload))
            if parts:
                await stream.send_all(b"".join(parts))

    async def _read(self, stream: trio.SocketStream) -> None:
        reader = FrameReader(stream)
        while True:
            received = await reader.receive()
            if received is None:
                return
            request_id, payload = received
            self._last_progress = trio.current_time()
            call = self._calls.pop(request_id, None)
            if call is not None:
                call.payload = payload
                call.done.set()


class ConnectionForwarder:
    """Implements engine.ownership.Forwarder over persistent TCP connections, one per owner address.

    A reply may come up to ``reply_grace`` seconds after the request's
    deadline, because an owner that started a command's transaction before
    the deadline still reports its outcome. Calls waiting on a connection
    that receives nothing for ``stall_timeout`` seconds fail with
    ForwardFailed. The registry then sends that owner nothing more until its
    lease lapses and another process takes its flights.

    NOTE: a live owner whose replies all stop for ``stall_timeout`` (one
    commit blocked that long on a lock) is taken for a silent one: its
    waiting calls get forward_failed and this process stops forwarding to
    it for one lease time.
    """

    def __init__(
        self, nursery: trio.Nursery, *, reply_grace: float, stall_timeout: float, connect_timeout: float = 1.0
    ) -> None:
        self._nursery = nursery
        self._reply_grace = reply_grace
        self._stall_timeout = stall_timeout
        self._connect_timeout = connect_timeout
        self._peers: dict[str, _PeerConnection] = {}

    async def forward(
        self,
        holder: Holder,
        flight_id: int,
        command: Command,
        deadline: float,
        *,
        idempotency: IdempotentRequest | None = None,
    ) -> Reply:
        peer = self._peers.get(holder.address)
        if peer is None:
            peer = self._peers[holder.address] = _PeerConnection(
                holder.address, self._nursery, connect_timeout=self._connect_timeout, stall_timeout=self._stall_timeout
            )
        timeout = max(0.0, deadline - trio.current_time())
        payload = await peer.call(encode_request(flight_id, command, timeout, idempotency), deadline + self._reply_grace)
        try:
            return decode_response(payload)
        except ProtocolError as error:
            log.error("flight %d: invalid reply from its owner at %s: %s", flight_id, holder.address, error)
            raise ForwardFailed(
                f"the flight's owner at {holder.address} sent an invalid reply; the request may have been applied"
            ) from error
