"""The frontend over real loopback sockets, asked by real dig and kdig."""

from __future__ import annotations

import socket
import struct
import subprocess
import time

import dns.edns
import dns.flags
import dns.message
import dns.query
import dns.rcode
import pytest

from tests.test_frontend_harness import BOGUS_TEXT, running_server


def _dig(tool: str, port: int, name: str, *extra: str) -> str:
    limits = ["+tries=1", "+time=2"] if tool == "dig" else ["+retry=0", "+timeout=2"]
    cmd = [tool, "@127.0.0.1", "-p", str(port), name, "A", "+dnssec", *limits, *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=15).stdout


@pytest.mark.parametrize("tcp", [False, True])
def test_dig_sees_ede_6_with_text_for_bogus(tcp: bool) -> None:
    with running_server() as srv:
        out = _dig("dig", srv.port, "www.bogus.example.de.", *(["+tcp"] if tcp else []))
    assert "status: SERVFAIL" in out, out
    assert f"; EDE: 6 (DNSSEC Bogus): ({BOGUS_TEXT})" in out, out
    assert "192.0.2.66" not in out


@pytest.mark.parametrize("tcp", [False, True])
def test_kdig_sees_ede_6_with_text_for_bogus(tcp: bool) -> None:
    with running_server() as srv:
        out = _dig("kdig", srv.port, "www.bogus.example.de.", *(["+tcp"] if tcp else []))
    assert "SERVFAIL" in out, out
    assert "EDE: 6 (DNSSEC Bogus)" in out and BOGUS_TEXT in out, out


def test_dig_cd_gets_bogus_data_and_secure_gets_ad() -> None:
    with running_server() as srv:
        cd = _dig("dig", srv.port, "www.bogus.example.de.", "+cd")
        secure = _dig("dig", srv.port, "www.example.de.")
        assert srv.resolver.started
    assert "status: NOERROR" in cd and "192.0.2.66" in cd and " ad" not in cd.split("QUERY")[1]
    assert "status: NOERROR" in secure and "flags: qr rd ra ad;" in secure, secure
    assert srv.resolver.closed


def test_acl_refuses_outside_clients_with_ede_18() -> None:
    with running_server(access_control=["192.0.2.0/24"]) as srv:
        out = _dig("dig", srv.port, "www.example.de.")
        tcp_out = _dig("dig", srv.port, "www.example.de.", "+tcp")
        assert srv.frontend.stats.refused_acl == 2
        assert not srv.resolver.questions  # the resolver never saw them
    assert "status: REFUSED" in out and "EDE: 18 (Prohibited)" in out, out
    assert "status: REFUSED" in tcp_out


def test_tcp_pipelining_several_queries_on_one_connection() -> None:
    with running_server() as srv:
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
        wires = []
        for i in range(10):
            q = dns.message.make_query(f"n{i}.example.", "A", use_edns=0)
            q.id = 1000 + i
            wires.append(q.to_wire())
        s.sendall(b"".join(struct.pack("!H", len(w)) + w for w in wires))
        ids = set()
        f = s.makefile("rb")
        for _ in range(10):
            (n,) = struct.unpack("!H", f.read(2))
            r = dns.message.from_wire(f.read(n))
            assert r.rcode() == dns.rcode.NOERROR and r.answer
            ids.add(r.id)
        s.close()
    assert ids == set(range(1000, 1010))


def test_tcp_idle_connection_is_closed() -> None:
    with running_server(idle=0.3) as srv:
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
        t0 = time.monotonic()
        assert s.recv(10) == b""  # the server closed it
        assert time.monotonic() - t0 < 3
        s.close()


def test_garbage_gets_formerr_or_nothing_and_server_keeps_answering() -> None:
    with running_server() as srv:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(2)
        s.sendto(b"\x12\x34", ("127.0.0.1", srv.port))  # no header: dropped
        s.sendto(b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01",
                 ("127.0.0.1", srv.port))  # compression loop: FORMERR
        r = dns.message.from_wire(s.recv(512))
        assert r.id == 0x1234 and r.rcode() == dns.rcode.FORMERR
        q = dns.message.make_query("ok.example.", "A")
        answer = dns.query.udp(q, "127.0.0.1", port=srv.port, timeout=2)
        assert answer.answer
        st = srv.frontend.stats
        assert st.dropped == 1 and st.formerr == 1 and st.crashes == 0
        s.close()


def test_ipv6_listener() -> None:
    try:
        probe = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        probe.bind(("::1", 0))
        probe.close()
    except OSError:
        pytest.fail("no IPv6 loopback (::1) here: the IPv6 listener cannot be checked")
    with running_server(listen=["[::1]:0"]) as srv:
        q = dns.message.make_query("v6.example.", "A", use_edns=0)
        r = dns.query.udp(q, "::1", port=srv.port, timeout=2)
        rt = dns.query.tcp(q, "::1", port=srv.port, timeout=2)
    assert r.answer and rt.answer


def test_stdlib_asyncio_loop_works_too() -> None:
    with running_server(uvloop=False) as srv:
        q = dns.message.make_query("www.example.de.", "A", want_dnssec=True)
        r = dns.query.udp(q, "127.0.0.1", port=srv.port, timeout=2)
    assert r.flags & dns.flags.AD and r.answer


def test_tcp_clients_over_the_limit_are_closed() -> None:
    with running_server(max_tcp_clients=2) as srv:
        held = [socket.create_connection(("127.0.0.1", srv.port), timeout=5) for _ in range(2)]
        time.sleep(0.2)  # let the server accept both
        extra = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
        assert extra.recv(10) == b""
        assert srv.frontend.stats.tcp_rejected == 1
        for s in [*held, extra]:
            s.close()


@pytest.mark.parametrize("rdtype", ["AXFR", "IXFR"])
def test_zone_transfer_is_refused_with_ede_21_over_udp_and_tcp(rdtype: str) -> None:
    # One answer on both transports (it was NOTIMP over UDP, REFUSED without EDE over
    # TCP): a client retrying over TCP learns nothing new.
    with running_server() as srv:
        q = dns.message.make_query("example.de.", rdtype, use_edns=0)
        replies = [dns.query.udp(q, "127.0.0.1", port=srv.port, timeout=2),
                   dns.query.tcp(q, "127.0.0.1", port=srv.port, timeout=2)]
        plain = dns.query.udp(dns.message.make_query("example.de.", rdtype), "127.0.0.1",
                              port=srv.port, timeout=2)
        counted = srv.frontend.stats.edes[21]
    for r in replies:
        assert r.rcode() == dns.rcode.REFUSED
        edes = [o for o in r.options if isinstance(o, dns.edns.EDEOption)]
        assert [int(e.code) for e in edes] == [21] and "zone transfer" in (edes[0].text or "")
    assert plain.rcode() == dns.rcode.REFUSED and plain.edns < 0  # no OPT without EDNS
    assert counted == 2
