"""The scripted upstream: answers the resolver's queries from a scenario's RANGE blocks.

It implements core.ports.Transport without sockets or sleeps, so a whole resolution
finishes inside one step. The one exception is Unbound's REPLY/TIMEOUT/ERROR steps:
when a scenario scripts those, an unmatched query is held (an asyncio future) until
the runner reaches the step that answers it, as Unbound's own test harness does.
Deckard's REPLY steps mean something else there: one-shot answers for queries no
RANGE is eligible for (pydnstest's Scenario.reply), served here without holding.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataset
import dns.rrset

from anchord.core.ports import ServerAddress, UpstreamError, UpstreamResult
from anchord.core.wire import parse_response
from anchord.engine.transport import question_matches
from anchord.testbed.replay.parser import Dialect, Entry, Range, Record, Scenario

_FLAG_BITS = {"QR": dns.flags.QR, "AA": dns.flags.AA, "TC": dns.flags.TC,
              "RD": dns.flags.RD, "RA": dns.flags.RA, "AD": dns.flags.AD,
              "CD": dns.flags.CD}

# What each dialect's harness puts on a scripted message (FORMAT.md, "EDNS").
UNBOUND_EDNS_SIZE = 1232
DECKARD_EDNS_SIZE = 4096


def records_to_rrsets(records: tuple[Record, ...]) -> list[dns.rrset.RRset]:
    """Group records into RRsets in first-seen order (RRSIGs by the type they cover)."""
    groups: dict[tuple[dns.name.Name, int, int, int], dns.rrset.RRset] = {}
    for r in records:
        key = (r.name, r.rdclass, r.rdtype, r.covers)
        rrset = groups.get(key)
        if rrset is None:
            rrset = dns.rrset.RRset(r.name, r.rdclass, r.rdtype, r.covers)  # type: ignore[arg-type]
            groups[key] = rrset
        # Keep each record's own TTL visible: an RRset holds one TTL, the smallest.
        rrset.add(r.rdata, r.ttl)
    return list(groups.values())


def entry_to_message(entry: Entry, dialect: Dialect,
                     query: dns.message.Message | None = None) -> dns.message.Message:
    """The DNS message an entry describes, adjusted to `query` (copy_id, copy_query)."""
    msg = dns.message.Message(id=0)
    msg.flags = 0
    for word in entry.flags:
        msg.flags |= _FLAG_BITS.get(word, 0)
    msg.set_opcode(entry.opcode)  # type: ignore[arg-type]
    msg.set_rcode(entry.rcode)  # type: ignore[arg-type]
    if query is not None and "copy_id" in entry.adjust:
        msg.id = query.id
    if query is not None and "copy_query" in entry.adjust:
        msg.question = [dns.rrset.RRset(q.name, q.rdclass, q.rdtype) for q in query.question]
    else:
        msg.question = [dns.rrset.RRset(q.name, q.rdclass, q.rdtype)  # type: ignore[arg-type]
                        for q in entry.question]
    msg.answer = records_to_rrsets(entry.answer)
    msg.authority = records_to_rrsets(entry.authority)
    msg.additional = records_to_rrsets(entry.additional)
    wants_do = "DO" in entry.flags
    options: list[dns.edns.Option] = []
    if entry.hex_ednsdata:
        options = _parse_options(entry.hex_ednsdata)
    if dialect is Dialect.DECKARD:
        msg.use_edns(0, dns.flags.DO if wants_do else 0, DECKARD_EDNS_SIZE, options=options)
    elif wants_do or options:
        msg.use_edns(0, dns.flags.DO if wants_do else 0, UNBOUND_EDNS_SIZE, options=options)
    return msg


def _parse_options(data: bytes) -> list[dns.edns.Option]:
    options: list[dns.edns.Option] = []
    pos = 0
    while pos + 4 <= len(data):
        code = int.from_bytes(data[pos:pos + 2], "big")
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        body = data[pos + 4:pos + 4 + length]
        options.append(dns.edns.GenericOption(code, body))  # type: ignore[arg-type]
        pos += 4 + length
    return options


def query_matches(entry: Entry, query: dns.message.Message, tcp: bool) -> bool:
    """Does an outgoing query satisfy the entry's MATCH words (FORMAT.md)?"""
    m = entry.match
    if "tcp" in m and not tcp:
        return False
    if "udp" in m and tcp:
        return False
    if "opcode" in m and query.opcode() != entry.opcode:
        return False
    if not query.question or not entry.question:
        return not ({"qtype", "qname", "subdomain", "question"} & m)
    q, want = query.question[0], entry.question[0]
    if ("qtype" in m or "question" in m or "all" in m) and q.rdtype != want.rdtype:
        return False
    if ("qname" in m or "question" in m or "all" in m) and q.name != want.name:
        return False
    if ("question" in m or "all" in m) and q.rdclass != want.rdclass:
        return False
    return not ("subdomain" in m and not q.name.is_subdomain(want.name))


def _address_matches(rng: Range, server: ServerAddress) -> bool:
    if not rng.addresses:
        return True
    for addr in rng.addresses:
        host, _, port = addr.partition("@")
        if host == server.host and (not port or int(port) == server.port):
            return True
    return False


@dataclass(slots=True)
class SentQuery:
    """One query the resolver sent upstream, and what the script did with it."""

    step: int
    server: ServerAddress
    request: dns.message.Message
    tcp: bool
    disposition: str  # "answered", "unmatched", "timeout", "pending", "malformed",
    # "not ours" (the scripted reply's question is not the query's)
    entry_line: int | None = None


@dataclass(slots=True)
class _Pending:
    sent: SentQuery
    future: asyncio.Future[UpstreamResult]


@dataclass(slots=True)
class ScriptedTransport:
    """core.ports.Transport answering from the scenario's RANGE blocks."""

    scenario: Scenario
    step: int = 0  # the step number the RANGEs are matched against (set by the runner)
    hold_unmatched: bool = False  # Unbound REPLY/TIMEOUT/ERROR scenarios
    sent: list[SentQuery] = field(default_factory=list)
    pending: list[_Pending] = field(default_factory=list)
    unmatched: int = 0
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    # Deckard's REPLY steps: one-shot answers (step number, entry), used in order when
    # no RANGE is eligible, by a query made at or before that step, each at most once.
    one_shot: list[tuple[int, Entry]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.scenario.dialect is Dialect.DECKARD:
            self.one_shot = [(s.number, s.entries[0]) for s in self.scenario.steps
                             if s.kind == "REPLY" and s.entries]

    def find_entry(self, server: ServerAddress, request: dns.message.Message,
                   tcp: bool) -> Entry | None:
        if self.scenario.dialect is Dialect.DECKARD:
            return self._deckard_entry(server, request, tcp)
        for rng in self.scenario.ranges:
            if not rng.active(self.step) or not _address_matches(rng, server):
                continue
            for entry in rng.entries:
                if query_matches(entry, request, tcp):
                    return entry
        return None

    def _deckard_entry(self, server: ServerAddress, request: dns.message.Message,
                       tcp: bool) -> Entry | None:
        """Deckard's harness (pydnstest Scenario.reply): an address no RANGE names may
        be answered by any block; only the first eligible block is consulted; with no
        eligible block, the first REPLY step not yet passed whose entry matches answers,
        once."""
        known = any(_address_matches(rng, server) for rng in self.scenario.ranges
                    if rng.addresses)
        for rng in self.scenario.ranges:
            if not rng.active(self.step) or (known and not _address_matches(rng, server)):
                continue
            for entry in rng.entries:
                if query_matches(entry, request, tcp):
                    return entry
            return None
        for i, (number, entry) in enumerate(self.one_shot):
            if number >= self.step and query_matches(entry, request, tcp):
                del self.one_shot[i]
                return entry
        return None

    def reply_for(self, entry: Entry, server: ServerAddress, request: dns.message.Message,
                  tcp: bool) -> UpstreamResult:
        if entry.hex_answer is not None:
            wire = bytearray(entry.hex_answer)
            if "copy_id" in entry.adjust and len(wire) >= 2:
                wire[0:2] = request.id.to_bytes(2, "big")
            return _from_wire(server, bytes(wire), tcp)
        msg = entry_to_message(entry, self.scenario.dialect, request)
        try:
            wire_msg = msg.to_wire()
        except dns.exception.DNSException:
            return UpstreamResult(server, None, UpstreamError.MALFORMED, tcp=tcp)
        # Round-trip through the wire, as a real server's answer would be.
        return _from_wire(server, wire_msg, tcp)

    async def query(self, server: ServerAddress, request: dns.message.Message, *,
                    tcp: bool = False, timeout: float = 1.5) -> UpstreamResult:
        entry = self.find_entry(server, request, tcp)
        if entry is not None and "do_not_answer" in entry.adjust:
            self._record(server, request, tcp, "timeout", entry.line)
            return UpstreamResult(server, None, UpstreamError.TIMEOUT, rtt=timeout, tcp=tcp)
        if entry is not None:
            result = self.reply_for(entry, server, request, tcp)
            if result.response is not None and not question_matches(result.response, request):
                # Not an answer to this question: the network transport waits on for
                # one over UDP (a timeout here) and calls it malformed over TCP.
                self._record(server, request, tcp, "not ours", entry.line)
                return UpstreamResult(server, None, UpstreamError.MALFORMED if tcp
                                      else UpstreamError.TIMEOUT, rtt=timeout, tcp=tcp)
            self._record(server, request, tcp,
                         "answered" if result.ok else "malformed", entry.line)
            return result
        self.unmatched += 1
        if self.hold_unmatched:
            sent = self._record(server, request, tcp, "pending", None)
            future: asyncio.Future[UpstreamResult] = asyncio.get_running_loop().create_future()
            self.pending.append(_Pending(sent, future))
            return await future
        if self.scenario.dialect is Dialect.UNBOUND:
            # Unbound leaves an unmatched query unanswered: to the resolver, a timeout.
            self._record(server, request, tcp, "unmatched", None)
            return UpstreamResult(server, None, UpstreamError.TIMEOUT, rtt=timeout, tcp=tcp)
        # Deckard answers what its script does not cover with SERVFAIL.
        self._record(server, request, tcp, "unmatched", None)
        reply = dns.message.make_response(request)
        reply.set_rcode(dns.rcode.SERVFAIL)
        return _from_wire(server, reply.to_wire(), tcp)

    def _record(self, server: ServerAddress, request: dns.message.Message, tcp: bool,
                disposition: str, line: int | None) -> SentQuery:
        sent = SentQuery(self.step, server, request, tcp, disposition, line)
        self.sent.append(sent)
        self.counts[disposition] += 1
        return sent

    # The runner's side of Unbound's REPLY / TIMEOUT / ERROR steps.

    def answer_pending(self, entry: Entry) -> bool:
        """Answer the oldest held query the entry matches; False if there is none."""
        for p in self.pending:
            if not entry.match or query_matches(entry, p.sent.request, p.sent.tcp):
                self.pending.remove(p)
                p.sent.disposition = "answered"
                p.future.set_result(self.reply_for(entry, p.sent.server, p.sent.request,
                                                   p.sent.tcp))
                return True
        return False

    def fail_pending(self, error: UpstreamError) -> bool:
        """Time out (or fail) the oldest held query; False if there is none."""
        if not self.pending:
            return False
        p = self.pending.pop(0)
        p.sent.disposition = error.value
        p.future.set_result(UpstreamResult(p.sent.server, None, error, tcp=p.sent.tcp))
        return True

    def release_all(self) -> None:
        """Time out whatever is still held (end of scenario), so no task hangs."""
        while self.fail_pending(UpstreamError.TIMEOUT):
            pass


def _from_wire(server: ServerAddress, wire: bytes, tcp: bool) -> UpstreamResult:
    try:
        msg = parse_response(wire)  # as the real transport reads it
    except dns.exception.DNSException:
        return UpstreamResult(server, None, UpstreamError.MALFORMED, tcp=tcp)
    return UpstreamResult(server, msg, None, rtt=0.001, tcp=tcp)


__all__ = ["ScriptedTransport", "SentQuery", "entry_to_message", "query_matches",
           "records_to_rrsets"]
