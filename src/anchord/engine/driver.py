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

from anchord.control.config import Config
from anchord.core.cache import EntryState
from anchord.core.outcome import Outcome, Question
from anchord.core.ports import Clock, Transport
from anchord.core.resolution import Resolver
from anchord.core.trustmap import TrustMap
from anchord.engine.clock import SystemClock

log = logging.getLogger("anchord.driver")


class Driver:
    """What the frontend talks to: `await driver.resolve(question, cd)` -> Outcome."""

    def __init__(self, core: Resolver, clock: Clock) -> None:
        self.core = core
        self.clock = clock
        self._inflight: dict[Question, asyncio.Task[Outcome]] = {}
        self._background: set[asyncio.Task[object]] = set()

    @property
    def config(self) -> Config:
        return self.core.config

    @property
    def trust(self) -> TrustMap:
        return self.core.trust

    def _real(self, seconds: float) -> float:
        real = getattr(self.clock, "real_seconds", None)
        return float(real(seconds)) if real is not None else seconds

    async def resolve(self, question: Question, cd: bool = False) -> Outcome:
        core = self.core
        now = self.clock.now()
        entry = core.answers.get(question)
        if entry is not None and entry.state(now) is EntryState.FRESH:
            # The common case, kept free of task creation.
            return await core.resolve(question, cd)
        task = self._inflight.get(question)
        if task is None:
            task = asyncio.ensure_future(core.resolve(question, cd))
            self._inflight[question] = task
            task.add_done_callback(lambda _t, q=question: self._inflight.pop(q, None))
        stale_cfg = self.config.serve_stale
        if entry is not None and entry.state(now) is EntryState.STALE and stale_cfg.enabled \
                and stale_cfg.client_timeout > 0:
            done, _ = await asyncio.wait({task}, timeout=self._real(stale_cfg.client_timeout))
            if not done:
                # RFC 8767 client response timer: answer stale now, keep refreshing.
                from anchord.core.cache import stale_outcome

                return stale_outcome(entry, stale_cfg.stale_ttl)
        return await asyncio.shield(task)

    def start_background(self, loop: asyncio.AbstractEventLoop) -> None:
        """Hook for periodic jobs (NTA expiry and recheck); none needed yet."""

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
