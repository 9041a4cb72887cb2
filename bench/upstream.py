#!/usr/bin/env python3
"""CPU cost of one upstream UDP query through NetworkTransport, resolver side only.

    PYTHONPATH=src:. python3 bench/upstream.py [--queries 2000]

A child process answers every query on loopback (one A record); this process sends the
queries one after another, as the iterator does, and reports its own user and system
CPU time per query: the socket set-up, the query's wire form, the wait and the parse.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import subprocess
import sys

import dns.message

from anchord.core.ports import ServerAddress
from anchord.engine.transport import NetworkTransport

RESPONDER = """
import socket, sys, dns.message, dns.rrset
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1], flush=True)
while True:
    data, addr = s.recvfrom(65535)
    r = dns.message.make_response(dns.message.from_wire(data))
    r.answer.append(dns.rrset.from_text(r.question[0].name, 300, "IN", "A", "192.0.2.1"))
    s.sendto(r.to_wire(), addr)
"""


async def measure(port: int, count: int) -> tuple[float, float]:
    transport = NetworkTransport()
    server = ServerAddress("127.0.0.1", port)
    requests = [dns.message.make_query(f"www.c{i}.de.", "A", use_edns=0, want_dnssec=True,
                                       payload=1232) for i in range(count)]
    for r in requests[:50]:  # warm-up
        await transport.query(server, r)
    before = resource.getrusage(resource.RUSAGE_SELF)
    for r in requests:
        result = await transport.query(server, r)
        if result.error is not None:
            raise SystemExit(f"upstream.py: {result.error}")
    after = resource.getrusage(resource.RUSAGE_SELF)
    return ((after.ru_utime - before.ru_utime) / count * 1e6,
            (after.ru_stime - before.ru_stime) / count * 1e6)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--uvloop", action="store_true", help="on uvloop, as anchord serve runs")
    args = ap.parse_args()
    responder = subprocess.Popen([sys.executable, "-c", RESPONDER], stdout=subprocess.PIPE,
                                 text=True)
    try:
        assert responder.stdout is not None
        port = int(responder.stdout.readline())
        if args.uvloop:
            import uvloop

            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                user, system = runner.run(measure(port, args.queries))
        else:
            user, system = asyncio.run(measure(port, args.queries))
    finally:
        responder.kill()
        responder.wait()
    loop = "uvloop" if args.uvloop else "asyncio"
    print(f"upstream UDP query ({loop}): {user + system:.0f} µs CPU ({user:.0f} user, "
          f"{system:.0f} system), {args.queries} queries")
    return 0


if __name__ == "__main__":
    sys.exit(main())
