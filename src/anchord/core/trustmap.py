"""The trust map: one structure, name -> trust state.

The closest entry at or above a name decides its trust (Knot Resolver's rule): a
positive anchor starts validation, a negative trust anchor (RFC 7646) or a configured
insecure zone stops it. A positive anchor strictly below an NTA resumes validation there;
an NTA at the same name as a positive anchor wins.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import dns.name
import dns.rdatatype
import dns.rrset

from anchord.core.outcome import Question


class TrustKind(enum.Enum):
    ANCHOR = "anchor"  # positive trust anchor (DS or DNSKEY records)
    NTA = "nta"  # negative trust anchor added at run time, with an end
    INSECURE = "insecure"  # permanent insecure zone from the config


@dataclass(frozen=True, slots=True)
class NegativeAnchor:
    zone: dns.name.Name
    reason: str
    added_at: float
    expires_at: float
    recheck: bool = True
    last_recheck_at: float | None = None
    last_recheck_result: str = ""
    # The last few questions clients asked under the NTA, oldest first: its recheck asks
    # them again. Kept with the NTA (not beside it) so that the state file, and with it a
    # restart, keeps what the recheck needs.
    questions: tuple[Question, ...] = ()


@dataclass(frozen=True, slots=True)
class TrustPoint:
    """What the trust map says about a name: where the deciding entry sits and what it is."""

    zone: dns.name.Name
    kind: TrustKind
    anchor: dns.rrset.RRset | None = None  # for ANCHOR: the DS or DNSKEY rrset
    nta: NegativeAnchor | None = None  # for NTA


class TrustMap:
    def __init__(self) -> None:
        self._anchors: dict[dns.name.Name, dns.rrset.RRset] = {}
        self._ntas: dict[dns.name.Name, NegativeAnchor] = {}
        self._insecure: set[dns.name.Name] = set()
        # Bumped on every change so caches can tell their trust decisions are out of date.
        self.generation = 0
        self._depths: list[int] = []  # label counts of the entries, deepest first
        self._depths_generation = -1

    # -- positive anchors --------------------------------------------------------------
    def add_anchor(self, rrset: dns.rrset.RRset) -> None:
        if rrset.rdtype not in (dns.rdatatype.DS, dns.rdatatype.DNSKEY):
            raise ValueError("a trust anchor is a DS or DNSKEY rrset")
        existing = self._anchors.get(rrset.name)
        if existing is not None and existing.rdtype == rrset.rdtype:
            merged = dns.rrset.RRset(rrset.name, rrset.rdclass, rrset.rdtype)
            merged.update(existing)
            merged.update(rrset)
            rrset = merged
        self._anchors[rrset.name] = rrset
        self.generation += 1

    def anchors(self) -> dict[dns.name.Name, dns.rrset.RRset]:
        return dict(self._anchors)

    # -- negative anchors ----------------------------------------------------------------
    def add_insecure(self, zone: dns.name.Name) -> None:
        self._insecure.add(zone)
        self.generation += 1

    def add_nta(self, nta: NegativeAnchor) -> None:
        self._ntas[nta.zone] = nta
        self.generation += 1

    def remove_nta(self, zone: dns.name.Name) -> NegativeAnchor | None:
        removed = self._ntas.pop(zone, None)
        if removed is not None:
            self.generation += 1
        return removed

    def update_nta(self, nta: NegativeAnchor) -> None:
        """Replace an NTA's bookkeeping (recheck results) without a trust change."""
        if nta.zone in self._ntas:
            self._ntas[nta.zone] = nta

    def nta(self, zone: dns.name.Name) -> NegativeAnchor | None:
        return self._ntas.get(zone)

    def ntas(self) -> list[NegativeAnchor]:
        return sorted(self._ntas.values(), key=lambda n: n.zone)

    def expire_ntas(self, now: float) -> list[NegativeAnchor]:
        """Drop NTAs whose end has come; the caller logs each one."""
        gone = [n for n in self._ntas.values() if n.expires_at <= now]
        for n in gone:
            del self._ntas[n.zone]
        if gone:
            self.generation += 1
        return gone

    def without_negative(self) -> TrustMap:
        """The same positive anchors and static insecure zones, no NTAs: what an NTA
        recheck validates against (RFC 7646 section 4)."""
        copy = TrustMap()
        copy._anchors = dict(self._anchors)
        copy._insecure = set(self._insecure)
        return copy

    # -- lookup ----------------------------------------------------------------------------
    def closest(self, name: dns.name.Name, now: float | None = None) -> TrustPoint | None:
        """The entry at or above `name` that decides its trust, or None (no anchor above)."""
        # Asked several times per name resolved: rather than making every parent name
        # (each a new dns.name.Name), only the depths that hold an entry are looked at,
        # deepest first; at each, an NTA beats an insecure zone beats an anchor.
        if self._depths_generation != self.generation:
            self._depths = sorted({len(z) for z in (*self._anchors, *self._ntas,
                                                     *self._insecure)}, reverse=True)
            self._depths_generation = self.generation
        labels = len(name)
        for depth in self._depths:
            if depth > labels:
                continue
            current = name if depth == labels else dns.name.Name(name.labels[labels - depth:])
            nta = self._ntas.get(current)
            if nta is not None and (now is None or nta.expires_at > now):
                return TrustPoint(current, TrustKind.NTA, nta=nta)
            if current in self._insecure:
                return TrustPoint(current, TrustKind.INSECURE)
            anchor = self._anchors.get(current)
            if anchor is not None:
                return TrustPoint(current, TrustKind.ANCHOR, anchor=anchor)
        return None

    def negative_at_or_above(
        self, name: dns.name.Name, now: float | None = None
    ) -> TrustPoint | None:
        point = self.closest(name, now)
        if point is not None and point.kind is not TrustKind.ANCHOR:
            return point
        return None
