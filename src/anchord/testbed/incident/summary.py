"""The numbers of one replay: DIR/summary.json and the terminal table.

Definitions (also in notes/README-replay.md):
- NOERROR shares count each client question once, at its first attempt, for .de names;
  `incident_without_stale` counts a stale NOERROR as not NOERROR (what clients would have
  seen without serve-stale). `after_nta` starts one simulated minute after the NTA was
  added and ends at the repair; `after_repair` runs from the repair to the end.
- `servfail_ede` and `servfail_text_names_key_tag` look at every .de SERVFAIL response
  (retries included) between the break and the NTA (22:17 when there is none).
- `upstream_queries_per_failing_name_per_30s`: in each 30 s window of the incident, the
  upstream queries for names at or below a failing child zone (a child with a SERVFAIL or
  a stale answer to a client in that window), divided by the number of such zones; the
  maximum over windows with at least 5 failing zones.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from anchord.testbed.incident.record import Event, Upstream
from anchord.testbed.incident.timeline import Timeline, iso

WINDOW = 30.0
MIN_FAILING = 5


@dataclass(slots=True)
class Marks:
    """When things happened (simulated epoch), as seen by the replay."""

    break_at: float | None = None
    nta_added_at: float | None = None
    repair_at: float | None = None
    nta_removed_at: float | None = None
    nta_removed_by: str | None = None
    nta_error: str = ""

    def as_list(self) -> list[tuple[str, float]]:
        out = [("break", self.break_at), ("NTA", self.nta_added_at),
               ("repair", self.repair_at), ("NTA removed", self.nta_removed_at)]
        return [(label, t) for label, t in out if t is not None]


def child_zone(name: str) -> str:
    """'www.c12.de.' -> 'c12.de.'; the registrable zone under the TLD."""
    labels = name.rstrip(".").split(".")
    return ".".join(labels[-2:]) + "." if len(labels) >= 2 else name


def share(events: Iterable[Event], lo: float, hi: float, stale_counts: bool = True
          ) -> float | None:
    total = ok = 0
    for e in events:
        if lo <= e.t < hi:
            total += 1
            if e.rcode == "NOERROR" and (stale_counts or not e.stale):
                ok += 1
    return round(ok / total, 4) if total else None


def names_key_tag(texts: tuple[str, ...], zone: str, key_tag: int) -> bool:
    zone_re = re.compile(r"(^|[\s/(\"'])" + re.escape(zone.rstrip(".")) + r"\.?([\s/,)\"':]|$)")
    tag_re = re.compile(r"(?<!\d)" + str(key_tag) + r"(?!\d)")
    return any(zone_re.search(t) and tag_re.search(t) for t in texts)


def summarize(events: list[Event], upstream: list[Upstream], marks: Marks, tl: Timeline,
              rogue_key_tag: int, variant: str = "default") -> dict[str, Any]:
    de = [e for e in events if e.group == "de"]
    first = [e for e in de if e.attempt == 1]
    brk = marks.break_at or tl.break_at
    nta = marks.nta_added_at
    incident_end = nta if nta is not None else tl.nta_at
    repair = marks.repair_at or tl.repair_at
    noerror = {
        "before": share(first, tl.start, brk),
        "incident": share(first, brk, incident_end),
        "incident_without_stale": share(first, brk, incident_end, stale_counts=False),
        "after_nta": share(first, (nta if nta is not None else tl.nta_at) + 60, repair),
        "after_repair": share(first, repair, tl.end + 1),
    }
    servfails = [e for e in de if e.rcode == "SERVFAIL" and brk <= e.t < incident_end]
    per_code: Counter[str] = Counter()
    without = 0
    named = 0
    for e in servfails:
        if not e.ede:
            without += 1
        for code in sorted(set(e.ede)):
            per_code[str(code)] += 1
        if names_key_tag(e.ede_text, "de", rogue_key_tag):
            named += 1
    servfail_ede: dict[str, int] = dict(sorted(per_code.items(), key=lambda kv: int(kv[0])))
    servfail_ede["without_ede"] = without
    return {
        "scenario": "de-2026-05-05",
        "variant": variant,
        "noerror_share": noerror,
        "servfail_ede": servfail_ede,
        "servfail_count": len(servfails),
        "servfail_text_names_key_tag": round(named / len(servfails), 4) if servfails else None,
        "rogue_key_tag": rogue_key_tag,
        "nta_added_at": iso(nta),
        "nta_removed_at": iso(marks.nta_removed_at),
        "nta_removed_by": marks.nta_removed_by,
        "client_queries": len(events),
        "client_questions": sum(1 for e in events if e.attempt == 1),
        "unique_client_names": len({(e.client, e.name) for e in events}),
        "upstream_queries": len(upstream),
        "upstream_queries_per_failing_name_per_30s":
            upstream_per_failing_name(de, upstream, brk, incident_end),
        "timeouts": sum(1 for e in events if e.rcode == "TIMEOUT"),
        # Real milliseconds: at scale S one real ms is S simulated ms, so a slow resolver
        # shifts answers in simulated time (events are stamped when the query was sent).
        "client_rtt_ms_p99": _p99([e.rtt_ms for e in events]),
    }


def _p99(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 1)


def upstream_per_failing_name(de: list[Event], upstream: list[Upstream], lo: float,
                              hi: float) -> float | None:
    failing: dict[int, set[str]] = defaultdict(set)
    for e in de:
        if lo <= e.t < hi and (e.rcode == "SERVFAIL" or e.stale):
            failing[int((e.t - lo) // WINDOW)].add(child_zone(e.name))
    asked: dict[int, Counter[str]] = defaultdict(Counter)
    for u in upstream:
        if lo <= u.t < hi and u.qname.endswith(".de.") and u.qname.count(".") >= 2:
            asked[int((u.t - lo) // WINDOW)][child_zone(u.qname)] += 1
    best: float | None = None
    for w, zones in failing.items():
        if len(zones) < MIN_FAILING:
            continue
        value = sum(asked[w][z] for z in zones) / len(zones)
        best = value if best is None else max(best, value)
    return None if best is None else round(best, 3)


def table(summary: dict[str, Any]) -> str:
    """The summary as aligned text for the terminal."""
    ns = summary["noerror_share"]

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.1f}%"

    def num(v: float | None, none: str) -> str:
        # A figure that could not be had reads as words, not Python's "None".
        return none if v is None else str(v)

    rows = [
        ("NOERROR share (.de, first attempts)", ""),
        ("  before        18:00-19:30", pct(ns["before"])),
        ("  incident      19:30-NTA", pct(ns["incident"])),
        ("  incident, stale not counted", pct(ns["incident_without_stale"])),
        ("  after NTA     (+1 min)-23:30", pct(ns["after_nta"])),
        ("  after repair  23:30-00:30", pct(ns["after_repair"])),
        ("SERVFAILs in the incident (.de)", str(summary["servfail_count"])),
        ("  EDE codes", ", ".join(f"{k}: {v}" for k, v in summary["servfail_ede"].items())),
        ("  text names de and key tag " + str(summary["rogue_key_tag"]),
         pct(summary["servfail_text_names_key_tag"])),
        ("NTA added / removed", f"{summary['nta_added_at'] or '-'} / "
                                f"{summary['nta_removed_at'] or '-'} "
                                f"({summary['nta_removed_by'] or '-'})"),
        ("client queries (unique client,name)",
         f"{summary['client_queries']} ({summary['unique_client_names']})"),
        ("upstream queries", str(summary["upstream_queries"])),
        ("upstream per failing name per 30 s (max)",
         num(summary["upstream_queries_per_failing_name_per_30s"],
             f"- (no 30 s window with {MIN_FAILING} failing zones)")),
        ("client RTT p99 (real ms)", num(summary.get("client_rtt_ms_p99"), "-")),
    ]
    width = max(len(a) for a, _ in rows)
    return "\n".join(f"{a.ljust(width)}  {b}".rstrip() for a, b in rows)
