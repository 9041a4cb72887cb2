"""Pieces of the replay that need no processes: wire parsing, the summary's arithmetic."""

from __future__ import annotations

import random
from pathlib import Path

import dns.edns
import dns.message
import dns.rcode
import dns.rrset
import pytest

from anchord.testbed.incident.clients import Workload, parse_response
from anchord.testbed.incident.record import Event, Upstream
from anchord.testbed.incident.run import Options, Run
from anchord.testbed.incident.summary import Marks, child_zone, names_key_tag, summarize
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
