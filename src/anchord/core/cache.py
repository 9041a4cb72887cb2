"""Caches of the resolution core: whole outcomes, validated zone keys, delegations,
server round-trip times, and resolution failures (RFC 9520).

Entries never expire by deletion: an expired answer stays as a stale candidate until
its stale window closes (RFC 8767), and is only dropped by the size bound or an
explicit flush. Every entry keeps the whole Outcome, so a cached answer carries the
same security state and EDE as the fresh one did; it keeps it packed (PackedOutcome:
the records as wire bytes), so that a million cached names fit in well under 1 KiB each.
"""

from __future__ import annotations

import enum
import struct
import weakref
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Generic, TypeVar

import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.wire

from anchord.core.outcome import (
    Ede,
    EdeCode,
    Freshness,
    Outcome,
    Question,
    Security,
    order_edes,
)
from anchord.core.ports import ServerAddress

K = TypeVar("K")
V = TypeVar("V")


class BoundedMap(Generic[K, V]):
    """A dict with least-recently-used eviction past `limit` entries."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._data: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        value = self._data.get(key)
        if value is not None:
            self._data.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self._data[key] = value
        self._data.move_to_end(key)
        while len(self._data) > self.limit:
            self._data.popitem(last=False)

    def pop(self, key: K) -> V | None:
        return self._data.pop(key, None)

    def keys(self) -> list[K]:
        return list(self._data.keys())

    def items(self) -> Iterator[tuple[K, V]]:
        return iter(list(self._data.items()))

    def clear(self) -> None:
        self._data.clear()

    def __len__(self) -> int:
        return len(self._data)


class EntryState(enum.Enum):
    FRESH = "fresh"
    STALE = "stale"
    DEAD = "dead"


CacheKey = tuple[dns.name.Name, int, int]


def cache_key(question: Question) -> CacheKey:
    # dns.name.Name compares and hashes case-insensitively already.
    return (question.qname, int(question.qtype), int(question.qclass))


# The question (owner name in its own case, type, class), then per section the number of
# RRsets, then each RRset: its owner (or _SAME_OWNER), type, class, covers, TTL, number of
# records, and each record's rdata as (length, wire form). Nothing is compressed, so every
# name comes back in the case it was stored in.
_QUESTION = struct.Struct("!HH")
_SECTIONS = struct.Struct("!HHH")
_RRSET = struct.Struct("!HHHIH")
_RDLEN = struct.Struct("!H")
# Instead of the owner's wire form: "the owner is the question's name, byte for byte".
# No name's wire form starts with it (label lengths stop at 63, pointers are not used).
_SAME_OWNER = b"\xff"


def _wire(thing: dns.name.Name | dns.rdata.Rdata) -> bytes:
    wire = thing.to_wire()
    assert wire is not None  # without a file to write to, to_wire returns the bytes
    return wire


def _pack(o: Outcome) -> bytes:
    qname = o.question.qname
    out = [_wire(qname), _QUESTION.pack(int(o.question.qtype), int(o.question.qclass)),
           _SECTIONS.pack(len(o.answer), len(o.authority), len(o.additional))]
    for rrset in o.answer + o.authority + o.additional:
        owner = rrset.name
        out.append(_SAME_OWNER if owner.labels == qname.labels else _wire(owner))
        out.append(_RRSET.pack(int(rrset.rdtype), int(rrset.rdclass), int(rrset.covers),
                               rrset.ttl, len(rrset)))
        for rd in rrset:
            wire = _wire(rd)
            out.append(_RDLEN.pack(len(wire)))
            out.append(wire)
    return b"".join(out)


# int -> dnspython's enum member, and (class, type) -> rdata class: unpacking looks these
# up for every record, and dnspython's own make() and get_rdata_class() check more.
_TYPES: dict[int, dns.rdatatype.RdataType] = {}
_CLASSES: dict[int, dns.rdataclass.RdataClass] = {}
_RDATA_CLASSES: dict[tuple[int, int], type[dns.rdata.Rdata]] = {}


def _rdtype(value: int) -> dns.rdatatype.RdataType:
    found = _TYPES.get(value)
    if found is None:
        found = _TYPES[value] = dns.rdatatype.RdataType.make(value)
    return found


def _rdclass(value: int) -> dns.rdataclass.RdataClass:
    found = _CLASSES.get(value)
    if found is None:
        found = _CLASSES[value] = dns.rdataclass.RdataClass.make(value)
    return found


def _rdata_class(rdclass: int, rdtype: int) -> type[dns.rdata.Rdata]:
    found = _RDATA_CLASSES.get((rdclass, rdtype))
    if found is None:
        found = _RDATA_CLASSES[(rdclass, rdtype)] = dns.rdata.get_rdata_class(
            _rdclass(rdclass), _rdtype(rdtype))
    return found


class PackedOutcome:
    """An Outcome as a cache entry keeps it: the records as wire bytes, rebuilt on use.

    dnspython objects cost about 2 KB for one signed RRset (a Name, an RRset with its dict
    of rdatas, an RRSIG with its signer Name and integers); the same RRset as wire bytes
    costs a tenth of that, so a million cached names fit in well under 1 KiB each
    (bench/memory.py). unpack() gives new dnspython objects, equal to the stored ones,
    names in the case they arrived in, records in their order.

    `outcome` is, in this order: the Outcome the entry was made from, while it is alive
    (the resolver returns it to whoever asked first; the fast path tells a just-resolved
    answer from a cached one by identity; only a weak reference is kept, dropped when it
    dies); the unpacked form kept while the entry is among the answer cache's recently
    used ones (`hot`, see AnswerCache.outcome); else a new unpacked one.
    """

    __slots__ = ("wire", "rcode", "security", "edes", "freshness", "_first", "hot")

    def __init__(self, o: Outcome) -> None:
        self.wire = _pack(o)
        self.rcode = o.rcode
        self.security = o.security
        self.edes = o.edes
        self.freshness = o.freshness
        self._first: weakref.ref[Outcome] | None = weakref.ref(o, self._gone)
        self.hot: Outcome | None = None

    def _gone(self, _ref: object) -> None:
        self._first = None  # the weak reference itself goes too (80 bytes per entry)

    def current(self) -> Outcome | None:
        """The outcome as objects if there is one already (first or hot), else None."""
        first = self._first() if self._first is not None else None
        return first if first is not None else self.hot

    @property
    def outcome(self) -> Outcome:
        current = self.current()
        return current if current is not None else self.unpack()

    def unpack(self) -> Outcome:
        """The stored outcome as new dnspython objects."""
        wire = self.wire
        parser = dns.wire.Parser(wire)
        qname = parser.get_name()
        qtype, qclass = parser.get_struct(_QUESTION.format)
        question = Question(qname, _rdtype(qtype), _rdclass(qclass))
        sections = []
        for count in parser.get_struct(_SECTIONS.format):
            rrsets = []
            for _ in range(count):
                if wire[parser.current] == 0xFF:  # _SAME_OWNER
                    parser.current += 1
                    owner = qname
                else:
                    owner = parser.get_name()
                rdtype, rdclass, covers, ttl, n = parser.get_struct(_RRSET.format)
                rdtype_e, rdclass_e = _rdtype(rdtype), _rdclass(rdclass)
                rrset = dns.rrset.RRset(owner, rdclass_e, rdtype_e, _rdtype(covers))
                rrset.ttl = ttl
                cls = _rdata_class(rdclass, rdtype)
                items: dict[dns.rdata.Rdata, None] = {}
                for _ in range(n):
                    with parser.restrict_to(parser.get_uint16()):
                        items[cls.from_wire_parser(rdclass_e, rdtype_e, parser, None)] = None
                rrset.items = items  # as stored: a set already, in its order
                rrsets.append(rrset)
            sections.append(tuple(rrsets))
        answer, authority, additional = sections
        return Outcome(question, self.rcode, answer, authority, additional, self.security,
                       self.edes, self.freshness)


@dataclass(frozen=True, slots=True)
class AnswerEntry:
    packed: PackedOutcome
    stored_at: float
    ttl: int  # seconds the answer is fresh
    stale_until: float  # end of the RFC 8767 window; == stored_at + ttl when no stale use
    # Data fetched with CD and never validated, or data that failed validation, may not
    # be served stale (RFC 8767 section 5 spirit; issue: never a stale candidate).
    stale_ok: bool
    # RFC 8767 failure recheck: after a failed refresh, no new upstream try before
    # this time; the stale copy is answered meanwhile, with the failure's reasons.
    refresh_after: float = 0.0
    refresh_failure: tuple[Ede, ...] = ()

    @staticmethod
    def of(outcome: Outcome, stored_at: float, ttl: int, stale_until: float,
           stale_ok: bool) -> AnswerEntry:
        return AnswerEntry(PackedOutcome(outcome), stored_at, ttl, stale_until, stale_ok)

    @property
    def outcome(self) -> Outcome:
        """The cached outcome with its TTLs as stored (see PackedOutcome.outcome)."""
        return self.packed.outcome

    @property
    def expires_at(self) -> float:
        return self.stored_at + self.ttl

    def state(self, now: float) -> EntryState:
        if now < self.expires_at:
            return EntryState.FRESH
        if self.stale_ok and now < self.stale_until:
            return EntryState.STALE
        return EntryState.DEAD


def _rrsets_aged(rrsets: tuple[dns.rrset.RRset, ...], elapsed: int, fixed: int | None
                 ) -> tuple[dns.rrset.RRset, ...]:
    out = []
    for rrset in rrsets:
        copy = rrset.copy()
        copy.ttl = fixed if fixed is not None else max(0, rrset.ttl - elapsed)
        out.append(copy)
    return tuple(out)


def aged_outcome(o: Outcome, entry: AnswerEntry, now: float, original: bool = False
                 ) -> Outcome:
    """The cached outcome `o` (entry's, as objects) with TTLs brought down to what
    remains (kept as received with `original`: Unbound's serve-original-ttl)."""
    elapsed = 0 if original else int(now - entry.stored_at)
    return replace(
        o,
        answer=_rrsets_aged(o.answer, elapsed, None),
        authority=_rrsets_aged(o.authority, elapsed, None),
        additional=_rrsets_aged(o.additional, elapsed, None),
    )


def stale_outcome(o: Outcome, entry: AnswerEntry, stale_ttl: int, *reasons: Ede,
                  original: bool = False,
                  why: str = "no fresh answer could be had") -> Outcome:
    """The cached outcome `o` (entry's, as objects) served stale: TTL min(stale_ttl,
    original), EDE 3 or 19 first; with `original` the records keep the TTLs they
    arrived with."""
    ttl: int | None = max(1, min(stale_ttl, entry.ttl)) if entry.ttl > 0 else stale_ttl
    if original:
        ttl = None
    stale_code = (
        EdeCode.STALE_NXDOMAIN_ANSWER if o.rcode == 3 else EdeCode.STALE_ANSWER
    )
    stale_ede = Ede(stale_code, f"stale answer for {o.question}: its {int(entry.ttl)} s TTL "
                                f"ran out and {why}")
    # RFC 8767 answers say first that they are stale; why the refresh failed follows.
    return replace(
        o,
        answer=_rrsets_aged(o.answer, 0, ttl),
        authority=_rrsets_aged(o.authority, 0, ttl),
        additional=_rrsets_aged(o.additional, 0, ttl),
        freshness=Freshness.STALE,
        edes=(stale_ede,) + order_edes(tuple(e for e in reasons if e.code != stale_code)),
    )


def answer_key(question: Question) -> bytes:
    """The answer cache's key: the name's wire form in lower case, type and class.

    Bytes (about 60 for a typical name) rather than (Name, type, class) (about 300 with
    the Name's labels): the key is a third of a small entry's cost at a million names.
    """
    return question.qname.to_digestable() + _QUESTION.pack(
        int(question.qtype), int(question.qclass))


def _key_below(key: bytes, zone_wire: bytes) -> bool:
    """Whether the name in an answer_key is `zone` or below it (zone_wire: its
    answer_key form of the name, lower case)."""
    name = key[:-_QUESTION.size]
    if not name.endswith(zone_wire):
        return False
    at = 0
    while at < len(name):
        if name[at:] == zone_wire:
            return True
        at += name[at] + 1
    return False


class AnswerCache:
    def __init__(self, max_entries: int, hot_limit: int = 10_000) -> None:
        self._entries: BoundedMap[bytes, AnswerEntry] = BoundedMap(max_entries)
        # Entries answered from lately keep their outcome unpacked: unpacking costs ten
        # to forty times what aging a copy does, and a name that was asked for again
        # tends to be asked for again. Bounded: at most hot_limit outcomes as objects.
        self.hot_limit = min(max_entries, hot_limit)
        self._hot: OrderedDict[PackedOutcome, None] = OrderedDict()

    def outcome(self, entry: AnswerEntry) -> Outcome:
        """The entry's outcome as objects, kept unpacked while the entry is among the
        `hot_limit` most recently used."""
        packed = entry.packed
        current = packed.current()
        if current is not None:
            if packed.hot is not None:
                self._hot.move_to_end(packed)
            return current
        packed.hot = current = packed.unpack()
        self._hot[packed] = None
        if len(self._hot) > self.hot_limit:
            self._hot.popitem(last=False)[0].hot = None
        return current

    def get(self, question: Question) -> AnswerEntry | None:
        return self._entries.get(answer_key(question))

    def put(self, question: Question, entry: AnswerEntry) -> None:
        self._entries.put(answer_key(question), entry)

    def drop(self, question: Question) -> None:
        self._forget(self._entries.pop(answer_key(question)))

    def _forget(self, entry: AnswerEntry | None) -> None:
        if entry is not None and entry.packed.hot is not None:
            entry.packed.hot = None
            self._hot.pop(entry.packed, None)

    def drop_below(self, zone: dns.name.Name, only_failures: bool = False) -> int:
        """Forget entries at or below `zone` (an NTA added, a flush). Returns how many."""
        zone_wire = zone.to_digestable()
        n = 0
        for key, entry in self._entries.items():
            if _key_below(key, zone_wire):
                packed = entry.packed
                if only_failures and packed.security is not Security.BOGUS \
                        and packed.rcode != dns.rcode.SERVFAIL:
                    continue
                self._forget(self._entries.pop(key))
                n += 1
        return n

    def clear(self) -> None:
        self._entries.clear()
        self._cool()

    def _cool(self) -> None:
        for packed in self._hot:
            packed.hot = None
        self._hot.clear()

    def __len__(self) -> int:
        return len(self._entries)


@dataclass(frozen=True, slots=True)
class FailureEntry:
    outcome: Outcome
    until: float
    failures: int  # consecutive failures, for the RFC 9520 back-off


class FailureCache:
    """Resolution failures remembered for a short, growing time (RFC 9520)."""

    def __init__(self, min_ttl: int, max_ttl: int, limit: int = 100_000) -> None:
        self.min_ttl = min_ttl
        self.max_ttl = max_ttl
        self._entries: BoundedMap[CacheKey, FailureEntry] = BoundedMap(limit)

    def get(self, question: Question, now: float) -> FailureEntry | None:
        entry = self._entries.get(cache_key(question))
        if entry is not None and now < entry.until:
            return entry
        return None

    def record(self, question: Question, outcome: Outcome, now: float) -> FailureEntry:
        previous = self._entries.get(cache_key(question))
        failures = previous.failures + 1 if previous is not None else 1
        ttl = min(self.max_ttl, self.min_ttl * (2 ** min(failures - 1, 16)))
        entry = FailureEntry(outcome, now + ttl, failures)
        self._entries.put(cache_key(question), entry)
        return entry

    def forget(self, question: Question) -> None:
        self._entries.pop(cache_key(question))

    def drop_below(self, zone: dns.name.Name) -> int:
        n = 0
        for key, _ in self._entries.items():
            if key[0].is_subdomain(zone):
                self._entries.pop(key)
                n += 1
        return n

    def clear(self) -> None:
        self._entries.clear()


@dataclass(frozen=True, slots=True)
class ZoneKeys:
    """The validator's conclusion about a zone's keys: the trust state of data it signs."""

    zone: dns.name.Name
    security: Security
    dnskeys: dns.rrset.RRset | None = None  # set when SECURE
    edes: tuple[Ede, ...] = ()
    expires_at: float = 0.0
    # The zone whose keys actually apply when `zone` turned out not to be a zone cut.
    apex: dns.name.Name | None = None
    # Bogus conclusions about this zone in a row: each is remembered twice as long.
    bogus_streak: int = 0


class KeyCache:
    def __init__(self, limit: int = 200_000) -> None:
        self._entries: BoundedMap[dns.name.Name, ZoneKeys] = BoundedMap(limit)

    def get(self, zone: dns.name.Name, now: float) -> ZoneKeys | None:
        keys = self._entries.get(zone)
        if keys is not None and now < keys.expires_at:
            return keys
        return None

    def last(self, zone: dns.name.Name) -> ZoneKeys | None:
        """The latest conclusion about `zone`, even one that has run out."""
        return self._entries.get(zone)

    def put(self, keys: ZoneKeys) -> None:
        self._entries.put(keys.zone, keys)

    def drop_below(self, zone: dns.name.Name) -> None:
        for key, _ in self._entries.items():
            if key.is_subdomain(zone):
                self._entries.pop(key)

    def clear(self) -> None:
        self._entries.clear()


@dataclass(frozen=True, slots=True)
class Delegation:
    """A zone cut: the zone's name servers and the addresses known for them."""

    zone: dns.name.Name
    ns_names: tuple[dns.name.Name, ...]
    addresses: tuple[tuple[dns.name.Name, ServerAddress], ...]
    expires_at: float
    # Stub and forward zones: configured, never expire, forward ones are asked with RD.
    configured: bool = False
    forward: bool = False


class DelegationCache:
    def __init__(self, limit: int = 200_000) -> None:
        self._entries: BoundedMap[dns.name.Name, Delegation] = BoundedMap(limit)
        self._configured: dict[dns.name.Name, Delegation] = {}

    def add_configured(self, delegation: Delegation) -> None:
        self._configured[delegation.zone] = delegation

    def put(self, delegation: Delegation) -> None:
        if delegation.zone in self._configured:
            return  # configured stub/forward zones are not overridden by referrals
        self._entries.put(delegation.zone, delegation)

    def closest(self, name: dns.name.Name, now: float,
                below_of: dns.name.Name | None = None) -> Delegation | None:
        """The deepest known delegation at or above `name` (strictly above `below_of`'s
        own cut when asking for a DS, which lives on the parent side)."""
        current = name
        while True:
            if below_of is None or current != below_of:
                configured = self._configured.get(current)
                if configured is not None:
                    return configured
                d = self._entries.get(current)
                if d is not None and now < d.expires_at:
                    return d
            if len(current) <= 1:
                return None
            current = current.parent()

    def clear(self) -> None:
        self._entries.clear()


class InfraCache:
    """Smoothed round-trip time per server, for choosing among a zone's servers."""

    UNKNOWN_RTT = 0.376  # untried servers look moderately fast so they get a try
    TIMEOUT_PENALTY = 2.0

    def __init__(self, limit: int = 100_000) -> None:
        self._srtt: BoundedMap[ServerAddress, float] = BoundedMap(limit)

    def srtt(self, server: ServerAddress) -> float:
        value = self._srtt.get(server)
        return self.UNKNOWN_RTT if value is None else value

    def observe(self, server: ServerAddress, rtt: float) -> None:
        old = self._srtt.get(server)
        self._srtt.put(server, rtt if old is None else 0.7 * old + 0.3 * rtt)

    def timed_out(self, server: ServerAddress) -> None:
        old = self.srtt(server)
        self._srtt.put(server, min(120.0, old * 2 + self.TIMEOUT_PENALTY))


@dataclass(frozen=True, slots=True)
class KeptRRset:
    """A validated RRset with its RRSIGs, as it arrived, and until when it may be used."""

    rrset: dns.rrset.RRset
    sigs: dns.rrset.RRset | None
    stored_at: float
    expires_at: float

    def aged(self, now: float) -> tuple[dns.rrset.RRset, ...]:
        elapsed = int(now - self.stored_at)
        out = []
        for r in (self.rrset, self.sigs):
            if r is None:
                continue
            copy = r.copy()
            copy.ttl = max(0, r.ttl - elapsed)
            out.append(copy)
        return tuple(out)


class DenialStore:
    """Validated NSEC/NSEC3 records and SOAs per signed zone (RFC 8198 aggressive use).

    Only records whose signatures verified with the zone's secure keys are put here; the
    resolver proves new denials from them without asking upstream, until they expire
    (their TTL, capped by the SOA's negative TTL when the SOA came with them, RFC 9077).
    """

    def __init__(self, limit: int = 10_000, per_zone: int = 2_000) -> None:
        self.per_zone = per_zone
        self._zones: BoundedMap[dns.name.Name,
                                dict[tuple[dns.name.Name, int], KeptRRset]] = BoundedMap(limit)
        self._soas: BoundedMap[dns.name.Name, KeptRRset] = BoundedMap(limit)
        # Validated wildcard RRsets (owner `*.<encloser>`), by (owner, type).
        self._wildcards: BoundedMap[tuple[dns.name.Name, int], KeptRRset] = \
            BoundedMap(limit)

    def add(self, zone: dns.name.Name, kept: KeptRRset) -> None:
        records = self._zones.get(zone)
        if records is None:
            records = {}
            self._zones.put(zone, records)
        if len(records) >= self.per_zone:
            now = kept.stored_at
            for key in [k for k, v in records.items() if v.expires_at <= now]:
                del records[key]
            if len(records) >= self.per_zone:
                records.pop(next(iter(records)))
        records[(kept.rrset.name, int(kept.rrset.rdtype))] = kept

    def add_wildcard(self, kept: KeptRRset) -> None:
        self._wildcards.put((kept.rrset.name, int(kept.rrset.rdtype)), kept)

    def wildcard(self, owner: dns.name.Name, rdtype: int, now: float) -> KeptRRset | None:
        if len(self._wildcards) == 0:
            return None
        kept = self._wildcards.get((owner, int(rdtype)))
        return kept if kept is not None and now < kept.expires_at else None

    def add_soa(self, zone: dns.name.Name, kept: KeptRRset) -> None:
        self._soas.put(zone, kept)

    def soa(self, zone: dns.name.Name, now: float) -> KeptRRset | None:
        kept = self._soas.get(zone)
        return kept if kept is not None and now < kept.expires_at else None

    def zone_for(self, name: dns.name.Name) -> dns.name.Name | None:
        """The deepest zone at or above `name` with records kept."""
        if len(self._zones) == 0:
            return None
        current = name
        while True:
            if self._zones.get(current):
                return current
            if len(current) <= 1:
                return None
            current = current.parent()

    def records(self, zone: dns.name.Name, now: float) -> list[KeptRRset]:
        records = self._zones.get(zone) or {}
        return [k for k in records.values() if now < k.expires_at]

    def drop_below(self, zone: dns.name.Name) -> None:
        for key in self._zones.keys():
            if key.is_subdomain(zone):
                self._zones.pop(key)
        for key in self._soas.keys():
            if key.is_subdomain(zone):
                self._soas.pop(key)
        for wkey in self._wildcards.keys():
            if wkey[0].is_subdomain(zone):
                self._wildcards.pop(wkey)

    def clear(self) -> None:
        self._zones.clear()
        self._soas.clear()
        self._wildcards.clear()
