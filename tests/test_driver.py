"""The driver: joining identical questions, and the RFC 8767 client response timer."""

from __future__ import annotations

import asyncio
import logging

import dns.message
import dns.name
import dns.rdatatype
import pytest

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


def test_nta_log_lines_give_the_end_in_iso8601_utc(world: World,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    """An operator reads the log next to `anchord nta list`: the end must be a date there
    too, not epoch seconds (2026-05-05T22:17:00Z + 1 h = 23:17:00Z)."""
    from anchord.core.trustmap import NegativeAnchor
    from anchord.engine.clock import FakeClock

    clock = FakeClock(1778019420.25)  # 2026-05-05T22:17:00.25Z
    driver = build_resolver(world.config, clock=clock, transport=world.transport, seed=1)
    de = dns.name.from_text("de.")
    with caplog.at_level(logging.INFO, logger="anchord.driver"):
        driver.add_nta(de, 3600, "rollover")
        fleet = NegativeAnchor(dns.name.from_text("com."), "", clock.now(),
                               clock.now() + 7200, True)
        driver.replace_ntas([fleet])  # drops de, adds com: the fleet's line
    lines = [r.getMessage() for r in caplog.records]
    assert "NTA added for de. until 2026-05-05T23:17:00Z (rollover)" in lines
    assert "NTA for com. until 2026-05-06T00:17:00Z (fleet: no reason)" in lines
    assert not any("17780" in line for line in lines), lines
