"""Staying up when the chain of trust breaks (RFC 8767, 7646, 9520), in-process.

The resolver runs against the signed testbed with a fake clock; faults are applied to
the testbed's answering state the way `anchord testbed fault` does on a live one.
"""

from __future__ import annotations

import asyncio
import logging

import dns.name
import dns.rcode
import dns.rdataset
import dns.rdatatype
import dns.rrset
import pytest

from anchord.core.outcome import EdeCode, Freshness, Outcome, Question, Security
from anchord.testbed.faults import FaultKind
from anchord.testbed.zones import Hierarchy, TestbedSpec, build_hierarchy, derive_key

from .conftest import SIGNED_AT, World, config_for

TTL = 60


@pytest.fixture(scope="module")
def short_ttl_hierarchy() -> Hierarchy:
    return build_hierarchy(TestbedSpec(children=6, max_ttl=TTL), SIGNED_AT)


@pytest.fixture
def w(short_ttl_hierarchy: Hierarchy) -> World:
    return World(short_ttl_hierarchy)


def ask(world: World, name: str, qtype: str = "A") -> Outcome:
    q = Question(dns.name.from_text(name), dns.rdatatype.from_text(qtype))
    return asyncio.run(world.resolver.resolve(q))


def fault(world: World, zone: str, kind: FaultKind) -> None:
    world.faults.apply(dns.name.from_text(zone), kind)


def codes(o: Outcome) -> list[int]:
    return [int(e.code) for e in o.edes]


def addresses(o: Outcome) -> set[str]:
    return {rd.address for r in o.answer if r.rdtype == dns.rdatatype.A for rd in r}


def test_rfc8767_stale_survives_bogus_then_timeout_and_recovers(w: World) -> None:
    fresh = ask(w, "www.c0.de.")
    assert fresh.security is Security.SECURE
    w.clock.advance(TTL + 1)
    fault(w, "c0.de.", FaultKind.ROLLOVER)
    upstream_before = len(w.transport.sent)
    attempts: list[float] = []  # when a client query made the resolver ask upstream
    for step in range(int(90 / 0.2)):  # a client polling every 200 ms for 90 s
        if step == 200:
            fault(w, "c0.de.", FaultKind.UNREACHABLE)
        sent = len(w.transport.sent)
        o = ask(w, "www.c0.de.")
        if len(w.transport.sent) > sent:
            attempts.append(w.clock.now())
        assert o.rcode == dns.rcode.NOERROR, (step, o.edes)
        assert o.freshness is Freshness.STALE
        assert addresses(o) == addresses(fresh)  # the old data, never the bogus one
        assert codes(o)[0] == EdeCode.STALE_ANSWER
        assert all(r.ttl == 30 for r in o.answer)
        w.clock.advance(0.2)
    # Upstream was asked at most once per 30 s failure-recheck window: never two refresh
    # attempts closer than 30 s, and at least one per window it was free to try in.
    assert attempts, "the stale answer was never refreshed"
    gaps = [b - a for a, b in zip(attempts, attempts[1:], strict=False)]
    assert all(gap >= 30 - 1e-6 for gap in gaps), attempts
    assert 90 // 30 <= len(attempts) <= 90 // 30 + 1, attempts
    resolutions = len(w.transport.sent) - upstream_before
    assert resolutions <= 4 * 8, resolutions  # <= 4 windows x a handful of queries each
    fault(w, "c0.de.", FaultKind.REPAIR)
    w.clock.advance(31)
    back = ask(w, "www.c0.de.")
    assert back.freshness is Freshness.FRESH and back.security is Security.SECURE


def test_rfc8767_stale_answer_carries_the_refresh_reason(w: World) -> None:
    ask(w, "www.c1.de.")
    w.clock.advance(TTL + 1)
    fault(w, "c1.de.", FaultKind.ROLLOVER)
    o = ask(w, "www.c1.de.")
    assert codes(o)[:2] == [EdeCode.STALE_ANSWER, EdeCode.DNSSEC_BOGUS]
    assert "c1.de" in o.edes[1].text


def test_rfc9520_upstream_servfail_is_cached_with_ede13_even_with_min_ttl(
        short_ttl_hierarchy: Hierarchy) -> None:
    cfg = config_for(short_ttl_hierarchy)
    cfg.cache.min_ttl = 3600
    w = World(short_ttl_hierarchy, cfg)
    fault(w, "c2.de.", FaultKind.SERVFAIL)
    first = ask(w, "www.c2.de.")
    assert first.rcode == dns.rcode.SERVFAIL
    assert codes(first)[0] == EdeCode.NO_REACHABLE_AUTHORITY
    sent = len(w.transport.sent)
    again = ask(w, "www.c2.de.")
    assert len(w.transport.sent) == sent
    assert EdeCode.CACHED_ERROR in codes(again) and codes(again)[0] == codes(first)[0]
    # 10 queries a second for 60 s: upstream work bounded by the failure cache.
    for _ in range(600):
        ask(w, "www.c2.de.")
        w.clock.advance(0.1)
    resolutions = (len(w.transport.sent) - sent)
    assert resolutions < 60, resolutions
    # The failure is never cached beyond 5 min, whatever min_ttl says; the next real
    # answer replaces it.
    fault(w, "c2.de.", FaultKind.REPAIR)
    w.clock.advance(301)
    o = ask(w, "www.c2.de.")
    assert o.rcode == dns.rcode.NOERROR and o.security is Security.SECURE


def test_rfc9520_failure_cache_never_beats_stale_data(w: World) -> None:
    ask(w, "www.c3.de.")
    w.clock.advance(TTL + 1)
    fault(w, "c3.de.", FaultKind.SERVFAIL)
    for _ in range(5):
        o = ask(w, "www.c3.de.")
        assert o.rcode == dns.rcode.NOERROR and o.freshness is Freshness.STALE
        w.clock.advance(2)


def test_rfc7646_nta_child_anchor_and_expiry(short_ttl_hierarchy: Hierarchy) -> None:
    h = short_ttl_hierarchy
    cfg = config_for(h)
    # A correctly signed child (c1.de) and a broken one (bogus.de) with their own anchors.
    for child in ("c1.de.", "bogus.de."):
        de = h.zone(dns.name.from_text("de."))
        assert de is not None
        ds = de.records[(dns.name.from_text(child), dns.rdatatype.DS, 0)]
        for rd in ds:
            cfg.dnssec.trust_anchors.append(f"{child} IN DS {rd.to_text()}")
    w = World(h, cfg)
    fault(w, "de.", FaultKind.ROLLOVER)
    w.resolver.add_nta(dns.name.from_text("de."), lifetime=600, reason="test")
    sibling = ask(w, "www.unsigned.de.")
    assert sibling.rcode == dns.rcode.NOERROR and sibling.security is Security.INSECURE
    assert EdeCode.NEGATIVE_TRUST_ANCHOR in codes(sibling)
    child = ask(w, "www.c1.de.")
    assert child.security is Security.SECURE, child.edes
    bad = ask(w, "www.bogus.de.")
    assert bad.security is Security.BOGUS and codes(bad)[0] == EdeCode.DNSSEC_BOGUS
    assert "bogus.de" in bad.edes[0].text
    ds = ask(w, "c1.de.", "DS")
    assert ds.security is not Security.SECURE
    w.clock.advance(601)
    asyncio.run(w.resolver.maintain_ntas())
    after = ask(w, "www.unsigned.de.")
    assert after.rcode == dns.rcode.SERVFAIL or after.security is Security.BOGUS
    assert codes(after)[0] == EdeCode.DNSSEC_BOGUS
    assert "de" in after.edes[0].text and "key tag" in after.edes[0].text


def test_de_event_in_small_nta_restores_and_recheck_removes_it(w: World) -> None:
    for i in range(3):
        ask(w, f"www.c{i}.de.")
    fault(w, "de.", FaultKind.ROLLOVER)
    w.clock.advance(TTL + 1)
    # Cached names stay answered stale.
    for i in range(3):
        o = ask(w, f"www.c{i}.de.")
        assert o.rcode == dns.rcode.NOERROR and codes(o)[0] == EdeCode.STALE_ANSWER
    # An uncached insecure child: SERVFAIL with EDE 6 naming de, NSEC3 and the key tag.
    o = ask(w, "www.unsigned.de.")
    assert o.security is Security.BOGUS
    assert codes(o)[0] == EdeCode.DNSSEC_BOGUS and EdeCode.NO_REACHABLE_AUTHORITY not in codes(o)
    assert "NSEC3" in o.edes[0].text and "key tag" in o.edes[0].text
    assert o.edes[0].text.split(" by ")[1].startswith("de ")
    # The NTA restores every name, without AD.
    w.resolver.add_nta(dns.name.from_text("de."), lifetime=3600, reason="de rollover")
    for name in ("www.unsigned.de.", "www.c4.de.", "www.c0.de."):
        o = ask(w, name)
        assert o.rcode == dns.rcode.NOERROR and o.security is Security.INSECURE, (name, o.edes)
        assert EdeCode.NEGATIVE_TRUST_ANCHOR in codes(o)
    # Repair; the recheck finds de validating and removes the NTA.
    fault(w, "de.", FaultKind.REPAIR)
    w.clock.advance(301)
    ended = asyncio.run(w.resolver.maintain_ntas())
    assert [why for _, why in ended] == ["recheck"]
    o = ask(w, "www.c4.de.")
    assert o.security is Security.SECURE, o.edes


def test_de_event_in_small_only_nsec3_broken(w: World) -> None:
    """Handed case 6 as the issue words it: de keeps its DNSKEY set, only its NSEC3 RRsets
    are signed by a key not in that set (`nsec3-rollover`); DS and SOA still validate."""
    de = dns.name.from_text("de.")
    rogue = derive_key(w.hierarchy.spec, de, "rogue", w.hierarchy.spec.algorithm_for(de))
    signed = [f"www.c{i}.de." for i in range(3)]
    for name in [*signed, "www.unsigned.de."]:
        assert ask(w, name).rcode == dns.rcode.NOERROR
    fault(w, "de.", FaultKind.NSEC3_ROLLOVER)
    w.clock.advance(TTL + 1)
    # A cached insecure child needs de's NSEC3 no-DS proof to refresh: answered stale.
    o = ask(w, "www.unsigned.de.")
    assert o.rcode == dns.rcode.NOERROR and o.freshness is Freshness.STALE, o.edes
    assert codes(o)[0] == EdeCode.STALE_ANSWER and EdeCode.DNSSEC_BOGUS in codes(o)
    # Signed children never use the NSEC3 records: they validate, cached ones after
    # their TTL ran out as well as one never asked before.
    for name in [*signed, "www.c4.de."]:
        o = ask(w, name)
        assert o.security is Security.SECURE and o.freshness is Freshness.FRESH, (name, o.edes)
        assert not o.edes, (name, o.edes)
    # An uncached insecure child: EDE 6 naming de, NSEC3 and the rogue key's tag; no 22.
    o = ask(w, "www.optout.de.")
    assert o.is_failure and o.security is Security.BOGUS
    assert codes(o)[0] == EdeCode.DNSSEC_BOGUS, o.edes
    assert not {EdeCode.NO_REACHABLE_AUTHORITY, EdeCode.NETWORK_ERROR} & set(codes(o))
    text = o.edes[0].text
    assert "/NSEC3" in text and f"by de key tag {rogue.key_tag} " in text, text
    # The NTA on de restores every name, without AD.
    w.resolver.add_nta(de, lifetime=3600, reason="de NSEC3 rollover")
    everything = [*signed, "www.c4.de.", "www.unsigned.de.", "www.optout.de."]
    for name in everything:
        o = ask(w, name)
        assert o.rcode == dns.rcode.NOERROR and o.security is Security.INSECURE, (name, o.edes)
        assert codes(o) == [EdeCode.NEGATIVE_TRUST_ANCHOR], (name, o.edes)
    # Repaired and the NTA removed: every name validates again (insecure children as
    # Insecure, without an error) within the failure cache's 300 s bound.
    fault(w, "de.", FaultKind.REPAIR)
    w.resolver.remove_nta(de)
    started = w.clock.now()
    pending = set(everything)
    while pending:
        assert w.clock.now() - started <= 300, sorted(pending)
        for name in sorted(pending):
            o = ask(w, name)
            want = Security.INSECURE if name in ("www.unsigned.de.", "www.optout.de.") \
                else Security.SECURE
            if o.security is want and not o.edes and o.freshness is Freshness.FRESH:
                pending.discard(name)
        w.clock.advance(5)


def test_rrset_ttls_at_most_the_testbed_cap(w: World) -> None:
    o = ask(w, "www.c5.de.")
    assert all(isinstance(r, dns.rrset.RRset) and r.ttl <= TTL for r in o.answer)


def test_rfc8767_cname_keeps_its_ttl_while_its_target_is_stale(w: World) -> None:
    first = ask(w, "www.alias.de.")
    assert first.security is Security.SECURE
    w.clock.advance(TTL + 1)
    fault(w, "c0.de.", FaultKind.UNREACHABLE)
    o = ask(w, "www.alias.de.")
    assert o.rcode == dns.rcode.NOERROR
    assert codes(o)[0] == EdeCode.STALE_ANSWER
    ttls = {r.rdtype: r.ttl for r in o.answer if r.rdtype != dns.rdatatype.RRSIG}
    assert ttls[dns.rdatatype.CNAME] == TTL  # refreshed from its reachable zone
    assert ttls[dns.rdatatype.A] == 30  # the unreachable target, stale
    assert addresses(o) == addresses(first)


@pytest.mark.parametrize("new_ttl", [0, TTL])
def test_rfc8767_nxdomain_gives_way_once_the_name_exists(w: World, new_ttl: int) -> None:
    name = "www2.unsigned.de."
    o = ask(w, name)
    assert o.rcode == dns.rcode.NXDOMAIN
    # The name is created in the unsigned zone while the NXDOMAIN is cached.
    zone = w.authority._served_zone(dns.name.from_text("unsigned.de."))
    assert zone is not None
    rds = dns.rdataset.from_text("IN", "A", new_ttl, "192.0.2.77")
    zone.add_unsigned(dns.name.from_text(name), rds)
    stale_nx = 0
    for _ in range(int(2 * TTL / 0.5)):  # a client asking every 0.5 s
        o = ask(w, name)
        if o.rcode == dns.rcode.NXDOMAIN:
            assert stale_nx == 0 or o.freshness is Freshness.FRESH
            if o.freshness is Freshness.STALE:
                stale_nx += 1
                assert codes(o)[0] == EdeCode.STALE_NXDOMAIN_ANSWER
        else:
            assert addresses(o) == {"192.0.2.77"}
            break
        w.clock.advance(0.5)
    assert stale_nx <= 1
    for _ in range(4):  # asked again (TTL 0: refetched each time), always the new answer
        w.clock.advance(0.5)
        o = ask(w, name)
        assert o.rcode == dns.rcode.NOERROR and addresses(o) == {"192.0.2.77"}


def test_keys_bogus_at_the_parent_side_spare_the_childs_servers(w: World) -> None:
    """Top-down: once a child's DS fails to verify under a broken TLD, the child's own
    servers are not asked for data (nothing they send could validate), a refresh within
    the bogus back-off asks nobody, and a refresh after it asks only the parent for the
    DS: at most one query per TLD server, never the child's A, never an EDE 22."""
    ask(w, "www.c1.de.")
    fault(w, "de.", FaultKind.ROLLOVER)
    w.clock.advance(TTL + 1)
    sent_before = len(w.transport.sent)
    o = ask(w, "www.c1.de.")
    assert codes(o)[0] == EdeCode.STALE_ANSWER and EdeCode.DNSSEC_BOGUS in codes(o)
    first = w.transport.sent[sent_before:]
    children = set(w.hierarchy.spec.addresses.children)
    assert not [q for server, q in first if server.host in children], first
    assert sum(q == "c1.de./DS" for _, q in first) <= len(w.hierarchy.spec.addresses.de)
    # Within the back-off: answered stale, nobody asked.
    w.clock.advance(31)
    sent_before = len(w.transport.sent)
    o = ask(w, "www.c1.de.")
    assert codes(o)[0] == EdeCode.STALE_ANSWER
    assert w.transport.sent[sent_before:] == []
    # A never-cached name below the broken child: EDE 6 naming de, no query to c1.de.
    sent_before = len(w.transport.sent)
    o = ask(w, "nothere.c1.de.")
    assert codes(o)[0] == EdeCode.DNSSEC_BOGUS and "de key tag" in o.edes[0].text, o.edes
    assert not [q for server, q in w.transport.sent[sent_before:] if server.host in children]


def test_cd_client_still_gets_the_data_under_a_bogus_cut(w: World) -> None:
    ask(w, "www.c2.de.")
    fault(w, "de.", FaultKind.ROLLOVER)
    w.clock.advance(TTL + 1)
    q = Question(dns.name.from_text("www2.c2.de."), dns.rdatatype.A)
    cut = asyncio.run(w.resolver.resolve(q))
    assert cut.rcode == dns.rcode.SERVFAIL and cut.security is Security.BOGUS
    with_cd = asyncio.run(w.resolver.resolve(q, cd=True))
    # The child's own answer (an NXDOMAIN here), unvalidated, as CD asks.
    assert with_cd.rcode != dns.rcode.SERVFAIL, with_cd.edes


def test_rfc7646_recheck_keeps_the_nta_while_an_asked_name_still_fails(w: World) -> None:
    """bogus.de's SOA validates but www.bogus.de/A does not: an NTA a client relied on
    for www.bogus.de must survive its recheck; one whose asked names validate ends."""
    zone = dns.name.from_text("bogus.de.")
    w.resolver.add_nta(zone, lifetime=3600, reason="www does not verify")
    o = ask(w, "www.bogus.de.")
    assert o.rcode == dns.rcode.NOERROR and EdeCode.NEGATIVE_TRUST_ANCHOR in codes(o)
    w.clock.advance(301)
    assert asyncio.run(w.resolver.maintain_ntas()) == []
    (nta,) = w.resolver.trust.ntas()
    assert nta.last_recheck_result is not None
    assert nta.last_recheck_result.startswith("bogus") and "www.bogus.de" in nta.last_recheck_result
    # Where the asked names validate, the recheck ends the NTA as before.
    healthy = dns.name.from_text("c3.de.")
    w.resolver.add_nta(healthy, lifetime=3600, reason="precaution")
    assert EdeCode.NEGATIVE_TRUST_ANCHOR in codes(ask(w, "www.c3.de."))
    w.clock.advance(301)
    ended = asyncio.run(w.resolver.maintain_ntas())
    assert [(n.zone, why) for n, why in ended] == [(healthy, "recheck")]
    assert [n.zone for n in w.resolver.trust.ntas()] == [zone]
    assert ask(w, "www.c3.de.").security is Security.SECURE


def test_rfc9520_failure_cache_backs_off_from_1s_doubling_to_300s_despite_min_ttl(
        short_ttl_hierarchy: Hierarchy) -> None:
    """The failure cache's own bounds (1 s floor, doubling, 300 s cap), not cache.min_ttl."""
    cfg = config_for(short_ttl_hierarchy)
    cfg.cache.min_ttl = 3600
    w = World(short_ttl_hierarchy, cfg)
    fault(w, "c2.de.", FaultKind.SERVFAIL)
    retries: list[float] = []  # when a client query was resolved again, not from the cache
    started = w.clock.now()
    while w.clock.now() - started < 1200:
        o = ask(w, "www.c2.de.")
        assert o.rcode == dns.rcode.SERVFAIL
        if o.freshness is not Freshness.CACHED_FAILURE:
            retries.append(w.clock.now() - started)
        w.clock.advance(0.25)
    gaps = [b - a for a, b in zip(retries, retries[1:], strict=False)]
    assert gaps[:10] == [1, 2, 4, 8, 16, 32, 64, 128, 256, 300], gaps
    assert set(gaps[9:]) == {300}, gaps


def test_rfc7646_nta_at_the_same_name_as_a_trust_anchor_wins(
        short_ttl_hierarchy: Hierarchy) -> None:
    h = short_ttl_hierarchy
    cfg = config_for(h)
    de = h.zone(dns.name.from_text("de."))
    assert de is not None
    zone = dns.name.from_text("bogus.de.")
    for rd in de.records[(zone, dns.rdatatype.DS, 0)]:
        cfg.dnssec.trust_anchors.append(f"bogus.de. IN DS {rd.to_text()}")
    w = World(h, cfg)
    assert ask(w, "www.bogus.de.").security is Security.BOGUS  # the anchor is in force
    w.resolver.add_nta(zone, lifetime=600, reason="same name as the anchor")
    o = ask(w, "www.bogus.de.")
    assert o.rcode == dns.rcode.NOERROR and o.security is Security.INSECURE, o.edes
    assert codes(o) == [EdeCode.NEGATIVE_TRUST_ANCHOR]


@pytest.mark.parametrize("cd", [False, True])
def test_rfc8767_bogus_data_is_never_a_stale_candidate(w: World, cd: bool) -> None:
    q = Question(dns.name.from_text("www.bogus.de."), dns.rdatatype.A)
    first = asyncio.run(w.resolver.resolve(q, cd=cd))
    assert first.security is Security.BOGUS or cd
    w.clock.advance(TTL + 1)
    fault(w, "bogus.de.", FaultKind.UNREACHABLE)
    o = asyncio.run(w.resolver.resolve(q))
    assert o.rcode == dns.rcode.SERVFAIL and o.freshness is not Freshness.STALE, o
    assert not {EdeCode.STALE_ANSWER, EdeCode.STALE_NXDOMAIN_ANSWER} & set(codes(o))


def test_rfc8767_cd_fetched_unvalidated_data_is_never_a_stale_candidate(w: World) -> None:
    """c2.de's signatures are broken while a CD client fetches www.c2.de: that copy was
    never validated, so once c2.de is unreachable it must not come back as stale."""
    q = Question(dns.name.from_text("www.c2.de."), dns.rdatatype.A)
    fault(w, "c2.de.", FaultKind.ROLLOVER)
    fetched = asyncio.run(w.resolver.resolve(q, cd=True))
    assert fetched.rcode == dns.rcode.NOERROR and fetched.answer
    w.clock.advance(TTL + 1)
    fault(w, "c2.de.", FaultKind.UNREACHABLE)
    o = asyncio.run(w.resolver.resolve(q))
    assert o.rcode == dns.rcode.SERVFAIL and o.freshness is not Freshness.STALE, o
    assert EdeCode.STALE_ANSWER not in codes(o)


def test_rfc7646_expired_nta_is_removed_and_logged(w: World,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    zone = dns.name.from_text("bogus.de.")
    w.resolver.add_nta(zone, lifetime=60, reason="short")
    assert EdeCode.NEGATIVE_TRUST_ANCHOR in codes(ask(w, "www.bogus.de."))
    w.clock.advance(61)
    with caplog.at_level(logging.INFO, logger="anchord"):
        ended = asyncio.run(w.resolver.maintain_ntas())
    assert [(n.zone, why) for n, why in ended] == [(zone, "expiry")], ended
    assert w.resolver.trust.ntas() == []
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert any("bogus.de" in line and "expired" in line for line in lines), lines
    assert ask(w, "www.bogus.de.").security is Security.BOGUS  # not insecure any more
