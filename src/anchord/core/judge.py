"""Judging one zone's answer: its data or its denial, against the chain of trust.

The validator wraps the iterator (Unbound's shape): every authoritative response the
iterator brings back is judged here before it becomes part of the answer. Signed data
is verified with its signer's keys (chain.py), a wildcard expansion must come with the
proof that the name itself does not exist, a denial must be proven by validated
NSEC/NSEC3 records, and unsigned data is accepted only below a proven insecure cut.
What validates is handed to the aggressive cache (aggressive.py) for later use.
"""

from __future__ import annotations

import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset

from anchord.control.config import Config
from anchord.core import denial
from anchord.core.aggressive import AggressiveCache
from anchord.core.cache import ZoneKeys
from anchord.core.chain import ChainOfTrust
from anchord.core.iterator import Kind, Work, ZoneAnswer
from anchord.core.limits import WorkBudget
from anchord.core.outcome import Ede, EdeCode, Question, Security, Verdict
from anchord.core.part import Part, find_rrset, signer_of, sigs_for
from anchord.core.ports import Clock
from anchord.core.trustmap import TrustKind, TrustMap
from anchord.core.validator import ValidatorPolicy, verify_rrset, wildcard_expansion

_DNSSEC_TYPES = (dns.rdatatype.RRSIG, dns.rdatatype.NSEC, dns.rdatatype.NSEC3)


class Judge:
    """Turns one zone's answer into a validated Part (its records and their verdict).

    Holds no state of its own: it is handed the trust map and policy, the chain of
    trust it asks for keys, and the aggressive cache it tells what validated."""

    def __init__(self, config: Config, clock: Clock, trust: TrustMap, policy: ValidatorPolicy,
                 chain: ChainOfTrust, aggressive: AggressiveCache) -> None:
        self.config = config
        self.clock = clock
        self.trust = trust
        self.policy = policy
        self.chain = chain
        self.aggressive = aggressive

    async def validate(self, za: ZoneAnswer, work: Work, budget: WorkBudget) -> Part:
        msg = za.message
        assert msg is not None
        q = za.question
        name = q.qname
        rcode = msg.rcode()
        data, target = self._data_rrsets(za)
        authority = tuple(r for r in msg.authority
                          if r.name.is_subdomain(za.zone) or r.rdtype in _DNSSEC_TYPES)
        if za.kind in (Kind.NXDOMAIN, Kind.NODATA):
            authority = tuple(r for r in msg.authority if r.rdtype in (
                dns.rdatatype.SOA, dns.rdatatype.NSEC, dns.rdatatype.NSEC3,
                dns.rdatatype.RRSIG) and r.name.is_subdomain(za.zone))
            data = []
        else:
            authority = tuple(r for r in msg.authority
                              if r.rdtype in (dns.rdatatype.NSEC, dns.rdatatype.NSEC3,
                                              dns.rdatatype.RRSIG)
                              and r.name.is_subdomain(za.zone)
                              and (r.rdtype != dns.rdatatype.RRSIG
                                   or r.covers in (dns.rdatatype.NSEC, dns.rdatatype.NSEC3)))
        kind = za.kind
        if kind is Kind.NXDOMAIN:
            rcode = dns.rcode.NXDOMAIN
        elif kind is Kind.NODATA:
            rcode = dns.rcode.NOERROR
        if not self.config.dnssec.enabled:
            return Part(kind, rcode, tuple(data), authority, Verdict.insecure(), target)
        point = self.trust.closest(name, self.clock.now())
        if point is None:
            return Part(kind, rcode, tuple(data), authority, Verdict.insecure(), target)
        if point.kind is not TrustKind.ANCHOR:
            return Part(kind, rcode, tuple(data), authority,
                        Verdict.insecure(*self.chain.negative_edes(point.zone)), target)
        if kind in (Kind.NXDOMAIN, Kind.NODATA):
            verdict = await self._judge_denial(za, authority, work, budget)
        else:
            verdict = await self._judge_data(za, data, authority, work, budget)
        if rcode == dns.rcode.YXDOMAIN and verdict.is_secure:
            # The DNAME is checked (a bogus one is not relayed), but AD vouches for an
            # answer or a denial (RFC 4035 3.2.3), and YXDOMAIN is an error rcode:
            # it goes out without AD, as Unbound (which validates only NOERROR and
            # NXDOMAIN) answers it.
            verdict = Verdict.insecure()
        if verdict.ttl_cap is not None:
            data = [self._capped(r, verdict.ttl_cap) for r in data]
        return Part(kind, rcode, tuple(data), authority, verdict, target)

    @staticmethod
    def _capped(rrset: dns.rrset.RRset, cap: int) -> dns.rrset.RRset:
        if rrset.ttl <= cap:
            return rrset
        copy: dns.rrset.RRset = rrset.copy()
        copy.ttl = max(0, cap)
        return copy

    def _data_rrsets(self, za: ZoneAnswer) -> tuple[list[dns.rrset.RRset], dns.name.Name | None]:
        """The answer-section records that belong to this step, with their signatures."""
        msg = za.message
        assert msg is not None
        name, qtype = za.question.qname, za.question.qtype
        out: list[dns.rrset.RRset] = []
        target: dns.name.Name | None = None
        if za.kind is Kind.ANSWER:
            for rrset in msg.answer:
                if rrset.name != name:
                    continue
                if rrset.rdtype == qtype or qtype == dns.rdatatype.ANY or (
                        rrset.rdtype == dns.rdatatype.RRSIG
                        and (rrset.covers == qtype or qtype in (dns.rdatatype.ANY,
                                                                 dns.rdatatype.RRSIG))):
                    out.append(rrset)
        elif za.kind is Kind.CNAME:
            cname = find_rrset(msg.answer, name, dns.rdatatype.CNAME)
            if cname is not None:
                out.append(cname)
                sigs = sigs_for(msg.answer, name, dns.rdatatype.CNAME)
                if sigs is not None:
                    out.append(sigs)
                target = cname[0].target
        elif za.kind is Kind.DNAME:
            for rrset in msg.answer:
                if rrset.rdtype == dns.rdatatype.DNAME and name.is_subdomain(rrset.name):
                    out.append(rrset)
                    sigs = sigs_for(msg.answer, rrset.name, dns.rdatatype.DNAME)
                    if sigs is not None:
                        out.append(sigs)
                    try:
                        target = name.relativize(rrset.name).derelativize(rrset[0].target)
                    except dns.name.NameTooLong:
                        target = None
                    synth = dns.rrset.from_text_list(name, rrset.ttl, "IN", "CNAME",
                                                     [target.to_text()] if target else [])
                    if target is not None:
                        out.append(synth)
                    break
        return out, target

    async def _judge_data(self, za: ZoneAnswer, data: list[dns.rrset.RRset],
                          authority: tuple[dns.rrset.RRset, ...], work: Work,
                          budget: WorkBudget) -> Verdict:
        if za.question.qtype == dns.rdatatype.RRSIG:
            # RRSIGs are not signed themselves (RFC 4035 2.2): an answer of signatures
            # alone has nothing to verify them with, so it goes out without AD (the
            # client can check each against the RRset it covers).
            return Verdict.insecure()
        caps: list[int] = []
        extra: list[Ede] = []
        insecure = False
        dname_secure = False
        proofs_needed: list[tuple[dns.rrset.RRset, dns.rrset.RRset, dns.name.Name,
                                  ZoneKeys]] = []
        for rrset in data:
            if rrset.rdtype == dns.rdatatype.RRSIG:
                continue
            if rrset.rdtype == dns.rdatatype.CNAME and za.kind is Kind.DNAME:
                # Synthesised from the DNAME, which is what gets checked; a CNAME the
                # server sent that says otherwise is forged (RFC 6672 5.3.1).
                sent = find_rrset(za.message.answer, rrset.name, dns.rdatatype.CNAME) \
                    if za.message is not None else None
                if sent is not None and sent[0].target != rrset[0].target:
                    if dname_secure:
                        # The DNAME itself is good: keep it, later names are synthesised.
                        self.aggressive.remember_dname(Part(Kind.DNAME, dns.rcode.NOERROR,
                                                  tuple(data), (), Verdict.secure()))
                    return Verdict.bogus(
                        EdeCode.DNSSEC_BOGUS,
                        f"{rrset.name}/CNAME to {sent[0].target} contradicts the DNAME "
                        f"synthesis (to {rrset[0].target})")
                continue
            sigs = next((s for s in data if s.rdtype == dns.rdatatype.RRSIG
                         and s.name == rrset.name and s.covers == rrset.rdtype), None)
            signer = signer_of(sigs)
            if signer is None or not rrset.name.is_subdomain(signer):
                keys = await self._keys_for_unsigned(za.zone, rrset.name, work, budget)
                if keys.security is Security.SECURE:
                    return Verdict.bogus(
                        EdeCode.RRSIGS_MISSING,
                        f"{rrset.name}/{dns.rdatatype.to_text(rrset.rdtype)} has no RRSIG "
                        f"although zone {keys.apex or keys.zone} is signed")
                if keys.security is not Security.INSECURE:
                    return Verdict(keys.security, keys.edes)
                insecure = True
                extra.extend(keys.edes)
                continue
            keys = await self.chain.zone_keys(signer, work, budget)
            if keys.security is not Security.SECURE:
                if keys.security is Security.INSECURE:
                    insecure = True
                    extra.extend(keys.edes)
                    continue
                return Verdict(keys.security, keys.edes)
            assert keys.dnskeys is not None
            verdict = verify_rrset(rrset, sigs, keys.dnskeys, signer, self.chain.validation_time(),
                                   self.policy, budget)
            if not verdict.is_secure:
                return verdict
            dname_secure = dname_secure or rrset.rdtype == dns.rdatatype.DNAME
            if verdict.ttl_cap is not None:
                caps.append(verdict.ttl_cap)
            assert sigs is not None
            # Any signature of the zone that claims a wildcard expansion demands the
            # proof: checking only the first could let a forged label count through.
            enclosers = [e for s in sigs if s.signer == signer
                         for e in [wildcard_expansion(rrset.name, s)] if e is not None]
            if enclosers and rrset.rdtype == dns.rdatatype.DNAME:
                # RFC 4592 4.4: a DNAME is never synthesised from a wildcard; a signature
                # claiming so cannot be accepted (Unbound calls it bogus too).
                return Verdict.bogus(
                    EdeCode.DNSSEC_BOGUS,
                    f"{rrset.name}/DNAME is signed by {signer} as a wildcard expansion "
                    f"(RRSIG labels {min(s.labels for s in sigs)}), which DNAME cannot be")
            if enclosers:
                proofs_needed.append((rrset, sigs, min(enclosers, key=len), keys))
        for rrset, sigs, encloser, keys in proofs_needed:
            owner = rrset.name
            nsecs, nsec3s, bad = self.chain.verified_denial(authority, keys, budget)
            if bad is not None:
                return bad
            proof = denial.prove_wildcard_answer(owner, encloser, keys.zone, nsecs, nsec3s,
                                                 self.policy)
            if proof.security is Security.BOGUS:
                return proof
            if proof.security is Security.INSECURE:
                return Verdict.insecure(*proof.edes)
            self.aggressive.keep_wildcard(rrset, sigs, encloser, min(caps) if caps else None)
        if insecure:
            return Verdict.insecure(*extra)
        return Verdict.secure(min(caps) if caps else None)

    async def _judge_denial(self, za: ZoneAnswer, authority: tuple[dns.rrset.RRset, ...],
                            work: Work, budget: WorkBudget) -> Verdict:
        q = za.question
        soa = next((r for r in authority if r.rdtype == dns.rdatatype.SOA), None)
        signer: dns.name.Name | None = None
        for rrset in authority:
            if rrset.rdtype == dns.rdatatype.RRSIG:
                signer = rrset[0].signer
                break
        if signer is None or not q.qname.is_subdomain(signer):
            zone = soa.name if soa is not None else za.zone
            # A DS record is its parent zone's data: that zone's anchor judges it.
            data_name = q.qname.parent() if q.qtype == dns.rdatatype.DS \
                and len(q.qname) > 1 else q.qname
            keys = await self._keys_for_unsigned(za.zone, zone, work, budget, data_name)
            if keys.security is Security.SECURE:
                # Denial records without their signatures are EDE 10; none at all, 12.
                unsigned = any(r.rdtype != dns.rdatatype.RRSIG for r in authority)
                code = (EdeCode.DNSSEC_BOGUS if signer is not None
                        else EdeCode.RRSIGS_MISSING if unsigned else EdeCode.NSEC_MISSING)
                return Verdict.bogus(
                    code,
                    f"{'NXDOMAIN' if za.kind is Kind.NXDOMAIN else 'NODATA'} for {q} from "
                    f"signed zone {keys.apex or keys.zone} without a signed denial of existence"
                    + (" (its SOA/NSEC records carry no RRSIG)" if code is EdeCode.RRSIGS_MISSING
                       else ""))
            if keys.security is Security.INSECURE:
                return Verdict.insecure(*keys.edes)
            return Verdict(keys.security, keys.edes)
        keys = await self.chain.zone_keys(signer, work, budget)
        if keys.security is not Security.SECURE:
            return Verdict(keys.security, keys.edes)
        assert keys.dnskeys is not None
        if soa is not None:
            verdict = verify_rrset(soa, sigs_for(list(authority), soa.name, dns.rdatatype.SOA),
                                   keys.dnskeys, signer, self.chain.validation_time(), self.policy,
                                   budget)
            if verdict.is_bogus:
                return verdict
            if verdict.is_secure:
                self.aggressive.keep_soa(
                    soa, sigs_for(list(authority), soa.name, dns.rdatatype.SOA), verdict)
        nsecs, nsec3s, bad = self.chain.verified_denial(authority, keys, budget)
        if bad is not None:
            return bad
        if za.kind is Kind.NXDOMAIN:
            proof = denial.prove_nxdomain(q.qname, signer, nsecs, nsec3s, self.policy)
        else:
            proof = denial.prove_nodata(q.qname, q.qtype, signer, nsecs, nsec3s, self.policy)
        if proof.is_bogus:
            # The name may lie below a proven insecure delegation of the signer's zone
            # (a server, or a forwarder, answering for parent and child alike): the
            # signer is then not the authority for it, and the denial is the unsigned
            # child's. Looked for only when the proof fails, so a good denial costs
            # nothing more.
            cut = await self._insecure_cut_between(signer, q, work, budget)
            if cut is not None:
                return Verdict.insecure(*cut.edes)
        return proof

    # -- unsigned data: is it really below an insecure cut? ---------------------------------
    async def _insecure_cut_between(self, zone: dns.name.Name, q: Question, work: Work,
                                    budget: WorkBudget) -> ZoneKeys | None:
        """The keys of a proven insecure cut between `zone` and the question's name
        (for a DS question, its parent), or None."""
        last = q.qname.parent() if q.qtype == dns.rdatatype.DS and len(q.qname) > 1 \
            else q.qname
        names = []
        name = last
        while len(name) > len(zone) and name.is_subdomain(zone):
            names.append(name)
            name = name.parent()
        for candidate in reversed(names):
            keys = await self.chain.zone_keys(candidate, work, budget)
            if keys.security is Security.INSECURE:
                return keys
            if keys.security is not Security.SECURE:
                return None
        return None

    async def _keys_for_unsigned(self, zone: dns.name.Name, owner: dns.name.Name, work: Work,
                                 budget: WorkBudget, qname: dns.name.Name | None = None
                                 ) -> ZoneKeys:
        """Trust state for unsigned data at `owner` served by `zone`'s servers.

        The server's zone may be an ancestor of the data's real zone (one server can
        host both), so when the keys there are secure, look for a proven insecure cut
        between it and the owner before calling the data bogus. A trust anchor between
        the server's zone and the question's name (`qname`, default the owner) rules
        instead: a forwarder's "." answer for a name under an anchored zone is judged
        by that anchor's keys.
        """
        point = self.trust.closest(qname or owner, self.clock.now())
        if point is not None and point.kind is TrustKind.ANCHOR \
                and point.zone.is_subdomain(zone) and point.zone != zone:
            zone = point.zone
            owner = owner if owner.is_subdomain(zone) else zone
        keys = await self.chain.zone_keys(zone, work, budget)
        if keys.security is not Security.SECURE:
            return keys
        name = owner
        candidates = []
        while len(name) > len(zone):
            candidates.append(name)
            name = name.parent()
        for candidate in reversed(candidates):
            below = await self.chain.zone_keys(candidate, work, budget)
            if below.security is Security.INDETERMINATE:
                break  # no DS answer there: no proof of an insecure cut, the zone is signed
            if below.security is not Security.SECURE:
                return below
        return keys
