"""Outcome -> wire: the client-facing rules, table-driven."""

from __future__ import annotations

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from anchord.core.outcome import Ede, EdeCode, Outcome, Question, Security
from anchord.frontend.render import render_outcome, render_rejection
from anchord.frontend.request import ClientQuery, Rejection, parse_query

QNAME = "www.ExAmple.de."
A = dns.rrset.from_text("www.example.de.", 300, "IN", "A", "192.0.2.1")
SIG = dns.rrset.from_text(
    "www.example.de.", 300, "IN", "RRSIG",
    "A 13 3 300 20300101000000 20200101000000 33834 example.de. "
    "dGVzdHNpZ25hdHVyZXRlc3RzaWduYXR1cmV0ZXN0c2lnbmF0dXJldGVzdHNpZ25hdHVyZQ==")
SOA = dns.rrset.from_text("example.de.", 300, "IN", "SOA", "ns. h. 1 2 3 4 300")
NSEC = dns.rrset.from_text("www.example.de.", 300, "IN", "NSEC", "zzz.example.de. A RRSIG NSEC")
BOGUS_TEXT = "RRSIG with malformed signature found for example.de/nsec3 (keytag=33834)"


def query(*, do: bool = False, ad: bool = False, cd: bool = False, edns: bool = True,
          size: int = 1232, qtype: str = "A", tcp: bool = False) -> ClientQuery:
    msg = dns.message.make_query(QNAME, qtype, use_edns=0 if edns else False,
                                 want_dnssec=do, payload=size)
    msg.id = 4242
    if ad:
        msg.flags |= dns.flags.AD
    if cd:
        msg.flags |= dns.flags.CD
    q = parse_query(msg.to_wire(), tcp=tcp)
    assert isinstance(q, ClientQuery)
    return q


def outcome(security: Security = Security.SECURE, rcode: int = dns.rcode.NOERROR,
            edes: tuple[Ede, ...] = (), qtype: int = dns.rdatatype.A,
            answer: tuple[dns.rrset.RRset, ...] = (A, SIG),
            authority: tuple[dns.rrset.RRset, ...] = ()) -> Outcome:
    return Outcome(Question(dns.name.from_text(QNAME), dns.rdatatype.RdataType(qtype)),
                   rcode, answer, authority, (), security, edes)


def render(q: ClientQuery, o: Outcome) -> dns.message.Message:
    return dns.message.from_wire(render_outcome(q, o))


def test_header_copies_id_rd_question_case_sets_qr_ra() -> None:
    r = render(query(), outcome())
    assert r.id == 4242
    assert r.flags & dns.flags.QR and r.flags & dns.flags.RA and r.flags & dns.flags.RD
    assert r.question[0].name.to_text() == QNAME  # the client's case


AD_CASES = [
    # security, do, ad-in-query, cd, AD expected
    (Security.SECURE, True, False, False, True),
    (Security.SECURE, False, True, False, True),
    (Security.SECURE, False, False, False, False),
    (Security.SECURE, True, False, True, True),  # CD does not clear AD on secure data
    (Security.INSECURE, True, True, False, False),
    (Security.INDETERMINATE, True, True, False, False),
    (Security.BOGUS, True, True, True, False),
]


@pytest.mark.parametrize("security,do,ad,cd,expect", AD_CASES)
def test_rfc6840_ad_only_for_secure_and_do_or_ad(security, do, ad, cd, expect) -> None:
    edes = (Ede(EdeCode.DNSSEC_BOGUS, BOGUS_TEXT),) if security is Security.BOGUS else ()
    r = render(query(do=do, ad=ad, cd=cd), outcome(security, edes=edes))
    assert bool(r.flags & dns.flags.AD) is expect


def test_bogus_without_cd_is_servfail_no_records_with_ede_text() -> None:
    o = outcome(Security.BOGUS, edes=(Ede(EdeCode.DNSSEC_BOGUS, BOGUS_TEXT),))
    r = render(query(do=True), o)
    assert r.rcode() == dns.rcode.SERVFAIL
    assert not r.answer and not r.authority and not r.additional
    edes = [o for o in r.options if isinstance(o, dns.edns.EDEOption)]
    assert [(e.code, e.text) for e in edes] == [(6, BOGUS_TEXT)]


def test_bogus_with_cd_returns_the_data_without_ad() -> None:
    o = outcome(Security.BOGUS, edes=(Ede(EdeCode.DNSSEC_BOGUS, BOGUS_TEXT),))
    r = render(query(do=True, cd=True), o)
    assert r.rcode() == dns.rcode.NOERROR
    assert r.flags & dns.flags.CD and not r.flags & dns.flags.AD
    assert {x.rdtype for x in r.answer} == {dns.rdatatype.A, dns.rdatatype.RRSIG}


STRIP_CASES = [
    # do, qtype, answer, authority, kept answer types, kept authority types
    (True, "A", (A, SIG), (), {"A", "RRSIG"}, set()),
    (False, "A", (A, SIG), (), {"A"}, set()),
    (False, "A", (), (SOA, NSEC), set(), {"SOA"}),
    (True, "A", (), (SOA, NSEC), set(), {"SOA", "NSEC"}),
    (False, "RRSIG", (SIG,), (), {"RRSIG"}, set()),
    (False, "NSEC", (NSEC,), (), {"NSEC"}, set()),
]


@pytest.mark.parametrize("do,qtype,answer,authority,kept_an,kept_ns", STRIP_CASES)
def test_rfc3225_dnssec_records_only_for_do(do, qtype, answer, authority, kept_an,
                                            kept_ns) -> None:
    o = outcome(Security.INSECURE, qtype=dns.rdatatype.from_text(qtype), answer=answer,
                authority=authority)
    r = render(query(do=do, qtype=qtype), o)
    assert {dns.rdatatype.to_text(x.rdtype) for x in r.answer} == kept_an
    assert {dns.rdatatype.to_text(x.rdtype) for x in r.authority} == kept_ns


def test_edns_reply_is_v0_payload_1232_do_echoed_edes_in_order() -> None:
    edes = (Ede(EdeCode.DNSSEC_BOGUS, BOGUS_TEXT), Ede(EdeCode.NO_REACHABLE_AUTHORITY, ""))
    o = Outcome.servfail(outcome().question, *edes)
    r = render(query(do=True, size=4096), o)
    assert r.edns == 0 and r.payload == 1232 and r.ednsflags & dns.flags.DO
    assert r.rcode() == dns.rcode.SERVFAIL
    got = [(e.code, e.text) for e in r.options if isinstance(e, dns.edns.EDEOption)]
    assert got == [(6, BOGUS_TEXT), (22, None)]


def test_no_edns_in_query_means_no_opt_and_no_ede() -> None:
    o = Outcome.servfail(outcome().question, Ede(EdeCode.DNSSEC_BOGUS, BOGUS_TEXT))
    r = render(query(edns=False), o)
    assert r.edns == -1 and r.rcode() == dns.rcode.SERVFAIL


def test_do_not_echoed_when_client_did_not_set_it() -> None:
    r = render(query(do=False), outcome())
    assert r.edns == 0 and not r.ednsflags & dns.flags.DO


def _big_answer() -> dns.rrset.RRset:
    return dns.rrset.from_text_list("www.example.de.", 300, "IN", "TXT",
                                    [f'"{"x" * 200} {i}"' for i in range(10)])


TC_CASES = [
    # edns, client size, tcp, truncated?
    (False, 0, False, True),
    (True, 512, False, True),
    (True, 4096, False, True),  # we never send more than 1232 over UDP
    (True, 4096, True, False),
    (False, 0, True, False),
]


@pytest.mark.parametrize("edns,size,tcp,truncated", TC_CASES)
def test_truncation(edns: bool, size: int, tcp: bool, truncated: bool) -> None:
    q = query(edns=edns, size=size or 1232, tcp=tcp, qtype="TXT")
    edes = (Ede(EdeCode.STALE_ANSWER, "served stale"),)
    o = outcome(Security.INSECURE, qtype=dns.rdatatype.TXT, answer=(_big_answer(),), edes=edes)
    wire = render_outcome(q, o)
    r = dns.message.from_wire(wire)
    assert bool(r.flags & dns.flags.TC) is truncated
    if truncated:
        assert not r.answer and len(wire) <= (512 if not edns else min(size, 1232))
        if edns:
            assert r.edns == 0 and any(isinstance(e, dns.edns.EDEOption) for e in r.options)
    else:
        assert r.answer and len(wire) > 1232


def test_extended_rcode_without_edns_becomes_servfail() -> None:
    o = Outcome(outcome().question, dns.rcode.BADCOOKIE)
    r = render(query(edns=False), o)
    assert r.rcode() == dns.rcode.SERVFAIL


def test_rejection_rendering() -> None:
    rej = parse_query(dns.message.make_query("x.", "A", use_edns=1).to_wire())
    assert isinstance(rej, Rejection)
    r = dns.message.from_wire(render_rejection(rej) or b"")
    assert r.rcode() == dns.rcode.BADVERS and r.edns == 0 and r.question
    dropped = parse_query(b"\x00\x01")
    assert isinstance(dropped, Rejection) and render_rejection(dropped) is None
    formerr = parse_query(b"\x12\x34\x01\x00\x00\x02" + b"\x00" * 6)
    assert isinstance(formerr, Rejection)
    r = dns.message.from_wire(render_rejection(formerr) or b"")
    assert r.id == 0x1234 and r.rcode() == dns.rcode.FORMERR and not r.question


def test_ede_33_negative_trust_anchor_renders_though_dnspython_does_not_name_it() -> None:
    o = outcome(Security.INSECURE, edes=(Ede(EdeCode.NEGATIVE_TRUST_ANCHOR, "NTA for de."),))
    r = render(query(do=True), o)
    got = [(int(e.code), e.text) for e in r.options if isinstance(e, dns.edns.EDEOption)]
    assert got == [(33, "NTA for de.")] and not r.flags & dns.flags.AD


@pytest.mark.parametrize("size", [512, 700, 1232])
@pytest.mark.parametrize("text_len", [0, 100, 460, 1200, 60_000])
def test_rfc6891_reply_never_exceeds_the_client_limit_whatever_the_ede_text(
        size: int, text_len: int) -> None:
    """A long EDE text (an NTA's reason, a long name in a bogus reason) must not make the
    reply larger than the client's buffer, nor make rendering fail (no reply at all)."""
    edes = (Ede(EdeCode.NEGATIVE_TRUST_ANCHOR, "r" * text_len),
            Ede(EdeCode.CACHED_ERROR, "c" * text_len))
    for o in (outcome(Security.INSECURE, edes=edes),
              Outcome.servfail(outcome().question, *edes)):
        wire = render_outcome(query(size=size, do=True), o)
        assert len(wire) <= size
        r = dns.message.from_wire(wire)
        codes = [opt.code for opt in r.options if isinstance(opt, dns.edns.EDEOption)]
        assert codes == [EdeCode.NEGATIVE_TRUST_ANCHOR, EdeCode.CACHED_ERROR]


def test_long_nta_reason_shortens_the_ede_text_not_the_answer() -> None:
    reason = "DENIC rollover " + "x" * 1500
    o = outcome(Security.INSECURE, edes=(Ede(EdeCode.NEGATIVE_TRUST_ANCHOR, reason),))
    r = dns.message.from_wire(render_outcome(query(size=1232), o))
    assert not r.flags & dns.flags.TC and r.answer  # the records went out
    (text,) = [opt.text for opt in r.options if isinstance(opt, dns.edns.EDEOption)]
    assert text.startswith("DENIC rollover") and text.endswith("…") and len(text) <= 200
