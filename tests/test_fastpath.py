"""The cached-answer fast path gives the same bytes as the full path (issue 6).

Two frontends on loopback UDP, one with the fast path and one without, each with its own
resolver on the in-process testbed and a fake clock moved in step: every reply must be
the same bytes after the ID, round after round, as TTLs run down, through serve-stale,
NTAs and flushes.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import struct
from collections.abc import Awaitable, Callable

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import pytest

from anchord.frontend.fastpath import FastEntry, fast_key, ttl_offsets
from anchord.frontend.server import Frontend
from anchord.testbed.faults import FaultKind
from anchord.testbed.zones import Hierarchy, TestbedSpec, build_hierarchy

from .conftest import SIGNED_AT, World, config_for


@pytest.fixture(scope="module")
def hierarchy() -> Hierarchy:
    return build_hierarchy(TestbedSpec(children=6, max_ttl=300), SIGNED_AT)


def _query(name: str, rdtype: str = "A", *, edns: bool = True, do: bool = False,
           cd: bool = False, ad: bool = False, rd: bool = True, payload: int = 1232,
           options: list[dns.edns.Option] | None = None, qid: int = 4242) -> bytes:
    q = dns.message.make_query(name, rdtype, use_edns=0 if edns else False, want_dnssec=do,
                               payload=payload, options=options)
    q.id = qid
    q.flags = (dns.flags.RD if rd else 0) | (dns.flags.CD if cd else 0) | (
        dns.flags.AD if ad else 0)
    return q.to_wire()


QUERIES = [
    _query("www.c0.de.", edns=False),
    _query("www.c0.de."),
    _query("www.c0.de.", do=True),
    _query("www.c0.de.", do=True, cd=True),
    _query("WwW.C0.dE.", do=True),
    _query("www.c0.de.", ad=True),
    _query("www.c0.de.", rd=False, do=True),
    _query("www.c1.de.", "AAAA", do=True),
    _query("nothere.c0.de.", do=True),  # NXDOMAIN with its NSEC proof
    _query("NoThere.c0.de."),
    _query("www.c0.de.", "TXT", do=True),  # NODATA
    _query("c0.de.", "DNSKEY", do=True, payload=512),  # may truncate at 512
    _query("c0.de.", "DNSKEY", edns=False),
    _query("www.bogus.de.", do=True),  # SERVFAIL, EDE 6
    _query("www.bogus.de.", do=True, cd=True),  # bogus data for CD, with the EDE
    _query("www.unsigned.de.", do=True),  # insecure
    _query("anything.wild.de.", do=True),  # wildcard expansion
    _query("www.alias.de.", do=True),  # CNAME into another zone
    _query("www.expired.de.", do=True),  # EDE 7
    _query("www.c2.de.", do=True),  # under the NTA added below: EDE 33
    _query("www.c0.de.", do=True, options=[dns.edns.GenericOption(10, b"12345678")]),
]


class Pair:
    """The same questions to a fast and a plain frontend, each over a real socket."""

    def __init__(self, h: Hierarchy) -> None:
        self.fast_world = World(h, config_for(h))
        self.plain_world = World(h, config_for(h))
        self.worlds = (self.fast_world, self.plain_world)
        self.frontends: list[Frontend] = []
        self.ports: list[int] = []

    async def start(self) -> None:
        for world, fast in ((self.fast_world, True), (self.plain_world, False)):
            cfg = world.config.server
            cfg.listen = ["127.0.0.1:0"]
            cfg.fast_path = fast
            fe = Frontend(world.resolver, cfg)
            await fe.start()
            self.frontends.append(fe)
            self.ports.append(fe.bound[0][2])
        assert self.frontends[0].fast is not None and self.frontends[1].fast is None

    async def close(self) -> None:
        for fe in self.frontends:
            await fe.close()

    def advance(self, seconds: float) -> None:
        for w in self.worlds:
            w.clock.advance(seconds)

    def fault(self, zone: str, kind: FaultKind) -> None:
        for w in self.worlds:
            w.faults.apply(dns.name.from_text(zone), kind)

    async def both(self, wire: bytes) -> tuple[bytes, bytes]:
        return (await exchange(self.ports[0], wire), await exchange(self.ports[1], wire))


async def exchange(port: int, wire: bytes) -> bytes:
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", port))
        await loop.sock_sendall(sock, wire)
        return await asyncio.wait_for(loop.sock_recv(sock, 65535), 10)


def run(h: Hierarchy, body: Callable[[Pair], Awaitable[None]]) -> None:
    async def main() -> None:
        pair = Pair(h)
        await pair.start()
        try:
            await body(pair)
        finally:
            await pair.close()

    asyncio.run(main())


def _same(fast: bytes, plain: bytes, wire: bytes) -> None:
    assert fast[:2] == plain[:2] == wire[:2]
    assert fast == plain, (dns.message.from_wire(fast).to_text(),
                           dns.message.from_wire(plain).to_text())


def test_same_bytes_with_the_fast_path_on_and_off(hierarchy: Hierarchy) -> None:
    async def body(p: Pair) -> None:
        for w in p.worlds:
            w.resolver.add_nta(dns.name.from_text("c2.de."), 3600, "test")
        for step in (0, 0.4, 0.7, 1.0, 13.5, 120):  # TTLs run down; whole seconds and not
            p.advance(step)
            for i, wire in enumerate(QUERIES):
                wire = struct.pack("!H", 1000 + i) + wire[2:]
                fast, plain = await p.both(wire)
                _same(fast, plain, wire)
        fp = p.frontends[0].fast
        assert fp is not None and fp.hits > 50
        # Past the TTL with the zone unreachable: serve-stale (EDE 3) on both paths.
        p.fault("c0.de.", FaultKind.UNREACHABLE)
        p.advance(400)
        for wire in QUERIES[:4]:
            fast, plain = await p.both(wire)
            _same(fast, plain, wire)
            assert any(o.otype == dns.edns.EDE and o.code == 3
                       for o in dns.message.from_wire(fast).options) or not \
                dns.message.from_wire(fast).opt
        stats = [fe.stats for fe in p.frontends]
        assert stats[0].responses == stats[1].responses
        assert stats[0].edes == stats[1].edes
        assert stats[0].queries == stats[1].queries

    run(hierarchy, body)


def test_ttl_counts_down_on_fast_answers(hierarchy: Hierarchy) -> None:
    async def body(p: Pair) -> None:
        wire = _query("www.c3.de.", do=True)
        ttls = []
        for _ in range(4):
            fast, plain = await p.both(wire)
            _same(fast, plain, wire)
            ttls.append(dns.message.from_wire(fast).answer[0].ttl)
            p.advance(10)
        assert ttls == [300, 290, 280, 270]
        assert p.frontends[0].fast is not None and p.frontends[0].fast.hits == 2

    run(hierarchy, body)


def test_nta_and_flush_reach_the_fast_path_at_once(hierarchy: Hierarchy) -> None:
    async def body(p: Pair) -> None:
        fp = p.frontends[0].fast
        assert fp is not None
        wire = _query("www.c4.de.", do=True)
        for _ in range(3):
            await p.both(wire)
        assert fp.hits == 1
        r = dns.message.from_wire(await exchange(p.ports[0], wire))
        assert r.flags & dns.flags.AD and not r.options and fp.hits == 2
        p.fast_world.resolver.add_nta(dns.name.from_text("c4.de."), 600, "rollover")
        r = dns.message.from_wire(await exchange(p.ports[0], wire))
        assert not r.flags & dns.flags.AD
        assert [o.code for o in r.options] == [33], r
        assert fp.hits == 2  # the table was dropped: this one came from the full path
        for _ in range(2):
            await exchange(p.ports[0], wire)
        assert fp.hits == 3 and fp.table
        p.fast_world.resolver.core.forget_below(dns.name.from_text("de."))  # a flush
        assert not fp.table
        p.fast_world.resolver.remove_nta(dns.name.from_text("c4.de."))
        r = dns.message.from_wire(await exchange(p.ports[0], wire))
        assert r.flags & dns.flags.AD and not r.options

    run(hierarchy, body)


def test_rd0_gets_the_cached_answer_or_refused_the_same_bytes_on_both_paths(
        hierarchy: Hierarchy) -> None:
    """A query without RD starts no recursion; the fast path, whose key holds the RD
    bit, neither answers it from an RD=1 entry nor gives it other bytes than the full
    path: a REFUSED is never entered, a cached answer only as the full path renders it."""
    async def body(p: Pair) -> None:
        fp = p.frontends[0].fast
        assert fp is not None
        norec, rec = _query("www.c5.de.", rd=False, do=True), _query("www.c5.de.", do=True)

        def sent_for_c5() -> list[int]:
            return [sum("c5.de" in s for _, s in w.transport.sent) for w in p.worlds]

        for _ in range(2):  # not cached: refused, and nothing asked upstream
            fast, plain = await p.both(norec)
            _same(fast, plain, norec)
            r = dns.message.from_wire(fast)
            assert r.rcode() == dns.rcode.REFUSED and not r.flags & dns.flags.RD
            assert [o.code for o in r.options] == [20]
        assert sent_for_c5() == [0, 0] and not fp.table
        for _ in range(3):  # resolved with RD, then answered from the fast path
            await p.both(rec)
        hits = fp.hits
        assert hits >= 1
        for _ in range(3):
            fast, plain = await p.both(norec)
            _same(fast, plain, norec)
            r = dns.message.from_wire(fast)
            assert r.rcode() == dns.rcode.NOERROR and r.answer and r.flags & dns.flags.AD
            assert not r.flags & dns.flags.RD and r.flags & dns.flags.RA
        assert fp.hits == hits + 2  # the first RD=0 question came from the full path
        p.advance(400)  # past the TTL: a query with RD would refresh; RD=0 does not,
        before = sent_for_c5()  # and gets the stale copy (serve-stale is on by default)
        fast, plain = await p.both(norec)
        _same(fast, plain, norec)
        r = dns.message.from_wire(fast)
        assert r.rcode() == dns.rcode.NOERROR and r.answer
        assert [o.code for o in r.options] == [3]
        assert sent_for_c5() == before

    run(hierarchy, body)


def test_acl_is_checked_before_the_fast_path(hierarchy: Hierarchy) -> None:
    async def body(p: Pair) -> None:
        fe = p.frontends[0]
        wire = _query("www.c5.de.", do=True)
        for _ in range(3):
            await exchange(p.ports[0], wire)
        assert fe.fast is not None and fe.fast.hits == 1
        fe.acl.networks = [ipaddress.ip_network("192.0.2.0/24")]  # now refuses loopback
        fe.acl.clear()
        r = dns.message.from_wire(await exchange(p.ports[0], wire))
        assert r.rcode() == dns.rcode.REFUSED and fe.fast.hits == 1

    run(hierarchy, body)


def test_fast_key_takes_only_plain_queries() -> None:
    plain = _query("www.Example.", do=True)
    found = fast_key(plain)
    assert found is not None and found[0][0].startswith(b"\x03www\x07example\x00")
    assert fast_key(_query("www.example.", edns=False)) is not None
    assert fast_key(_query("www.example.", options=[dns.edns.GenericOption(10, b"x" * 8)])) \
        is None
    assert fast_key(plain + b"\x00") is None  # trailing junk: the full path says FORMERR
    assert fast_key(plain[:20]) is None
    response = bytearray(plain)
    response[2] |= 0x80
    assert fast_key(bytes(response)) is None
    # different keys for what changes the reply
    keys = {fast_key(w)[0] for w in (  # type: ignore[index]
        _query("www.example."), _query("www.example.", do=True),
        _query("www.example.", cd=True), _query("www.example.", ad=True),
        _query("www.example.", rd=False), _query("www.example.", edns=False),
        _query("www.example.", payload=600), _query("www.example.", payload=4096))}
    assert len(keys) == 7  # 4096 and 1232 both give replies of up to 1232 bytes: one key
    assert fast_key(_query("WWW.EXAMPLE."))[0] == fast_key(_query("www.example."))[0]  # type: ignore[index]
    for n in range(len(plain)):  # never raises on a cut or damaged packet
        fast_key(plain[:n])
        fast_key(plain[:n] + b"\xff" + plain[n + 1:])


def test_ttl_offsets_point_at_every_ttl_but_the_opt() -> None:
    q = dns.message.make_query("www.example.", "A", want_dnssec=True)
    r = dns.message.make_response(q)
    r.answer.append(dns.rrset.from_text("www.example.", 77, "IN", "A", "192.0.2.1",
                                        "192.0.2.2"))
    r.authority.append(dns.rrset.from_text("example.", 88, "IN", "NS", "ns.example."))
    wire = r.to_wire()
    assert [ttl for _, ttl in ttl_offsets(wire)] == [77, 77, 88]


def test_hot_window_is_exactly_where_the_age_holds() -> None:
    """FastEntry.since/until bound the clock readings where int(now - stored_at) is the
    patched age, on the float subtraction itself: one ulp either side differs."""
    import math
    import random

    q = dns.message.make_query("www.example.", "A")
    r = dns.message.make_response(q)
    r.answer.append(dns.rrset.from_text("www.example.", 300, "IN", "A", "192.0.2.1"))
    wire = r.to_wire()
    rng = random.Random(3)
    for _ in range(300):
        stored = rng.choice([1.7e9, 0.0, 12.25]) + rng.random() * rng.choice([1, 1e3, 1e6])
        entry = FastEntry(wire, 12 + len(q.question[0].name.to_wire()) + 4, stored,
                          stored + 300, ())
        age = rng.randrange(0, 299)
        entry.at_age(age)
        assert int(entry.since - stored) == age
        assert int(math.nextafter(entry.since, -math.inf) - stored) != age \
            or math.nextafter(entry.since, -math.inf) - stored < 0
        last = math.nextafter(entry.until, -math.inf)
        assert int(last - stored) == age and last < entry.expires_at
        assert int(entry.until - stored) != age or entry.until == entry.expires_at
    entry.at_age(0, aging=False)  # cache.serve_original_ttl: only the expiry bounds it
    assert entry.since == -math.inf and entry.until == entry.expires_at
    entry.retire()
    assert not entry.since <= stored + 1 < entry.until
