"""Where negative trust anchors live between restarts: the trust store.

DESIGN.md asks for one small interface from the start so that the local file store
(one host) and a Redis store (a fleet) are two implementations of it. The driver calls
`save` after every NTA change (`Driver.on_trust_change`); `anchord serve` calls `load`
once at start-up and hands the result to `Driver.restore_ntas`.

The file store writes atomically: a temporary file in the same folder, fsync, rename over
the old file, fsync the folder. A crash or kill -9 at any point leaves either the old or
the new state on disk, never a torn file.

A state file that cannot be read at start-up does not stop the resolver: refusing to
start would turn one lost NTA into an outage for every name. A copy is kept as
`<name>.corrupt-<UTC time>` (for the operator; a copy kept earlier is never overwritten),
the file is then rewritten with the entries that could be read (in that order: never a
moment without either), and a one-line error naming both files is logged. If no copy can
be made, the file is left as it is (the line says so and why) until the NTAs are next
saved, which tries the copy again and then writes all the same. If the file is JSON of the
right shape, only the entries that cannot be read are dropped (the line names each and
why): one bad entry must not cost the operator every other NTA. Otherwise (not JSON, wrong
shape or version) the resolver starts with no NTAs. `problem` keeps that line so the
status endpoint can show it too.
"""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import dns.exception
import dns.name
import dns.rdataclass
import dns.rdatatype

from anchord.core.outcome import Question
from anchord.core.trustmap import NegativeAnchor

log = logging.getLogger("anchord.control")

FORMAT_VERSION = 1
_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
# ASCII digits only ([0-9], not \d: that also takes "١٢٠"); each unit at most once,
# largest first, as operators write them (1h30m), so "1m1m" is not quietly 2 minutes.
_DURATION = re.compile(r"(?:([0-9]+)w)?(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m)?"
                       r"(?:([0-9]+)s)?")
# Longer than any NTA may last (nta.max_lifetime is at most a week): refused here, before
# a number like 1e308 turns into a 300-digit message or int().
_MAX_LIFETIME = 10 * 365 * 86400
_MAX_TEXT = 32  # characters of a duration; more is not a duration
MAX_REASON = 300  # characters of an NTA's reason
# The times a state file may hold: from 1970 to the last second of 9999, the range the
# API, `nta list` and the dashboard can show as a date (datetime's). A time outside it
# is a hand edit, and one that would turn every listing of the NTAs into a 500.
MAX_TIME = 253402300799
# Nesting of lists and objects a state file may have: ours nests three deep (document,
# 'ntas', entry, 'questions'). Deeper ones are refused before anything walks them:
# repr() or str() of a value nested near the recursion limit raises RecursionError.
_MAX_DEPTH = 16
# Digits of an integer: no time or version needs more, and int() refuses past 4,300.
_MAX_DIGITS = 30
_HINT = "give seconds or a duration such as 90m, 1h, 1h30m, 2d"


def short_repr(value: Any) -> str:
    """The value as a message quotes it: short, whatever was sent."""
    text = repr(value)
    if len(text) <= 40:
        return text
    # A cut string keeps its closing quote, so the message still reads as a quotation.
    return text[:36] + "..." + text[0] if text[0] in "'\"" else text[:37] + "..."


# -- lifetimes as operators write them --------------------------------------------------

def parse_lifetime(value: Any) -> int:
    """'1h', '90m', '1h30m', '2d', '3600' or 3600 -> seconds; ValueError with a short
    sentence if it is not a duration of at least one second."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"lifetime {short_repr(value)} is not a duration: {_HINT}")
    if isinstance(value, (int, float)):
        # Checked as a number first: int() of NaN, inf or 1e308 fails or explodes.
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"lifetime {short_repr(value)} is not a finite number of seconds")
        if value <= 0:
            raise ValueError(f"lifetime {short_repr(value)} must be positive")
        if value < 1:
            raise ValueError(f"lifetime {short_repr(value)} is too short: it must be at least "
                             "1 second")
        if value > _MAX_LIFETIME:
            raise ValueError(f"lifetime {short_repr(value)} is far too long (nta.max_lifetime "
                             "is at most 7d)")
        return int(value)
    text = value.strip().lower()
    if len(text) > _MAX_TEXT:
        raise ValueError(f"lifetime {short_repr(value)} is not understood: {_HINT}")
    negative = text.startswith("-")
    body = text[1:].strip() if negative else text
    if body.isascii() and body.isdigit():
        seconds = int(body)
    else:
        match = _DURATION.fullmatch(body) if body else None
        if match is None or not any(match.groups()):
            units = re.findall(r"[wdhms]", body)
            if body.isascii() and len(units) != len(set(units)):
                raise ValueError(f"lifetime {short_repr(value)} repeats a unit: write each of "
                                 "w, d, h, m, s at most once (1h30m)")
            if body.isascii() and re.fullmatch(r"(?:[0-9]+[wdhms])+", body):
                raise ValueError(f"lifetime {short_repr(value)}: write the units from the "
                                 "largest to the smallest (1h30m, not 30m1h)")
            digits = "" if body.isascii() else " (in ASCII digits)"
            raise ValueError(f"lifetime {short_repr(value)} is not understood: {_HINT}{digits}")
        seconds = sum(int(n) * size for n, size in zip(match.groups(), _UNITS.values(),
                                                       strict=True) if n)
    if negative or seconds <= 0:
        raise ValueError(f"lifetime {short_repr(value)} must be positive")
    if seconds > _MAX_LIFETIME:
        raise ValueError(f"lifetime {short_repr(value)} is far too long (nta.max_lifetime is at "
                         "most 7d)")
    return seconds


def lifetime_over_max(seconds: float, max_lifetime: int) -> str | None:
    """The one rule on how long an NTA may last, for the API (which refuses a longer one)
    and the state file at start-up (whose NTA is cut to it): why, or None if it fits."""
    if seconds <= max_lifetime:
        return None
    # Bounded: an end in the year 9999 would read as a duration of seven digits of days,
    # one that is not a number at all could not be shown.
    shown = format_duration(seconds) if seconds <= _MAX_LIFETIME else \
        f"over {format_duration(_MAX_LIFETIME)}"
    return (f"lifetime {shown} is longer than the maximum, "
            f"{format_duration(max_lifetime)} (nta.max_lifetime = {max_lifetime})")


# How far in the future a time that records the past (when an NTA was added, when it was
# last rechecked) may lie before it is taken for a clock that was ahead when the time was
# written, or has been stepped back since. Five minutes: more than NTP leaves between the
# hosts of a fleet, less than any lifetime worth an NTA. Not dnssec.clock_skew: that widens
# signature windows, is 0 unless set, and at 0 would flag an NTA added on an instance
# whose clock runs a second ahead.
FUTURE_TOLERANCE = 300


def time_in_future(key: str, value: float, now: float) -> str | None:
    """The one rule on times that record the past (`added_at`, `last_recheck_at`), for the
    state file and the fleet store alike (Driver applies it where the time is): why
    `value` cannot be taken as it is, or None if it is at most FUTURE_TOLERANCE ahead.

    Such a time is a wrong clock, not a bad entry: the NTA is kept, with the time taken
    as now (the caller's part). Dropping it, as a time outside 1970..9999 is dropped,
    would make an operator's NTA vanish with a clock step; keeping the time would put off
    its first recheck (due recheck_interval after it) until that moment, so the NTA would
    outstay a fixed zone, and show an NTA added in the future."""
    if value <= now + FUTURE_TOLERANCE:
        return None
    # Bounded like lifetime_over_max: a time in the year 9999 is not read in days.
    ahead = value - now
    shown = format_duration(ahead) if ahead <= _MAX_LIFETIME else \
        f"over {format_duration(_MAX_LIFETIME)}"
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(value))
    return (f"'{key}' is {short_repr(value)} ({when}), {shown} in the future (more than "
            f"{FUTURE_TOLERANCE} s: a clock stepped back?); taken as now")


def nta_reason(value: Any) -> str:
    """The reason of an NTA, from the API or the state file (one rule for both, as for
    the zone): a string of at most MAX_REASON printable characters. ValueError with the
    sentence otherwise.

    The reason travels in logs, `nta list` tables and every EDE 33 text: one printable
    line of a sensible length, so it can neither forge a log line nor crowd the answers
    out; a lone surrogate (JSON's "\\ud800") could not even be encoded into an answer."""
    if not isinstance(value, str):
        raise ValueError(f"'reason' must be a string, not {short_repr(value)}")
    if len(value) > MAX_REASON:
        raise ValueError(f"'reason' is {len(value)} characters; at most {MAX_REASON}")
    if not value.isprintable():
        raise ValueError("'reason' must be one line of printable characters "
                         "(no newlines or control characters)")
    return value


# -- zones as operators write them -----------------------------------------------------

def parse_zone(value: Any) -> dns.name.Name:
    """A zone name from a request; ValueError with a readable sentence if it is not one."""
    if value is None or isinstance(value, str) and not value.strip():
        raise ValueError("zone is required")
    if not isinstance(value, str):
        raise ValueError(f"zone {short_repr(value)} is not a domain name")
    text = value.strip()
    if any(c.isspace() for c in text):
        raise ValueError(f"zone {short_repr(value)} is not a domain name (it contains white space)")
    # dnspython takes control characters and NUL (as \000 in the name); no operator
    # means one, and they would end up in logs and the state file.
    bad = next((c for c in text if not c.isprintable()), None)
    if bad is not None:
        raise ValueError(f"zone {short_repr(value)} is not a domain name (it contains the "
                         f"non-printable character U+{ord(bad):04X})")
    try:
        name = dns.name.from_text(text)
    except dns.exception.DNSException as e:
        raise ValueError(f"zone {short_repr(value)} is not a domain name: {e}") from None
    if b"*" in name.labels:
        # An NTA or a flush covers a zone and all below it; '*' would be taken as the
        # literal label, never as "every name": refuse rather than do nothing useful.
        raise ValueError(f"zone {short_repr(value)} has a wildcard label '*': give the zone "
                         "itself (an NTA or flush already covers every name below it)")
    # The check above sees the text; dnspython's escapes (`\000.de`) still put control
    # bytes, spaces or DEL into a label, which no zone an operator means has.
    for label in name.labels:
        byte = next((b for b in label if b < 0x21 or b == 0x7F), None)
        if byte is not None:
            raise ValueError(f"zone {short_repr(value)} is not a domain name (a label holds "
                             f"the byte 0x{byte:02X}, a control character or a space)")
    return name


def nta_zone(value: Any) -> dns.name.Name:
    """The zone of a new NTA, from the API or the state file (one rule for both: a
    hand-edited file must not do what the API refuses): parse_zone's, and not the root.
    ValueError with the sentence otherwise."""
    zone = parse_zone(value)
    if zone == dns.name.root:
        raise ValueError("an NTA for the root would switch validation off for every name; "
                         "set dnssec.enabled = false if that is really meant")
    return zone


def format_duration(seconds: float) -> str:
    """3600 -> '1h', 5400 -> '1h30m', 604800 -> '7d' (for messages and tables).

    Whole seconds rounded up: a time left that is not over never reads '0s'."""
    s = math.ceil(seconds)
    if s <= 0:
        return "0s"
    out = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if s >= size:
            out.append(f"{s // size}{unit}")
            s %= size
    return "".join(out)


class TrustStore(Protocol):
    """Persistent home of the run-time trust state (NTAs)."""

    def load(self) -> list[NegativeAnchor]: ...

    def save(self, ntas: list[NegativeAnchor]) -> None: ...


class StateFileError(ValueError):
    """The state file exists but does not hold what we wrote."""


class TrustStoreError(Exception):
    """A save that did not reach the store for another reason than the file system's
    (OSError): the fleet store's follower has failed, say. The message says what."""


class _LongInteger:
    """An integer of more than _MAX_DIGITS digits where the file has one: kept as this
    mark, not converted, so that it costs only its entry (no field takes one)."""

    def __init__(self, digits: int) -> None:
        self.digits = digits

    def __repr__(self) -> str:
        return f"<an integer of {self.digits} digits>"


def _parse_int(text: str) -> int | _LongInteger:
    digits = len(text.lstrip("-"))
    return _LongInteger(digits) if digits > _MAX_DIGITS else int(text)


def too_deep(doc: Any, limit: int) -> bool:
    """True if `doc` nests lists or objects more than `limit` deep (no recursion)."""
    stack: list[tuple[Any, int]] = [(doc, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (list, dict)):
            if depth >= limit:
                return True
            stack.extend((v, depth + 1) for v in (value.values() if isinstance(value, dict)
                                                  else value))
    return False


def load_json(raw: bytes | str) -> Any:
    """A state file, or one entry of the fleet store, as JSON; StateFileError for
    anything that is not (every way json.loads can fail, not only JSONDecodeError).

    NaN and Infinity are read as the floats they name: no time accepts them (_time), so
    they cost their entry, not the file. So do integers too long to convert."""
    try:
        # A byte order mark (an editor's on Windows) is not JSON but means no harm: the
        # config file accepts one too.
        text = raw.decode("utf-8-sig") if isinstance(raw, bytes) else raw.removeprefix("\ufeff")
        doc = json.loads(text, parse_int=_parse_int)
    except RecursionError:
        raise StateFileError(f"JSON nested more than {_MAX_DEPTH} levels deep") from None
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
        raise StateFileError(f"not valid JSON: {e}") from None
    if too_deep(doc, _MAX_DEPTH):
        raise StateFileError(f"JSON nested more than {_MAX_DEPTH} levels deep")
    return doc


def nta_to_json(nta: NegativeAnchor) -> dict[str, Any]:
    return {
        "zone": nta.zone.to_text(),
        "reason": nta.reason,
        "added_at": nta.added_at,
        "expires_at": nta.expires_at,
        "recheck": nta.recheck,
        "last_recheck_at": nta.last_recheck_at,
        "last_recheck_result": nta.last_recheck_result,
        "questions": [question_to_text(q) for q in nta.questions],
    }


def question_to_text(q: Question) -> str:
    """'www.bogus.de. A' (the class only when it is not IN): what dig takes, readable
    in the state file and `nta list --json`."""
    cls = "" if q.qclass == dns.rdataclass.IN else f" {dns.rdataclass.to_text(q.qclass)}"
    return f"{q.qname.to_text()}{cls} {dns.rdatatype.to_text(q.qtype)}"


def question_from_text(text: Any) -> Question:
    if not isinstance(text, str):
        raise StateFileError(f"a question is not a string: {short_repr(text)}")
    parts = text.split()
    try:
        if len(parts) == 2:
            return Question(dns.name.from_text(parts[0]), dns.rdatatype.from_text(parts[1]))
        if len(parts) == 3:
            return Question(dns.name.from_text(parts[0]), dns.rdatatype.from_text(parts[2]),
                            dns.rdataclass.from_text(parts[1]))
    except (dns.exception.DNSException, ValueError) as e:
        raise StateFileError(f"bad question {short_repr(text)}: {e}") from None
    raise StateFileError(f"bad question {short_repr(text)}: expected 'NAME TYPE'")


def _time(item: dict[str, Any], key: str) -> float:
    value = item.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise StateFileError(f"'{key}' is not a number: {short_repr(value)}")
    if not 0 <= value <= MAX_TIME:  # NaN is not either
        raise StateFileError(f"'{key}' is {short_repr(value)}: not a time between 1970 and "
                             "the end of 9999")
    return float(value)


def _shown_text(item: dict[str, Any], key: str) -> str:
    """A text field that is only shown (the last recheck's result): a string, with what
    cannot be shown on one line (a newline, a lone surrogate) replaced by U+FFFD. It is
    bookkeeping, partly from upstream EDE texts: not worth an NTA."""
    value = item.get(key, "")
    if not isinstance(value, str):
        raise StateFileError(f"'{key}' is not a string: {short_repr(value)}")
    return "".join(c if c.isprintable() else "\ufffd" for c in value)


def nta_from_json(item: Any, notes: list[str] | None = None) -> NegativeAnchor:
    """One entry of the state file (or the fleet store) -> the NTA; StateFileError if the
    API would not have made it. Recheck questions outside the NTA's zone are left out,
    each with a sentence in `notes`: asked at every recheck, an answer that fails
    elsewhere would keep the NTA from ever ending."""
    if not isinstance(item, dict):
        raise StateFileError(f"an NTA entry is not an object: {short_repr(item)}")
    if "zone" not in item:
        raise StateFileError("an NTA entry has no 'zone'")
    try:
        zone = nta_zone(item["zone"])
        reason = nta_reason(item.get("reason", ""))
    except ValueError as e:
        raise StateFileError(str(e)) from None
    recheck = item.get("recheck", True)
    if not isinstance(recheck, bool):  # "false" would be true, null false
        raise StateFileError(f"'recheck' is not true or false: {short_repr(recheck)}")
    # Absent from files written before the recheck's questions were kept: none then.
    asked = item.get("questions", [])
    if not isinstance(asked, list):
        raise StateFileError(f"'questions' is not a list: {short_repr(asked)}")
    questions = []
    for text in asked:
        # A question only feeds the recheck: one that cannot be read or lies outside the
        # zone is left out, never the NTA with it (that would bring the SERVFAILs back).
        try:
            question = question_from_text(text)
        except StateFileError as e:
            if notes is not None:
                notes.append(f"{e}: left out")
            continue
        if question.qname.is_subdomain(zone):
            questions.append(question)
        elif notes is not None:
            notes.append(f"question {short_repr(text)} is not in {zone}: left out")
    return NegativeAnchor(
        zone=zone,
        reason=reason,
        added_at=_time(item, "added_at"),
        expires_at=_time(item, "expires_at"),
        recheck=recheck,
        last_recheck_at=None if item.get("last_recheck_at") is None
        else _time(item, "last_recheck_at"),
        last_recheck_result=_shown_text(item, "last_recheck_result"),
        questions=tuple(questions),
    )


def encode(ntas: list[NegativeAnchor]) -> bytes:
    doc = {"version": FORMAT_VERSION, "ntas": [nta_to_json(n) for n in ntas]}
    return (json.dumps(doc, indent=1) + "\n").encode()


def decode_entries(items: list[Any]) -> tuple[list[NegativeAnchor], list[str]]:
    """Entries of an 'ntas' list -> (the NTAs that read, one sentence per entry that did
    not). Each entry stands alone: a bad one must not take the good ones with it. Of two
    entries for one zone ('de.' and 'DE') the later is kept, as a later `nta add`
    replaces an earlier one, and the earlier is dropped with its sentence. Questions
    left out of an entry are logged here, one line per entry."""
    by_zone: dict[dns.name.Name, tuple[int, NegativeAnchor]] = {}
    dropped: list[str] = []
    for index, item in enumerate(items, 1):
        zone = item.get("zone") if isinstance(item, dict) else None
        named = "" if zone is None else f" {short_repr(zone)}"
        notes: list[str] = []
        try:
            nta = nta_from_json(item, notes)
        except StateFileError as e:
            dropped.append(f"entry {index}{named}: {e}")
            continue
        if notes:
            log.warning("NTA entry %d%s: %s", index, named, "; ".join(notes))
        earlier = by_zone.pop(nta.zone, None)
        if earlier is not None:
            dropped.append(f"entry {earlier[0]} {earlier[1].zone.to_text()!r}: entry "
                           f"{index}{named} is for the same zone and replaces it")
        by_zone[nta.zone] = (index, nta)
    return [nta for _, nta in sorted(by_zone.values(), key=lambda pair: pair[0])], dropped


def decode_lenient(raw: bytes) -> tuple[list[NegativeAnchor], list[str]]:
    """The state file -> (NTAs, dropped entries as sentences). StateFileError only if
    the file as a whole is not ours (not JSON, wrong shape, unknown version)."""
    doc = load_json(raw)
    if not isinstance(doc, dict) or not isinstance(doc.get("ntas"), list):
        raise StateFileError("expected an object with an 'ntas' list")
    if doc.get("version") != FORMAT_VERSION:
        raise StateFileError(f"unknown format version {short_repr(doc.get('version'))}")
    return decode_entries(doc["ntas"])


def decode(raw: bytes) -> list[NegativeAnchor]:
    """The state file -> NTAs; StateFileError if anything at all in it is wrong."""
    ntas, dropped = decode_lenient(raw)
    if dropped:
        raise StateFileError(dropped[0])
    return ntas


_SUMMARY_LIMIT = 5  # dropped entries named in the one line (status, dashboard, log)
_LOGGED_LIMIT = 1000  # the rest: one log line each, up to this many


def summarize_dropped(dropped: list[str], limit: int = _SUMMARY_LIMIT) -> str:
    """Dropped entries for one line: the first `limit` named, the rest counted (a file
    of thousands of bad entries must not make a line of megabytes). log_dropped puts the
    rest in the log, each on a line of its own."""
    shown = "; ".join(dropped[:limit])
    if len(dropped) > limit:
        shown += f"; and {len(dropped) - limit} more, each on a log line of its own"
    return shown


def log_dropped(where: str, dropped: list[str]) -> None:
    """The dropped entries summarize_dropped only counted, a log line each: without
    them, why an entry went could only be learnt by comparing the kept copy by hand."""
    rest = dropped[_SUMMARY_LIMIT:]
    for sentence in rest[:_LOGGED_LIMIT]:
        log.warning("%s: dropped %s", where, sentence)
    if len(rest) > _LOGGED_LIMIT:
        log.warning("%s: and %d more dropped entries (see the kept copy)", where,
                    len(rest) - _LOGGED_LIMIT)


def write_atomically(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so that readers (and a crash) see old or new, whole."""
    directory = path.parent
    directory.mkdir(parents=True, exist_ok=True)
    # Same folder: os.replace is only atomic within one file system.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())  # the data is on disk before the name points at it
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    # The rename itself lives in the folder: sync it so it survives a power cut too.
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def set_aside(path: Path, now: float | None = None) -> Path:
    """Keep a copy of `path` as `<name>.corrupt-<UTC time>` (then `-1`, `-2`, ... if
    taken) and return its name. The file itself stays: the caller replaces it (atomically)
    with what could be read, so a crash in between leaves the original, never neither the
    original nor the NTAs read from it. A copy kept by an earlier start is never
    overwritten: it may be the only record of NTAs the operator still has to re-add.
    OSError if no copy can be made."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
    base = path.with_name(f"{path.name}.corrupt-{stamp}")
    for n in range(1000):
        aside = base if n == 0 else base.with_name(f"{base.name}-{n}")
        try:
            # A hard link, not a check and a copy: link refuses an existing name
            # atomically, and the replacement of `path` then leaves it the old inode.
            os.link(path, aside)
        except FileExistsError:
            continue
        except OSError as e:
            if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
                raise
            # A file system without hard links: a copy, created exclusively all the same.
            try:
                with open(aside, "xb") as copy:
                    copy.write(path.read_bytes())
                    copy.flush()
                    os.fsync(copy.fileno())
            except FileExistsError:
                continue
        return aside
    raise FileExistsError(errno.EEXIST, "every .corrupt name for this second is taken",
                          str(base))


class FileTrustStore:
    """NTAs in one JSON file on local disk (the one-host store)."""

    def __init__(self, path: Path | str, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.clock = clock  # wall time, for the name of a set-aside copy
        self.problem = ""  # the start-up error line, if the file had to be set aside
        # The file holds entries that could not be read and no copy of them could be
        # kept: load leaves it as it is, `anchord serve` restores without the start-up
        # save (Driver.restore_ntas(save=False)), and save tries the copy once more
        # before the first save since the start rewrites it.
        self.held = False

    def load(self) -> list[NegativeAnchor]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return []  # first start: nothing to restore
        except OSError as e:
            # Unreadable (permissions): nothing we could move aside either; say so, go on.
            self.problem = f"NTA state file {self.path} cannot be read: {e.strerror}; " \
                           "starting without the NTAs it holds"
            log.error("%s", self.problem)
            return []
        try:
            ntas, dropped = decode_lenient(raw)
        except StateFileError as e:
            what, ntas, dropped = f"is corrupt ({e})", [], []
            outcome = "starting without NTAs: re-add them with `anchord nta add`"
        else:
            if not dropped:
                return ntas
            what = (f"is corrupt: {len(dropped)} of {len(dropped) + len(ntas)} NTA "
                    f"entries cannot be read and were dropped ({summarize_dropped(dropped)})")
            outcome = (f"starting with the other {len(ntas)}" if ntas else
                       "starting without NTAs") + ": re-add the dropped ones with " \
                "`anchord nta add`"
        # The copy first, then the kept NTAs over the original: never a moment (a crash
        # in restore_ntas, a kill) where neither the original nor the kept NTAs are on
        # disk.
        try:
            aside = set_aside(self.path, self.clock())
        except OSError as copy_error:
            # Without a copy, rewriting the file would lose for good the entries that could
            # not be read, which the operator may still mend by hand: it is left as it is
            # and the NTAs read are in force from memory. Only the next save rewrites it
            # (an NTA change, an expiry, a recheck), as it must: an NTA change that could
            # never be saved would be worse.
            self.held = True
            kept = (f"no copy could be kept ({copy_error.strerror or copy_error}), so the "
                    f"file is left as it is, not rewritten with the {len(ntas)} NTA(s) read, "
                    "until the next save of the NTAs rewrites it")
        else:
            kept = f"a copy is kept as {aside}"
            try:
                write_atomically(self.path, encode(ntas))
            except OSError as write_error:
                kept += (f", but the file could not be rewritten: "
                         f"{write_error.strerror or write_error}")
        self.problem = f"NTA state file {self.path} {what}; {kept}; {outcome}"
        log.error("%s", self.problem)
        log_dropped(f"NTA state file {self.path}", dropped)
        return ntas

    def save(self, ntas: list[NegativeAnchor]) -> None:
        if not self.held:
            write_atomically(self.path, encode(ntas))
            return
        # The first save since a start that could not copy the file: the copy again
        # first (the folder may have been mended since the start-up line), then the
        # NTAs are written whether or not it could be made.
        try:
            aside = set_aside(self.path, self.clock())
        except OSError as copy_error:
            why = copy_error.strerror or str(copy_error)
        else:
            self.held = False  # the original is safe: from now on an ordinary save
            self._after_start(logging.WARNING, f"a copy of what it held is kept as {aside} "
                              "before the first save of the NTAs since the start rewrites "
                              "it")
            write_atomically(self.path, encode(ntas))
            return
        write_atomically(self.path, encode(ntas))  # OSError: still held, next save again
        self.held = False
        self._after_start(logging.ERROR, f"rewritten by the first save of the NTAs since the "
                          f"start; still no copy could be kept ({why}): the entries that "
                          "could not be read are no longer in it")

    def _after_start(self, level: int, what: str) -> None:
        """What became of a file the start left as it is: logged, and added to the
        start-up line (status shows it), which no longer says all."""
        line = f"NTA state file {self.path}: {what}"
        self.problem = f"{self.problem}; since then {line}" if self.problem else line
        log.log(level, "%s", line)


__all__ = ["parse_lifetime", "short_repr", "format_duration", "lifetime_over_max",
           "parse_zone", "nta_zone", "TrustStore", "FileTrustStore",
           "StateFileError", "write_atomically", "nta_to_json", "nta_from_json", "encode",
           "decode", "decode_lenient", "decode_entries", "set_aside", "summarize_dropped",
           "log_dropped",
           "nta_reason", "MAX_REASON", "MAX_TIME", "TrustStoreError", "load_json",
           "too_deep", "FUTURE_TOLERANCE", "time_in_future"]
