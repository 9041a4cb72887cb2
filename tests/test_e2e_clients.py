"""End to end with real clients: `anchord serve -c DIR/resolver.toml` against
`anchord testbed --dir DIR --children 30`, both as processes on free loopback ports,
asked by dig, kdig (UDP and TCP) and checked against delv as an independent validator."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.dnssec
import dns.name
import dns.rdatatype
import dns.zone
import pytest

from tests.e2e_support import (
    Reply,
    ResolverProc,
    TestbedProc,
    delv,
    dig,
    kdig,
    start_resolver,
    start_testbed,
)
from tests.requirements import require_tools

_tools = require_tools("dig", "kdig", "delv")

CHILDREN = 30


@dataclass
class Stack:
    testbed: TestbedProc
    resolver: ResolverProc
    directory: Path

    @property
    def port(self) -> int:
        return self.resolver.port

    def key_tag(self, zone: str) -> int:
        origin = dns.name.from_text(zone)
        path = self.directory / "zones" / f"{zone.rstrip('.')}.zone"
        z = dns.zone.from_file(str(path), origin=origin, relativize=False, check_origin=False)
        keys = z.get_rdataset(origin, dns.rdatatype.DNSKEY)
        assert keys is not None, f"no DNSKEY in {path}"
        return dns.dnssec.key_id(keys[0])


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    directory = tmp_path_factory.mktemp("e2e-clients")
    tb = start_testbed(directory, CHILDREN)
    try:
        resolver = start_resolver(tb.resolver_toml)
    except BaseException:
        tb.stop()
        raise
    try:
        yield Stack(tb, resolver, directory)
    finally:
        resolver.stop()
        tb.stop()


@dataclass(frozen=True)
class Case:
    name: str
    rdtype: str
    rcode: str
    ad: bool
    ede: int | None = None  # the first EDE code expected (None: no EDE at all)

    def __str__(self) -> str:
        return f"{self.name}/{self.rdtype}"


CASES = [
    Case("www.c1.de", "A", "NOERROR", True),
    Case("www.c2.de", "AAAA", "NOERROR", True),
    Case("www.c7.de", "A", "NOERROR", True),  # its NS is out of bailiwick, under hoster.com
    Case("www.bogus.de", "A", "SERVFAIL", False, 6),
    Case("www.expired.de", "A", "SERVFAIL", False, 7),
    Case("www.notyet.de", "A", "SERVFAIL", False, 8),
    Case("www.nokey.de", "A", "SERVFAIL", False, 9),  # or 6 naming the DS mismatch
    Case("www.unsigned.de", "A", "NOERROR", False),
    Case("www.optout.de", "A", "NOERROR", False),  # insecure delegation in an opt-out span
    Case("nosuch.c1.de", "A", "NXDOMAIN", True),
    Case("anything.wild.de", "A", "NOERROR", True),
    Case("www.alias.de", "A", "NOERROR", True),
    Case("www.hoster.com", "A", "NOERROR", True),
    Case(".", "DNSKEY", "NOERROR", True),
    Case("c1.de", "DS", "NOERROR", True),
]


def check(stack: Stack, case: Case, reply: Reply, what: str) -> None:
    out = f"{what} {case}:\n{reply.output}"
    assert reply.rcode == case.rcode, f"rcode {reply.rcode}, expected {case.rcode}; {out}"
    assert reply.ad == case.ad, f"ad flag {'set' if reply.ad else 'missing'}; {out}"
    if reply.rcode == "SERVFAIL":
        assert reply.edes, f"a SERVFAIL without any EDE; {out}"
    if case.ede is None:
        assert not reply.edes, f"unexpected EDE {reply.edes}; {out}"
        return
    code, text = reply.edes[0]
    zone = case.name.split(".", 1)[1]
    if case.ede == 9 and code == 6:
        # EDE 6 is acceptable for a DS that no key matches if the text says so.
        assert "match" in text and "DS" in text, f"EDE 6 without the DS mismatch; {out}"
    else:
        assert code == case.ede, f"first EDE {code}, expected {case.ede}; {out}"
    assert zone in text, f"EDE text does not name {zone}; {out}"
    if case.ede == 6:
        tag = stack.key_tag(zone)
        assert str(tag) in text, f"EDE text does not name key tag {tag}; {out}"


@pytest.mark.parametrize("case", CASES, ids=str)
def test_dig_verdict_and_cached_repeat(stack: Stack, case: Case) -> None:
    first = dig(stack.port, case.name, case.rdtype)
    check(stack, case, first, "dig (first ask)")
    second = dig(stack.port, case.name, case.rdtype)
    check(stack, case, second, "dig (second, cached ask)")


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize("case", CASES, ids=str)
def test_kdig_verdict(stack: Stack, case: Case, transport: str) -> None:
    opts = ["+tcp"] if transport == "tcp" else ["+notcp"]
    for ask in ("first", "second"):
        reply = kdig(stack.port, case.name, case.rdtype, *opts)
        check(stack, case, reply, f"kdig +{transport} ({ask} ask)")


def test_bogus_text_names_zone_and_key_tag(stack: Stack) -> None:
    reply = dig(stack.port, "www.bogus.de", "A")
    tag = stack.key_tag("bogus.de")
    assert (6, ) == tuple(c for c, _ in reply.edes[:1]), reply.output
    text = reply.edes[0][1]
    assert "bogus.de" in text and str(tag) in text, (
        f"EDE 6 text should name bogus.de and key tag {tag}:\n{reply.output}")


def test_delv_agrees_with_anchord(stack: Stack, tmp_path: Path) -> None:
    """delv (BIND's validator, fed the testbed's root DS) validates what anchord hands it;
    its verdict must match anchord's: secure+AD / insecure / SERVFAIL. The anchor file is
    the one the testbed writes, as in the README's `delv -a tb/delv-anchor.conf`."""
    anchor = stack.testbed.directory / "delv-anchor.conf"
    faults = [Case("www." + z.split(".")[0] + ".de", "A", "", False)
              for z in ("bogus.de", "expired.de", "notyet.de", "nokey.de", "unsigned.de",
                        "optout.de", "alias.de")]
    faults.append(Case("anything.wild.de", "A", "", False))
    faults.append(Case("nosuch.c1.de", "A", "", False))
    good = random.Random(4).sample(stack.testbed.names(), 10)
    names = [(c.name, c.rdtype) for c in faults] + [(n, "A") for n in good]
    disagreements = []
    for name, rdtype in names:
        verdict, out = delv(stack.port, anchor, name, rdtype)
        reply = dig(stack.port, name, rdtype)
        if verdict != reply.verdict():
            disagreements.append(f"{name}/{rdtype}: delv says {verdict}, anchord says "
                                 f"{reply.verdict()}\n--- delv:\n{out}\n--- dig:\n{reply.output}")
    assert not disagreements, "\n\n".join(disagreements)
    # And delv really validated: the good names came out fully validated.
    verdict, out = delv(stack.port, anchor, "www.c1.de", "A")
    assert verdict == "secure", out


def test_resolver_log_has_no_traceback(stack: Stack) -> None:
    assert "Traceback" not in stack.resolver.log, stack.resolver.log[-3000:]
