"""The resolution core: one client question in, one Outcome out.

The validator wraps the iterator (Unbound's shape): every authoritative response the
iterator brings back is judged against the chain of trust before it becomes part of
the answer. Zone keys are established top-down from the closest trust anchor, one DS
and one DNSKEY set per zone cut, and the conclusion (secure keys, proven insecure, or
bogus with its reason) is cached per zone, so the reason for a broken parent travels
unchanged into every answer below it.

No sockets and no wall clock here: the network is a Transport and time is a Clock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset

from anchord.control.config import Config, parse_trust_anchor
from anchord.core import denial
from anchord.core.aggressive import AggressiveCache
from anchord.core.cache import (
    AnswerCache,
    AnswerEntry,
    DelegationCache,
    EntryState,
    FailureCache,
    InfraCache,
    KeyCache,
    ZoneKeys,
    aged_outcome,
    stale_outcome,
)
from anchord.core.chain import ChainOfTrust
from anchord.core.iterator import Iterator, Kind, Work, ZoneAnswer, classify
from anchord.core.limits import WorkBudget
from anchord.core.outcome import (
    Ede,
    EdeCode,
    Freshness,
    Outcome,
    Question,
    Security,
    Verdict,
    combine_security,
    order_edes,
)
from anchord.core.part import Part, find_rrset, signer_of, sigs_for
from anchord.core.ports import Clock, Transport
from anchord.core.trustmap import TrustKind, TrustMap
from anchord.core.validator import ValidatorPolicy, verify_rrset, wildcard_expansion

# Data that validates bogus is asked again of the zone's other servers, leaving out
# each server that gave bogus data (Unbound's blacklist), at most
# dnssec.bogus_retries more times. When no other server answers, the last bogus
# reason stands.

_DNSSEC_TYPES = (dns.rdatatype.RRSIG, dns.rdatatype.NSEC, dns.rdatatype.NSEC3)


def _bogus_edes(verdict: Verdict, notes: tuple[Ede, ...]) -> tuple[Ede, ...]:
    """A bogus verdict's EDEs, led by the iterator's remark that malformed records were
    left out of the message when that explains the failure: a signature over an RRset
    the scrubber shortened cannot verify, so "does not verify" (6) blames the signer
    for what the server's malformed rdata caused; the remark (0) then leads, with the
    signature's failure in its text and the 6 kept after it (Unbound answers 0 too).
    An expired signature or a missing key is not explained by a dropped record, and
    keeps its place."""
    edes = order_edes(verdict.edes)
    left_out = [n for n in notes if n.code is EdeCode.OTHER]
    if not left_out or not edes or edes[0].code is not EdeCode.DNSSEC_BOGUS:
        return order_edes(edes + notes)
    lead = Ede(EdeCode.OTHER, f"{left_out[0].text}, so {edes[0].text}")
    return (lead, *edes, *(n for n in notes if n is not left_out[0]))


class Resolver:
    def __init__(self, config: Config, clock: Clock, transport: Transport,
                 trust: TrustMap | None = None,
                 rng: Callable[[], float] = lambda: 0.5) -> None:
        self.config = config
        self.clock = clock
        self.transport = transport
        self.trust = trust if trust is not None else self._trust_from(config)
        self.policy = (
            ValidatorPolicy.permissive() if config.dnssec.algorithm_policy == "all"
            else ValidatorPolicy()
        )
        self.policy = replace(self.policy,
                              nsec3_max_iterations=config.dnssec.nsec3_max_iterations,
                              clock_skew=config.dnssec.clock_skew)
        self.answers = AnswerCache(config.cache.max_entries)
        self.failures = FailureCache(config.failure_cache.min_ttl, config.failure_cache.max_ttl)
        self.keys = KeyCache()
        self.delegations = DelegationCache()
        self.infra = InfraCache()
        # Validated NSEC/NSEC3, SOAs, wildcards and DNAMEs, for RFC 8198 aggressive use.
        self.aggressive = AggressiveCache(config, clock, self.trust, self.keys, self.policy)
        self.iterator = Iterator(config.upstream, clock, transport, self.delegations,
                                 self.infra, rng, self._lookup_addresses,
                                 dnssec=config.dnssec.enabled)
        self.chain = ChainOfTrust(config, clock, self.trust, self.policy, self.keys,
                                  self.iterator, self.aggressive, self._budget)
        if config.dnssec.enabled:
            # The iterator checks each cut on its way down with the chain of trust,
            # which asks for DS and DNSKEY sets through the iterator: bound once both exist.
            self.iterator.check_cut = self.chain.bogus_cut

    @staticmethod
    def _trust_from(config: Config) -> TrustMap:
        trust = TrustMap()
        if config.dnssec.enabled:
            for line in config.dnssec.trust_anchors:
                trust.add_anchor(parse_trust_anchor(line))
            for zone in config.dnssec.insecure_zones:
                trust.add_insecure(dns.name.from_text(zone))
        return trust

    # -- per-query allowances -----------------------------------------------------------------
    def _new_work(self) -> Work:
        return Work(upstream_left=self.config.upstream.max_upstream_queries)

    def _budget(self) -> WorkBudget:
        return WorkBudget(max_signature_checks=self.config.dnssec.max_signature_checks,
                          max_key_tag_collisions=self.config.dnssec.max_key_tag_collisions)

    # -- the public entry -----------------------------------------------------------------------
    async def resolve(self, question: Question, cd: bool = False) -> Outcome:
        now = self.clock.now()
        entry = self.answers.get(question)
        state = entry.state(now) if entry is not None else EntryState.DEAD
        if entry is not None and state is EntryState.FRESH:
            return self.cached_answer(entry, now)
        stale = entry if state is EntryState.STALE and self.config.serve_stale.enabled else None
        if stale is not None and now < stale.refresh_after:
            return self.stale_answer(stale, *stale.refresh_failure)
        failed = self.failures.get(question, now) if self.config.failure_cache.enabled else None
        if failed is not None and cd and failed.outcome.rcode == dns.rcode.SERVFAIL \
                and failed.outcome.security is Security.BOGUS:
            failed = None  # cut short at a bogus zone cut: a CD client still gets the data
        if failed is not None:
            cached_ede = Ede(EdeCode.CACHED_ERROR,
                             f"cached failure for {question}, retried after "
                             f"{int(failed.until - now) + 1} s")
            if stale is not None:
                return self.stale_answer(stale, *failed.outcome.edes)
            return replace(failed.outcome, freshness=Freshness.CACHED_FAILURE).with_edes(
                cached_ede)
        outcome = await self.resolve_uncached(question, cd=cd)
        return self.settle(question, outcome, stale or self._revivable(entry, state))

    # -- prefetch (Unbound's): refresh popular answers before they expire ------------------
    def prefetch_at(self, entry: AnswerEntry) -> float:
        """When a hit on `entry` should start a background refresh: once less than a
        tenth of its TTL is left (never, with cache.prefetch off: its expiry)."""
        if not self.config.cache.prefetch:
            return entry.expires_at
        return max(entry.stored_at + entry.ttl - entry.ttl // 10, entry.refresh_after)

    def prefetch_due(self, entry: AnswerEntry, now: float) -> bool:
        return self.config.cache.prefetch and entry.ttl > 0 \
            and self.prefetch_at(entry) <= now < entry.expires_at

    async def prefetch(self, question: Question) -> Outcome:
        """Refresh a cached answer that is still being answered (the driver runs this in
        the background after a hit that was prefetch_due).

        A failed refresh changes nothing but the entry's refresh_after: the still-fresh
        answer keeps being served, the next attempt waits serve_stale.failure_recheck,
        and the failure is not put in the failure cache (a client never saw it)."""
        before = self.answers.get(question)
        work = self._new_work()
        if before is not None:
            work.leeway = max(0.0, before.expires_at - self.clock.now())
        outcome = await self.resolve_uncached(question, work)
        if not outcome.is_failure:
            return self.settle(question, outcome, None)
        now = self.clock.now()
        entry = self.answers.get(question)
        if entry is None or before is None or entry.stored_at != before.stored_at:
            return self.settle(question, outcome, None)
        entry = replace(entry, refresh_after=now + self.config.serve_stale.failure_recheck,
                        refresh_failure=outcome.edes)
        self.answers.put(question, entry)
        # Clients that joined this refresh get what resolve() would answer them now.
        state = entry.state(now)
        if state is EntryState.FRESH:
            return self.cached_answer(entry, now)
        if state is EntryState.STALE and self.config.serve_stale.enabled:
            return self.stale_answer(entry, *outcome.edes)
        return self.settle(question, outcome, None)

    def cached_answer(self, entry: AnswerEntry, now: float) -> Outcome:
        """A fresh cache entry as answered (TTLs aged unless cache.serve_original_ttl)."""
        return aged_outcome(entry, now, self.config.cache.serve_original_ttl)

    def stale_answer(self, entry: AnswerEntry, *reasons: Ede) -> Outcome:
        """A cache entry answered stale (RFC 8767), with why its refresh failed."""
        return stale_outcome(entry, self.config.serve_stale.stale_ttl, *reasons,
                             original=self.config.cache.serve_original_ttl)

    def _revivable(self, entry: AnswerEntry | None, state: EntryState) -> AnswerEntry | None:
        """With serve_stale.extend_on_failure, an entry past its stale window that a failed
        refresh may bring back (Unbound's serve-expired-ttl-reset)."""
        cfg = self.config.serve_stale
        if entry is None or state is not EntryState.DEAD or not entry.stale_ok \
                or not (cfg.enabled and cfg.extend_on_failure):
            return None
        return entry

    def settle(self, question: Question, outcome: Outcome, stale: AnswerEntry | None
               ) -> Outcome:
        """Store a fresh outcome; a failure falls back to the stale copy when there is one."""
        now = self.clock.now()
        if outcome.is_failure:
            if stale is not None:
                # A bogus or failed refresh never replaces validated data; the stale copy
                # is answered, and upstream is left alone for the recheck window.
                cfg = self.config.serve_stale
                stale_until = stale.stale_until
                if cfg.extend_on_failure:
                    # Served as long as clients ask while upstream stays broken.
                    stale_until = max(stale_until, now + cfg.max_stale_age)
                stale = replace(stale, stale_until=stale_until,
                                refresh_after=now + cfg.failure_recheck,
                                refresh_failure=outcome.edes)
                self.answers.put(question, stale)
                return self.stale_answer(stale, *outcome.edes)
            if self.config.failure_cache.enabled:
                self.failures.record(question, outcome, now)
            return outcome
        self.failures.forget(question)
        if outcome.freshness is not Freshness.FRESH:
            return outcome  # partly stale: the older entries keep their own windows
        ttl = self._outcome_ttl(outcome)
        stale_window = self.config.serve_stale.max_stale_age \
            if self.config.serve_stale.enabled else 0
        # A TTL of 0 says "use for this transaction only, do not cache" (RFC 1035
        # 3.2.1): such an answer replaces the old entry but is never served stale.
        self.answers.put(question, AnswerEntry(outcome, now, ttl, now + ttl + stale_window,
                                               stale_ok=ttl > 0))
        return outcome

    def _outcome_ttl(self, outcome: Outcome) -> int:
        ttls = [r.ttl for r in outcome.answer]
        if outcome.rcode == dns.rcode.NXDOMAIN or not outcome.answer:
            for r in outcome.authority:
                if r.rdtype == dns.rdatatype.SOA:
                    ttls.append(min(r.ttl, r[0].minimum, self.config.cache.max_negative_ttl))
        if not ttls:
            ttls = [self.config.cache.min_ttl or 60]
        return max(self.config.cache.min_ttl, min(min(ttls), self.config.cache.max_ttl))

    async def resolve_uncached(self, question: Question, work: Work | None = None,
                               cd: bool = False) -> Outcome:
        work = work if work is not None else self._new_work()
        work.cd = work.cd or cd
        budget = self._budget()
        return await self._resolve_chain(question, work, budget)

    # -- CNAME / DNAME chasing ------------------------------------------------------------------
    async def _resolve_chain(self, q: Question, work: Work, budget: WorkBudget,
                             seen: frozenset[dns.name.Name] = frozenset(),
                             carried: ZoneAnswer | None = None) -> Outcome:
        """Resolve `q` from the authorities, following CNAME/DNAME hops.

        Each hop's target is resolved (and cached) as a question of its own, so a chain
        reuses cached targets and a target that cannot be refreshed is answered stale
        while the fresh hops before it keep their real TTLs (RFC 8767 section 4).
        `carried`: the target's records as the previous hop's response brought them.
        """
        if len(seen) > self.config.upstream.max_cname_chain:
            return Outcome.servfail(q, Ede(
                EdeCode.OTHER,
                f"CNAME chain to {q.qname} longer than {self.config.upstream.max_cname_chain}"))
        part = self.aggressive.dname_from_cache(q) or self.aggressive.denial_from_cache(q)
        notes: tuple[Ede, ...] = ()  # the iterator's remarks on a usable answer
        za: ZoneAnswer | None = None
        if part is None:
            za = carried or await self._known_cut_answer(q, work) \
                or await self.iterator.query(q, work)
            if za.kind is Kind.BOGUS_CUT:
                return Outcome.servfail(q, *za.edes, security=Security.BOGUS)
            if za.kind is Kind.FAILURE:
                return Outcome.servfail(q, *za.edes)
            part = await self._validate(za, work, budget)
            if za is carried and part.verdict.security is Security.BOGUS:
                # Data a server added beside a hop that does not validate: ask for the
                # target itself rather than blame the server for its extras.
                za = await self._known_cut_answer(q, work) \
                    or await self.iterator.query(q, work)
                if za.kind is Kind.BOGUS_CUT:
                    return Outcome.servfail(q, *za.edes, security=Security.BOGUS)
                if za.kind is Kind.FAILURE:
                    return Outcome.servfail(q, *za.edes)
                part = await self._validate(za, work, budget)
            for _ in range(self.config.dnssec.bogus_retries):
                if part.verdict.security is not Security.BOGUS or za.server is None:
                    break
                work.exclude.add((za.zone, za.server))
                retry = await self.iterator.query(q, work)
                if retry.kind in (Kind.FAILURE, Kind.BOGUS_CUT):
                    break  # no other server: the bogus reason stands
                za = retry
                part = await self._validate(za, work, budget)
            notes = za.edes
            if part.verdict.security is Security.SECURE and part.target is not None:
                self._keep_cut_proofs(za, part.target)
            if part.verdict.security is Security.SECURE and (
                    part.kind is Kind.DNAME or (part.kind is Kind.ANSWER
                                                and q.qtype == dns.rdatatype.DNAME)):
                # Only secure DNAMEs are used from the cache (Unbound's rule too).
                self.aggressive.remember_dname(part)
        if part.verdict.security is Security.BOGUS:
            return Outcome(q, part.rcode, part.answer, part.authority,
                           security=Security.BOGUS, edes=_bogus_edes(part.verdict, notes))
        if part.verdict.security is Security.INDETERMINATE:
            # Under a trust anchor the keys could not be had (RFC 4035 5.5): no answer
            # can be vouched for, so none is given; the reason travels as the EDE.
            return Outcome.servfail(q, *(order_edes(part.verdict.edes) or (Ede(
                EdeCode.DNSSEC_INDETERMINATE, f"no validation possible for {q}"),)))
        if part.kind not in (Kind.CNAME, Kind.DNAME) or part.target is None or (
                part.kind is Kind.DNAME and q.qtype == dns.rdatatype.CNAME):
            # (A CNAME question is answered by the CNAME the DNAME synthesises.)
            authority = () if part.kind is Kind.DNAME else part.authority
            return Outcome(q, part.rcode, part.answer, authority,
                           security=part.verdict.security,
                           edes=order_edes(part.verdict.edes + notes))
        if part.target in seen or part.target == q.qname:
            # A loop never ends in an answer: SERVFAIL, as Unbound, BIND and Knot answer.
            return Outcome.servfail(q, Ede(
                EdeCode.OTHER, f"CNAME/DNAME loop: {q.qname} leads back to {part.target}"))
        target = Question(part.target, q.qtype, q.qclass)
        rest = await self._resolve_hop(target, work, budget, seen | {q.qname},
                                       self._carried_hop(za, target))
        if rest.rcode == dns.rcode.SERVFAIL and rest.security is not Security.BOGUS:
            return Outcome.servfail(q, *rest.edes)
        security = combine_security([part.verdict.security, rest.security])
        if rest.freshness is Freshness.STALE:
            edes = rest.edes + order_edes(part.verdict.edes)  # "stale" stays first
        else:
            edes = order_edes(part.verdict.edes + rest.edes)
        # The hop's own proofs (a wildcard expansion, an insecure cut) stay with the
        # answer, beside the final step's authority, as Unbound answers them.
        own = part.authority if part.kind is Kind.CNAME else ()
        authority = rest.authority + tuple(
            r for r in own if not any(
                (o.name, o.rdtype, o.covers) == (r.name, r.rdtype, r.covers)
                for o in rest.authority))
        return Outcome(q, rest.rcode, part.answer + rest.answer, authority,
                       security=security, edes=edes, freshness=rest.freshness)

    def _carried_hop(self, za: ZoneAnswer | None, target: Question) -> ZoneAnswer | None:
        """The answer to a CNAME/DNAME hop's target that came in the same response, as
        authoritative servers put it when the target lies in their zone (RFC 1034 4.3.2
        step 3a): used as that zone's answer for the target, and validated as such, so
        the servers are not asked again for what they already said. Records for a
        target outside the answering zone are not the server's to give and are never
        used; unsigned ones under a trust anchor neither (the target is asked itself)."""
        if za is None or za.message is None or za.kind not in (Kind.CNAME, Kind.DNAME) \
                or za.message.rcode() != dns.rcode.NOERROR \
                or not target.qname.is_subdomain(za.zone):
            return None
        msg = za.message
        owned = [r for r in msg.answer if r.name == target.qname]
        if not any(r.rdtype != dns.rdatatype.RRSIG for r in owned):
            return None
        point = self.trust.closest(target.qname, self.clock.now()) \
            if self.config.dnssec.enabled else None
        if point is not None and point.kind is TrustKind.ANCHOR and any(
                r.rdtype != dns.rdatatype.RRSIG and sigs_for(owned, r.name, r.rdtype) is None
                for r in owned):
            return None
        kind = classify(msg, target, za.zone)
        if kind not in (Kind.ANSWER, Kind.CNAME, Kind.DNAME):
            return None
        return ZoneAnswer(kind, target, za.zone, msg, server=za.server)

    async def _resolve_hop(self, q: Question, work: Work, budget: WorkBudget,
                           seen: frozenset[dns.name.Name],
                           carried: ZoneAnswer | None = None) -> Outcome:
        """A CNAME target: from cache when fresh, else resolved and cached in its own right."""
        now = self.clock.now()
        entry = self.answers.get(q)
        state = entry.state(now) if entry is not None else EntryState.DEAD
        if entry is not None and state is EntryState.FRESH:
            return self.cached_answer(entry, now)
        stale = entry if state is EntryState.STALE and self.config.serve_stale.enabled else None
        if stale is not None and now < stale.refresh_after:
            return self.stale_answer(stale, *stale.refresh_failure)
        outcome = await self._resolve_chain(q, work, budget, seen, carried)
        return self.settle(q, outcome, stale or self._revivable(entry, state))

    def _keep_cut_proofs(self, za: ZoneAnswer, target: dns.name.Name) -> None:
        """A CNAME/DNAME into a child zone may come with the parent's signed proof that
        the child's delegation has no DS (NSEC/NSEC3 in AUTHORITY). Keep it for the
        child's DS question, which the zone's servers may never answer themselves.

        The zone is the proof's signer (a forwarder answers as '.', yet an NSEC3
        chain belongs to the zone one label above its owners)."""
        msg = za.message
        if msg is None:
            return
        zone = next((r[0].signer for r in msg.authority if r.rdtype == dns.rdatatype.RRSIG
                     and r.covers in (dns.rdatatype.NSEC, dns.rdatatype.NSEC3)
                     and r[0].signer.is_subdomain(za.zone)), za.zone)
        if not target.is_subdomain(zone) or target == zone:
            return
        nsecs = [r for r in msg.authority if r.rdtype == dns.rdatatype.NSEC]
        nsec3s = [r for r in msg.authority if r.rdtype == dns.rdatatype.NSEC3]
        if not nsecs and not nsec3s:
            return
        name = target
        candidates = []
        while len(name) > len(zone):
            candidates.append(name)
            name = name.parent()
        for child in reversed(candidates):  # the highest cut below the zone first
            if not denial.prove_no_ds(child, zone, nsecs, nsec3s, self.policy).is_bogus:
                self.iterator.remember_no_ds_proof(msg, child, zone, za.server)
                return

    async def _known_cut_answer(self, q: Question, work: Work) -> ZoneAnswer | None:
        """The chain's cut check (ChainOfTrust.bogus_cut) for the deepest zone cut
        already known above `q`, whose servers would be asked next without a referral
        on the way."""
        if not self.config.dnssec.enabled or work.cd:
            return None
        cut = self.delegations.closest(q.qname, self.clock.now() + work.leeway)
        if cut is None:
            return None
        bogus = await self.chain.bogus_cut(cut.zone, work)
        return ZoneAnswer(Kind.BOGUS_CUT, q, cut.zone, edes=bogus) if bogus else None

    # -- judging one authoritative response ---------------------------------------------------
    async def _validate(self, za: ZoneAnswer, work: Work, budget: WorkBudget) -> Part:
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

    # -- the chain of trust -----------------------------------------------------------------------
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

    # -- name server addresses ------------------------------------------------------------------
    async def _lookup_addresses(self, name: dns.name.Name, work: Work) -> list[str]:
        hosts: list[str] = []
        types = []
        if self.config.upstream.do_ipv4:
            types.append(dns.rdatatype.A)
        if self.config.upstream.do_ipv6:
            types.append(dns.rdatatype.AAAA)
        for rdtype in types:
            key = (name, int(rdtype))
            if key in work.in_progress or work.depth > 6:
                continue
            q = Question(name, rdtype)
            now = self.clock.now()
            entry = self.answers.get(q)
            if entry is not None and entry.state(now) is EntryState.FRESH:
                outcome = entry.outcome
            else:
                work.in_progress.add(key)
                work.depth += 1
                try:
                    outcome = await self._resolve_chain(q, work, self._budget())
                finally:
                    work.depth -= 1
                    work.in_progress.discard(key)
                if not outcome.is_failure:
                    self.settle(q, outcome, None)
            if outcome.security is Security.BOGUS:
                continue
            for rrset in outcome.answer:
                if rrset.rdtype == rdtype:
                    hosts.extend(rd.address for rd in rrset)
            if hosts:
                break
        return hosts

    async def recheck(self, zone: dns.name.Name, asked: tuple[Question, ...] = ()) -> Outcome:
        """Would `zone` validate if its negative trust anchor were gone? (RFC 7646 4)

        Asks for the zone's SOA, then the questions clients asked under the NTA, through
        a probe resolver that shares this one's delegations and server RTTs but none of
        its trust conclusions or NTAs. The SOA must be secure; each asked question must
        not be bogus or indeterminate (an unsigned child below the zone is rightly
        insecure). Returns the SOA's outcome, or the first asked one that fails.
        """
        probe = Resolver(self.config, self.clock, self.transport,
                         trust=self.trust.without_negative(), rng=self.iterator.rng)
        probe.delegations = self.delegations
        probe.infra = self.infra
        probe.iterator.delegations = self.delegations
        probe.iterator.infra = self.infra
        soa = await probe.resolve_uncached(Question(zone, dns.rdatatype.SOA))
        if soa.security is not Security.SECURE:
            return soa
        for question in asked:
            outcome = await probe.resolve_uncached(question)
            if outcome.security in (Security.BOGUS, Security.INDETERMINATE):
                return outcome
        return soa

    # -- operator actions --------------------------------------------------------------------------
    def forget_below(self, zone: dns.name.Name) -> None:
        """Drop cached conclusions at and below `zone` (an NTA added or removed, a flush)."""
        self.answers.drop_below(zone)
        self.aggressive.forget_below(zone)
        self.failures.drop_below(zone)
        self.keys.drop_below(zone)
