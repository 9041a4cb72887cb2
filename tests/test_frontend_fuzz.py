"""100,000 random and mutated packets at a running server: it answers or drops each one,
never crashes, and still answers a good query afterwards."""

from __future__ import annotations

import random
import socket
import struct
import time

import dns.edns
import dns.message
import dns.query
import dns.rcode

from tests.test_frontend_harness import running_server

TOTAL = 100_000
BATCH = 500  # packets sent before waiting for the server to catch up


def _bases() -> list[bytes]:
    out = []
    for name, rdtype, edns, do in [("www.example.de.", "A", 0, True), ("a.b.", "AAAA", -1, False),
                                   ("x.", "TXT", 0, False), (".", "DNSKEY", 0, True),
                                   ("bogus.example.de.", "MX", 0, True)]:
        q = dns.message.make_query(name, rdtype, use_edns=edns, want_dnssec=do,
                                   options=[dns.edns.GenericOption(10, b"01234567")]
                                   if edns == 0 else None)
        out.append(q.to_wire())
    return out


def _mutate(rng: random.Random, base: bytes) -> bytes:
    kind = rng.randrange(9)
    b = bytearray(base)
    if kind == 0:  # pure noise
        return rng.randbytes(rng.randrange(0, 120))
    if kind == 1:  # flip a few bytes anywhere
        for _ in range(rng.randrange(1, 5)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        return bytes(b)
    if kind == 2:  # truncate
        return bytes(b[: rng.randrange(len(b))])
    if kind == 3:  # counts
        struct.pack_into("!HHHH", b, 4, *(rng.choice((0, 1, 2, 255, 65535)) for _ in range(4)))
        return bytes(b)
    if kind == 4:  # compression loops and bad pointers in the question name
        target = rng.choice((12, 13, 14, len(b) - 1, 0x3FFF))
        return bytes(b[:12]) + struct.pack("!H", 0xC000 | target) + bytes(b[-4:])
    if kind == 5:  # two pointers pointing at each other
        return bytes(b[:12]) + b"\x01a\xc0\x0e\xc0\x0c" + bytes(b[-4:])
    if kind == 6:  # flags: QR, opcodes, Z, rcode
        struct.pack_into("!H", b, 2, rng.randrange(65536))
        return bytes(b)
    if kind == 7:  # junk appended or inserted
        at = rng.randrange(len(b))
        return bytes(b[:at]) + rng.randbytes(rng.randrange(1, 20)) + bytes(b[at:])
    # label length bytes set to reserved/overlong values
    i = 12
    if i < len(b):
        b[i] = rng.choice((0x40, 0x41, 0x80, 0x3F, 0xFF))
    return bytes(b)


def test_fuzz_100k_packets_no_crash_and_still_answering() -> None:
    rng = random.Random(20260505)
    bases = _bases()
    deadline = time.monotonic() + 90
    with running_server() as srv:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        s.settimeout(5)
        addr = ("127.0.0.1", srv.port)
        sent = 0
        sync = dns.message.make_query("sync.example.", "A")
        while sent < TOTAL:
            for _ in range(BATCH):
                s.sendto(_mutate(rng, rng.choice(bases)), addr)
            sent += BATCH
            # Wait until the server has worked through the batch (it answers in order
            # of arrival, so the sync answer comes after the batch's immediate replies).
            sync.id = (sync.id + 1) & 0xFFFF
            s.sendto(sync.to_wire(), addr)
            while True:
                data = s.recv(65535)
                if data[:2] == struct.pack("!H", sync.id) and len(data) > 12:
                    break
            assert time.monotonic() < deadline, "fuzzing took too long"
        st = srv.frontend.stats
        good = dns.query.udp(dns.message.make_query("after.example.", "A"), addr[0],
                             port=srv.port, timeout=3)
        assert good.rcode() == dns.rcode.NOERROR and good.answer
        assert st.crashes == 0
        # Loopback with a paced sender loses next to nothing.
        assert st.udp_queries >= TOTAL * 0.95
        assert st.dropped + sum(st.responses.values()) >= st.udp_queries * 0.95
        s.close()
