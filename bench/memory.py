#!/usr/bin/env python3
"""Bytes per cached RRset at 100k and 1M names: the real answer cache, real entries.

    PYTHONPATH=src:. python3 bench/memory.py                     # both kinds, RSS, to 1M
    PYTHONPATH=src:. python3 bench/memory.py --mode trace --sizes 100000
    PYTHONPATH=src:. python3 bench/memory.py --kinds unique --sizes 20000,100000

What is measured. Resolving a million names for real takes an hour (about 300 cold
names/s through `anchord serve`), so this script does it in two steps:

1. Real: --real names are resolved for real, in-process, against the embedded testbed
   (AuthorityTransport, FakeClock): upstream answers parsed, DNSSEC validated, stored
   by the resolver itself. Their outcomes are the templates of step 2.
2. Derived: the cache is filled to each of --sizes entries, one per distinct name, each
   entry made from a template the way an upstream answer for that name would have made
   it: the template's records, under the new name, as the wire bytes of a DNS response
   (rendered once per template by dnspython, the name and per-name fields patched in),
   parsed with dns.message.from_wire as the transport parses an upstream answer (so
   every entry has its own dnspython objects, and nothing is shared by reference with
   the template or another entry unless the cache itself shares it), then stored through
   Resolver.settle, the call that stores every answer (TTL bounds, packing,
   AnswerEntry, LRU). The signatures of derived records no longer verify, but their
   size is the same, and the cache never re-checks them.

Two kinds of names, the best and the worst case for the cache:

- wildcard: nK.wild.de A, as bench/run.py's mem part: the A RRset and its RRSIG, and
  the NSEC proof with its RRSIG, per answer (2 RRsets, each with its signature).
  Every expansion of one wildcard has the same rdata, RRSIG and proof (the derived
  entries too), and all the names fall in one NSEC gap.
- unique: www.uK.de A, each name in its own zone as if a million zones were asked once
  each: the A RRset with its RRSIG (1 RRset with its signature per answer) and nothing
  in common between two entries: the address, the signer name (the zone) and the
  signature bytes differ per name, as they would.

An RRset here is one RRset with its RRSIGs (as a resolver's RRset cache holds it), so
"per RRset" divides by 2 for wildcard answers and by 1 for unique ones; counting each
RRSIG RRset on its own would halve both figures.

Figures: RSS growth (/proc/self/statm) from the moment the real names are cached to each
size, over the derived entries, with --mode rss; tracemalloc's traced growth with
--mode trace (run apart: tracemalloc's own bookkeeping would be in the RSS). Only the
answer cache grows in step 2: the caches kept per zone (keys, delegations, NSEC) are
bounded on their own (200k zones) and are not in these figures. With --mode trace the
script also checks the derivation: the bytes the answer cache alone holds (tracemalloc's
drop when the entries are dropped) for --check more real names against as many derived
ones. They agree for wildcard answers; a derived unique entry holds about 10% more,
because a real one shares its RRSIG's signer name with the zone's entry in the key
cache, which at a million zones (the key cache keeps 200k) mostly would not be there.
cache.max_entries (default 1,000,000) is raised to fit the largest size plus the real
names, so nothing is evicted.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import dns.flags
import dns.message
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.IN.A
import dns.rrset

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.conftest import SIGNED_AT, World, config_for  # noqa: E402

from anchord.core.outcome import Outcome, Question, Security  # noqa: E402
from anchord.core.resolution import Resolver  # noqa: E402
from anchord.testbed.zones import TestbedSpec, build_hierarchy  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE")
KINDS = ("wildcard", "unique")


def rss() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * PAGE


def traced() -> int:
    return tracemalloc.get_traced_memory()[0]


def q(name: str, rdtype: str = "A") -> Question:
    return Question(dns.name.from_text(name), dns.rdatatype.from_text(rdtype), 1)


def rrsets_per_answer(o: Outcome) -> tuple[int, int]:
    """(RRsets with their signatures, RRsets counting each RRSIG set apart)."""
    every = o.answer + o.authority + o.additional
    return sum(1 for r in every if r.rdtype != dns.rdatatype.RRSIG), len(every)


# -- step 1: real names ---------------------------------------------------------------------

def real_names(kind: str, count: int) -> list[str]:
    if kind == "wildcard":
        return [f"n{i}.wild.de." for i in range(count)]
    return [f"www.c{i}.de." for i in range(1, count + 1)]


async def resolve_real(world: World, names: list[str]) -> list[Outcome]:
    await world.resolver.resolve(q(".", "SOA"))
    out = []
    for name in names:
        o = await world.resolver.resolve(q(name))
        assert o.rcode == 0 and o.security is Security.SECURE, (name, o)
        out.append(o)
    world.transport.sent.clear()
    return out


# -- step 2: derived names ------------------------------------------------------------------

DIGITS = 7  # derived names carry a 7-digit number: every wire form has the same length
MARKER = b"0" * DIGITS


class Deriver:
    """Upstream answers for derived names, as wire bytes, parsed per name.

    The template's records are rendered once (dnspython) under a name with a marker
    number; each derived answer patches the number (and for `unique` the address and
    signature bytes) into a copy of those bytes and parses it with
    dns.message.from_wire, as the transport parses an upstream answer: fresh objects
    per name, at a third of the cost of rendering each one.
    """

    def __init__(self, kind: str, template: Outcome) -> None:
        self.kind = kind
        self.template = template
        if kind == "wildcard":
            zone = template.question.qname.parent()
            qname = dns.name.from_text("m" + MARKER.decode(), zone)
        else:
            zone = dns.name.from_text(f"u{MARKER.decode()}.de.")
            qname = dns.name.from_text("www", zone)
        self.qtype = template.question.qtype
        answer = []
        for r in template.answer:
            copy = dns.rrset.RRset(qname, r.rdclass, r.rdtype, r.covers)
            copy.ttl = r.ttl
            for rd in r:
                if kind == "unique" and rd.rdtype == dns.rdatatype.A:
                    rd = dns.rdtypes.IN.A.A(rd.rdclass, rd.rdtype, "10.0.0.0")
                elif kind == "unique" and rd.rdtype == dns.rdatatype.RRSIG:
                    rd = rd.replace(signer=zone)
                copy.add(rd)
            answer.append(copy)
        m = dns.message.Message(id=0)
        m.flags = dns.flags.QR | dns.flags.AA
        m.question = [dns.rrset.RRset(qname, template.question.qclass, self.qtype)]
        m.answer = answer
        m.authority = list(template.authority)
        self.wire = m.to_wire()
        # Where the number goes: every uncompressed copy of the marker label.
        self.numbers = _find_all(self.wire, MARKER)
        self.addresses: list[int] = []
        self.signatures: list[int] = []
        if kind == "unique":
            self.addresses = [at + 3 for at in _find_all(self.wire, b"\x00\x04\x0a\x00\x00\x00")]
            for r in template.answer:
                for rd in r:
                    if rd.rdtype == dns.rdatatype.RRSIG:
                        self.signatures += _find_all(self.wire, rd.signature)
        assert self.numbers and (kind == "wildcard" or (self.addresses and self.signatures))

    def __call__(self, i: int) -> tuple[Question, Outcome]:
        wire = bytearray(self.wire)
        number = f"{i:0{DIGITS}d}".encode()
        for at in self.numbers:
            wire[at:at + DIGITS] = number
        for at in self.addresses:
            wire[at:at + 3] = i.to_bytes(3, "big")
        for at in self.signatures:
            wire[at:at + 4] = i.to_bytes(4, "big")
        parsed = dns.message.from_wire(bytes(wire))
        question = Question(parsed.question[0].name, self.qtype, 1)
        t = self.template
        return question, Outcome(question, t.rcode, tuple(parsed.answer),
                                 tuple(parsed.authority), (), t.security, t.edes)


def _find_all(data: bytes, needle: bytes) -> list[int]:
    found, at = [], data.find(needle)
    while at >= 0:
        found.append(at)
        at = data.find(needle, at + 1)
    return found


def derived(derivers: list[Deriver], start: int, count: int
            ) -> Iterator[tuple[Question, Outcome]]:
    for i in range(start, start + count):
        yield derivers[i % len(derivers)](i)


def fill(core: Resolver, entries: Iterator[tuple[Question, Outcome]]) -> None:
    for question, outcome in entries:
        core.settle(question, outcome, None)


# -- the run -------------------------------------------------------------------------------

def measure(kind: str, args: argparse.Namespace) -> None:
    sizes = sorted(int(s) for s in args.sizes.split(","))
    trace = args.mode == "trace"
    check = args.check if trace else 0
    children = args.real + check + 1 if kind == "unique" else 2
    t0 = time.monotonic()
    h = build_hierarchy(TestbedSpec(children=children), SIGNED_AT)
    cfg = config_for(h)
    default_limit = cfg.cache.max_entries
    cfg.cache.max_entries = max(default_limit, sizes[-1] + args.real + check + 1000)
    world = World(h, cfg)
    core = world.resolver.core
    names = real_names(kind, args.real + check)
    if trace:
        tracemalloc.start()
    templates = asyncio.run(resolve_real(world, names[:args.real]))
    derivers = [Deriver(kind, o) for o in templates]
    per_answer, per_answer_sigs_apart = rrsets_per_answer(templates[0])
    print(f"{kind}: {args.real} names resolved and validated for real "
          f"({time.monotonic() - t0:.1f} s with the testbed); {per_answer} RRsets with their "
          f"signatures per answer ({per_answer_sigs_apart} counting RRSIG sets apart); "
          f"cache.max_entries {cfg.cache.max_entries:,} (default {default_limit:,})",
          flush=True)
    if check:
        check_derivation(kind, world, derivers, names[args.real:])
    gc.collect()
    base = traced() if trace else rss()
    base_entries = len(core.answers)
    done = 0
    t0 = time.monotonic()
    for size in sizes:
        fill(core, derived(derivers, done, size - done))
        done = size
        gc.collect()
        grown = (traced() if trace else rss()) - base
        assert len(core.answers) - base_entries == size, "entries were evicted"
        per = grown / size
        what = "tracemalloc" if trace else "RSS"
        print(f"{kind}: {size:>9,} derived entries: {what} +{grown / 2**20:,.0f} MiB, "
              f"{per:,.0f} bytes per answer, {per / per_answer:,.0f} per RRset "
              f"({per / per_answer_sigs_apart:,.0f} counting RRSIG sets apart); "
              f"{time.monotonic() - t0:.0f} s so far", flush=True)
    if trace:
        tracemalloc.stop()


def held(core: Resolver, questions: list[Question]) -> int:
    """Bytes (tracemalloc) that only the answer cache holds for these entries: what
    dropping them frees."""
    gc.collect()
    before = traced()
    for question in questions:
        core.answers.drop(question)
    gc.collect()
    return before - traced()


def check_derivation(kind: str, world: World, derivers: list[Deriver], names: list[str]
                     ) -> None:
    """That a derived entry costs what a real one does: the bytes the answer cache alone
    holds for `names` resolved for real against as many derived entries."""
    core = world.resolver.core
    asyncio.run(resolve_real(world, names))
    real = held(core, [q(n) for n in names])
    made_names = []  # as text: the stored Question objects must not be held here
    for question, outcome in derived(derivers, 10**DIGITS - 1 - len(names), len(names)):
        core.settle(question, outcome, None)
        made_names.append(question.qname.to_text())
    made = held(core, [q(n) for n in made_names])
    print(f"{kind}: check: the answer cache alone holds {real / len(names):,.0f} bytes per "
          f"real entry, {made / len(names):,.0f} per derived one ({len(names)} each, "
          f"tracemalloc)", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--real", type=int, default=2000,
                    help="names resolved for real (templates; unique: one zone each)")
    ap.add_argument("--mode", choices=("rss", "trace"), default="rss")
    ap.add_argument("--check", type=int, default=500,
                    help="with --mode trace: real and derived entries compared")
    args = ap.parse_args()
    kinds = args.kinds.split(",")
    if len(kinds) == 1:
        measure(kinds[0], args)
        return 0
    # One process per kind: memory one kind freed would be reused by the next one's
    # entries without growing the RSS, and flatter its figure.
    for kind in kinds:
        subprocess.run([sys.executable, __file__, "--kinds", kind, "--sizes", args.sizes,
                        "--real", str(args.real), "--mode", args.mode,
                        "--check", str(args.check)], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
