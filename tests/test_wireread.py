"""core.wireread.read_message gives what dns.message.from_wire gives, field by field.

The corpus: every answer the testbed's authority gives for each RRset it holds (and a
name below each owner that does not exist), in all its zones, with and without DO;
and every scripted reply of every replay scenario (their odd records, hex answers and
broken messages included). Values and their types are compared, so a dnspython release
that changes what its reader builds fails here rather than in a validation."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rdatatype
import pytest

from anchord.core import wireread
from anchord.core.wire import parse_response
from anchord.testbed.authserver import Authority, render
from anchord.testbed.faults import FaultState
from anchord.testbed.replay.parser import Dialect, parse_file
from anchord.testbed.replay.scripted import entry_to_message
from anchord.testbed.zones import Hierarchy
from tests.requirements import scenario_dir

_BUILT_HERE = {1, 2, 5, 6, 28, 41, 43, 46, 47, 48, 50}  # the types wireread makes itself


def _slots(rd: Any) -> list[str]:
    return [s for cls in type(rd).__mro__ for s in getattr(cls, "__slots__", ())]


def _same_value(a: Any, b: Any, where: str) -> None:
    assert type(a) is type(b), f"{where}: {type(a)} != {type(b)}"
    if isinstance(a, dns.name.Name):
        assert a.labels == b.labels, where  # case too: names are relayed as read
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def assert_same_message(fast: dns.message.Message, ref: dns.message.Message) -> None:
    _same_value(fast.id, ref.id, "id")
    _same_value(fast.flags, ref.flags, "flags")
    assert type(fast) is type(ref)
    assert fast.wire == ref.wire
    for attr in ("edns", "ednsflags", "payload", "options"):
        assert getattr(fast, attr) == getattr(ref, attr), attr
    assert fast.rcode() == ref.rcode()
    assert (fast.opt is None) == (ref.opt is None)
    if ref.opt is not None:
        assert fast.opt is not None
        _same_value(fast.opt.ttl, ref.opt.ttl, "opt ttl")
        _same_value(fast.opt[0].rdclass, ref.opt[0].rdclass, "opt class")
        _same_value(fast.opt[0].options, ref.opt[0].options, "opt options")
    assert set(fast.index or {}) == set(ref.index or {})
    for number in range(4):
        mine, theirs = fast.sections[number], ref.sections[number]
        assert len(mine) == len(theirs), f"section {number}"
        for x, y in zip(mine, theirs, strict=True):
            where = f"section {number} {y.name}/{dns.rdatatype.to_text(y.rdtype)}"
            _same_value(x.name, y.name, where)
            for attr in ("rdclass", "rdtype", "covers", "ttl", "deleting"):
                _same_value(getattr(x, attr), getattr(y, attr), f"{where} {attr}")
            assert len(x) == len(y), where
            for rx, ry in zip(x, y, strict=True):
                assert type(rx) is type(ry), where
                # Other types are made by dnspython's own constructor in both readers.
                for slot in _slots(ry) if ry.rdtype in _BUILT_HERE else ("rdclass", "rdtype"):
                    _same_value(getattr(rx, slot), getattr(ry, slot), f"{where} .{slot}")
                assert hash(rx) == hash(ry) and rx == ry


def _authority_wires(h: Hierarchy) -> Iterator[bytes]:
    authority = Authority(h, FaultState(h.spec, h.now))
    for zone in h.zones.values():
        address = zone.addresses[0]
        owners = sorted({owner for owner, _, _ in zone.records})
        for owner, rdtype, covers in sorted(zone.records, key=str):
            if covers:
                continue
            for do in (True, False):
                q = dns.message.make_query(owner, rdtype, use_edns=0, want_dnssec=do)
                r = authority.respond(q, address)
                if r is not None:
                    yield render(r, 65535)
        for owner in owners[:20]:
            for name in (dns.name.from_text("no-such-name", owner), owner):
                q = dns.message.make_query(name, "TXT", use_edns=0, want_dnssec=True)
                r = authority.respond(q, address)
                if r is not None:
                    yield render(r, 65535)


def test_same_message_for_every_testbed_answer(small_hierarchy: Hierarchy) -> None:
    count = 0
    for wire in _authority_wires(small_hierarchy):
        fast = wireread.read_message(wire)
        assert fast is not None, dns.message.from_wire(wire)  # all plain: all read here
        assert_same_message(fast, dns.message.from_wire(wire))
        count += 1
    assert count > 300


def _scenario_wires() -> Iterator[tuple[str, bytes]]:
    for path in sorted(scenario_dir().rglob("*.rpl")):
        scenario = parse_file(path)
        entries = [e for r in scenario.ranges for e in r.entries]
        entries += [e for s in scenario.steps for e in s.entries]
        for entry in entries:
            if entry.hex_answer is not None:
                yield f"{path.name}:{entry.line}", entry.hex_answer
                continue
            try:
                yield (f"{path.name}:{entry.line}",
                       entry_to_message(entry, scenario.dialect).to_wire())
            except (dns.exception.DNSException, ValueError):
                continue  # an entry dnspython cannot render is not a reply on the wire


def test_same_message_or_same_refusal_for_every_scenario_reply() -> None:
    read = refused = count = 0
    for where, wire in _scenario_wires():
        count += 1
        try:
            ref: dns.message.Message | None = dns.message.from_wire(wire)
        except Exception as e:  # noqa: BLE001 - whatever from_wire raises, we must too
            ref, error = None, type(e)
        try:
            fast = wireread.read_message(wire)
        except Exception as e:  # noqa: BLE001
            assert ref is None and type(e) is error, f"{where}: {e!r}"
            refused += 1
            continue
        if fast is None:
            continue  # handed to from_wire
        assert ref is not None, f"{where}: read a message from_wire refuses ({error})"
        assert_same_message(fast, ref)
        read += 1
    assert count > 5000 and read > 0.95 * count, (count, read, refused)
    assert Dialect.UNBOUND  # both dialects' files are in the corpus (scenario_dir)


@pytest.mark.parametrize("wire", [
    b"",
    b"\x00" * 11,
    bytes.fromhex("1234 8180 0001 0000 0000 0000") + b"\x03www\xc0\x0c\x00\x01\x00\x01",
    # a pointer forward (to itself): BadPointer in from_wire
    bytes.fromhex("1234 8180 0001 0000 0000 0000") + b"\xc0\x0c\x00\x01\x00\x01",
    # a label type 0x40 (extended labels are not read)
    bytes.fromhex("1234 8180 0001 0000 0000 0000") + b"\x41" + b"a" * 65 + b"\x00\x00\x01\x00\x01",
    # trailing junk
    bytes.fromhex("1234 8180 0000 0000 0000 0000") + b"\x00",
    # an A record of 3 bytes
    bytes.fromhex("1234 8180 0000 0001 0000 0000")
    + b"\x00\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x03abc",
    # two OPT records
    bytes.fromhex("1234 8180 0000 0000 0000 0002")
    + b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00" * 2,
])
def test_broken_messages_are_refused_as_from_wire_refuses_them(wire: bytes) -> None:
    with pytest.raises(dns.exception.DNSException) as ref:
        dns.message.from_wire(wire)
    try:
        fast = wireread.read_message(wire)
    except dns.exception.DNSException as e:
        assert type(e) is type(ref.value)
        return
    assert fast is None  # from_wire decides
    with pytest.raises(type(ref.value)):
        parse_response(wire)


def test_names_are_shared_but_case_is_kept() -> None:
    a = dns.message.make_response(dns.message.make_query("WwW.Example.", "A"))
    b = dns.message.make_response(dns.message.make_query("www.example.", "A"))
    fa = wireread.read_message(a.to_wire())
    fb = wireread.read_message(b.to_wire())
    assert fa is not None and fb is not None
    assert fa.question[0].name.labels == (b"WwW", b"Example", b"")
    assert fb.question[0].name.labels == (b"www", b"example", b"")
    again = wireread.read_message(b.to_wire())
    assert again is not None and again.question[0].name is fb.question[0].name


def test_ttl_above_2_to_31_reads_as_zero_and_extended_rcode_is_kept() -> None:
    wire = (bytes.fromhex("1234 8180 0000 0001 0000 0001")
            + b"\x00\x00\x01\x00\x01\xff\xff\xff\xff\x00\x04\x01\x02\x03\x04"
            + b"\x00\x00\x29\x04\xd0\x01\x00\x80\x00\x00\x00")
    fast = wireread.read_message(wire)
    assert fast is not None
    assert_same_message(fast, dns.message.from_wire(wire))
    assert fast.answer[0].ttl == 0 and fast.rcode() == 16 and fast.flags & dns.flags.QR


def test_duplicates_ttls_and_singletons_read_as_from_wire_reads_them() -> None:
    # Records are added to their RRsets without Rdataset.add: the same set, the lowest
    # TTL, and a second SOA or CNAME replacing the first, as dnspython does.
    def rr(owner: bytes, rdtype: int, ttl: int, rdata: bytes) -> bytes:
        return owner + struct.pack("!HHIH", rdtype, 1, ttl, len(rdata)) + rdata

    root_soa = b"\x00\x00" + bytes(20)
    answer = [rr(b"\x00", 1, 300, b"\x01\x02\x03\x04"), rr(b"\x00", 1, 100, b"\x01\x02\x03\x04"),
              rr(b"\x00", 1, 200, b"\x05\x06\x07\x08"), rr(b"\x00", 5, 50, b"\x01a\x00"),
              rr(b"\x00", 5, 60, b"\x01b\x00")]
    authority = [rr(b"\x00", 6, 900, root_soa), rr(b"\x00", 6, 800, b"\x01x\x00" + root_soa[1:])]
    wire = (struct.pack("!HHHHHH", 7, 0x8180, 0, len(answer), len(authority), 0)
            + b"".join(answer) + b"".join(authority))
    fast = wireread.read_message(wire)
    assert fast is not None
    ref = dns.message.from_wire(wire)
    assert_same_message(fast, ref)
    a = fast.find_rrset(fast.answer, dns.name.root, 1, 1)
    assert len(a) == 2 and a.ttl == 100
    cname = fast.find_rrset(fast.answer, dns.name.root, 1, 5)
    assert len(cname) == 1 and str(cname[0].target) == "b." and cname.ttl == 50
