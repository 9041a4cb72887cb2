"""The whole peer scenario set (Unbound and Deckard .rpl files) as a regression gate.

Every scenario must pass unless tests/rpl_known_failures.txt lists it (one line per
file: the path relative to the scenario folder, a TAB, a one-line reason); an
unsupported scenario counts as failing; an excluded one (its config uses rpz or
response-ip, out of scope) counts as neither and must not be listed. A listed scenario
that now passes fails the test too, so the list only shrinks: delete its line.
Regenerate the reasons with `anchord rpl <folder> -v`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from anchord.testbed.replay.command import collect, run_one
from anchord.testbed.replay.report import rates
from anchord.testbed.replay.runner import Result
from tests.requirements import scenario_dir

KNOWN = Path(__file__).resolve().parent / "rpl_known_failures.txt"


def _known() -> dict[str, str]:
    known: dict[str, str] = {}
    for line in KNOWN.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        path, _, reason = line.partition("\t")
        known[path.strip()] = reason.strip()
    return known


def test_known_failures_file_is_well_formed() -> None:
    for number, line in enumerate(KNOWN.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        path, tab, reason = line.partition("\t")
        assert tab and path.endswith(".rpl") and reason.strip(), f"line {number}: {line!r}"


@pytest.fixture(scope="module")
def results() -> dict[str, Result]:
    folder = scenario_dir()
    found = {p.relative_to(folder).as_posix(): run_one(p) for p in collect((str(folder),))}
    assert found, f"no scenarios found in {folder}"
    return found


def test_pass_rates_hold_issue_5_floors(results: dict[str, Result]) -> None:
    below = [f"{r.suite} {r.files}: {r.passed}/{r.counted} < {r.floor:.0%}"
             for r in rates(list(results.values())) if r.rate is None or r.rate < r.floor]
    assert not below, below


def test_every_scenario_passes_or_is_a_listed_known_failure(
        results: dict[str, Result]) -> None:
    known = _known()
    # "excluded" (rpz / response-ip configs, out of scope) is neither a pass nor a failure.
    new_failures = [f"{path}: {r.status}: {r.reason}" for path, r in sorted(results.items())
                    if r.status not in ("pass", "excluded") and path not in known]
    now_passing = [path for path in sorted(known)
                   if path in results and results[path].status in ("pass", "excluded")]
    missing = [path for path in sorted(known) if path not in results]
    problems = []
    if new_failures:
        problems.append(f"{len(new_failures)} scenario(s) fail that are not known failures:\n  "
                        + "\n  ".join(new_failures))
    if now_passing:
        problems.append(f"{len(now_passing)} known failure(s) now pass (or are excluded); "
                        f"remove them from "
                        f"{KNOWN.name}:\n  " + "\n  ".join(now_passing))
    if missing:
        problems.append(f"{len(missing)} listed scenario(s) do not exist:\n  "
                        + "\n  ".join(missing))
    assert not problems, "\n".join(problems)
