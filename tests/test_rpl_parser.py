"""Every replay scenario parses; constructs not understood are recorded, never raised."""

from __future__ import annotations

import dns.name
import dns.rdatatype
import pytest

from anchord.testbed.replay.parser import Dialect, parse_file, parse_record, parse_text
from tests.requirements import scenario_dir

RPL = scenario_dir()
FILES = sorted(RPL.glob("*/*.rpl"))


def test_every_scenario_file_parses() -> None:
    assert len(FILES) >= 480
    for path in FILES:
        scenario = parse_file(path)
        assert scenario.steps, path
        expected = Dialect.DECKARD if path.parent.name == "deckard" else Dialect.UNBOUND
        assert scenario.dialect is expected


UNBOUND = """server:
	val-override-date: "20070916134226"
	trust-anchor: "example.com. 3600 IN DS 2854 3 1 46e4ffc6e9a4793b488954bd3f0cc6af0dfb201b"
forward-zone: name: "." forward-addr: 216.0.0.1
CONFIG_END
SCENARIO_BEGIN A small test
RANGE_BEGIN 0 100
	ADDRESS 1.2.3.4
ENTRY_BEGIN
MATCH opcode qtype qname
ADJUST copy_id
REPLY QR AA NOERROR DO
SECTION QUESTION
www.example.com. IN A
SECTION ANSWER
$ORIGIN example.com.
www IN A 10.20.30.40
bad.example.com. IN A \\# 3 030405
ENTRY_END
RANGE_END
STEP 1 QUERY
ENTRY_BEGIN
REPLY RD DO
SECTION QUESTION
www.example.com. IN A
ENTRY_END
STEP 10 CHECK_ANSWER
ENTRY_BEGIN
MATCH all ede=6
REPLY QR RD RA SERVFAIL
SECTION QUESTION
www.example.com. IN A
ENTRY_END
STEP 11 TIME_PASSES ELAPSE 3.5
STEP 12 FROBNICATE
SCENARIO_END
"""


def test_unbound_dialect_sections_entries_and_steps() -> None:
    s = parse_text(UNBOUND, "x/unbound/small.rpl")
    assert s.dialect is Dialect.UNBOUND
    assert s.title == "A small test"
    assert s.config_values("forward-addr", "forward-zone") == ["216.0.0.1"]
    assert s.config_values("val-override-date") == ["20070916134226"]
    (rng,) = s.ranges
    assert (rng.start, rng.end, rng.addresses) == (0, 100, ("1.2.3.4",))
    (entry,) = rng.entries
    assert entry.match == {"opcode", "qtype", "qname"}
    assert entry.flags == {"QR", "AA", "DO"}
    assert entry.answer[0].name == dns.name.from_text("www.example.com.")
    assert entry.answer[1].rdata.to_wire() == b"\x03\x04\x05"  # malformed rdata kept
    assert [(st.number, st.kind) for st in s.steps] == [
        (1, "QUERY"), (10, "CHECK_ANSWER"), (11, "TIME_PASSES"), (12, "FROBNICATE")]
    assert s.steps[1].entries[0].match_ede == "6"
    assert s.steps[1].entries[0].rcode == 2
    assert s.steps[2].args == ("ELAPSE", "3.5")


def test_deckard_flat_header_and_inline_range_address() -> None:
    text = """do-ip6: no
	stub-addr: 193.0.14.129 	# K.ROOT-SERVERS.NET.
CONFIG_END
SCENARIO_BEGIN d
RANGE_BEGIN 0 100 1.1.1.1; comment
ENTRY_BEGIN
MATCH opcode subdomain
ADJUST copy_id copy_query do_not_answer
REPLY QR NOERROR
SECTION QUESTION
com. IN NS
ENTRY_END
RANGE_END
STEP 1 QUERY
ENTRY_BEGIN
SECTION QUESTION
www.example.com. IN AAAA
ENTRY_END
SCENARIO_END
"""
    s = parse_text(text, "sets/deckard/x.rpl")
    assert s.dialect is Dialect.DECKARD
    assert s.config_values("stub-addr") == ["193.0.14.129"]
    assert s.ranges[0].addresses == ("1.1.1.1",)
    assert "do_not_answer" in s.ranges[0].entries[0].adjust
    assert s.steps[0].entries[0].question[0].rdtype == dns.rdatatype.AAAA


def test_unknown_construct_is_recorded_not_raised() -> None:
    s = parse_text(UNBOUND.replace("SECTION ANSWER", "TSIG foo\nSECTION ANSWER"),
                   "x/unbound/y.rpl")
    assert any("TSIG" in u for u in s.unsupported)


_SIG = "px.example.test. 3600 IN RRSIG PX 8 2 3600 20201116135527 20201019135527 55567 " \
       "example.test. "


@pytest.mark.parametrize(
    ("signature", "expected"),
    [("AAEC", b"\x00\x01\x02"), ("AAE=", b"\x00\x01"), ("AAE", b"\x00\x01"),
     ("AA==", b"\x00"), ("AA", b"\x00"), ("AAEC AAE", b"\x00\x01\x02\x00\x01"), ("", b"")],
    ids=["full", "padded-2", "unpadded-2", "padded-1", "unpadded-1", "split", "empty"],
)
def test_rrsig_signature_base64_is_read_with_or_without_padding_as_unbound_does(
        signature: str, expected: bytes) -> None:
    # Unbound's val_canon_short_px.rpl has an RRSIG whose base64 ends without its '='.
    record = parse_record(_SIG + signature, dns.name.root, 3600)
    assert record.rdata.signature == expected  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("cut", "reason"),
    [(UNBOUND.split("ENTRY_END")[0], "ENTRY_BEGIN at line 9 has no ENTRY_END"),
     (UNBOUND.split("RANGE_END")[0], "RANGE_BEGIN at line 7 has no RANGE_END"),
     (UNBOUND.split("STEP 1")[0] + "SCENARIO_END\n", "no STEP"),
     (UNBOUND.replace("SCENARIO_END\n", ""), "no SCENARIO_END"),
     (UNBOUND.replace("CONFIG_END\n", ""), "no CONFIG_END")],
    ids=["open-entry", "open-range", "no-step", "no-scenario-end", "no-config-end"])
def test_a_cut_off_or_malformed_file_is_recorded_first(cut: str, reason: str) -> None:
    """Run as it stands, a cut-off file checks nothing and would pass."""
    s = parse_text(cut, "x/unbound/cut.rpl")
    assert s.unsupported[0] == f"malformed scenario (file cut off?): {reason}"
