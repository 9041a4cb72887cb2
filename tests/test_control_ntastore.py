"""The file trust store: round trip, atomic replacement, a corrupt file set aside."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import dns.name
import dns.rdataclass
import dns.rdatatype
import pytest

from anchord.control.ntastore import (
    FileTrustStore,
    TrustStore,
    format_duration,
    nta_to_json,
    parse_lifetime,
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
    assert aside.read_bytes() == content and not path.exists()
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
    assert aside.read_bytes() == content and not path.exists()
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
    assert sorted(p.name for p in tmp_path.iterdir()) == [stamp, stamp + "-1", stamp + "-2"]
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
