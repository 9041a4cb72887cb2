"""The replay's records: DIR/events.csv (one row per client query and response) and
DIR/upstream.csv (one row per query the resolver sent, written by the world process)."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

EVENT_FIELDS = ("t", "client", "name", "group", "attempt", "rcode", "ad", "stale", "ede",
                "ede_text", "rtt_ms")


@dataclass(slots=True)
class Event:
    t: float  # simulated epoch time the attempt was sent
    client: int
    name: str
    group: str  # "de" or "control"
    attempt: int  # 1 = first try, 2..4 = retries after SERVFAIL
    rcode: str  # NOERROR, SERVFAIL, NXDOMAIN, ... or TIMEOUT
    ad: bool
    stale: bool  # EDE 3 or 19 present
    ede: tuple[int, ...]
    ede_text: tuple[str, ...]
    rtt_ms: float


class EventWriter:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._f = open(path, "w", newline="", buffering=1 << 16)  # noqa: SIM115
        self._w = csv.writer(self._f)
        self._w.writerow(EVENT_FIELDS)
        self.count = 0

    def write(self, e: Event) -> None:
        self._w.writerow((f"{e.t:.3f}", e.client, e.name, e.group, e.attempt, e.rcode,
                          int(e.ad), int(e.stale), ";".join(map(str, e.ede)),
                          " | ".join(e.ede_text), f"{e.rtt_ms:.1f}"))
        self.count += 1

    def close(self) -> None:
        self._f.close()


def read_events(path: Path) -> Iterator[Event]:
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            ede = tuple(int(c) for c in row["ede"].split(";") if c)
            text = tuple(row["ede_text"].split(" | ")) if row["ede_text"] else ()
            yield Event(float(row["t"]), int(row["client"]), row["name"], row["group"],
                        int(row["attempt"]), row["rcode"], row["ad"] == "1",
                        row["stale"] == "1", ede, text, float(row["rtt_ms"]))


@dataclass(slots=True)
class Upstream:
    t: float  # simulated
    server: str
    zone: str
    qname: str
    qtype: str


def read_upstream(path: Path, to_sim: float, scale: float, real_start: float
                  ) -> Iterator[Upstream]:
    """Rows of upstream.csv with their real stamps turned into simulated time
    (sim = to_sim + (real - real_start) * scale)."""
    if not path.exists():
        return
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            t = to_sim + (float(row["real"]) - real_start) * scale
            yield Upstream(t, row["server"], row["zone"], row["qname"], row["qtype"])


def write_upstream_sim(src: Path, dst: Path, to_sim: float, scale: float,
                       real_start: float) -> int:
    """Rewrite upstream.csv with a simulated-time column first; returns the row count."""
    n = 0
    with open(dst, "w", newline="") as out:
        w = csv.writer(out)
        w.writerow(("t", "server", "zone", "qname", "qtype"))
        for u in read_upstream(src, to_sim, scale, real_start):
            w.writerow((f"{u.t:.3f}", u.server, u.zone, u.qname, u.qtype))
            n += 1
    return n
