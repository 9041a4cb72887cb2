"""The resolution core against the signed testbed, in-process with a fake clock.

Each fault zone must give its own EDE code, with a text naming the zone and key tag,
the same fresh and from cache.

The last part builds tiny worlds with tests/signedworld.py (real keys, one response
mutation each) for the validator rules the .rpl scenarios found: wildcard-expanded
denial records, missing DNSKEY sets, RRSIGs in ADDITIONAL, forwarded unsigned denials.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest

from anchord.control.config import Config
from anchord.core.outcome import EdeCode, Outcome, Question, Security
from anchord.core.ports import ServerAddress, UpstreamError, UpstreamResult
from anchord.core.wire import parse_response
from anchord.engine.clock import FakeClock
from anchord.engine.driver import build_resolver
from anchord.testbed.zones import TestbedSpec, build_hierarchy

from . import signedworld
from .conftest import SIGNED_AT, World
from .signedworld import NSEC, RRSIG_T, SOA, SignedWorld, WorldTransport, standard_world


def ask(world: World, name: str, qtype: str = "A", cd: bool = False) -> Outcome:
    q = Question(dns.name.from_text(name), dns.rdatatype.from_text(qtype))
    return asyncio.run(world.resolver.resolve(q, cd))


@pytest.mark.parametrize("name", ["www.c0.de.", "www.c3.de.", "www.hoster.com.",
                                  "anything.wild.de."])
def test_rfc4035_signed_names_are_secure(world: World, name: str) -> None:
    o = ask(world, name)
    assert o.rcode == dns.rcode.NOERROR
    assert o.security is Security.SECURE
    assert any(r.rdtype == dns.rdatatype.A for r in o.answer)


def test_out_of_bailiwick_ns_needs_an_address_lookup(world: World) -> None:
    o = ask(world, "www.c7.de.")
    assert o.security is Security.SECURE, o.edes
    assert any("hoster.com" in sent for _, sent in world.transport.sent)


def test_cname_into_another_zone_is_followed_and_secure(world: World) -> None:
    o = ask(world, "www.alias.de.")
    types = {r.rdtype for r in o.answer}
    assert dns.rdatatype.CNAME in types and dns.rdatatype.A in types
    assert o.security is Security.SECURE


@pytest.mark.parametrize(
    ("name", "code", "words"),
    [
        ("www.bogus.de.", EdeCode.DNSSEC_BOGUS, ["bogus.de", "key tag"]),
        ("www.expired.de.", EdeCode.SIGNATURE_EXPIRED, ["expired.de", "key tag"]),
        ("www.notyet.de.", EdeCode.SIGNATURE_NOT_YET_VALID, ["notyet.de", "key tag"]),
        ("www.nokey.de.", EdeCode.DNSKEY_MISSING, ["nokey.de", "key tag"]),
    ],
)
def test_each_fault_zone_is_bogus_with_its_own_ede(world: World, name: str, code: EdeCode,
                                                   words: list[str]) -> None:
    for attempt in ("fresh", "cached"):
        o = ask(world, name)
        assert o.security is Security.BOGUS, attempt
        assert o.edes and o.edes[0].code == code, (attempt, o.edes)
        for w in words:
            assert w in o.edes[0].text, (attempt, o.edes[0].text)


def test_cached_failure_keeps_the_code_and_adds_ede13(world: World) -> None:
    first = ask(world, "www.bogus.de.")
    sent = len(world.transport.sent)
    second = ask(world, "www.bogus.de.")
    assert len(world.transport.sent) == sent  # no new upstream query
    assert second.edes[0] == first.edes[0]
    assert EdeCode.CACHED_ERROR in {e.code for e in second.edes}


@pytest.mark.parametrize("name", ["www.unsigned.de.", "www.optout.de."])
def test_rfc4035_insecure_delegations_answer_without_ad(world: World, name: str) -> None:
    o = ask(world, name)
    assert o.rcode == dns.rcode.NOERROR
    assert o.security is Security.INSECURE
    assert not any(e.code == EdeCode.DNSSEC_BOGUS for e in o.edes)


def test_rfc8624_testbed_zones_signed_with_algorithms_8_and_15_resolve_secure() -> None:
    """Per-zone algorithms of TestbedSpec: c1.de RSASHA256, c2.de Ed25519 and com
    (which holds www.hoster.com) RSASHA256, under a root and de signed with 13."""
    spec = TestbedSpec(children=3, algorithms=(("c1.de.", 8), ("c2.de.", 15), ("com.", 8)))
    world = World(build_hierarchy(spec, SIGNED_AT))
    for name, algorithm in (("www.c1.de.", 8), ("www.c2.de.", 15), ("www.hoster.com.", 8)):
        o = ask(world, name)
        assert o.rcode == dns.rcode.NOERROR, (name, o.edes)
        assert o.security is Security.SECURE, (name, o.edes)
        sigs = [rd for r in o.answer if r.rdtype == dns.rdatatype.RRSIG for rd in r]
        assert sigs and {rd.algorithm for rd in sigs} == {algorithm}, name
    keys = ask(world, "com.", "DNSKEY")
    assert keys.security is Security.SECURE
    assert {rd.algorithm for r in keys.answer if r.rdtype == dns.rdatatype.DNSKEY
            for rd in r} == {8}


def test_rfc4035_nxdomain_in_signed_zone_is_secure(world: World) -> None:
    for _ in range(2):
        o = ask(world, "nosuchname.c1.de.")
        assert o.rcode == dns.rcode.NXDOMAIN
        assert o.security is Security.SECURE


def test_rfc4035_nodata_in_signed_zone_is_secure(world: World) -> None:
    o = ask(world, "www.c1.de.", "TXT")
    assert o.rcode == dns.rcode.NOERROR and not o.answer
    assert o.security is Security.SECURE


def test_second_ask_is_served_from_cache(world: World) -> None:
    ask(world, "www.c2.de.")
    sent = len(world.transport.sent)
    o = ask(world, "www.c2.de.")
    assert len(world.transport.sent) == sent
    assert o.security is Security.SECURE


def test_ds_and_dnskey_questions_are_answered_securely(world: World) -> None:
    ds = ask(world, "c1.de.", "DS")
    assert ds.security is Security.SECURE and ds.answer
    keys = ask(world, "c1.de.", "DNSKEY")
    assert keys.security is Security.SECURE and keys.answer


def _covered(o: Outcome) -> set[str]:
    return {dns.rdatatype.to_text(r.covers) for r in o.answer if r.rdtype == dns.rdatatype.RRSIG}


def test_rrsig_question_is_answered_without_ad_as_unbound_answers_it(world: World) -> None:
    """RRSIGs are not signed themselves (RFC 4035 2.2): a positive answer to an RRSIG
    question cannot be validated, so it goes out NOERROR without AD and without an EDE
    (Unbound's validator: "cannot validate RRSIG, no sigs on sigs"; its val_rrsig.rpl).
    It was SERVFAIL while the testbed answered NODATA with an NSEC listing RRSIG."""
    for _ in range(2):  # fresh, then from the cache
        o = ask(world, "www.c4.de.", "RRSIG")
        assert (o.rcode, o.security, o.edes) == (dns.rcode.NOERROR, Security.INSECURE, ())
        assert _covered(o) == {"A", "AAAA", "NSEC"}
    apex = ask(world, "c4.de.", "RRSIG")
    assert apex.rcode == dns.rcode.NOERROR and apex.security is Security.INSECURE
    assert {"SOA", "NS", "DNSKEY"} <= _covered(apex)
    wild = ask(world, "anything.wild.de.", "RRSIG")
    assert wild.rcode == dns.rcode.NOERROR and "A" in _covered(wild)


def test_rrsig_question_denials_are_validated_as_for_any_type(world: World) -> None:
    o = ask(world, "nosuch.c4.de.", "RRSIG")
    assert o.rcode == dns.rcode.NXDOMAIN and o.security is Security.SECURE
    unsigned = ask(world, "www.unsigned.de.", "RRSIG")
    assert unsigned.rcode == dns.rcode.NOERROR and not unsigned.answer
    assert unsigned.security is Security.INSECURE


def test_rrsigs_learned_unvalidated_do_not_change_the_answers_they_cover(world: World) -> None:
    """Either order: the data keeps its AD, the RRSIG question stays without it."""
    ask(world, "www.c5.de.", "RRSIG")
    assert ask(world, "www.c5.de.").security is Security.SECURE
    assert ask(world, "www.c6.de.").security is Security.SECURE
    assert ask(world, "www.c6.de.", "RRSIG").security is Security.INSECURE
    assert ask(world, "www.c6.de.").security is Security.SECURE


def test_cd_keeps_bogus_data_for_the_client(world: World) -> None:
    o = ask(world, "www.bogus.de.", cd=True)
    assert o.security is Security.BOGUS
    assert any(r.rdtype == dns.rdatatype.A for r in o.answer)


def test_cd_after_a_cached_bogus_failure_gets_the_data_without_cached_error(
        world: World) -> None:
    # The non-CD client's failure is cached (RFC 9520) with the bogus records; a CD
    # client then gets those records with NOERROR, which is not an error to call cached.
    first = ask(world, "www.bogus.de.")
    assert first.is_failure and EdeCode.CACHED_ERROR not in [e.code for e in first.edes]
    o = ask(world, "www.bogus.de.", cd=True)
    assert any(r.rdtype == dns.rdatatype.A for r in o.answer)
    assert [e.code for e in o.edes] == [EdeCode.DNSSEC_BOGUS]
    again = ask(world, "www.bogus.de.")
    assert [e.code for e in again.edes] == [EdeCode.DNSSEC_BOGUS, EdeCode.CACHED_ERROR]


def test_rfc4035_resolver_clock_30_days_past_expiry_gives_ede7(make_world) -> None:  # type: ignore[no-untyped-def]
    w = make_world(at=2_000_000_000.0)  # far past every signature's expiration
    o = ask(w, "www.c0.de.")
    assert o.security is Security.BOGUS
    assert o.edes[0].code == EdeCode.SIGNATURE_EXPIRED


def test_rfc4035_resolver_clock_before_inception_gives_ede8(make_world) -> None:  # type: ignore[no-untyped-def]
    from .conftest import SIGNED_AT

    w = make_world(at=SIGNED_AT - 8 * 86400)
    o = ask(w, "www.c0.de.")
    assert o.security is Security.BOGUS
    assert o.edes[0].code == EdeCode.SIGNATURE_NOT_YET_VALID


# -- signed worlds with one mutated response (tests/signedworld.py) ----------------------------

Filter = Callable[[dns.message.Message, dns.message.Message], None]


def _n(text: str) -> dns.name.Name:
    return dns.name.from_text(text)


def _edes(o: Outcome) -> list[str]:
    return [str(e) for e in o.edes]


def _failing(qtype: int, rcode: int) -> Filter:
    """Responses to `qtype` questions become an empty, non-authoritative `rcode`."""
    def fail(request: dns.message.Message, response: dns.message.Message) -> None:
        if request.question[0].rdtype == qtype:
            response.answer, response.authority, response.additional = [], [], []
            response.flags &= ~dns.flags.AA
            response.set_rcode(rcode)
    return fail


class _Silent(WorldTransport):
    """The world's transport, with `host` never answering `qtype` questions."""

    def __init__(self, world: SignedWorld, host: str, qtype: int) -> None:
        super().__init__(world)
        self.host, self.qtype = host, qtype

    async def query(self, server: ServerAddress, request: dns.message.Message, *,
                    tcp: bool = False, timeout: float = 1.5) -> UpstreamResult:
        if server.host == self.host and request.question[0].rdtype == self.qtype:
            return UpstreamResult(server, None, UpstreamError.TIMEOUT)
        return await super().query(server, request, tcp=tcp, timeout=timeout)


def _ask_silent(world: SignedWorld, zone: str, qtype: int, qname: str) -> Outcome:
    world.build()
    transport = _Silent(world, world.zone(zone).address, qtype)
    driver = build_resolver(world.config(), clock=FakeClock(world.now), transport=transport,
                            seed=7)
    return signedworld.ask(driver, qname)


# CVE-2017-15105: an NSEC whose RRSIG labels count is below its owner's was expanded
# from a wildcard. Its signature verifies (the signer rebuilds the '*' owner), so a
# validator that only checks signatures takes the owner as a real name of the zone.

def _expanded_nsec_world() -> tuple[SignedWorld, signedworld.Zone]:
    """example.test. has *.w (A) and a.w (TXT); a NODATA for a.w/TXT carries the
    wildcard's NSEC expanded to a.w (bitmap 'A NSEC RRSIG': no TXT), as an attacker
    replays it from a wildcard answer."""
    world = standard_world()
    example = world.zone("example.test.")
    example.add("a.w", "TXT", '"exists"')
    target, wildcard = _n("a.w.example.test."), _n("*.w.example.test.")

    def forge(request: dns.message.Message, response: dns.message.Message) -> None:
        q = request.question[0]
        if q.name == target and q.rdtype == dns.rdatatype.TXT:
            response.answer, response.authority = [], []
            example._add(response.authority, example.origin, SOA, True)
            example._add(response.authority, wildcard, NSEC, True, owner=target)

    example.filters.append(forge)
    return world, example


def test_cve_2017_15105_wildcard_expanded_nsec_is_bogus_with_ede6_naming_record_and_key() -> (
        None):
    world, example = _expanded_nsec_world()
    o = world.ask("a.w.example.test.", "TXT")
    assert o.security is Security.BOGUS and o.is_failure, _edes(o)
    assert o.edes[0].code == EdeCode.DNSSEC_BOGUS, _edes(o)
    text = o.edes[0].text
    assert "a.w.example.test./NSEC" in text and "wildcard expansion" in text
    assert f"key tag {example.keys[0].tag}" in text and "example.test" in text


def test_cve_2017_15105_wildcard_expanded_nsec_is_not_kept_for_aggressive_use() -> None:
    world, _ = _expanded_nsec_world()
    cfg = world.config()
    cfg.cache.aggressive_nsec = True
    driver, _ = world.resolver(cfg=cfg)
    assert signedworld.ask(driver, "a.w.example.test.", "TXT").is_failure
    sent = len(world.sent)
    # Kept, the forged NSEC at a.w would deny MX there from the cache (RFC 8198).
    o = signedworld.ask(driver, "a.w.example.test.", "MX")
    assert world.sent[sent:] == [(world.zone("example.test.").address,
                                  "a.w.example.test./MX")]
    assert o.security is Security.SECURE and o.rcode == dns.rcode.NOERROR and not o.answer


# RFC 4035 4.3: a DNSKEY set the DS says exists, that every server answers without, is
# missing data the chain of trust needs (bogus, 9); silence is no proof of anything (22).

ERROR_RCODES = pytest.mark.parametrize("rcode", [dns.rcode.SERVFAIL, dns.rcode.REFUSED],
                                       ids=["servfail", "refused-lame"])


@ERROR_RCODES
def test_rfc4035_dnskey_set_every_server_answers_without_is_bogus_with_ede9(rcode: int) -> None:
    world = standard_world()
    world.zone("example.test.").filters.append(_failing(dns.rdatatype.DNSKEY, rcode))
    o = world.ask("www.example.test.")
    assert o.security is Security.BOGUS and o.is_failure, _edes(o)
    assert o.edes[0].code == EdeCode.DNSKEY_MISSING, _edes(o)
    text = o.edes[0].text
    assert "example.test. has a DS" in text and dns.rcode.to_text(rcode) in text


def test_rfc4035_dnskey_set_whose_servers_time_out_stays_indeterminate_with_ede22() -> None:
    o = _ask_silent(standard_world(), "example.test.", dns.rdatatype.DNSKEY,
                    "www.example.test.")
    assert o.security is Security.INDETERMINATE and o.rcode == dns.rcode.SERVFAIL, _edes(o)
    assert o.edes[0].code == EdeCode.NO_REACHABLE_AUTHORITY, _edes(o)
    assert "DNSKEY set of example.test." in o.edes[0].text and "timed out" in o.edes[0].text


def _ds_asked_apart(world: SignedWorld, rcode: int | None = None) -> SignedWorld:
    """test.'s referrals to example.test. lose their DS (so the resolver asks for it),
    and DS questions get the error `rcode` (None: answered as usual)."""
    fail = _failing(dns.rdatatype.DS, rcode) if rcode is not None else None

    def strip(request: dns.message.Message, response: dns.message.Message) -> None:
        if fail is not None:
            fail(request, response)
        response.authority = [r for r in response.authority
                              if dns.rdatatype.DS not in (r.rdtype, r.covers)]

    world.zone("test.").filters.append(strip)
    return world


@ERROR_RCODES
def test_rfc8914_ds_query_every_parent_server_answers_with_an_error_is_ede23(rcode: int
                                                                            ) -> None:
    o = _ds_asked_apart(standard_world(), rcode).ask("www.example.test.")
    assert o.security is Security.INDETERMINATE and o.rcode == dns.rcode.SERVFAIL, _edes(o)
    assert o.edes[0].code == EdeCode.NETWORK_ERROR, _edes(o)
    text = o.edes[0].text
    assert "DS set of example.test." in text and dns.rcode.to_text(rcode) in text


def test_rfc8914_ds_query_whose_parent_servers_time_out_stays_ede22() -> None:
    o = _ask_silent(_ds_asked_apart(standard_world()), "test.", dns.rdatatype.DS,
                    "www.example.test.")
    assert o.security is Security.INDETERMINATE and o.rcode == dns.rcode.SERVFAIL, _edes(o)
    assert o.edes[0].code == EdeCode.NO_REACHABLE_AUTHORITY, _edes(o)
    assert "DS set of example.test." in o.edes[0].text


# RFC 4035 3.1.1 asks servers to keep an RRSIG with its RRset, but one in ADDITIONAL is
# still the RRset's: with two algorithms, either signature alone makes the data secure.

def _split_algorithm_world(corrupt_alg13: bool) -> SignedWorld:
    world = standard_world()
    two = world.zone("two.test.", algorithms=(13, 14))
    two.add("www", "A", "192.0.2.14")
    if corrupt_alg13:
        world.mutate("two.test.", "corrupt-rrsigs", algorithm=13, owner="www", rdtype="A")
    target = _n("www.two.test.")

    def move_alg14(request: dns.message.Message, response: dns.message.Message) -> None:
        if request.question[0].name != target:
            return
        for rrset in response.answer:
            if rrset.rdtype == RRSIG_T:
                moved = dns.rrset.RRset(rrset.name, rrset.rdclass, rrset.rdtype, rrset.covers)
                moved.update_ttl(rrset.ttl)
                for sig in [s for s in rrset if s.algorithm == 14]:
                    rrset.discard(sig)
                    moved.add(sig)
                response.additional.append(moved)

    two.filters.append(move_alg14)
    return world


def test_rfc4035_rrsig_in_additional_joins_the_rrsigs_beside_its_rrset() -> None:
    o = _split_algorithm_world(corrupt_alg13=False).ask("www.two.test.")
    assert o.security is Security.SECURE, _edes(o)
    sigs = [r for r in o.answer if r.rdtype == RRSIG_T]
    assert len(sigs) == 1 and sorted(s.algorithm for s in sigs[0]) == [13, 14]


def test_rfc4035_good_rrsig_in_additional_beside_a_broken_one_in_answer_is_secure() -> None:
    o = _split_algorithm_world(corrupt_alg13=True).ask("www.two.test.")
    assert o.security is Security.SECURE and o.rcode == dns.rcode.NOERROR, _edes(o)


# A forwarder answers for '.', which has no trust anchor here; the configured anchor of
# example.test. still rules the names below it (RFC 4035 4.3, 5).

FORWARDER = "192.0.2.53"


def _forwarded_world(mutation: Filter | None) -> tuple[SignedWorld, Config]:
    """., test. and example.test. on one forwarder, anchored at example.test. only."""
    world = SignedWorld()
    for origin in (".", "test.", "example.test."):
        zone = world.zone(origin, address=FORWARDER)
        if mutation is not None:
            zone.filters.append(mutation)
    example = world.zone("example.test.")
    example.add("www", "A", "192.0.2.80")
    cfg = world.config()
    cfg.upstream.root_hints = {}
    cfg.upstream.forward_zones = {".": [FORWARDER]}
    cfg.dnssec.trust_anchors = [f"example.test. 3600 IN DS {example.ds_texts()[0]}"]
    return world, cfg


def _strip_rrsigs(request: dns.message.Message, response: dns.message.Message) -> None:
    response.authority = [r for r in response.authority if r.rdtype != RRSIG_T]


def _strip_authority(request: dns.message.Message, response: dns.message.Message) -> None:
    if not response.answer:
        response.authority = []


@pytest.mark.parametrize(
    ("qname", "qtype", "mutation", "code"),
    [("www.example.test.", "TXT", _strip_rrsigs, EdeCode.RRSIGS_MISSING),
     ("nope.example.test.", "A", _strip_rrsigs, EdeCode.RRSIGS_MISSING),
     ("www.example.test.", "DS", _strip_rrsigs, EdeCode.RRSIGS_MISSING),
     ("www.example.test.", "TXT", _strip_authority, EdeCode.NSEC_MISSING)],
    ids=["nodata", "nxdomain", "ds-nodata", "nodata-without-records"],
)
def test_rfc4035_unsigned_denial_via_forwarder_under_deeper_anchor_is_bogus(
        qname: str, qtype: str, mutation: Filter, code: EdeCode) -> None:
    world, cfg = _forwarded_world(mutation)
    driver, _ = world.resolver(cfg=cfg)
    o = signedworld.ask(driver, qname, qtype)
    assert o.security is Security.BOGUS and o.is_failure, _edes(o)
    assert o.edes[0].code == code, _edes(o)
    assert qname in o.edes[0].text and "signed zone example.test." in o.edes[0].text


def test_forwarded_signed_denial_under_deeper_anchor_is_secure() -> None:
    world, cfg = _forwarded_world(None)
    driver, _ = world.resolver(cfg=cfg)
    for qname, qtype, rcode in (("www.example.test.", "TXT", dns.rcode.NOERROR),
                                ("nope.example.test.", "A", dns.rcode.NXDOMAIN)):
        o = signedworld.ask(driver, qname, qtype)
        assert o.security is Security.SECURE and o.rcode == rcode, _edes(o)


# A record whose rdata does not fit its type (an A of 5 bytes) is left out of the
# message (core.wire). A signature that covered it then cannot verify: the malformed
# record, not the signer, is the reason, and the EDE says so first (Unbound: EDE 0).

class _ScrubbingTransport(WorldTransport):
    """The world's transport reading responses as the real one does (core.wire)."""

    async def query(self, server: ServerAddress, request: dns.message.Message, *,
                    tcp: bool = False, timeout: float = 1.5) -> UpstreamResult:
        query = dns.message.from_wire(request.to_wire())
        wire = self.world.respond(query, server.host).to_wire(want_shuffle=False)
        return UpstreamResult(server, parse_response(wire), rtt=0.001, tcp=tcp)


_BAD_A = dns.rdata.GenericRdata(dns.rdataclass.IN, dns.rdatatype.A, b"\x01\x02\x03\x04\x05")


@pytest.mark.parametrize(
    ("signed_with_bad", "expired", "security", "codes"),
    [(True, False, Security.BOGUS, [EdeCode.OTHER, EdeCode.DNSSEC_BOGUS]),
     (True, True, Security.BOGUS, [EdeCode.SIGNATURE_EXPIRED, EdeCode.OTHER]),
     (False, False, Security.SECURE, [EdeCode.OTHER])],
    ids=["signature-covers-it", "expired-anyway", "added-after-signing"],
)
def test_rfc8914_rrsig_failing_over_rrset_shortened_by_a_malformed_record_leads_with_ede0(
        signed_with_bad: bool, expired: bool, security: Security, codes: list[EdeCode]
) -> None:
    world = standard_world()
    example = world.zone("example.test.").add("two", "A", "192.0.2.1")
    two = _n("two.example.test.")
    if signed_with_bad:
        example.nodes[two][signedworld.A].add(_BAD_A)
    if expired:
        world.mutate("example.test.", "rrsig-window", owner="two", rdtype="A",
                     inception=world.now - 20 * signedworld.DAY,
                     expiration=world.now - signedworld.DAY)
    world.build()
    if not signed_with_bad:
        example.nodes[two][signedworld.A].add(_BAD_A)
    driver = build_resolver(world.config(), clock=FakeClock(world.now),
                            transport=_ScrubbingTransport(world), seed=7)
    o = signedworld.ask(driver, "two.example.test.")
    assert o.security is security, _edes(o)
    assert [e.code for e in o.edes] == codes, _edes(o)
    assert [a.to_text() for r in o.answer if r.rdtype == signedworld.A for a in r] == [
        "192.0.2.1"]
    left_out = next(e.text for e in o.edes if e.code is EdeCode.OTHER)
    assert "malformed rdata" in left_out and "two.example.test./A" in left_out
    if codes[0] is EdeCode.OTHER and security is Security.BOGUS:
        assert f"key tag {example.keys[0].tag}" in left_out and "does not verify" in left_out


# RFC 6672 2.2: when a DNAME would rewrite the name to one over 255 octets, the server
# answers YXDOMAIN with the DNAME. That is the answer (no CNAME, no AD: YXDOMAIN is an
# error rcode, not an answer or denial AD could vouch for); the DNAME is still checked.

_LONG_TARGET = ".".join(c * 63 for c in "abc") + ".test."


def _yxdomain_world(corrupt: bool = False) -> SignedWorld:
    world = standard_world()
    example = world.zone("example.test.").add("d", "DNAME", _LONG_TARGET)
    if corrupt:
        world.mutate("example.test.", "corrupt-rrsigs", owner="d", rdtype="DNAME")
    below = _n("d.example.test.")

    def yxdomain(request: dns.message.Message, response: dns.message.Message) -> None:
        q = request.question[0]
        if q.name.is_subdomain(below) and q.name != below:
            response.set_rcode(dns.rcode.YXDOMAIN)
            response.answer, response.authority = [], []
            example._add(response.answer, below, dns.rdatatype.DNAME, True)

    example.filters.append(yxdomain)
    return world


def test_rfc6672_dname_substitution_too_long_is_yxdomain_without_ad() -> None:
    o = _yxdomain_world().ask("x" * 60 + ".d.example.test.")
    assert o.rcode == dns.rcode.YXDOMAIN and not o.is_failure, _edes(o)
    assert o.security is Security.INSECURE, _edes(o)  # rendered without AD
    assert sorted((r.name.to_text(), r.rdtype) for r in o.answer) == [
        ("d.example.test.", dns.rdatatype.DNAME), ("d.example.test.", RRSIG_T)]


@pytest.mark.parametrize(
    ("qname", "corrupt", "security", "code", "words"),
    [("x" * 60 + ".d.example.test.", True, Security.BOGUS, EdeCode.DNSSEC_BOGUS,
      ["d.example.test/DNAME", "key tag"]),
     ("x.d.example.test.", False, Security.INDETERMINATE, EdeCode.NO_REACHABLE_AUTHORITY,
      ["example.test.", "x.d.example.test./A", "YXDOMAIN"])],
    ids=["bogus-dname", "substitution-fits"],
)
def test_rfc6672_yxdomain_is_an_answer_only_beside_a_good_overflowing_dname(
        qname: str, corrupt: bool, security: Security, code: EdeCode, words: list[str]
) -> None:
    o = _yxdomain_world(corrupt).ask(qname)
    assert o.is_failure and o.security is security, _edes(o)
    assert o.edes[0].code == code, _edes(o)
    for word in words:
        assert word in o.edes[0].text, _edes(o)


# RFC 2181 10.1: no other data beside a CNAME. A server that sends both anyway is read
# in its own order, the first RRset at the name deciding (Unbound's reading).

@pytest.mark.parametrize(
    ("cname_first", "expected"),
    [(True, [("tgt2.example.test.", "A", "192.0.2.45"),
             ("www2.example.test.", "CNAME", "tgt2.example.test.")]),
     (False, [("www2.example.test.", "A", "192.0.2.42")])],
    ids=["cname-first-is-followed", "data-first-is-the-answer"],
)
def test_rfc2181_cname_and_other_data_at_one_name_the_first_rrset_decides(
        cname_first: bool, expected: list[tuple[str, str, str]]) -> None:
    world = standard_world()
    example = world.zone("example.test.")
    example.add("www2", "CNAME", "tgt2.example.test.").add("www2", "A", "192.0.2.42")
    example.add("tgt2", "A", "192.0.2.45")
    www2 = _n("www2.example.test.")

    def both(request: dns.message.Message, response: dns.message.Message) -> None:
        if request.question[0].name == www2:
            response.answer = []
            order = [dns.rdatatype.CNAME, signedworld.A]
            for rdtype in order if cname_first else reversed(order):
                example._add(response.answer, www2, rdtype, True)

    example.filters.append(both)
    o = world.ask("www2.example.test.")
    assert o.security is Security.SECURE and o.rcode == dns.rcode.NOERROR, _edes(o)
    got = sorted((r.name.to_text(), dns.rdatatype.to_text(r.rdtype), rd.to_text())
                 for r in o.answer if r.rdtype != RRSIG_T for rd in r)
    assert got == expected
