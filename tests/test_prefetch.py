"""cache.prefetch (Unbound's prefetch): a hit on an answer with at most a tenth of its TTL
left is answered from the cache and refreshed in the background, once; in-process with
a fake clock, through the driver and through the frontend's fast path."""

from __future__ import annotations

import asyncio

import dns.message
import dns.name
import dns.rdatatype
import pytest

from anchord.core.outcome import Freshness, Outcome, Question
from anchord.core.ports import ServerAddress, UpstreamResult
from anchord.frontend.fastpath import FastPath, fast_key
from anchord.frontend.request import ClientQuery, parse_query
from anchord.frontend.server import FrontendStats
from anchord.testbed.faults import FaultKind
from anchord.testbed.zones import Hierarchy, TestbedSpec, build_hierarchy

from .conftest import SIGNED_AT, World, config_for

TTL = 100  # due for a prefetch from 90 s of age on
NAME = "www.c1.de."


@pytest.fixture(scope="module")
def hierarchy() -> Hierarchy:
    return build_hierarchy(TestbedSpec(children=4, max_ttl=TTL), SIGNED_AT)


def make(h: Hierarchy, prefetch: bool = True) -> World:
    cfg = config_for(h)
    cfg.cache.prefetch = prefetch
    return World(h, cfg)


def q(name: str = NAME) -> Question:
    return Question(dns.name.from_text(name), dns.rdatatype.A)


def a_ttl(o: Outcome) -> int:
    return next(r.ttl for r in o.answer if r.rdtype == dns.rdatatype.A)


async def idle() -> None:
    for _ in range(50):
        await asyncio.sleep(0)


def sent_for(w: World, name: str = NAME) -> int:
    return sum(1 for _, what in w.transport.sent if what == f"{name}/A")


def test_prefetch_refreshes_an_answer_in_its_last_tenth_in_the_background(
        hierarchy: Hierarchy) -> None:
    w = make(hierarchy)

    async def run() -> None:
        assert a_ttl(await w.resolver.resolve(q())) == TTL
        w.clock.advance(50)
        assert a_ttl(await w.resolver.resolve(q())) == 50  # not yet due: no refresh
        await idle()
        assert sent_for(w) == 1
        w.clock.advance(42)
        hit = await w.resolver.resolve(q())
        # Answered from the cache at once, with what is left of the old TTL ...
        assert hit.freshness is Freshness.FRESH and a_ttl(hit) == 8
        await idle()
        # ... while one refresh ran in the background and replaced the entry.
        assert sent_for(w) == 2
        again = await w.resolver.resolve(q())
        assert a_ttl(again) == TTL
        await idle()
        assert sent_for(w) == 2

    asyncio.run(run())


def test_without_prefetch_a_late_hit_is_only_a_hit(hierarchy: Hierarchy) -> None:
    w = make(hierarchy, prefetch=False)

    async def run() -> None:
        await w.resolver.resolve(q())
        w.clock.advance(95)
        assert a_ttl(await w.resolver.resolve(q())) == 5
        await idle()
        assert sent_for(w) == 1

    asyncio.run(run())


class SlowTransport:
    """Each query takes `delay` real seconds while set."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.delay = 0.0
        self.sent = inner.sent  # type: ignore[attr-defined]

    async def query(self, server: ServerAddress, request: dns.message.Message, *,
                    tcp: bool = False, timeout: float = 1.5) -> UpstreamResult:
        if self.delay:
            await asyncio.sleep(self.delay)
        return await self.inner.query(server, request, tcp=tcp, timeout=timeout)  # type: ignore[attr-defined,no-any-return]


def test_many_hits_while_due_start_one_prefetch(hierarchy: Hierarchy) -> None:
    from anchord.engine.driver import build_resolver

    w = make(hierarchy)
    slow = SlowTransport(w.transport)
    driver = build_resolver(w.config, clock=w.clock, transport=slow, seed=1)

    async def run() -> None:
        await driver.resolve(q())
        w.clock.advance(95)
        slow.delay = 0.02
        hits = [await driver.resolve(q()) for _ in range(30)]
        assert all(h.freshness is Freshness.FRESH and a_ttl(h) == 5 for h in hits)
        assert driver.busy
        while driver.busy:
            await asyncio.sleep(0.01)
        assert sent_for(w) == 2  # the first resolution and one prefetch
        assert a_ttl(await driver.resolve(q())) == TTL

    asyncio.run(run())


def test_failed_prefetch_keeps_the_answer_and_waits_the_recheck_window(
        hierarchy: Hierarchy) -> None:
    w = make(hierarchy)
    recheck = w.config.serve_stale.failure_recheck
    assert recheck < TTL

    async def run() -> None:
        await w.resolver.resolve(q())
        w.clock.advance(91)
        w.faults.apply(dns.name.from_text("c1.de."), FaultKind.SERVFAIL)
        hit = await w.resolver.resolve(q())
        await idle()
        assert hit.freshness is Freshness.FRESH and a_ttl(hit) == 9
        tried = sent_for(w)
        assert tried > 1
        for _ in range(5):  # still fresh, and within the recheck window: no new try
            w.clock.advance(1)
            o = await w.resolver.resolve(q())
            await idle()
            assert o.freshness is Freshness.FRESH and not o.is_failure
        assert sent_for(w) == tried
        # The failed prefetch was no client's failure: nothing in the failure cache.
        assert w.resolver.core.failures.get(q(), w.clock.now()) is None

    asyncio.run(run())


def test_fast_path_mirror_ends_where_a_prefetch_is_due(hierarchy: Hierarchy) -> None:
    w = make(hierarchy)
    fast = FastPath(w.resolver, FrontendStats())
    wire = dns.message.make_query(NAME, "A").to_wire()
    found = fast_key(wire)
    assert found is not None
    key, qend = found
    parsed = parse_query(wire)
    assert isinstance(parsed, ClientQuery)

    async def full_path() -> Outcome:
        outcome = await w.resolver.resolve(parsed.question, cd=parsed.cd)
        fast.learn(key, parsed, outcome)
        return outcome

    async def run() -> None:
        await full_path()
        await full_path()  # a repeat from a fresh entry: learned
        assert fast.answer(key, qend, wire) is not None
        w.clock.advance(89)
        assert fast.answer(key, qend, wire) is not None
        w.clock.advance(2)  # due: the mirror steps aside for the driver
        assert fast.answer(key, qend, wire) is None
        await full_path()  # this hit starts the prefetch
        await idle()
        assert sent_for(w) == 2
        refreshed = await full_path()
        assert a_ttl(refreshed) == TTL
        reply = fast.answer(key, qend, wire)
        assert reply is not None
        assert a_ttl_of(reply) == TTL

    asyncio.run(run())


def a_ttl_of(wire: bytes) -> int:
    msg = dns.message.from_wire(wire)
    return next(r.ttl for r in msg.answer if r.rdtype == dns.rdatatype.A)
