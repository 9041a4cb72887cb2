#!/usr/bin/env python3
"""In-process cost of the resolver: CPU µs per cold validated name, bytes per cached answer.

    PYTHONPATH=src:. python3 bench/inproc.py --children 300
    PYTHONPATH=src:. python3 bench/inproc.py --children 300 --profile cold.prof
    PYTHONHASHSEED=0 valgrind --tool=callgrind python3.11 bench/inproc.py \
        --children 101 --names 100 --parts cold    # minus the same with --names 0:
                                                   # instructions per name, noise-free

The resolver runs against the embedded testbed (AuthorityTransport) with a FakeClock, so
no socket, no scheduler noise and no other process is in the figure. The authority's own
work (parsing our query, answering, rendering) is timed separately and taken out: what
remains is what `anchord serve` spends per name, without the kernel's share. The cold
part asks www.cN.de A once per child (DS, DNSKEY and answer validated per name, below a
warm root and de) and reports process CPU time per name. The memory part caches
--mem distinct wildcard answers (nK.wild.de A: A RRset, RRSIG and NSEC proof each) and
reports tracemalloc's growth per answer.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import sys
import time
import tracemalloc
from pathlib import Path

import dns.message
import dns.name
import dns.rdatatype

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.conftest import SIGNED_AT, World  # noqa: E402

from anchord.core.outcome import Question  # noqa: E402
from anchord.core.ports import ServerAddress, UpstreamError, UpstreamResult  # noqa: E402
from anchord.core.wire import parse_response  # noqa: E402
from anchord.engine.driver import build_resolver  # noqa: E402
from anchord.engine.transport import _plain_query_wire  # noqa: E402
from anchord.testbed.authserver import render, udp_limit  # noqa: E402
from anchord.testbed.inprocess import AuthorityTransport  # noqa: E402
from anchord.testbed.zones import Hierarchy, TestbedSpec, build_hierarchy  # noqa: E402


class TimedTransport(AuthorityTransport):
    """AuthorityTransport that keeps the authority's CPU time apart from ours."""

    authority_cpu = 0.0

    async def query(self, server: ServerAddress, request: dns.message.Message, *,
                    tcp: bool = False, timeout: float = 1.5) -> UpstreamResult:
        # Ours: the network transport renders the query too, this way when it can.
        wire = _plain_query_wire(request, request.id) or request.to_wire()
        t0 = time.process_time()
        query = dns.message.from_wire(wire)
        response = self.authority.respond(query, server.host)
        out = None if response is None else render(response, 65535 if tcp else udp_limit(query))
        self.authority_cpu += time.process_time() - t0
        if out is None:
            return UpstreamResult(server, None, UpstreamError.TIMEOUT, rtt=timeout, tcp=tcp)
        # Read as the network transport reads it (core.wire.parse_response).
        return UpstreamResult(server, parse_response(out), rtt=0.001, tcp=tcp)


def q(name: str, rdtype: str = "A") -> Question:
    return Question(dns.name.from_text(name), dns.rdatatype.from_text(rdtype), 1)


async def cold(world: World, transport: TimedTransport, names: list[str],
               profile: str | None) -> float:
    await world.resolver.resolve(q(".", "SOA"))
    await world.resolver.resolve(q("www.c0.de."))  # de's keys warm, as after the first name
    prof = cProfile.Profile() if profile else None
    transport.authority_cpu = 0.0
    t0 = time.process_time()
    if prof:
        prof.enable()
    for name in names:
        o = await world.resolver.resolve(q(name))
        assert o.rcode == 0 and o.security.value == "secure", (name, o)
    if prof:
        prof.disable()
        prof.dump_stats(profile)  # type: ignore[arg-type]
    total = time.process_time() - t0
    count = max(1, len(names))
    print(f"cold: the authority's share, taken out: "
          f"{transport.authority_cpu / count * 1e6:.0f} µs/name")
    return (total - transport.authority_cpu) / count * 1e6


async def memory(world: World, transport: TimedTransport, count: int, trace: bool
                 ) -> tuple[float, float]:
    """(bytes, resolver CPU µs) per cached wildcard answer: bytes with `trace`, CPU
    without (tracemalloc slows everything several times over)."""
    for i in range(50):  # warm everything but the answers themselves
        await world.resolver.resolve(q(f"w{i}.wild.de."))
    gc.collect()
    if trace:
        tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    cached_before = len(world.resolver.core.answers)
    transport.authority_cpu = 0.0
    t0 = time.process_time()
    for i in range(count):
        o = await world.resolver.resolve(q(f"n{i}.wild.de."))
        assert o.security.value == "secure", o
    cpu = time.process_time() - t0 - transport.authority_cpu
    transport.sent.clear()
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    if trace:
        tracemalloc.stop()
    assert len(world.resolver.core.answers) - cached_before == count
    return (after - before) / count, cpu / count * 1e6


def timed_world(h: Hierarchy) -> tuple[World, TimedTransport]:
    world = World(h)
    transport = TimedTransport(world.authority)
    world.transport = transport
    world.resolver = build_resolver(world.config, clock=world.clock, transport=transport, seed=7)
    return world, transport


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--children", type=int, default=300)
    ap.add_argument("--mem", type=int, default=2000)
    ap.add_argument("--names", type=int, help="cold names to ask (default: children - 1)")
    ap.add_argument("--profile", help="write a cProfile of the cold part here")
    ap.add_argument("--parts", default="cold,mem")
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    t0 = time.monotonic()
    h = build_hierarchy(TestbedSpec(children=args.children), SIGNED_AT)
    print(f"testbed: {args.children} children signed in {time.monotonic() - t0:.1f} s")
    if "cold" in parts:
        world, transport = timed_world(h)
        count = args.children - 1 if args.names is None else args.names
        names = [f"www.c{i}.de." for i in range(1, 1 + count)]
        us = asyncio.run(cold(world, transport, names, args.profile))
        print(f"cold: {len(names)} names, resolver CPU {us:.0f} µs/name "
              f"(authority's share taken out)")
    if "mem" in parts:
        world, transport = timed_world(h)
        per, _ = asyncio.run(memory(world, transport, args.mem, trace=True))
        print(f"memory: {args.mem} cached wildcard answers, {per:.0f} bytes/answer "
              f"(tracemalloc, all caches)")
        world, transport = timed_world(h)
        _, us = asyncio.run(memory(world, transport, args.mem, trace=False))
        print(f"wildcard: {args.mem} distinct answers, resolver CPU {us:.0f} µs/answer")
    return 0


if __name__ == "__main__":
    sys.exit(main())
