"""`anchord replay de-2026-05-05` in small: the relations issue 4 asks of the replay.

A few hundred names, a few clients, one simulated hour in 6 real seconds; the real
`anchord serve` and the testbed run as subprocesses on loopback. The four runs of
--compare-variants (default, --no-serve-stale, then --no-nta and --no-failure-cache side
by side), each about 45 s on a loaded 2-core machine, sharing one signed world.
"""

from __future__ import annotations

import concurrent.futures
import json
import random
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest

from anchord.testbed.incident.record import Event, read_events
from anchord.testbed.incident.report import read_upstream_sim
from anchord.testbed.incident.run import Options, ReplayError, check_ports, run_once
from anchord.testbed.incident.summary import share
from anchord.testbed.incident.timeline import Timeline

SMALL = {"names": 150, "clients": 8, "minutes_per_hour": 0.1, "rate": 120.0,
         "control_names": 30, "progress": False}
SUMMARY_KEYS = {"noerror_share", "servfail_ede", "servfail_text_names_key_tag", "nta_added_at",
                "nta_removed_at", "nta_removed_by", "client_queries", "unique_client_names",
                "upstream_queries", "upstream_queries_per_failing_name_per_30s"}


def free_port_base() -> int:
    for _ in range(50):
        base = random.randrange(20000, 60000, 10)
        try:
            check_ports(Options(out=Path("."), port_base=base))
        except ReplayError:
            continue
        return base
    pytest.fail("no free ports for the replay in 50 tries")


def replay(tmp: Path, port_base: int | None = None, **changes: Any) -> dict[str, Any]:
    # Every run of the module signs its world once, into the shared cache beside them.
    opts = Options(out=tmp, port_base=port_base or free_port_base(),
                   cache_dir=tmp.parent / "worlds", **{**SMALL, **changes})
    return run_once(opts, tmp.name)


@pytest.fixture(scope="module")
def replay_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder for the module's runs, named as --compare-variants names them."""
    return tmp_path_factory.mktemp("replay")


@pytest.fixture(scope="module")
def default_run(replay_root: Path) -> tuple[Path, dict[str, Any]]:
    out = replay_root / "default"
    return out, replay(out)


@pytest.fixture(scope="module")
def no_stale_run(replay_root: Path) -> tuple[Path, dict[str, Any]]:
    out = replay_root / "no-serve-stale"
    return out, replay(out, serve_stale=False)


@pytest.fixture(scope="module")
def variant_runs(replay_root: Path, default_run: tuple[Path, dict[str, Any]]
                 ) -> dict[str, tuple[Path, dict[str, Any]]]:
    """--no-nta and --no-failure-cache, side by side: a replay's wall time is its
    simulated day (the clients use a third of a core), so two at once cost one run's time.
    After the default run, so the signed world is in the cache for both."""
    runs = {"no-nta": {"nta": False}, "no-failure-cache": {"failure_cache": False}}
    bases: list[int] = []
    while len(bases) < len(runs):
        base = free_port_base()
        if all(abs(base - b) >= 10 for b in bases):
            bases.append(base)
    with concurrent.futures.ThreadPoolExecutor(len(runs)) as pool:
        futures = {name: pool.submit(replay, replay_root / name, base, **changes)
                   for (name, changes), base in zip(runs.items(), bases, strict=True)}
        return {name: (replay_root / name, f.result()) for name, f in futures.items()}


def test_summary_has_the_issue_keys(default_run: tuple[Path, dict[str, Any]]) -> None:
    out, s = default_run
    assert SUMMARY_KEYS <= set(s)
    assert set(s["noerror_share"]) == {"before", "incident", "incident_without_stale",
                                       "after_nta", "after_repair"}
    assert json.loads((out / "summary.json").read_text())["noerror_share"] == s["noerror_share"]
    assert (out / "events.csv").stat().st_size > 0 and (out / "upstream.csv").exists()
    assert s["timeouts"] == 0, "clients timed out: the harness overloaded the resolver"


def test_serve_stale_keeps_noerror_through_the_incident(
        default_run: tuple[Path, dict[str, Any]]) -> None:
    ns = default_run[1]["noerror_share"]
    assert ns["before"] > 0.9
    assert ns["incident"] >= 0.95 * ns["before"], ns
    # Without counting stale answers the caches visibly drained.
    assert ns["incident_without_stale"] < 0.8 * ns["incident"], ns


def test_incident_servfails_say_ede6_naming_de_and_the_key_tag(
        default_run: tuple[Path, dict[str, Any]]) -> None:
    out, s = default_run
    tl = Timeline()
    ede = s["servfail_ede"]
    assert s["servfail_count"] > 0, "no SERVFAIL in the incident: the break did not bite"
    assert ede.get("6") == s["servfail_count"], ede
    assert "22" not in ede and ede["without_ede"] == 0, ede
    assert s["servfail_text_names_key_tag"] == 1.0
    # Stale answers in the incident lead with EDE 3; those given after a failed refresh
    # carry its reason (6) too (the RFC 8767 client timer's ones cannot know it yet).
    stale = [e for e in read_events(out / "events.csv")
             if e.group == "de" and e.stale and tl.break_at + 600 <= e.t < tl.nta_at]
    assert stale and all(e.ede[0] == 3 for e in stale)
    # Those the timer gave (answered after it, in real ms) are left out: on a loaded
    # machine they are many, and the refresh they did not wait for had no reason yet.
    timer_ms = 1000 * tomllib.loads((out / "resolver.toml").read_text()
                                    )["serve_stale"]["client_timeout"] / s["settings"]["scale"]
    before_timer = [e for e in stale if e.rtt_ms < 0.8 * timer_ms]
    assert before_timer, (len(stale), timer_ms)
    assert sum(6 in e.ede for e in before_timer) >= 0.9 * len(before_timer)


def test_nta_restores_noerror_and_its_recheck_removes_it_after_the_repair(
        default_run: tuple[Path, dict[str, Any]]) -> None:
    out, s = default_run
    ns = s["noerror_share"]
    assert s["nta_added_at"] is not None
    assert ns["after_nta"] >= ns["before"] - 0.01, ns
    assert s["nta_removed_by"] == "recheck"
    # Its recheck (every 300 s) sees the repair at the first or second try: a loaded
    # machine delays a check by simulated minutes (0.1 real s is one at this scale).
    assert "2026-05-05T23:30:00Z" < s["nta_removed_at"] <= "2026-05-05T23:42:00Z"
    assert ns["after_repair"] >= ns["before"] - 0.01, ns
    # Answers under the NTA are insecure (no AD); after its removal AD is back.
    tl = Timeline()
    events = [e for e in read_events(out / "events.csv") if e.group == "de"]
    under = [e for e in events if tl.nta_at + 120 <= e.t < tl.repair_at]
    assert under and not any(e.ad for e in under)
    assert all(33 in e.ede for e in under if e.rcode == "NOERROR")
    after = [e for e in events if tl.repair_at + 900 <= e.t and e.rcode == "NOERROR"]
    assert after and all(e.ad for e in after)


def test_upstream_stays_bounded_although_clients_retry(
        default_run: tuple[Path, dict[str, Any]]) -> None:
    s = default_run[1]
    assert s["client_queries"] > s["client_questions"]  # retries happened
    # Below every peer but PowerDNS (PEERS.md: Unbound 2.7, BIND 3.0, Knot 14.2). Not <= 2:
    # refreshing a rarely asked failing name costs its A and then the DS at both de servers
    # (a bogus DS is tried at the other server once), so a 30 s window in which one of its
    # five failing names refreshes reads 2.2; where the windows fall decides that.
    value = s["upstream_queries_per_failing_name_per_30s"]
    assert value is not None and value < 2.7, value


def test_control_group_is_flat(default_run: tuple[Path, dict[str, Any]]) -> None:
    out, _ = default_run
    tl = Timeline()
    control = [e for e in read_events(out / "events.csv")
               if e.group == "control" and e.attempt == 1]
    assert control
    assert share(control, tl.start, tl.end + 1) == 1.0


def _record_marks(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, list[str]]]:
    """Every chart's title with the labels of the marks report._setup drew on it."""
    from anchord.testbed.incident import report

    seen: list[tuple[str, list[str]]] = []
    setup = report._setup

    def recording(ax: Any, title: str, marks: list[tuple[str, float]], ylabel: str) -> None:
        seen.append((title, [label for label, _ in marks]))
        setup(ax, title, marks, ylabel)

    monkeypatch.setattr(report, "_setup", recording)
    return seen


ALL_MARKS = ["break", "NTA", "repair", "NTA removed"]


def test_report_has_six_charts_each_with_the_four_marks(
        default_run: tuple[Path, dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    from anchord.testbed.incident.report import CHARTS, write_report

    out, s = default_run
    seen = _record_marks(monkeypatch)
    write_report(out, s)
    page = (out / "report.html").read_text()
    for name, _ in CHARTS:
        assert (out / name).stat().st_size > 1000
        assert name in page
    assert [title for title, _ in seen] == [title for _, title in CHARTS[:2] + CHARTS[5:]
                                            + CHARTS[2:5]]
    assert all(labels == ALL_MARKS for _, labels in seen), seen
    # The page says where the dashed lines are, with the run's own NTA times.
    assert "Dashed lines on every chart: break 19:30:00, NTA " in page
    assert f"NTA removed {s['nta_removed_at'][11:19]}" in page


def test_without_serve_stale_noerror_falls_as_caches_drain(
        no_stale_run: tuple[Path, dict[str, Any]],
        default_run: tuple[Path, dict[str, Any]]) -> None:
    out, s = no_stale_run
    ns = s["noerror_share"]
    assert ns["incident"] < 0.9 * ns["before"], ns
    assert ns["incident_without_stale"] <= ns["incident"]
    assert ns["incident"] < default_run[1]["noerror_share"]["incident"]
    tl = Timeline()
    first = [e for e in read_events(out / "events.csv") if e.group == "de" and e.attempt == 1]
    early = share(first, tl.break_at, tl.break_at + 1800)
    late = share(first, tl.nta_at - 3600, tl.nta_at)
    assert early is not None and late is not None and late < early, (early, late)


def _after_nta(out: Path) -> tuple[list[Event], list[Event]]:
    """.de first attempts and SERVFAIL responses from a minute after 22:17 to the repair."""
    tl = Timeline()
    de = [e for e in read_events(out / "events.csv")
          if e.group == "de" and tl.nta_at + 60 <= e.t < tl.repair_at]
    return [e for e in de if e.attempt == 1], [e for e in de if e.rcode == "SERVFAIL"]


def test_without_the_nta_servfails_go_on_until_the_repair(
        variant_runs: dict[str, tuple[Path, dict[str, Any]]],
        default_run: tuple[Path, dict[str, Any]]) -> None:
    out, s = variant_runs["no-nta"]
    assert s["settings"]["nta"] is False
    assert s["nta_added_at"] is None and s["nta_removed_at"] is None
    default = default_run[1]["noerror_share"]
    assert s["noerror_share"]["after_nta"] < default["after_nta"], (s["noerror_share"],
                                                                    default)
    first, servfails = _after_nta(out)
    d_first, d_servfails = _after_nta(default_run[0])
    # The long tail (never cached) keeps failing after 22:17, and what is answered is
    # only stale: the NTA is what brings fresh (insecure) answers back before the repair.
    # (When in that window the last tail name is asked is up to chance in a small world,
    # so the count is compared, not the time of the last SERVFAIL.)
    tl = Timeline()
    assert servfails and len(servfails) > 2 * len(d_servfails), (len(servfails),
                                                                 len(d_servfails))
    fresh = share(first, tl.nta_at, tl.repair_at, stale_counts=False)
    d_fresh = share(d_first, tl.nta_at, tl.repair_at, stale_counts=False)
    assert fresh is not None and d_fresh is not None and fresh < 0.8 * d_fresh, (fresh,
                                                                                 d_fresh)
    assert all(6 in e.ede and 33 not in e.ede for e in servfails)


def _incident_upstream_to_children(out: Path) -> int:
    """Upstream queries for names at or below a de child zone, between the break and 22:17."""
    tl = Timeline()
    return sum(1 for u in read_upstream_sim(out / "upstream.csv")
               if tl.break_at <= u.t < tl.nta_at and u.qname.endswith(".de.")
               and u.qname.count(".") >= 2)


def test_without_the_failure_cache_retries_are_not_answered_from_it(
        variant_runs: dict[str, tuple[Path, dict[str, Any]]],
        default_run: tuple[Path, dict[str, Any]]) -> None:
    """What the failure cache buys here: a client's retry within its hold is answered
    from it (EDE 13 Cached Error) instead of being resolved again. It does not buy
    fewer upstream queries: a zone found bogus is held in the key cache with its own
    back-off (core/chain.py), so a retry resolved again stops there without asking
    upstream. Both halves are asserted, the second as a bound (runs differ by ~30 %)."""
    out, s = variant_runs["no-failure-cache"]
    d_out, d = default_run
    assert s["settings"]["failure_cache"] is False
    assert s["client_queries"] > s["client_questions"]  # retries happened here too
    assert s["servfail_count"] > 0 and d["servfail_count"] > 0
    assert d["servfail_ede"].get("13", 0) > 0, d["servfail_ede"]
    assert "13" not in s["servfail_ede"], s["servfail_ede"]
    assert s["servfail_ede"].get("6") == s["servfail_count"]
    # Upstream stays bounded without it: about the default run's cost, far from the
    # peers' 2.7-14.2 queries per failing name per 30 s.
    up, d_up = _incident_upstream_to_children(out), _incident_upstream_to_children(d_out)
    assert up < 1.5 * d_up, (up, d_up)
    value = s["upstream_queries_per_failing_name_per_30s"]
    assert value is not None and value <= 4, value
    # The NTA and its recheck work the same without it.
    assert s["nta_added_at"] is not None and s["nta_removed_by"] == "recheck"


def test_compare_report_puts_every_chart_of_the_four_runs_side_by_side(
        default_run: tuple[Path, dict[str, Any]], no_stale_run: tuple[Path, dict[str, Any]],
        variant_runs: dict[str, tuple[Path, dict[str, Any]]], replay_root: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """What --compare-variants writes after its four runs, on this module's four runs
    (they sit in DIR/<variant>/ as --compare-variants puts them)."""
    from anchord.testbed.incident.command import VARIANTS
    from anchord.testbed.incident.report import (
        CHARTS,
        COMPARE_CHARTS,
        write_compare_report,
        write_report,
    )

    runs = {"default": default_run, "no-serve-stale": no_stale_run, **variant_runs}
    assert set(runs) == {v for v, _ in VARIANTS}
    results = {v: runs[v][1] for v, _ in VARIANTS}
    for v, (out, s) in runs.items():
        assert out == replay_root / v and (out / "summary.json").exists()
        if not (out / "report.html").exists():
            write_report(out, s)
    seen = _record_marks(monkeypatch)
    path = write_compare_report(replay_root, results)
    assert path == replay_root / "report.html"
    page = path.read_text()
    assert len(COMPARE_CHARTS) == len(CHARTS)  # every single-run chart is compared
    for name, title in COMPARE_CHARTS:
        assert title in page
        assert (replay_root / name).stat().st_size > 1000 and name in page, name
    for v in results:
        assert f"{v}/report.html" in page
        for png, _ in CHARTS:
            assert f"{v}/{png}" in page and (replay_root / v / png).exists()
    assert json.loads((replay_root / "summary.json").read_text()).keys() == results.keys()
    # The default run's marks on every panel (the EDE chart has one panel per variant).
    assert len(seen) == len(COMPARE_CHARTS) - 1 + len(results)
    assert all(labels == ALL_MARKS for _, labels in seen), seen
    assert "Dashed lines on every chart: break 19:30:00, NTA 22:1" in page


def test_clear_errors_for_a_taken_port_and_an_unwritable_folder(tmp_path: Path) -> None:
    base = free_port_base()
    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    taken.bind(("127.0.0.1", base + 1))
    try:
        r = subprocess.run([sys.executable, "-m", "anchord", "replay", "de-2026-05-05",
                            "--out", str(tmp_path / "x"), "--port-base", str(base)],
                           capture_output=True, text=True, timeout=60)
    finally:
        taken.close()
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert f"port {base + 1}" in r.stderr and "--port-base" in r.stderr
    blocker = tmp_path / "file"
    blocker.write_text("")
    r = subprocess.run([sys.executable, "-m", "anchord", "replay", "de-2026-05-05",
                        "--out", str(blocker / "sub")], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "not writable" in r.stderr and r.stderr.count("\n") == 1


def test_sigterm_stops_the_world_and_the_resolver_it_started(tmp_path: Path) -> None:
    base = free_port_base()
    out = tmp_path / "stopped"
    proc = subprocess.Popen([sys.executable, "-m", "anchord", "replay", "de-2026-05-05",
                             "--out", str(out), "--port-base", str(base), "--names", "40",
                             "--clients", "2", "--control-names", "10", "--quiet",
                             "--no-cache"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 120
    while not (out / "resolver.log").exists() and proc.poll() is None:
        assert time.monotonic() < deadline, "the replay's resolver never started"
        time.sleep(0.2)
    time.sleep(1.0)
    proc.terminate()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted" in err, err
    # Nothing it started is left holding its ports.
    check_ports(Options(out=Path("."), port_base=base))
