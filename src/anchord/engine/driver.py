"""The driver: runs the sans-I/O core on a real event loop.

It owns what needs asyncio: joining identical in-flight questions (one upstream
resolution however many clients ask), the RFC 8767 client response timer (answer stale
when a refresh takes too long, let it finish in the background), and background jobs.
Everything that decides DNS semantics stays in anchord.core.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Coroutine
from dataclasses import replace

import dns.name
import dns.rcode

from anchord.control.config import Config
from anchord.control.ntastore import lifetime_over_max, time_in_future
from anchord.core.cache import EntryState
from anchord.core.outcome import Ede, EdeCode, Outcome, Question, Security
from anchord.core.ports import Clock, Transport
from anchord.core.resolution import Resolver
from anchord.core.trustmap import NegativeAnchor, TrustMap
from anchord.engine.clock import SystemClock, utc_iso

log = logging.getLogger("anchord.driver")

# Questions answered under an NTA that its recheck asks again, besides the zone's SOA.
RECHECK_QUESTIONS = 8


def _log_prefetch_crash(task: asyncio.Task[Outcome]) -> None:
    # Nobody awaits a prefetch unless a client joins it: a bug must still be seen.
    if not task.cancelled() and task.exception() is not None:
        log.error("prefetch failed", exc_info=task.exception())


class Driver:
    """What the frontend talks to: `await driver.resolve(question, cd)` -> Outcome."""

    def __init__(self, core: Resolver, clock: Clock) -> None:
        self.core = core
        self.clock = clock
        self._inflight: dict[Question, asyncio.Task[Outcome]] = {}
        self._background: set[asyncio.Task[object]] = set()
        # Called after every change of the negative trust anchors (the store persists
        # them); set by whoever owns the state file or the fleet store.
        self.on_trust_change: Callable[[list[NegativeAnchor]], None] | None = None
        self._rechecking: set[dns.name.Name] = set()
        # An NTA's recent questions changed since the last save (a new one pushed an old
        # one out of a full list): the next save, at the latest the next recheck, has it.
        self._questions_unsaved = False
        # Told after every core.forget_below (an NTA added, removed or ended, a cache flush
        # through the control API) and after every NTA change: the frontend's fast path
        # drops its pre-rendered answers, the worker hub tells the other workers.
        self.forget_listeners: list[Callable[[dns.name.Name], None]] = []
        self.trust_listeners: list[Callable[[list[NegativeAnchor]], None]] = []
        core_forget_below = core.forget_below

        def forget_below(zone: dns.name.Name) -> None:
            core_forget_below(zone)
            for listener in list(self.forget_listeners):
                listener(zone)

        core.forget_below = forget_below  # type: ignore[method-assign]

    @property
    def config(self) -> Config:
        return self.core.config

    @property
    def trust(self) -> TrustMap:
        return self.core.trust

    def _forget_inflight(self, question: Question) -> Callable[[object], None]:
        def done(_task: object) -> None:
            self._inflight.pop(question, None)

        return done

    def _start(self, question: Question, work: Coroutine[object, None, Outcome]
               ) -> asyncio.Task[Outcome]:
        """Run `work` for `question` as the one in-flight resolution others join."""
        task = asyncio.ensure_future(work)
        self._inflight[question] = task
        task.add_done_callback(self._forget_inflight(question))
        return task

    @property
    def busy(self) -> bool:
        """Is any resolution (a client's, a refresh, a prefetch) still running?"""
        return bool(self._inflight)

    def _real(self, seconds: float) -> float:
        real = getattr(self.clock, "real_seconds", None)
        return float(real(seconds)) if real is not None else seconds

    async def resolve(self, question: Question, cd: bool = False) -> Outcome:
        core = self.core
        now = self.clock.now()
        entry = core.answers.get(question)
        if entry is not None and entry.state(now) is EntryState.FRESH:
            # The common case, kept free of task creation (but for a due prefetch).
            if core.config.cache.prefetch and question not in self._inflight \
                    and core.prefetch_due(entry, now):
                self._start(question, core.prefetch(question)).add_done_callback(
                    _log_prefetch_crash)
            return self._noted(question, await core.resolve(question, cd))
        task = self._inflight.get(question)
        if task is None:
            task = self._start(question, core.resolve(question, cd))
        stale_cfg = self.config.serve_stale
        if entry is not None and entry.state(now) is EntryState.STALE and stale_cfg.enabled:
            # RFC 8767 client response timer: answer stale when the refresh is not done
            # in time and keep refreshing; 0 answers stale at once (Unbound's meaning).
            done: set[asyncio.Task[Outcome]] = set()
            if stale_cfg.client_timeout > 0:
                done, _ = await asyncio.wait({task},
                                             timeout=self._real(stale_cfg.client_timeout))
            if not done:
                return core.stale_answer(entry)
        return self._noted(question, await asyncio.shield(task))

    async def resolve_norec(self, question: Question, cd: bool = False) -> Outcome:
        """A client's query without RD (recursion desired): server.nonrecursive decides.

        "cache" (the default) answers what is in the cache, what a query with RD would
        get from it now (core.from_cache_only: also a cached failure; and with serve_stale
        on an expired answer in its stale window, stale, where a query with RD would
        first try a refresh), and never starts a resolution, a refresh or a prefetch for
        it: RD=0 asks for no recursion (RFC 1034 4.3.1). Knot Resolver
        answers RD=0 so by default, and BIND from its cache (allow-query-cache). What is
        not cached is refused as Unbound refuses an RD=0 query it will not serve (its
        default access-control "allow"): REFUSED with EDE 20 (Not Authoritative); PowerDNS
        Recursor 5 refuses RD=0 likewise (allow-no-rd). Not SERVFAIL, as Knot Resolver
        answers it: nothing failed, and cache snooping must not show up as failures in
        the metrics and on the dashboard. (Unbound's allow_snoop and BIND refer the
        client to the closest cached delegation instead; anchord does not make
        referrals.) "refuse" is Unbound's and PowerDNS's default (no cache snooping at
        all); "recurse" resolves as if RD were set (Unbound's allow_setrd)."""
        mode = self.config.server.nonrecursive
        if mode == "recurse":
            return await self.resolve(question, cd)
        if mode == "cache":
            cached = self.core.from_cache_only(question, cd)
            if cached is not None:
                return cached
            expired = self.core.answers.get(question)
            if expired is not None:
                # Said as it is: a client (or an operator reading the EDE) asking why a
                # name it just saw answered is refused should not be told it is absent.
                ago = max(0, int(self.clock.now() - expired.expires_at))
                held = f"in the cache but expired ({ago} s ago)"
            else:
                held = "not in the cache"
            why = (f"{question} is {held}, and a query without RD (recursion desired) is "
                   "answered from the cache only")
        else:
            why = ("a query without RD (recursion desired) is refused here "
                   '(server.nonrecursive = "refuse")')
        return Outcome(question, dns.rcode.REFUSED,
                       edes=(Ede(EdeCode.NOT_AUTHORITATIVE, why),))

    def _noted(self, question: Question, outcome: Outcome) -> Outcome:
        """Remember a question answered under an NTA for the NTA's recheck."""
        if outcome.edes and any(e.code is EdeCode.NEGATIVE_TRUST_ANCHOR for e in outcome.edes):
            point = self.trust.negative_at_or_above(question.qname)
            if point is not None and point.nta is not None:
                self._note_question(point.nta, question)
        return outcome

    def _note_question(self, nta: NegativeAnchor, question: Question) -> None:
        """Keep `question` among the NTA's last RECHECK_QUESTIONS (RFC 7646 4 leaves what
        to recheck open): the SOA alone can validate while the names clients need still
        fail (a zone with one bad RRset), and removing the NTA would break them again."""
        asked = nta.questions
        if asked and asked[-1] == question:
            return  # a client asking again: the common case under a busy NTA
        kept = (*(q for q in asked if q != question), question)[-RECHECK_QUESTIONS:]
        self.trust.update_nta(replace(nta, questions=kept))
        if question in asked:
            return  # only the order changed: not worth a write
        # Saved at once while the list grows: at most RECHECK_QUESTIONS writes per NTA, and
        # a question asked before a crash protects the NTA after the restart (README: an
        # NTA is not lifted while an RRset it covers still fails). Once the list is full,
        # every new name under a busy NTA (say, de) would be a write per query: the change
        # waits for the next save, at the latest the next recheck's, and a crash meanwhile
        # costs only the newest names, not the protection.
        if len(asked) < RECHECK_QUESTIONS:
            self._save_ntas()
        else:
            self._questions_unsaved = True

    # -- negative trust anchors (RFC 7646) ----------------------------------------------
    def add_nta(self, zone: dns.name.Name, lifetime: float | None = None, reason: str = "",
                recheck: bool = True) -> NegativeAnchor:
        cfg = self.config.nta
        life = cfg.default_lifetime if lifetime is None else lifetime
        if life <= 0:
            raise ValueError("an NTA's lifetime must be positive")
        too_long = lifetime_over_max(life, cfg.max_lifetime)
        if too_long is not None:
            raise ValueError(too_long)
        now = self.clock.now()
        old = self.trust.nta(zone)
        # A replaced NTA keeps what clients asked under it: the recheck still needs it.
        nta = NegativeAnchor(zone, reason, now, now + life, recheck,
                             questions=old.questions if old is not None else ())
        self.trust.add_nta(nta)
        # Cached bogus answers and failures below the zone must not outlive the decision.
        self.core.forget_below(zone)
        log.info("NTA added for %s until %s (%s)", zone, utc_iso(nta.expires_at),
                 reason or "no reason")
        self._trust_changed()
        return nta

    def remove_nta(self, zone: dns.name.Name, why: str = "operator") -> NegativeAnchor | None:
        removed = self.trust.remove_nta(zone)
        if removed is not None:
            # Answers cached as insecure under the NTA must not be served after it ends.
            self.core.forget_below(zone)
            log.info("NTA for %s removed (%s)", zone, why)
            self._trust_changed()
        return removed

    def restore_ntas(self, ntas: list[NegativeAnchor], save: bool = True) -> None:
        """Put back NTAs read from the state file at start-up (expired ones are dropped)
        and, if `save`, hand them to the store at once (the file then no longer holds the
        dropped ones). save=False leaves the file to the next change: the file store asks
        for it when the file holds entries it could not read and could not copy
        (FileTrustStore.held), which the start-up save would overwrite for good.

        The file is held to the API's rules (a hand-edited one could otherwise turn
        validation off for years): the zone's when it was read (ntastore.nta_zone), the
        times' here, where the time is: an NTA ending more than nta.max_lifetime after it
        was added is cut to that, and a time in the future where the past is recorded is
        taken as now, each with a warning (_held_to_time_rules)."""
        now = self.clock.now()
        for nta in ntas:
            nta, notes = self._held_to_time_rules(nta, now)
            if nta.expires_at <= now:
                continue
            if notes:
                log.warning("NTA for %s in the state file: %s; it now ends at %s", nta.zone,
                            "; ".join(notes), utc_iso(nta.expires_at))
            # A hand-edited list of questions is asked at every recheck: no more than
            # the driver itself keeps.
            self.trust.add_nta(replace(nta, questions=nta.questions[-RECHECK_QUESTIONS:]))
        self._trust_changed(save=save)

    def _held_to_time_rules(self, nta: NegativeAnchor, now: float
                            ) -> tuple[NegativeAnchor, list[str]]:
        """`nta` as the state file's and the fleet store's time rules allow (one function
        for both), and a sentence for each rule it broke:

        - `added_at` or `last_recheck_at` more than FUTURE_TOLERANCE in the future is
          taken as now (ntastore.time_in_future says why kept, not dropped). The end is
          left as it is: it may be right (the clock now behind, not the file ahead), and
          the rule below bounds it all the same. Once saved (restore_ntas saves, the fleet
          pushes what is in force) the time is in the past and the rule is quiet.
        - the end no later than nta.max_lifetime after added_at (or after now, for an
          added_at within the tolerance ahead). Counted from added_at, not from now, so
          the fleet's copy of an NTA cut here is cut to the same end at every sync (no
          change, no cache flush, no new warning)."""
        notes = []
        ahead = time_in_future("added_at", nta.added_at, now)
        if ahead is not None:
            notes.append(ahead)
            nta = replace(nta, added_at=now)
        if nta.last_recheck_at is not None:
            ahead = time_in_future("last_recheck_at", nta.last_recheck_at, now)
            if ahead is not None:
                notes.append(ahead)
                nta = replace(nta, last_recheck_at=now)
        start = min(nta.added_at, now)
        max_lifetime = self.config.nta.max_lifetime
        too_long = lifetime_over_max(nta.expires_at - start, max_lifetime)
        if too_long is not None:
            notes.append(too_long)
            nta = replace(nta, expires_at=start + max_lifetime)
        return nta, notes

    def replace_ntas(self, ntas: list[NegativeAnchor]) -> bool:
        """Make the NTAs exactly `ntas` (expired ones dropped): the fleet store's way in.

        Caches are flushed below every zone that gained, lost or re-timed an NTA; a change
        of recheck bookkeeping alone flushes nothing. on_trust_change is NOT called: the
        change came from the shared store, and saving it back would echo it round the
        fleet. trust_listeners (the other workers of this host) are told. Returns whether
        anything changed."""
        now = self.clock.now()
        current = {n.zone: n for n in self.trust.ntas()}
        wanted: dict[dns.name.Name, NegativeAnchor] = {}
        for nta in ntas:
            nta, notes = self._held_to_time_rules(nta, now)
            if nta.expires_at <= now:
                continue
            wanted[nta.zone] = nta
            if notes and current.get(nta.zone) != nta:
                log.warning("NTA for %s from the fleet: %s; here it ends at %s", nta.zone,
                            "; ".join(notes), utc_iso(nta.expires_at))
        changed = False
        for zone in current.keys() - wanted.keys():
            self.trust.remove_nta(zone)
            self.core.forget_below(zone)
            log.info("NTA for %s removed (fleet)", zone)
            changed = True
        for zone, nta in wanted.items():
            old = current.get(zone)
            if old == nta:
                continue
            changed = True
            if old is not None and (old.added_at, old.expires_at, old.reason, old.recheck) == (
                    nta.added_at, nta.expires_at, nta.reason, nta.recheck):
                self.trust.update_nta(nta)  # recheck bookkeeping only: no trust change
                continue
            self.trust.add_nta(nta)
            self.core.forget_below(zone)
            log.info("NTA for %s until %s (fleet: %s)", zone, utc_iso(nta.expires_at),
                     nta.reason or "no reason")
        if changed:
            for listener in list(self.trust_listeners):
                listener(self.trust.ntas())
        return changed

    def _save_ntas(self) -> None:
        """Hand the NTAs, with their recheck bookkeeping, to the store."""
        self._questions_unsaved = False
        if self.on_trust_change is not None:
            self.on_trust_change(self.trust.ntas())

    def _trust_changed(self, save: bool = True) -> None:
        if save:
            self._save_ntas()
        for listener in list(self.trust_listeners):
            listener(self.trust.ntas())

    async def maintain_ntas(self) -> list[tuple[NegativeAnchor, str]]:
        """Expire NTAs whose end has come and recheck the due ones; returns what ended."""
        now = self.clock.now()
        ended: list[tuple[NegativeAnchor, str]] = []
        for nta in self.trust.expire_ntas(now):
            self.core.forget_below(nta.zone)
            log.info("NTA for %s expired", nta.zone)
            ended.append((nta, "expiry"))
        interval = self.config.nta.recheck_interval
        for nta in self.trust.ntas():
            if not nta.recheck or nta.zone in self._rechecking:
                continue
            last = nta.last_recheck_at if nta.last_recheck_at is not None else nta.added_at
            if now - last < interval:
                continue
            self._rechecking.add(nta.zone)
            try:
                probe = await self.core.recheck(nta.zone, nta.questions)
            finally:
                self._rechecking.discard(nta.zone)
            result = probe.security.value
            if probe.edes:
                result += f": {probe.edes[0]}"
            # The NTA as it is now: questions asked while the recheck ran must not be lost,
            # and an NTA the operator replaced meanwhile is not the one that was rechecked.
            current = self.trust.nta(nta.zone)
            if current is None or current.added_at != nta.added_at:
                continue
            self.trust.update_nta(replace(current, last_recheck_at=self.clock.now(),
                                          last_recheck_result=result))
            if probe.security is Security.SECURE:
                self.remove_nta(nta.zone, why="recheck: the zone validates again")
                ended.append((nta, "recheck"))
        if ended:
            self._trust_changed()
        elif self._questions_unsaved:
            # The recheck's bookkeeping alone is not worth a write every interval; with
            # questions that no save has carried yet, it goes along.
            self._save_ntas()
        return ended

    async def _maintenance_loop(self) -> None:
        while True:
            # Under a fast scaled clock one resolver second is a few real milliseconds;
            # never spin faster than 20 times a real second.
            await asyncio.sleep(max(self._real(1.0), 0.05))
            try:
                await self.maintain_ntas()
            except asyncio.CancelledError:
                raise
            except Exception:  # a recheck bug must not stop expiry for good: log, go on
                log.exception("NTA maintenance failed")

    def start_background(self, loop: asyncio.AbstractEventLoop) -> None:
        task: asyncio.Task[object] = loop.create_task(self._maintenance_loop())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def close(self) -> None:
        for task in list(self._inflight.values()) + list(self._background):
            task.cancel()


def build_resolver(config: Config, clock: Clock | None = None,
                   transport: Transport | None = None, trust: TrustMap | None = None,
                   seed: int | None = None) -> Driver:
    """Wire the core to a clock and a transport (real ones unless given)."""
    clock = clock if clock is not None else SystemClock()
    if transport is None:
        from anchord.engine.transport import NetworkTransport

        transport = NetworkTransport(clock)  # type: ignore[arg-type]
    rng = random.Random(seed).random if seed is not None else random.SystemRandom().random
    core = Resolver(config, clock, transport, trust=trust, rng=rng)
    return Driver(core, clock)
