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


class FastEntry:
    __slots__ = ("expires_at", "stored_at", "template", "offsets", "qbytes", "qend",
                 "age", "body", "head", "tail", "rcode", "edes", "truncated")

    def __init__(self, template: bytes, qend: int, stored_at: float, expires_at: float,
                 edes: tuple[int, ...]) -> None:
        self.template = template
        self.offsets = tuple(ttl_offsets(template))
        self.qend = qend
        self.qbytes = template[12:qend]
        self.stored_at = stored_at
        self.expires_at = expires_at
        self.rcode = template[3] & 0xF
        self.truncated = bool(template[2] & 0x02)
        self.edes = edes
        self.age = -1
        self.body = b""
        self.head = b""
        self.tail = b""

    def at_age(self, age: int) -> None:
        """Re-patch the TTLs for `age` whole seconds since the answer was stored."""
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
        self._now = self.clock.now
        self.generation = self.trust.generation
        # cache.serve_original_ttl: TTLs are answered as received, never aged.
        self.original_ttl = bool(driver.core.config.cache.serve_original_ttl)
        self.hits = 0
        self.learned = 0
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
        self.table.clear()

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
        if self.trust.generation != self.generation:
            self.table.clear()
            self.generation = self.trust.generation
            return None
        entry = self.table.get(key)
        if entry is None:
            return None
        now = self._now()
        if now >= entry.expires_at:
            del self.table[key]
            return None
        age = 0 if self.original_ttl else int(now - entry.stored_at)
        if age != entry.age:
            entry.at_age(age)
        qb = wire[12:qend]
        if qb == entry.qbytes:
            reply = wire[:2] + entry.body
        else:
            reply = b"".join((wire[:2], entry.head, qb, entry.tail))
        st = self.stats
        st.queries += 1
        st.udp_queries += 1
        st.responses[entry.rcode] += 1
        if entry.edes:
            for code in entry.edes:
                st.edes[code] += 1
        if entry.truncated:
            st.truncated += 1
        self.hits += 1
        return reply

    # -- entries are made on the full path -------------------------------------------------
    def learn(self, key: Key, query: ClientQuery, outcome: Outcome) -> None:
        """After the full path answered `query` with `outcome`: enter it if it came from
        a fresh cache entry (see the module docstring for why that is exact)."""
        if outcome.freshness is not Freshness.FRESH or outcome.is_failure or query.tcp \
                or query.has_options:
            return
        if self.trust.generation != self.generation:
            self.table.clear()
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
            self.table.clear()  # crude but bounded; repeat questions come back at once
        self.table[key] = FastEntry(template, qend, entry.stored_at, until,
                                    tuple(int(e.code) for e in base.edes))
        self.learned += 1


__all__ = ["FastPath", "FastEntry", "fast_key", "ttl_offsets", "DEFAULT_MAX_ENTRIES"]
