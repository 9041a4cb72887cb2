"""EDE on every failure path (RFC 8914): the code and a text naming the zone and the
record, the same fresh and from cache, with and without DO, as a client sees it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import dns.edns
import dns.message
import dns.name
import dns.rcode
import dns.rdataset
import dns.rdatatype
import pytest

from anchord.core.outcome import Ede, EdeCode, Outcome, Question, ede_priority, order_edes
from anchord.core.ports import ServerAddress, UpstreamError, UpstreamResult
from anchord.frontend.render import render_outcome
from anchord.frontend.request import ClientQuery, parse_query
from anchord.testbed.faults import FaultKind
from anchord.testbed.signing import sign_rdataset
from anchord.testbed.zones import Hierarchy, TestbedSpec, build_hierarchy, derive_key, times

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


# -- zone data changed in one World's authority (the shared Hierarchy stays intact) --------

RRSIG = int(dns.rdatatype.RRSIG)


def _node(w: World, zone: str, owner: str) -> dict[tuple[int, int], dns.rdataset.Rdataset]:
    served = w.authority._served_zone(dns.name.from_text(zone))
    assert served is not None
    return served.nodes[dns.name.from_text(owner)]


def _replace_signed(w: World, zone: str, owner: str, rds: dns.rdataset.Rdataset) -> None:
    """Serve `rds` at `owner`, signed by the zone's own key (so only the change matters)."""
    origin = dns.name.from_text(zone)
    spec = w.hierarchy.spec
    key = derive_key(spec, origin, "csk", spec.algorithm_for(origin))
    inception, expiration = times(w.hierarchy.now)
    node = _node(w, zone, owner)
    node[(int(rds.rdtype), 0)] = rds
    node[(RRSIG, int(rds.rdtype))] = sign_rdataset(
        dns.name.from_text(owner), rds, key, inception, expiration)


def _rewritten(old: dns.rdataset.Rdataset, **fields: object) -> dns.rdataset.Rdataset:
    new = dns.rdataset.Rdataset(old.rdclass, old.rdtype, ttl=old.ttl)
    for rd in old:
        new.add(rd.replace(**fields))
    return new


def ds_fields(child: str, **fields: object) -> Callable[[World], None]:
    """The child's DS in de, with `fields` changed and re-signed by de."""
    def setup(w: World) -> None:
        old = _node(w, "de.", child)[(int(dns.rdatatype.DS), 0)]
        _replace_signed(w, "de.", child, _rewritten(old, **fields))
    return setup


def strip_rrsig(zone: str, owner: str, rdtype: str) -> Callable[[World], None]:
    def setup(w: World) -> None:
        del _node(w, zone, owner)[(RRSIG, int(dns.rdatatype.from_text(rdtype)))]
    return setup


def strip_nsec(zone: str) -> Callable[[World], None]:
    def setup(w: World) -> None:
        served = w.authority._served_zone(dns.name.from_text(zone))
        assert served is not None
        for node in served.nodes.values():
            node.pop((int(dns.rdatatype.NSEC), 0), None)
            node.pop((RRSIG, int(dns.rdatatype.NSEC)), None)
    return setup


def nsec3_iterations(zone: str, iterations: int) -> Callable[[World], None]:
    """Every NSEC3 of `zone` claims `iterations`, re-signed by the zone's key."""
    def setup(w: World) -> None:
        served = w.authority._served_zone(dns.name.from_text(zone))
        assert served is not None
        for owner, node in list(served.nodes.items()):
            old = node.get((int(dns.rdatatype.NSEC3), 0))
            if old is not None:
                _replace_signed(w, zone, owner.to_text(), _rewritten(old, iterations=iterations))
    return setup


def nothing(w: World) -> None:
    pass


# (name, setup, expected rcode, first EDE code, words the first text must contain: the
# zone and the record, owner/type where the failure is about one RRset)
PATHS = [
    ("www.c1.de.", lambda w: fault(w, "c1.de.", FaultKind.UNREACHABLE),
     "SERVFAIL", 22, ["c1.de", "www.c1.de./A", "timed out"]),
    ("www.c2.de.", lambda w: fault(w, "c2.de.", FaultKind.SERVFAIL),
     "SERVFAIL", 22, ["c2.de", "www.c2.de./A", "SERVFAIL"]),
    ("www.lame.test.", nothing, "SERVFAIL", 22, ["lame.test", "www.lame.test./A", "lame"]),
    ("www.refused.test.", nothing, "SERVFAIL", 22,
     ["refused.test", "www.refused.test./A", "REFUSED"]),
    ("www.dead.test.", nothing, "SERVFAIL", 23, ["dead.test", "www.dead.test./A"]),
    ("www.bogus.de.", nothing, "SERVFAIL", 6, ["bogus.de key tag", "www.bogus.de/A"]),
    ("www.expired.de.", nothing, "SERVFAIL", 7, ["expired.de key tag", "expired.de/DNSKEY"]),
    ("www.notyet.de.", nothing, "SERVFAIL", 8, ["notyet.de key tag", "notyet.de/DNSKEY"]),
    ("www.nokey.de.", nothing, "SERVFAIL", 9, ["DNSKEY of nokey.de", "DS", "key tags"]),
    ("www.c5.de.", strip_rrsig("c5.de.", "www.c5.de.", "A"),
     "SERVFAIL", 10, ["zone c5.de", "www.c5.de./A", "no RRSIG"]),
    ("nosuch.c5.de.", strip_nsec("c5.de."),
     "SERVFAIL", 12, ["of c5.de", "nosuch.c5.de", "NSEC"]),
    ("www.c3.de.", lambda w: fault(w, "c3.de.", FaultKind.ROLLOVER),
     "SERVFAIL", 6, ["c3.de key tag", "www.c3.de/A"]),
    ("www.unsigned.de.", lambda w: fault(w, "de.", FaultKind.ROLLOVER),
     "SERVFAIL", 6, ["de key tag", ".de/NSEC3"]),
    ("www.unsigned.de.", lambda w: fault(w, "de.", FaultKind.NSEC3_ROLLOVER),
     "SERVFAIL", 6, ["de key tag", ".de/NSEC3"]),
    # Insecure, not failures (RFC 8624, RFC 4035 5.2, RFC 9276): the answer with the reason.
    ("www.c5.de.", ds_fields("c5.de.", algorithm=3), "NOERROR", 1, ["DS", "c5.de", "alg 3"]),
    ("www.c5.de.", ds_fields("c5.de.", digest_type=200), "NOERROR", 2, ["DS for c5.de", "200"]),
    ("www.unsigned.de.", nsec3_iterations("de.", 200),
     "NOERROR", 27, ["NSEC3 iterations 200", "zone de", "unsigned.de has no DS"]),
]


def fault(w: World, zone: str, kind: FaultKind) -> None:
    w.faults.apply(dns.name.from_text(zone), kind)


@pytest.mark.parametrize(("name", "setup", "rcode", "code", "words"), PATHS,
                         ids=[f"{p[0]}ede{p[3]}-{i}" for i, p in enumerate(PATHS)])
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
        # A failure says it came from the failure cache; an answer is just the answer.
        assert (13 in c_codes) == (rcode == "SERVFAIL"), c_codes


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


# -- the one priority table (core/outcome.py) -----------------------------------------------

SPECIFIC_DNSSEC = [7, 8, 9, 10, 12]
STALE = [3, 19]
NETWORK = [22, 23]


def first_of(*codes: int) -> int:
    return int(order_edes([Ede(EdeCode(c), f"reason {c}") for c in codes])[0].code)


@pytest.mark.parametrize("specific", SPECIFIC_DNSSEC)
def test_rfc8914_specific_dnssec_codes_lead_over_6(specific: int) -> None:
    assert first_of(6, specific) == specific
    assert first_of(specific, 6) == specific


@pytest.mark.parametrize("lower", [*STALE, *NETWORK])
def test_rfc8914_bogus_leads_over_stale_and_network(lower: int) -> None:
    assert first_of(lower, 6) == 6
    for specific in SPECIFIC_DNSSEC:
        assert first_of(lower, specific) == specific


@pytest.mark.parametrize("stale", STALE)
@pytest.mark.parametrize("network", NETWORK)
def test_rfc8914_stale_leads_over_22_and_23(stale: int, network: int) -> None:
    assert first_of(network, stale) == stale


@pytest.mark.parametrize("original", [1, 2, 6, 7, 8, 9, 10, 12, 19, 22, 23, 27])
def test_rfc9520_ede13_follows_the_code_it_caches(original: int) -> None:
    ordered = order_edes([Ede(EdeCode.CACHED_ERROR, "cached"), Ede(EdeCode(original), "why")])
    assert [int(e.code) for e in ordered] == [original, 13]
    # and never displaces any reason: it sorts below every other code in the table
    assert all(ede_priority(13) < ede_priority(c) for c in EdeCode if c != 13)
