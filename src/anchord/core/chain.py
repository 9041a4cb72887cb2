"""The chain of trust: the trust state of the keys that sign a zone's data.

Zone keys are established top-down from the closest trust anchor, one DS and one
DNSKEY set per zone cut, and the conclusion (secure keys, proven insecure, or bogus
with its reason) is cached per zone, so the reason for a broken parent travels
unchanged into every answer below it. A zone found bogus again is left alone longer
each time (_backed_off); a referral's DS is checked before the child is asked for data
(bogus_cut), so a broken parent costs no queries below it.

The network is reached only through the Iterator; time only through the Clock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import dns.name
import dns.rdatatype
import dns.rrset

from anchord.control.config import Config
from anchord.core import denial
from anchord.core.aggressive import AggressiveCache
from anchord.core.cache import BoundedMap, KeyCache, ZoneKeys
from anchord.core.iterator import Iterator, Kind, Work, ZoneAnswer
from anchord.core.limits import WorkBudget
from anchord.core.outcome import Ede, EdeCode, Question, Security, Verdict
from anchord.core.part import expiry_cap, find_rrset, signer_of, sigs_for
from anchord.core.ports import Clock, ServerAddress
from anchord.core.trustmap import TrustKind, TrustMap
from anchord.core.validator import ValidatorPolicy, verify_dnskeys, verify_rrset, wildcard_expansion

# How long conclusions that are not "secure" are remembered, in seconds. A bogus key
# set is re-examined soon (a registry may repair it), after a minute as Unbound's
# val-bogus-ttl, doubling while it stays bogus (_backed_off); a network failure sooner.
BOGUS_KEYS_TTL = 60
UNREACHABLE_KEYS_TTL = 5


class ChainOfTrust:
    """Fetches and judges the DS and DNSKEY sets from the closest trust anchor down.

    Holds the key walk's own state (the DS verdicts a cut check already reached) and
    is handed the Resolver's key cache, trust map and policy, the iterator it asks
    through, the aggressive cache that keeps the denials it validates, and the factory
    of per-query work budgets (a cut check runs outside any one question's budget)."""

    def __init__(self, config: Config, clock: Clock, trust: TrustMap, policy: ValidatorPolicy,
                 keys: KeyCache, iterator: Iterator, aggressive: AggressiveCache,
                 new_budget: Callable[[], WorkBudget]) -> None:
        self.config = config
        self.clock = clock
        self.trust = trust
        self.policy = policy
        self.keys = keys
        self.iterator = iterator
        self.aggressive = aggressive
        self.new_budget = new_budget
        # A referral's DS verdict reached while checking the cut, handed to the key
        # walk that follows so the same signature is not checked twice.
        self._checked_ds: BoundedMap[dns.name.Name, tuple[dns.rrset.RRset, Verdict]] = \
            BoundedMap(1000)

    def validation_time(self) -> float:
        """The time signatures are judged at: now, unless the config pins it (replays)."""
        return float(self.config.dnssec.override_time) or self.clock.now()

    async def zone_keys(self, zone: dns.name.Name, work: Work, budget: WorkBudget) -> ZoneKeys:
        """The trust state of data signed by `zone` (or, if `zone` is no cut, its zone's)."""
        now = self.clock.now()
        cached = self.keys.get(zone, now)
        if cached is not None:
            return cached
        point = self.trust.closest(zone, now)
        if point is None:
            return ZoneKeys(zone, Security.INSECURE, expires_at=now + 3600)
        if point.kind is not TrustKind.ANCHOR:
            # Not cached: trust-map changes (an NTA removed) must show at once.
            return ZoneKeys(zone, Security.INSECURE, edes=self.negative_edes(zone))
        if work.depth > 12:
            return ZoneKeys(zone, Security.INDETERMINATE, edes=(Ede(
                EdeCode.DNSSEC_INDETERMINATE,
                f"chain of trust to {zone} too deep to follow"),))
        work.depth += 1
        try:
            if point.zone == zone:
                keys = await self._anchor_keys(zone, point.anchor, work, budget)
            else:
                keys = await self._delegated_keys(zone, work, budget)
        finally:
            work.depth -= 1
        if keys.security is Security.BOGUS:
            keys = self._backed_off(keys, now)
        self.keys.put(keys)
        return keys

    def _backed_off(self, keys: ZoneKeys, now: float) -> ZoneKeys:
        """A zone found bogus again is left alone twice as long, up to the failure
        cache's maximum (RFC 9520's back-off, applied where the failure is decided):
        while a TLD stays broken its children's DS is not fetched again every half
        minute, and a repair shows within that bound (at once after an NTA's flush)."""
        last = self.keys.last(keys.zone)
        streak = last.bogus_streak + 1 if last is not None \
            and last.security is Security.BOGUS else 1
        hold = min(BOGUS_KEYS_TTL * 2 ** min(streak - 1, 16),
                   max(BOGUS_KEYS_TTL, self.config.failure_cache.max_ttl))
        return replace(keys, bogus_streak=streak, expires_at=max(keys.expires_at, now + hold))

    def negative_edes(self, zone: dns.name.Name) -> tuple[Ede, ...]:
        """The EDE that says `zone` lies under a negative trust anchor, if it does."""
        point = self.trust.closest(zone, self.clock.now())
        if point is not None and point.kind is TrustKind.NTA and point.nta is not None:
            reason = f" ({point.nta.reason})" if point.nta.reason else ""
            return (Ede(EdeCode.NEGATIVE_TRUST_ANCHOR,
                        f"negative trust anchor for {point.zone}{reason}: not validated"),)
        return ()

    def verified_denial(self, authority: tuple[dns.rrset.RRset, ...], keys: ZoneKeys,
                         budget: WorkBudget
                         ) -> tuple[list[dns.rrset.RRset], list[dns.rrset.RRset], Verdict | None]:
        """The NSEC and NSEC3 RRsets of `authority` whose signatures verify with `keys`."""
        nsecs: list[dns.rrset.RRset] = []
        nsec3s: list[dns.rrset.RRset] = []
        assert keys.dnskeys is not None
        for rrset in authority:
            if rrset.rdtype not in (dns.rdatatype.NSEC, dns.rdatatype.NSEC3):
                continue
            sigs = sigs_for(list(authority), rrset.name, rrset.rdtype)
            expanded = next((s for s in sigs or () if wildcard_expansion(rrset.name, s)), None)
            if expanded is not None:
                # An NSEC/NSEC3 expanded from a wildcard (RRSIG labels below the owner's)
                # has an owner the zone never had: it proves nothing about the names
                # around it (CVE-2017-15105), and no server sends one in a denial.
                return [], [], Verdict.bogus(
                    EdeCode.DNSSEC_BOGUS,
                    f"{rrset.name}/{dns.rdatatype.to_text(rrset.rdtype)} is a wildcard "
                    f"expansion (RRSIG labels {expanded.labels}, key tag "
                    f"{expanded.key_tag} of {keys.zone}) and cannot prove a denial")
            verdict = verify_rrset(rrset, sigs, keys.dnskeys, keys.zone,
                                   self.validation_time(), self.policy, budget)
            if verdict.is_bogus:
                return [], [], verdict
            if not verdict.is_secure:
                continue
            (nsecs if rrset.rdtype == dns.rdatatype.NSEC else nsec3s).append(rrset)
            self.aggressive.keep_denial(rrset, sigs, authority, verdict)
        return nsecs, nsec3s, None

    # -- the cut check, before a zone is asked for data ---------------------------------------
    async def bogus_cut(self, zone: dns.name.Name, work: Work) -> tuple[Ede, ...]:
        """Why the keys of `zone` are bogus, when that is known or cheap to learn before
        its servers are asked for data (else ()).

        Whatever a zone serves or delegates is signed by its keys or proven by them,
        so when they are bogus no answer from below can validate. Settling that from
        the parent's side first (as Knot Resolver walks, top-down) spares the data query
        a broken TLD would make worthless: while .de was broken each refresh of a child
        name cost a query to the child as well as the DS queries. Only what the parent
        side tells is used (a cached conclusion, the DS a referral brought, a zone last
        found bogus asked for its DS again): a zone that validates costs the queries it
        did before, and a dead child server is not asked twice.
        """
        now = self.clock.now()
        point = self.trust.closest(zone, now)
        if point is None or point.kind is not TrustKind.ANCHOR or point.zone == zone:
            return ()  # under an NTA or override, no anchor, or the anchor itself
        budget = self.new_budget()
        keys = self.keys.get(zone, now)
        if keys is None:
            last = self.keys.last(zone)
            if last is not None and last.security is Security.BOGUS:
                keys = await self.zone_keys(zone, work, budget)
            else:
                verdict = await self._referral_ds_verdict(zone, work, budget)
                if self.iterator.ds_from_referral(zone) is None \
                        and await self._ds_ahead(zone, work):
                    verdict = await self._referral_ds_verdict(zone, work, budget)
                if verdict is None or verdict.is_secure:
                    return ()
                keys = await self.zone_keys(zone, work, budget)
        return keys.edes if keys.security is Security.BOGUS else ()

    async def _ds_ahead(self, zone: dns.name.Name, work: Work) -> bool:
        """Ask the parent for the DS of `zone` before the data (the key walk needs it
        anyway and takes it from here): True when a DS set came back."""
        za = await self._fetch(zone, dns.rdatatype.DS, work)
        if za.kind is Kind.FAILURE or za.message is None:
            return False  # the key walk asks again and words the failure
        if za.kind in (Kind.ANSWER, Kind.NODATA):
            self.iterator.keep_ds_answer(za)
        return za.kind is Kind.ANSWER

    def _ds_unreachable(self, zone: dns.name.Name, za: ZoneAnswer) -> ZoneKeys:
        # A network failure stays a network failure: never reported as bogus. When
        # every server of the parent did answer, only with errors, the servers were
        # reached, so "no reachable authority" (22) would mislead: the exchange itself
        # failed (23, as Unbound reports a DS error).
        return ZoneKeys(zone, Security.INDETERMINATE, edes=tuple(
            Ede(EdeCode.NETWORK_ERROR if za.all_answered else e.code,
                f"cannot fetch the DS set of {zone}: {e.text}")
            for e in za.edes), expires_at=self.clock.now() + UNREACHABLE_KEYS_TTL)

    async def _referral_ds_verdict(self, zone: dns.name.Name, work: Work, budget: WorkBudget
                                   ) -> Verdict | None:
        """The DS set a referral into `zone` brought, checked with its parent's keys
        (which the key walk needs next anyway); None when there is none or the parent's
        keys are not secure."""
        za = self.iterator.ds_from_referral(zone)
        if za is None or za.kind is not Kind.ANSWER or za.message is None:
            return None
        ds = find_rrset(za.message.answer, zone, dns.rdatatype.DS)
        sigs = sigs_for(za.message.answer, zone, dns.rdatatype.DS)
        signer = signer_of(sigs)
        if ds is None or signer is None or signer == zone or not zone.is_subdomain(signer):
            return None
        parent = await self.zone_keys(signer, work, budget)
        if parent.security is not Security.SECURE or parent.dnskeys is None:
            return None
        verdict = verify_rrset(ds, sigs, parent.dnskeys, signer, self.validation_time(),
                               self.policy, budget)
        self._checked_ds.put(zone, (ds, verdict))
        return verdict

    # -- the key walk: DNSKEY under an anchor, DS then DNSKEY below one -----------------------
    def _keys_ttl(self, security: Security, edes: tuple[Ede, ...], *ttls: int) -> float:
        now = self.clock.now()
        if security is Security.BOGUS:
            return now + BOGUS_KEYS_TTL
        if security is Security.INDETERMINATE:
            return now + UNREACHABLE_KEYS_TTL
        return now + max(1, min(ttls or (3600,)))

    async def _fetch(self, name: dns.name.Name, rdtype: int, work: Work) -> ZoneAnswer:
        return await self.iterator.query(Question(name, dns.rdatatype.RdataType(rdtype)), work)

    async def _dnskeys(self, zone: dns.name.Name, work: Work
                       ) -> tuple[dns.rrset.RRset | None, dns.rrset.RRset | None,
                                  ZoneKeys | None, tuple[dns.name.Name, ServerAddress] | None]:
        """The zone's DNSKEY set and its RRSIGs (or why not), and who sent them."""
        za = await self._fetch(zone, dns.rdatatype.DNSKEY, work)
        source = (za.zone, za.server) if za.server is not None else None
        now = self.clock.now()
        if za.kind is Kind.BOGUS_CUT:
            return None, None, ZoneKeys(zone, Security.BOGUS, edes=za.edes,
                                        expires_at=now + BOGUS_KEYS_TTL), source
        if za.kind is Kind.FAILURE and za.all_answered:
            # The servers answer, but not with the keys a DS (or anchor) says exist:
            # missing data the chain of trust needs is bogus (RFC 4035 4.3), not a
            # network failure; silence (timeouts) stays indeterminate below.
            return None, None, ZoneKeys(zone, Security.BOGUS, edes=tuple(
                Ede(EdeCode.DNSKEY_MISSING,
                    f"zone {zone} has a DS but its servers give no DNSKEY set: {e.text}")
                for e in za.edes), expires_at=now + BOGUS_KEYS_TTL), source
        if za.kind is Kind.FAILURE or za.message is None:
            return None, None, ZoneKeys(zone, Security.INDETERMINATE, edes=tuple(
                Ede(e.code, f"cannot fetch the DNSKEY set of {zone}: {e.text}") for e in za.edes),
                expires_at=now + UNREACHABLE_KEYS_TTL), source
        keys = find_rrset(za.message.answer, zone, dns.rdatatype.DNSKEY)
        sigs = sigs_for(za.message.answer, zone, dns.rdatatype.DNSKEY)
        if keys is None:
            return None, None, ZoneKeys(zone, Security.BOGUS, edes=(Ede(
                EdeCode.DNSKEY_MISSING,
                f"zone {zone} has a DS but its servers return no DNSKEY set"),),
                expires_at=now + BOGUS_KEYS_TTL), source
        return keys, sigs, None, source

    async def _anchor_keys(self, zone: dns.name.Name, anchor: dns.rrset.RRset | None, work: Work,
                           budget: WorkBudget) -> ZoneKeys:
        assert anchor is not None
        is_ds = anchor.rdtype == dns.rdatatype.DS
        got = await self._checked_dnskeys(zone, work, budget, anchor if is_ds else None,
                                          None if is_ds else anchor)
        if isinstance(got, ZoneKeys):
            return got
        keys, verdict = got
        return ZoneKeys(zone, verdict.security,
                        keys if verdict.is_secure else None, verdict.edes,
                        self._keys_ttl(verdict.security, verdict.edes, keys.ttl,
                                       *expiry_cap(verdict)))

    async def _delegated_keys(self, zone: dns.name.Name, work: Work, budget: WorkBudget,
                              retries: int | None = None) -> ZoneKeys:
        now = self.clock.now()
        retries = self.config.dnssec.bogus_retries if retries is None else retries
        za = self.iterator.ds_from_referral(zone) or await self._fetch(
            zone, dns.rdatatype.DS, work)
        if za.kind is Kind.BOGUS_CUT:
            return ZoneKeys(zone, Security.BOGUS, edes=za.edes, expires_at=now + BOGUS_KEYS_TTL)
        if za.kind is Kind.FAILURE or za.message is None:
            return self._ds_unreachable(zone, za)
        msg = za.message
        if za.kind is Kind.ANSWER:
            ds = find_rrset(msg.answer, zone, dns.rdatatype.DS)
            sigs = sigs_for(msg.answer, zone, dns.rdatatype.DS)
            assert ds is not None
            signer = signer_of(sigs)
            if signer is None or signer == zone or not zone.is_subdomain(signer):
                return await self._unvouched(zone, work, budget, now, lambda _parent: Ede(
                    EdeCode.RRSIGS_MISSING,
                    f"DS set of {zone} has no valid RRSIG by its parent zone"))
            parent = await self.zone_keys(signer, work, budget)
            if parent.security is not Security.SECURE:
                return replace(parent, zone=zone)
            assert parent.dnskeys is not None
            checked = self._checked_ds.pop(zone)
            verdict = checked[1] if checked is not None and checked[0] is ds else verify_rrset(
                ds, sigs, parent.dnskeys, signer, self.validation_time(), self.policy, budget)
            if not verdict.is_secure:
                self.iterator.forget_referral_ds(zone)  # the retry asks the parent afresh
                failed_ds = ZoneKeys(zone, verdict.security, edes=verdict.edes,
                                     expires_at=self._keys_ttl(verdict.security, verdict.edes,
                                                               ds.ttl))
                if verdict.is_bogus and za.server is not None and retries > 0:
                    # Ask the parent's other servers, leaving out the one that sent it.
                    work.exclude.add((za.zone, za.server))
                    retried = await self._delegated_keys(zone, work, budget, retries - 1)
                    if retried.security is not Security.INDETERMINATE:
                        return retried
                return failed_ds
            got = await self._checked_dnskeys(zone, work, budget, ds, None)
            if isinstance(got, ZoneKeys):
                return got
            keys, kv = got
            return ZoneKeys(zone, kv.security, keys if kv.is_secure else None, kv.edes,
                            self._keys_ttl(kv.security, kv.edes, ds.ttl, keys.ttl,
                                           *expiry_cap(kv), *expiry_cap(verdict)))
        if za.kind in (Kind.NODATA, Kind.NXDOMAIN, Kind.CNAME):
            return await self._no_ds(zone, za, work, budget)
        return ZoneKeys(zone, Security.INDETERMINATE, edes=(Ede(
            EdeCode.DNSSEC_INDETERMINATE, f"unexpected {za.kind.value} answer to DS {zone}"),),
            expires_at=now + UNREACHABLE_KEYS_TTL)

    async def _checked_dnskeys(self, zone: dns.name.Name, work: Work, budget: WorkBudget,
                               ds: dns.rrset.RRset | None, key_anchor: dns.rrset.RRset | None
                               ) -> tuple[dns.rrset.RRset, Verdict] | ZoneKeys:
        """The zone's DNSKEY set and its verdict against `ds` (or a configured DNSKEY
        anchor); while bogus, asked again of the zone's other servers, each bogus one left
        out (Unbound's val-max-restart). A ZoneKeys when no server gave a set at all."""
        keys, sigs, failed, source = await self._dnskeys(zone, work)
        if failed is not None:
            return failed
        assert keys is not None
        verdict = verify_dnskeys(keys, sigs, ds, key_anchor, zone, self.validation_time(),
                                 self.policy, budget)
        for _ in range(self.config.dnssec.bogus_retries):
            if not verdict.is_bogus or source is None:
                break
            work.exclude.add(source)
            again, again_sigs, failed, source = await self._dnskeys(zone, work)
            if failed is not None or again is None:
                break  # no other server: the bogus reason stands
            keys, sigs = again, again_sigs
            verdict = verify_dnskeys(keys, sigs, ds, key_anchor, zone, self.validation_time(),
                                     self.policy, budget)
        return keys, verdict

    async def _unvouched(self, zone: dns.name.Name, work: Work, budget: WorkBudget,
                         now: float, reason: Callable[[ZoneKeys], Ede]) -> ZoneKeys:
        """The parent's answer about `zone`'s DS carries no usable signature: bogus if the
        parent is secure (it had to sign it), else the zone inherits the parent's state."""
        parent = await self.zone_keys(zone.parent(), work, budget)
        if parent.security is Security.SECURE:
            return ZoneKeys(zone, Security.BOGUS, edes=(reason(parent),),
                            expires_at=now + BOGUS_KEYS_TTL)
        return replace(parent, zone=zone)

    async def _no_ds(self, zone: dns.name.Name, za: ZoneAnswer, work: Work,
                     budget: WorkBudget) -> ZoneKeys:
        """No DS at `zone`: a proven insecure cut, or no cut at all (keys of the parent)."""
        now = self.clock.now()
        msg = za.message
        assert msg is not None
        section = msg.authority if za.kind is not Kind.CNAME else msg.answer + msg.authority
        signer: dns.name.Name | None = None
        for rrset in section:
            if rrset.rdtype == dns.rdatatype.RRSIG and zone.is_subdomain(rrset[0].signer) \
                    and rrset[0].signer != zone:
                signer = rrset[0].signer
                break
        if signer is None:
            return await self._unvouched(zone, work, budget, now, lambda parent: Ede(
                EdeCode.NSEC_MISSING,
                f"no signed proof from {parent.apex or parent.zone} that {zone} has no DS"))
        parent = await self.zone_keys(signer, work, budget)
        if parent.security is not Security.SECURE:
            return replace(parent, zone=zone)
        authority = tuple(r for r in msg.authority if r.name.is_subdomain(signer))
        nsecs, nsec3s, bad = self.verified_denial(authority, parent, budget)
        if bad is not None:
            return ZoneKeys(zone, Security.BOGUS, edes=bad.edes,
                            expires_at=now + BOGUS_KEYS_TTL)
        ttl = min([r.ttl for r in authority] or [300])
        if za.kind is Kind.NODATA:
            cut = denial.prove_no_ds(zone, signer, nsecs, nsec3s, self.policy)
            if cut.security is not Security.BOGUS:
                # A delegation without DS (or inside an opt-out span): insecure below.
                return ZoneKeys(zone, Security.INSECURE, edes=tuple(
                    e for e in cut.edes if e.code == EdeCode.UNSUPPORTED_NSEC3_ITERATIONS),
                    expires_at=now + ttl)
            proof = denial.prove_nodata(zone, dns.rdatatype.DS, signer, nsecs, nsec3s,
                                        self.policy)
            if proof.security is Security.INSECURE:
                return ZoneKeys(zone, Security.INSECURE, edes=proof.edes, expires_at=now + ttl)
            if proof.security is Security.BOGUS:
                return ZoneKeys(zone, Security.BOGUS, edes=cut.edes + proof.edes,
                                expires_at=now + BOGUS_KEYS_TTL)
        elif za.kind is Kind.NXDOMAIN:
            proof = denial.prove_nxdomain(zone, signer, nsecs, nsec3s, self.policy)
            if proof.security is Security.INSECURE:
                return ZoneKeys(zone, Security.INSECURE, edes=proof.edes, expires_at=now + ttl)
        # Not a zone cut: data at this name is signed with the parent's keys.
        return ZoneKeys(zone, parent.security, parent.dnskeys, parent.edes,
                        min(parent.expires_at, now + ttl), apex=parent.apex or parent.zone)
