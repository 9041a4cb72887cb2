"""The batched UDP reader (recvmmsg/sendmmsg, udpbatch.py) answers as the asyncio one.

Two frontends over real loopback sockets, each with its own resolver on the in-process
testbed and fake clocks in step: one with the fast path on (the batched reader), one
with it off (the asyncio datagram endpoint, the full path only). The same datagrams go
to both, many at once from several client sockets over IPv4 and IPv6, and every reply
must be the same bytes; so must the counters.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import random
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Any

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import pytest
import uvloop

from anchord.frontend import mmsg, udpbatch
from anchord.frontend.server import Frontend
from anchord.frontend.udpbatch import BatchedUdp, SocketSender
from anchord.testbed.zones import Hierarchy, TestbedSpec, build_hierarchy

from .conftest import SIGNED_AT, World, config_for


def test_recvmmsg_and_sendmmsg_are_there() -> None:
    """anchord serves on Linux (SO_REUSEPORT, recvmmsg): the batched path must be usable
    here, not skipped; the tests below need it."""
    assert mmsg.available(), "libc has no recvmmsg/sendmmsg"


V4, V6 = "127.0.0.1", "::1"
OUTSIDE = "127.0.0.2"  # a loopback source the ACL below does not allow
ACL = ["127.0.0.1/32", "::1/128"]


@pytest.fixture(scope="module")
def hierarchy() -> Hierarchy:
    return build_hierarchy(TestbedSpec(children=6, max_ttl=300), SIGNED_AT)


def query(name: str, rdtype: str = "A", *, qid: int = 4242, do: bool = True,
          options: list[dns.edns.Option] | None = None, edns: bool = True) -> bytes:
    q = dns.message.make_query(name, rdtype, use_edns=0 if edns else False, want_dnssec=do,
                               options=options)
    q.id = qid
    return q.to_wire(max_size=65535)


def mixed_case(name: str, rng: random.Random) -> str:
    return "".join(c.upper() if rng.random() < 0.5 else c for c in name)


class Pair:
    """A batched (fast path on) and a plain (fast path off) frontend, v4 and v6 each."""

    def __init__(self, h: Hierarchy) -> None:
        self.worlds = (World(h, config_for(h)), World(h, config_for(h)))
        self.frontends: list[Frontend] = []

    async def start(self) -> None:
        for world, fast in zip(self.worlds, (True, False), strict=True):
            cfg = world.config.server
            cfg.listen = [f"{V4}:0", f"[{V6}]:0"]
            cfg.access_control = ACL
            cfg.fast_path = fast
            fe = Frontend(world.resolver, cfg)
            await fe.start()
            self.frontends.append(fe)
        assert not any(isinstance(t, BatchedUdp) for t in self.plain._udp)

    @property
    def batched(self) -> Frontend:
        return self.frontends[0]

    @property
    def plain(self) -> Frontend:
        return self.frontends[1]

    def port(self, fe: Frontend, family: int) -> int:
        host = V4 if family == socket.AF_INET else V6
        return next(p for proto, h, p in fe.bound if proto == "udp" and h == host)

    async def close(self) -> None:
        for fe in self.frontends:
            await fe.close()


def run(h: Hierarchy, body: Callable[[Pair], Awaitable[None]], loop: str = "uvloop",
        batched: bool = True) -> None:
    async def main() -> None:
        pair = Pair(h)
        await pair.start()
        assert all(isinstance(t, BatchedUdp) is batched for t in pair.batched._udp)
        try:
            await body(pair)
        finally:
            await pair.close()

    if loop == "uvloop":
        uvloop.run(main())
    else:
        asyncio.run(main())


def client(family: int, source: str | None = None) -> socket.socket:
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.setblocking(False)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    if source is not None:
        s.bind((source, 0))
    return s


async def collect(socks: list[socket.socket], want: int, timeout: float = 10.0
                  ) -> dict[socket.socket, list[bytes]]:
    """Every datagram the client sockets get until `want` have come (or the timeout)."""
    got: dict[socket.socket, list[bytes]] = {s: [] for s in socks}
    deadline = time.monotonic() + timeout
    while sum(map(len, got.values())) < want and time.monotonic() < deadline:
        for s in socks:
            while True:
                try:
                    got[s].append(s.recv(65535))
                except BlockingIOError:
                    break
        await asyncio.sleep(0.005)
    return got


async def exchange(port: int, wire: bytes, family: int = socket.AF_INET,
                   source: str | None = None, timeout: float = 5.0) -> bytes | None:
    s = client(family, source)
    try:
        s.sendto(wire, (V4 if family == socket.AF_INET else V6, port))
        got = await collect([s], 1, timeout)
        return got[s][0] if got[s] else None
    finally:
        s.close()


async def warm(p: Pair, wires: list[bytes]) -> None:
    """Resolve, then answer once more from the cache (the fast path learns there)."""
    for _ in range(2):
        for wire in wires:
            for fe in p.frontends:
                assert await exchange(p.port(fe, socket.AF_INET), wire) is not None


def batch_sizes(reader: Any) -> list[int]:
    """Record what each recvmmsg of this reader returned."""
    sizes: list[int] = []
    real = reader.mm.recv

    def recv() -> int:
        n: int = real()
        sizes.append(n)
        return n

    reader.mm.recv = recv
    return sizes


def same_stats(p: Pair) -> None:
    a, b = p.batched.stats, p.plain.stats
    for name in ("queries", "udp_queries", "dropped", "formerr", "refused_acl", "truncated",
                 "crashes", "send_dropped", "responses", "edes", "rejections"):
        assert getattr(a, name) == getattr(b, name), name


NAMES = [f"www.c{i}.de." for i in range(6)]
HITS = [query(n, qid=0) for n in NAMES] + [query(n, "AAAA", qid=0) for n in NAMES[:3]] \
    + [query("nothere.c1.de.", qid=0), query("www.c0.de.", "TXT", qid=0)]


def test_a_hit_is_the_full_paths_bytes_with_the_id_and_the_case_kept(
        hierarchy: Hierarchy) -> None:
    async def body(p: Pair) -> None:
        await warm(p, HITS)
        fast = p.batched.fast
        assert fast is not None and fast.table
        hits = fast.hits
        rng = random.Random(5)
        for i, base in enumerate(HITS):
            name = dns.message.from_wire(base).question[0].name.to_text()
            msg = dns.message.from_wire(base)
            msg.id = 0xBEEF - i
            msg.question[0].name = dns.name.from_text(mixed_case(name, rng))
            wire = msg.to_wire()
            got = [await exchange(p.port(fe, socket.AF_INET), wire) for fe in p.frontends]
            assert got[0] is not None and got[0] == got[1]
            assert got[0][:2] == wire[:2]
            assert got[0][12:len(wire) - 11] == wire[12:len(wire) - 11]  # the 0x20 case
        assert fast.hits == hits + len(HITS)
        # The same bytes again come from the hot map, with the same answer.
        again = [await exchange(p.port(p.batched, socket.AF_INET), HITS[0]) for _ in range(2)]
        plain = [await exchange(p.port(p.plain, socket.AF_INET), HITS[0]) for _ in range(2)]
        assert again == plain and again[0] == again[1]
        assert HITS[0][2:] in fast.hot
        same_stats(p)

    run(hierarchy, body)


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_a_burst_from_many_clients_gets_every_reply_right(hierarchy: Hierarchy,
                                                          loop: str) -> None:
    async def body(p: Pair) -> None:
        await warm(p, HITS)
        rng = random.Random(11)
        padded = query("www.c2.de.", qid=0, options=[dns.edns.GenericOption(12, b"\0" * 4900)])
        cookie = query("www.c3.de.", qid=0, options=[dns.edns.GenericOption(10, b"8bytes!!")])
        junk = struct.pack("!HHHHHH", 0, 0x0100, 1, 0, 0, 0) + b"\x3f" * 3000  # FORMERR
        oddballs = [
            b"\x12\x34",  # no header: dropped
            b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01",  # loop
            padded,  # a 5 KB query: bigger than a DNS buffer of 4096, still answered
            cookie,  # an EDNS option: no fast-path key, the full path
            junk,
            query("fresh0.c4.de.", qid=0),  # not cached: resolved on the full path
        ]
        plan: list[tuple[int, str | None, bytes]] = []  # (family, source, datagram)
        for n in range(200):
            base = oddballs[n // 30] if n % 30 == 7 and n // 30 < len(oddballs) else \
                HITS[n % len(HITS)]
            family = socket.AF_INET6 if n % 4 == 3 else socket.AF_INET
            source = OUTSIDE if n in (50, 150) else None
            wire = bytearray(base)
            if len(wire) >= 2:
                struct.pack_into("!H", wire, 0, 1000 + n)
            if base in HITS and n % 5 == 0:  # some in mixed case
                qend = wire.index(0, 12)
                for j in range(12, qend):
                    if 0x61 <= wire[j] <= 0x7A and rng.random() < 0.5:
                        wire[j] ^= 0x20
            plan.append((family, source if family == socket.AF_INET else None, bytes(wire)))
        replies = []
        for fe in p.frontends:
            sizes = batch_sizes(next(t for t in fe._udp if isinstance(t, BatchedUdp))) \
                if fe is p.batched else []
            socks: dict[tuple[int, str | None, int], socket.socket] = {}
            sent: dict[socket.socket, list[bytes]] = {}
            for n, (family, source, wire) in enumerate(plan):
                key = (family, source, n % 3)  # three client sockets per family
                s = socks.get(key)
                if s is None:
                    s = socks[key] = client(family, source)
                    sent[s] = []
                s.sendto(wire, (V4 if family == socket.AF_INET else V6, p.port(fe, family)))
                sent[s].append(wire)
            want = len(plan) - 1  # the headerless one gets nothing
            got = await collect(list(socks.values()), want)
            await asyncio.sleep(0.2)  # nothing more may come
            got = {s: got[s] + (await collect([s], 10**6, 0.01))[s] for s in got}
            assert sum(map(len, got.values())) == want
            by_id = {}
            for s, wires in got.items():
                ids = [struct.unpack_from("!H", w)[0] for w in wires]
                assert len(set(ids)) == len(ids)
                sent_ids = {struct.unpack_from("!H", w)[0] for w in sent[s] if len(w) > 2}
                assert set(ids) <= sent_ids  # each reply went back to its own socket
                by_id.update(zip(ids, wires, strict=True))
            replies.append(by_id)
            if fe is p.batched:
                assert max(sizes) > 8  # the burst was read in batches
            for s in socks.values():
                s.close()
        assert replies[0] == replies[1]
        by_id = replies[0]
        for n, (_, source, wire) in enumerate(plan):
            if len(wire) < 12:
                assert 1000 + n not in by_id  # no header: nothing comes back
                continue
            rcode = dns.message.from_wire(by_id[1000 + n]).rcode()
            if source == OUTSIDE:
                assert rcode == dns.rcode.REFUSED
            elif wire[2:] == HITS[n % len(HITS)][2:]:
                assert rcode in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN)
        assert p.batched.stats.refused_acl == 2
        assert p.batched.stats.formerr >= 2
        same_stats(p)

    run(hierarchy, body, loop)


def test_the_first_datagram_from_a_source_takes_the_full_paths_acl_check(
        hierarchy: Hierarchy) -> None:
    async def body(p: Pair) -> None:
        await warm(p, HITS[:1])
        fe = p.batched
        assert fe.fast is not None
        fe.acl.clear()
        hits = fe.fast.hits
        assert await exchange(p.port(fe, socket.AF_INET), HITS[0]) is not None
        assert fe.fast.hits == hits  # no verdict cached yet: the full path
        assert await exchange(p.port(fe, socket.AF_INET), HITS[0]) is not None
        assert fe.fast.hits == hits + 1 and fe.acl.raw == {socket.inet_aton(V4): True}
        # A source refused by the ACL never takes the fast path, even for a hit.
        r = await exchange(p.port(fe, socket.AF_INET), HITS[0], source=OUTSIDE)
        assert r is not None and dns.message.from_wire(r).rcode() == dns.rcode.REFUSED
        r = await exchange(p.port(fe, socket.AF_INET), HITS[0], source=OUTSIDE)
        assert r is not None and dns.message.from_wire(r).rcode() == dns.rcode.REFUSED
        assert fe.fast.hits == hits + 1 and fe.stats.refused_acl == 2

    run(hierarchy, body)


def test_a_datagram_cut_short_by_the_buffer_is_dropped_and_counted(
        hierarchy: Hierarchy, monkeypatch: pytest.MonkeyPatch) -> None:
    # RECV_SIZE is 65535, more than any UDP payload; a smaller one makes the kernel
    # cut a datagram (MSG_TRUNC), which must never be read as a query.
    monkeypatch.setattr(mmsg, "RECV_SIZE", 600)

    async def body(p: Pair) -> None:
        fe = p.batched
        padded = query("www.c2.de.", options=[dns.edns.GenericOption(12, b"\0" * 900)])
        assert await exchange(p.port(fe, socket.AF_INET), padded, timeout=0.5) is None
        assert fe.stats.dropped == 1 and fe.stats.queries == 1 and fe.stats.crashes == 0
        assert await exchange(p.port(fe, socket.AF_INET), HITS[0]) is not None

    run(hierarchy, body)


def _fake_sendmmsg(mm: mmsg.MmsgSocket, plan: list[int]) -> list[int]:
    """Wrap mm's sendmmsg: each call takes the next of `plan`, a cap on how many
    messages the real call may send, or minus an errno to fail with; then the real one.
    Returns the number of messages each call was asked to send."""
    real, asked = mm._sendmmsg, []

    def call(fd: int, ptr: int, k: int, flags: int) -> int:
        asked.append(k)
        step = plan.pop(0) if plan else k
        if step < 0:
            ctypes.set_errno(-step)
            return -1
        return int(real(fd, ptr, min(k, step), flags))

    mm._sendmmsg = call
    return asked


@pytest.mark.parametrize("plan,sent,calls", [
    ([3, 5], 20, [20, 17, 12]),  # partial sends: the rest is sent again
    ([-errno.EAGAIN], 20, [20]),  # a full send buffer: handed to the socket sender
    ([-errno.EPERM], 19, [20, 19]),  # refused for good: skipped and counted
])
def test_sendmmsg_results_short_of_the_batch(hierarchy: Hierarchy, plan: list[int],
                                             sent: int, calls: list[int]) -> None:
    async def body(p: Pair) -> None:
        await warm(p, HITS)
        fe = p.batched
        reader = next(t for t in fe._udp if isinstance(t, BatchedUdp))
        asked = _fake_sendmmsg(reader.mm, list(plan))
        s = client(socket.AF_INET)
        for n in range(20):
            wire = struct.pack("!H", 500 + n) + HITS[n % len(HITS)][2:]
            s.sendto(wire, (V4, p.port(fe, socket.AF_INET)))
        await asyncio.sleep(0.05)
        got = (await collect([s], 20, 2.0))[s]
        s.close()
        assert len(got) == sent and len({w[:2] for w in got}) == sent, asked
        assert fe.stats.send_dropped == 20 - sent
        assert asked == calls  # one batch of 20 hits

    run(hierarchy, body)


def test_without_recvmmsg_or_the_fast_path_the_asyncio_endpoint_serves(
        hierarchy: Hierarchy, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mmsg, "_LIBC", None)

    async def body(p: Pair) -> None:
        await warm(p, HITS[:2])
        assert p.batched.fast is not None and p.batched.fast.hits == 0
        for _ in range(2):
            r = await exchange(p.port(p.batched, socket.AF_INET6), HITS[0], socket.AF_INET6)
            assert r == await exchange(p.port(p.plain, socket.AF_INET6), HITS[0],
                                       socket.AF_INET6)
        # The first from ::1 checks the ACL on the full path, the second is a hit.
        assert p.batched.fast.hits == 1

    run(hierarchy, body, batched=False)


class _FlakySocket(socket.socket):
    """sendto fails with EAGAIN `busy` times, then works."""

    busy = 0

    def sendto(self, data: Any, *args: Any) -> int:  # type: ignore[override]
        if self.busy:
            self.busy -= 1
            raise BlockingIOError(errno.EAGAIN, "full")
        return super().sendto(data, *args)


def test_the_socket_sender_queues_on_eagain_and_counts_what_it_drops(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(udpbatch, "_MAX_QUEUED", 3)

    class Stats:
        send_dropped = 0

    async def main() -> None:
        loop = asyncio.get_running_loop()
        sock = _FlakySocket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        sock.bind((V4, 0))
        peer = client(socket.AF_INET)
        peer.bind((V4, 0))
        to = peer.getsockname()
        stats = Stats()
        sender = SocketSender(sock, loop, stats)
        sock.busy = 1
        for n in range(5):
            sender.sendto(b"reply%d" % n, to)  # 0 queued on EAGAIN, 1-2 behind it
        assert len(sender.queued) == 3 and stats.send_dropped == 2
        got = (await collect([peer], 3, 2.0))[peer]
        assert got == [b"reply0", b"reply1", b"reply2"] and not sender.queued
        sender.sendto(b"after", to)
        assert (await collect([peer], 1, 2.0))[peer] == [b"after"]
        sender.close()
        sender.sendto(b"closed", to)
        assert (await collect([peer], 1, 0.1))[peer] == []
        sock.close()
        peer.close()

    uvloop.run(main())


def test_sockaddr_to_tuple_matches_what_recvfrom_gives() -> None:
    for family, host in ((socket.AF_INET, V4), (socket.AF_INET6, V6)):
        server = socket.socket(family, socket.SOCK_DGRAM)
        server.setblocking(False)
        server.bind((host, 0))
        mm = mmsg.MmsgSocket.open(server, 4)
        assert mm is not None
        c = socket.socket(family, socket.SOCK_DGRAM)
        c.bind((host, 0))
        c.sendto(b"x", server.getsockname()[:2])
        time.sleep(0.05)
        assert mm.recv() == 1
        assert mm.address(0) == c.getsockname()
        assert mm.read(1) == [(socket.inet_pton(family, host), b"x", False)]
        c.close()
        server.close()
