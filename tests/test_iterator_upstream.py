"""How the iterator talks to a zone's servers: TC → TCP, glue inside the referring
server's bailiwick only, and the choice among a zone's servers by smoothed RTT.

Each test runs the whole resolver against a tiny signed world (tests/signedworld.py)
with a fake clock; the transport below wraps the world to truncate, to alias a second
server address onto a zone's server, or to answer slowly from one address.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset

from anchord.core.outcome import Outcome, Question, Security
from anchord.core.ports import ServerAddress, UpstreamResult
from anchord.engine.clock import FakeClock
from anchord.engine.driver import Driver, build_resolver

from .signedworld import NS, SignedWorld, Zone, standard_world

EXAMPLE_NS = "192.0.2.3"  # ns.example.test. in standard_world()


class ShapedTransport:
    """The world's servers, seen through a network with a few oddities.

    truncate_udp: hosts whose UDP responses come back empty with TC set (TCP is whole).
    aliases: another address answering exactly as a host of the world does.
    delays: seconds an address takes to answer (the fake clock moves by as much).
    """

    def __init__(self, world: SignedWorld, clock: FakeClock, *,
                 truncate_udp: frozenset[str] = frozenset(),
                 aliases: dict[str, str] | None = None,
                 delays: dict[str, float] | None = None) -> None:
        self.world = world
        self.clock = clock
        self.truncate_udp = truncate_udp
        self.aliases = aliases or {}
        self.delays = delays or {}
        self.sent: list[tuple[str, str, bool]] = []  # (host, "qname/qtype", tcp)

    async def query(self, server: ServerAddress, request: dns.message.Message, *,
                    tcp: bool = False, timeout: float = 1.5) -> UpstreamResult:
        query = dns.message.from_wire(request.to_wire())
        q = query.question[0]
        self.sent.append((server.host, f"{q.name}/{dns.rdatatype.to_text(q.rdtype)}", tcp))
        response = self.world.respond(query, self.aliases.get(server.host, server.host))
        if server.host in self.truncate_udp and not tcp:
            response.flags |= dns.flags.TC
            response.answer, response.authority, response.additional = [], [], []
        rtt = self.delays.get(server.host, 0.001)
        self.clock.advance(rtt)
        wire = response.to_wire(want_shuffle=False)
        return UpstreamResult(server, dns.message.from_wire(wire), rtt=rtt, tcp=tcp)


def _resolver(world: SignedWorld, **shape: object) -> tuple[Driver, ShapedTransport]:
    world.build()
    clock = FakeClock(world.now)
    transport = ShapedTransport(world, clock, **shape)  # type: ignore[arg-type]
    return build_resolver(world.config(), clock=clock, transport=transport, seed=7), transport


def _ask(driver: Driver, qname: str, qtype: str = "A") -> Outcome:
    q = Question(dns.name.from_text(qname), dns.rdatatype.from_text(qtype))
    return asyncio.run(driver.resolve(q, False))


def _addresses(o: Outcome) -> set[str]:
    return {rd.address for r in o.answer if r.rdtype == dns.rdatatype.A for rd in r}


# -- TC → TCP ---------------------------------------------------------------------------


def test_rfc7766_truncated_udp_response_is_asked_again_over_tcp_and_answered_whole() -> None:
    driver, transport = _resolver(standard_world(),
                                  truncate_udp=frozenset({EXAMPLE_NS}))
    o = _ask(driver, "www.example.test.")
    assert o.rcode == dns.rcode.NOERROR, o.edes
    assert o.security is Security.SECURE, o.edes
    assert _addresses(o) == {"192.0.2.80"}
    assert (EXAMPLE_NS, "www.example.test./A", False) in transport.sent
    assert (EXAMPLE_NS, "www.example.test./A", True) in transport.sent


# -- glue bailiwick -----------------------------------------------------------------------


def _renamed_server(zone: Zone, owner: str, ns: str) -> None:
    """Make `owner`'s NS set in `zone` the single name `ns`, dropping the old glue."""
    name = zone.name(owner)
    for rd in zone.nodes[name].pop(NS):
        zone.nodes.pop(rd.target, None)
    zone.add(owner, "NS", ns)


def test_glue_outside_the_referring_zone_is_never_used_and_the_ns_name_is_looked_up() -> None:
    """test. refers child.test. to ns.example. and adds, out of its bailiwick, an A record
    for ns.example. that points elsewhere: the resolver must look the name up itself."""
    world = SignedWorld()
    world.zone(".")
    test = world.zone("test.", address="192.0.2.2")
    world.zone("example.", address="192.0.2.3")  # its ns.example. is 192.0.2.3
    child = world.zone("child.test.", address="192.0.2.3")
    child.add("www", "A", "192.0.2.80")
    world.build()
    _renamed_server(test, "child", "ns.example.")
    _renamed_server(child, "@", "ns.example.")
    test.sign()
    child.sign()
    poison = dns.rrset.from_text("ns.example.", 3600, "IN", "A", "192.0.2.66")

    def add_poison(request: dns.message.Message, response: dns.message.Message) -> None:
        if any(r.rdtype == NS and r.name == child.origin for r in response.authority):
            response.additional.append(poison)

    test.filters.append(add_poison)
    driver, transport = _resolver(world)
    o = _ask(driver, "www.child.test.")
    assert o.security is Security.SECURE, o.edes
    assert _addresses(o) == {"192.0.2.80"}
    assert any(sent == "ns.example./A" for _, sent, _ in transport.sent)
    assert all(host != "192.0.2.66" for host, _, _ in transport.sent), transport.sent


# -- server choice by smoothed RTT --------------------------------------------------------


def _with_second_server(names: list[str], address: str) -> SignedWorld:
    """The standard world with `names` in example.test. and a second server for it,
    ns2.example.test. at `address` (glue in test.), both zones signed again."""
    world = standard_world()
    example = world.zone("example.test.")
    for name in names:
        example.add(name, "A", "192.0.2.81")
    world.build()
    test = world.zone("test.")
    example.add("@", "NS", "ns2.example.test.")
    example.add("ns2", "A", address)
    test.add("example", "NS", "ns2.example.test.")
    test.add("ns2.example", "A", address)
    test.sign()
    example.sign()
    return world


def test_most_queries_go_to_the_zone_server_with_the_lower_smoothed_rtt() -> None:
    """example.test. has two servers; one answers in 200 ms, the other in 1 ms."""
    names = [f"host{i}" for i in range(30)]
    world = _with_second_server(names, "192.0.2.33")
    slow, fast = EXAMPLE_NS, "192.0.2.33"
    driver, transport = _resolver(world, aliases={fast: EXAMPLE_NS}, delays={slow: 0.2})
    assert _ask(driver, "www.example.test.").security is Security.SECURE  # warm-up
    for name in names:
        assert _ask(driver, f"{name}.example.test.").rcode == dns.rcode.NOERROR
    wanted = {f"{name}.example.test./A" for name in names}
    hosts = Counter(host for host, sent, _ in transport.sent if sent in wanted)
    assert sum(hosts.values()) >= len(names)
    assert hosts[fast] >= 0.8 * sum(hosts.values()), hosts


# -- do_not_query -------------------------------------------------------------------------


def test_do_not_query_takes_networks_and_addresses_and_skips_every_server_inside() -> None:
    """Unbound's do-not-query-address takes netblocks too. example.test.'s second server,
    198.51.100.33, answers fast (its first is slow): it would get nearly every question,
    but inside a blocked network or at a blocked address it gets none."""
    names = [f"host{i}" for i in range(10)]
    world = _with_second_server(names, "198.51.100.33")
    for blocked in (["198.51.100.0/24"], ["2001:db8::/32", "198.51.100.33"]):
        clock = FakeClock(world.now)
        transport = ShapedTransport(world, clock, aliases={"198.51.100.33": EXAMPLE_NS},
                                    delays={EXAMPLE_NS: 0.2})
        cfg = world.config()
        cfg.upstream.do_not_query = blocked
        driver = build_resolver(cfg, clock=clock, transport=transport, seed=7)
        for name in names:
            o = _ask(driver, f"{name}.example.test.")
            assert o.security is Security.SECURE and _addresses(o) == {"192.0.2.81"}, o.edes
        asked = {host for host, sent, _ in transport.sent if sent.startswith("host")}
        assert asked == {EXAMPLE_NS}, (blocked, transport.sent)
