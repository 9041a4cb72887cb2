"""The foundation issue's "handed cases", black-box against the resolver core.

Each test builds a tiny signed hierarchy (tests/signedworld.py: root -> test. ->
example.test. and unsigned.test.), applies one named mutation to one zone, asks a fresh
resolver with a FakeClock through an in-memory Transport, and checks only the Outcome:
rcode, security state, EDE codes and texts, answer TTLs.
"""

from __future__ import annotations

import dns.name
import dns.rcode
import dns.rdatatype
import pytest

from anchord.core.outcome import EdeCode, Freshness, Outcome, Security

from .signedworld import DAY, EXPIRATION, INCEPTION, T0, ask, standard_world

# "Bogus with EDE 6 or a more specific DNSSEC reason."
BOGUS_CODES = {
    EdeCode.DNSSEC_BOGUS, EdeCode.SIGNATURE_EXPIRED, EdeCode.SIGNATURE_NOT_YET_VALID,
    EdeCode.DNSKEY_MISSING, EdeCode.RRSIGS_MISSING, EdeCode.NO_ZONE_KEY_BIT_SET,
    EdeCode.NSEC_MISSING, EdeCode.SIGNATURE_EXPIRED_BEFORE_VALID,
}


def codes(o: Outcome) -> list[int]:
    return [int(e.code) for e in o.edes]


def assert_secure(o: Outcome, rcode: int = dns.rcode.NOERROR) -> None:
    assert o.security is Security.SECURE, (o.security, [str(e) for e in o.edes])
    assert o.rcode == rcode, dns.rcode.to_text(o.rcode)
    assert not o.is_failure


def assert_bogus(o: Outcome) -> None:
    assert o.security is Security.BOGUS, (o.security, [str(e) for e in o.edes])
    assert o.is_failure
    assert o.edes and o.edes[0].code in BOGUS_CODES, [str(e) for e in o.edes]


def assert_insecure(o: Outcome, allowed: set[int]) -> None:
    assert o.security is Security.INSECURE, (o.security, [str(e) for e in o.edes])
    assert o.rcode == dns.rcode.NOERROR and not o.is_failure
    assert set(codes(o)) <= allowed, [str(e) for e in o.edes]
    assert EdeCode.DNSSEC_BOGUS not in codes(o)


def _n(text: str) -> dns.name.Name:
    return dns.name.from_text(text)


def a_records(o: Outcome) -> list[str]:
    return [rd.address for r in o.answer if r.rdtype == dns.rdatatype.A for rd in r]


# -- the fixture itself ------------------------------------------------------------------------

def test_signedworld_baseline_answers() -> None:
    """The unmutated world: signed data Secure, the unsigned zone Insecure."""
    world = standard_world()
    driver, _ = world.resolver()
    o = ask(driver, "www.example.test.")
    assert_secure(o)
    assert a_records(o) == ["192.0.2.80"]
    assert_insecure(ask(driver, "plain.unsigned.test."), set())
    assert_secure(ask(driver, "www.example.test.", "TXT"))  # NODATA
    assert_secure(ask(driver, "example.test.", "DNSKEY"))


# -- clocks (RFC 4035 5.3.1, 5.3.3) ------------------------------------------------------------

def test_rfc4035_resolver_clock_30_days_past_every_expiration_gives_ede7() -> None:
    o = standard_world().ask("www.example.test.", at=EXPIRATION + 30 * DAY)
    assert_bogus(o)
    assert o.edes[0].code == EdeCode.SIGNATURE_EXPIRED


def test_rfc4035_resolver_clock_7_days_before_inception_gives_ede8() -> None:
    o = standard_world().ask("www.example.test.", at=INCEPTION - 7 * DAY)
    assert_bogus(o)
    assert o.edes[0].code == EdeCode.SIGNATURE_NOT_YET_VALID


def test_rfc4035_rrsig_valid_at_exact_inception() -> None:
    assert_secure(standard_world().ask("www.example.test.", at=INCEPTION))


def test_rfc4035_rrsig_valid_at_exact_expiration() -> None:
    assert_secure(standard_world().ask("www.example.test.", at=EXPIRATION))


@pytest.mark.parametrize(("at", "code"), [(INCEPTION - 1, EdeCode.SIGNATURE_NOT_YET_VALID),
                                          (EXPIRATION + 1, EdeCode.SIGNATURE_EXPIRED)])
def test_rfc4035_rrsig_window_one_second_outside_is_bogus(at: int, code: EdeCode) -> None:
    o = standard_world().ask("www.example.test.", at=at)
    assert_bogus(o)
    assert o.edes[0].code == code


@pytest.mark.parametrize("expired_first", [True, False])
@pytest.mark.parametrize(("zone", "owner", "qname", "qtype"), [
    ("example.test.", "www", "www.example.test.", "A"),
    ("example.test.", "@", "www.example.test.", "A"),  # on the DNSKEY set
])
def test_rfc4035_one_good_rrsig_beside_an_expired_one_is_secure(
        zone: str, owner: str, qname: str, qtype: str, expired_first: bool) -> None:
    world = standard_world()
    rdtype = "A" if owner == "www" else "DNSKEY"
    world.mutate(zone, "extra-expired-rrsig", owner=owner, rdtype=rdtype, first=expired_first)
    assert_secure(world.ask(qname, qtype))


def test_rfc4035_5_3_3_rrsig_expiring_in_600s_caps_answer_ttl() -> None:
    world = standard_world()
    world.zones[_n("example.test.")].add("long", "A", "192.0.2.86", ttl=86400)
    world.mutate("example.test.", "rrsig-window", owner="long", rdtype="A",
                 expiration=T0 + 600)
    driver, clock = world.resolver()
    o = ask(driver, "long.example.test.")
    assert_secure(o)
    a = [r for r in o.answer if r.rdtype == dns.rdatatype.A]
    assert a and a[0].ttl == 600, [r.ttl for r in o.answer]
    assert all(r.ttl <= 600 for r in o.answer)  # the RRSIG too
    clock.advance(100)
    cached = ask(driver, "long.example.test.")
    assert all(r.ttl <= 500 for r in cached.answer), [r.ttl for r in cached.answer]
    clock.advance(501)  # past the signature: the data must not outlive it as fresh
    late = ask(driver, "long.example.test.")
    assert late.freshness is not Freshness.FRESH or late.security is Security.BOGUS, late
    assert EdeCode.SIGNATURE_EXPIRED in codes(late), [str(e) for e in late.edes]


def test_rfc4035_5_3_3_rrsig_expiry_ends_the_cached_answer_without_serve_stale() -> None:
    world = standard_world()
    world.zones[_n("example.test.")].add("long", "A", "192.0.2.86", ttl=86400)
    world.mutate("example.test.", "rrsig-window", owner="long", rdtype="A",
                 expiration=T0 + 600)
    cfg = world.config()
    cfg.serve_stale.enabled = False
    driver, clock = world.resolver(cfg=cfg)
    assert_secure(ask(driver, "long.example.test."))
    clock.advance(601)
    late = ask(driver, "long.example.test.")
    assert_bogus(late)
    assert late.edes[0].code == EdeCode.SIGNATURE_EXPIRED


@pytest.mark.parametrize("remaining", [100, 0])
@pytest.mark.parametrize("zone", [".", "example.test."])
def test_rfc4035_5_3_3_dnskey_set_is_trusted_no_longer_than_its_rrsig(
        zone: str, remaining: int) -> None:
    """The zone's DNSKEY RRSIG expires `remaining` s after the first question (0: at that
    very second, still valid then). Once it has expired, data that needs those keys
    again (the zone's SOA, not asked before) is Bogus with EDE 7, not Secure from
    keys cached for the DNSKEY TTL."""
    world = standard_world()
    world.mutate(zone, "rrsig-window", owner="@", rdtype="DNSKEY", expiration=T0 + remaining)
    driver, clock = world.resolver()
    assert_secure(ask(driver, "www.example.test."))
    clock.advance(remaining + 60)
    o = ask(driver, zone, "SOA")
    assert_bogus(o)
    assert o.edes[0].code == EdeCode.SIGNATURE_EXPIRED


# -- algorithms (RFC 4035 5.2, RFC 6840 5.2 and 5.11, RFC 8624) --------------------------------

def test_rfc8624_dsa_only_child_is_insecure_without_ede6() -> None:
    world = standard_world()
    world.zone("dsa.test.", algorithms=(3,)).add("www", "A", "192.0.2.3")
    o = world.ask("www.dsa.test.")
    assert_insecure(o, {EdeCode.UNSUPPORTED_DNSKEY_ALGORITHM})
    assert a_records(o) == ["192.0.2.3"]


def test_rfc4035_5_2_ds_with_only_unknown_digest_type_is_insecure() -> None:
    world = standard_world()
    world.zone("digest.test.").add("www", "A", "192.0.2.2")
    world.mutate("digest.test.", "ds-digest-type", digest_type=200)
    o = world.ask("www.digest.test.")
    assert_insecure(o, {EdeCode.UNSUPPORTED_DS_DIGEST_TYPE})
    assert a_records(o) == ["192.0.2.2"]


@pytest.mark.parametrize("where", [
    {},  # every algorithm-13 signature of the child, the DNSKEY set's included
    {"owner": "www", "rdtype": "A"},  # only the answer's
])
def test_rfc6840_5_11_broken_alg13_chain_beside_dsa_is_bogus_not_insecure(
        where: dict[str, str]) -> None:
    world = standard_world()
    world.zone("mixed.test.", algorithms=(3, 13)).add("www", "A", "192.0.2.13")
    world.mutate("mixed.test.", "corrupt-rrsigs", algorithm=13, **where)
    o = world.ask("www.mixed.test.")
    assert_bogus(o)
    assert "mixed.test" in o.edes[0].text


def test_rfc6840_5_11_intact_alg13_chain_beside_dsa_is_secure() -> None:
    """The control for the case above: the same zone without the corruption."""
    world = standard_world()
    world.zone("mixed.test.", algorithms=(3, 13)).add("www", "A", "192.0.2.13")
    assert_secure(world.ask("www.mixed.test."))


# -- wildcards (RFC 4035 3.1.3.3, 5.3.4) ---------------------------------------------------------

def test_rfc4035_5_3_4_wildcard_answer_with_next_closer_proof_is_secure() -> None:
    o = standard_world().ask("x.w.example.test.")
    assert_secure(o)
    assert a_records(o) == ["192.0.2.99"]
    assert all(r.name == _n("x.w.example.test.") for r in o.answer)


def test_rfc4035_5_3_4_wildcard_answer_without_next_closer_proof_is_bogus() -> None:
    world = standard_world()
    world.mutate("example.test.", "strip-denial", qname="x.w.example.test.")
    o = world.ask("x.w.example.test.")
    assert_bogus(o)
    assert "example.test" in o.edes[0].text


def test_rfc4035_cname_from_unsigned_zone_into_signed_wildcard_is_insecure() -> None:
    """The CNAME is insecure; the wildcard target is validated with its proof."""
    world = standard_world()
    driver, _ = world.resolver()
    o = ask(driver, "www.unsigned.test.")
    assert_insecure(o, set())
    types = [r.rdtype for r in o.answer]
    assert dns.rdatatype.CNAME in types
    assert a_records(o) == ["192.0.2.99"]
    # The target on its own is Secure: the final data was validated, not skipped.
    assert_secure(ask(driver, "x.w.example.test."))


def test_rfc4035_cname_from_unsigned_zone_into_wildcard_without_proof_is_bogus() -> None:
    world = standard_world()
    world.mutate("example.test.", "strip-denial", qname="x.w.example.test.")
    o = world.ask("www.unsigned.test.")
    assert_bogus(o)


# -- authenticated denial (RFC 4035 3.1.3.2, 5.4) -----------------------------------------------

DENIALS = [("nope.example.test.", "A", dns.rcode.NXDOMAIN),  # NXDOMAIN
           ("www.example.test.", "TXT", dns.rcode.NOERROR)]  # and NODATA, the same rule


@pytest.mark.parametrize(("qname", "qtype", "rcode"), DENIALS)
def test_rfc4035_nxdomain_with_nsec_proof_is_secure(qname: str, qtype: str, rcode: int) -> None:
    world = standard_world()
    driver, _ = world.resolver()
    for _attempt in ("fresh", "cached"):
        o = ask(driver, qname, qtype)
        assert_secure(o, rcode)
        assert not o.answer


@pytest.mark.parametrize(("qname", "qtype", "rcode"), DENIALS)
def test_rfc4035_nxdomain_without_nsec_is_bogus_naming_the_zone(qname: str, qtype: str,
                                                                rcode: int) -> None:
    world = standard_world()
    world.mutate("example.test.", "strip-denial")
    driver, _ = world.resolver()
    for attempt in ("fresh", "cached"):
        o = ask(driver, qname, qtype)
        assert_bogus(o)
        assert o.edes[0].code in (EdeCode.NSEC_MISSING, EdeCode.DNSSEC_BOGUS), attempt
        assert "example.test" in o.edes[0].text, (attempt, o.edes[0].text)
