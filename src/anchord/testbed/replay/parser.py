"""Parse Unbound and Deckard replay scenarios (.rpl) into frozen values.

The format is described in ../shared/rpl/FORMAT.md. Parsing never raises for a
construct it does not know: it records the construct in `Scenario.unsupported` so
the runner can report the scenario as unsupported with that reason. Only I/O errors
escape. A file that is cut off or malformed (no CONFIG_END, no SCENARIO_END, no STEP,
a RANGE or ENTRY left open) is recorded the same way, first, so it is reported as
unsupported with that reason: run as it stands it would check nothing and pass.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

import dns.exception
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.tokenizer


class Dialect(enum.Enum):
    UNBOUND = "unbound"
    DECKARD = "deckard"


SECTION_NAMES = ("QUESTION", "ANSWER", "AUTHORITY", "ADDITIONAL")
FLAG_WORDS = frozenset({"QR", "AA", "TC", "RD", "RA", "AD", "CD", "DO", "Z"})


@dataclass(frozen=True, slots=True)
class ConfigItem:
    """One `key: value` of the header; `section` is "" for Deckard and top-level keys."""

    section: str
    key: str
    value: str  # quotes removed, comments stripped
    line: int
    block: int = 0  # which section occurrence: two stub-zone: sections differ here


@dataclass(frozen=True, slots=True)
class QuestionItem:
    name: dns.name.Name
    rdtype: int
    rdclass: int = dns.rdataclass.IN


@dataclass(frozen=True, slots=True)
class Record:
    name: dns.name.Name
    ttl: int
    rdclass: int
    rdtype: int
    rdata: dns.rdata.Rdata

    @property
    def covers(self) -> int:
        return int(self.rdata.covers()) if self.rdtype == dns.rdatatype.RRSIG else 0


@dataclass(frozen=True, slots=True)
class Entry:
    """An ENTRY_BEGIN ... ENTRY_END block: a scripted reply, a query, or an expectation."""

    line: int
    match: frozenset[str] = frozenset()  # lowercased MATCH words, "ede=N" excluded
    match_ede: str | None = None  # "N" or "any" from MATCH ede=N
    adjust: frozenset[str] = frozenset()  # lowercased ADJUST words, sleep excluded
    sleep: float = 0.0
    flags: frozenset[str] = frozenset()  # uppercased REPLY flag words (DO included)
    rcode: int = dns.rcode.NOERROR
    opcode: int = dns.opcode.QUERY
    question: tuple[QuestionItem, ...] = ()
    answer: tuple[Record, ...] = ()
    authority: tuple[Record, ...] = ()
    additional: tuple[Record, ...] = ()
    hex_answer: bytes | None = None
    hex_ednsdata: bytes | None = None
    raw: bytes | None = None
    mandatory: bool = False
    unknown: tuple[str, ...] = ()  # constructs seen but not understood

    def section(self, name: str) -> tuple[Record, ...]:
        return {"ANSWER": self.answer, "AUTHORITY": self.authority,
                "ADDITIONAL": self.additional}[name]


@dataclass(frozen=True, slots=True)
class Range:
    start: int
    end: int
    addresses: tuple[str, ...]  # "host" or "host@port"; empty = any server
    entries: tuple[Entry, ...]
    line: int

    def active(self, step: int) -> bool:
        return self.start <= step <= self.end


@dataclass(frozen=True, slots=True)
class Step:
    number: int
    kind: str  # QUERY, CHECK_ANSWER, TIME_PASSES, REPLY, TIMEOUT, ...
    args: tuple[str, ...]  # the rest of the STEP line (comments removed)
    entries: tuple[Entry, ...]
    line: int
    text: tuple[str, ...] = ()  # FILE_BEGIN..FILE_END lines (CHECK_AUTOTRUST/TEMPFILE)


@dataclass(frozen=True, slots=True)
class Scenario:
    path: str
    dialect: Dialect
    config: tuple[ConfigItem, ...]
    title: str
    ranges: tuple[Range, ...]
    steps: tuple[Step, ...]
    unsupported: tuple[str, ...] = ()  # reasons found while parsing
    header_blocks: tuple[str, ...] = ()  # AUTOTRUST_FILE / TEMPFILE_NAME blocks seen

    def config_values(self, key: str, section: str | None = None) -> list[str]:
        return [c.value for c in self.config
                if c.key == key and (section is None or c.section == section)]


class _Lines:
    """The file's lines with a cursor; comments are kept (records use dnspython's)."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()
        self.pos = 0

    def next(self) -> tuple[int, str] | None:
        if self.pos >= len(self.lines):
            return None
        self.pos += 1
        return self.pos, self.lines[self.pos - 1]


def strip_comment(line: str, marks: str = ";") -> str:
    """Remove a comment that starts outside double quotes."""
    quoted = False
    for i, ch in enumerate(line):
        if ch == '"':
            quoted = not quoted
        elif ch in marks and not quoted:
            return line[:i]
    return line


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1].strip()
    return value


def _guess_dialect(path: Path, header: list[str]) -> Dialect:
    if "deckard" in (p.lower() for p in path.parts):
        return Dialect.DECKARD
    if "unbound" in (p.lower() for p in path.parts):
        return Dialect.UNBOUND
    sections = {strip_comment(h, "#;").strip() for h in header}
    if sections & {"server:", "stub-zone:", "forward-zone:"}:
        return Dialect.UNBOUND
    return Dialect.DECKARD


UNBOUND_SECTIONS = frozenset({"server", "stub-zone", "forward-zone", "auth-zone", "rpz",
                              "view", "remote-control", "dnstap", "python", "dynlib",
                              "cachedb", "ipset", "dnscrypt"})


def _conf_tokens(line: str) -> list[str]:
    """Whitespace-separated tokens; a quoted string is one token (quotes kept)."""
    tokens: list[str] = []
    cur = ""
    quoted = False
    for ch in line:
        if ch == '"':
            quoted = not quoted
            cur += ch
        elif ch.isspace() and not quoted:
            if cur:
                tokens.append(cur)
            cur = ""
        else:
            cur += ch
    if cur:
        tokens.append(cur)
    return tokens


def _parse_config(header: list[tuple[int, str]], dialect: Dialect) -> list[ConfigItem]:
    """Unbound: unbound.conf's grammar (several `key: value` may share a line, as in
    `forward-zone: name: "." forward-addr: 1.2.3.4`). Deckard: one `key: value` a line."""
    items: list[ConfigItem] = []
    section = ""
    block = 0
    for lineno, raw in header:
        line = strip_comment(raw, "#;").strip()
        if not line or ":" not in line:
            continue
        if dialect is Dialect.DECKARD:
            flat, _, value = line.partition(":")
            items.append(ConfigItem("", flat.strip().lower(), _unquote(value), lineno, 0))
            continue
        key: str | None = None
        values: list[str] = []
        for tok in _conf_tokens(line) + [":end:"]:
            if tok.endswith(":") and not tok.startswith('"'):
                if key is not None:
                    items.append(ConfigItem(section, key, _unquote(" ".join(values)),
                                            lineno, block))
                key, values = None, []
                name = tok[:-1].lower()
                if name in UNBOUND_SECTIONS:
                    section = name
                    block += 1
                elif name != ":end":
                    key = name
            elif key is not None:
                values.append(tok)
    return items


def _parse_question(line: str, origin: dns.name.Name) -> QuestionItem:
    tokens = line.split()
    name = dns.name.from_text(tokens[0], origin)
    rest = [t.upper() for t in tokens[1:]]
    rdclass = dns.rdataclass.IN
    # Unbound's harness reads a question with its record reader, so a TTL may stand
    # before or after the class (". 86400 IN NS"); a question has none: it is skipped.
    if rest and rest[0].isdigit():
        rest.pop(0)
    if rest and rest[0] in ("IN", "CH", "HS", "ANY", "NONE"):
        rdclass = dns.rdataclass.from_text(rest.pop(0))
    if len(rest) > 1 and rest[0].isdigit():
        rest.pop(0)
    rdtype = dns.rdatatype.from_text(rest[0]) if rest else dns.rdatatype.A
    return QuestionItem(name, int(rdtype), int(rdclass))


def parse_record(line: str, origin: dns.name.Name, default_ttl: int) -> Record:
    """One zone-file record on one line: owner [ttl] [class] type rdata (either order)."""
    tok = dns.tokenizer.Tokenizer(line)
    owner = dns.name.from_text(tok.get_string(), origin)
    ttl = default_ttl
    rdclass = dns.rdataclass.IN
    t = tok.get_string()
    for _ in range(2):  # TTL and class may come in either order
        if t.isdigit():
            ttl = int(t)
            t = tok.get_string()
        elif t.upper() in ("IN", "CH", "HS", "ANY", "NONE") or t.upper().startswith("CLASS"):
            rdclass = dns.rdataclass.from_text(t)
            t = tok.get_string()
    rdtype = dns.rdatatype.from_text(t)
    rdata = _rdata(rdclass, rdtype, tok, origin)
    return Record(owner, ttl, int(rdclass), int(rdtype), rdata)


def _rdata(rdclass: int, rdtype: int, tok: dns.tokenizer.Tokenizer,
           origin: dns.name.Name) -> dns.rdata.Rdata:
    """Typed rdata; `\\# len hex` and non-IN data kept as raw bytes.

    Several scenarios send deliberately malformed rdata (an A record of 3 bytes) in the
    generic syntax; dnspython would reject it, but the resolver must be shown exactly
    those bytes, so they stay generic. Unbound reads CH-class data with the IN syntax.
    """
    first = tok.get()
    tok.unget(first)
    if first.is_identifier() and first.value == "\\#":
        tok.get()
        tok.get_int()  # the length; the hex that follows is what counts
        digits: list[str] = []
        while not (t := tok.get()).is_eol_or_eof():
            digits.append(t.value)
        return dns.rdata.GenericRdata(rdclass, rdtype,  # type: ignore[arg-type]
                                      bytes.fromhex("".join(digits)))
    if rdclass != dns.rdataclass.IN:
        typed = dns.rdata.from_text(dns.rdataclass.IN, rdtype,  # type: ignore[arg-type]
                                    tok, origin, relativize=False)
        return dns.rdata.GenericRdata(rdclass, rdtype,  # type: ignore[arg-type]
                                      typed.to_wire() or b"")
    if rdtype == dns.rdatatype.RRSIG:
        return _rrsig(rdclass, tok, origin)
    return dns.rdata.from_text(rdclass, rdtype, tok, origin,  # type: ignore[arg-type]
                               relativize=False)


def _rrsig(rdclass: int, tok: dns.tokenizer.Tokenizer, origin: dns.name.Name
           ) -> dns.rdata.Rdata:
    """An RRSIG; one whose signature field is empty (Unbound scenarios use that for a
    bogus signature) gets an empty signature instead of a parse error, and one whose
    base64 lacks its '=' padding is read as padded, as Unbound's reader (sldns
    b64_pton) does, instead of being refused."""
    words: list[str] = []
    while not (t := tok.get()).is_eol_or_eof():
        words.append(t.value)
    if len(words) > 8:
        signature = "".join(words[8:])
        words = words[:8] + [signature + "=" * (-len(signature) % 4)]
    text = " ".join(words)
    if len(words) == 8:
        placeholder = dns.rdata.from_text(rdclass, dns.rdatatype.RRSIG,  # type: ignore[arg-type]
                                          text + " AA==", origin, relativize=False)
        return placeholder.replace(signature=b"")
    return dns.rdata.from_text(rdclass, dns.rdatatype.RRSIG,  # type: ignore[arg-type]
                               text, origin, relativize=False)


def _hex(lines: list[str]) -> bytes:
    digits = "".join(strip_comment(x).replace(" ", "").replace("\t", "") for x in lines)
    return bytes.fromhex(digits)


@dataclass(slots=True)
class _ZoneState:
    """$ORIGIN and $TTL: they hold from where they appear on, across entries."""

    origin: dns.name.Name = dns.name.root
    ttl: int = 3600

    def directive(self, line: str) -> bool:
        words = line.split()
        if words[0].upper() == "$ORIGIN" and len(words) > 1:
            self.origin = dns.name.from_text(words[1], dns.name.root)
            return True
        if words[0].upper() == "$TTL" and len(words) > 1:
            self.ttl = int(words[1])
            return True
        return False


def _parse_entry(lines: _Lines, start: int, zone: _ZoneState) -> tuple[Entry, bool]:
    """The entry, and whether its ENTRY_END was found (False: the file ended first)."""
    match: set[str] = set()
    adjust: set[str] = set()
    flags: set[str] = set()
    unknown: list[str] = []
    fields: dict[str, object] = {}
    sections: dict[str, list[object]] = {n: [] for n in SECTION_NAMES}
    current: str | None = None
    closed = False
    while (item := lines.next()) is not None:
        lineno, raw = item
        line = strip_comment(raw).strip()
        if not line:
            continue
        word = line.split()[0]
        upper = word.upper()
        if upper == "ENTRY_END":
            closed = True
            break
        if upper == "MATCH":
            for w in line.split()[1:]:
                if w.lower().startswith("ede="):
                    fields["match_ede"] = w.split("=", 1)[1].lower()
                else:
                    match.add(w.lower())
        elif upper == "ADJUST":
            for w in line.split()[1:]:
                if w.lower().startswith("sleep="):
                    fields["sleep"] = float(w.split("=", 1)[1])
                else:
                    adjust.add(w.lower())
        elif upper in ("REPLY", "FLAGS"):
            for w in line.split()[1:]:
                wu = w.upper()
                if wu in FLAG_WORDS:
                    flags.add(wu)
                elif wu in ("QUERY", "IQUERY", "STATUS", "NOTIFY", "UPDATE"):
                    fields["opcode"] = int(dns.opcode.from_text(wu))
                else:
                    try:
                        fields["rcode"] = int(dns.rcode.from_text(wu))
                    except dns.exception.DNSException:
                        unknown.append(f"REPLY {w}")
        elif upper == "SECTION":
            parts = line.split()
            current = parts[1].upper() if len(parts) > 1 else ""
            if current not in SECTION_NAMES:
                unknown.append(f"SECTION {current}")
                current = None
        elif upper in ("$ORIGIN", "$TTL") and zone.directive(line):
            pass
        elif upper in ("HEX_ANSWER_BEGIN", "HEX_EDNSDATA_BEGIN", "RAW"):
            end = {"HEX_ANSWER_BEGIN": "HEX_ANSWER_END",
                   "HEX_EDNSDATA_BEGIN": "HEX_EDNSDATA_END"}.get(upper)
            body: list[str] = []
            while (nxt := lines.next()) is not None:
                text = strip_comment(nxt[1]).strip()
                if end is None:  # RAW: one line of hex
                    body.append(text)
                    break
                if text.upper() == end:
                    break
                body.append(text)
            key = {"HEX_ANSWER_BEGIN": "hex_answer", "HEX_EDNSDATA_BEGIN": "hex_ednsdata",
                   "RAW": "raw"}[upper]
            try:
                fields[key] = _hex(body)
            except ValueError:
                unknown.append(f"{upper} with bad hex")
            current = None
        elif upper == "MANDATORY":
            fields["mandatory"] = True
        elif upper in ("TSIG", "EXTRA_PACKET"):
            unknown.append(upper)
        elif current is not None:
            try:
                if current == "QUESTION":
                    sections[current].append(_parse_question(line, zone.origin))
                else:
                    sections[current].append(parse_record(raw.strip(), zone.origin, zone.ttl))
            except (dns.exception.DNSException, ValueError, IndexError) as e:
                unknown.append(f"record at line {lineno}: {type(e).__name__}: {e}")
        else:
            unknown.append(f"line {lineno}: {word}")
    return Entry(
        line=start, match=frozenset(match), adjust=frozenset(adjust), flags=frozenset(flags),
        question=tuple(sections["QUESTION"]),  # type: ignore[arg-type]
        answer=tuple(sections["ANSWER"]),  # type: ignore[arg-type]
        authority=tuple(sections["AUTHORITY"]),  # type: ignore[arg-type]
        additional=tuple(sections["ADDITIONAL"]),  # type: ignore[arg-type]
        unknown=tuple(unknown), **fields,  # type: ignore[arg-type]
    ), closed


def _skip_block(lines: _Lines, end: str) -> list[str]:
    body: list[str] = []
    while (item := lines.next()) is not None:
        if item[1].strip().upper().startswith(end):
            break
        body.append(item[1])
    return body


def parse_text(text: str, path: str = "<text>", dialect: Dialect | None = None) -> Scenario:
    lines = _Lines(text)
    header: list[tuple[int, str]] = []
    header_blocks: list[str] = []
    unsupported: list[str] = []
    malformed: list[str] = []  # reported before anything else in `unsupported`
    title = ""
    found_end = False
    while (item := lines.next()) is not None:
        lineno, raw = item
        stripped = raw.strip()
        if stripped.startswith("CONFIG_END"):
            found_end = True
            break
        if stripped.startswith(("AUTOTRUST_FILE", "TEMPFILE_NAME")):
            header_blocks.append(stripped)
            _skip_block(lines, "AUTOTRUST_END" if "AUTOTRUST" in stripped else "TEMPFILE_END")
            continue
        header.append((lineno, raw))
    if not found_end:
        malformed.append("no CONFIG_END")
    dia = dialect or _guess_dialect(Path(path), [h for _, h in header])
    config = _parse_config(header, dia)
    ranges: list[Range] = []
    steps: list[Step] = []
    current_range: dict[str, object] | None = None
    zone = _ZoneState()
    found_scenario_end = False
    while (item := lines.next()) is not None:
        lineno, raw = item
        line = strip_comment(raw).strip()
        if not line:
            continue
        words = line.split()
        kw = words[0].upper()
        if kw == "SCENARIO_BEGIN":
            title = line[len(words[0]):].strip()
        elif kw == "SCENARIO_END":
            found_scenario_end = True
            break
        elif kw == "RANGE_BEGIN":
            if current_range is not None:
                malformed.append(f"RANGE_BEGIN at line {current_range['line']} "
                                 f"has no RANGE_END before line {lineno}")
            current_range = {"start": int(words[1]), "end": int(words[2]),
                             "addresses": list(words[3:]), "entries": [], "line": lineno}
        elif kw == "RANGE_END":
            if current_range is not None:
                ranges.append(Range(
                    int(current_range["start"]), int(current_range["end"]),  # type: ignore[call-overload]
                    tuple(current_range["addresses"]),  # type: ignore[arg-type]
                    tuple(current_range["entries"]),  # type: ignore[arg-type]
                    int(current_range["line"])))  # type: ignore[call-overload]
            current_range = None
        elif kw == "ADDRESS" and current_range is not None:
            current_range["addresses"].extend(words[1:])  # type: ignore[attr-defined]
        elif kw == "ENTRY_BEGIN":
            entry, closed = _parse_entry(lines, lineno, zone)
            if not closed:
                malformed.append(f"ENTRY_BEGIN at line {lineno} has no ENTRY_END")
            unsupported.extend(f"line {entry.line}: {u}" for u in entry.unknown)
            if current_range is not None:
                current_range["entries"].append(entry)  # type: ignore[attr-defined]
            elif steps:
                last = steps[-1]
                steps[-1] = Step(last.number, last.kind, last.args, last.entries + (entry,),
                                 last.line, last.text)
            else:
                unsupported.append(f"line {lineno}: ENTRY outside RANGE and STEP")
        elif kw == "STEP":
            steps.append(Step(int(words[1]), words[2].upper() if len(words) > 2 else "",
                              tuple(words[3:]), (), lineno))
        elif kw in ("$ORIGIN", "$TTL") and zone.directive(line):
            pass
        elif kw in ("FILE_BEGIN", "TEMPFILE_CONTENTS"):
            body = _skip_block(lines, "FILE_END" if kw == "FILE_BEGIN" else "TEMPFILE_END")
            if steps:
                last = steps[-1]
                steps[-1] = Step(last.number, last.kind, last.args, last.entries, last.line,
                                 tuple(body))
        else:
            unsupported.append(f"line {lineno}: {words[0]}")
    if current_range is not None:
        malformed.append(f"RANGE_BEGIN at line {current_range['line']} has no RANGE_END")
    if not found_scenario_end:
        malformed.append("no SCENARIO_END")
    if not steps:
        malformed.append("no STEP")
    reasons = [f"malformed scenario (file cut off?): {m}" for m in malformed] + unsupported
    return Scenario(path, dia, tuple(config), title, tuple(ranges), tuple(steps),
                    tuple(reasons), tuple(header_blocks))


def parse_file(path: str | Path, dialect: Dialect | None = None) -> Scenario:
    p = Path(path)
    # Some scenarios carry Latin-1 bytes in comments; never let that stop a run.
    text = p.read_bytes().decode("utf-8", errors="replace")
    return parse_text(text, str(p), dialect)


__all__ = ["ConfigItem", "Dialect", "Entry", "QuestionItem", "Range", "Record", "Scenario",
           "Step", "parse_file", "parse_record", "parse_text", "strip_comment"]
