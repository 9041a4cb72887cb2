"""Client query parsing: every bad packet has a defined fate (drop or an rcode)."""

from __future__ import annotations

import struct

import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import pytest

from anchord.core.outcome import EdeCode
from anchord.frontend.request import ClientQuery, Reason, Rejection, parse_query


def _wire(name: str = "www.Example.com.", rdtype: str = "A", **kw) -> bytes:
    q = dns.message.make_query(name, rdtype, **kw)
    q.id = 0x1234
    return q.to_wire()


def _header(qd: int = 1, an: int = 0, ns: int = 0, ar: int = 0, flags: int = 0x0100) -> bytes:
    return struct.pack("!HHHHHH", 0x1234, flags, qd, an, ns, ar)


def test_good_query_with_edns_do_cd() -> None:
    wire = _wire(use_edns=0, want_dnssec=True, payload=4096)
    wire = wire[:3] + bytes([wire[3] | 0x10]) + wire[4:]  # CD
    q = parse_query(wire)
    assert isinstance(q, ClientQuery)
    assert q.id == 0x1234 and q.rd and q.cd and not q.ad
    assert q.edns and q.do and q.udp_size == 4096 and not q.has_options
    assert q.question.qname.to_text() == "www.Example.com."  # the client's case kept
    assert q.question.qtype == dns.rdatatype.A


def test_no_edns_gives_512_and_no_do() -> None:
    q = parse_query(_wire())
    assert isinstance(q, ClientQuery)
    assert not q.edns and not q.do and q.udp_size == 512


def test_small_edns_size_is_raised_to_512() -> None:
    q = parse_query(_wire(use_edns=0, payload=100))
    assert isinstance(q, ClientQuery) and q.udp_size == 512


def test_edns_options_are_noticed() -> None:
    opt = dns.edns.GenericOption(10, b"12345678")  # a client cookie
    q = parse_query(_wire(use_edns=0, options=[opt]))
    assert isinstance(q, ClientQuery) and q.has_options


def _loop_question() -> bytes:
    # The name at offset 12 is a pointer to itself.
    return _header() + b"\xc0\x0c" + b"\x00\x01\x00\x01"


def _forward_pointer() -> bytes:
    return _header() + b"\xc0\x10" + b"\x00\x01\x00\x01" + b"\x03abc\x00"


def _label_64() -> bytes:
    return _header() + b"\x40" + b"a" * 64 + b"\x00\x00\x01\x00\x01"


def _long_name() -> bytes:
    return _header() + (b"\x3f" + b"a" * 63) * 5 + b"\x00\x00\x01\x00\x01"


def _edns_version(v: int) -> bytes:
    return _wire(use_edns=v)


CASES = [
    # name, wire, reason, rcode (None = dropped)
    ("empty", b"", Reason.SHORT, None),
    ("eleven bytes", _header()[:11], Reason.SHORT, None),
    ("header only qd=1", _header(), Reason.FORMERR, dns.rcode.FORMERR),
    ("qr set", _header(flags=0x8100) + b"\x00\x00\x01\x00\x01", Reason.RESPONSE, None),
    ("opcode 2 status", _header(flags=dns.opcode.to_flags(dns.opcode.STATUS)), Reason.NOTIMP,
     dns.rcode.NOTIMP),
    ("opcode 5 update", _header(flags=dns.opcode.to_flags(dns.opcode.UPDATE)), Reason.NOTIMP,
     dns.rcode.NOTIMP),
    ("qdcount 0", _header(qd=0), Reason.FORMERR, dns.rcode.FORMERR),
    ("qdcount 2", _header(qd=2) + b"\x00\x00\x01\x00\x01" * 2, Reason.FORMERR,
     dns.rcode.FORMERR),
    ("ancount 1", _header(an=1) + b"\x00\x00\x01\x00\x01", Reason.FORMERR, dns.rcode.FORMERR),
    ("arcount 2", _header(ar=2) + b"\x00\x00\x01\x00\x01", Reason.FORMERR, dns.rcode.FORMERR),
    ("label length 64", _label_64(), Reason.FORMERR, dns.rcode.FORMERR),
    ("name over 255", _long_name(), Reason.FORMERR, dns.rcode.FORMERR),
    ("compression loop", _loop_question(), Reason.FORMERR, dns.rcode.FORMERR),
    ("forward pointer", _forward_pointer(), Reason.FORMERR, dns.rcode.FORMERR),
    ("label type 0x40", _header() + b"\x41\x00\x00\x01\x00\x01", Reason.FORMERR,
     dns.rcode.FORMERR),
    ("question cut", _wire()[:-2], Reason.FORMERR, dns.rcode.FORMERR),
    ("trailing junk", _wire() + b"junk", Reason.FORMERR, dns.rcode.FORMERR),
    ("additional not opt", _header(ar=1) + b"\x00\x00\x01\x00\x01"
     + b"\x00\x00\x01\x00\x01\x00\x00\x00\x00\x00\x04\x01\x02\x03\x04", Reason.FORMERR,
     dns.rcode.FORMERR),
    ("edns version 1", _edns_version(1), Reason.BADVERS, dns.rcode.BADVERS),
    ("qtype OPT", _wire(rdtype="OPT"), Reason.FORMERR, dns.rcode.FORMERR),
    ("axfr over udp", _wire(rdtype="AXFR"), Reason.REFUSED, dns.rcode.REFUSED),
    ("ixfr over udp", _wire(rdtype="IXFR"), Reason.REFUSED, dns.rcode.REFUSED),
    ("class CH", dns.message.make_query("version.bind.", "TXT", "CH").to_wire(),
     Reason.REFUSED, dns.rcode.REFUSED),
    ("class ANY", dns.message.make_query("x.", "A", "ANY").to_wire(), Reason.NOTIMP,
     dns.rcode.NOTIMP),
]


@pytest.mark.parametrize("name,wire,reason,rcode", CASES, ids=[c[0] for c in CASES])
def test_rejections(name: str, wire: bytes, reason: Reason, rcode: int | None) -> None:
    r = parse_query(wire)
    assert isinstance(r, Rejection), r
    assert r.reason is reason
    assert r.rcode == rcode
    if rcode is not None:
        assert r.id == struct.unpack("!H", wire[:2])[0]


@pytest.mark.parametrize("rdtype", ["AXFR", "IXFR"])
@pytest.mark.parametrize("tcp", [False, True])
def test_zone_transfers_are_refused_with_ede_21_on_both_transports(rdtype: str,
                                                                   tcp: bool) -> None:
    r = parse_query(_wire(rdtype=rdtype), tcp=tcp)
    assert isinstance(r, Rejection) and r.rcode == dns.rcode.REFUSED
    assert r.reason is Reason.REFUSED
    assert [e.code for e in r.edes] == [EdeCode.NOT_SUPPORTED]


def test_badvers_keeps_question_and_edns() -> None:
    r = parse_query(_wire(use_edns=1, want_dnssec=True))
    assert isinstance(r, Rejection) and r.question is not None and r.edns and r.do


def test_tsig_signed_query_is_refused() -> None:
    import dns.tsigkeyring

    keyring = dns.tsigkeyring.from_text({"k.": "MTIzNDU2Nzg5MDEyMzQ1Ng=="})
    q = dns.message.make_query("x.", "A")
    q.use_tsig(keyring, "k.")
    r = parse_query(q.to_wire())
    assert isinstance(r, Rejection) and r.rcode == dns.rcode.REFUSED
