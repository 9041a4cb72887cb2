"""Reading an upstream response: strict first, then record by record.

dnspython refuses a whole message when one record's rdata does not fit its type (an A
record of 3 bytes, a CH-class A, SvcParams out of order). A resolver should not lose a
server's whole answer to one bad record: Unbound's scrubber drops such records and keeps
the rest. So a message whose framing is sound (every name, record header and rdata
length consistent, nothing left over) is read again with the bad records left out.

One exception keeps data instead of dropping it: an SVCB/HTTPS record whose structure is
intact (priority, target name, then key/length/value triples that fill the rdata
exactly) but whose parameter values dnspython rejects (duplicate or unordered keys, an
odd alpn value) is relayed as opaque rdata (RFC 3597). Judging SvcParams is the client's
job (RFC 9460 2.2: clients MUST treat such a record as malformed), and it may carry a
signature that covers exactly those bytes.

A message whose framing is broken still raises dns.exception.FormError.
"""

from __future__ import annotations

import struct

import dns.exception
import dns.message
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype

from anchord.core.wireread import read_message

_OPAQUE_WHEN_INTACT = frozenset((dns.rdatatype.SVCB, dns.rdatatype.HTTPS))


def _svcb_intact(rdata: bytes, wire: bytes, offset: int) -> bool:
    """Is this SVCB/HTTPS rdata well framed (RFC 9460 2.2), whatever its values?"""
    if len(rdata) < 3:
        return False
    try:
        _, used = dns.name.from_wire(wire, offset + 2)
    except dns.exception.DNSException:
        return False
    pos = 2 + used
    while pos < len(rdata):
        if pos + 4 > len(rdata):
            return False
        _, length = struct.unpack_from("!HH", rdata, pos)
        pos += 4 + length
    return pos == len(rdata)


def _records(wire: bytes) -> list[tuple[int, dns.name.Name, int, int, int, int, int]]:
    """(section, owner, type, class, ttl, rdata offset, rdata length) of every record;
    FormError when the message's framing is broken."""
    if len(wire) < 12:
        raise dns.message.ShortHeader
    counts = struct.unpack_from("!HHHH", wire, 4)
    pos = 12
    out: list[tuple[int, dns.name.Name, int, int, int, int, int]] = []
    try:
        for section, count in enumerate(counts):
            for _ in range(count):
                name, used = dns.name.from_wire(wire, pos)
                pos += used
                if section == 0:
                    pos += 4
                    continue
                if pos + 10 > len(wire):
                    raise dns.exception.FormError("record header past the end")
                rdtype, rdclass, ttl, rdlen = struct.unpack_from("!HHIH", wire, pos)
                pos += 10
                if pos + rdlen > len(wire):
                    raise dns.exception.FormError("rdata past the end")
                out.append((section, name, rdtype, rdclass, ttl, pos, rdlen))
                pos += rdlen
    except dns.name.NameTooLong as e:
        raise dns.exception.FormError(str(e)) from None
    if pos != len(wire):
        raise dns.message.TrailingJunk
    special = [(section, rdtype) for section, _, rdtype, *_ in out
               if rdtype in (dns.rdatatype.OPT, dns.rdatatype.TSIG)]
    if any(section != 3 for section, _ in special) or \
            sum(1 for _, t in special if t == dns.rdatatype.OPT) > 1:
        # dnspython stops reading at a misplaced OPT/TSIG: not a per-record problem.
        raise dns.exception.FormError("misplaced OPT or TSIG record")
    return out


def parse_response(wire: bytes, *, keep_unreadable: bool = False) -> dns.message.Message:
    """The message in `wire`, leaving out records whose rdata does not fit their type.

    With `keep_unreadable` every such record is kept as opaque rdata instead (for a
    checker that must see everything a message carries). Raises what
    dns.message.from_wire raises when the framing itself is broken.
    """
    try:
        fast = read_message(wire)  # the plain shape of nearly every answer
    except dns.exception.DNSException:
        fast = None  # a record dnspython refuses: read below, record by record
    if fast is not None:
        return fast
    try:
        return dns.message.from_wire(wire)
    except dns.message.UnknownTSIGKey:
        raise
    except dns.exception.FormError as strict:
        try:
            records = _records(wire)
        except (dns.exception.FormError, struct.error):
            raise strict from None
    msg = dns.message.from_wire(wire, continue_on_error=True)
    if not msg.errors:
        return msg
    sections = (msg.answer, msg.authority, msg.additional)
    for section, owner, rdtype, rdclass, ttl, offset, length in records:
        if rdtype in (dns.rdatatype.OPT, dns.rdatatype.TSIG) or (
                not keep_unreadable and rdtype not in _OPAQUE_WHEN_INTACT):
            continue
        try:
            dns.rdata.from_wire(rdclass, rdtype, wire, offset, length)  # type: ignore[arg-type]
            continue  # read fine: dnspython kept it
        except (dns.exception.DNSException, ValueError):
            pass
        if not keep_unreadable and not _svcb_intact(wire[offset:offset + length], wire,
                                                    offset):
            continue
        rd = dns.rdata.GenericRdata(rdclass, rdtype,  # type: ignore[arg-type]
                                    wire[offset:offset + length])
        rrset = msg.find_rrset(sections[section - 1], owner,
                               dns.rdataclass.RdataClass.make(rdclass),
                               dns.rdatatype.RdataType.make(rdtype), create=True)
        rrset.add(rd, ttl)
    return msg


__all__ = ["parse_response"]
