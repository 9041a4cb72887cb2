"""A tiny hierarchy signed entirely by an outside signer (ldns), served by NSD, validated
by anchord: nothing of anchord's own testbed is involved.

    .          127.54.0.1   NSEC          (ns.root. A 127.54.0.1, in the root zone itself)
    test.      127.54.0.2   NSEC
    ext.test.  127.54.0.3   NSEC3, 0 extra iterations, no salt (RFC 9276)

Each zone gets one ECDSAP256SHA256 key from ldns-keygen; the child is signed first with
ldns-signzone, its DS (ldns-key2ds) goes into the parent, then the parent is signed, up to
the root, whose DS becomes anchord's trust anchor.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e_support import (
    NsdProc,
    ResolverProc,
    delv,
    delv_anchor_file,
    dig,
    free_port,
    free_port_on,
    nsd_conf,
    start_nsd,
    start_resolver,
)
from tests.requirements import require_tools

_tools = require_tools("ldns-keygen", "ldns-signzone", "ldns-key2ds", "nsd", "nsd-checkconf",
                       "dig", "delv")

ROOT_ADDR, TEST_ADDR, EXT_ADDR = "127.54.0.1", "127.54.0.2", "127.54.0.3"
ADDRESSES = (ROOT_ADDR, TEST_ADDR, EXT_ADDR)

UNSIGNED = {
    "ext.test.": f"""$ORIGIN ext.test.
$TTL 3600
@       SOA ns.ext.test. hostmaster.ext.test. 1 7200 3600 1209600 300
@       NS  ns.ext.test.
ns      A   {EXT_ADDR}
www     A   192.0.2.80
www     AAAA 2001:db8::80
mail    A   192.0.2.81
""",
    "test.": f"""$ORIGIN test.
$TTL 3600
@       SOA ns.test. hostmaster.test. 1 7200 3600 1209600 300
@       NS  ns.test.
ns      A   {TEST_ADDR}
ext     NS  ns.ext.test.
ns.ext  A   {EXT_ADDR}
""",
    ".": f"""$ORIGIN .
$TTL 86400
.         SOA ns.root. hostmaster.root. 1 7200 3600 1209600 300
.         NS  ns.root.
ns.root.  A   {ROOT_ADDR}
test.     NS  ns.test.
ns.test.  A   {TEST_ADDR}
""",
}
FILES = {"ext.test.": "ext.test.zone", "test.": "test.zone", ".": "root.zone"}
PARENT = {"ext.test.": "test.", "test.": "."}


def run(argv: list[str], cwd: Path) -> str:
    r = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, f"{' '.join(argv)} failed ({r.returncode}):\n{r.stdout}{r.stderr}"
    return r.stdout


def sign_hierarchy(work: Path) -> str:
    """Sign ext.test., test., . bottom-up with ldns; return the root's DS as a trust anchor."""
    for zone, text in UNSIGNED.items():
        (work / FILES[zone]).write_text(text)
    anchor = ""
    for zone in ("ext.test.", "test.", "."):
        key = run(["ldns-keygen", "-a", "ECDSAP256SHA256", "-k", zone], work).strip()
        unsigned = work / FILES[zone]
        if zone == "ext.test.":
            # NSEC3 with 0 extra iterations and an empty salt (RFC 9276).
            run(["ldns-signzone", "-n", "-t", "0", str(unsigned), key], work)
        else:
            run(["ldns-signzone", str(unsigned), key], work)
        ds = run(["ldns-key2ds", "-n", "-2", f"{key}.key"], work).strip()
        assert "DS" in ds.split(), f"ldns-key2ds printed no DS for {zone}: {ds!r}"
        if zone in PARENT:
            parent_file = work / FILES[PARENT[zone]]
            parent_file.write_text(parent_file.read_text() + ds + "\n")
        else:
            fields = ds.split()
            i = fields.index("DS")
            anchor = ". IN DS " + " ".join(fields[i + 1:])
    return anchor


def resolver_toml(path: Path, listen: int, upstream: int, anchor: str) -> Path:
    path.write_text(
        "[server]\n"
        f'listen = ["127.0.0.1:{listen}"]\n\n'
        "[upstream]\n"
        f"port = {upstream}\n"
        f'root_hints = {{ "ns.root." = ["{ROOT_ADDR}"] }}\n'
        "timeout = 1.0\n\n"
        "[dnssec]\n"
        f'trust_anchors = ["{anchor}"]\n\n'
        "[control]\n"
        "enabled = false\n\n"
        "[nta]\n"
        'state_file = "nta.json"\n'
    )
    return path


@dataclass
class Signed:
    work: Path
    anchor: str
    nsd: NsdProc
    resolver: ResolverProc


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Signed]:
    work = tmp_path_factory.mktemp("outside-signer")
    anchor = sign_hierarchy(work)
    port = free_port_on(ADDRESSES)
    zones = [(zone, f"{FILES[zone]}.signed") for zone in FILES]
    nsd = start_nsd(nsd_conf(work, work, ADDRESSES, port, zones), port, ROOT_ADDR, ".")
    try:
        rdir = work / "resolver"
        rdir.mkdir()
        config = resolver_toml(rdir / "resolver.toml", free_port(), port, anchor)
        resolver = start_resolver(config)
    except BaseException:
        nsd.stop()
        raise
    try:
        yield Signed(work, anchor, nsd, resolver)
    finally:
        resolver.stop()
        nsd.stop()


def test_nsd_serves_ldns_signed_zones(signed: Signed) -> None:
    r = dig(signed.nsd.port, "www.ext.test", "A", "+norec", server=EXT_ADDR)
    assert r.rcode == "NOERROR" and "aa" in r.flags and "RRSIG" in r.output, (
        r.output + "\n" + signed.nsd.log[-2000:])


@pytest.mark.parametrize(("name", "rdtype", "rcode"), [
    ("www.ext.test", "A", "NOERROR"),
    ("www.ext.test", "AAAA", "NOERROR"),
    ("nosuch.ext.test", "A", "NXDOMAIN"),  # NSEC3 name error
    ("www.ext.test", "TXT", "NOERROR"),  # NSEC3 no data
    ("ext.test", "DS", "NOERROR"),
    ("nosuch.test", "A", "NXDOMAIN"),  # NSEC name error
    (".", "DNSKEY", "NOERROR"),
])
def test_secure_with_ad(signed: Signed, name: str, rdtype: str, rcode: str) -> None:
    for ask in ("first", "second (cached)"):
        r = dig(signed.resolver.port, name, rdtype)
        assert r.rcode == rcode and r.ad and not r.edes, (
            f"{ask} ask of {name}/{rdtype}: expected {rcode} with ad, no EDE:\n{r.output}\n"
            f"--- resolver log:\n{signed.resolver.log[-2000:]}")


def test_answer_is_the_zone_data(signed: Signed) -> None:
    r = dig(signed.resolver.port, "www.ext.test", "A")
    assert "192.0.2.80" in r.output, r.output


def test_delv_agrees(signed: Signed, tmp_path: Path) -> None:
    anchor = delv_anchor_file(signed.anchor, tmp_path / "anchor.conf")
    for name in ("www.ext.test", "nosuch.ext.test"):
        verdict, out = delv(signed.resolver.port, anchor, name, "A")
        assert verdict == "secure", f"delv through anchord, {name}:\n{out}"


def test_wrong_anchor_is_servfail_with_ede(signed: Signed) -> None:
    """The same hierarchy with a root DS that matches no key: nothing validates, and the
    SERVFAIL says why (so the AD bits above really come from the chain)."""
    fields = signed.anchor.split()
    digest = fields[-1]
    fields[-1] = ("0" if digest[0] != "0" else "1") + digest[1:]
    rdir = signed.work / "wrong-anchor"
    rdir.mkdir()
    config = resolver_toml(rdir / "resolver.toml", free_port(), signed.nsd.port,
                           " ".join(fields))
    resolver = start_resolver(config)
    try:
        r = dig(resolver.port, "www.ext.test", "A")
    finally:
        resolver.stop()
    assert r.rcode == "SERVFAIL" and not r.ad, r.output
    assert r.edes and r.edes[0][0] in (6, 9), f"expected EDE 6 or 9:\n{r.output}"
