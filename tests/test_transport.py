"""NetworkTransport against a tiny scripted UDP/TCP responder on loopback."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Callable

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.rcode
import pytest

from anchord.core.ports import ServerAddress, UpstreamError
from anchord.engine.clock import ScaledClock
from anchord.engine.transport import NetworkTransport

# A script gets (query wire, client address, reply socket, spoof socket) and does what
# the test wants the "server" to do.
Script = Callable[[bytes, tuple[str, int], socket.socket, socket.socket], None]


def _answer(query: bytes, qname: str | None = None) -> bytes:
    q = dns.message.from_wire(query)
    r = dns.message.make_response(q)
    if qname is not None:
        r.question[0].name = dns.name.from_text(qname)
    r.answer.append(dns.rrset.from_text(r.question[0].name, 60, "IN", "A", "192.0.2.1"))
    return r.to_wire()


class Responder:
    """UDP responder in a thread-free asyncio form: a datagram endpoint running `script`."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.spoof = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.spoof.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.seen: list[tuple[bytes, tuple[str, int]]] = []

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_reader(self.sock.fileno(), self._on_readable)

    def _on_readable(self) -> None:
        data, addr = self.sock.recvfrom(65535)
        self.seen.append((data, addr))
        self.script(data, addr, self.sock, self.spoof)

    def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self.sock.fileno())
        self.sock.close()
        self.spoof.close()


def _query(name: str = "www.example.", rdtype: str = "A") -> dns.message.Message:
    return dns.message.make_query(name, rdtype, use_edns=0, want_dnssec=True)


async def _run(script: Script, timeout: float = 0.5, request: dns.message.Message | None = None):
    responder = Responder(script)
    responder.start()
    try:
        t = NetworkTransport()
        result = await t.query(ServerAddress("127.0.0.1", responder.port),
                               request or _query(), timeout=timeout)
    finally:
        responder.close()
    return result, responder


def test_udp_matching_answer_is_returned_with_rtt() -> None:
    def script(q, addr, sock, spoof):
        sock.sendto(_answer(q), addr)

    result, responder = asyncio.run(_run(script))
    assert result.ok and result.error is None and not result.tcp
    assert result.response is not None
    assert result.response.answer[0][0].address == "192.0.2.1"
    assert 0 <= result.rtt < 0.5


def test_udp_answer_with_other_case_in_qname_matches() -> None:
    def script(q, addr, sock, spoof):
        sock.sendto(_answer(q, qname="WwW.ExAmPlE."), addr)

    result, _ = asyncio.run(_run(script))
    assert result.ok


def test_udp_random_id_and_source_port_per_query() -> None:
    def script(q, addr, sock, spoof):
        sock.sendto(_answer(q), addr)

    async def many():
        responder = Responder(script)
        responder.start()
        t = NetworkTransport()
        req = _query()
        for _ in range(20):
            r = await t.query(ServerAddress("127.0.0.1", responder.port), req)
            assert r.ok
        responder.close()
        return responder.seen, req

    seen, req = asyncio.run(many())
    ids = {struct.unpack("!H", d[:2])[0] for d, _ in seen}
    ports = {a[1] for _, a in seen}
    assert len(ids) >= 18 and len(ports) >= 18
    # The caller's message is not changed by the transport.
    assert all(d[2:] == req.to_wire()[2:] for d, _ in seen)


@pytest.mark.parametrize("spoof_kind", ["wrong_id", "wrong_qname", "wrong_qtype",
                                        "no_qr", "wrong_source_port", "garbage_short"])
def test_udp_spoofed_packets_do_not_end_the_wait(spoof_kind: str) -> None:
    def script(q, addr, sock, spoof):
        good = _answer(q)
        if spoof_kind == "wrong_id":
            bad = struct.pack("!H", (struct.unpack("!H", good[:2])[0] + 1) & 0xFFFF) + good[2:]
        elif spoof_kind == "wrong_qname":
            bad = _answer(q, qname="evil.example.")
        elif spoof_kind == "wrong_qtype":
            m = dns.message.from_wire(good)
            m.question[0] = dns.rrset.RRset(m.question[0].name, m.question[0].rdclass,
                                            dns.rdatatype.AAAA)
            bad = m.to_wire()
        elif spoof_kind == "no_qr":
            bad = good[:2] + bytes([good[2] & 0x7F]) + good[3:]
        elif spoof_kind == "garbage_short":
            bad = b"\x01\x02\x03"
        else:
            bad = good
        target = spoof if spoof_kind == "wrong_source_port" else sock
        target.sendto(bad, addr)
        sock.sendto(good, addr)

    result, _ = asyncio.run(_run(script))
    assert result.ok, result.error


def test_udp_unparseable_answer_with_our_id_is_malformed() -> None:
    def script(q, addr, sock, spoof):
        # Our ID, QR set, but one question whose name runs past the end.
        sock.sendto(q[:2] + b"\x80\x00\x00\x01\x00\x00\x00\x00\x00\x00\x3fabc", addr)

    result, _ = asyncio.run(_run(script))
    assert result.error is UpstreamError.MALFORMED and result.response is None


def test_udp_truncated_answer_is_returned_with_tc() -> None:
    def script(q, addr, sock, spoof):
        good = bytearray(_answer(q))
        good[2] |= 0x02  # TC
        sock.sendto(bytes(good[:-3]), addr)  # cut inside the answer's rdata

    result, _ = asyncio.run(_run(script))
    assert result.ok and result.response is not None
    assert result.response.flags & dns.flags.TC


def test_udp_silence_is_a_timeout() -> None:
    result, _ = asyncio.run(_run(lambda *a: None, timeout=0.2))
    assert result.error is UpstreamError.TIMEOUT


def test_timeout_is_in_resolver_seconds_on_a_scaled_clock() -> None:
    async def go():
        responder = Responder(lambda *a: None)
        responder.start()
        clock = ScaledClock(start=1_000_000.0, scale=100.0)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        r = await NetworkTransport(clock).query(
            ServerAddress("127.0.0.1", responder.port), _query(), timeout=10.0)
        responder.close()
        return r, loop.time() - t0

    result, real = asyncio.run(go())
    assert result.error is UpstreamError.TIMEOUT
    assert real < 1.0  # 10 resolver seconds at 100x is 0.1 s
    assert result.rtt >= 9.0  # measured on the resolver's clock


def test_udp_icmp_refused_is_network_error() -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now

    async def go():
        return await NetworkTransport().query(ServerAddress("127.0.0.1", port), _query(),
                                              timeout=1.0)

    result = asyncio.run(go())
    assert result.error is UpstreamError.NETWORK


async def _tcp_server(handler):
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


@pytest.mark.parametrize("mode", ["good", "wrong_id", "garbage", "close", "silent"])
def test_tcp(mode: str) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        (n,) = struct.unpack("!H", await reader.readexactly(2))
        q = await reader.readexactly(n)
        if mode == "close":
            writer.close()
            return
        if mode == "silent":
            await asyncio.sleep(1)
            writer.close()
            return
        a = _answer(q)
        if mode == "wrong_id":
            a = b"\x00\x00" + a[2:] if a[:2] != b"\x00\x00" else b"\x00\x01" + a[2:]
        if mode == "garbage":
            a = a[:2] + b"\x80\x00\x00\x01"
        writer.write(struct.pack("!H", len(a)) + a)
        await writer.drain()
        writer.close()

    async def go():
        server, port = await _tcp_server(handler)
        async with server:
            return await NetworkTransport().query(ServerAddress("127.0.0.1", port), _query(),
                                                  tcp=True, timeout=0.3)

    result = asyncio.run(go())
    assert result.tcp
    expected = {"good": None, "wrong_id": UpstreamError.MALFORMED,
                "garbage": UpstreamError.MALFORMED, "close": UpstreamError.NETWORK,
                "silent": UpstreamError.TIMEOUT}[mode]
    assert result.error is expected
    if mode == "good":
        assert result.response is not None and result.response.answer


def test_tcp_connection_refused_is_network_error() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()

    async def go():
        return await NetworkTransport().query(ServerAddress("127.0.0.1", port), _query(),
                                              tcp=True, timeout=1.0)

    assert asyncio.run(go()).error is UpstreamError.NETWORK


def test_works_under_uvloop() -> None:
    import uvloop

    def script(q, addr, sock, spoof):
        spoof.sendto(_answer(q), addr)
        sock.sendto(_answer(q), addr)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        result, _ = runner.run(_run(script))
    assert result.ok


def test_ipv6_loopback() -> None:
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        s.bind(("::1", 0))
    except OSError:
        pytest.fail("no IPv6 loopback (::1) here: the IPv6 listener cannot be checked")
    s.setblocking(False)
    port = s.getsockname()[1]

    async def go():
        loop = asyncio.get_running_loop()

        def on_read() -> None:
            data, addr = s.recvfrom(65535)
            s.sendto(_answer(data), addr)

        loop.add_reader(s.fileno(), on_read)
        try:
            return await NetworkTransport().query(ServerAddress("::1", port), _query())
        finally:
            loop.remove_reader(s.fileno())
            s.close()

    assert asyncio.run(go()).ok


def test_formerr_without_question_is_accepted() -> None:
    def script(q, addr, sock, spoof):
        hdr = q[:2] + struct.pack("!HHHHH", 0x8000 | dns.rcode.FORMERR, 0, 0, 0, 0)
        sock.sendto(hdr, addr)

    result, _ = asyncio.run(_run(script))
    assert result.ok and result.response is not None
    assert result.response.rcode() == dns.rcode.FORMERR


def _iterator_like(name: str, rdtype: str, flags: int, dnssec: bool, payload: int,
                   use_edns: int | bool | None) -> dns.message.Message:
    msg = dns.message.make_query(name, rdtype, use_edns=use_edns, want_dnssec=dnssec,
                                 payload=payload)
    msg.flags = flags
    return msg


@pytest.mark.parametrize("use_edns", [0, None, False])
@pytest.mark.parametrize("flags", [0, dns.flags.RD, dns.flags.RD | dns.flags.CD])
@pytest.mark.parametrize("dnssec", [True, False])
@pytest.mark.parametrize("name,rdtype,payload", [
    ("www.Example.", "A", 1232), (".", "NS", 512), ("x." * 60 + "de.", "DS", 4096),
    ("*.wild.de.", "TYPE65534", 1232), ("a\\000b.de.", "DNSKEY", 1400),
])
def test_plain_query_wire_is_what_dnspython_renders(
        name: str, rdtype: str, payload: int, flags: int, dnssec: bool,
        use_edns: int | bool | None) -> None:
    from anchord.engine.transport import _plain_query_wire

    msg = _iterator_like(name, rdtype, flags, dnssec, payload, use_edns)
    for qid in (0, 1, 0xBEEF, 0xFFFF):
        expected = struct.pack("!H", qid) + msg.to_wire()[2:]
        assert _plain_query_wire(msg, qid) == expected


def test_plain_query_wire_leaves_other_shapes_to_dnspython() -> None:
    from anchord.engine.transport import _plain_query_wire

    with_option = dns.message.make_query("www.example.", "A", use_edns=0,
                                         options=[dns.edns.GenericOption(65001, b"x")])
    padded = dns.message.make_query("www.example.", "A", use_edns=0, pad=128)
    two = _query()
    two.question.append(dns.rrset.RRset(dns.name.from_text("b.example."), 1, 1))
    with_answer = _query()
    with_answer.answer.append(dns.rrset.from_text("www.example.", 60, "IN", "A", "192.0.2.1"))
    for msg in (with_option, padded, two, with_answer):
        assert _plain_query_wire(msg, 7) is None
