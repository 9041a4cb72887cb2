"""Denial-of-existence proofs over hand-built NSEC and NSEC3 chains.

The records here are unsigned: the proof functions assume the caller verified them.
"""

from __future__ import annotations

import base64

import dns.dnssec
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest

from anchord.core.denial import (
    prove_no_ds,
    prove_nodata,
    prove_nxdomain,
    prove_wildcard_answer,
)
from anchord.core.outcome import EdeCode, Security, Verdict
from anchord.core.validator import ValidatorPolicy

ZONE = dns.name.from_text("example.de.")
POLICY = ValidatorPolicy()

# The zone: apex, a host, a wildcard, an unsigned delegation, a signed delegation, and
# an empty non-terminal above deep.ent.
ZONE_NAMES: dict[str, str] = {
    "example.de.": "SOA NS DNSKEY NSEC3PARAM",
    "www.example.de.": "A AAAA",
    "*.wild.example.de.": "TXT",
    "wild.example.de.": "A",
    "unsigned.example.de.": "NS",
    "signed.example.de.": "NS DS",
    "deep.ent.example.de.": "A",
}


def n(text: str) -> dns.name.Name:
    return dns.name.from_text(text, ZONE) if not text.endswith(".") else dns.name.from_text(text)


def nsec_chain(names: dict[str, str] = ZONE_NAMES) -> list[dns.rrset.RRset]:
    """A complete NSEC chain in canonical order, wrapping to the apex."""
    owners = sorted((n(k), v) for k, v in names.items())
    out = []
    for i, (owner, types) in enumerate(owners):
        nxt = owners[(i + 1) % len(owners)][0]
        out.append(dns.rrset.from_text(owner, 300, "IN", "NSEC",
                                       f"{nxt.to_text()} {types} RRSIG NSEC"))
    return out


def nsec_at(owner: str, nxt: str, types: str) -> dns.rrset.RRset:
    return dns.rrset.from_text(n(owner), 300, "IN", "NSEC", f"{n(nxt).to_text()} {types}")


def nsec3_chain(
    names: dict[str, str] = ZONE_NAMES,
    iterations: int = 0,
    salt: str = "-",
    opt_out: bool = False,
) -> dict[dns.name.Name, dns.rrset.RRset]:
    """A complete NSEC3 chain keyed by the original name, with empty non-terminals added.

    With opt_out, unsigned delegations (NS without DS) are left out of the chain, as a
    signer does (RFC 5155 7.1).
    """
    entries: dict[dns.name.Name, str] = {}
    for text, types in names.items():
        name = n(text)
        if opt_out and types == "NS":
            continue
        entries[name] = types
        parent = name.parent()
        while parent != ZONE and parent.is_subdomain(ZONE):
            entries.setdefault(parent, "")  # empty non-terminal
            parent = parent.parent()
    hashed = sorted(
        (dns.dnssec.nsec3_hash(name, None if salt == "-" else salt, iterations, 1), name)
        for name in entries
    )
    out: dict[dns.name.Name, dns.rrset.RRset] = {}
    for i, (digest, name) in enumerate(hashed):
        nxt = hashed[(i + 1) % len(hashed)][0]
        types = entries[name]
        owner = dns.name.from_text(digest.lower(), ZONE)
        flags = 1 if opt_out else 0
        text = f"1 {flags} {iterations} {salt} {nxt.lower()} {types}".rstrip()
        out[name] = dns.rrset.from_text(owner, 300, "IN", "NSEC3", text)
    return out


def covering(chain: dict[dns.name.Name, dns.rrset.RRset], name: dns.name.Name
             ) -> dns.rrset.RRset:
    """The record of `chain` whose hash span covers name's hash."""
    digest = base64.b32hexdecode(dns.dnssec.nsec3_hash(name, None, 0, 1))
    for rrset in chain.values():
        rdata = rrset[0]
        low = base64.b32hexdecode(rrset.name[0].decode().upper())
        high = rdata.next
        if (low < digest < high) or (low >= high and (digest > low or digest < high)):
            return rrset
    raise AssertionError(f"nothing covers {name}")


def code(verdict: Verdict) -> EdeCode:
    assert verdict.edes, verdict
    return verdict.edes[0].code


# --- NSEC ---------------------------------------------------------------------------


def test_rfc4035_nsec_nxdomain_with_wildcard_cover_is_secure() -> None:
    verdict = prove_nxdomain(n("nope"), ZONE, nsec_chain(), [], POLICY)
    assert verdict.security is Security.SECURE


def test_rfc4035_nsec_nxdomain_without_wildcard_cover_is_bogus() -> None:
    chain = nsec_chain()
    qname = n("nope")
    only = [r for r in chain if r.name < qname and r[0].next > qname]
    verdict = prove_nxdomain(qname, ZONE, only, [], POLICY)
    assert verdict.is_bogus and code(verdict) is EdeCode.DNSSEC_BOGUS
    assert "*.example.de" in verdict.edes[0].text


def test_rfc4035_nsec_nxdomain_under_existing_wildcard_is_bogus() -> None:
    verdict = prove_nxdomain(n("x.wild"), ZONE, nsec_chain(), [], POLICY)
    assert verdict.is_bogus and "wildcard *.wild.example.de exists" in verdict.edes[0].text


def test_rfc4035_nxdomain_for_empty_non_terminal_is_bogus() -> None:
    assert prove_nxdomain(n("ent"), ZONE, nsec_chain(), [], POLICY).is_bogus


def test_rfc4035_no_denial_records_is_bogus_with_ede12() -> None:
    verdict = prove_nxdomain(n("nope"), ZONE, [], [], POLICY)
    assert verdict.is_bogus and code(verdict) is EdeCode.NSEC_MISSING


def test_rfc4035_nsec_of_another_zone_is_ignored_ede12() -> None:
    other = dns.rrset.from_text("a.other.de.", 300, "IN", "NSEC", "z.other.de. A")
    assert code(prove_nxdomain(n("nope"), ZONE, [other], [], POLICY)) is EdeCode.NSEC_MISSING


@pytest.mark.parametrize(
    ("qname", "qtype", "security"),
    [
        ("www", "MX", Security.SECURE),  # RFC 4035 3.1.3.1
        ("www", "A", Security.BOGUS),  # type is in the bitmap
        ("ent", "A", Security.SECURE),  # empty non-terminal
        ("x.wild", "MX", Security.SECURE),  # RFC 4035 3.1.3.4 wildcard NODATA
        ("x.wild", "TXT", Security.BOGUS),  # the wildcard has TXT
        ("unsigned", "DS", Security.SECURE),  # parent side of an insecure delegation
        ("example.de.", "DS", Security.BOGUS),  # child apex NSEC cannot deny DS
        ("signed", "DS", Security.BOGUS),
    ],
)
def test_rfc4035_nsec_nodata(qname: str, qtype: str, security: Security) -> None:
    verdict = prove_nodata(n(qname), dns.rdatatype.from_text(qtype), ZONE, nsec_chain(), [],
                           POLICY)
    assert verdict.security is security, verdict


def test_rfc4035_nsec_nodata_with_cname_in_bitmap_is_bogus() -> None:
    rec = nsec_at("alias", "www", "CNAME RRSIG NSEC")
    assert prove_nodata(n("alias"), dns.rdatatype.A, ZONE, [rec], [], POLICY).is_bogus


def test_nsec_ancestor_delegation_cannot_deny_data_at_or_below_the_cut() -> None:
    # The parent's NSEC at a delegation point (NS, no SOA) covers names below the cut
    # in canonical order, but those names live in the child zone.
    cut = nsec_at("unsigned", "www", "NS RRSIG NSEC")
    below = prove_nxdomain(n("host.unsigned"), ZONE, [cut], [], POLICY)
    assert below.is_bogus
    at_cut = prove_nodata(n("unsigned"), dns.rdatatype.A, ZONE, [cut], [], POLICY)
    assert at_cut.is_bogus and "delegation" in at_cut.edes[0].text
    assert prove_nodata(n("unsigned"), dns.rdatatype.DS, ZONE, [cut], [], POLICY).is_secure


def test_nsec_dname_owner_cannot_deny_names_below_it() -> None:
    dname = nsec_at("moved", "www", "DNAME RRSIG NSEC")
    assert prove_nxdomain(n("x.moved"), ZONE, [dname], [], POLICY).is_bogus


@pytest.mark.parametrize(
    ("child", "security"),
    [("unsigned", Security.SECURE), ("signed", Security.BOGUS), ("www", Security.BOGUS),
     ("nope", Security.BOGUS)],
)
def test_rfc4035_nsec_no_ds_proof(child: str, security: Security) -> None:
    assert prove_no_ds(n(child), ZONE, nsec_chain(), [], POLICY).security is security


def test_rfc4035_nsec_wildcard_answer_needs_qname_cover() -> None:
    chain = nsec_chain()
    qname, encloser = n("x.wild"), n("wild")
    assert prove_wildcard_answer(qname, encloser, ZONE, chain, [], POLICY).is_secure
    # Only the NSEC at the closest encloser: it shows wild exists, not that x.wild doesn't.
    encloser_only = [r for r in chain if r.name == encloser]
    verdict = prove_wildcard_answer(qname, encloser, ZONE, encloser_only, [], POLICY)
    assert verdict.is_bogus and code(verdict) is EdeCode.DNSSEC_BOGUS


def test_rfc4035_wildcard_answer_for_existing_name_is_bogus() -> None:
    verdict = prove_wildcard_answer(n("www"), ZONE, ZONE, nsec_chain(), [], POLICY)
    assert verdict.is_bogus


# --- NSEC3 --------------------------------------------------------------------------


def n_star(encloser: dns.name.Name) -> dns.name.Name:
    return dns.name.from_text("*", encloser)


def test_rfc5155_8_4_nsec3_nxdomain_proof_is_secure() -> None:
    chain = nsec3_chain()
    qname = n("a.b.nope")
    records = [chain[ZONE], covering(chain, n("nope")), covering(chain, n_star(ZONE))]
    assert prove_nxdomain(qname, ZONE, [], records, POLICY).is_secure


def test_rfc5155_8_4_nsec3_nxdomain_without_wildcard_cover_is_bogus() -> None:
    chain = nsec3_chain()
    wild_cover = covering(chain, n_star(ZONE))
    # a name whose hash falls in another span than the wildcard's
    qname = next(q for q in (n(f"nope{i}") for i in range(100))
                 if covering(chain, q) != wild_cover)
    records = [chain[ZONE], covering(chain, qname)]
    verdict = prove_nxdomain(qname, ZONE, [], records, POLICY)
    assert verdict.is_bogus and code(verdict) is EdeCode.DNSSEC_BOGUS
    assert "wildcard" in verdict.edes[0].text


def test_rfc5155_8_4_nsec3_nxdomain_for_existing_name_is_bogus() -> None:
    chain = nsec3_chain()
    verdict = prove_nxdomain(n("www"), ZONE, [], list(chain.values()), POLICY)
    assert verdict.is_bogus


def test_rfc5155_opt_out_cover_of_next_closer_is_insecure() -> None:
    chain = nsec3_chain(opt_out=True)
    qname = n("host.unsigned")  # below the unsigned delegation, left out of the chain
    records = [chain[ZONE], covering(chain, n("unsigned")), covering(chain, n_star(ZONE))]
    assert prove_nxdomain(qname, ZONE, [], records, POLICY).security is Security.INSECURE


def test_rfc5155_8_6_opt_out_ds_nodata_is_insecure_and_no_ds_proven() -> None:
    chain = nsec3_chain(opt_out=True)
    records = [chain[ZONE], covering(chain, n("unsigned"))]
    ds = dns.rdatatype.DS
    assert prove_nodata(n("unsigned"), ds, ZONE, [], records, POLICY).security is (
        Security.INSECURE)
    assert prove_no_ds(n("unsigned"), ZONE, [], records, POLICY).security is Security.INSECURE


@pytest.mark.parametrize(("opt_out", "security"),
                         [(True, Security.INSECURE), (False, Security.BOGUS)])
def test_rfc5155_nodata_below_opt_out_cover_without_wildcard(opt_out: bool,
                                                             security: Security) -> None:
    # host.nope may sit below an unsigned delegation nope that an opt-out span hides;
    # without opt-out, nope is proven absent and so is host.nope: no NODATA.
    chain = nsec3_chain(opt_out=opt_out)
    records = [chain[ZONE], covering(chain, n("nope"))]
    verdict = prove_nodata(n("host.nope"), dns.rdatatype.A, ZONE, [], records, POLICY)
    assert verdict.security is security


@pytest.mark.parametrize(("opt_out", "security"),
                         [(True, Security.INSECURE), (False, Security.SECURE)])
def test_rfc5155_8_7_wildcard_nodata_with_opt_out_next_closer_is_insecure(
        opt_out: bool, security: Security) -> None:
    chain = nsec3_chain(opt_out=opt_out)
    records = [chain[n("wild")], covering(chain, n("x.wild")), chain[n("*.wild")]]
    verdict = prove_nodata(n("a.x.wild"), dns.rdatatype.A, ZONE, [], records, POLICY)
    assert verdict.security is security


def test_rfc5155_no_ds_without_opt_out_for_missing_name_is_bogus() -> None:
    chain = nsec3_chain()
    records = [chain[ZONE], covering(chain, n("nope"))]
    assert prove_no_ds(n("nope"), ZONE, [], records, POLICY).is_bogus


@pytest.mark.parametrize(
    ("child", "security"), [("unsigned", Security.SECURE), ("signed", Security.BOGUS)]
)
def test_rfc5155_8_6_nsec3_exact_no_ds_proof(child: str, security: Security) -> None:
    chain = nsec3_chain()
    assert prove_no_ds(n(child), ZONE, [], [chain[n(child)]], POLICY).security is security


def test_rfc9276_nsec3_iterations_above_limit_is_insecure_with_ede27() -> None:
    chain = nsec3_chain(iterations=200)
    verdict = prove_nxdomain(n("nope"), ZONE, [], list(chain.values()), POLICY)
    assert verdict.security is Security.INSECURE
    assert code(verdict) is EdeCode.UNSUPPORTED_NSEC3_ITERATIONS
    assert verdict.edes[0].text == ("NSEC3 iterations 200 above limit 150 for zone example.de,"
                                    " so it is not checked that nope.example.de does not exist")


def test_rfc9276_nsec3_iterations_at_limit_is_validated() -> None:
    chain = nsec3_chain(iterations=150, salt="aabbccdd")
    verdict = prove_nodata(n("www"), dns.rdatatype.MX, ZONE, [], list(chain.values()), POLICY)
    assert verdict.is_secure


@pytest.mark.parametrize(
    ("qname", "qtype", "security"),
    [
        ("www", "MX", Security.SECURE),  # RFC 5155 8.5
        ("www", "AAAA", Security.BOGUS),
        ("ent", "A", Security.SECURE),  # empty non-terminal has its own NSEC3
        ("x.wild", "MX", Security.SECURE),  # RFC 5155 8.7 wildcard NODATA
        ("x.wild", "TXT", Security.BOGUS),
        ("unsigned", "DS", Security.SECURE),
        ("unsigned", "A", Security.BOGUS),  # delegation: child data not deniable here
        ("signed", "DS", Security.BOGUS),
    ],
)
def test_rfc5155_nsec3_nodata(qname: str, qtype: str, security: Security) -> None:
    chain = nsec3_chain()
    verdict = prove_nodata(n(qname), dns.rdatatype.from_text(qtype), ZONE, [],
                           list(chain.values()), POLICY)
    assert verdict.security is security, verdict


def test_rfc5155_8_3_closest_encloser_at_delegation_is_bogus() -> None:
    chain = nsec3_chain()
    records = [chain[n("unsigned")], covering(chain, n("host.unsigned")),
               covering(chain, n_star(n("unsigned")))]
    assert prove_nxdomain(n("host.unsigned"), ZONE, [], records, POLICY).is_bogus


def test_rfc5155_8_8_wildcard_answer_needs_next_closer_cover() -> None:
    chain = nsec3_chain()
    qname, encloser = n("a.x.wild"), n("wild")
    cover = covering(chain, n("x.wild"))
    assert prove_wildcard_answer(qname, encloser, ZONE, [], [cover], POLICY).is_secure
    others = [r for r in chain.values() if r != cover]
    verdict = prove_wildcard_answer(qname, encloser, ZONE, [], others, POLICY)
    assert verdict.is_bogus and "next closer name x.wild.example.de" in verdict.edes[0].text
    # The data is present, only the proof is not: RFC 8914 keeps 12 for missing data.
    assert code(prove_wildcard_answer(qname, encloser, ZONE, [], [], POLICY)) is (
        EdeCode.DNSSEC_BOGUS)


def test_rfc5155_8_2_nsec3_with_unknown_flags_is_ignored() -> None:
    chain = nsec3_chain()
    rec = chain[n("www")]
    text = rec[0].to_text().split(" ", 2)
    odd = dns.rrset.from_text(rec.name, 300, "IN", "NSEC3", f"1 2 {text[2]}")
    verdict = prove_nodata(n("www"), dns.rdatatype.MX, ZONE, [], [odd], POLICY)
    assert code(verdict) is EdeCode.NSEC_MISSING
