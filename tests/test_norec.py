"""Queries without RD (recursion desired): answered from the cache, never resolved.

server.nonrecursive = "cache" (the default) answers what a query with RD would get from
the cache at that moment and starts nothing upstream for it, no resolution, refresh or
prefetch; an expired answer in its serve-stale window is answered stale, whatever its
refresh is doing; what is not cached is REFUSED with EDE 20, as Unbound refuses the RD=0 queries
it does not serve. "refuse" refuses them all (Unbound's and PowerDNS Recursor 5's
default), "recurse" resolves them (the behaviour before, Unbound's allow_setrd).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import dns.name
import dns.rcode
import dns.rdatatype
import pytest

from anchord.control.config import Config, ConfigError, load_config
from anchord.core.outcome import EdeCode, Freshness, Outcome, Question, Security
from anchord.engine.driver import build_resolver
from anchord.testbed.faults import FaultKind

from .conftest import World, config_for


def q(name: str, qtype: str = "A") -> Question:
    return Question(dns.name.from_text(name), dns.rdatatype.from_text(qtype))


def norec(world: World, name: str, qtype: str = "A") -> Outcome:
    return asyncio.run(world.resolver.resolve_norec(q(name, qtype)))


def rec(world: World, name: str, qtype: str = "A") -> Outcome:
    return asyncio.run(world.resolver.resolve(q(name, qtype)))


def test_uncached_name_is_refused_with_ede20_and_nothing_is_asked(world: World) -> None:
    o = norec(world, "www.c3.de.")
    assert o.rcode == dns.rcode.REFUSED and not o.answer
    assert [e.code for e in o.edes] == [EdeCode.NOT_AUTHORITATIVE]
    assert "www.c3.de./A is not in the cache" in o.edes[0].text
    assert world.transport.sent == []  # no recursion was started for it


def test_cached_answer_is_what_a_query_with_rd_gets_from_the_cache(world: World) -> None:
    first = rec(world, "www.c3.de.")
    world.clock.advance(7)
    again = rec(world, "www.c3.de.")
    o = norec(world, "www.c3.de.")
    assert o == again and o.security is Security.SECURE and o.answer
    assert min(r.ttl for r in o.answer) == min(r.ttl for r in first.answer) - 7
    nx = rec(world, "nosuch.c3.de.")
    assert norec(world, "nosuch.c3.de.") == nx and nx.rcode == dns.rcode.NXDOMAIN
    before = len(world.transport.sent)
    norec(world, "www.c3.de.")
    norec(world, "nosuch.c3.de.")
    assert len(world.transport.sent) == before


def test_a_cached_failure_is_answered_as_cached(world: World) -> None:
    failed = rec(world, "www.bogus.de.")
    assert failed.is_failure  # bogus: rendered as SERVFAIL with EDE 6
    o = norec(world, "www.bogus.de.")
    assert o.is_failure and o.freshness is Freshness.CACHED_FAILURE
    assert o.edes[0].code == EdeCode.DNSSEC_BOGUS
    assert EdeCode.CACHED_ERROR in [e.code for e in o.edes]


def test_an_expired_answer_starts_no_refresh(world: World) -> None:
    """Past its TTL an answer is refreshed for a query with RD (and answered stale only
    if that fails, RFC 8767); without RD there is no refresh: the stale copy is served."""
    fresh = rec(world, "www.c4.de.")
    world.clock.advance(max(r.ttl for r in fresh.answer) + 1)
    before = len(world.transport.sent)
    o = norec(world, "www.c4.de.")
    assert o.freshness is Freshness.STALE and o.answer
    assert o.edes[0].code == EdeCode.STALE_ANSWER
    assert len(world.transport.sent) == before


class HeldTransport:
    """Wraps a transport; while `hold` is set every query waits for `release`."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.hold = False
        self.release = asyncio.Event()

    async def query(self, server: object, request: object, **kw: object) -> object:
        if self.hold:
            await self.release.wait()
        return await self.inner.query(server, request, **kw)  # type: ignore[attr-defined]


def test_a_stale_answer_is_served_stale_without_rd_whatever_its_refresh_is_doing(
        make_world: Callable[..., World], small_hierarchy: object) -> None:
    """Before any refresh, while one runs, after one failed and once the failure recheck
    has passed: RD=0 gets the stale copy each time, never "not in the cache"."""
    cfg = config_for(small_hierarchy)  # type: ignore[arg-type]
    cfg.serve_stale.client_timeout = 60  # RD=1 waits for its refresh: it stays running
    world = make_world(cfg)
    held = HeldTransport(world.transport)
    driver = build_resolver(cfg, clock=world.clock, transport=held, seed=7)
    name = q("www.c6.de.")

    def is_stale(o: Outcome) -> bool:
        return o.freshness is Freshness.STALE and bool(o.answer) \
            and o.edes[0].code == EdeCode.STALE_ANSWER

    async def run() -> None:
        fresh = await driver.resolve(name)
        world.clock.advance(max(r.ttl for r in fresh.answer) + 1)
        first = await driver.resolve_norec(name)  # no refresh tried yet
        assert is_stale(first)
        # It was never looked for upstream: the EDE says why it is stale, not "no fresh
        # answer could be had".
        assert first.edes[0].text.endswith("a query without RD is answered from the cache")
        held.hold = True
        refresh = asyncio.ensure_future(driver.resolve(name))
        await asyncio.sleep(0.01)
        assert driver.busy
        assert is_stale(await driver.resolve_norec(name))  # while the refresh runs
        world.faults.apply(dns.name.from_text("c6.de."), FaultKind.UNREACHABLE)
        held.release.set()
        failed = await refresh
        assert is_stale(failed)  # RD=1: as before, stale once the refresh failed
        assert is_stale(await driver.resolve_norec(name))  # within failure_recheck
        world.clock.advance(cfg.serve_stale.failure_recheck + 1)
        o = await driver.resolve_norec(name)  # a refresh is due, and not started
        assert is_stale(o) and not driver.busy
        assert o.edes[1:] == failed.edes[1:]  # why the last refresh failed, as before

    asyncio.run(run())


def test_without_serve_stale_an_expired_answer_is_refused_as_expired(
        make_world: Callable[..., World], small_hierarchy: object) -> None:
    cfg = config_for(small_hierarchy)  # type: ignore[arg-type]
    cfg.serve_stale.enabled = False
    world = make_world(cfg)
    fresh = rec(world, "www.c4.de.")
    world.clock.advance(max(r.ttl for r in fresh.answer) + 1)
    o = norec(world, "www.c4.de.")
    assert o.rcode == dns.rcode.REFUSED
    assert o.edes[0].text.startswith("www.c4.de./A is in the cache but expired (1 s ago)")


def test_no_prefetch_for_a_query_without_rd(make_world: Callable[..., World],
                                            small_hierarchy: object) -> None:
    cfg = config_for(small_hierarchy)  # type: ignore[arg-type]
    cfg.cache.prefetch = True
    world = make_world(cfg)
    fresh = rec(world, "www.c5.de.")
    world.clock.advance(min(r.ttl for r in fresh.answer) * 0.95)  # a prefetch is due
    before = len(world.transport.sent)

    async def ask() -> Outcome:
        o = await world.resolver.resolve_norec(q("www.c5.de."))
        await asyncio.sleep(0.05)  # a background refresh would have started by now
        return o

    o = asyncio.run(ask())
    assert o.rcode == dns.rcode.NOERROR and o.answer
    assert len(world.transport.sent) == before and not world.resolver.busy


@pytest.mark.parametrize("mode", ["refuse", "recurse"])
def test_the_other_modes(make_world: Callable[..., World], small_hierarchy: object,
                         mode: str) -> None:
    cfg = config_for(small_hierarchy)  # type: ignore[arg-type]
    cfg.server.nonrecursive = mode
    world = make_world(cfg)
    if mode == "refuse":
        rec(world, "www.c6.de.")
        o = norec(world, "www.c6.de.")  # cached, and refused all the same
        assert o.rcode == dns.rcode.REFUSED
        assert o.edes[0].code == EdeCode.NOT_AUTHORITATIVE and "refuse" in o.edes[0].text
    else:
        o = norec(world, "www.c6.de.")  # resolved as if RD were set
        assert o.rcode == dns.rcode.NOERROR and o.security is Security.SECURE
        assert world.transport.sent


def test_the_option_is_checked_and_defaults_to_cache(tmp_path: Path) -> None:
    assert Config().server.nonrecursive == "cache"
    p = tmp_path / "a.toml"
    p.write_text('[server]\nnonrecursive = "snoop"\n')
    with pytest.raises(ConfigError, match="server.nonrecursive.*cache/refuse/recurse"):
        load_config(p)
