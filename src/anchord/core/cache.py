"""Caches of the resolution core: whole outcomes, validated zone keys, delegations,
server round-trip times, and resolution failures (RFC 9520).

Entries never expire by deletion: an expired answer stays as a stale candidate until
its stale window closes (RFC 8767), and is only dropped by the size bound or an
explicit flush. Every entry keeps the whole Outcome, so a cached answer carries the
same security state and EDE as the fresh one did.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Generic, TypeVar

import dns.name
import dns.rdata
import dns.rdatatype
import dns.rrset

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


@dataclass(frozen=True, slots=True)
class AnswerEntry:
    outcome: Outcome
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


def aged_outcome(entry: AnswerEntry, now: float, original: bool = False) -> Outcome:
    """The cached outcome with TTLs brought down to what remains (kept as received
    with `original`: Unbound's serve-original-ttl)."""
    elapsed = 0 if original else int(now - entry.stored_at)
    o = entry.outcome
    return replace(
        o,
        answer=_rrsets_aged(o.answer, elapsed, None),
        authority=_rrsets_aged(o.authority, elapsed, None),
        additional=_rrsets_aged(o.additional, elapsed, None),
    )


def stale_outcome(entry: AnswerEntry, stale_ttl: int, *reasons: Ede,
                  original: bool = False) -> Outcome:
    """The cached outcome served stale: TTL min(stale_ttl, original), EDE 3 or 19 first;
    with `original` the records keep the TTLs they arrived with."""
    o = entry.outcome
    ttl: int | None = max(1, min(stale_ttl, entry.ttl)) if entry.ttl > 0 else stale_ttl
    if original:
        ttl = None
    stale_code = (
        EdeCode.STALE_NXDOMAIN_ANSWER if o.rcode == 3 else EdeCode.STALE_ANSWER
    )
    stale_ede = Ede(stale_code, f"stale answer for {o.question}: its {int(entry.ttl)} s TTL "
                                "ran out and no fresh answer could be had")
    # RFC 8767 answers say first that they are stale; why the refresh failed follows.
    return replace(
        o,
        answer=_rrsets_aged(o.answer, 0, ttl),
        authority=_rrsets_aged(o.authority, 0, ttl),
        additional=_rrsets_aged(o.additional, 0, ttl),
        freshness=Freshness.STALE,
        edes=(stale_ede,) + order_edes(tuple(e for e in reasons if e.code != stale_code)),
    )


# (owner labels, class, type, covers, TTL, each rdata's wire form): equal keys are the
# same RRset down to the case of every name, so one object can stand for both.
_RRsetKey = tuple[tuple[bytes, ...], int, int, int, int, tuple[bytes, ...]]
# (class, type, covers, each rdata's wire form): the records of an RRset, owner aside.
_RdataKey = tuple[int, int, int, tuple[bytes, ...]]


def _wires(rrset: dns.rrset.RRset) -> tuple[bytes, ...]:
    return tuple(rd.to_wire() for rd in rrset)


class RecordSharing:
    """Lets cached outcomes share the records they have in common, to save memory.

    Many answers carry the same records: every NXDOMAIN or NODATA of a zone the same SOA
    and often the same NSEC/NSEC3 proof; every expansion of a wildcard the same proof
    and, under its own owner name, the same rdata and RRSIG. dnspython gives each parsed
    message its own copies (an RRset with its dict of rdatas costs about 300 bytes before
    the records themselves). Outcomes never change their RRsets (aging and capping copy
    them first), so equal ones may be one object.

    Only the authority section is shared whole (proofs and SOAs repeat across names),
    and the answer's rdatas only under a wildcard-expanded owner (the RRSIG's labels say
    so): elsewhere answers are unique, and remembering them would cost more than it
    saves. Bounded: past `limit` the least recently used are forgotten (entries that
    share them keep them).
    """

    def __init__(self, limit: int = 10_000) -> None:
        self._rrsets: BoundedMap[_RRsetKey, dns.rrset.RRset] = BoundedMap(limit)
        self._rdatas: BoundedMap[_RdataKey, dict[dns.rdata.Rdata, None]] = BoundedMap(limit)

    def outcome(self, o: Outcome) -> Outcome:
        """`o` with shared records where it has some in common with earlier outcomes."""
        if not o.answer and not o.authority:
            return o
        qname = o.question.qname
        expanded = {
            r.name for r in o.answer if r.rdtype == dns.rdatatype.RRSIG
            and any(sig.labels < _owner_labels(r.name) for sig in r)
        }
        answer = tuple(self._answer_rrset(r, qname, r.name in expanded) for r in o.answer)
        authority = tuple(self._whole(r) for r in o.authority)
        return replace(o, answer=answer, authority=authority)

    def _answer_rrset(self, rrset: dns.rrset.RRset, qname: dns.name.Name,
                      expanded: bool) -> dns.rrset.RRset:
        # The question's name object serves as the owner when it is the same to the
        # byte (case included): one Name instead of one per RRset.
        owner = qname if rrset.name.labels == qname.labels else rrset.name
        if not expanded and owner is rrset.name:
            return rrset
        items = rrset.items
        if expanded:
            key = (rrset.rdclass, rrset.rdtype, rrset.covers, _wires(rrset))
            shared = self._rdatas.get(key)
            if shared is None:
                shared = items.copy()  # our own dict: the message's RRset stays its own
                self._rdatas.put(key, shared)
            items = shared
        out = dns.rrset.RRset(owner, rrset.rdclass, rrset.rdtype, rrset.covers)
        out.ttl = rrset.ttl
        out.items = items
        return out

    def _whole(self, rrset: dns.rrset.RRset) -> dns.rrset.RRset:
        key = (rrset.name.labels, rrset.rdclass, rrset.rdtype, rrset.covers, rrset.ttl,
               _wires(rrset))
        shared = self._rrsets.get(key)
        if shared is None:
            self._rrsets.put(key, rrset)
            return rrset
        return shared

    def clear(self) -> None:
        self._rrsets.clear()
        self._rdatas.clear()


def _owner_labels(name: dns.name.Name) -> int:
    """RFC 4034 3.1.3 label count (as validator.owner_labels; kept here so the cache
    does not import the validator)."""
    count = len(name) - 1 if name.is_absolute() else len(name)
    return count - 1 if name.is_wild() else count


class AnswerCache:
    def __init__(self, max_entries: int) -> None:
        self._entries: BoundedMap[CacheKey, AnswerEntry] = BoundedMap(max_entries)
        self.sharing = RecordSharing(min(max_entries, 10_000))

    def get(self, question: Question) -> AnswerEntry | None:
        return self._entries.get(cache_key(question))

    def put(self, question: Question, entry: AnswerEntry) -> None:
        self._entries.put(cache_key(question), entry)

    def drop(self, question: Question) -> None:
        self._entries.pop(cache_key(question))

    def drop_below(self, zone: dns.name.Name, only_failures: bool = False) -> int:
        """Forget entries at or below `zone` (an NTA added, a flush). Returns how many."""
        n = 0
        for key, entry in self._entries.items():
            if key[0].is_subdomain(zone):
                if only_failures and entry.outcome.security is not Security.BOGUS \
                        and not entry.outcome.is_failure:
                    continue
                self._entries.pop(key)
                n += 1
        return n

    def clear(self) -> None:
        self._entries.clear()
        self.sharing.clear()

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
