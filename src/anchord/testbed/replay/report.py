"""Totals per topic group, a terminal table and the JSON report of an `anchord rpl` run."""

from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from anchord.testbed.replay.runner import EXCLUDED_WHY, TOLERANCES, Result

GROUPS = ("val", "iter", "serve", "black", "fwd", "cache", "nsec", "ede", "other")
STATUSES = ("pass", "fail", "unsupported", "excluded")

# catalogue.tsv's first topic -> the report's group.
_CATALOGUE_GROUP = {"val": "val", "iter": "iter", "serve": "serve", "black": "black",
                    "fwd": "fwd", "cache": "cache", "nsec-aggr/negative": "nsec",
                    "ede": "ede"}
_PREFIX_GROUP = (("serve_expired", "serve"), ("serve", "serve"), ("val_", "val"),
                 ("iter_", "iter"), ("black_", "black"), ("fwd_", "fwd"),
                 ("cache", "cache"), ("nsec", "nsec"), ("ede", "ede"))


@cache
def _catalogue(folder: str) -> dict[tuple[str, str], str]:
    """(repo, file) -> group, from catalogue.tsv beside the scenario folders."""
    path = Path(folder) / "catalogue.tsv"
    table: dict[tuple[str, str], str] = {}
    if not path.is_file():
        return table
    with path.open(encoding="utf-8") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            first = (row.get("groups") or "").split(",")[0].strip()
            table[(row.get("repo", ""), row.get("file", ""))] = \
                _CATALOGUE_GROUP.get(first, "other")
    return table


def group_of(file: str) -> str:
    p = Path(file)
    found = _catalogue(str(p.parent.parent)).get((p.parent.name, p.name))
    if found:
        return found
    for prefix, group in _PREFIX_GROUP:
        if p.name.startswith(prefix):
            return group
    return "other"


def totals(results: list[Result]) -> dict[str, dict[str, int]]:
    table: dict[str, Counter[str]] = {g: Counter() for g in GROUPS}
    overall: Counter[str] = Counter()
    for r in results:
        table[group_of(r.file)][r.status] += 1
        overall[r.status] += 1
    out = {g: {s: c[s] for s in STATUSES} for g, c in table.items() if sum(c.values())}
    out["total"] = {s: overall[s] for s in STATUSES}
    return out


# Pass rates by suite and file-name prefix, with the floor issue 5 sets for each; a
# scenario counts when it is not excluded, and unsupported counts as not passed.
RATE_FLOORS = (("deckard", "val_", 0.90), ("deckard", "iter_", 0.85), ("deckard", "nsec", 0.85),
               ("unbound", "val_", 0.80), ("unbound", "black_", 0.80),
               ("unbound", "serve_", 0.70), ("unbound", "iter_", 0.70))


@dataclass(frozen=True, slots=True)
class Rate:
    suite: str
    files: str
    passed: int
    counted: int
    floor: float

    @property
    def rate(self) -> float | None:
        return self.passed / self.counted if self.counted else None


def rates(results: list[Result]) -> list[Rate]:
    out: list[Rate] = []
    for suite, prefix, floor in RATE_FLOORS:
        mine = [r for r in results if Path(r.file).parent.name == suite
                and Path(r.file).name.startswith(prefix) and r.status != "excluded"]
        out.append(Rate(suite, f"{prefix}*", sum(r.status == "pass" for r in mine), len(mine),
                        floor))
    return out


def format_rates(results: list[Result]) -> list[str]:
    lines = [f"{'suite':8} {'files':8} {'passed':>7} {'of':>4} {'rate':>6} {'floor':>6}"]
    for row in rates(results):
        if row.rate is None:
            continue
        lines.append(f"{row.suite:8} {row.files:8} {row.passed:7} {row.counted:4} "
                     f"{row.rate:6.0%} {row.floor:6.0%}"
                     + ("" if row.rate >= row.floor else "  below floor"))
    return lines


def format_table(results: list[Result], verbose: bool = False) -> str:
    lines: list[str] = []
    if verbose:
        for r in results:
            line = f"{r.status.upper():12} {Path(r.file).parent.name}/{Path(r.file).name}"
            lines.append(line + (f"  {r.reason}" if r.reason else ""))
        lines.append("")
    lines.append(f"{'group':8} {'pass':>6} {'fail':>6} {'unsup':>6} {'excl':>6} {'total':>6}")
    for group, counts in totals(results).items():
        if group == "total":
            lines.append("-" * 43)
        lines.append(f"{group:8} {counts['pass']:6} {counts['fail']:6} "
                     f"{counts['unsupported']:6} {counts['excluded']:6} "
                     f"{sum(counts.values()):6}")
    lines.append("")
    lines.extend(format_rates(results))
    lines.append("")
    dropped = [r for r in results if r.status == "excluded"]
    if dropped:
        lines.append(f"excluded, not counted as failures: {len(dropped)} scenario(s) whose "
                     f"{EXCLUDED_WHY}:")
        lines.extend(f"  - {Path(r.file).parent.name}/{Path(r.file).name}" for r in dropped)
        lines.append("")
    lines.append("tolerances applied when comparing answers:")
    lines.extend(f"  - {t}" for t in TOLERANCES)
    return "\n".join(lines)


def to_json(results: list[Result]) -> dict[str, object]:
    return {
        "results": [{"file": r.file, "status": r.status, "reason": r.reason,
                     "group": group_of(r.file), "notes": r.notes,
                     "unmatched_upstream": r.unmatched_upstream} for r in results],
        "totals": totals(results),
        "rates": [{"suite": r.suite, "files": r.files, "passed": r.passed,
                   "counted": r.counted, "rate": r.rate, "floor": r.floor}
                  for r in rates(results)],
        "tolerances": list(TOLERANCES),
    }


def write_json(results: list[Result], path: str | Path) -> None:
    Path(path).write_text(json.dumps(to_json(results), indent=2) + "\n", encoding="utf-8")


__all__ = ["GROUPS", "format_table", "group_of", "rates", "to_json", "totals", "write_json"]
