"""Simulated time for the replay: one linear clock shared by every process.

A simulated instant `t` happens at real time `real_start + (t - start) / scale`; the
testbed, `anchord serve` (hidden --clock-* options) and the clients all compute it the
same way (anchord.engine.clock.ScaledClock with the same three numbers).

The mapping asked for by `--minutes-per-hour X`: one simulated hour lasts X real minutes,
so scale = 60 / X (default X = 1/6: an hour in 10 real seconds, scale 360).
"""

from __future__ import annotations

import datetime
import time
from dataclasses import dataclass, field

UTC = datetime.UTC


def epoch(text: str) -> float:
    """'2026-05-05T19:30' (UTC) -> epoch seconds."""
    return datetime.datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def hhmm(t: float, seconds: bool = False) -> str:
    fmt = "%H:%M:%S" if seconds else "%H:%M"
    return datetime.datetime.fromtimestamp(t, UTC).strftime(fmt)


def iso(t: float | None) -> str | None:
    if t is None:
        return None
    return datetime.datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class Timeline:
    """The scenario of 2026-05-05 (simulated UTC)."""

    start: float = field(default_factory=lambda: epoch("2026-05-05T18:00"))
    break_at: float = field(default_factory=lambda: epoch("2026-05-05T19:30"))
    nta_at: float = field(default_factory=lambda: epoch("2026-05-05T22:17"))
    repair_at: float = field(default_factory=lambda: epoch("2026-05-05T23:30"))
    end: float = field(default_factory=lambda: epoch("2026-05-06T00:30"))

    @property
    def hours(self) -> float:
        return (self.end - self.start) / 3600


SCENARIOS = {"de-2026-05-05": Timeline}


@dataclass(frozen=True, slots=True)
class SimClock:
    """Simulated time running `scale` times faster than real time from `real_start`."""

    start: float
    scale: float
    real_start: float

    @classmethod
    def starting_in(cls, start: float, scale: float, delay: float) -> SimClock:
        return cls(start, scale, time.time() + delay)

    def now(self) -> float:
        return self.start + (time.time() - self.real_start) * self.scale

    def real_at(self, t: float) -> float:
        return self.real_start + (t - self.start) / self.scale

    def real_seconds(self, seconds: float) -> float:
        return seconds / self.scale

    def args(self) -> list[str]:
        """The hidden options of `anchord serve` (and of the world) for this clock."""
        return ["--clock-start", repr(self.start), "--clock-scale", repr(self.scale),
                "--clock-real-start", repr(self.real_start)]


def scale_for(minutes_per_hour: float) -> float:
    if minutes_per_hour <= 0:
        raise ValueError("--minutes-per-hour must be positive")
    return 60.0 / minutes_per_hour
