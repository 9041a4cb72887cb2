"""The simulated clients: asyncio UDP senders asking Zipf-popular names at a steady rate.

Each client has its own socket. A query that gets SERVFAIL is retried up to three times
(after 1, 2 and 4 simulated seconds), as stub resolvers and browsers do; every attempt
and its response (rcode, AD, EDE codes and texts) is one event.

Responses are read with a small wire parser (header, skip to OPT, EDE options): a full
dnspython parse per response would cost more CPU than the resolver's cached path.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import random
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import dns.flags
import dns.message
import dns.rdatatype

from anchord.testbed.incident.record import Event
from anchord.testbed.incident.timeline import SimClock

RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}
RETRY_DELAYS = (1.0, 2.0, 4.0)  # simulated seconds before retries 2, 3, 4
REAL_TIMEOUT = 3.0  # real seconds a client waits for one answer


@dataclass(slots=True)
class Workload:
    """Which names clients ask, how popular each is."""

    de_names: list[str]
    control_names: list[str]
    control_share: float = 0.2  # of first attempts
    zipf_s: float = 1.0
    seed: int = 1
    _cum: dict[str, list[float]] = field(default_factory=dict)
    _order: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        rng = random.Random(self.seed)
        for group, names in (("de", self.de_names), ("control", self.control_names)):
            order = list(names)
            rng.shuffle(order)  # popularity independent of index (and so of TTL)
            self._order[group] = order
            self._cum[group] = list(itertools.accumulate(
                1.0 / (rank ** self.zipf_s) for rank in range(1, len(order) + 1)))

    def most_popular(self, group: str, fraction: float) -> list[str]:
        order = self._order.get(group, [])
        return order[:round(len(order) * fraction)]

    def pick(self, rng: random.Random) -> tuple[str, str]:
        group = "control" if self.control_names and rng.random() < self.control_share else "de"
        cum = self._cum[group]
        i = bisect.bisect_left(cum, rng.random() * cum[-1])
        return self._order[group][min(i, len(cum) - 1)], group


def parse_response(wire: bytes) -> tuple[int, int, str, bool, tuple[int, ...], tuple[str, ...]]:
    """(id, rcode, rcode text, AD, EDE codes, EDE texts) from a response's wire form."""
    qid, flags, qd, an, ns, ar = struct.unpack_from("!HHHHHH", wire, 0)
    rcode = flags & 0xF
    ad = bool(flags & dns.flags.AD)
    pos = 12

    def skip_name(p: int) -> int:
        while True:
            n = wire[p]
            if n == 0:
                return p + 1
            if n & 0xC0 == 0xC0:
                return p + 2
            p += n + 1

    for _ in range(qd):
        pos = skip_name(pos) + 4
    for _ in range(an + ns):
        pos = skip_name(pos)
        rdlen = struct.unpack_from("!H", wire, pos + 8)[0]
        pos += 10 + rdlen
    codes: list[int] = []
    texts: list[str] = []
    for _ in range(ar):
        pos = skip_name(pos)
        rtype, _cls, ttl, rdlen = struct.unpack_from("!HHIH", wire, pos)
        pos += 10
        if rtype == 41:
            rcode |= (ttl >> 24) << 4
            p, end = pos, pos + rdlen
            while p + 4 <= end:
                code, olen = struct.unpack_from("!HH", wire, p)
                if code == 15 and olen >= 2:
                    codes.append(struct.unpack_from("!H", wire, p + 4)[0])
                    texts.append(wire[p + 6:p + 4 + olen].decode("utf-8", "replace"))
                p += 4 + olen
        pos += rdlen
    return qid, rcode, RCODES.get(rcode, str(rcode)), ad, tuple(codes), tuple(texts)


class _ClientProtocol(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.pending: dict[int, asyncio.Future[bytes]] = {}
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: object) -> None:
        if len(data) < 12:
            return
        fut = self.pending.pop(int.from_bytes(data[:2], "big"), None)
        if fut is not None and not fut.done():
            fut.set_result(data)

    def error_received(self, exc: Exception) -> None:
        pass


@dataclass(slots=True)
class Stats:
    sent: int = 0
    first: int = 0
    by_rcode: dict[str, int] = field(default_factory=dict)
    in_flight: int = 0
    skipped: int = 0  # first attempts not sent because too many were in flight


class Clients:
    """M clients against one resolver address."""

    def __init__(self, workload: Workload, count: int, server: tuple[str, int],
                 clock: SimClock, record: Callable[[Event], None], seed: int = 7,
                 max_in_flight: int = 2000) -> None:
        self.workload = workload
        self.count = count
        self.server = server
        self.clock = clock
        self.record = record
        self.rng = random.Random(seed)
        self.max_in_flight = max_in_flight
        self.stats = Stats()
        self._protocols: list[_ClientProtocol] = []
        self._templates: dict[str, bytes] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(self.count):
            _, proto = await loop.create_datagram_endpoint(
                _ClientProtocol, local_addr=("127.0.0.1", 0))
            self._protocols.append(proto)

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for p in self._protocols:
            if p.transport is not None:
                p.transport.close()

    def _wire(self, name: str) -> bytes:
        wire = self._templates.get(name)
        if wire is None:
            q = dns.message.make_query(name, dns.rdatatype.A, use_edns=0, payload=1232)
            q.flags |= dns.flags.AD  # RFC 6840: ask for the AD bit
            wire = q.to_wire()
            self._templates[name] = wire
        return wire

    async def _exchange(self, client: int, name: str) -> tuple[str, bool, tuple[int, ...],
                                                                tuple[str, ...]]:
        proto = self._protocols[client]
        qid = self.rng.getrandbits(16)
        while qid in proto.pending:
            qid = self.rng.getrandbits(16)
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        proto.pending[qid] = fut
        wire = self._wire(name)
        assert proto.transport is not None
        proto.transport.sendto(qid.to_bytes(2, "big") + wire[2:], self.server)
        try:
            data = await asyncio.wait_for(fut, REAL_TIMEOUT)
        except TimeoutError:
            proto.pending.pop(qid, None)
            return "TIMEOUT", False, (), ()
        try:
            _, _, text, ad, codes, texts = parse_response(data)
        except (struct.error, IndexError):
            return "BADRESPONSE", False, (), ()
        return text, ad, codes, texts

    async def _lookup(self, client: int, name: str, group: str) -> None:
        st = self.stats
        st.in_flight += 1
        try:
            for attempt in range(1, len(RETRY_DELAYS) + 2):
                t = self.clock.now()
                real0 = time.monotonic()
                rcode, ad, codes, texts = await self._exchange(client, name)
                rtt = (time.monotonic() - real0) * 1000
                st.sent += 1
                st.by_rcode[rcode] = st.by_rcode.get(rcode, 0) + 1
                stale = 3 in codes or 19 in codes
                self.record(Event(t, client, name, group, attempt, rcode, ad, stale, codes,
                                  texts, rtt))
                if rcode != "SERVFAIL" or attempt > len(RETRY_DELAYS):
                    break
                await asyncio.sleep(self.clock.real_seconds(RETRY_DELAYS[attempt - 1]))
        finally:
            st.in_flight -= 1

    async def prime(self, names: list[str], concurrency: int) -> dict[str, int]:
        """Ask every name once (not recorded): a resolver that has been in service for
        days has them cached. Returns the count per rcode (and first EDE)."""
        sem = asyncio.Semaphore(concurrency)
        got: dict[str, int] = {}

        async def one(i: int, name: str) -> None:
            async with sem:
                rcode, _, codes, _ = await self._exchange(i % self.count, name)
                key = rcode + (f"/EDE{codes[0]}" if codes else "")
                got[key] = got.get(key, 0) + 1

        order = list(names)
        random.Random(self.rng.random()).shuffle(order)
        await asyncio.gather(*(one(i, n) for i, n in enumerate(order)))
        return got

    async def run(self, rate: float, until_real: float) -> None:
        """First attempts at `rate` per real second until real time `until_real`."""
        tick = 0.01
        started = time.monotonic()
        issued = 0
        while time.time() < until_real:
            due = int((time.monotonic() - started) * rate) - issued
            for _ in range(max(due, 0)):
                issued += 1
                if self.stats.in_flight >= self.max_in_flight:
                    self.stats.skipped += 1
                    continue
                name, group = self.workload.pick(self.rng)
                client = self.rng.randrange(self.count)
                self.stats.first += 1
                task = asyncio.get_running_loop().create_task(self._lookup(client, name, group))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            await asyncio.sleep(tick)

    async def drain(self, timeout: float) -> None:
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)
