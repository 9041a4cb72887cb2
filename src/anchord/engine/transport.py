"""The real upstream transport: one DNS query over UDP or TCP to one server.

Spoofing resistance (RFC 5452): every UDP query gets a fresh socket on a random source
port and a random 16-bit ID, both from the OS's CSPRNG. The socket is connected, so the
kernel already drops datagrams from any other address or port, and ICMP errors reach us
as exceptions; a datagram from the right source still has to match ID, QR and question
(name case-insensitively, type, class), otherwise it is ignored and the wait goes on: a
blind spoofer must never be able to end the wait early.

Timeouts are given in resolver seconds and converted with `clock.real_seconds()`, so a
scaled simulated clock shortens real waits; RTTs are measured on the same clock. Every
failure is a value (UpstreamResult with an UpstreamError), never an exception.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import struct
from random import SystemRandom
from typing import Protocol

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode

from anchord.core.ports import ServerAddress, UpstreamError, UpstreamResult
from anchord.core.wire import parse_response
from anchord.engine.clock import SystemClock

_RANDOM = SystemRandom()
_PORT_LOW = 1024  # never an unprivileged-reserved or well-known source port
_PORT_TRIES = 8  # random ports tried before letting the kernel pick one
_MAX_UDP = 65535
# Rcodes a server may answer with an empty question section (it could not parse ours).
_NO_QUESTION_OK = (dns.rcode.FORMERR, dns.rcode.NOTIMP, dns.rcode.SERVFAIL, dns.rcode.REFUSED)
# What dnspython raises for a response it cannot parse (FormError covers ShortHeader,
# TrailingJunk, BadEDNS, BadPointer, BadLabelType, NameTooLong and wrapped rdata errors).
_PARSE_ERRORS = (
    dns.exception.FormError,
    dns.exception.SyntaxError,  # LabelTooLong
    dns.message.UnknownHeaderField,
    dns.message.UnknownTSIGKey,
)


class _RealClock(Protocol):
    def now(self) -> float: ...

    def real_seconds(self, seconds: float) -> float: ...


class _Mismatch(Exception):
    """The datagram is not the answer to our query (internal signal, never escapes)."""


def _check_response(
    wire: bytes, qid: int, request: dns.message.Message
) -> dns.message.Message:
    """Parse `wire` and check it answers `request` sent with `qid`.

    Raises _Mismatch for something that is not ours (ID, QR, question), and one of
    _PARSE_ERRORS when the ID matched but the message cannot be parsed.
    """
    # Cheap checks on the raw header first: most spoofed or stray packets stop here.
    if len(wire) < 12:
        raise _Mismatch
    rid, flags = struct.unpack_from("!HH", wire)
    if rid != qid or not flags & dns.flags.QR:
        raise _Mismatch
    try:
        response = parse_response(wire)  # records with unreadable rdata left out
    except _PARSE_ERRORS:
        if not flags & dns.flags.TC:
            raise
        # A truncated UDP answer may be cut mid-record; its question still says
        # whether it is ours, and the caller only needs TC to retry over TCP.
        response = dns.message.from_wire(wire, question_only=True)
    if not question_matches(response, request):
        raise _Mismatch
    return response


def question_matches(response: dns.message.Message, request: dns.message.Message) -> bool:
    """Does the response's opcode and question say it answers `request`? (An error
    rcode may come with no question: the server could not parse ours.) The replay's
    scripted transport asks this too, so what the network code drops it drops."""
    if response.opcode() != request.opcode():
        return False
    if not response.question:
        return not request.question or response.rcode() in _NO_QUESTION_OK
    if len(response.question) != len(request.question):
        return False
    # Name equality in dnspython is case-insensitive (0x20 randomised queries).
    return all(got.name == sent.name and got.rdtype == sent.rdtype
               and got.rdclass == sent.rdclass
               for got, sent in zip(response.question, request.question, strict=True))


class _UdpWaiter(asyncio.DatagramProtocol):
    """Collects the one matching datagram for one query on one connected socket."""

    def __init__(self, qid: int, request: dns.message.Message,
                 done: asyncio.Future[dns.message.Message | UpstreamError]) -> None:
        self.qid = qid
        self.request = request
        self.done = done
        self.ignored = 0

    def datagram_received(self, data: bytes, addr: tuple[str, int] | object) -> None:
        if self.done.done():
            return
        try:
            response = _check_response(data, self.qid, self.request)
        except _Mismatch:
            self.ignored += 1  # not ours: keep waiting
            return
        except _PARSE_ERRORS:
            self.done.set_result(UpstreamError.MALFORMED)
            return
        self.done.set_result(response)

    def error_received(self, exc: Exception) -> None:
        # ICMP port/host unreachable on a connected UDP socket.
        if not self.done.done():
            self.done.set_result(UpstreamError.NETWORK)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(UpstreamError.NETWORK)


def _udp_socket(server: ServerAddress) -> socket.socket:
    """A non-blocking UDP socket on a random source port, connected to `server`."""
    family = socket.AF_INET6 if ":" in server.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        any_addr = "::" if family == socket.AF_INET6 else "0.0.0.0"
        for _ in range(_PORT_TRIES):
            try:
                sock.bind((any_addr, _RANDOM.randint(_PORT_LOW, 65535)))
                break
            except OSError as e:
                if e.errno not in (errno.EADDRINUSE, errno.EACCES):
                    raise
        else:
            sock.bind((any_addr, 0))  # the kernel's ephemeral ports are random too
        sock.connect((server.host, server.port))
    except OSError:
        sock.close()
        raise
    return sock


_OPT_NO_OPTIONS = struct.Struct("!BHHIH")  # root owner, type 41, payload, flags, rdlen 0


def _plain_query_wire(request: dns.message.Message, qid: int) -> bytes | None:
    """request.to_wire() with `qid` as its ID, built directly for the shape the iterator
    sends (one absolute question, at most an OPT record without options, nothing else):
    dnspython renders it through a Renderer and a fresh OPT rdata, a few tens of µs per
    query. The bytes are the same (tests/test_transport.py compares them); None for any
    other shape, which dnspython renders."""
    if len(request.question) != 1 or request.answer or request.authority \
            or request.additional or request.tsig is not None or request.pad:
        return None
    question = request.question[0]
    if not question.name.is_absolute():
        return None
    opt = request.opt
    if opt is not None and (len(opt) != 1 or opt[0].options):
        return None
    header = struct.pack("!HHHHHH", qid, request.flags, 1, 0, 0, 0 if opt is None else 1)
    name = question.name.to_wire()  # uncompressed: bytes (typed Optional for file use)
    assert name is not None
    body = name + struct.pack("!HH", question.rdtype, question.rdclass)
    if opt is None:
        return header + body
    return header + body + _OPT_NO_OPTIONS.pack(0, 41, opt.rdclass, opt.ttl, 0)


class NetworkTransport:
    """The `Transport` port over real sockets (asyncio low-level APIs; uvloop-safe)."""

    def __init__(self, clock: _RealClock | None = None) -> None:
        self.clock: _RealClock = clock if clock is not None else SystemClock()

    async def query(
        self,
        server: ServerAddress,
        request: dns.message.Message,
        *,
        tcp: bool = False,
        timeout: float = 1.5,
    ) -> UpstreamResult:
        qid = _RANDOM.getrandbits(16)
        # The core built the message (flags, EDNS); we only stamp our own ID on the
        # wire copy, leaving the caller's object untouched.
        wire = _plain_query_wire(request, qid)
        if wire is None:
            wire = struct.pack("!H", qid) + request.to_wire()[2:]
        real_timeout = self.clock.real_seconds(timeout)
        started = self.clock.now()
        if tcp:
            outcome = await self._tcp(server, wire, qid, request, real_timeout)
        else:
            outcome = await self._udp(server, wire, qid, request, real_timeout)
        rtt = max(0.0, self.clock.now() - started)
        if isinstance(outcome, UpstreamError):
            return UpstreamResult(server, None, outcome, rtt, tcp)
        return UpstreamResult(server, outcome, None, rtt, tcp)

    async def _udp(self, server: ServerAddress, wire: bytes, qid: int,
                   request: dns.message.Message, real_timeout: float
                   ) -> dns.message.Message | UpstreamError:
        # The socket is watched with add_reader rather than wrapped in a datagram
        # transport: create_datagram_endpoint costs an extra loop turn and several
        # objects per query, wait_for another future and callbacks, and a cold name
        # makes three or more upstream queries. The waiter's rules are unchanged.
        loop = asyncio.get_running_loop()
        try:
            sock = _udp_socket(server)
        except OSError:
            return UpstreamError.NETWORK
        done: asyncio.Future[dns.message.Message | UpstreamError] = loop.create_future()
        waiter = _UdpWaiter(qid, request, done)

        def readable() -> None:
            while not done.done():
                try:
                    data = sock.recv(_MAX_UDP)
                except (BlockingIOError, InterruptedError):
                    return
                except OSError as e:  # ICMP unreachable on the connected socket
                    waiter.error_received(e)
                    return
                waiter.datagram_received(data, None)

        def expired() -> None:
            if not done.done():
                done.set_result(UpstreamError.TIMEOUT)

        fd = sock.fileno()
        timer: asyncio.TimerHandle | None = None
        try:
            loop.add_reader(fd, readable)
            await loop.sock_sendall(sock, wire)
            timer = loop.call_later(real_timeout, expired)
            return await done
        except OSError:
            return UpstreamError.NETWORK
        finally:
            if timer is not None:
                timer.cancel()
            loop.remove_reader(fd)
            sock.close()

    async def _tcp(self, server: ServerAddress, wire: bytes, qid: int,
                   request: dns.message.Message, real_timeout: float
                   ) -> dns.message.Message | UpstreamError:
        try:
            async with asyncio.timeout(real_timeout):
                reader, writer = await asyncio.open_connection(server.host, server.port)
                try:
                    writer.write(struct.pack("!H", len(wire)) + wire)
                    await writer.drain()
                    (length,) = struct.unpack("!H", await reader.readexactly(2))
                    data = await reader.readexactly(length)
                finally:
                    writer.close()
        except TimeoutError:
            return UpstreamError.TIMEOUT
        except (OSError, asyncio.IncompleteReadError):
            return UpstreamError.NETWORK
        try:
            return _check_response(data, qid, request)
        except (_Mismatch, *_PARSE_ERRORS):
            # On our own TCP connection nothing else can arrive: a mismatch is a
            # broken server, not a spoof to wait out.
            return UpstreamError.MALFORMED


__all__ = ["NetworkTransport", "question_matches"]
