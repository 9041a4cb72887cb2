"""What the configuration gives an operator who writes little: strict keys, a
localhost-only ACL, and the IANA root trust anchors and root hints built in."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dns.edns
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import pytest

from anchord.control.config import Config, ConfigError, load_config
from anchord.core.outcome import EdeCode
from anchord.engine.clock import FakeClock
from anchord.engine.driver import build_resolver
from anchord.frontend.request import ClientQuery
from anchord.frontend.server import Frontend

SRC = str(Path(__file__).resolve().parents[1] / "src")

# root-anchors.xml as IANA publishes it (KSK-2017, KSK-2024): tag -> (algorithm,
# digest type, digest).
IANA_ROOT_DS = {
    20326: (8, 2, "E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D"),
    38696: (8, 2, "683D2D0ACB8C9B712A1948B27F741219298D0A450D612C483AF444A4C0FB2B16"),
}

# named.root as IANA publishes it: name -> (IPv4, IPv6).
IANA_ROOT_HINTS = {
    "a.root-servers.net.": ("198.41.0.4", "2001:503:ba3e::2:30"),
    "b.root-servers.net.": ("170.247.170.2", "2801:1b8:10::b"),
    "c.root-servers.net.": ("192.33.4.12", "2001:500:2::c"),
    "d.root-servers.net.": ("199.7.91.13", "2001:500:2d::d"),
    "e.root-servers.net.": ("192.203.230.10", "2001:500:a8::e"),
    "f.root-servers.net.": ("192.5.5.241", "2001:500:2f::f"),
    "g.root-servers.net.": ("192.112.36.4", "2001:500:12::d0d"),
    "h.root-servers.net.": ("198.97.190.53", "2001:500:1::53"),
    "i.root-servers.net.": ("192.36.148.17", "2001:7fe::53"),
    "j.root-servers.net.": ("192.58.128.30", "2001:503:c27::2:30"),
    "k.root-servers.net.": ("193.0.14.129", "2001:7fd::1"),
    "l.root-servers.net.": ("199.7.83.42", "2001:500:9f::42"),
    "m.root-servers.net.": ("202.12.27.33", "2001:dc3::35"),
}


# -- unknown keys ---------------------------------------------------------------------


def test_unknown_key_is_one_line_naming_the_file_the_key_and_the_known_keys(
        tmp_path: Path) -> None:
    path = tmp_path / "resolver.toml"
    path.write_text("[cache]\nmax_entrys = 5000\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    line = str(info.value)
    assert "\n" not in line
    assert str(path) in line and "'cache.max_entrys'" in line
    assert "max_entries" in line and "min_ttl" in line  # the keys that would be right


def test_unknown_key_stops_serve_at_start_up_with_that_one_line(tmp_path: Path) -> None:
    path = tmp_path / "resolver.toml"
    path.write_text("[server]\nlisen = [\"127.0.0.1:5399\"]\n")
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run([sys.executable, "-m", "anchord", "serve", "-c", str(path)],
                          capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert str(path) in lines[0] and "'server.lisen'" in lines[0] and "listen" in lines[0]


# -- the default access control -------------------------------------------------------


def _frontend_with_defaults() -> Frontend:
    """A frontend as `serve` builds it from a config without [server] access_control."""
    cfg = load_config(None)

    class NoTransport:
        async def query(self, *args: object, **kwargs: object) -> None:
            raise AssertionError("an ACL decision must not ask upstream")

    resolver = build_resolver(cfg, clock=FakeClock(0), transport=NoTransport(),  # type: ignore[arg-type]
                              seed=1)
    return Frontend(resolver, cfg.server)


@pytest.mark.parametrize("tcp", [False, True])
def test_default_acl_refuses_a_non_loopback_client_with_refused_and_ede18(tcp: bool) -> None:
    frontend = _frontend_with_defaults()
    wire = dns.message.make_query("www.example.com.", "A", use_edns=0).to_wire()
    for outside in ("192.0.2.10", "10.1.2.3", "2001:db8::1"):
        reply = frontend._accept(wire, outside, tcp=tcp)
        assert isinstance(reply, bytes), outside
        msg = dns.message.from_wire(reply)
        assert msg.rcode() == dns.rcode.REFUSED, outside
        codes = [o.code for o in msg.options if isinstance(o, dns.edns.EDEOption)]
        assert codes == [EdeCode.PROHIBITED], outside
    assert frontend.stats.refused_acl == 3


@pytest.mark.parametrize("loopback", ["127.0.0.1", "127.8.9.10", "::1"])
def test_default_acl_accepts_loopback_clients(loopback: str) -> None:
    frontend = _frontend_with_defaults()
    wire = dns.message.make_query("www.example.com.", "A", use_edns=0).to_wire()
    assert isinstance(frontend._accept(wire, loopback, tcp=False), ClientQuery)


# -- built-in trust anchors and root hints --------------------------------------------


def test_builtin_trust_anchors_are_the_iana_root_ds_for_key_tags_20326_and_38696() -> None:
    resolver = build_resolver(Config(), clock=FakeClock(0), seed=1)
    anchors = resolver.core.trust.anchors()
    assert list(anchors) == [dns.name.root]
    ds = anchors[dns.name.root]
    assert ds.rdtype == dns.rdatatype.DS
    got = {rd.key_tag: (rd.algorithm, rd.digest_type, rd.digest.hex().upper()) for rd in ds}
    assert got == IANA_ROOT_DS


def test_builtin_root_hints_are_the_13_iana_root_servers() -> None:
    hints = Config().upstream.root_hints
    assert {name: tuple(addrs) for name, addrs in hints.items()} == IANA_ROOT_HINTS
