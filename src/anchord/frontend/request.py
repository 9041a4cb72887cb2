"""A client's query, read from wire bytes and checked before the resolver sees it.

`parse_query` returns either a ClientQuery (go resolve it) or a Rejection: drop the
packet (no reply can be formed, or replying would be wrong: a response sent to us) or
answer it at once with an error rcode. The order of checks follows Unbound's
worker_check_request: header, QR, opcode, counts, then the question and EDNS.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype

from anchord.core.outcome import Ede, EdeCode, Question
from anchord.core.wireread import read_message

HEADER = struct.Struct("!HHHHHH")
MIN_UDP_SIZE = 512

# What dns.message.from_wire raises for a packet that is not a well-formed DNS message.
# FormError covers ShortHeader, TrailingJunk, BadEDNS, BadPointer (including pointer
# loops, which dnspython rejects because pointers must go backwards), BadLabelType,
# NameTooLong and every rdata error (dnspython wraps those in FormError).
PARSE_ERRORS = (
    dns.exception.FormError,
    dns.exception.SyntaxError,  # LabelTooLong
    dns.message.UnknownHeaderField,
)

# Zone transfers: a recursive resolver holds no zone to transfer.
_XFR_TYPES = frozenset((dns.rdatatype.AXFR, dns.rdatatype.IXFR))
# Why, for the client (RFC 8914 21, Not Supported), on UDP and TCP alike.
XFR_REFUSED = (Ede(EdeCode.NOT_SUPPORTED, "zone transfers are not served by a recursive "
                                          "resolver"),)
# Types that make no sense in a question (RFC 6891: OPT is a pseudo-RR; TSIG/TKEY are
# transaction records).
_FORMERR_TYPES = frozenset((dns.rdatatype.OPT, dns.rdatatype.TSIG, dns.rdatatype.TKEY))
_NOTIMP_TYPES = frozenset((dns.rdatatype.MAILA, dns.rdatatype.MAILB))


class Reason(enum.Enum):
    """Why a query was not passed to the resolver (counted by the server)."""

    SHORT = "short"  # no readable header: dropped
    RESPONSE = "response"  # QR set: dropped, never answer an answer
    FORMERR = "formerr"
    NOTIMP = "notimp"
    REFUSED = "refused"
    BADVERS = "badvers"


@dataclass(frozen=True, slots=True)
class ClientQuery:
    """One accepted query: what to ask and how the client wants the answer."""

    id: int
    flags: int  # the raw header flags (RD, CD, AD, opcode live here)
    question: Question  # qname keeps the client's case
    rd: bool
    cd: bool
    ad: bool
    edns: bool  # the client sent an OPT record
    do: bool
    udp_size: int  # the client's advertised size, at least 512
    has_options: bool  # any EDNS option (cookie, ECS, padding ...)
    tcp: bool


@dataclass(frozen=True, slots=True)
class Rejection:
    """A query answered by the frontend itself, or dropped (rcode None)."""

    reason: Reason
    rcode: int | None  # None: send nothing
    id: int = 0
    flags: int = 0
    question: Question | None = None  # echoed when it could be read
    edns: bool = False
    do: bool = False
    edes: tuple[Ede, ...] = ()  # sent when the client sent EDNS


def _drop(reason: Reason) -> Rejection:
    return Rejection(reason, None)


def parse_query(wire: bytes, *, tcp: bool = False) -> ClientQuery | Rejection:
    """Read and check one client query. Never raises for any input bytes."""
    if len(wire) < HEADER.size:
        return _drop(Reason.SHORT)
    qid, flags, qdcount, ancount, nscount, arcount = HEADER.unpack_from(wire)
    if flags & dns.flags.QR:
        return _drop(Reason.RESPONSE)
    opcode = (flags >> 11) & 0xF
    if opcode != dns.opcode.QUERY:
        return Rejection(Reason.NOTIMP, dns.rcode.NOTIMP, qid, flags)
    if qdcount != 1 or ancount != 0 or nscount != 0 or arcount > 1:
        # Unbound's limits for a query: one question, nothing in answer/authority,
        # at most the OPT record in additional.
        return Rejection(Reason.FORMERR, dns.rcode.FORMERR, qid, flags)
    try:
        # The plain shape through the faster reader (same Message), else dnspython's.
        msg = read_message(wire) or dns.message.from_wire(wire)
    except PARSE_ERRORS:
        return Rejection(Reason.FORMERR, dns.rcode.FORMERR, qid, flags)
    except dns.message.UnknownTSIGKey:
        # A signed query: we hold no keys (dnspython raises before any check).
        return Rejection(Reason.REFUSED, dns.rcode.REFUSED, qid, flags)
    if arcount and msg.opt is None:
        # The one additional record was not an OPT (a TSIG is caught above).
        return Rejection(Reason.FORMERR, dns.rcode.FORMERR, qid, flags)
    q = msg.question[0]
    question = Question(q.name, q.rdtype, q.rdclass)
    edns = msg.edns >= 0
    do = edns and bool(msg.ednsflags & dns.flags.DO)

    def reject(reason: Reason, rcode: int, edes: tuple[Ede, ...] = ()) -> Rejection:
        return Rejection(reason, rcode, qid, flags, question, edns, do, edes)

    if edns and msg.edns > 0:
        return reject(Reason.BADVERS, dns.rcode.BADVERS)  # RFC 6891 6.1.3
    if q.rdtype in _FORMERR_TYPES:
        return reject(Reason.FORMERR, dns.rcode.FORMERR)
    if q.rdtype in _XFR_TYPES:
        # Not a resolver's business: REFUSED on both transports, as Unbound answers
        # (one answer whatever the transport, so a client's fallback to TCP changes
        # nothing), with EDE 21 saying why.
        return reject(Reason.REFUSED, dns.rcode.REFUSED, XFR_REFUSED)
    if q.rdtype in _NOTIMP_TYPES:
        return reject(Reason.NOTIMP, dns.rcode.NOTIMP)
    if q.rdclass != dns.rdataclass.IN:
        # CHAOS (version.bind) and the rest: nothing is served there; meta classes
        # (NONE, ANY) are not implemented for queries at all.
        if dns.rdataclass.is_metaclass(q.rdclass):
            return reject(Reason.NOTIMP, dns.rcode.NOTIMP)
        return reject(Reason.REFUSED, dns.rcode.REFUSED)
    udp_size = max(MIN_UDP_SIZE, msg.payload) if edns else MIN_UDP_SIZE
    return ClientQuery(
        id=qid,
        flags=flags,
        question=question,
        rd=bool(flags & dns.flags.RD),
        cd=bool(flags & dns.flags.CD),
        ad=bool(flags & dns.flags.AD),
        edns=edns,
        do=do,
        udp_size=udp_size,
        has_options=bool(msg.options),
        tcp=tcp,
    )


__all__ = ["ClientQuery", "Rejection", "Reason", "parse_query", "PARSE_ERRORS", "MIN_UDP_SIZE",
           "XFR_REFUSED"]
