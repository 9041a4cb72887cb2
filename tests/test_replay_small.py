"""`anchord replay de-2026-05-05` in small: the relations issue 4 asks of the replay.

A few hundred names, a few clients, one simulated hour in 6 real seconds; the real
`anchord serve` and the testbed run as subprocesses on loopback. Two runs (the default
and --no-serve-stale), about a minute each.
"""

from __future__ import annotations

import json
import random
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from anchord.testbed.incident.record import read_events
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
    pytest.skip("no free ports for the replay")


def replay(tmp: Path, **changes: Any) -> dict[str, Any]:
    opts = Options(out=tmp, port_base=free_port_base(), cache_dir=tmp.parent / "worlds",
                   **{**SMALL, **changes})
    return run_once(opts, "test")


@pytest.fixture(scope="module")
def default_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("replay") / "default"
    return out, replay(out)


@pytest.fixture(scope="module")
def no_stale_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("replay") / "no-serve-stale"
    return out, replay(out, serve_stale=False)


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
    assert sum(6 in e.ede for e in stale) >= 0.9 * len(stale)


def test_nta_restores_noerror_and_its_recheck_removes_it_after_the_repair(
        default_run: tuple[Path, dict[str, Any]]) -> None:
    out, s = default_run
    ns = s["noerror_share"]
    assert s["nta_added_at"] is not None
    assert ns["after_nta"] >= ns["before"] - 0.01, ns
    assert s["nta_removed_by"] == "recheck"
    assert "2026-05-05T23:30:00Z" < s["nta_removed_at"] <= "2026-05-05T23:36:00Z"
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
    value = s["upstream_queries_per_failing_name_per_30s"]
    assert value is not None and value <= 2, value


def test_control_group_is_flat(default_run: tuple[Path, dict[str, Any]]) -> None:
    out, _ = default_run
    tl = Timeline()
    control = [e for e in read_events(out / "events.csv")
               if e.group == "control" and e.attempt == 1]
    assert control
    assert share(control, tl.start, tl.end + 1) == 1.0


def test_report_has_six_charts(default_run: tuple[Path, dict[str, Any]]) -> None:
    from anchord.testbed.incident.report import CHARTS, write_report

    out, s = default_run
    write_report(out, s)
    page = (out / "report.html").read_text()
    for name, _ in CHARTS:
        assert (out / name).stat().st_size > 1000
        assert name in page


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
