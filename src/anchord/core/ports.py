"""The two ports through which the resolution core meets the world: a Clock and a Transport.

The core never reads the wall clock or opens a socket. `engine/` implements these for
real sockets and time; the scenario replay implements them with scripted servers and a
fake clock; the incident replay with a scaled clock. All drive the same core.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

import dns.message


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch, as the resolver should believe it (may be simulated)."""
        ...


@dataclass(frozen=True, slots=True)
class ServerAddress:
    host: str  # an IP address literal
    port: int = 53

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


class UpstreamError(enum.Enum):
    TIMEOUT = "timeout"
    NETWORK = "network error"  # refused connection, unreachable, reset
    MALFORMED = "malformed response"  # could not parse, or did not match the query


@dataclass(frozen=True, slots=True)
class UpstreamResult:
    """What came back for one upstream query: a parsed response or why there is none."""

    server: ServerAddress
    response: dns.message.Message | None
    error: UpstreamError | None = None
    rtt: float = 0.0  # seconds, as measured on the transport's clock
    tcp: bool = False

    @property
    def ok(self) -> bool:
        return self.response is not None


class Transport(Protocol):
    async def query(
        self,
        server: ServerAddress,
        request: dns.message.Message,
        *,
        tcp: bool = False,
        timeout: float = 1.5,
    ) -> UpstreamResult:
        """Send `request` to `server`, return the matched response or the error.

        Implementations check that the response matches the query (ID, question,
        source) and report a mismatch as MALFORMED. They never raise for DNS or network
        trouble: that is a result, not an exception.
        """
        ...
