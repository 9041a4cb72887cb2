"""Clocks. The only module that reads the machine's time for the resolver."""

from __future__ import annotations

import datetime
import time

ISO_UTC = "%Y-%m-%dT%H:%M:%SZ"


def utc_iso(t: float) -> str:
    """Epoch seconds -> '2026-05-05T23:35:00Z', for log lines an operator reads beside
    `anchord nta list`. Cut to the second (not rounded) as the CLI cuts, so both show the
    same end for the same NTA."""
    return datetime.datetime.fromtimestamp(t, datetime.UTC).strftime(ISO_UTC)


def parse_utc_iso(text: str) -> float:
    """The inverse of utc_iso: tools that read the log (the incident replay) parse here,
    so a change of the format changes the reader with it. ValueError if not that form."""
    return datetime.datetime.strptime(text, ISO_UTC).replace(tzinfo=datetime.UTC).timestamp()


class SystemClock:
    """Wall-clock time, optionally skewed by a fixed offset (for tests of RRSIG windows)."""

    def __init__(self, offset: float = 0.0) -> None:
        self.offset = offset

    def now(self) -> float:
        return time.time() + self.offset

    def real_seconds(self, seconds: float) -> float:
        """How long `seconds` of resolver time lasts in real time."""
        return seconds


class FakeClock:
    """A clock that moves only when told to: scenario replays and unit tests."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds

    def set(self, when: float) -> None:
        self._now = float(when)

    def real_seconds(self, seconds: float) -> float:
        return seconds


class ScaledClock:
    """Simulated time that runs `scale` times faster than real time from `start`.

    The incident replay shares one of these (by its start and scale) between the
    testbed, the resolver and the clients so that every timer moves together.
    """

    def __init__(self, start: float, scale: float, real_start: float | None = None) -> None:
        self.start = float(start)
        self.scale = float(scale)
        self.real_start = time.time() if real_start is None else float(real_start)

    def now(self) -> float:
        return self.start + (time.time() - self.real_start) * self.scale

    def real_seconds(self, seconds: float) -> float:
        return seconds / self.scale
