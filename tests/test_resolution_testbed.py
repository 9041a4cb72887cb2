"""The resolution core against the signed testbed, in-process with a fake clock.

Each fault zone must give its own EDE code, with a text naming the zone and key tag,
the same fresh and from cache.
"""

from __future__ import annotations

import asyncio

import dns.name
import dns.rcode
import dns.rdatatype
import pytest

from anchord.core.outcome import EdeCode, Outcome, Question, Security

from .conftest import World


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


def test_cd_keeps_bogus_data_for_the_client(world: World) -> None:
    o = ask(world, "www.bogus.de.", cd=True)
    assert o.security is Security.BOGUS
    assert any(r.rdtype == dns.rdatatype.A for r in o.answer)


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
