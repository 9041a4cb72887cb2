"""Client listeners: UDP and TCP on the configured addresses, access control, counters.

Per query: parse -> resolver.resolve -> render -> send; each accepted query runs as its
own task so one slow resolution never holds up the socket. The frontend decides no DNS
semantics: it renders what the resolver returned (render.py) or what request.py
rejected. With server.workers > 1 sockets are bound with SO_REUSEPORT so the worker
processes can share an address (DESIGN.md, "past one process"); with one worker they are
not, so a second resolver on the same address fails to bind instead of silently taking
half the clients. check_addresses_free lets worker 0 make the same check before forking.
With server.fast_path on Linux, UDP is read and answered in batches (udpbatch.py: one
recvmmsg, one sendmmsg for the fast-path hits); everything else still comes here.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import ipaddress
import logging
import socket
import struct
from dataclasses import dataclass, field
from typing import Any, Protocol

import dns.rcode

from anchord.control.config import ServerConfig, parse_endpoint, parse_network
from anchord.core.outcome import Ede, EdeCode, Outcome, Question
from anchord.frontend import mmsg
from anchord.frontend.fastpath import FastPath, Key, fast_key
from anchord.frontend.render import PROHIBITED, render_outcome, render_rejection
from anchord.frontend.request import ClientQuery, Reason, Rejection, parse_query
from anchord.frontend.udpbatch import BATCH, BatchedUdp

log = logging.getLogger("anchord.frontend")

_MAX_INFLIGHT = 20_000  # queries resolving at once; beyond this new ones are dropped
_TCP_PIPELINE = 64  # queries in flight per TCP connection before we stop reading
_ACL_CACHE = 4096  # source addresses remembered by the access check
_UDP_RCVBUF = 4 << 20  # absorb bursts instead of losing them in the kernel
_LENGTH = struct.Struct("!H")


class Resolver(Protocol):
    async def resolve(self, question: Question, cd: bool) -> Outcome: ...

    async def resolve_norec(self, question: Question, cd: bool) -> Outcome: ...


class _Listener(Protocol):
    def close(self) -> None: ...


@dataclass(slots=True)
class FrontendStats:
    """Counters for metrics; plain ints because only the event loop thread writes them."""

    queries: int = 0
    udp_queries: int = 0
    tcp_queries: int = 0
    responses: collections.Counter[int] = field(default_factory=collections.Counter)
    dropped: int = 0  # no reply sent: unreadable header, QR set, overload
    formerr: int = 0
    refused_acl: int = 0
    truncated: int = 0
    send_dropped: int = 0  # replies not sent: send buffer full past the queue, refused
    crashes: int = 0  # last-resort handler hits: each one is a bug
    tcp_connections: int = 0
    tcp_rejected: int = 0  # connections over max_tcp_clients
    rejections: collections.Counter[str] = field(default_factory=collections.Counter)
    edes: collections.Counter[int] = field(default_factory=collections.Counter)  # by code

    def count_reply(self, wire: bytes) -> None:
        self.responses[wire[3] & 0xF] += 1  # header rcode; extended bits are in the OPT
        if wire[2] & 0x02:
            self.truncated += 1


class AccessControl:
    """Source network check (Unbound's 'allow' / 'refuse'); results cached per address.

    Two caches: `_cache` by the host string (the full path's check) and `raw`, by the
    sender's raw address bytes, for the batched UDP reader's fast path (udpbatch.py):
    it mirrors verdicts already in `_cache`, so a fast-path hit needs no string made
    from the address, and it is emptied whenever `_cache` is.
    """

    def __init__(self, networks: list[str]) -> None:
        self.networks = [parse_network(n) for n in networks]
        self._cache: dict[str, bool] = {}
        self.raw: dict[bytes, bool] = {}

    def allows(self, host: str) -> bool:
        hit = self._cache.get(host)
        if hit is not None:
            return hit
        try:
            ip = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        allowed = any(ip in net for net in self.networks)
        if len(self._cache) >= _ACL_CACHE:
            self.clear()  # crude but bounded: a scan cannot grow it
        self._cache[host] = allowed
        return allowed

    def cached(self, raw: bytes, host: str) -> bool | None:
        """The cached verdict for `host` (None: not checked yet), remembered under its
        raw address bytes too; only a cached verdict is copied, so the first datagram
        from a source always takes the full path and its check."""
        verdict = self._cache.get(host)
        if verdict is not None:
            if len(self.raw) >= _ACL_CACHE:
                self.raw.clear()
            self.raw[raw] = verdict
        return verdict

    def clear(self) -> None:
        """Forget every cached verdict (both caches)."""
        self._cache.clear()
        self.raw.clear()


def _refusal(parsed: ClientQuery | Rejection) -> Rejection:
    """REFUSED for a client outside the ACL, keeping what we could read of its query."""
    if isinstance(parsed, ClientQuery):
        return Rejection(Reason.REFUSED, dns.rcode.REFUSED, parsed.id, parsed.flags,
                         parsed.question, parsed.edns, parsed.do)
    return Rejection(Reason.REFUSED, dns.rcode.REFUSED if parsed.rcode is not None else None,
                     parsed.id, parsed.flags, parsed.question, parsed.edns, parsed.do)


class Frontend:
    """All listeners of one worker, sharing one resolver, one ACL and one stats object."""

    def __init__(self, resolver: Resolver, config: ServerConfig,
                 stats: FrontendStats | None = None) -> None:
        self.resolver = resolver
        self.config = config
        self.stats = stats if stats is not None else FrontendStats()
        self.acl = AccessControl(config.access_control)
        self.bound: list[tuple[str, str, int]] = []  # (proto, host, port) actually bound
        self._udp: list[_Listener] = []  # asyncio transports or BatchedUdp readers
        self._tcp: list[asyncio.AbstractServer] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._tcp_clients = 0
        self._writers: set[asyncio.StreamWriter] = set()
        # Cached answers from pre-rendered bytes (fastpath.py); only with anchord's driver.
        self.fast: FastPath | None = (
            FastPath.attach(resolver, self.stats) if config.fast_path else None)

    # -- the per-query path, shared by UDP and TCP ------------------------------------

    def _accept(self, wire: bytes, host: str, tcp: bool) -> ClientQuery | bytes | None:
        """Check one packet: a query to resolve, an immediate reply, or None (drop)."""
        st = self.stats
        st.queries += 1
        parsed = parse_query(wire, tcp=tcp)
        if not self.acl.allows(host):
            st.refused_acl += 1
            reply = render_rejection(_refusal(parsed), PROHIBITED if parsed.edns else ())
        elif isinstance(parsed, ClientQuery):
            return parsed
        else:
            st.rejections[parsed.reason.value] += 1
            if parsed.reason is Reason.FORMERR:
                st.formerr += 1
            reply = render_rejection(parsed)
            if parsed.edns:  # counted like an answer's EDEs: they are on the wire too
                for ede in parsed.edes:
                    st.edes[int(ede.code)] += 1
        if reply is None:
            st.dropped += 1
        else:
            st.count_reply(reply)
        return reply

    async def _answer(self, query: ClientQuery, key: Key | None = None) -> bytes:
        try:
            # Without RD the resolver decides what may be answered (server.nonrecursive).
            resolve = self.resolver.resolve if query.rd else self.resolver.resolve_norec
            outcome = await resolve(query.question, query.cd)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - last resort: a resolver bug must not go silent
            self.stats.crashes += 1
            log.exception("resolver failed on %s", query.question)
            outcome = Outcome.servfail(
                query.question, Ede(EdeCode.OTHER, "internal error in the resolver"))
        wire = render_outcome(query, outcome)
        if key is not None and self.fast is not None:
            self.fast.learn(key, query, outcome)
        self.stats.count_reply(wire)
        for ede in outcome.edes:
            self.stats.edes[int(ede.code)] += 1
        return wire

    def _spawn(self, coro: Any) -> bool:
        if len(self._tasks) >= _MAX_INFLIGHT:
            coro.close()
            self.stats.dropped += 1
            return False
        task = asyncio.get_running_loop().create_task(coro)
        # The loop keeps only weak references to tasks: hold them until done.
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    # -- UDP --------------------------------------------------------------------------

    def _udp_packet(self, transport: asyncio.DatagramTransport, wire: bytes,
                    addr: tuple[Any, ...], key: Key | None = None) -> None:
        try:
            self.stats.udp_queries += 1
            result = self._accept(wire, addr[0], tcp=False)
            if result is None:
                return
            if isinstance(result, bytes):
                transport.sendto(result, addr)
                return
            self._spawn(self._udp_query(transport, result, addr, key))
        except Exception:  # noqa: BLE001 - outermost per-packet boundary: log, count, go on
            self.stats.crashes += 1
            log.exception("unexpected failure handling a UDP packet from %s", addr[0])

    async def _udp_query(self, transport: asyncio.DatagramTransport, query: ClientQuery,
                         addr: tuple[Any, ...], key: Key | None = None) -> None:
        wire = await self._answer(query, key)
        if not transport.is_closing():
            transport.sendto(wire, addr)

    # -- TCP (RFC 7766: 2-byte framing, several queries per connection, pipelining) ----

    async def _tcp_connection(self, reader: asyncio.StreamReader,
                              writer: asyncio.StreamWriter) -> None:
        if self._tcp_clients >= self.config.max_tcp_clients:
            self.stats.tcp_rejected += 1
            writer.close()
            return
        self._tcp_clients += 1
        self.stats.tcp_connections += 1
        self._writers.add(writer)
        host = (writer.get_extra_info("peername") or ("",))[0]
        idle = self.config.tcp_idle_timeout
        inflight: set[asyncio.Task[None]] = set()
        try:
            while True:
                try:
                    (length,) = _LENGTH.unpack(
                        await asyncio.wait_for(reader.readexactly(2), idle))
                    wire = await asyncio.wait_for(reader.readexactly(length), idle)
                except TimeoutError:
                    if inflight:
                        continue  # not idle while we still owe answers (RFC 7766 6.2.3)
                    break
                except (asyncio.IncompleteReadError, ConnectionError):
                    break
                self._tcp_packet(wire, host, writer, inflight)
                if len(inflight) >= _TCP_PIPELINE:
                    await asyncio.wait(inflight, return_when=asyncio.FIRST_COMPLETED)
            if inflight:
                await asyncio.wait(inflight)
        finally:
            self._tcp_clients -= 1
            self._writers.discard(writer)
            writer.close()

    def _tcp_packet(self, wire: bytes, host: str, writer: asyncio.StreamWriter,
                    inflight: set[asyncio.Task[None]]) -> None:
        try:
            self.stats.tcp_queries += 1
            result = self._accept(wire, host, tcp=True)
            if result is None:
                return
            if isinstance(result, bytes):
                writer.write(_LENGTH.pack(len(result)) + result)
                return
            task = asyncio.get_running_loop().create_task(self._tcp_query(writer, result))
            inflight.add(task)
            task.add_done_callback(inflight.discard)
        except Exception:  # noqa: BLE001 - outermost per-packet boundary: log, count, go on
            self.stats.crashes += 1
            log.exception("unexpected failure handling a TCP query from %s", host)

    async def _tcp_query(self, writer: asyncio.StreamWriter, query: ClientQuery) -> None:
        wire = await self._answer(query)
        if writer.is_closing():
            return
        writer.write(_LENGTH.pack(len(wire)) + wire)
        try:
            await writer.drain()  # back-pressure from a slow reader
        except ConnectionError:
            pass

    # -- listeners ----------------------------------------------------------------------

    async def start(self) -> list[str]:
        """Bind every configured address (UDP and TCP); one description per listener.

        Raises OSError (e.g. EADDRINUSE) if an address cannot be bound; whatever was
        bound before is closed again.
        """
        reuse_port = self.config.workers > 1
        try:
            for item in self.config.listen:
                host, port = parse_endpoint(item)
                try:
                    port = await self._bind_pair(host, port, reuse_port)
                except OSError as e:
                    # The address as configured goes with the error: the operator's
                    # one line must say which listener could not be bound.
                    raise OSError(e.errno, e.strerror, item) from None
        except BaseException:
            await self.close()
            raise
        return [f"{proto} {f'[{h}]' if ':' in h else h}:{p}" for proto, h, p in self.bound]

    async def _bind_pair(self, host: str, port: int, reuse_port: bool) -> int:
        """UDP and TCP on the same port; port 0 picks one free for both (tests)."""
        tries = 5 if port == 0 else 1
        for attempt in range(tries):
            udp = _socket(host, port, socket.SOCK_DGRAM, reuse_port)
            chosen: int = udp.getsockname()[1]
            try:
                tcp = _socket(host, chosen, socket.SOCK_STREAM, reuse_port)
            except OSError as e:
                udp.close()
                if e.errno == errno.EADDRINUSE and attempt + 1 < tries:
                    continue
                raise
            await self._serve_udp(udp)
            server = await asyncio.start_server(self._tcp_connection, sock=tcp)
            self._tcp.append(server)
            self.bound += [("udp", host, chosen), ("tcp", host, chosen)]
            return chosen
        raise OSError(errno.EADDRINUSE, "no free port")  # pragma: no cover

    async def _serve_udp(self, sock: socket.socket) -> None:
        # With the fast path on, batched system calls (udpbatch.py) where Linux has them;
        # else, and with the fast path off, the event loop's own datagram endpoint.
        batched = mmsg.MmsgSocket.open(sock, BATCH) if self.config.fast_path else None
        if batched is not None:
            self._udp.append(BatchedUdp(sock, batched, self))
            return
        loop = asyncio.get_running_loop()
        frontend = self
        fast = self.fast
        allowed = self.acl._cache  # filled by the full path's ACL check: True = allowed
        udp_packet = self._udp_packet
        key_of = fast.key_of if fast is not None else fast_key

        class _Udp(asyncio.DatagramProtocol):
            transport: asyncio.DatagramTransport

            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.transport = transport  # type: ignore[assignment]

            if fast is None:
                def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
                    udp_packet(self.transport, data, addr)
            else:
                def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
                    # The ACL first (a cached verdict; unknown hosts take the full path),
                    # then the table of pre-rendered answers.
                    if allowed.get(addr[0]):
                        try:
                            found = key_of(data)
                            if found is not None:
                                reply = fast.answer(found[0], found[1], data)
                                if reply is not None:
                                    self.transport.sendto(reply, addr)
                                    return
                                udp_packet(self.transport, data, addr, found[0])
                                return
                        except Exception:  # noqa: BLE001 - never lose a query to a bug here
                            frontend.stats.crashes += 1
                            log.exception("fast path failed on a packet from %s", addr[0])
                    udp_packet(self.transport, data, addr)

            def error_received(self, exc: Exception) -> None:
                pass  # ICMP errors for a client that went away: nothing to do

        transport, _ = await loop.create_datagram_endpoint(_Udp, sock=sock)
        # stdlib asyncio reads every datagram into a 256 KiB buffer (PEERS.md); a DNS
        # message is at most 64 KiB. uvloop has no such attribute and needs none.
        if hasattr(transport, "max_size"):
            transport.max_size = 65535
        self._udp.append(transport)

    async def close(self, grace: float = 1.0) -> None:
        """Stop listening, let running queries finish for `grace` seconds, cancel the rest."""
        for t in self._udp:
            t.close()
        for s in self._tcp:
            s.close()
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
            for task in pending:
                task.cancel()
        # Open TCP connections would otherwise linger until their idle timeout (and
        # Server.wait_closed() waits for them from Python 3.12 on).
        for writer in list(self._writers):
            writer.close()
        for s in self._tcp:
            await s.wait_closed()
        self._udp.clear()
        self._tcp.clear()


def check_addresses_free(listen: list[str]) -> None:
    """Bind every listen address (UDP and TCP) without SO_REUSEPORT and let go again.

    Worker 0 calls this before forking workers that bind with SO_REUSEPORT: an address
    another process holds (another anchord, also one with SO_REUSEPORT) fails here with
    EADDRINUSE, where the workers' own binds would have joined it. OSError carries the
    address as given in its filename."""
    for item in listen:
        host, port = parse_endpoint(item)
        for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
            try:
                _socket(host, port, kind, reuse_port=False).close()
            except OSError as e:
                raise OSError(e.errno, e.strerror, item) from None


def _socket(host: str, port: int, kind: int, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, kind)
    try:
        sock.setblocking(False)
        # Only for several workers of one resolver: SO_REUSEPORT would also let an
        # unrelated process (a second `anchord serve`) bind and take half the clients.
        if reuse_port and hasattr(socket, "SO_REUSEPORT"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        else:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _UDP_RCVBUF)
            except OSError:
                pass  # the kernel caps it; the default still works
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
        if kind == socket.SOCK_STREAM:
            sock.listen(1024)
    except OSError:
        sock.close()
        raise
    return sock


__all__ = ["Frontend", "FrontendStats", "AccessControl", "Resolver", "check_addresses_free"]
