"""Pieces of the replay that need no processes: wire parsing, the summary's arithmetic,
the terminal table, the clients' retries (against a loopback socket in this process)."""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import time
from pathlib import Path
from typing import cast

import dns.edns
import dns.message
import dns.name
import dns.rcode
import dns.rrset
import pytest

from anchord.control.config import Config
from anchord.core.ports import Transport
from anchord.engine.clock import FakeClock
from anchord.engine.driver import build_resolver
from anchord.testbed.incident.clients import RETRY_DELAYS, Clients, Workload, parse_response
from anchord.testbed.incident.record import Event, Upstream
from anchord.testbed.incident.run import NTA_LIFETIME_SECONDS, Options, Run, nta_event
from anchord.testbed.incident.summary import (
    Marks,
    child_zone,
    names_key_tag,
    summarize,
    table,
)
from anchord.testbed.incident.timeline import SimClock, Timeline, epoch, scale_for


def test_parse_response_reads_rcode_ad_and_ede() -> None:
    q = dns.message.make_query("www.c1.de.", "A", use_edns=0)
    r = dns.message.make_response(q)
    r.set_rcode(dns.rcode.SERVFAIL)
    r.answer.append(dns.rrset.from_text("www.c1.de.", 30, "IN", "A", "192.0.2.1"))
    r.use_edns(0, 0, 1232, options=[dns.edns.EDEOption(3), dns.edns.EDEOption(
        6, "RRSIG by de key tag 4711 does not verify")])
    qid, rcode, text, ad, codes, texts = parse_response(r.to_wire())
    assert (qid, rcode, text, ad) == (q.id, 2, "SERVFAIL", False)
    assert codes == (3, 6) and texts[1].endswith("does not verify")


def test_key_tag_match_needs_zone_and_tag() -> None:
    assert names_key_tag(("RRSIG for c1.de/DS by de key tag 4711 (NSEC3)",), "de", 4711)
    assert names_key_tag(("found for example.de/nsec3 (keytag=4711) in de.",), "de", 4711)
    assert not names_key_tag(("RRSIG by c1.de key tag 4711",), "de", 4711)
    assert not names_key_tag(("RRSIG by de key tag 47110",), "de", 4711)
    assert child_zone("www.c12.de.") == "c12.de."


def test_scale_and_clock() -> None:
    assert scale_for(1 / 6) == 360
    c = SimClock(epoch("2026-05-05T18:00"), 360, 1000.0)
    assert c.real_at(epoch("2026-05-05T19:00")) == 1010.0


def test_zipf_popularity_is_skewed() -> None:
    w = Workload([f"n{i}" for i in range(100)], ["c"], control_share=0.0, seed=3)
    rng = random.Random(1)
    picks = [w.pick(rng)[0] for _ in range(5000)]
    top = max(set(picks), key=picks.count)
    assert picks.count(top) > 800  # rank 1 of 100 gets ~19% at s = 1


def test_summary_windows_and_upstream_per_failing_name() -> None:
    tl = Timeline()
    ev = []
    for k in range(10):  # before: all NOERROR
        ev.append(Event(tl.start + 60 * k, 0, f"www.c{k}.de.", "de", 1, "NOERROR", True,
                        False, (), (), 1.0))
    for k in range(10):  # incident: 8 stale NOERROR, 2 SERVFAIL with EDE 6
        t = tl.break_at + 3 * k
        stale = k < 8
        ev.append(Event(t, 0, f"www.c{k}.de.", "de", 1, "NOERROR" if stale else "SERVFAIL",
                        False, stale, (3, 6) if stale else (6,),
                        ("", "by de key tag 77") if stale else ("by de key tag 77",), 1.0))
    up = [Upstream(tl.break_at + 1, "x", "de.", f"c{k}.de.", "DS") for k in range(10)]
    up += [Upstream(tl.break_at + 2, "x", f"c{k}.de.", f"www.c{k}.de.", "A") for k in range(10)]
    s = summarize(ev, up, Marks(nta_added_at=tl.nta_at), tl, 77)
    assert s["noerror_share"]["before"] == 1.0
    assert s["noerror_share"]["incident"] == 0.8
    assert s["noerror_share"]["incident_without_stale"] == 0.0
    assert s["servfail_ede"] == {"6": 2, "without_ede": 0}
    assert s["servfail_text_names_key_tag"] == 1.0
    assert s["upstream_queries_per_failing_name_per_30s"] == 2.0


def test_relative_output_folder_is_made_absolute(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """`anchord serve` runs inside the output folder: a relative --out (as scripts/main
    passes) must reach it as an absolute path, or the resolver finds no config."""
    monkeypatch.chdir(tmp_path)
    run = Run(Options(out=Path("out/replay")))
    assert run.out == tmp_path / "out" / "replay" and run.out.is_absolute()


def test_terminal_table_prints_every_key_figure_of_the_issue() -> None:
    s = {
        "noerror_share": {"before": 0.9987, "incident": 0.9712, "incident_without_stale": 0.3051,
                          "after_nta": 0.9943, "after_repair": 0.9876},
        "servfail_ede": {"6": 204, "13": 24, "without_ede": 0},
        "servfail_count": 204,
        "servfail_text_names_key_tag": 1.0,
        "rogue_key_tag": 62678,
        "nta_added_at": "2026-05-05T22:17:04Z",
        "nta_removed_at": "2026-05-05T23:34:59Z",
        "nta_removed_by": "recheck",
        "client_queries": 16400,
        "unique_client_names": 11988,
        "upstream_queries": 17785,
        "upstream_queries_per_failing_name_per_30s": 1.875,
        "client_rtt_ms_p99": 77.3,
    }
    text = table(s)
    lines = text.splitlines()

    def row(label: str) -> str:
        found = [line for line in lines if label in line]
        assert len(found) == 1, (label, text)
        return found[0]

    assert row("before").endswith("99.9%")
    assert row("incident      ").endswith("97.1%")
    assert row("stale not counted").endswith("30.5%")
    assert row("after NTA").endswith("99.4%")
    assert row("after repair").endswith("98.8%")
    assert row("SERVFAILs in the incident").endswith("204")
    assert row("EDE codes").endswith("6: 204, 13: 24, without_ede: 0")
    assert row("key tag 62678").endswith("100.0%")
    assert row("NTA added / removed").endswith(
        "2026-05-05T22:17:04Z / 2026-05-05T23:34:59Z (recheck)")
    assert row("client queries").endswith("16400 (11988)")
    assert row("upstream queries  ").endswith("17785")
    assert row("per failing name per 30 s").endswith("1.875")
    assert row("RTT p99").endswith("77.3")
    # A run without an NTA (--no-nta) and without SERVFAILs still prints, with dashes.
    quiet = dict(s, nta_added_at=None, nta_removed_at=None, nta_removed_by=None,
                 servfail_text_names_key_tag=None,
                 upstream_queries_per_failing_name_per_30s=None)
    assert "- / - (-)" in table(quiet)


class _Servfailer(asyncio.DatagramProtocol):
    """A resolver that answers every query with SERVFAIL (or NOERROR for ok.de.)."""

    def __init__(self) -> None:
        self.received: list[float] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:  # type: ignore[override]
        self.received.append(time.time())
        q = dns.message.from_wire(data)
        r = dns.message.make_response(q)
        if q.question[0].name != dns.name.from_text("ok.de."):
            r.set_rcode(dns.rcode.SERVFAIL)
        assert self.transport is not None
        self.transport.sendto(r.to_wire(), addr)


def test_a_client_retries_a_servfail_three_times_and_no_more() -> None:
    """The issue: "a client that gets SERVFAIL retries up to 3 times", after 1, 2 and 4
    simulated seconds; an answer that is not SERVFAIL ends the lookup."""

    async def main() -> tuple[list[Event], list[float], list[float]]:
        loop = asyncio.get_running_loop()
        transport, server = await loop.create_datagram_endpoint(
            _Servfailer, local_addr=("127.0.0.1", 0))
        port = transport.get_extra_info("sockname")[1]
        clock = SimClock(epoch("2026-05-05T20:00"), 50.0, time.time())  # 4 s in 80 ms
        events: list[Event] = []
        clients = Clients(Workload(["www.c1.de."], []), 1, ("127.0.0.1", port), clock,
                          events.append)
        await clients.open()
        try:
            await clients._lookup(0, "www.c1.de.", "de")
            failing = list(server.received)
            await clients._lookup(0, "ok.de.", "de")
        finally:
            clients.close()
            transport.close()
        return events, failing, server.received

    events, failing, received = asyncio.run(main())
    assert RETRY_DELAYS == (1.0, 2.0, 4.0)
    servfails = [e for e in events if e.name == "www.c1.de."]
    assert [e.attempt for e in servfails] == [1, 2, 3, 4]  # one try and 3 retries
    assert all(e.rcode == "SERVFAIL" for e in servfails) and len(failing) == 4
    gaps = [b.t - a.t for a, b in itertools.pairwise(servfails)]
    assert all(g >= d * 0.9 for g, d in zip(gaps, RETRY_DELAYS, strict=True)), gaps
    ok = [e for e in events if e.name == "ok.de."]
    assert [(e.attempt, e.rcode) for e in ok] == [(1, "NOERROR")]
    assert len(received) == 5


def test_nta_lines_of_the_resolver_log_become_simulated_times() -> None:
    """The replay finds when the NTA was added from the resolver's own log line (its
    end minus the lifetime asked for: the resolver's clock, not the reader's); the line
    gives the end in ISO 8601 UTC, as `anchord nta list` does."""
    line = "NTA added for de. until 2026-05-06T22:17:04Z (de rollover: RRSIGs by a key ...)"
    assert nta_event(line, now=1.0) == (epoch("2026-05-05T22:17:04"), "added")
    assert nta_event("NTA for de. removed (recheck: the zone validates again)", 5.0) == (
        5.0, "recheck")
    assert nta_event("NTA for de. removed (operator)", 6.0) == (6.0, "operator")
    assert nta_event("NTA for de. expired", 7.0) == (7.0, "expiry")
    assert nta_event("NTA added for c1.de. until 2026-05-06T22:17:04Z (x)", 1.0) is None
    assert nta_event("listening on 127.0.0.1:5391", 1.0) is None


def test_nta_event_reads_the_line_the_driver_writes(caplog: pytest.LogCaptureFixture) -> None:
    """The parser and the log format change together: read what the driver really logs."""
    clock = FakeClock(epoch("2026-05-05T22:17:04") + 0.4)
    driver = build_resolver(Config(), clock=clock, transport=cast(Transport, None), seed=1)
    with caplog.at_level(logging.INFO, logger="anchord.driver"):
        driver.add_nta(dns.name.from_text("de."), NTA_LIFETIME_SECONDS, "rollover")
    (line,) = [r.getMessage() for r in caplog.records if "NTA added" in r.getMessage()]
    assert nta_event(line, now=0.0) == (epoch("2026-05-05T22:17:04"), "added")


def test_the_table_says_when_no_window_had_enough_failing_names() -> None:
    """With --names 100 no 30 s window may hold 5 failing zones: it printed `None`."""
    tl = Timeline()
    ev = [Event(tl.start + 60, 0, "www.c1.de.", "de", 1, "NOERROR", True, False, (), (), 1.0)]
    s = summarize(ev, [], Marks(nta_added_at=tl.nta_at), tl, 77)
    assert s["upstream_queries_per_failing_name_per_30s"] is None
    text = table(s)
    assert "None" not in text
    assert "upstream per failing name per 30 s (max)  - (no 30 s window with 5 failing " \
        "zones)" in text
