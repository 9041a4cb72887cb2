"""EDE on every failure path (RFC 8914): the code and a text naming the zone and the
record, the same fresh and from cache, with and without DO, as a client sees it."""

from __future__ import annotations

import asyncio

import dns.edns
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import pytest

from anchord.core.outcome import Outcome, Question
from anchord.core.ports import ServerAddress, UpstreamError, UpstreamResult
from anchord.frontend.render import render_outcome
from anchord.frontend.request import ClientQuery, parse_query
from anchord.testbed.faults import FaultKind
from anchord.testbed.zones import Hierarchy, TestbedSpec, build_hierarchy

from .conftest import SIGNED_AT, World, config_for

TTL = 60
DEAD = "127.53.9.9"  # an address where nothing listens: the kernel answers "refused"


class NetworkErrors:
    """The in-process transport, with DEAD answering as a closed port would."""

    def __init__(self, inner: object) -> None:
        self.inner = inner

    async def query(self, server: ServerAddress, request: dns.message.Message, *,
                    tcp: bool = False, timeout: float = 1.5) -> UpstreamResult:
        if server.host == DEAD:
            return UpstreamResult(server, None, UpstreamError.NETWORK)
        return await self.inner.query(server, request, tcp=tcp,  # type: ignore[attr-defined,no-any-return]
                                      timeout=timeout)


@pytest.fixture(scope="module")
def hierarchy() -> Hierarchy:
    return build_hierarchy(TestbedSpec(children=6, max_ttl=TTL), SIGNED_AT)


def make_world(h: Hierarchy) -> World:
    cfg = config_for(h)
    cfg.upstream.stub_zones = {"lame.test.": ["127.53.0.1"], "refused.test.": ["127.53.3.1"],
                              "dead.test.": [DEAD]}
    cfg.dnssec.insecure_zones = ["test."]
    w = World(h, cfg)
    w.transport = NetworkErrors(w.transport)  # type: ignore[assignment]
    w.resolver.core.transport = w.transport  # type: ignore[assignment]
    w.resolver.core.iterator.transport = w.transport  # type: ignore[assignment]
    return w


def resolve(w: World, name: str) -> Outcome:
    q = Question(dns.name.from_text(name), dns.rdatatype.A)
    return asyncio.run(w.resolver.resolve(q))


def client_view(outcome: Outcome, name: str, do: bool) -> tuple[str, list[int], list[str]]:
    wire = dns.message.make_query(name, "A", use_edns=0, want_dnssec=do).to_wire()
    query = parse_query(wire)
    assert isinstance(query, ClientQuery)
    reply = dns.message.from_wire(render_outcome(query, outcome))
    edes = [o for o in reply.options if isinstance(o, dns.edns.EDEOption)]
    return (dns.rcode.to_text(reply.rcode()), [int(e.code) for e in edes],
            [e.text or "" for e in edes])


# (name, setup, expected rcode, first EDE code, words the first text must contain)
PATHS = [
    ("www.c1.de.", lambda w: fault(w, "c1.de.", FaultKind.UNREACHABLE),
     "SERVFAIL", 22, ["c1.de", "www.c1.de", "timed out"]),
    ("www.c2.de.", lambda w: fault(w, "c2.de.", FaultKind.SERVFAIL),
     "SERVFAIL", 22, ["c2.de", "www.c2.de", "SERVFAIL"]),
    ("www.lame.test.", lambda w: None, "SERVFAIL", 22, ["lame.test", "lame"]),
    ("www.refused.test.", lambda w: None, "SERVFAIL", 22, ["refused.test", "REFUSED"]),
    ("www.dead.test.", lambda w: None, "SERVFAIL", 23, ["dead.test", "www.dead.test"]),
    ("www.bogus.de.", lambda w: None, "SERVFAIL", 6, ["bogus.de", "key tag"]),
    ("www.expired.de.", lambda w: None, "SERVFAIL", 7, ["expired.de", "key tag"]),
    ("www.notyet.de.", lambda w: None, "SERVFAIL", 8, ["notyet.de", "key tag"]),
    ("www.nokey.de.", lambda w: None, "SERVFAIL", 9, ["nokey.de", "key tags"]),
    ("www.c3.de.", lambda w: fault(w, "c3.de.", FaultKind.ROLLOVER),
     "SERVFAIL", 6, ["c3.de", "key tag"]),
    ("www.unsigned.de.", lambda w: fault(w, "de.", FaultKind.ROLLOVER),
     "SERVFAIL", 6, ["de", "NSEC3", "key tag"]),
]


def fault(w: World, zone: str, kind: FaultKind) -> None:
    w.faults.apply(dns.name.from_text(zone), kind)


@pytest.mark.parametrize(("name", "setup", "rcode", "code", "words"), PATHS,
                         ids=[p[0] + str(p[3]) for p in PATHS])
def test_rfc8914_every_failure_path_names_its_reason(
        hierarchy: Hierarchy, name: str, setup, rcode: str, code: int,  # type: ignore[no-untyped-def]
        words: list[str]) -> None:
    w = make_world(hierarchy)
    setup(w)
    fresh = resolve(w, name)
    cached = resolve(w, name)
    for do in (True, False):
        got_rcode, codes, texts = client_view(fresh, name, do)
        assert got_rcode == rcode, (do, codes, texts)
        assert codes[0] == code, (do, codes, texts)
        for word in words:
            assert word in texts[0], (word, texts[0])
        c_rcode, c_codes, c_texts = client_view(cached, name, do)
        assert c_rcode == rcode
        assert c_codes[0] == code and c_texts[0] == texts[0]  # same reason from cache
        assert 13 in c_codes  # and it says it came from the failure cache


def test_rfc8767_stale_paths_say_3_and_19_with_the_reason(hierarchy: Hierarchy) -> None:
    w = make_world(hierarchy)
    assert resolve(w, "www.c4.de.").rcode == dns.rcode.NOERROR
    assert resolve(w, "nosuch.c4.de.").rcode == dns.rcode.NXDOMAIN
    w.clock.advance(TTL + 1)
    fault(w, "c4.de.", FaultKind.UNREACHABLE)
    for name, code in (("www.c4.de.", 3), ("nosuch.c4.de.", 19)):
        o = resolve(w, name)
        for do in (True, False):
            rcode, codes, texts = client_view(o, name, do)
            assert rcode in ("NOERROR", "NXDOMAIN")
            assert codes[:2] == [code, 22], (codes, texts)
            assert "c4.de" in texts[1]


def test_rfc7646_nta_answers_say_33(hierarchy: Hierarchy) -> None:
    w = make_world(hierarchy)
    w.resolver.add_nta(dns.name.from_text("bogus.de."), lifetime=60, reason="test")
    o = resolve(w, "www.bogus.de.")
    for do in (True, False):
        rcode, codes, texts = client_view(o, "www.bogus.de.", do)
        assert rcode == "NOERROR" and codes == [33] and "bogus.de" in texts[0]
