"""The driver: joining identical questions, and the RFC 8767 client response timer."""

from __future__ import annotations

import asyncio

import dns.message
import dns.name
import dns.rdatatype

from anchord.core.outcome import EdeCode, Freshness, Question
from anchord.core.ports import ServerAddress, UpstreamResult
from anchord.engine.driver import build_resolver

from .conftest import World, config_for


class SlowTransport:
    """Wraps a transport; while `delay` is set every query takes that long (real time)."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.delay = 0.0
        self.queries = 0

    async def query(self, server: ServerAddress, request: dns.message.Message, *,
                    tcp: bool = False, timeout: float = 1.5) -> UpstreamResult:
        self.queries += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        return await self.inner.query(server, request, tcp=tcp, timeout=timeout)  # type: ignore[attr-defined,no-any-return]


def q(name: str) -> Question:
    return Question(dns.name.from_text(name), dns.rdatatype.A)


def test_identical_questions_in_flight_share_one_resolution(world: World) -> None:
    slow = SlowTransport(world.transport)
    driver = build_resolver(world.config, clock=world.clock, transport=slow, seed=1)

    alone = SlowTransport(world.transport)
    lone_driver = build_resolver(world.config, clock=world.clock, transport=alone, seed=1)

    async def run() -> None:
        slow.delay = alone.delay = 0.01
        outcomes = await asyncio.gather(*(driver.resolve(q("www.c3.de.")) for _ in range(20)))
        assert len({o.rcode for o in outcomes}) == 1
        await lone_driver.resolve(q("www.c3.de."))
        # Twenty clients asking at once cost what one client costs.
        assert slow.queries == alone.queries

    asyncio.run(run())


def test_rfc8767_client_response_timer_answers_stale_and_refreshes_in_background(
        world: World) -> None:
    cfg = config_for(world.hierarchy)
    cfg.serve_stale.client_timeout = 0.2
    slow = SlowTransport(world.transport)
    driver = build_resolver(cfg, clock=world.clock, transport=slow, seed=1)

    async def run() -> None:
        fresh = await driver.resolve(q("www.c5.de."))
        ttl = min(r.ttl for r in fresh.answer)
        world.clock.advance(ttl + 1)
        slow.delay = 0.1  # each upstream query now takes 100 ms: the refresh > 200 ms
        loop = asyncio.get_running_loop()
        started = loop.time()
        stale = await driver.resolve(q("www.c5.de."))
        assert loop.time() - started < 0.6
        assert stale.freshness is Freshness.STALE
        assert stale.edes[0].code == EdeCode.STALE_ANSWER
        await asyncio.sleep(1.0)  # the refresh goes on and lands in the cache
        slow.delay = 0.0
        again = await driver.resolve(q("www.c5.de."))
        assert again.freshness is Freshness.FRESH

    asyncio.run(run())
