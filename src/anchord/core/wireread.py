"""A faster reader for the responses the resolver reads most: same Message, less work.

dns.message.from_wire spends most of an upstream answer's parse in machinery around
the data rather than in the data: every name goes through a Parser and a validating
Name constructor, every rdata through an immutability context and enum lookups, every
record through Message.find_rrset. A cold validated name reads three responses, and
reading them was an eighth of its CPU (py-spy, bench/cold.py).

read_message builds the same dns.message.Message from the same bytes, with three
shortcuts:
- names: decompressed here and looked up by their labels in a bounded table of Names
  made before (dnspython Names are immutable, so sharing one is safe; the owner names
  of a zone recur in every answer from it);
- rdata of the common types (A, AAAA, NS, CNAME, DS, DNSKEY, RRSIG, NSEC, NSEC3, SOA,
  and an OPT without options): the fields are read and set directly on the instance,
  with the same values and types dnspython's constructors would give them; whatever
  such a constructor would check is checked here, and anything unusual (a DS digest of
  the wrong length, a bitmap out of order) is handed to dnspython's own constructor for
  that record, which then accepts or raises exactly as it does in from_wire;
- records are grouped into RRsets through a dict, with find_rrset called once per
  RRset; rrset.add still does the adding (duplicate removal, the smallest TTL).

read_message returns None for anything outside that shape (another opcode, TSIG, an
OPT out of place, a broken name, bytes left over): the caller then uses from_wire,
which raises or reads it as before. tests/test_wireread.py compares the two readers
field by field, value and type, over the testbed's answers and every reply in the
replay scenarios, so a dnspython release that changes its objects fails there.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable
from typing import Any

import dns.dnssectypes
import dns.flags
import dns.ipv6
import dns.message
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.wire
from dns.rdtypes.ANY.CNAME import CNAME
from dns.rdtypes.ANY.DNSKEY import DNSKEY
from dns.rdtypes.ANY.DS import DS
from dns.rdtypes.ANY.NS import NS
from dns.rdtypes.ANY.NSEC import NSEC
from dns.rdtypes.ANY.NSEC3 import NSEC3
from dns.rdtypes.ANY.OPT import OPT
from dns.rdtypes.ANY.RRSIG import RRSIG
from dns.rdtypes.ANY.SOA import SOA
from dns.rdtypes.dnskeybase import Flag as KeyFlag
from dns.rdtypes.IN.A import A
from dns.rdtypes.IN.AAAA import AAAA

_HEADER = struct.Struct("!HHHHHH")
_RR = struct.Struct("!HHIH")
_RRSIG_FIXED = struct.Struct("!HBBIIIH")
_U16 = struct.Struct("!H")

_NAMES_LIMIT = 50_000  # distinct names remembered; the table is cleared when full
_names: dict[tuple[bytes, ...], dns.name.Name] = {}


class _Unusual(Exception):
    """Not a shape read_message handles: from_wire reads (or refuses) it instead."""


def _name(wire: bytes, pos: int) -> tuple[dns.name.Name, int]:
    """The name at `pos` and the offset after it, with dnspython's rules: pointers only
    to earlier bytes, labels up to 63 octets, the name up to 255 (Name checks that)."""
    labels: list[bytes] = []
    end = -1
    lowest = pos  # a pointer must go back before every place already read
    size = len(wire)
    while True:
        if pos >= size:
            raise _Unusual
        length = wire[pos]
        if length == 0:
            pos += 1
            break
        if length < 64:
            pos += 1
            if pos + length > size:
                raise _Unusual
            labels.append(wire[pos:pos + length])
            pos += length
        elif length >= 192:
            if pos + 1 >= size:
                raise _Unusual
            target = ((length & 0x3F) << 8) | wire[pos + 1]
            if target >= lowest:
                raise _Unusual
            if end < 0:
                end = pos + 2
            lowest = target
            pos = target
        else:
            raise _Unusual
    key = tuple(labels)
    name = _names.get(key)
    if name is None:
        labels.append(b"")
        try:
            name = dns.name.Name(labels)
        except dns.name.NameTooLong:
            raise _Unusual from None
        if len(_names) >= _NAMES_LIMIT:
            _names.clear()
        _names[key] = name
    return name, (pos if end < 0 else end)


# Enum values as dnspython's constructors make them, remembered per number.
def _memo(make: Callable[[int], Any]) -> Callable[[int], Any]:
    seen: dict[int, Any] = {}

    def get(value: int) -> Any:
        found = seen.get(value)
        if found is None:
            found = seen[value] = make(value)
        return found

    return get


_rdtype = _memo(dns.rdatatype.RdataType.make)
_rdclass = _memo(dns.rdataclass.RdataClass.make)
_algorithm = _memo(dns.dnssectypes.Algorithm.make)
_digest_type = _memo(dns.dnssectypes.DSDigest.make)
_key_flags = _memo(KeyFlag)
_flags = _memo(dns.flags.Flag)
_DS_LENGTHS: dict[int, int] = dict(DS._digest_length_by_type)
_SINGLETONS = frozenset(int(t) for t in dns.rdatatype._singletons)  # CNAME, SOA, NSEC, ...


def _new(cls: type, rdclass: int, rdtype: int, **fields: Any) -> Any:
    # The instance as the constructor leaves it; object.__setattr__ because dnspython
    # rdata are immutable once made (its own from_text sets rdcomment the same way).
    rd: Any = object.__new__(cls)
    setattr_ = object.__setattr__
    setattr_(rd, "rdclass", _rdclass(rdclass))
    setattr_(rd, "rdtype", _rdtype(rdtype))
    setattr_(rd, "rdcomment", None)
    for key, value in fields.items():
        setattr_(rd, key, value)
    return rd


def _bitmap(wire: bytes, pos: int, end: int) -> tuple[tuple[int, bytes], ...]:
    windows = []
    last = -1
    while pos < end:
        if pos + 2 > end:
            raise _Unusual
        window, length = wire[pos], wire[pos + 1]
        pos += 2
        if window <= last or not 0 < length <= 32 or pos + length > end \
                or wire[pos + length - 1] == 0:
            raise _Unusual  # dnspython words the error (or a reading it accepts)
        windows.append((window, wire[pos:pos + length]))
        last = window
        pos += length
    return tuple(windows)


def _rdata(rdclass: int, rdtype: int, wire: bytes, pos: int, end: int) -> Any:
    """The rdata at wire[pos:end] as dnspython makes it; _Unusual to let it do so."""
    if rdclass != 1:
        raise _Unusual  # class-specific types (CH A, ...) stay with dnspython
    length = end - pos
    if rdtype == 1:
        if length != 4:
            raise _Unusual
        return _new(A, 1, 1, address=socket.inet_ntoa(wire[pos:end]))
    if rdtype == 46:
        if length < 19:
            raise _Unusual
        fixed = _RRSIG_FIXED.unpack_from(wire, pos)
        signer, at = _name(wire, pos + 18)
        if at >= end:
            raise _Unusual
        return _new(RRSIG, 1, 46, type_covered=_rdtype(fixed[0]),
                    algorithm=_algorithm(fixed[1]), labels=fixed[2],
                    original_ttl=fixed[3], expiration=fixed[4], inception=fixed[5],
                    key_tag=fixed[6], signer=signer, signature=wire[at:end])
    if rdtype in (2, 5):
        target, at = _name(wire, pos)
        if at != end:
            raise _Unusual
        return _new(NS if rdtype == 2 else CNAME, 1, rdtype, target=target)
    if rdtype == 43:
        if length < 4:
            raise _Unusual
        digest_type = wire[pos + 3]
        if _DS_LENGTHS.get(digest_type, -1) != length - 4:
            raise _Unusual  # unknown or reserved types and wrong lengths: dnspython's call
        return _new(DS, 1, 43, key_tag=_U16.unpack_from(wire, pos)[0],
                    algorithm=_algorithm(wire[pos + 2]),
                    digest_type=_digest_type(digest_type), digest=wire[pos + 4:end])
    if rdtype == 48:
        if length < 4:
            raise _Unusual
        return _new(DNSKEY, 1, 48, flags=_key_flags(_U16.unpack_from(wire, pos)[0]),
                    protocol=wire[pos + 2], algorithm=_algorithm(wire[pos + 3]),
                    key=wire[pos + 4:end])
    if rdtype == 28:
        if length != 16:
            raise _Unusual
        return _new(AAAA, 1, 28, address=dns.ipv6.inet_ntoa(wire[pos:end]))
    if rdtype == 47:
        nxt, at = _name(wire, pos)
        if at > end:
            raise _Unusual
        return _new(NSEC, 1, 47, next=nxt, windows=_bitmap(wire, at, end))
    if rdtype == 50:
        if length < 5:
            raise _Unusual
        algorithm, flags, iterations, salt_len = struct.unpack_from("!BBHB", wire, pos)
        at = pos + 5 + salt_len
        if at >= end:
            raise _Unusual
        salt = wire[pos + 5:at]
        hash_len = wire[at]
        nxt_end = at + 1 + hash_len
        if hash_len == 0 or nxt_end > end:
            raise _Unusual
        return _new(NSEC3, 1, 50, algorithm=algorithm, flags=flags,
                    iterations=iterations, salt=salt, next=wire[at + 1:nxt_end],
                    windows=_bitmap(wire, nxt_end, end))
    if rdtype == 6:
        mname, at = _name(wire, pos)
        rname, at = _name(wire, at)
        if at + 20 != end:
            raise _Unusual
        serial, refresh, retry, expire, minimum = struct.unpack_from("!IIIII", wire, at)
        return _new(SOA, 1, 6, mname=mname, rname=rname, serial=serial, refresh=refresh,
                    retry=retry, expire=expire, minimum=minimum)
    raise _Unusual


def _dnspython_rdata(rdclass: int, rdtype: int, wire: bytes, pos: int, end: int) -> Any:
    # What from_wire does per record, raising what it raises (FormError and kin).
    parser = dns.wire.Parser(wire, pos)
    with parser.restrict_to(end - pos):
        return dns.rdata.from_wire_parser(rdclass, rdtype, parser)  # type: ignore[arg-type]


def read_message(wire: bytes) -> dns.message.Message | None:
    """dns.message.from_wire(wire) for a plain response, or None: ask from_wire.

    May raise what from_wire raises for a record dnspython refuses (its constructor
    is the one that judged it)."""
    try:
        return _read(wire)
    except (_Unusual, struct.error, IndexError):
        return None


def _read(wire: bytes) -> dns.message.Message:
    if len(wire) < 12:
        raise _Unusual
    qid, flags, qdcount, ancount, nscount, arcount = _HEADER.unpack_from(wire)
    if flags & 0x7800:  # opcode other than QUERY: another Message class
        raise _Unusual
    msg = dns.message.QueryMessage(id=qid)
    msg.flags = _flags(flags)
    msg.wire = wire
    pos = 12
    for _ in range(qdcount):
        name, pos = _name(wire, pos)
        rdtype, rdclass = struct.unpack_from("!HH", wire, pos)
        pos += 4
        msg.find_rrset(msg.question, name, rdclass, rdtype,
                       create=True, force_unique=True)
    size = len(wire)
    for number, count in ((1, ancount), (2, nscount), (3, arcount)):
        section = msg.sections[number]
        rrsets: dict[tuple[dns.name.Name, int, int, int], dns.rrset.RRset] = {}
        for _ in range(count):
            owner, pos = _name(wire, pos)
            rdtype, rdclass, ttl, rdlen = _RR.unpack_from(wire, pos)
            pos += 10
            end = pos + rdlen
            if end > size:
                raise _Unusual
            if rdtype == 41:
                if number != 3 or msg.opt is not None or len(owner) != 1 or rdlen:
                    raise _Unusual  # misplaced, repeated or with options: from_wire
                opt = dns.rrset.RRset(owner, _rdclass(rdclass), _rdtype(41))
                opt.add(_new(OPT, rdclass, 41, options=()), ttl)
                msg.opt = opt
                pos = end
                continue
            if rdtype == 250:
                raise _Unusual  # TSIG: from_wire checks it against a keyring
            try:
                rd = _rdata(rdclass, rdtype, wire, pos, end)
            except _Unusual:
                rd = _dnspython_rdata(rdclass, rdtype, wire, pos, end)
            pos = end
            covers = rd.covers()
            key = (owner, rdclass, rdtype, covers)
            rrset = rrsets.get(key)
            if rrset is None:
                # What find_rrset(..., create=True) does, without its four enum
                # conversions and its index probe (rrsets already says it is new).
                rrset = rrsets[key] = dns.rrset.RRset(
                    owner, _rdclass(rdclass), _rdtype(rdtype), _rdtype(covers))
                section.append(rrset)
                msg.index[(number, owner, rrset.rdclass, rrset.rdtype, rrset.covers,
                           None)] = rrset
            # What rrset.add(rd, ttl) does (the types and covers match by the key),
            # hashing the rdata once: Set.add tests membership and then inserts, and an
            # rdata's hash renders it to wire form each time.
            if ttl > 0x7FFFFFFF:
                ttl = 0
            items = rrset.items
            if not items or ttl < rrset.ttl:
                rrset.ttl = ttl
            if items and rdtype in _SINGLETONS:
                rrset.clear()
            items.setdefault(rd, None)
    if pos != size:
        raise _Unusual
    return msg


__all__ = ["read_message"]
