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

from anchord.core.outcome import Outcome, Question

from .conftest import World, config_for

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
