"""The cache's bounds: cache.min_ttl and cache.max_ttl on the TTLs answered (fresh and
from cache, as Unbound's cache-min-ttl / cache-max-ttl), cache.max_entries with
least-recently-used eviction, and upstream.max_cname_chain.

The testbed's www.cN.de A records have TTL 3600 (tests/conftest.py World).
"""

from __future__ import annotations

import asyncio

import dns.name
import dns.rcode
import dns.rdatatype

from anchord.core.outcome import EdeCode, Outcome, Question, Security

from .conftest import World, config_for
from .signedworld import standard_world

RECORD_TTL = 3600


def _ask(world: World, name: str, qtype: str = "A") -> Outcome:
    q = Question(dns.name.from_text(name), dns.rdatatype.from_text(qtype))
    return asyncio.run(world.resolver.resolve(q, False))


def _a_ttl(o: Outcome) -> int:
    assert o.rcode == dns.rcode.NOERROR, o.edes
    return next(r.ttl for r in o.answer if r.rdtype == dns.rdatatype.A)


def _upstream_asks(world: World, name: str) -> int:
    return sum(1 for _, sent in world.transport.sent if sent == f"{name}/A")


def _world(world: World, **cache: int) -> World:
    cfg = config_for(world.hierarchy)
    for key, value in cache.items():
        setattr(cfg.cache, key, value)
    return World(world.hierarchy, cfg)


# -- min_ttl / max_ttl ------------------------------------------------------------------


def test_cache_min_ttl_raises_the_answered_ttl_fresh_and_from_cache(world: World) -> None:
    w = _world(world, min_ttl=7200)
    assert _a_ttl(_ask(w, "www.c1.de.")) == 7200
    w.clock.advance(RECORD_TTL + 100)  # past the record's own TTL, inside min_ttl
    assert _a_ttl(_ask(w, "www.c1.de.")) == 7200 - RECORD_TTL - 100
    assert _upstream_asks(w, "www.c1.de.") == 1


def test_cache_max_ttl_caps_the_answered_ttl_and_the_time_kept(world: World) -> None:
    w = _world(world, max_ttl=100)
    assert _a_ttl(_ask(w, "www.c2.de.")) == 100
    w.clock.advance(40)
    assert _a_ttl(_ask(w, "www.c2.de.")) == 60
    assert _upstream_asks(w, "www.c2.de.") == 1
    w.clock.advance(70)  # past max_ttl: asked again, capped again
    assert _a_ttl(_ask(w, "www.c2.de.")) == 100
    assert _upstream_asks(w, "www.c2.de.") == 2


def test_ttls_inside_the_bounds_are_answered_as_received(world: World) -> None:
    w = _world(world, min_ttl=60, max_ttl=86400)
    assert _a_ttl(_ask(w, "www.c3.de.")) == RECORD_TTL


# -- size bound --------------------------------------------------------------------------


def test_cache_max_entries_evicts_the_least_recently_used_answer(world: World) -> None:
    w = _world(world, max_entries=3)
    for i in (1, 2, 3):
        _ask(w, f"www.c{i}.de.")
    _ask(w, "www.c1.de.")  # c1 is now the most recently used, c2 the least
    _ask(w, "www.c4.de.")  # one over the bound: c2 goes
    before = {i: _upstream_asks(w, f"www.c{i}.de.") for i in (1, 2, 3, 4)}
    assert before == {1: 1, 2: 1, 3: 1, 4: 1}
    _ask(w, "www.c1.de.")
    assert _upstream_asks(w, "www.c1.de.") == 1  # kept
    _ask(w, "www.c2.de.")
    assert _upstream_asks(w, "www.c2.de.") == 2  # evicted, asked again


# -- CNAME chain length --------------------------------------------------------------------


def test_cname_chain_longer_than_max_cname_chain_is_servfail_with_ede_naming_it() -> None:
    world = standard_world()
    example = world.zone("example.test.")
    for i in range(6):
        example.add(f"c{i}", "CNAME", f"c{i + 1}.example.test.")
    example.add("c6", "A", "192.0.2.66")
    cfg = world.config()
    cfg.upstream.max_cname_chain = 3
    driver, _ = world.resolver(cfg=cfg)
    q = Question(dns.name.from_text("c0.example.test."), dns.rdatatype.A)
    o = asyncio.run(driver.resolve(q, False))
    assert o.rcode == dns.rcode.SERVFAIL
    assert o.security is not Security.SECURE
    assert [e.code for e in o.edes] == [EdeCode.OTHER], o.edes
    assert "CNAME chain" in o.edes[0].text and "example.test" in o.edes[0].text
    assert "longer than 3" in o.edes[0].text


def test_cname_chain_within_max_cname_chain_is_followed_to_the_end() -> None:
    world = standard_world()
    example = world.zone("example.test.")
    for i in range(3):
        example.add(f"c{i}", "CNAME", f"c{i + 1}.example.test.")
    example.add("c3", "A", "192.0.2.66")
    cfg = world.config()
    cfg.upstream.max_cname_chain = 3
    driver, _ = world.resolver(cfg=cfg)
    q = Question(dns.name.from_text("c0.example.test."), dns.rdatatype.A)
    o = asyncio.run(driver.resolve(q, False))
    assert o.rcode == dns.rcode.NOERROR, o.edes
    assert o.security is Security.SECURE
    assert sum(r.rdtype == dns.rdatatype.CNAME for r in o.answer) == 3
