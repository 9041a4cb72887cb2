"""A tiny signed hierarchy served from memory, for black-box tests of the resolver core.

hickory-dns style: a test builds root, a TLD and a child or two, signs them with real
keys (dnspython + cryptography), applies one *named* mutation to one zone, and asks the
resolver through a Transport that answers as the authoritative servers would:

- each server address hosts its zones; a question goes to the deepest one there;
- referrals carry the parent's DS (or the NSEC proving there is none) when DO is set;
- AA answers carry their RRSIGs; NXDOMAIN and NODATA carry SOA + NSEC + RRSIGs;
- wildcards are expanded, with the NSEC covering the query name beside the answer.

NSEC only (the big testbed in anchord.testbed covers NSEC3). Nothing here reads the
wall clock: a world is signed relative to its `now` (default T0).

    world = standard_world()
    world.zone("dsa.test.", algorithms=(3,)).add("www", "A", "192.0.2.9")
    world.mutate("example.test.", "strip-denial")
    outcome = world.ask("www.dsa.test.", "A", at=T0)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import dns.dnssec
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.rrset
from cryptography.hazmat.primitives.asymmetric import dsa, ec
from dns.rdtypes.ANY.DNSKEY import DNSKEY
from dns.rdtypes.ANY.RRSIG import RRSIG

from anchord.control.config import Config
from anchord.core.outcome import Outcome, Question
from anchord.core.ports import ServerAddress, UpstreamResult
from anchord.engine.clock import FakeClock
from anchord.engine.driver import Driver, build_resolver

Name = dns.name.Name

T0 = 1_750_000_000  # the default "now" of a world (2025-06-15)
DAY = 86400
INCEPTION = T0 - DAY  # default signature window of every RRset
EXPIRATION = T0 + 30 * DAY

SOA = int(dns.rdatatype.SOA)
NS = int(dns.rdatatype.NS)
DS = int(dns.rdatatype.DS)
A = int(dns.rdatatype.A)
CNAME = int(dns.rdatatype.CNAME)
DNSKEY_T = int(dns.rdatatype.DNSKEY)
RRSIG_T = int(dns.rdatatype.RRSIG)
NSEC = int(dns.rdatatype.NSEC)
NSEC3 = int(dns.rdatatype.NSEC3)

_ALLOW_ALL = dns.dnssec.allow_all_policy  # DSA must be signable for the algorithm cases

# Private keys by (zone, algorithm): generated once per test session, reused by worlds.
_PRIVATE_KEYS: dict[tuple[str, int], Any] = {}


def _private_key(zone: Name, algorithm: int) -> Any:
    key = (zone.to_text(), algorithm)
    if key not in _PRIVATE_KEYS:
        if algorithm == 13:
            _PRIVATE_KEYS[key] = ec.generate_private_key(ec.SECP256R1())
        elif algorithm == 14:
            _PRIVATE_KEYS[key] = ec.generate_private_key(ec.SECP384R1())
        elif algorithm == 3:
            _PRIVATE_KEYS[key] = dsa.generate_private_key(1024)
        else:
            raise ValueError(f"signedworld cannot make keys for algorithm {algorithm}")
    return _PRIVATE_KEYS[key]


@dataclass(frozen=True, slots=True)
class Key:
    """A CSK (flags 257): signs every RRset of its zone, named by the parent's DS."""

    private: Any
    dnskey: DNSKEY

    @property
    def algorithm(self) -> int:
        return int(self.dnskey.algorithm)

    @property
    def tag(self) -> int:
        return dns.dnssec.key_id(self.dnskey)


ResponseFilter = Callable[[dns.message.Message, dns.message.Message], None]


@dataclass
class Zone:
    origin: Name
    address: str
    algorithms: tuple[int, ...] = (13,)  # () = unsigned
    ttl: int = 3600
    inception: int = INCEPTION
    expiration: int = EXPIRATION
    # name -> rdtype -> rdataset (authoritative data, cuts' NS and DS, glue)
    nodes: dict[Name, dict[int, dns.rdataset.Rdataset]] = field(default_factory=dict)
    # (owner, covered type) -> RRSIG rdatas, filled by signing
    sigs: dict[tuple[Name, int], list[RRSIG]] = field(default_factory=dict)
    keys: list[Key] = field(default_factory=list)
    cuts: set[Name] = field(default_factory=set)
    # Signature window per RRset, overriding the zone's (the "rrsig-window" mutation).
    windows: dict[tuple[Name, int], tuple[int, int]] = field(default_factory=dict)
    # DS rdata texts the parent publishes instead of ones made from the keys.
    ds_override: list[str] | None = None
    filters: list[ResponseFilter] = field(default_factory=list)

    @property
    def signed(self) -> bool:
        return bool(self.algorithms)

    @property
    def ns_name(self) -> Name:
        return dns.name.from_text("ns.root.") if self.origin == dns.name.root \
            else dns.name.from_text("ns", self.origin)

    def name(self, owner: str) -> Name:
        return self.origin if owner == "@" else dns.name.from_text(owner, self.origin)

    def add(self, owner: str, rdtype: str, *rdatas: str, ttl: int | None = None) -> Zone:
        """Add records (owner relative to the origin, "@" for the apex)."""
        name = self.name(owner)
        rtype = dns.rdatatype.from_text(rdtype)
        rds = self.nodes.setdefault(name, {}).get(int(rtype))
        if rds is None:
            rds = dns.rdataset.Rdataset(dns.rdataclass.IN, rtype)
            self.nodes[name][int(rtype)] = rds
        for text in rdatas:
            rds.add(dns.rdata.from_text(dns.rdataclass.IN, rtype, text, origin=self.origin,
                                        relativize=False),
                    ttl if ttl is not None else self.ttl)
        return self

    def rrset(self, name: Name, rdtype: int, owner: Name | None = None) -> dns.rrset.RRset:
        rds = self.nodes[name][rdtype]
        rrset = dns.rrset.RRset(owner or name, dns.rdataclass.IN, rds.rdtype)
        rrset.update(rds)
        return rrset

    def sig_rrset(self, name: Name, rdtype: int, owner: Name | None = None
                  ) -> dns.rrset.RRset | None:
        sigs = self.sigs.get((name, rdtype))
        if not sigs:
            return None
        rrset = dns.rrset.RRset(owner or name, dns.rdataclass.IN, dns.rdatatype.RRSIG,
                                dns.rdatatype.RdataType.make(rdtype))
        ttl = self.nodes[name][rdtype].ttl
        for sig in sigs:
            rrset.add(sig, ttl)
        return rrset

    # -- structure -------------------------------------------------------------------------
    def below_cut(self, name: Name) -> bool:
        return any(name.is_subdomain(c) and name != c for c in self.cuts)

    def authoritative_names(self) -> list[Name]:
        """Owners of this zone's NSEC chain: data and cuts, not glue, in canonical order."""
        return sorted(n for n in self.nodes if not self.below_cut(n))

    def exists(self, name: Name) -> bool:
        """The name has data or is an empty non-terminal above data."""
        return any(n.is_subdomain(name) for n in self.authoritative_names())

    # -- signing -----------------------------------------------------------------------------
    def make_keys(self) -> None:
        self.keys = []
        for alg in self.algorithms:
            private = _private_key(self.origin, alg)
            dnskey = dns.dnssec.make_dnskey(private.public_key(), alg, flags=257)
            self.keys.append(Key(private, dnskey))
        if self.keys:
            self.nodes.setdefault(self.origin, {}).pop(DNSKEY_T, None)
            self.add("@", "DNSKEY", *(k.dnskey.to_text() for k in self.keys))

    def ds_texts(self) -> list[str]:
        if self.ds_override is not None:
            return list(self.ds_override)
        return [dns.dnssec.make_ds(self.origin, k.dnskey, "SHA256", policy=_ALLOW_ALL).to_text()
                for k in self.keys]

    def build_nsec_chain(self) -> None:
        owners = self.authoritative_names()
        for i, owner in enumerate(owners):
            nxt = owners[(i + 1) % len(owners)]
            types = set(self.nodes[owner]) - {NSEC, RRSIG_T}
            types |= {NSEC, RRSIG_T}
            text = nxt.to_text() + " " + " ".join(
                sorted(dns.rdatatype.to_text(dns.rdatatype.RdataType.make(t)) for t in types))
            self.nodes[owner].pop(NSEC, None)
            ttl = self.nodes[self.origin][SOA][0].minimum
            self.add(owner.to_text(), "NSEC", text, ttl=ttl)

    def sign(self) -> None:
        self.sigs = {}
        if not self.signed:
            return
        self.build_nsec_chain()
        for name in self.authoritative_names():
            for rdtype in self.nodes[name]:
                if rdtype == NS and name in self.cuts:
                    continue  # delegation NS: not authoritative, not signed
                self.sign_rrset(name, rdtype)

    def sign_rrset(self, name: Name, rdtype: int, window: tuple[int, int] | None = None,
                   keys: list[Key] | None = None) -> list[RRSIG]:
        inception, expiration = window or self.windows.get(
            (name, rdtype), (self.inception, self.expiration))
        made: list[RRSIG] = []
        for key in keys if keys is not None else self.keys:
            made.append(dns.dnssec.sign(self.rrset(name, rdtype), key.private, self.origin,
                                        key.dnskey, inception=inception,
                                        expiration=expiration, policy=_ALLOW_ALL))
        if keys is None and window is None:
            self.sigs[(name, rdtype)] = made
        return made

    # -- answering (RFC 1034 4.3.2 with RFC 4035 3.1) ----------------------------------------
    def _add(self, section: list[dns.rrset.RRset], name: Name, rdtype: int, do: bool,
             owner: Name | None = None) -> None:
        section.append(self.rrset(name, rdtype, owner))
        sigs = self.sig_rrset(name, rdtype, owner) if do else None
        if sigs is not None:
            section.append(sigs)

    def _nsec_covering(self, name: Name) -> Name:
        owners = [n for n in self.authoritative_names() if NSEC in self.nodes[n]]
        before = [n for n in owners if n < name]
        return before[-1] if before else owners[-1]

    def _denial(self, msg: dns.message.Message, do: bool, *nsec_owners: Name) -> None:
        self._add(msg.authority, self.origin, SOA, do)
        if not (do and self.signed):
            return
        seen: set[Name] = set()
        for owner in nsec_owners:
            if owner not in seen:
                seen.add(owner)
                self._add(msg.authority, owner, NSEC, do)

    def answer(self, qname: Name, qtype: int, do: bool, msg: dns.message.Message) -> None:
        cut = next((c for c in sorted(self.cuts, key=len, reverse=True)
                    if qname.is_subdomain(c) and not (qname == c and qtype == DS)), None)
        if cut is not None:
            self._referral(cut, do, msg)
            return
        msg.flags |= dns.flags.AA
        node = self.nodes.get(qname)
        if node is not None and not self.below_cut(qname):
            if qtype in node:
                self._add(msg.answer, qname, qtype, do)
            elif CNAME in node:
                self._add(msg.answer, qname, CNAME, do)
            else:
                self._denial(msg, do, qname)
            return
        if self.exists(qname):  # an empty non-terminal: NODATA
            self._denial(msg, do, self._nsec_covering(qname))
            return
        encloser = qname.parent()
        while not self.exists(encloser) and encloser != self.origin:
            encloser = encloser.parent()
        wildcard = dns.name.from_text("*", encloser)
        wnode = self.nodes.get(wildcard)
        if wnode is not None:
            rdtype = qtype if qtype in wnode else CNAME if CNAME in wnode else None
            if rdtype is None:
                self._denial(msg, do, self._nsec_covering(qname), wildcard)
                return
            self._add(msg.answer, wildcard, rdtype, do, owner=qname)
            if do and self.signed:  # RFC 4035 3.1.3.3: the next closer name does not exist
                self._add(msg.authority, self._nsec_covering(qname), NSEC, do)
            return
        msg.set_rcode(dns.rcode.NXDOMAIN)
        self._denial(msg, do, self._nsec_covering(qname), self._nsec_covering(wildcard))

    def _referral(self, cut: Name, do: bool, msg: dns.message.Message) -> None:
        node = self.nodes[cut]
        msg.authority.append(self.rrset(cut, NS))
        if do and self.signed:
            self._add(msg.authority, cut, DS if DS in node else NSEC, do)
        for rd in node[NS]:
            glue = self.nodes.get(rd.target, {}).get(A)
            if glue is not None:
                msg.additional.append(self.rrset(rd.target, A))


# -- named mutations ------------------------------------------------------------------------
# Each takes the zone (and the world) and keyword arguments; "before" ones run before the
# world is signed, "after" ones on the signed zone, "serve" ones on every response.

def _rrsig_window(world: SignedWorld, zone: Zone, *, inception: int | None = None,
                  expiration: int | None = None, owner: str | None = None,
                  rdtype: str | None = None) -> None:
    """Sign the zone (or one RRset of it) with another validity window."""
    if owner is None:
        zone.inception = inception if inception is not None else zone.inception
        zone.expiration = expiration if expiration is not None else zone.expiration
        return
    zone.windows[(zone.name(owner), int(dns.rdatatype.from_text(rdtype or "A")))] = (
        inception if inception is not None else zone.inception,
        expiration if expiration is not None else zone.expiration)


def _ds_digest_type(world: SignedWorld, zone: Zone, *, digest_type: int,
                    digest: str = "00112233445566778899aabbccddeeff") -> None:
    """The parent publishes DS records with this digest type (and arbitrary digest bytes)."""
    zone.make_keys()
    zone.ds_override = [f"{k.tag} {k.algorithm} {digest_type} {digest}" for k in zone.keys]


def _extra_expired_rrsig(world: SignedWorld, zone: Zone, *, owner: str, rdtype: str = "A",
                         first: bool = True) -> None:
    """Beside each good RRSIG over one RRset, one by the same key that expired 30 days ago."""
    name = zone.name(owner)
    rtype = int(dns.rdatatype.from_text(rdtype))
    old = zone.sign_rrset(name, rtype, window=(world.now - 60 * DAY, world.now - 30 * DAY))
    good = zone.sigs[(name, rtype)]
    zone.sigs[(name, rtype)] = old + good if first else good + old


def _corrupt_rrsigs(world: SignedWorld, zone: Zone, *, algorithm: int | None = None,
                    owner: str | None = None, rdtype: str | None = None) -> None:
    """Flip one bit in the signatures (of one algorithm, of one RRset, or all)."""
    name = zone.name(owner) if owner is not None else None
    rtype = int(dns.rdatatype.from_text(rdtype)) if rdtype is not None else None
    for (n, t), sigs in zone.sigs.items():
        if (name is not None and n != name) or (rtype is not None and t != rtype):
            continue
        zone.sigs[(n, t)] = [
            s.replace(signature=s.signature[:-1] + bytes([s.signature[-1] ^ 0x01]))
            if algorithm is None or s.algorithm == algorithm else s
            for s in sigs]


def _strip_denial(world: SignedWorld, zone: Zone, *, qname: str | None = None) -> None:
    """Responses lose their NSEC/NSEC3 records and the RRSIGs over them."""
    only = dns.name.from_text(qname) if qname is not None else None

    def strip(request: dns.message.Message, response: dns.message.Message) -> None:
        if only is not None and request.question[0].name != only:
            return
        response.authority = [
            r for r in response.authority
            if r.rdtype not in (NSEC, NSEC3)
            and not (r.rdtype == RRSIG_T and r.covers in (NSEC, NSEC3))]

    zone.filters.append(strip)


MUTATIONS: dict[str, tuple[str, Callable[..., None]]] = {
    "rrsig-window": ("before", _rrsig_window),
    "ds-digest-type": ("before", _ds_digest_type),
    "extra-expired-rrsig": ("after", _extra_expired_rrsig),
    "corrupt-rrsigs": ("after", _corrupt_rrsigs),
    "strip-denial": ("serve", _strip_denial),
}


class SignedWorld:
    """Zones by origin, signed on first use, served by `transport`."""

    def __init__(self, now: int = T0) -> None:
        self.now = now
        self.zones: dict[Name, Zone] = {}
        self._mutations: list[tuple[str, Name, dict[str, Any]]] = []
        self._built = False
        self.sent: list[tuple[str, str]] = []  # (server, "qname/qtype") per query

    def zone(self, origin: str, *, algorithms: tuple[int, ...] = (13,),
             address: str | None = None) -> Zone:
        name = dns.name.from_text(origin)
        if name in self.zones:
            return self.zones[name]
        address = address or f"192.0.2.{len(self.zones) + 1}"
        zone = Zone(name, address, algorithms)
        zone.add("@", "SOA", f"{zone.ns_name} hostmaster.{'root.' if len(name) == 1 else name}"
                 " 1 3600 900 604800 300")
        zone.add("@", "NS", zone.ns_name.to_text())
        zone.add(zone.ns_name.to_text(), "A", address)
        self.zones[name] = zone
        return zone

    def mutate(self, origin: str, mutation: str, **kwargs: Any) -> SignedWorld:
        if mutation not in MUTATIONS:
            raise KeyError(f"unknown mutation {mutation!r}; known: {sorted(MUTATIONS)}")
        assert not self._built, "mutate before the first question"
        self._mutations.append((mutation, dns.name.from_text(origin), kwargs))
        return self

    def _apply(self, phase: str) -> None:
        for mutation, origin, kwargs in self._mutations:
            when, func = MUTATIONS[mutation]
            if when == phase:
                func(self, self.zones[origin], **kwargs)

    def parent_of(self, zone: Zone) -> Zone | None:
        candidates = [z for z in self.zones.values()
                      if zone.origin.is_subdomain(z.origin) and z is not zone]
        return max(candidates, key=lambda z: len(z.origin), default=None)

    def build(self) -> None:
        if self._built:
            return
        self._built = True
        for zone in self.zones.values():
            parent = self.parent_of(zone)
            if parent is not None:
                parent.add(zone.origin.to_text(), "NS", zone.ns_name.to_text())
                parent.add(zone.ns_name.to_text(), "A", zone.address)
                parent.cuts.add(zone.origin)
        self._apply("before")
        for zone in self.zones.values():
            if not zone.keys:
                zone.make_keys()
        for zone in self.zones.values():
            parent = self.parent_of(zone)
            if parent is not None and zone.signed:
                parent.add(zone.origin.to_text(), "DS", *zone.ds_texts())
        for zone in self.zones.values():
            zone.sign()
        self._apply("after")
        self._apply("serve")

    # -- the resolver's view -------------------------------------------------------------------
    @property
    def root(self) -> Zone:
        return self.zones[dns.name.root]

    @property
    def trust_anchor(self) -> str:
        self.build()
        return ". 3600 IN DS " + self.root.ds_texts()[0]

    def config(self) -> Config:
        self.build()
        cfg = Config()
        cfg.upstream.root_hints = {"ns.root.": [self.root.address]}
        cfg.upstream.do_ipv6 = False
        cfg.dnssec.trust_anchors = [self.trust_anchor]
        return cfg

    def resolver(self, at: float | None = None, cfg: Config | None = None
                 ) -> tuple[Driver, FakeClock]:
        self.build()
        clock = FakeClock(self.now if at is None else at)
        driver = build_resolver(cfg or self.config(), clock=clock,
                                transport=WorldTransport(self), seed=7)
        return driver, clock

    def ask(self, qname: str, qtype: str = "A", at: float | None = None) -> Outcome:
        """One question to a fresh resolver whose clock reads `at` (default: now)."""
        driver, _ = self.resolver(at)
        return ask(driver, qname, qtype)

    # -- the authoritative side ----------------------------------------------------------------
    def respond(self, request: dns.message.Message, host: str) -> dns.message.Message:
        self.build()
        q = request.question[0]
        response = dns.message.make_response(request)
        response.flags &= ~dns.flags.RA
        hosted = [z for z in self.zones.values()
                  if z.address == host and q.name.is_subdomain(z.origin)]
        if not hosted:
            response.set_rcode(dns.rcode.REFUSED)
            return response
        zone = max(hosted, key=lambda z: len(z.origin))
        if q.rdtype == DS and q.name == zone.origin and len(hosted) > 1:
            zone = max((z for z in hosted if z is not zone), key=lambda z: len(z.origin))
        do = bool(request.ednsflags & dns.flags.DO)
        zone.answer(q.name, int(q.rdtype), do, response)
        for f in zone.filters:
            f(request, response)
        return response


class WorldTransport:
    """The Transport port over a SignedWorld: no sockets, wire format both ways."""

    def __init__(self, world: SignedWorld) -> None:
        self.world = world

    async def query(self, server: ServerAddress, request: dns.message.Message, *,
                    tcp: bool = False, timeout: float = 1.5) -> UpstreamResult:
        query = dns.message.from_wire(request.to_wire())
        q = query.question[0]
        self.world.sent.append((server.host, f"{q.name}/{dns.rdatatype.to_text(q.rdtype)}"))
        response = self.world.respond(query, server.host)
        # No shuffling: a test that puts a bad RRSIG first must see it first.
        wire = response.to_wire(want_shuffle=False)
        return UpstreamResult(server, dns.message.from_wire(wire), rtt=0.001, tcp=tcp)


def ask(driver: Driver, qname: str, qtype: str = "A", cd: bool = False) -> Outcome:
    q = Question(dns.name.from_text(qname), dns.rdatatype.from_text(qtype))
    return asyncio.run(driver.resolve(q, cd))


def standard_world(now: int = T0) -> SignedWorld:
    """root "." -> "test." -> "example.test." (signed, with a wildcard under w) and
    "unsigned.test." (no DS; its www is a CNAME into the wildcard)."""
    world = SignedWorld(now)
    world.zone(".")
    world.zone("test.")
    example = world.zone("example.test.")
    example.add("www", "A", "192.0.2.80")
    example.add("*.w", "A", "192.0.2.99")
    example.add("mail", "A", "192.0.2.25")
    unsigned = world.zone("unsigned.test.", algorithms=())
    unsigned.add("www", "CNAME", "x.w.example.test.")
    unsigned.add("plain", "A", "192.0.2.7")
    return world
