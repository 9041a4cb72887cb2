"""RFC 8198 aggressive use of the validated cache, and DNAME synthesis from it.

Validated NSEC/NSEC3 records, SOAs and wildcard expansions are kept as they pass the
validator (keep_*); a later question that they prove does not exist (NXDOMAIN, NODATA)
or that a kept wildcard answers is then answered from here without asking upstream.
Validated DNAMEs are kept the same way and names below them answered by synthesis
(RFC 6672 3.2), as Unbound does. Only what a zone whose keys are known secure proved is
used; anything else goes upstream as usual.
"""

from __future__ import annotations

from dataclasses import replace

import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset

from anchord.control.config import Config
from anchord.core import denial
from anchord.core.cache import BoundedMap, DenialStore, KeptRRset, KeyCache
from anchord.core.iterator import Kind
from anchord.core.outcome import Question, Security, Verdict
from anchord.core.part import Part, expiry_cap, renamed
from anchord.core.ports import Clock
from anchord.core.trustmap import TrustKind, TrustMap
from anchord.core.validator import ValidatorPolicy


class AggressiveCache:
    """Kept validated proofs and DNAMEs, and the answers they make without upstream.

    Reads the Resolver's key cache (a proof is used only while its zone's keys are
    secure) and trust map; owns the kept records."""

    def __init__(self, config: Config, clock: Clock, trust: TrustMap, keys: KeyCache,
                 policy: ValidatorPolicy) -> None:
        self.config = config
        self.clock = clock
        self.trust = trust
        self.keys = keys
        self.policy = policy
        # Validated NSEC/NSEC3 records and SOAs, for RFC 8198 aggressive use.
        self.denials = DenialStore()
        # Validated DNAME RRsets (with their RRSIGs), by owner: names below are
        # answered by synthesis from here, as Unbound does (RFC 6672 3.2).
        self.dnames: BoundedMap[dns.name.Name, tuple[float, Part]] = BoundedMap(
            max(1000, config.cache.max_entries // 10))

    # -- DNAME synthesis from the cache -----------------------------------------------------
    def remember_dname(self, part: Part) -> None:
        dname = next((r for r in part.answer if r.rdtype == dns.rdatatype.DNAME), None)
        if dname is None:
            return
        kept = tuple(r for r in part.answer if r.name == dname.name and (
            r.rdtype == dns.rdatatype.DNAME or (r.rdtype == dns.rdatatype.RRSIG
                                                and r.covers == dns.rdatatype.DNAME)))
        self.dnames.put(dname.name, (self.clock.now(), replace(
            part, kind=Kind.DNAME, answer=kept, authority=(), target=None)))

    def dname_from_cache(self, q: Question) -> Part | None:
        """A cached validated DNAME above `q.qname`: its synthesised step, or None."""
        if len(self.dnames) == 0:
            return None
        now = self.clock.now()
        name = q.qname
        while len(name) > 1:
            name = name.parent()
            kept = self.dnames.get(name)
            if kept is None:
                continue
            stored_at, part = kept
            elapsed = int(now) - int(stored_at)
            ttl = min(r.ttl for r in part.answer)
            # A TTL-0 DNAME still serves within the second after it came (Unbound's
            # grace for TTL 0: the answer it arrived with may be re-synthesised).
            if elapsed >= ttl and not (ttl == 0 and elapsed <= 1):
                self.dnames.pop(name)
                return None
            answer = []
            for r in part.answer:
                copy = r.copy()
                copy.ttl = max(0, r.ttl - elapsed)
                answer.append(copy)
            dname = next(r for r in answer if r.rdtype == dns.rdatatype.DNAME)
            try:
                target = q.qname.relativize(name).derelativize(dname[0].target)
            except dns.name.NameTooLong:
                return None
            answer.append(dns.rrset.from_text_list(q.qname, dname.ttl, "IN", "CNAME",
                                                   [target.to_text()]))
            return replace(part, answer=tuple(answer), target=target)
        return None

    # -- denial synthesis from validated NSEC/NSEC3 (RFC 8198) ---------------------------------
    def denial_from_cache(self, q: Question) -> Part | None:
        """NXDOMAIN or NODATA for `q` proven from kept NSEC/NSEC3 records of a zone whose
        keys are (still) known secure, with the zone's kept SOA; None when not provable.

        Only secure proofs are used: an opt-out span or too many NSEC3 iterations proves
        nothing here, so the question goes upstream as usual.
        """
        if not (self.config.cache.aggressive_nsec and self.config.dnssec.enabled):
            return None
        now = self.clock.now()
        point = self.trust.closest(q.qname, now)
        if point is None or point.kind is not TrustKind.ANCHOR:
            return None
        # A DS record is the parent's: its denial comes from the zone above the name.
        start = q.qname.parent() if q.qtype == dns.rdatatype.DS and len(q.qname) > 1 \
            else q.qname
        zone = self.denials.zone_for(start)
        if zone is None or not zone.is_subdomain(point.zone):
            return None
        keys = self.keys.get(zone, now)
        if keys is None or keys.security is not Security.SECURE:
            return None
        kept = self.denials.records(zone, now)
        if not kept:
            return None

        def proves(records: list[KeptRRset]) -> Kind | None:
            nsecs = [k.rrset for k in records if k.rrset.rdtype == dns.rdatatype.NSEC]
            nsec3s = [k.rrset for k in records if k.rrset.rdtype == dns.rdatatype.NSEC3]
            if denial.prove_nxdomain(
                    q.qname, zone, nsecs, nsec3s, self.policy).is_secure:
                return Kind.NXDOMAIN
            if denial.prove_nodata(q.qname, q.qtype, zone, nsecs, nsec3s,
                                   self.policy).is_secure:
                return Kind.NODATA
            return None

        records = denial.relevant_records(q.qname, zone, kept, lambda k: k.rrset)
        soa = self.denials.soa(zone, now)
        kind = proves(records) if soa is not None else None
        if soa is None or kind is None:
            return self._wildcard_from_cache(q, zone, records, now)
        # The smallest set that still proves it, as the zone's server would have sent.
        for k in list(records):
            fewer = [r for r in records if r is not k]
            if proves(fewer) is kind:
                records = fewer
        authority: list[dns.rrset.RRset] = []
        for k in records:
            authority.extend(k.aged(now))
        authority.extend(soa.aged(now))
        rcode = dns.rcode.NXDOMAIN if kind is Kind.NXDOMAIN else dns.rcode.NOERROR
        return Part(kind, rcode, (), tuple(authority), Verdict.secure())

    def _wildcard_from_cache(self, q: Question, zone: dns.name.Name,
                             records: list[KeptRRset], now: float) -> Part | None:
        """An answer expanded from a kept validated wildcard, when kept NSEC/NSEC3
        records prove that the next closer name does not exist (RFC 8198 5.3)."""
        if len(q.qname) <= len(zone):
            return None
        encloser = q.qname.parent()
        while encloser.is_subdomain(zone):
            owner = dns.name.from_text("*", encloser)
            wild = self.denials.wildcard(owner, q.qtype, now)
            if wild is None and q.qtype != dns.rdatatype.CNAME:
                wild = self.denials.wildcard(owner, dns.rdatatype.CNAME, now)
            if wild is not None:
                return self._expand_kept(q, zone, encloser, wild, records, now)
            if encloser == zone:
                break
            encloser = encloser.parent()
        return None

    def _expand_kept(self, q: Question, zone: dns.name.Name, encloser: dns.name.Name,
                     wild: KeptRRset, records: list[KeptRRset], now: float) -> Part | None:
        next_closer = q.qname.split(len(encloser) + 1)[1]

        def allowed(kept: list[KeptRRset]) -> bool:
            nsecs = [k.rrset for k in kept if k.rrset.rdtype == dns.rdatatype.NSEC]
            nsec3s = [k.rrset for k in kept if k.rrset.rdtype == dns.rdatatype.NSEC3]
            # Neither qname nor anything between it and the encloser exists.
            return all(denial.prove_wildcard_answer(
                name, encloser, zone, nsecs, nsec3s, self.policy).is_secure
                for name in (q.qname, next_closer))

        if not allowed(records):
            return None
        used = list(records)
        for k in list(used):
            fewer = [r for r in used if r is not k]
            if allowed(fewer):
                used = fewer
        answer = tuple(renamed(r, q.qname) for r in wild.aged(now))
        authority = tuple(r for k in used for r in k.aged(now))
        is_cname = wild.rrset.rdtype == dns.rdatatype.CNAME and q.qtype != dns.rdatatype.CNAME
        return Part(Kind.CNAME if is_cname else Kind.ANSWER, dns.rcode.NOERROR, answer,
                    authority, Verdict.secure(), wild.rrset[0].target if is_cname else None)

    # -- keeping what validated ------------------------------------------------------------
    def keep_wildcard(self, rrset: dns.rrset.RRset, sigs: dns.rrset.RRset,
                       encloser: dns.name.Name, cap: int | None) -> None:
        """Keep a validated wildcard expansion as the wildcard's own RRset (RFC 8198 5.3):
        its RRSIGs do not name the owner, so they hold for every expansion."""
        if not self.config.cache.aggressive_nsec:
            return
        owner = dns.name.from_text("*", encloser)
        now = self.clock.now()
        ttl = min(int(rrset.ttl), *(() if cap is None else (cap,)))
        self.denials.add_wildcard(KeptRRset(renamed(rrset, owner), renamed(sigs, owner),
                                            now, now + ttl))

    def keep_denial(self, rrset: dns.rrset.RRset, sigs: dns.rrset.RRset | None,
                     authority: tuple[dns.rrset.RRset, ...], verdict: Verdict) -> None:
        """Keep a validated NSEC/NSEC3 RRset for aggressive use (RFC 8198), its lifetime
        capped by the negative TTL of the SOA that came with it (RFC 9077) and by its
        signatures' expiry."""
        if not self.config.cache.aggressive_nsec or sigs is None or len(sigs) == 0:
            return
        ttls = [int(rrset.ttl), *expiry_cap(verdict)]
        for r in authority:
            if r.rdtype == dns.rdatatype.SOA:
                ttls += [int(r.ttl), int(r[0].minimum)]
        now = self.clock.now()
        self.denials.add(sigs[0].signer, KeptRRset(rrset, sigs, now, now + min(ttls)))

    def keep_soa(self, soa: dns.rrset.RRset, sigs: dns.rrset.RRset | None,
                 verdict: Verdict) -> None:
        """Keep a validated SOA that came with a denial: answers synthesised from the
        zone's kept NSEC/NSEC3 records carry it, aged, as the server would have sent."""
        if not self.config.cache.aggressive_nsec:
            return
        now = self.clock.now()
        self.denials.add_soa(soa.name, KeptRRset(
            soa, sigs, now, now + min(int(soa.ttl), int(soa[0].minimum), *expiry_cap(verdict))))

    def forget_below(self, zone: dns.name.Name) -> None:
        """Drop what was kept at and below `zone`."""
        for owner in self.dnames.keys():
            if owner.is_subdomain(zone):
                self.dnames.pop(owner)
        self.denials.drop_below(zone)
