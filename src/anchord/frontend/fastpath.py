"""The cached-answer fast path: repeat questions answered from pre-rendered bytes.

A UDP query whose shape is plain (one question, no answer/authority records, at most an
OPT record with no options, EDNS version 0) is reduced to a key without dnspython:

    (question bytes with the name lowercased, flag bits)

The flag bits are everything the full path's rendering depends on besides the question
and the outcome: RD and CD (copied into the reply), AD (sets AD for secure data), DO,
whether the client sent EDNS, and the reply size limit (512 without EDNS, else
min(max(512, client size), 1232)). Anything else (EDNS options such as cookies or ECS,
TCP, a compression pointer in the question, trailing bytes) has no key and takes the
full path.

Entries are made on the full path only, and only for an outcome that was answered from
a FRESH answer-cache entry (a repeat question: names asked once never cost fast-path
memory). The entry holds the reply rendered by the same render_outcome from the cache
entry's own outcome (original TTLs), the offsets of every record's TTL field, and the
cache entry's stored_at / expires_at. A hit patches the ID, puts the client's case back
into the question, and brings each TTL down to max(0, ttl - int(now - stored_at)): the
same arithmetic as core.cache.aged_outcome, so the bytes equal the full path's. The TTLs
are re-patched at most once per second of age (the patched body is kept).

The batched UDP reader (udpbatch.py) looks first in `hot`: the exact bytes after the ID
-> the entry whose kept body answers them as they are (the same case in the question).
Each entry knows the clock readings for which its body is exact: int(now - stored_at)
equals the age it was patched for, and now < expires_at (FastEntry.since/until, worked
out with the float subtraction itself, so no reading on a boundary differs). A hot hit
is one dict lookup and one comparison; anything else takes body_at, which re-patches and
refills `hot`. An entry that leaves the table is retired (its window emptied) or `hot`
is cleared with the table. Hits are counted in a tally per kind of answer (rcode, EDEs,
TC) and added to the stats by settle(), once per batch and before its replies leave.

Exactness rules:
- an entry is used only while the cache entry it mirrors is FRESH (now < expires_at)
  and, with cache.prefetch, only until a prefetch is due (core.prefetch_at);
  stale answers (RFC 8767), failures and cached failures (RFC 9520) are never entered,
  so serve-stale, EDE 3/19/13 and SERVFAIL always come from the full path;
- the whole table is dropped when the trust map's generation changes (an NTA added,
  removed or expired) and on every core.forget_below (cache flush, NTA change), which
  the driver reports through Driver.forget_listeners;
- access control is checked before the fast path (server.py);
- a fresh cache entry is never replaced while fresh (the core re-resolves only expired
  names), so the mirror cannot serve older data than the full path would, except after
  the answer cache evicted an entry by size: then the fast path keeps serving the data
  it had until that data's own TTL ends, which is what a cache hit would have done.
"""

from __future__ import annotations

import math
import struct
from typing import Any

from anchord.core.outcome import Freshness, Outcome
from anchord.frontend.render import EDNS_PAYLOAD, render_outcome
from anchord.frontend.request import MIN_UDP_SIZE, ClientQuery

_TTL = struct.Struct("!I")
_OPT = 41
DEFAULT_MAX_ENTRIES = 100_000

Key = tuple[bytes, int]


def fast_key(wire: bytes) -> tuple[Key, int] | None:
    """(key, end of the question) for a plain UDP query; None: take the full path.

    Never raises for any input bytes.
    """
    n = len(wire)
    if n < 17 or wire[2] & 0xF8:  # QR set or opcode other than QUERY
        return None
    if wire[4] or wire[5] != 1 or wire[6] or wire[7] or wire[8] or wire[9] or wire[10]:
        return None
    ar = wire[11]
    i = 12
    try:
        length = wire[i]
        while length:
            if length > 63:  # a compression pointer or an extended label type
                return None
            i += length + 1
            length = wire[i]
    except IndexError:
        return None
    qend = i + 5
    bits = (wire[2] & 0x01) | (wire[3] & 0x30)  # RD; AD (0x20) and CD (0x10)
    if ar == 0:
        if n != qend:
            return None
        bits |= MIN_UDP_SIZE << 10
    elif ar == 1:
        o = qend
        # root owner, type OPT, version 0, no extended rcode, only DO among the flags,
        # no options: exactly 11 bytes after the question.
        if n != o + 11 or wire[o] or wire[o + 1] or wire[o + 2] != _OPT or wire[o + 5] \
                or wire[o + 6] or wire[o + 7] & 0x7F or wire[o + 8] or wire[o + 9] \
                or wire[o + 10]:
            return None
        size = (wire[o + 3] << 8) | wire[o + 4]
        limit = EDNS_PAYLOAD if size >= EDNS_PAYLOAD else (
            MIN_UDP_SIZE if size < MIN_UDP_SIZE else size)
        bits |= 0x200 | (0x100 if wire[o + 7] & 0x80 else 0) | (limit << 10)
    else:
        return None
    return (wire[12:qend].lower(), bits), qend


def ttl_offsets(wire: bytes) -> list[tuple[int, int]]:
    """(offset of the TTL field, TTL) for every record of a rendered reply but the OPT."""
    an, ns, ar = struct.unpack_from("!HHH", wire, 6)
    i = _skip_name(wire, 12) + 4
    out = []
    for _ in range(an + ns + ar):
        i = _skip_name(wire, i)
        rtype = (wire[i] << 8) | wire[i + 1]
        if rtype != _OPT:
            out.append((i + 4, _TTL.unpack_from(wire, i + 4)[0]))
        rdlen = (wire[i + 8] << 8) | wire[i + 9]
        i += 10 + rdlen
    if i != len(wire):
        raise ValueError("reply does not parse to its end")
    return out


def _skip_name(wire: bytes, i: int) -> int:
    while True:
        length = wire[i]
        if length == 0:
            return i + 1
        if length >= 0xC0:
            return i + 2
        i += length + 1


Signature = tuple[int, tuple[int, ...], bool]  # what a hit counts: rcode, EDE codes, TC


def _first_at(stored_at: float, age: int) -> float:
    """The smallest float x with x - stored_at >= age as Python computes it: from there
    on int(x - stored_at) is at least `age` (the subtraction rounds monotonically)."""
    x = stored_at + age
    while x - stored_at >= age:
        x = math.nextafter(x, -math.inf)
    while x - stored_at < age:
        x = math.nextafter(x, math.inf)
    return x


class FastEntry:
    __slots__ = ("expires_at", "stored_at", "template", "offsets", "qbytes", "qend",
                 "age", "body", "head", "tail", "rcode", "edes", "truncated", "tally",
                 "since", "until")

    def __init__(self, template: bytes, qend: int, stored_at: float, expires_at: float,
                 edes: tuple[int, ...], tally: list[int] | None = None) -> None:
        self.template = template
        self.offsets = tuple(ttl_offsets(template))
        self.qend = qend
        self.qbytes = template[12:qend]
        self.stored_at = stored_at
        self.expires_at = expires_at
        self.rcode = template[3] & 0xF
        self.truncated = bool(template[2] & 0x02)
        self.edes = edes
        # Hits not yet added to the stats, shared by every entry of the same Signature
        # (FastPath.settle adds them up): one increment per hit instead of five.
        self.tally = tally if tally is not None else [0]
        self.age = -1
        self.body = b""
        self.head = b""
        self.tail = b""
        # The clock readings for which `body` is the answer as is: int(now - stored_at)
        # == age and now < expires_at (set by at_age; empty until then, and again once
        # the entry leaves the table). FastPath.hot serves on one comparison of now.
        self.since = math.inf
        self.until = -math.inf

    def at_age(self, age: int, aging: bool = True) -> None:
        """Re-patch the TTLs for `age` whole seconds since the answer was stored
        (aging False: cache.serve_original_ttl, the age stays 0 for good)."""
        if self.offsets:
            buf = bytearray(self.template)
            pack = _TTL.pack_into
            for off, ttl in self.offsets:
                pack(buf, off, ttl - age if ttl > age else 0)
            body = bytes(buf[2:])
        else:
            body = self.template[2:]
        self.body = body
        self.head = body[:10]
        self.tail = body[self.qend - 2:]
        self.age = age
        if aging:
            self.since = _first_at(self.stored_at, age)
            self.until = min(_first_at(self.stored_at, age + 1), self.expires_at)
        else:
            self.since, self.until = -math.inf, self.expires_at

    def retire(self) -> None:
        """Out of the table: never served from FastPath.hot again."""
        self.since, self.until = math.inf, -math.inf


class FastPath:
    """The table of one worker, tied to one driver (its clock, cache and trust map)."""

    def __init__(self, driver: Any, stats: Any, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        self.driver = driver
        self.core = driver.core
        self.clock = driver.clock
        self.trust = driver.core.trust
        self.stats = stats
        self.max_entries = max_entries
        self.table: dict[Key, FastEntry] = {}
        # Exact query bytes after the ID -> (key, end of question): clients repeat the
        # same bytes, so most packets skip even the small parser (fast_key is a pure
        # function of wire[2:]). Bounded like the table.
        self.shapes: dict[bytes, tuple[Key, int] | None] = {}
        # Exact query bytes after the ID -> the entry whose body answers them as they
        # are (same case in the question): the batched reader's first look, valid while
        # since <= now < until. Entries leave it by retire() or by clear_all().
        self.hot: dict[bytes, FastEntry] = {}
        self._now = self.clock.now
        self.generation = self.trust.generation
        # cache.serve_original_ttl: TTLs are answered as received, never aged.
        self.original_ttl = bool(driver.core.config.cache.serve_original_ttl)
        self.hits = 0
        self.learned = 0
        self.tallies: dict[Signature, list[int]] = {}
        listeners = getattr(driver, "forget_listeners", None)
        if listeners is not None:
            listeners.append(self.forget)

    @staticmethod
    def attach(resolver: Any, stats: Any, max_entries: int = DEFAULT_MAX_ENTRIES
               ) -> FastPath | None:
        """A fast path for anchord's driver; None for anything else (test doubles)."""
        core = getattr(resolver, "core", None)
        if core is None or not hasattr(core, "answers") or not hasattr(resolver, "clock") \
                or not hasattr(resolver, "forget_listeners"):
            return None
        return FastPath(resolver, stats, max_entries)

    def forget(self, _zone: object = None) -> None:
        self.clear_all()

    def clear_all(self) -> None:
        """Drop every entry (a flush, an NTA change, a new trust-map generation)."""
        self.table.clear()
        self.hot.clear()

    def begin(self) -> dict[bytes, FastEntry]:
        """Before a batch: a trust-map change drops the table (as answer() does per
        query; nothing else can change it until the batch is done); the hot map."""
        if self.trust.generation != self.generation:
            self.clear_all()
            self.generation = self.trust.generation
        return self.hot

    # -- the hot path -------------------------------------------------------------------
    def key_of(self, wire: bytes) -> tuple[Key, int] | None:
        """fast_key(wire), remembered by the packet's bytes after the ID."""
        shape = wire[2:]
        try:
            return self.shapes[shape]
        except KeyError:
            pass
        found = fast_key(wire)
        if len(self.shapes) >= self.max_entries:
            self.shapes.clear()
        self.shapes[shape] = found
        return found

    def answer(self, key: Key, qend: int, wire: bytes) -> bytes | None:
        """The reply for a keyed query from the table, counted in the stats; or None."""
        body = self.body_at(key, qend, wire[2:], self._now())
        if body is None:
            return None
        self.settle()
        return wire[:2] + body

    def body_at(self, key: Key, qend: int, shape: bytes, now: float) -> bytes | None:
        """answer() for the query's bytes after the ID (`shape`), as of `now`, without
        the ID in front and with the hit counted in its entry's tally only. The batched
        reader (udpbatch.py) sends the query's own ID bytes before the body, reads the
        clock once per batch and calls settle() once per batch, before the replies
        leave (so the stats are current when a client sees one)."""
        if self.trust.generation != self.generation:
            self.clear_all()
            self.generation = self.trust.generation
            return None
        entry = self.table.get(key)
        if entry is None:
            return None
        if now >= entry.expires_at:
            del self.table[key]
            entry.retire()
            return None
        age = 0 if self.original_ttl else int(now - entry.stored_at)
        if age != entry.age:
            entry.at_age(age, not self.original_ttl)
        qb = shape[10:qend - 2]
        if qb == entry.qbytes:
            body = entry.body
            hot = self.hot
            if len(hot) >= self.max_entries:
                hot.clear()
            hot[shape] = entry
        else:
            body = b"".join((entry.head, qb, entry.tail))  # the client's case
        entry.tally[0] += 1
        return body

    def settle(self) -> None:
        """Add the hits counted in the tallies to the stats (queries, responses by
        rcode, EDEs, TC) and to self.hits."""
        st = self.stats
        for (rcode, edes, truncated), tally in self.tallies.items():
            n = tally[0]
            if not n:
                continue
            tally[0] = 0
            st.queries += n
            st.udp_queries += n
            st.responses[rcode] += n
            for code in edes:
                st.edes[code] += n
            if truncated:
                st.truncated += n
            self.hits += n

    # -- entries are made on the full path -------------------------------------------------
    def learn(self, key: Key, query: ClientQuery, outcome: Outcome) -> None:
        """After the full path answered `query` with `outcome`: enter it if it came from
        a fresh cache entry (see the module docstring for why that is exact)."""
        if outcome.freshness is not Freshness.FRESH or outcome.is_failure or query.tcp \
                or query.has_options:
            return
        if self.trust.generation != self.generation:
            self.clear_all()
            self.generation = self.trust.generation
        entry = self.core.answers.get(query.question)
        if entry is None or entry.outcome is outcome:
            return  # resolved just now (a first question) or not cached at all
        base = entry.outcome
        if base.edes != outcome.edes or base.rcode != outcome.rcode \
                or base.security is not outcome.security:
            return  # not the entry this outcome came from (replaced meanwhile)
        now = self.clock.now()
        # With cache.prefetch the mirror ends where a prefetch is due, so the hit that
        # starts the refresh goes through the driver (never served forever from here).
        until = self.core.prefetch_at(entry) if self.core.config.cache.prefetch \
            else entry.expires_at
        if now >= until:
            return
        template = render_outcome(query, base)
        qend = 12 + len(key[0])
        if template[12:qend].lower() != key[0]:
            return
        if len(self.table) >= self.max_entries:
            self.clear_all()  # crude but bounded; repeat questions come back at once
        old = self.table.get(key)
        if old is not None:
            old.retire()  # the hot map may still point at it
        edes = tuple(int(e.code) for e in base.edes)
        signature = (template[3] & 0xF, edes, bool(template[2] & 0x02))
        tally = self.tallies.get(signature)
        if tally is None:
            tally = self.tallies[signature] = [0]
        self.table[key] = FastEntry(template, qend, entry.stored_at, until, edes, tally)
        self.learned += 1


__all__ = ["FastPath", "FastEntry", "fast_key", "ttl_offsets", "DEFAULT_MAX_ENTRIES"]
