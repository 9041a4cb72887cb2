"""The iterator's message scrubbing: signatures travel to the RRset they cover, records
with unreadable rdata or of another class are left out, second-best responses wait; and
how a response is classified."""

from __future__ import annotations

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest

from anchord.core.iterator import (
    Kind,
    _second_best,
    classify,
    drop_other_classes,
    gather_signatures,
)
from anchord.core.outcome import Question
from anchord.core.wire import parse_response

_SIG = "A 13 3 3600 20260601000000 20260501000000 1 example.com. AAAA"


def _msg(answer: list[str], authority: list[str], additional: list[str]) -> dns.message.Message:
    msg = dns.message.make_query("www.example.com.", "A")
    for section, lines in ((msg.answer, answer), (msg.authority, authority),
                           (msg.additional, additional)):
        for line in lines:
            name, ttl, _, rdtype, rdata = line.split(None, 4)
            section.append(dns.rrset.from_text(name, int(ttl), "IN", rdtype, rdata))
    return msg


def test_rrsig_in_additional_moves_to_the_answer_it_covers() -> None:
    msg = _msg(["www.example.com. 3600 IN A 192.0.2.1"], [],
               [f"www.example.com. 3600 IN RRSIG {_SIG}", "ns.example.com. 3600 IN A 192.0.2.53"])
    gather_signatures(msg)
    assert [r.rdtype for r in msg.answer] == [dns.rdatatype.A, dns.rdatatype.RRSIG]
    assert [r.rdtype for r in msg.additional] == [dns.rdatatype.A]


def test_rrsig_already_beside_its_rrset_or_covering_nothing_stays() -> None:
    msg = _msg(["www.example.com. 3600 IN A 192.0.2.1", f"www.example.com. 3600 IN RRSIG {_SIG}"],
               [], [f"other.example.com. 3600 IN RRSIG {_SIG}"])
    gather_signatures(msg)
    assert len(msg.answer) == 2 and len(msg.additional) == 1


def test_rrsig_question_keeps_its_answer_when_the_covered_rrset_is_elsewhere() -> None:
    """NSD answers `example.com RRSIG` with every RRSIG at the apex in ANSWER and the NS
    set in AUTHORITY: the RRSIG over NS is part of the answer asked for and must stay
    there (Unbound's parser keeps a copy for a qtype RRSIG instead of moving it)."""
    ns_sig = "NS 13 2 3600 20260601000000 20260501000000 1 example.com. AAAA"
    soa_sig = "SOA 13 2 3600 20260601000000 20260501000000 1 example.com. AAAA"
    msg = dns.message.make_query("example.com.", "RRSIG")
    msg.answer.append(dns.rrset.from_text("example.com.", 3600, "IN", "RRSIG", ns_sig))
    msg.answer.append(dns.rrset.from_text("example.com.", 3600, "IN", "RRSIG", soa_sig))
    msg.authority.append(dns.rrset.from_text("example.com.", 3600, "IN", "NS",
                                             "ns.example.com."))
    gather_signatures(msg)
    assert sorted(dns.rdatatype.to_text(r.covers) for r in msg.answer) == ["NS", "SOA"]


# -- reading a response record by record (core.wire) and the iterator's class scrub ----


def _reply(qtype: str, rdatas: list[dns.rdata.Rdata]) -> bytes:
    msg = dns.message.make_response(dns.message.make_query("www.example.com.", qtype))
    msg.answer.append(dns.rrset.from_rdata_list("www.example.com.", 3600, rdatas))
    return msg.to_wire()


def test_record_with_wrong_rdata_length_is_left_out_and_the_rest_kept() -> None:
    wire = _reply("A", [dns.rdata.GenericRdata(1, 1, b"\x03\x04\x05"),  # type: ignore[arg-type]
                        dns.rdata.from_text("IN", "A", "192.0.2.1")])
    msg = parse_response(wire)
    assert [rd.to_text() for rd in msg.answer[0]] == ["192.0.2.1"]
    kept = parse_response(wire, keep_unreadable=True)
    assert len(kept.answer[0]) == 2  # a checker sees every record


def test_svcb_with_unordered_keys_but_intact_framing_is_relayed_opaque() -> None:
    body = bytes.fromhex("0001000001000302683200010003026833")  # alpn twice
    msg = parse_response(_reply("HTTPS", [dns.rdata.GenericRdata(1, 65, body)]))  # type: ignore[arg-type]
    assert msg.answer[0][0].to_digestable() == body


def test_svcb_with_broken_framing_is_left_out() -> None:
    body = bytes.fromhex("000100000100040268")  # value length 4, 2 bytes follow
    msg = parse_response(_reply("HTTPS", [dns.rdata.GenericRdata(1, 65, body)]))  # type: ignore[arg-type]
    assert not msg.answer


def test_broken_framing_still_raises() -> None:
    wire = _reply("A", [dns.rdata.from_text("IN", "A", "192.0.2.1")])
    with pytest.raises(dns.exception.FormError):
        parse_response(wire[:-2])


def test_records_of_another_class_are_dropped() -> None:
    msg = dns.message.make_response(dns.message.make_query("www.example.com.", "A"))
    msg.authority.append(dns.rrset.from_text("example.com.", 3600, "CH", "NS", "ch.example.com."))
    msg.authority.append(dns.rrset.from_text("example.com.", 3600, "IN", "NS", "ns.example.com."))
    drop_other_classes(msg, dns.rdataclass.IN)
    assert [r.rdclass for r in msg.authority] == [dns.rdataclass.IN]


@pytest.mark.parametrize(("flags", "records", "second_best"), [
    (dns.flags.QR | dns.flags.AA, False, True),  # entirely empty
    (dns.flags.QR | dns.flags.RA, True, True),  # a recursive server's cache
    (dns.flags.QR | dns.flags.AA | dns.flags.RA, True, False),  # authoritative
    (dns.flags.QR, True, False),
])
def test_empty_or_recursive_responses_are_only_a_last_resort(
        flags: int, records: bool, second_best: bool) -> None:
    msg = dns.message.make_response(dns.message.make_query("www.example.com.", "A"))
    msg.flags = flags
    if records:
        msg.answer.append(dns.rrset.from_text("www.example.com.", 60, "IN", "A", "192.0.2.1"))
    assert (_second_best(msg) is not None) == second_best


def _flagged(flags: int, answer: list[str]) -> dns.message.Message:
    msg = _msg(answer, [], [])
    msg.flags = dns.flags.QR | flags
    return msg


def test_other_types_at_the_name_without_aa_from_a_non_recursive_server_are_nodata() -> None:
    q = Question(dns.name.from_text("www.example.com."), dns.rdatatype.AAAA)
    zone = dns.name.from_text("example.com.")
    wrong_type = ["www.example.com. 0 IN A 2.2.2.2"]
    assert classify(_flagged(dns.flags.RD, wrong_type), q, zone) is Kind.NODATA
    # A recursive server's reply, or records for another name, stay lame.
    assert classify(_flagged(dns.flags.RA, wrong_type), q, zone) is Kind.LAME
    assert classify(_flagged(0, ["other.example.com. 0 IN AAAA ::1"]), q, zone) is Kind.LAME
