"""The resolution core: one client question in, one Outcome out.

The Resolver holds the caches and the public entry points (resolve, prefetch,
recheck, forget_below) and follows the answer chain: one question, then each CNAME or
DNAME hop's target as a question of its own, settled into the cache with serve-stale.
Each zone's answer the iterator brings back is judged (judge.py) against the chain of
trust (chain.py) before it becomes part of the answer; what validates may later answer
questions without upstream (aggressive.py, RFC 8198).

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
    aged_outcome,
    stale_outcome,
)
from anchord.core.chain import ChainOfTrust
from anchord.core.iterator import Iterator, Kind, Work, ZoneAnswer, classify
from anchord.core.judge import Judge
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
from anchord.core.part import sigs_for
from anchord.core.ports import Clock, Transport
from anchord.core.trustmap import TrustKind, TrustMap
from anchord.core.validator import ValidatorPolicy

# Data that validates bogus is asked again of the zone's other servers, leaving out
# each server that gave bogus data (Unbound's blacklist), at most
# dnssec.bogus_retries more times. When no other server answers, the last bogus
# reason stands.


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
        self.judge = Judge(config, clock, self.trust, self.policy, self.chain, self.aggressive)
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
        cached = self.from_cache(question, cd)
        if cached is not None:
            return cached
        now = self.clock.now()
        entry = self.answers.get(question)
        state = entry.state(now) if entry is not None else EntryState.DEAD
        stale = entry if state is EntryState.STALE and self.config.serve_stale.enabled else None
        outcome = await self.resolve_uncached(question, cd=cd)
        return self.settle(question, outcome, stale or self._revivable(entry, state))

    def from_cache(self, question: Question, cd: bool = False) -> Outcome | None:
        """What resolve() answers without asking upstream, or None where it would ask.

        A fresh answer; a stale one while a failed refresh is being waited out; a cached
        failure (RFC 9520). An expired answer whose refresh is due is None: answering it
        stale is for when a refresh has failed (RFC 8767), and this starts none. Queries
        without RD are answered from here and from_cache_only (Driver.resolve_norec)."""
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
            served = replace(failed.outcome, freshness=Freshness.CACHED_FAILURE)
            if cd and served.security is Security.BOGUS:
                # Bogus data that came with its records: a CD client gets them with
                # NOERROR, which is no error, so "Cached Error" (EDE 13) would mislead.
                return served
            return served.with_edes(cached_ede)
        return None

    def from_cache_only(self, question: Question, cd: bool = False) -> Outcome | None:
        """What a query without RD gets: from_cache's answer, or else, with serve_stale
        on, an expired answer still in its stale window, served stale (EDE 3 or 19, and
        why its last refresh failed, if one did); None when the cache has nothing to give.

        from_cache leaves a stale answer whose refresh is due to the refresh (resolve()
        answers it stale only if that fails); a query without RD starts none, so the
        stale copy is all it can get, whether a refresh is running, has failed or has not
        been tried: the same answer throughout, as RFC 8767 serves it."""
        cached = self.from_cache(question, cd)
        if cached is not None or not self.config.serve_stale.enabled:
            return cached
        entry = self.answers.get(question)
        if entry is not None and entry.state(self.clock.now()) is EntryState.STALE:
            return self.stale_answer(entry, *entry.refresh_failure,
                                     why="a query without RD is answered from the cache")
        return None

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
        return aged_outcome(self.answers.outcome(entry), entry, now,
                            self.config.cache.serve_original_ttl)

    def stale_answer(self, entry: AnswerEntry, *reasons: Ede,
                     why: str = "no fresh answer could be had") -> Outcome:
        """A cache entry answered stale (RFC 8767), with why its refresh failed."""
        return stale_outcome(self.answers.outcome(entry), entry,
                             self.config.serve_stale.stale_ttl, *reasons,
                             original=self.config.cache.serve_original_ttl, why=why)

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
        if not self.config.cache.serve_original_ttl:
            outcome = self._ttl_bounded(outcome)
        ttl = self._outcome_ttl(outcome)
        stale_window = self.config.serve_stale.max_stale_age \
            if self.config.serve_stale.enabled else 0
        # A TTL of 0 says "use for this transaction only, do not cache" (RFC 1035
        # 3.2.1): such an answer replaces the old entry but is never served stale.
        # The stored outcome is the one returned: the fast path tells a first answer
        # from a cached one by identity.
        self.answers.put(question, AnswerEntry.of(outcome, now, ttl, now + ttl + stale_window,
                                                  stale_ok=ttl > 0))
        return outcome

    def _ttl_bounded(self, outcome: Outcome) -> Outcome:
        """The outcome with every RRset's TTL inside [cache.min_ttl, cache.max_ttl].

        The TTL a client is told is the time the cache keeps the answer, as Unbound
        documents cache-min-ttl and cache-max-ttl: raising only the time kept would
        answer TTLs that run out (or reach 0) while the entry is still served, and
        lowering only the time kept would let clients keep what the cache dropped.
        With cache.serve_original_ttl the records keep their TTLs (Unbound's rule too).
        """
        low, high = self.config.cache.min_ttl, self.config.cache.max_ttl

        def bounded(rrsets: tuple[dns.rrset.RRset, ...]) -> tuple[dns.rrset.RRset, ...]:
            if all(low <= r.ttl <= high for r in rrsets):
                return rrsets
            out = []
            for rrset in rrsets:
                if not low <= rrset.ttl <= high:
                    rrset = rrset.copy()
                    rrset.ttl = max(low, min(rrset.ttl, high))
                out.append(rrset)
            return tuple(out)

        answer, authority = bounded(outcome.answer), bounded(outcome.authority)
        additional = bounded(outcome.additional)
        if answer is outcome.answer and authority is outcome.authority \
                and additional is outcome.additional:
            return outcome
        return replace(outcome, answer=answer, authority=authority, additional=additional)

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
            if za is carried and za.kind not in (Kind.BOGUS_CUT, Kind.FAILURE):
                part = await self.judge.validate(za, work, budget)
                if part.verdict.security is Security.BOGUS:
                    # Data a server added beside a hop that does not validate: ask for
                    # the target itself rather than blame the server for its extras.
                    za = await self._known_cut_answer(q, work) \
                        or await self.iterator.query(q, work)
                    part = None
            if za.kind is Kind.BOGUS_CUT:
                return Outcome.servfail(q, *za.edes, security=Security.BOGUS)
            if za.kind is Kind.FAILURE:
                return Outcome.servfail(q, *za.edes)
            if part is None:
                part = await self.judge.validate(za, work, budget)
            for _ in range(self.config.dnssec.bogus_retries):
                if part.verdict.security is not Security.BOGUS or za.server is None:
                    break
                work.exclude.add((za.zone, za.server))
                retry = await self.iterator.query(q, work)
                if retry.kind in (Kind.FAILURE, Kind.BOGUS_CUT):
                    break  # no other server: the bogus reason stands
                za = retry
                part = await self.judge.validate(za, work, budget)
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
                outcome = self.answers.outcome(entry)
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
