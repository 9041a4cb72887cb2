"""The batched UDP reader: one recvmmsg for many queries, one sendmmsg for their replies.

Used instead of the asyncio datagram endpoint when the fast path is on and mmsg.py can
reach recvmmsg/sendmmsg (Frontend._serve_udp). With cached answers coming from
pre-rendered bytes, a datagram's system calls and the event loop's per-datagram work
are most of what a query costs; here they are paid once per batch (mmsg.py says more).

When the socket is readable (loop.add_reader: the same on uvloop and asyncio) up to
`batch` datagrams are read at once. Each one whose sender has a cached ACL verdict of
True and whose answer is in the fast-path table is answered into a send buffer, and
all those replies leave with one sendmmsg. Everything else goes to the full path
(Frontend._udp_packet) exactly as from the asyncio endpoint, with a SocketSender as
its transport: the same access check, parser, counters and replies.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import socket
from collections.abc import Callable
from typing import Any

from anchord.frontend.fastpath import FastPath, Key
from anchord.frontend.mmsg import (
    HDR_SIZE,
    MSG_TRUNC,
    RECV_STRIDE,
    MmsgSocket,
    sockaddr_to_tuple,
)

log = logging.getLogger("anchord.frontend")

BATCH = 64  # datagrams per recvmmsg (16 to 128 measured alike in the bench)
_ROUNDS = 4  # batches per readable event at most, so other callbacks get their turn
_MAX_QUEUED = 4096  # replies waiting for a full send buffer; past this they are dropped

UdpPacket = Callable[[Any, bytes, tuple[Any, ...], "Key | None"], None]


class SocketSender:
    """The transport the full path sends through: sendto on the socket, never blocking.

    When the send buffer is full (EAGAIN) replies wait in a bounded queue that a writer
    callback drains; what does not fit the queue, or what the kernel refuses for good,
    is counted in stats.send_dropped (the asyncio transport would have buffered without
    bound, or reported the error to error_received and dropped it uncounted).
    """

    def __init__(self, sock: socket.socket, loop: asyncio.AbstractEventLoop,
                 stats: Any) -> None:
        self.sock = sock
        self.loop = loop
        self.stats = stats
        self.queued: collections.deque[tuple[bytes, tuple[Any, ...]]] = collections.deque()
        self.closing = False

    def is_closing(self) -> bool:
        return self.closing

    def sendto(self, data: bytes, addr: tuple[Any, ...]) -> None:
        if self.closing:
            return
        if self.queued:
            self._queue(data, addr)  # keep the order behind what already waits
            return
        try:
            self.sock.sendto(data, addr)
        except (BlockingIOError, InterruptedError):
            self._queue(data, addr)
        except OSError:
            self.stats.send_dropped += 1  # e.g. EPERM from a firewall, unreachable

    def _queue(self, data: bytes, addr: tuple[Any, ...]) -> None:
        if len(self.queued) >= _MAX_QUEUED:
            self.stats.send_dropped += 1
            return
        if not self.queued:
            self.loop.add_writer(self.sock.fileno(), self._drain)
        self.queued.append((data, addr))

    def _drain(self) -> None:
        queued, sock = self.queued, self.sock
        while queued:
            data, addr = queued[0]
            try:
                sock.sendto(data, addr)
            except (BlockingIOError, InterruptedError):
                return  # still full: the writer callback stays
            except OSError:
                self.stats.send_dropped += 1
            queued.popleft()
        self.loop.remove_writer(sock.fileno())

    def close(self) -> None:
        if self.queued:
            self.loop.remove_writer(self.sock.fileno())
            self.stats.send_dropped += len(self.queued)
            self.queued.clear()
        self.closing = True


class BatchedUdp:
    """One listening UDP socket read with recvmmsg and answered with sendmmsg."""

    def __init__(self, sock: socket.socket, mm: MmsgSocket, frontend: Any) -> None:
        self.sock = sock
        self.mm = mm
        self.loop = asyncio.get_running_loop()
        self.stats = frontend.stats
        self.acl = frontend.acl
        self.fast: FastPath | None = frontend.fast
        self.udp_packet: UdpPacket = frontend._udp_packet
        self.sender = SocketSender(sock, self.loop, self.stats)
        self.loop.add_reader(sock.fileno(), self._readable)

    def is_closing(self) -> bool:
        return self.sender.closing

    def close(self) -> None:
        if self.sender.closing:
            return
        self.loop.remove_reader(self.sock.fileno())
        self.sender.close()
        self.sock.close()

    def _readable(self) -> None:
        mm = self.mm
        for _ in range(_ROUNDS):
            try:
                n = mm.recv()
            except OSError as e:
                log.debug("recvmmsg failed: %s", e)  # the next readable event tries again
                return
            if n:
                self._serve(n)
            if n < mm.batch or self.sender.closing:
                return  # the socket is empty (or a reply in this batch closed us)

    def _serve(self, n: int) -> None:
        mm, fast, stats = self.mm, self.fast, self.stats
        verdicts = self.acl.raw
        meta, hdrs, rbuf = mm.meta, mm.hdrs, mm.rbuf
        replies: list[tuple[int, bytes]] = []  # (datagram, reply body after the ID)
        if fast is not None:
            shapes, key_of, body_at = fast.shapes, fast.key_of, fast.body_at
            hot = fast.begin()
            now = fast.clock.now()  # one instant for the whole batch
        try:
            for i in range(n):
                # One unpack and one copy per datagram (mmsg.py): the bytes after the ID
                # are the fast path's lookup key as they are.
                flags, length, host = meta(hdrs, i * HDR_SIZE)
                if flags & MSG_TRUNC:
                    # Never read a cut datagram as a query (mmsg.RECV_SIZE rules it out
                    # for UDP, but the kernel's word is what counts): dropped, counted.
                    stats.queries += 1
                    stats.udp_queries += 1
                    stats.dropped += 1
                    continue
                if fast is not None and (verdicts.get(host) or self._verdict(i, host)):
                    try:
                        o = i * RECV_STRIDE
                        shape = rbuf[o:o + length - 2].tobytes()
                        entry = hot.get(shape)
                        if entry is not None and entry.since <= now < entry.until:
                            # the same bytes as body_at would give, on one comparison
                            replies.append((i, entry.body))
                            entry.tally[0] += 1
                            continue
                        found = shapes.get(shape) or key_of(mm.wire(i, length))
                        if found is not None:
                            body = body_at(found[0], found[1], shape, now)
                            if body is None:
                                self._full(i, length, found[0])
                            else:
                                replies.append((i, body))
                            continue
                    except Exception:  # noqa: BLE001 - never lose a query to a bug here
                        stats.crashes += 1
                        log.exception("fast path failed on a packet from %s",
                                      mm.address(i)[0])
                self._full(i, length, None)
        finally:
            if fast is not None:
                fast.settle()  # the hits' counts, before any client sees a reply
            if replies:
                self._send(replies)

    def _verdict(self, i: int, host: bytes) -> bool:
        """A raw-address miss: the full path's cached verdict for this sender, if any
        (None, i.e. not checked yet, takes the full path, which checks and caches)."""
        return bool(self.acl.cached(host, self.mm.address(i)[0]))

    def _full(self, i: int, length: int, key: Key | None) -> None:
        mm = self.mm
        self.udp_packet(self.sender, mm.wire(i, length), mm.address(i), key)

    def _send(self, replies: list[tuple[int, bytes]]) -> None:
        mm = self.mm
        left = mm.send(replies)
        if mm.send_errors:
            self.stats.send_dropped += mm.send_errors
            mm.send_errors = 0
        for reply, raw in left:  # too big for a send buffer, or the buffer is full
            self.sender.sendto(reply, sockaddr_to_tuple(raw, mm.family))


__all__ = ["BatchedUdp", "SocketSender", "BATCH"]
