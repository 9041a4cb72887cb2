"""The only place an Outcome becomes wire bytes.

The resolver decided everything (rcode, records, security, EDEs); rendering applies the
client-facing rules and nothing else:

- header: ID, RD, CD and the question (in the client's case) copied; QR and RA set;
- AD (RFC 6840 5.7/5.8): only for Secure data and only if the client set DO or AD.
  CD does not clear it: like BIND and Unbound, data known to be secure keeps AD;
- Bogus without CD: SERVFAIL with no records and the EDEs. Bogus with CD: the data as
  the resolver has it, never AD, with the EDEs (they still say what is wrong);
- DNSSEC records (RRSIG, NSEC, NSEC3) only for DO clients (RFC 3225 3), unless the
  question asked for that type;
- EDNS only if the client sent it (RFC 6891 7): version 0, payload 1232, DO echoed, one
  EDE option per Ede in the outcome's order (RFC 8914);
- size: a UDP reply never exceeds the client's limit (512 without EDNS, else
  min(client size, 1232)): long EDE texts are shortened first, then records that still do
  not fit go: TC with empty sections (OPT and EDE codes kept).
"""

from __future__ import annotations

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset

from anchord.core.outcome import Ede, EdeCode, Outcome, Question, Security
from anchord.frontend.request import MIN_UDP_SIZE, ClientQuery, Rejection

EDNS_PAYLOAD = 1232  # the DNS Flag Day 2020 size, for what we advertise and send
MAX_TCP = 65535
_DNSSEC_TYPES = frozenset((dns.rdatatype.RRSIG, dns.rdatatype.NSEC, dns.rdatatype.NSEC3))
_COPIED_FLAGS = dns.flags.RD | dns.flags.CD
_OPCODE_MASK = 0x7800


def reply_limit(query: ClientQuery) -> int:
    """The largest reply this client can take over its transport."""
    if query.tcp:
        return MAX_TCP
    if not query.edns:
        return MIN_UDP_SIZE
    return min(query.udp_size, EDNS_PAYLOAD)


def _skeleton(qid: int, client_flags: int, question: Question | None) -> dns.message.Message:
    msg = dns.message.Message(id=qid)
    msg.flags = (dns.flags.QR | dns.flags.RA | (client_flags & (_COPIED_FLAGS | _OPCODE_MASK)))
    if question is not None:
        msg.question = [dns.rrset.RRset(question.qname, question.qclass, question.qtype)]
    return msg


def _edns(msg: dns.message.Message, do: bool, edes: tuple[Ede, ...]) -> None:
    # EDECode.make keeps codes dnspython does not name (33, NTA) as plain ints.
    options: list[dns.edns.Option] = [
        dns.edns.EDEOption(dns.edns.EDECode.make(int(e.code)), e.text or None) for e in edes]
    msg.use_edns(0, dns.flags.DO if do else 0, EDNS_PAYLOAD, options=options)


def _keep_dnssec(rrsets: tuple[dns.rrset.RRset, ...], qtype: int, in_answer: bool
                 ) -> list[dns.rrset.RRset]:
    """Drop RRSIG/NSEC/NSEC3 for a client without DO, unless it asked for that type."""
    asked_all = in_answer and qtype == dns.rdatatype.ANY
    return [
        r for r in rrsets
        if r.rdtype not in _DNSSEC_TYPES or asked_all or (in_answer and r.rdtype == qtype)
    ]


# dnspython raises TooBig when records do not fit, and ValueError when the OPT record
# alone (long EDE texts) is larger than the limit.
_TOO_BIG = (dns.exception.TooBig, ValueError)


def _shorten_edes(msg: dns.message.Message, keep: int) -> None:
    """Cut every EDE text to at most `keep` characters (codes always stay)."""
    if msg.opt is None:
        return
    options: list[dns.edns.Option] = []
    for o in msg.options:
        if isinstance(o, dns.edns.EDEOption) and o.text and len(o.text) > keep:
            text = o.text[:keep - 1] + "…" if keep > 1 else None
            o = dns.edns.EDEOption(o.code, text)
        options.append(o)
    msg.use_edns(0, msg.ednsflags, EDNS_PAYLOAD, options=options)


def _to_wire(msg: dns.message.Message, limit: int) -> bytes:
    """Render within `limit` (RFC 6891 7: never more than the client can take).

    Records matter more than the full EDE text (an NTA's reason can be long), so texts
    are shortened first; if the records still do not fit: TC with empty sections, the
    OPT and the EDE codes kept.
    """
    try:
        return msg.to_wire(max_size=limit)
    except _TOO_BIG:
        pass
    for keep in (200, 80):
        _shorten_edes(msg, keep)
        try:
            return msg.to_wire(max_size=limit)
        except _TOO_BIG:
            pass
    msg.answer, msg.authority, msg.additional = [], [], []
    msg.flags |= dns.flags.TC
    for keep in (80, 24, 0):
        _shorten_edes(msg, keep)
        try:
            return msg.to_wire(max_size=limit)
        except _TOO_BIG:
            pass
    # Header, question and bare EDE codes exceed the limit: only with absurdly many codes.
    msg.use_edns(0, msg.ednsflags, EDNS_PAYLOAD, options=[])
    return msg.to_wire(max_size=limit)


def render_outcome(query: ClientQuery, outcome: Outcome) -> bytes:
    """The reply to `query` carrying `outcome`."""
    msg = _skeleton(query.id, query.flags, query.question)
    rcode = outcome.rcode
    bogus = outcome.security is Security.BOGUS
    if bogus and not query.cd:
        rcode = dns.rcode.SERVFAIL  # RFC 4035 5.5: no bogus data to a validating path
    else:
        qtype = query.question.qtype
        if query.do:
            msg.answer = list(outcome.answer)
            msg.authority = list(outcome.authority)
            msg.additional = list(outcome.additional)
        else:
            msg.answer = _keep_dnssec(outcome.answer, qtype, True)
            msg.authority = _keep_dnssec(outcome.authority, qtype, False)
            msg.additional = _keep_dnssec(outcome.additional, qtype, False)
        if outcome.security is Security.SECURE and (query.do or query.ad):
            msg.flags |= dns.flags.AD
    if query.edns:
        _edns(msg, query.do, outcome.edes)
    elif rcode > 0xF:
        rcode = dns.rcode.SERVFAIL  # an extended rcode cannot travel without an OPT
    msg.set_rcode(dns.rcode.Rcode.make(rcode))
    return _to_wire(msg, reply_limit(query))


def render_rejection(rej: Rejection, edes: tuple[Ede, ...] = ()) -> bytes | None:
    """The frontend's own error reply (FORMERR, NOTIMP, REFUSED, BADVERS), or None.

    The EDEs (only with EDNS) are the rejection's own and any the caller adds."""
    if rej.rcode is None:
        return None
    msg = _skeleton(rej.id, rej.flags, rej.question)
    if rej.edns:
        _edns(msg, rej.do, (*edes, *rej.edes))
    msg.set_rcode(dns.rcode.Rcode.make(rej.rcode))
    return _to_wire(msg, MIN_UDP_SIZE if not rej.edns else EDNS_PAYLOAD)


# The EDE for a client outside the access control list (Unbound sends the same).
PROHIBITED = (Ede(EdeCode.PROHIBITED, "query refused by access control"),)


__all__ = ["render_outcome", "render_rejection", "reply_limit", "EDNS_PAYLOAD", "PROHIBITED"]
