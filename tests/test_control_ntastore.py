"""The file trust store: round trip, atomic replacement, a corrupt file set aside."""

from __future__ import annotations

import errno
import json
import logging
import os
from pathlib import Path

import dns.name
import dns.rdataclass
import dns.rdatatype
import pytest

from anchord.control.ntastore import (
    FUTURE_TOLERANCE,
    MAX_TIME,
    FileTrustStore,
    StateFileError,
    TrustStore,
    format_duration,
    lifetime_over_max,
    nta_from_json,
    nta_to_json,
    parse_lifetime,
    time_in_future,
)
from anchord.core.outcome import Question
from anchord.core.trustmap import NegativeAnchor

T0 = 1_777_000_000.0


def _nta(zone: str, life: float = 3600, **kw: object) -> NegativeAnchor:
    return NegativeAnchor(dns.name.from_text(zone), "registry rollover", T0, T0 + life,
                          **kw)  # type: ignore[arg-type]


def test_file_store_is_a_trust_store(tmp_path: Path) -> None:
    store: TrustStore = FileTrustStore(tmp_path / "nta.json")
    assert store.load() == []  # no file yet: first start


def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    store = FileTrustStore(tmp_path / "nta.json")
    asked = (Question(dns.name.from_text("www.bogus.example."), dns.rdatatype.AAAA),
             Question(dns.name.from_text("x.bogus.example."), dns.rdatatype.TXT,
                      dns.rdataclass.CH))
    ntas = [_nta("de."), _nta("bogus.example.", 60, recheck=False, last_recheck_at=T0 + 5,
                              last_recheck_result="bogus: EDE 6", questions=asked)]
    store.save(ntas)
    assert store.load() == ntas
    assert json.loads((tmp_path / "nta.json").read_text())["version"] == 1


def test_crash_between_write_and_rename_leaves_old_state(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "nta.json"
    store = FileTrustStore(path)
    store.save([_nta("de.")])
    before = path.read_bytes()

    def crash(src: object, dst: object) -> None:  # the process dies before the rename
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", crash)  # what ntastore calls
    with pytest.raises(KeyboardInterrupt):
        store.save([_nta("com.")])
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert FileTrustStore(path).load() == [_nta("de.")]
    assert [p.name for p in tmp_path.iterdir()] == ["nta.json"]  # no temp file left


def test_temp_file_left_by_kill_does_not_disturb_load(tmp_path: Path) -> None:
    # kill -9 after the temp file was written but before the rename: a stray .tmp stays.
    path = tmp_path / "nta.json"
    FileTrustStore(path).save([_nta("de.")])
    (tmp_path / ".nta.json.abc.tmp").write_text('{"version": 1, "ntas": [')
    assert FileTrustStore(path).load() == [_nta("de.")]


def test_write_is_replace_not_truncate(tmp_path: Path) -> None:
    # A reader holding the old file keeps reading the old bytes: the inode is replaced.
    path = tmp_path / "nta.json"
    store = FileTrustStore(path)
    store.save([_nta("de.")])
    with open(path, "rb") as old:
        store.save([_nta("com.")])
        assert b"de." in old.read()
    assert store.load() == [_nta("com.")]


@pytest.mark.parametrize("content", [b"{not json", b"[]", b'{"version": 9, "ntas": []}',
                                     b"\xff\xfe", b'{"version": 1, "ntas": {}}'])
def test_corrupt_file_is_set_aside_with_one_line(tmp_path: Path, content: bytes,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "nta.json"
    path.write_bytes(content)
    store = FileTrustStore(path, clock=lambda: T0)
    with caplog.at_level(logging.ERROR, logger="anchord.control"):
        assert store.load() == []
    aside = tmp_path / "nta.json.corrupt-20260424T030640Z"  # T0 in UTC
    assert aside.read_bytes() == content
    assert json.loads(path.read_text()) == {"version": 1, "ntas": []}  # what was read
    assert str(path) in store.problem and str(aside) in store.problem
    assert "starting without NTAs" in store.problem
    assert "\n" not in store.problem
    assert any(str(path) in r.getMessage() for r in caplog.records)


def test_one_bad_entry_costs_only_itself(tmp_path: Path,
                                         caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "nta.json"
    good = [_nta(f"z{i}.de.") for i in range(139)]
    entries: list[object] = [nta_to_json(n) for n in good]
    entries.insert(57, {**nta_to_json(_nta("x.de.")), "zone": "a..b"})
    entries.append({"zone": "late.de.", "added_at": T0})  # no expires_at
    entries.append("not an object")
    content = json.dumps({"version": 1, "ntas": entries}).encode()
    path.write_bytes(content)
    store = FileTrustStore(path, clock=lambda: T0)
    with caplog.at_level(logging.ERROR, logger="anchord.control"):
        assert store.load() == good
    aside = tmp_path / "nta.json.corrupt-20260424T030640Z"
    assert aside.read_bytes() == content
    assert FileTrustStore(path).load() == good  # rewritten with the kept ones, at once
    problem = store.problem
    assert str(path) in problem and str(aside) in problem and "\n" not in problem
    assert "3 of 142" in problem and "starting with the other 139" in problem
    assert "entry 58 'a..b': zone 'a..b' is not a domain name" in problem
    assert "entry 141 'late.de.': 'expires_at' is not a number" in problem
    assert "entry 142: an NTA entry is not an object" in problem
    assert [r.getMessage() for r in caplog.records] == [problem]  # one line


def test_dropped_entries_beyond_five_are_counted(tmp_path: Path) -> None:
    path = tmp_path / "nta.json"
    path.write_text(json.dumps({"version": 1, "ntas": [{"zone": f"b{i}..de"}
                                                       for i in range(8)]}))
    store = FileTrustStore(path)
    assert store.load() == []
    assert "entry 5 'b4..de'" in store.problem and "entry 6" not in store.problem
    assert "and 3 more" in store.problem and "starting without NTAs" in store.problem


def test_a_kept_copy_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "nta.json"
    contents = [b"{first", b"{second", b"{third"]
    for content in contents:  # three corruptions within one second
        path.write_bytes(content)
        assert FileTrustStore(path, clock=lambda: T0).load() == []
    stamp = "nta.json.corrupt-20260424T030640Z"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nta.json", stamp, stamp + "-1",
                                                          stamp + "-2"]
    assert [(tmp_path / n).read_bytes() for n in (stamp, stamp + "-1", stamp + "-2")] == \
        contents
    path.write_bytes(b"{later")
    FileTrustStore(path, clock=lambda: T0 + 3600).load()
    assert (tmp_path / "nta.json.corrupt-20260424T040640Z").read_bytes() == b"{later"


def test_unreadable_file_is_reported(tmp_path: Path) -> None:
    # A directory where the file should be: unreadable even for root (CI runs as root).
    path = tmp_path / "nta.json"
    path.mkdir()
    store = FileTrustStore(path)
    assert store.load() == [] and "cannot be read" in store.problem


@pytest.mark.parametrize("text,seconds", [("3600", 3600), (3600, 3600), ("1h", 3600),
                                          ("90m", 5400), ("1h30m", 5400), ("2d", 172800),
                                          ("1w", 604800), (" 45S ", 45)])
def test_lifetime_forms(text: object, seconds: int) -> None:
    assert parse_lifetime(text) == seconds


@pytest.mark.parametrize("text", ["", "1x", "h", "-5", "0", 0, True, None, "1.5h", "1 h"])
def test_bad_lifetimes_are_refused(text: object) -> None:
    with pytest.raises(ValueError):
        parse_lifetime(text)


@pytest.mark.parametrize("text,words", [
    ("1m1m", "repeats a unit"),
    ("1h1h", "repeats a unit"),
    ("30m1h", "largest to the smallest"),
    ("\u0661\u0662\u0660", "ASCII digits"),  # Arabic-Indic 120
    ("\uff11\uff12\uff10", "ASCII digits"),  # full-width 120
    ("1\u0660m", "ASCII digits"),
    ("-5", "must be positive"),
    ("-1h", "must be positive"),
    (-5, "must be positive"),
    (0.5, "at least 1 second"),
    (float("nan"), "not a finite number"),
    (float("inf"), "not a finite number"),
    (1e308, "far too long"),
    ("9" * 300, "not understood"),
    ("99999999999s", "far too long"),
])
def test_bad_lifetimes_say_why_in_short(text: object, words: str) -> None:
    with pytest.raises(ValueError) as e:
        parse_lifetime(text)
    assert words in str(e.value) and len(str(e.value)) < 160, str(e.value)


def test_format_duration() -> None:
    assert [format_duration(s) for s in (0, 59, 3600, 5400, 604800, 90061)] == \
        ["0s", "59s", "1h", "1h30m", "7d", "1d1h1m1s"]



def test_format_duration_rounds_a_part_second_up_never_to_0s() -> None:
    """`nta add --lifetime 0h1s` printed '(0s)': the reply comes a moment after the add."""
    assert [format_duration(s) for s in (0.001, 0.999, 59.2, 3599.5)] == \
        ["1s", "1s", "1m", "1h"]


# -- a hand-edited file is held to the API's rules, entry by entry, and never crashes ------

def _entry(**fields: object) -> dict[str, object]:
    """An entry for c1.de. as anchord writes it, with `fields` changed."""
    return {**nta_to_json(_nta("c1.de.")), **fields}


def _file(path: Path, *entries: object) -> bytes:
    """A state file holding `entries` (a str is spliced in as raw JSON text)."""
    parts = [e if isinstance(e, str) else json.dumps(e) for e in entries]
    content = ('{"version": 1, "ntas": [' + ", ".join(parts) + "]}").encode()
    path.write_bytes(content)
    return content


GOOD = _nta("good.de.")


@pytest.mark.parametrize("value, words", [
    ("1e400", "not a time"),  # Infinity to json.loads: OverflowError in format_duration
    ("-1e400", "not a time"),
    ("NaN", "not a time"),  # ValueError from math.ceil
    ("Infinity", "not a time"),
    ("9" * 5000, "an integer of 5000 digits"),  # ValueError from json.loads itself
    ("9" * 400, "an integer of 400 digits"),  # int, but float() overflows
    ("1e300", "not a time"),  # finite, but no date: every listing a 500
    ("-1e300", "not a time"),
    ("-1", "not a time"),
    ("253402300800", "not a time"),  # 10000-01-01
])
@pytest.mark.parametrize("key", ["added_at", "expires_at", "last_recheck_at"])
def test_a_time_json_can_hold_but_no_date_can_costs_only_its_entry(
        tmp_path: Path, key: str, value: str, words: str) -> None:
    path = tmp_path / "nta.json"
    bad = json.dumps(_entry()).replace(f'"{key}": ', f'"{key}": {value}, "_was": ', 1)
    _file(path, bad, nta_to_json(GOOD))
    store = FileTrustStore(path, clock=lambda: T0)
    assert store.load() == [GOOD]
    assert f"entry 1 'c1.de.': '{key}' is" in store.problem and words in store.problem


def test_the_last_second_of_9999_is_a_time() -> None:
    nta = nta_from_json(_entry(expires_at=MAX_TIME, last_recheck_at=0))
    assert nta.expires_at == MAX_TIME and nta.last_recheck_at == 0


def test_json_nested_past_the_stack_is_a_corrupt_file_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "nta.json"
    path.write_bytes(b'{"version": 1, "ntas": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    store = FileTrustStore(path, clock=lambda: T0)
    assert store.load() == []  # RecursionError before
    assert "nested more than" in store.problem and "starting without NTAs" in store.problem


def test_json_nested_below_the_stack_limit_is_refused_before_anything_walks_it(
        tmp_path: Path) -> None:
    path = tmp_path / "nta.json"
    _file(path, json.dumps(_entry(reason="@")).replace('"@"', "[" * 900 + "]" * 900))
    store = FileTrustStore(path, clock=lambda: T0)
    assert store.load() == [] and "nested more than 16 levels" in store.problem


def test_kept_entries_are_on_disk_before_load_returns(tmp_path: Path) -> None:
    """The copy is made and the kept entries written before anything else can fail: a
    crash in restore_ntas once left the file moved aside and nothing in its place."""
    path = tmp_path / "nta.json"
    content = _file(path, _entry(zone="."), nta_to_json(GOOD))
    assert FileTrustStore(path, clock=lambda: T0).load() == [GOOD]
    # The process dies here (before restore_ntas saves): the next start still has GOOD.
    assert FileTrustStore(path, clock=lambda: T0).load() == [GOOD]
    assert (tmp_path / "nta.json.corrupt-20260424T030640Z").read_bytes() == content


def test_without_hard_links_a_copy_is_kept(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    def no_links(src: object, dst: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    path = tmp_path / "nta.json"
    content = _file(path, _entry(zone="a..b"), nta_to_json(GOOD))
    monkeypatch.setattr(os, "link", no_links)
    assert FileTrustStore(path, clock=lambda: T0).load() == [GOOD]
    assert (tmp_path / "nta.json.corrupt-20260424T030640Z").read_bytes() == content
    assert FileTrustStore(path).load() == [GOOD]


def _read_only(src: object, dst: object) -> None:
    """os.link on a read-only file system. A patched function fails for root too (CI
    runs as root, which folder permissions do not stop); EROFS is not one of the errors
    set_aside answers with a plain copy, so no copy is made at all."""
    raise OSError(errno.EROFS, "Read-only file system", str(src), None, str(dst))


@pytest.mark.parametrize("content", [None, b"{not json"])
def test_without_a_copy_the_file_is_left_as_it_is(tmp_path: Path, content: bytes | None,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "nta.json"
    if content is None:
        content = _file(path, _entry(zone="a..b"), nta_to_json(GOOD))
    else:
        path.write_bytes(content)
    monkeypatch.setattr(os, "link", _read_only)
    store = FileTrustStore(path, clock=lambda: T0)
    with caplog.at_level(logging.WARNING, logger="anchord.control"):
        ntas = store.load()
    assert ntas == ([GOOD] if content.startswith(b'{"') else [])  # in force from memory
    assert path.read_bytes() == content and store.held
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nta.json"]  # no copy, no temp
    assert [r.getMessage() for r in caplog.records] == [store.problem]  # one line
    assert "no copy could be kept (Read-only file system), so the file is left as it is, " \
        f"not rewritten with the {len(ntas)} NTA(s) read" in store.problem
    assert FileTrustStore(path).load() == ntas  # the next start reads the same


def test_the_first_change_copies_the_file_it_left_as_it_is_then_writes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """The folder mended after the start-up line: the first save makes the copy the start
    could not, then writes; later saves are ordinary ones."""
    path = tmp_path / "nta.json"
    content = _file(path, _entry(zone="a..b"), nta_to_json(GOOD))
    monkeypatch.setattr(os, "link", _read_only)
    store = FileTrustStore(path, clock=lambda: T0)
    assert store.load() == [GOOD]
    monkeypatch.undo()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="anchord.control"):
        store.save([GOOD, _nta("c1.de.")])
    aside = tmp_path / "nta.json.corrupt-20260424T030640Z"
    assert aside.read_bytes() == content
    assert FileTrustStore(path).load() == [GOOD, _nta("c1.de.")]
    (line,) = [r.getMessage() for r in caplog.records]
    assert f"a copy of what it held is kept as {aside}" in line and line in store.problem
    assert not store.held
    caplog.clear()
    store.save([GOOD])
    assert not caplog.records and list(tmp_path.glob("nta.json.corrupt-*")) == [aside]


def test_a_failed_first_write_leaves_the_file_held_for_the_next_change(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "nta.json"
    content = _file(path, _entry(zone="a..b"), nta_to_json(GOOD))
    monkeypatch.setattr(os, "link", _read_only)
    store = FileTrustStore(path, clock=lambda: T0)
    assert store.load() == [GOOD]

    def full(*args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("anchord.control.ntastore.write_atomically", full)
    with pytest.raises(OSError, match="No space left"):
        store.save([GOOD])
    assert path.read_bytes() == content and store.held
    monkeypatch.undo()
    store.save([GOOD])  # the copy now works: made, then written
    assert (tmp_path / "nta.json.corrupt-20260424T030640Z").read_bytes() == content
    assert FileTrustStore(path).load() == [GOOD] and not store.held


@pytest.mark.parametrize("fields, words", [
    ({"reason": "a\ud800b"}, "'reason'"),  # UnicodeEncodeError writing every EDE 33 text
    ({"reason": "a\nb"}, "'reason' must be one line of printable"),
    ({"reason": "bell\x07"}, "'reason' must be one line of printable"),
    ({"reason": "x" * 301}, "'reason' is 301 characters; at most 300"),
    ({"reason": {"a": [1, 2]}}, "'reason' must be a string"),
    ({"reason": None}, "'reason' must be a string"),
    ({"zone": "\\000.de."}, "a label holds the byte 0x00"),  # an escape: the API refuses it
    ({"zone": "a\\032b.de."}, "a label holds the byte 0x20"),
    ({"zone": "*.de."}, "wildcard label"),
    ({"zone": "."}, "for the root"),
])
def test_what_the_api_refuses_costs_its_entry(tmp_path: Path, fields: dict[str, object],
                                              words: str) -> None:
    path = tmp_path / "nta.json"
    _file(path, _entry(**fields), nta_to_json(GOOD))
    store = FileTrustStore(path, clock=lambda: T0)
    assert store.load() == [GOOD]
    assert "entry 1 " in store.problem and words in store.problem, store.problem


def test_a_reason_of_300_printable_characters_is_kept() -> None:
    assert nta_from_json(_entry(reason="é" * 300)).reason == "é" * 300


@pytest.mark.parametrize("recheck", ["false", "true", None, 0, 1, []])
def test_recheck_must_be_a_json_boolean(tmp_path: Path, recheck: object) -> None:
    path = tmp_path / "nta.json"
    _file(path, _entry(recheck=recheck), nta_to_json(GOOD))
    store = FileTrustStore(path, clock=lambda: T0)
    assert store.load() == [GOOD]
    assert "entry 1 'c1.de.': 'recheck' is not true or false" in store.problem


def test_recheck_missing_is_true_as_before() -> None:
    item = _entry(recheck=False)
    del item["recheck"]
    assert nta_from_json(item).recheck is True and nta_from_json(_entry()).recheck is True


def test_a_recheck_result_that_cannot_be_shown_is_cleaned_not_fatal() -> None:
    nta = nta_from_json(_entry(last_recheck_result="bogus\n\ud800"))
    assert nta.last_recheck_result == "bogus\ufffd\ufffd"
    with pytest.raises(StateFileError, match="'last_recheck_result' is not a string"):
        nta_from_json(_entry(last_recheck_result=7))


def test_recheck_questions_outside_the_zone_are_left_out_with_a_line(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Asked at every recheck, www.bogus.de. on an NTA for c1.de. kept it bogus forever."""
    path = tmp_path / "nta.json"
    _file(path, _entry(questions=["www.bogus.de. A", "www.c1.de. AAAA", "c1.de. SOA"]))
    with caplog.at_level(logging.WARNING, logger="anchord.control"):
        (nta,) = FileTrustStore(path).load()
    assert [q.qname.to_text() for q in nta.questions] == ["www.c1.de.", "c1.de."]
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["NTA entry 1 'c1.de.': question 'www.bogus.de. A' is not in c1.de.: "
                     "left out"]


def test_two_entries_for_one_zone_keep_the_later_and_say_so(tmp_path: Path) -> None:
    path = tmp_path / "nta.json"
    later = _nta("de.", 60, recheck=False)  # the zone as "DE" in the file
    _file(path, _entry(zone="de."), nta_to_json(GOOD), {**nta_to_json(later),
                                                                "zone": "DE"})
    store = FileTrustStore(path, clock=lambda: T0)
    assert store.load() == [GOOD, later]
    assert "1 of 3" in store.problem
    assert "entry 1 'de.': entry 3 'DE' is for the same zone and replaces it" in store.problem


def test_a_lifetime_message_stays_short_however_long_the_lifetime() -> None:
    for seconds in (1e300, MAX_TIME, float("inf"), float("nan")):
        text = lifetime_over_max(seconds, 604800)
        assert text is not None and len(text) < 100, text
        assert text.startswith("lifetime over 3650d is longer than the maximum, 7d")


@pytest.mark.parametrize("question", ["www.c1.de. BOGUSTYPE", 5, "c1.de.",
                                      "www.c1.de. A extra"])
def test_a_question_that_cannot_be_read_costs_only_itself(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, question: object) -> None:
    """It only feeds the recheck: dropping the NTA for it brought the SERVFAILs back."""
    path = tmp_path / "nta.json"
    _file(path, _entry(questions=[question, "www.c1.de. AAAA"]))
    with caplog.at_level(logging.WARNING, logger="anchord.control"):
        (nta,) = FileTrustStore(path).load()
    assert [q.qname.to_text() for q in nta.questions] == ["www.c1.de."]
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith("NTA entry 1 'c1.de.': ") and line.endswith(": left out"), line


def test_a_byte_order_mark_is_not_a_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "nta.json"
    content = _file(path, nta_to_json(GOOD))
    path.write_bytes(b"\xef\xbb\xbf" + content)
    store = FileTrustStore(path, clock=lambda: T0)
    assert store.load() == [GOOD] and store.problem == ""
    assert not list(tmp_path.glob("nta.json.corrupt-*"))


def test_every_dropped_entry_reaches_the_log(tmp_path: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "nta.json"
    bad = [_entry(zone=f"c{i}.de.", recheck="no") for i in range(8)]
    _file(path, *bad, nta_to_json(GOOD))
    store = FileTrustStore(path, clock=lambda: T0)
    with caplog.at_level(logging.WARNING, logger="anchord.control"):
        assert store.load() == [GOOD]
    assert "and 3 more, each on a log line of its own" in store.problem
    text = caplog.text
    for i in range(8):  # five in the summary line, three on their own
        assert f"'c{i}.de.': 'recheck' is not true or false" in text, i


def test_a_time_in_the_future_is_named_past_the_tolerance_and_bounded() -> None:
    assert time_in_future("added_at", T0 + FUTURE_TOLERANCE, T0) is None  # a clock ahead
    assert time_in_future("added_at", T0 - 86400, T0) is None
    text = time_in_future("added_at", T0 + 3600, T0)
    assert text is not None and text.startswith(f"'added_at' is {T0 + 3600!r} (")
    assert "1h in the future" in text and text.endswith("taken as now")
    far = time_in_future("last_recheck_at", float(MAX_TIME), T0)
    assert far is not None and "9999-12-31T23:59:59Z" in far and "over 3650d" in far


def test_a_cut_zone_in_a_message_keeps_its_closing_quote() -> None:
    from anchord.control.ntastore import short_repr

    assert short_repr("a" * 100) == "'" + "a" * 35 + "...'"
    assert short_repr(["x" * 100]) == repr(["x" * 100])[:37] + "..."
    assert short_repr("de") == "'de'"
