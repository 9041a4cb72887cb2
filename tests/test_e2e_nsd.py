"""The testbed's zone files served by NSD (Debian's nsd) instead of the embedded server:
anchord must reach the same verdicts (rcode, AD, EDE code) either way.

One NSD instance serves every zone from every testbed address, on its own free port;
a second `anchord serve` is pointed at it through upstream.port. The embedded testbed
and its own resolver run beside it for the comparison.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e_support import (
    TESTBED_ADDRESSES,
    NsdProc,
    Reply,
    ResolverProc,
    TestbedProc,
    delv,
    delv_anchor_file,
    dig,
    free_port,
    free_port_on,
    nsd_conf,
    prepare_resolver_toml,
    start_nsd,
    start_resolver,
    start_testbed,
)
from tests.requirements import require_tools

_tools = require_tools("nsd", "nsd-checkconf", "dig", "delv")

CHILDREN = 30


@dataclass
class Pair:
    testbed: TestbedProc
    embedded: ResolverProc  # anchord -> the testbed's own server
    nsd: NsdProc
    via_nsd: ResolverProc  # anchord -> NSD serving the same zone files


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    directory = tmp_path_factory.mktemp("e2e-nsd-testbed")
    workdir = tmp_path_factory.mktemp("e2e-nsd")
    started: list[TestbedProc | ResolverProc | NsdProc] = []
    try:
        tb = start_testbed(directory, CHILDREN)
        started.append(tb)
        embedded = start_resolver(tb.resolver_toml)
        started.append(embedded)
        info = tb.info
        addresses = sorted({s["address"] for s in info["servers"]})  # type: ignore[index]
        zones = [(z["name"], z["file"]) for z in info["zones"]]  # type: ignore[index]
        port = free_port_on(addresses or TESTBED_ADDRESSES)
        conf = nsd_conf(workdir, directory, addresses, port, zones)
        nsd = start_nsd(conf, port, addresses[0], ".")
        started.append(nsd)
        config = prepare_resolver_toml(tb.resolver_toml, listen_port=free_port(),
                                       upstream_port=port, target=workdir / "resolver.toml")
        via_nsd = start_resolver(config)
        started.append(via_nsd)
        yield Pair(tb, embedded, nsd, via_nsd)
    finally:
        for p in reversed(started):
            p.stop()


FAULTS = ["www.bogus.de", "www.expired.de", "www.notyet.de", "www.nokey.de",
          "www.unsigned.de", "www.optout.de", "anything.wild.de", "www.alias.de",
          "nosuch.c1.de", "nosuch.de", "www.hoster.com"]
EXPECTED = {
    "www.bogus.de": ("SERVFAIL", False, 6),
    "www.expired.de": ("SERVFAIL", False, 7),
    "www.notyet.de": ("SERVFAIL", False, 8),
    "www.nokey.de": ("SERVFAIL", False, 9),
    "www.unsigned.de": ("NOERROR", False, None),
    "www.optout.de": ("NOERROR", False, None),
    "anything.wild.de": ("NOERROR", True, None),
    "www.alias.de": ("NOERROR", True, None),
    "nosuch.c1.de": ("NXDOMAIN", True, None),
    # The NSEC3 covering nosuch.de's next closer name has opt-out: a name error under an
    # opt-out span is insecure (Unbound's nsec3_prove_nameerror does the same).
    "nosuch.de": ("NXDOMAIN", False, None),
    "www.hoster.com": ("NOERROR", True, None),
}


def summary(r: Reply) -> tuple[str, bool, int | None]:
    return (r.rcode, r.ad, r.edes[0][0] if r.edes else None)


def sample(pair: Pair) -> list[str]:
    return random.Random(11).sample(pair.testbed.names(), 10)


def test_nsd_serves_the_zone_files(pair: Pair) -> None:
    """NSD loaded every zone (sanity, so later failures are about resolution)."""
    r = dig(pair.nsd.port, "www.c1.de", "A", "+norec", server="127.53.3.1")
    assert r.rcode == "NOERROR" and "aa" in r.flags, r.output + "\n" + pair.nsd.log[-2000:]
    r = dig(pair.nsd.port, "bogus.de", "DS", "+norec", server="127.53.1.1")
    assert r.rcode == "NOERROR", r.output


@pytest.mark.parametrize("name", FAULTS)
def test_fault_names_same_verdict_as_embedded(pair: Pair, name: str) -> None:
    via_nsd = dig(pair.via_nsd.port, name, "A")
    embedded = dig(pair.embedded.port, name, "A")
    msg = f"{name}:\n--- via NSD:\n{via_nsd.output}\n--- via embedded server:\n{embedded.output}"
    expected = EXPECTED[name]
    got = summary(via_nsd)
    if expected[2] == 9 and got[2] == 6:  # EDE 6 naming the DS mismatch is also right
        assert "DS" in via_nsd.edes[0][1], msg
        got = (got[0], got[1], 9)
    assert got == expected, f"via NSD: {summary(via_nsd)}, expected {expected}; {msg}"
    assert summary(via_nsd) == summary(embedded), msg
    again = dig(pair.via_nsd.port, name, "A")
    assert summary(again) == summary(via_nsd), f"second ask differs:\n{again.output}\n{msg}"


def test_good_names_same_verdict_as_embedded(pair: Pair) -> None:
    problems = []
    for name in sample(pair):
        via_nsd = dig(pair.via_nsd.port, name, "A")
        embedded = dig(pair.embedded.port, name, "A")
        if summary(via_nsd) != ("NOERROR", True, None) or summary(embedded) != summary(via_nsd):
            problems.append(f"{name}:\n--- via NSD:\n{via_nsd.output}\n"
                            f"--- via embedded server:\n{embedded.output}")
    assert not problems, "\n\n".join(problems)


def test_root_and_ds_have_ad_via_nsd(pair: Pair) -> None:
    for name, rdtype in ((".", "DNSKEY"), ("c1.de", "DS"), ("de", "DNSKEY")):
        r = dig(pair.via_nsd.port, name, rdtype)
        assert r.rcode == "NOERROR" and r.ad, f"{name}/{rdtype}:\n{r.output}"


def test_delv_against_nsd_directly_agrees(pair: Pair, tmp_path: Path) -> None:
    """delv asking NSD itself (which holds every zone, so it can answer everything) is a
    validator with no anchord in the path: its verdicts must be anchord's.

    One known difference between validators is allowed: BIND calls a name error whose next
    closer name is covered by an opt-out NSEC3 (nosuch.de) secure, Unbound and anchord
    call it insecure."""
    anchor = delv_anchor_file(pair.testbed.trust_anchor, tmp_path / "anchor.conf")
    problems = []
    for name in [*FAULTS, *sample(pair)[:5]]:
        verdict, out = delv(pair.nsd.port, anchor, name, "A", "127.53.0.1")
        reply = dig(pair.via_nsd.port, name, "A")
        if (name, verdict, reply.verdict()) == ("nosuch.de", "secure", "insecure"):
            continue
        if verdict != reply.verdict():
            problems.append(f"{name}: delv@NSD says {verdict}, anchord says {reply.verdict()}"
                            f"\n--- delv:\n{out}\n--- dig:\n{reply.output}")
    assert not problems, "\n\n".join(problems)


@pytest.mark.parametrize("name", ["www.c1.de", "c1.de", "de", ".", "anything.wild.de",
                                  "www.bogus.de"])
def test_rrsig_question_same_answer_via_nsd_and_embedded(pair: Pair, name: str) -> None:
    """`dig NAME RRSIG` through anchord: the signatures at the name, NOERROR without AD
    (they cannot be validated: RRSIGs carry no RRSIG; Unbound answers the same), whichever
    authority serves the zone. It was SERVFAIL via the embedded server, which answered
    NODATA, and the apex lost its RRSIG over NS via NSD (moved beside the NS set)."""
    def covered(r: Reply) -> list[str]:
        lines = [line.split() for line in r.output.splitlines() if not line.startswith(";")]
        return sorted(f[4] for f in lines if len(f) > 4 and f[3] == "RRSIG")

    via_nsd = dig(pair.via_nsd.port, name, "RRSIG")
    embedded = dig(pair.embedded.port, name, "RRSIG")
    msg = f"{name}:\n--- via NSD:\n{via_nsd.output}\n--- via embedded:\n{embedded.output}"
    for r in (via_nsd, embedded):
        assert (r.rcode, r.ad, r.edes) == ("NOERROR", False, []), msg
    assert covered(via_nsd) == covered(embedded) and covered(via_nsd), msg
    if name in ("c1.de", "de", "."):
        assert {"NS", "SOA", "DNSKEY"} <= set(covered(via_nsd)), msg


def test_resolver_logs_have_no_traceback(pair: Pair) -> None:
    for r in (pair.embedded, pair.via_nsd):
        assert "Traceback" not in r.log, r.log[-3000:]
