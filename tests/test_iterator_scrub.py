"""The iterator's message scrubbing: signatures travel to the RRset they cover."""

from __future__ import annotations

import dns.message
import dns.rdatatype
import dns.rrset

from anchord.core.iterator import gather_signatures

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
