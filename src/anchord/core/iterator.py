"""The iterator: from the closest known delegation down to an authoritative answer.

It asks one zone's servers at a time (chosen by smoothed RTT), follows referrals with
bailiwick checks, minimises the QNAME (RFC 9156, relaxed: fall back to the full name
when a minimised question fails), retries over TCP on TC, and classifies what came
back. It does not validate: it hands the validator the response and the zone whose
servers gave it. Every failure it returns names the zone and servers and carries its
EDE (22 when nobody answered usefully, 23 for network errors).
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from anchord.control.config import UpstreamConfig, parse_endpoint, parse_network
from anchord.core.cache import BoundedMap, Delegation, DelegationCache, InfraCache
from anchord.core.outcome import Ede, EdeCode, Question
from anchord.core.ports import Clock, ServerAddress, Transport, UpstreamError, UpstreamResult

_WORK_LIMIT = "work limit"
_NETWORK = UpstreamError.NETWORK.value

# RFC 9156 section 2.3: past this many labels to go, ask the full name at once.
MAX_MINIMISE_COUNT = 10


class Kind(enum.Enum):
    ANSWER = "answer"
    CNAME = "cname"
    DNAME = "dname"
    NXDOMAIN = "nxdomain"
    NODATA = "nodata"
    REFERRAL = "referral"
    LAME = "lame"
    FAILURE = "failure"
    BOGUS_CUT = "bogus cut"  # a zone on the way down has bogus keys (CutCheck)


@dataclass(slots=True)
class Work:
    """What one client question may still spend; shared by all its sub-queries."""

    upstream_left: int
    depth: int = 0
    in_progress: set[tuple[dns.name.Name, int]] = field(default_factory=set)
    upstream_sent: int = 0
    # (zone, server) pairs whose data validated bogus for this question: not asked again
    # for that zone (Unbound's blacklist), so a retry reaches another server.
    exclude: set[tuple[dns.name.Name, ServerAddress]] = field(default_factory=set)
    # A prefetch looks for the zone cut as of when the answer it refreshes ends
    # (Unbound's prefetch leeway): a delegation that ends first is not used, so a
    # moved zone is found from its parent.
    leeway: float = 0.0
    # The client set CD: it wants the data even where validation fails, so no question
    # is cut short for keys found bogus on the way down.
    cd: bool = False

    def spend(self) -> bool:
        if self.upstream_left <= 0:
            return False
        self.upstream_left -= 1
        self.upstream_sent += 1
        return True


@dataclass(frozen=True, slots=True)
class ZoneAnswer:
    """An authoritative response (or the failure to get one) for one question."""

    kind: Kind
    question: Question
    zone: dns.name.Name  # the zone whose servers answered
    message: dns.message.Message | None = None
    edes: tuple[Ede, ...] = ()
    server: ServerAddress | None = None
    # For a FAILURE: every server asked gave a DNS response (an error rcode, a lame or
    # empty one), none timed out or was unreachable. The zone is up and does not
    # serve the data; a validator reads that differently from silence (RFC 4035 4.3).
    all_answered: bool = False


AddressLookup = Callable[[dns.name.Name, Work], Awaitable[list[str]]]
# Asked when a referral leads into a zone: the reasons its keys are bogus, if they are
# (then nothing below it can validate and its servers need not be asked), else ().
CutCheck = Callable[[dns.name.Name, Work], Awaitable[tuple[Ede, ...]]]


def _owner_rrset(section: list[dns.rrset.RRset], name: dns.name.Name, rdtype: int
                 ) -> dns.rrset.RRset | None:
    for rrset in section:
        if rrset.rdtype == rdtype and rrset.name == name:
            return rrset
    return None


def gather_signatures(msg: dns.message.Message) -> None:
    """Put each RRSIG set beside the RRset it covers, when a server put it elsewhere.

    Some servers (and the 2007 Unbound scenarios) send an answer's RRSIG in the
    additional section. The signature is valid wherever it travels (RFC 4035 3.1.1
    only asks servers to keep them together), so it is moved to the section holding
    the covered RRset before anything else reads the message. A signature already in
    the same section as its RRset, or covering nothing present, stays where it is;
    one from another section joins it there (an answer may carry one algorithm's
    RRSIG beside the data and another's in ADDITIONAL: both are the RRset's).
    """
    sections: tuple[list[dns.rrset.RRset], ...] = (msg.answer, msg.authority, msg.additional)
    data: dict[tuple[dns.name.Name, int], list[int]] = {}
    sigs: dict[tuple[dns.name.Name, int], list[int]] = {}
    for index, section in enumerate(sections):
        for rrset in section:
            if rrset.rdtype == dns.rdatatype.RRSIG:
                sigs.setdefault((rrset.name, int(rrset.covers)), []).append(index)
            else:
                data.setdefault((rrset.name, int(rrset.rdtype)), []).append(index)
    # For an RRSIG question the answer's signatures are the answer itself: they stay
    # (Unbound's parser copies them for qtype RRSIG rather than moving them).
    asked_rrsig = bool(msg.question) and msg.question[0].rdtype == dns.rdatatype.RRSIG
    for key, homes in data.items():
        found = [i for i in sigs.get(key, ()) if not (asked_rrsig and i == 0)]
        if not found:
            continue
        home_index = homes[0]
        home = sections[home_index]
        beside = next((r for r in home if r.rdtype == dns.rdatatype.RRSIG
                       and (r.name, int(r.covers)) == key), None)
        for index in sorted(set(found) - set(homes)):
            source = sections[index]
            for rrset in list(source):
                if rrset.rdtype == dns.rdatatype.RRSIG and (rrset.name, int(rrset.covers)) == key:
                    source.remove(rrset)
                    if beside is None:
                        home.append(rrset)
                        beside = rrset
                    else:
                        beside.union_update(rrset)


def drop_other_classes(msg: dns.message.Message, qclass: int) -> None:
    """Leave out records of a class other than the question's: a server answering an
    IN question has no business sending CH data, and a CH NS set must never be read as
    the IN delegation (Unbound's scrubber removes them too)."""
    for section in (msg.answer, msg.authority, msg.additional):
        section[:] = [r for r in section if r.rdclass == qclass]


def _dname_overflows(msg: dns.message.Message, q: Question, zone: dns.name.Name) -> bool:
    """Does a DNAME of `zone` in the answer rewrite q's name to one over 255 octets?"""
    for rrset in msg.answer:
        if rrset.rdtype == dns.rdatatype.DNAME and q.qname.is_subdomain(rrset.name) \
                and q.qname != rrset.name and rrset.name.is_subdomain(zone):
            try:
                q.qname.relativize(rrset.name).derelativize(rrset[0].target)
            except dns.name.NameTooLong:
                return True
            return False
    return False


def classify(msg: dns.message.Message, q: Question, zone: dns.name.Name) -> Kind:
    """What kind of response this is for question `q` asked of `zone`'s servers."""
    rcode = msg.rcode()
    if rcode == dns.rcode.YXDOMAIN and _dname_overflows(msg, q, zone):
        # RFC 6672 2.2: the DNAME's substitution would make a name too long, and the
        # server says so with YXDOMAIN beside the DNAME: a final answer. (A YXDOMAIN
        # whose DNAME rewrites to a fine name is a broken server: lame, below.)
        return Kind.DNAME
    if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        return Kind.LAME
    # A DNAME above the name comes first: the CNAME beside it is only its synthesis
    # (RFC 6672 5.3.1), unsigned, and what is validated is the DNAME.
    for rrset in msg.answer:
        if rrset.rdtype == dns.rdatatype.DNAME and q.qname.is_subdomain(rrset.name) \
                and q.qname != rrset.name and rrset.name.is_subdomain(zone):
            return Kind.DNAME
    for rrset in msg.answer:
        if rrset.name != q.qname:
            continue
        if rrset.rdtype == q.qtype or (
                q.qtype == dns.rdatatype.ANY and rrset.rdtype != dns.rdatatype.RRSIG):
            return Kind.ANSWER
        if rrset.rdtype == dns.rdatatype.CNAME and q.qtype != dns.rdatatype.CNAME:
            # No other data lives beside a CNAME (RFC 2181 10.1); a server that sends
            # both is read in its own order, the first RRset deciding, as Unbound
            # reads it: a CNAME first is followed, the other data left out.
            return Kind.CNAME
    if rcode == dns.rcode.NXDOMAIN:
        return Kind.NXDOMAIN
    has_soa = any(r.rdtype == dns.rdatatype.SOA for r in msg.authority)
    ns_sets = [r for r in msg.authority if r.rdtype == dns.rdatatype.NS]
    if ns_sets and not has_soa and not msg.answer:
        cut = ns_sets[0].name
        if cut != zone and cut.is_subdomain(zone) and q.qname.is_subdomain(cut):
            return Kind.REFERRAL
        if cut == zone and msg.flags & dns.flags.AA:
            # The zone's own NS set with authority: an empty answer (NODATA without
            # SOA, as Unbound reads it), not a referral; the validator judges it.
            return Kind.NODATA
        return Kind.LAME  # upward or sideways referral: this server is lame for us
    if msg.answer and not (msg.flags & dns.flags.AA):
        if not ns_sets and not (msg.flags & dns.flags.RA) and all(
                r.name == q.qname for r in msg.answer):
            # Only other types at the name itself, from a server that does not
            # recurse: no data of the type asked (Unbound and Knot read it so); the
            # records of the wrong type are dropped, never answered.
            return Kind.NODATA
        return Kind.LAME  # unrelated records without authority
    if has_soa or msg.flags & dns.flags.AA:
        return Kind.NODATA
    if not msg.answer and not ns_sets and not (msg.flags & dns.flags.RA):
        # Empty NOERROR without AA, SOA or NS (the denial may still carry NSEC proofs):
        # NODATA, as Unbound reads it. With RA set it is a recursive server's reply,
        # lame for this zone.
        return Kind.NODATA
    return Kind.LAME


def _second_best(msg: dns.message.Message) -> str | None:
    """Why a usable-looking response is kept only as a last resort, or None.

    - Entirely empty (no record in any section): RFC 2308's NODATA without SOA is
      legal, but it is also what a broken or misconfigured server sends; another
      server of the zone may hold the data (Unbound retries such a reply elsewhere).
    - Recursion available without authority (RA set, AA clear): an answer from a
      recursive server's cache standing in for the zone's authority; the zone's
      real servers are asked first (Unbound's "recursive lame").
    Either is used when no server of the zone gives anything better.
    """
    if not (msg.answer or msg.authority or msg.additional):
        return "an empty response"
    if msg.flags & dns.flags.RA and not msg.flags & dns.flags.AA:
        return "a recursive (RA, not AA) response"
    return None


def _upward_ns(msg: dns.message.Message, zone: dns.name.Name) -> bool:
    """An NS set in authority for a name at or above `zone`'s parent side (a lame
    "referral" up or sideways) with no answer and no SOA."""
    if msg.answer or any(r.rdtype == dns.rdatatype.SOA for r in msg.authority):
        return False
    return any(r.rdtype == dns.rdatatype.NS and not r.name.is_subdomain(zone)
               for r in msg.authority)


def _soa_above(msg: dns.message.Message, zone: dns.name.Name) -> bool:
    for rrset in msg.authority:
        if rrset.rdtype == dns.rdatatype.SOA:
            return not rrset.name.is_subdomain(zone)
    return False


def _interior_ttl(msg: dns.message.Message) -> int:
    """How long a minimised probe's answer ("this name exists, it is no cut") holds."""
    ttls: list[int] = [int(r.ttl) for r in msg.answer] + [
        min(int(r.ttl), int(r[0].minimum)) for r in msg.authority
        if r.rdtype == dns.rdatatype.SOA]
    return max(0, min([*ttls, 3600]))


class Iterator:
    def __init__(
        self,
        config: UpstreamConfig,
        clock: Clock,
        transport: Transport,
        delegations: DelegationCache,
        infra: InfraCache,
        rng: Callable[[], float],
        lookup_addresses: AddressLookup,
        dnssec: bool = True,
        check_cut: CutCheck | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.transport = transport
        self.delegations = delegations
        self.infra = infra
        self.rng = rng
        self.lookup_addresses = lookup_addresses
        self.dnssec = dnssec
        self.check_cut = check_cut
        edns = dns.message.Message()
        edns.use_edns(0, dns.flags.DO if dnssec else 0, config.edns_buffer_size)
        assert edns.opt is not None
        self._opt = edns.opt[0]
        self._opt_flags = edns.opt.ttl
        # Names a minimised probe found to exist without being a zone cut, per the zone
        # whose servers said so: later questions skip the probe (RFC 9156 section 2.3
        # leaves caching to the resolver; without it every name re-asks "de. A").
        self._interior: BoundedMap[dns.name.Name, tuple[dns.name.Name, float]] = \
            BoundedMap(100_000)
        # DS sets (or signed proofs of no DS) that came with referrals, by child zone:
        # the answer to the DS query the validator is about to ask (Unbound does the same).
        self._referral_ds: dict[dns.name.Name, tuple[float, ZoneAnswer]] = {}
        # Parsed once: every server choice consults them (and none when there are none).
        self._do_not_query = tuple(parse_network(n) for n in config.do_not_query)
        self._root = self._configured(dns.name.root, config.root_hints, forward=False,
                                      names_are_ns=True)
        for zone, addrs in config.stub_zones.items():
            self.delegations.add_configured(
                self._configured(dns.name.from_text(zone), {zone: addrs}, forward=False))
        for zone, addrs in config.forward_zones.items():
            self.delegations.add_configured(
                self._configured(dns.name.from_text(zone), {zone: addrs}, forward=True))

    def _configured(self, zone: dns.name.Name, table: dict[str, list[str]], *,
                    forward: bool, names_are_ns: bool = False) -> Delegation:
        ns_names: list[dns.name.Name] = []
        addresses: list[tuple[dns.name.Name, ServerAddress]] = []
        for name_text, addrs in table.items():
            ns = dns.name.from_text(name_text) if names_are_ns else zone
            ns_names.append(ns)
            for a in addrs:
                host, port = parse_endpoint(a, self.config.port)
                addresses.append((ns, ServerAddress(host, port)))
        return Delegation(zone, tuple(ns_names), tuple(addresses), float("inf"),
                          configured=True, forward=forward)

    # -- server choice ---------------------------------------------------------------------
    def _usable(self, addr: ServerAddress) -> bool:
        if ":" in addr.host:
            ok = self.config.do_ipv6
        else:
            ok = self.config.do_ipv4
        if not ok or not self._do_not_query:
            return ok
        ip = ipaddress.ip_address(addr.host)
        return not any(ip in net for net in self._do_not_query)

    def _ordered_servers(self, deleg: Delegation, work: Work | None = None
                         ) -> list[ServerAddress]:
        seen: set[ServerAddress] = set()
        servers = []
        excluded = {a for z, a in work.exclude if z == deleg.zone} if work else set()
        for _, addr in deleg.addresses:
            if addr not in seen and addr not in excluded and self._usable(addr):
                seen.add(addr)
                servers.append(addr)
        # Lowest smoothed RTT first; a little jitter spreads load over equal servers.
        servers.sort(key=lambda s: self.infra.srtt(s) * (0.9 + 0.2 * self.rng()))
        return servers

    async def _with_addresses(self, deleg: Delegation, work: Work,
                              looked_up: set[dns.name.Name] | None = None) -> Delegation:
        """The delegation with addresses for at least one more of its name servers.

        Without `looked_up`: only when it has no usable address at all. With it (the
        servers known so far all failed): look up the next name server not yet tried.
        One reachable name server is enough to proceed; the others are found on demand.
        """
        if deleg.configured:
            return deleg
        if looked_up is None and any(self._usable(a) and (deleg.zone, a) not in work.exclude
                                     for _, a in deleg.addresses):
            return deleg
        known = {ns for ns, a in deleg.addresses if self._usable(a)}
        found: list[tuple[dns.name.Name, ServerAddress]] = []
        for ns in deleg.ns_names:
            if ns in known or (looked_up is not None and ns in looked_up):
                continue
            if ns.is_subdomain(deleg.zone):
                continue  # glue was needed and missing: asking would loop
            if looked_up is not None:
                looked_up.add(ns)
            for host in await self.lookup_addresses(ns, work):
                found.append((ns, ServerAddress(host, self.config.port)))
            if found:
                break
        if not found:
            return deleg
        updated = Delegation(deleg.zone, deleg.ns_names, deleg.addresses + tuple(found),
                             deleg.expires_at)
        self.delegations.put(updated)
        return updated

    def _with_parent_side_addresses(self, deleg: Delegation) -> Delegation:
        """The delegation with the glue its name servers' own parents gave for them.

        A name server's address as its own zone answers it may differ from the glue
        its parent zone holds (a renumbering half done): when every address found so
        far failed, the parent-side ones are tried too (Unbound's parent-side
        fallback). Used for this question only, never cached as the zone's servers.
        """
        if deleg.configured:
            return deleg
        now = self.clock.now()
        known = set(deleg.addresses)
        extra: list[tuple[dns.name.Name, ServerAddress]] = []
        for ns in deleg.ns_names:
            # The deepest known delegation that carries glue for the name (a bogus
            # referral for the name itself, below its zone, carries none).
            holder = self.delegations.closest(ns, now)
            while holder is not None and holder.zone != deleg.zone \
                    and not any(name == ns for name, _ in holder.addresses) \
                    and len(holder.zone) > 1:
                holder = self.delegations.closest(holder.zone.parent(), now)
            if holder is None or holder.zone == deleg.zone:
                continue
            for name, addr in holder.addresses:
                if name == ns and (name, addr) not in known:
                    known.add((name, addr))
                    extra.append((name, addr))
        if not extra:
            return deleg
        return replace(deleg, addresses=deleg.addresses + tuple(extra))

    # -- asking one zone ---------------------------------------------------------------------
    def _request(self, q: Question, forward: bool) -> dns.message.Message:
        # What make_query builds, but with ID 0 instead of one drawn from the OS's
        # randomness: every transport puts its own ID on the wire (the network one a
        # fresh random one per query), and the core draws no randomness of its own.
        msg = dns.message.QueryMessage(id=0)
        msg.find_rrset(msg.question, q.qname, q.qclass, q.qtype, create=True,
                       force_unique=True)
        # The OPT record is the same for every query: use_edns() builds and checks a new
        # OPT rdata each time, so one is made once and only its RRset is fresh per
        # message (an RRset is mutable, e.g. through msg.ednsflags).
        opt = dns.rrset.RRset(dns.name.root, self._opt.rdclass, dns.rdatatype.OPT)
        opt.add(self._opt, self._opt_flags)
        msg.opt = opt
        msg.request_payload = self._opt.payload
        msg.flags = dns.flags.RD if forward else 0
        if forward and self.dnssec:
            msg.flags |= dns.flags.CD  # we validate ourselves: give us the bogus data too
        return msg

    async def _ask_zone(self, deleg: Delegation, q: Question, work: Work
                        ) -> tuple[UpstreamResult | None, Kind, tuple[Ede, ...], bool]:
        """Ask the zone's servers until one gives a usable answer, or explain why none did
        (and whether every try got a response: the last item)."""
        deleg = await self._with_addresses(deleg, work)
        servers = self._ordered_servers(deleg, work)
        if not servers:
            deleg = self._with_parent_side_addresses(deleg)
            servers = self._ordered_servers(deleg, work)
        if not servers:
            names = ", ".join(n.to_text() for n in deleg.ns_names[:4]) or "none"
            return None, Kind.FAILURE, (Ede(
                EdeCode.NO_REACHABLE_AUTHORITY,
                f"no usable address for any name server of {deleg.zone} ({names}) "
                f"while resolving {q}"),), False
        problems: list[str] = []
        silent: list[ServerAddress] = []  # tries that got no response at all
        network_only = True
        attempts = max(self.config.attempts, 1)
        tried: set[ServerAddress] = set()
        looked_up: set[dns.name.Name] = set()
        held: list[tuple[UpstreamResult, Kind]] = []  # second-best responses
        while servers:
            result, kind = await self._try_servers(deleg, servers, attempts, q, work, problems,
                                                   silent, held)
            if result is not None:
                return result, kind, (), False
            if kind is Kind.FAILURE and problems and problems[-1] == _WORK_LIMIT:
                problems.pop()
                return None, Kind.FAILURE, (Ede(
                    EdeCode.OTHER,
                    f"work limit: more than {work.upstream_sent} upstream queries "
                    f"while resolving {q} (at zone {deleg.zone})"),), False
            network_only = network_only and all(p.endswith(_NETWORK) for p in problems)
            tried.update(servers)
            # Every server known so far failed: find the next name server's address.
            deleg = await self._with_addresses(deleg, work, looked_up)
            servers = [s for s in self._ordered_servers(deleg, work) if s not in tried]
            if not servers:
                deleg = self._with_parent_side_addresses(deleg)
                servers = [s for s in self._ordered_servers(deleg, work) if s not in tried]
        if held:
            # Nothing better from any server: the first second-best response stands.
            return held[0][0], held[0][1], (), False
        code = EdeCode.NETWORK_ERROR if network_only else EdeCode.NO_REACHABLE_AUTHORITY
        return None, Kind.FAILURE, (Ede(
            code, f"no usable answer from the servers of {deleg.zone} for {q}: "
                  + "; ".join(problems[:4])),), bool(problems) and not silent

    async def _try_servers(self, deleg: Delegation, servers: list[ServerAddress],
                           attempts: int, q: Question, work: Work, problems: list[str],
                           silent: list[ServerAddress], held: list[tuple[UpstreamResult, Kind]]
                           ) -> tuple[UpstreamResult | None, Kind]:
        """Up to `attempts` tries over `servers`; the first usable response, or why none
        (each try that got no response is added to `silent`; second-best responses go
        to `held`, see _second_best)."""
        for i in range(attempts):
            server = servers[i % len(servers)]
            if not work.spend():
                problems.append(_WORK_LIMIT)
                return None, Kind.FAILURE
            result = await self.transport.query(server, self._request(q, deleg.forward),
                                                timeout=self.config.timeout)
            if result.ok and result.response is not None \
                    and result.response.flags & dns.flags.TC:
                if not work.spend():
                    problems.append(_WORK_LIMIT)
                    return None, Kind.FAILURE
                result = await self.transport.query(
                    server, self._request(q, deleg.forward), tcp=True,
                    timeout=self.config.timeout)
                if result.ok and result.response is not None \
                        and result.response.flags & dns.flags.TC:
                    # Truncated even over TCP: the data is incomplete, never an answer.
                    problems.append(f"{server} sent a truncated (TC) response over TCP")
                    continue
            if not result.ok or result.response is None:
                silent.append(server)
                if result.error is UpstreamError.TIMEOUT:
                    self.infra.timed_out(server)
                    problems.append(f"{server} timed out")
                elif result.error is UpstreamError.NETWORK:
                    problems.append(f"{server} {_NETWORK}")
                else:
                    problems.append(f"{server} {result.error.value if result.error else 'failed'}")
                continue
            self.infra.observe(server, result.rtt)
            drop_other_classes(result.response, q.qclass)
            gather_signatures(result.response)
            kind = classify(result.response, q, deleg.zone)
            if deleg.forward and kind is Kind.LAME and result.response.rcode() in (
                    dns.rcode.NOERROR,) and not _upward_ns(result.response, deleg.zone):
                kind = Kind.NODATA
            if kind in (Kind.ANSWER, Kind.CNAME, Kind.NODATA, Kind.NXDOMAIN) \
                    and not deleg.forward:
                why = _second_best(result.response)
                if why is not None:
                    problems.append(f"{server} sent {why}")
                    held.append((result, kind))
                    continue
            if not deleg.forward and kind in (Kind.NXDOMAIN, Kind.NODATA) \
                    and _soa_above(result.response, deleg.zone):
                # A denial from a zone above the one delegated to: the server serves
                # the parent, not the zone we were sent to. Lame for this zone.
                problems.append(f"{server} is lame: it answered from a zone above "
                                f"{deleg.zone}")
                continue
            if kind is Kind.LAME:
                problems.append(f"{server} answered {dns.rcode.to_text(result.response.rcode())}"
                                f"{' without authority' if result.response.rcode() == 0 else ''}")
                continue
            return result, kind
        return None, Kind.LAME

    # -- the walk down ----------------------------------------------------------------------------
    def _referral(self, msg: dns.message.Message, zone: dns.name.Name, now: float
                  ) -> Delegation:
        ns_set = next(r for r in msg.authority if r.rdtype == dns.rdatatype.NS)
        ns_names = tuple(rd.target for rd in ns_set)
        addresses: list[tuple[dns.name.Name, ServerAddress]] = []
        for rrset in msg.additional:
            # Glue counts only when it lies within the referring server's bailiwick.
            if rrset.rdtype not in (dns.rdatatype.A, dns.rdatatype.AAAA):
                continue
            if rrset.name not in ns_names or not rrset.name.is_subdomain(zone):
                continue
            for rd in rrset:
                addresses.append((rrset.name, ServerAddress(rd.address, self.config.port)))
        return Delegation(ns_set.name, ns_names, tuple(addresses), now + max(ns_set.ttl, 5))

    def _child_ns_ttl(self, deleg: Delegation, msg: dns.message.Message) -> None:
        """An authoritative answer's own NS set for the zone ends the cached delegation
        when it does (the child's TTL rules over the parent's, as Unbound caches it);
        it can only shorten it, so the zone's parent is asked again sooner, no more."""
        if deleg.configured or not msg.flags & dns.flags.AA:
            return
        ns = next((r for r in msg.authority if r.rdtype == dns.rdatatype.NS
                   and r.name == deleg.zone), None)
        if ns is None:
            return
        ends = self.clock.now() + max(ns.ttl, 5)
        if ends < deleg.expires_at:
            self.delegations.put(replace(deleg, expires_at=ends))

    def _start(self, q: Question, leeway: float = 0.0) -> Delegation:
        now = self.clock.now() + leeway
        # A DS record lives on the parent side of a cut: start above the child's own cut.
        below_of = q.qname if q.qtype == dns.rdatatype.DS and len(q.qname) > 1 else None
        deleg = self.delegations.closest(q.qname, now, below_of)
        return deleg if deleg is not None else self._root

    def _next_name(self, q: Question, point: dns.name.Name) -> Question:
        remaining = len(q.qname) - len(point)
        if remaining <= 1 or remaining > MAX_MINIMISE_COUNT:
            return q
        labels = q.qname.labels[-(len(point) + 1):]
        return Question(dns.name.Name(labels), dns.rdatatype.A, q.qclass)

    def _remember_ds(self, msg: dns.message.Message, child: dns.name.Name,
                     parent: dns.name.Name, server: ServerAddress) -> None:
        """Keep the DS set (or the NSEC/NSEC3 proof of its absence) a referral carried,
        with its RRSIGs, as the parent's answer to `DS child` (RFC 4035 3.1.4)."""
        if not self.dnssec:
            return
        ds = _owner_rrset(msg.authority, child, dns.rdatatype.DS)
        sigs = [r for r in msg.authority if r.rdtype == dns.rdatatype.RRSIG
                and r.name.is_subdomain(parent)]
        reply = dns.message.Message(id=0)
        reply.flags = dns.flags.QR | dns.flags.AA
        reply.question = [dns.rrset.RRset(child, dns.rdataclass.IN, dns.rdatatype.DS)]
        question = Question(child, dns.rdatatype.DS)
        if ds is not None:
            ds_sigs = [r for r in sigs if r.name == child and r.covers == dns.rdatatype.DS]
            if not ds_sigs:
                return  # unsigned: let the validator ask the parent itself
            reply.answer = [ds, *ds_sigs]
            answer = ZoneAnswer(Kind.ANSWER, question, parent, reply, server=server)
        else:
            proofs = [r for r in msg.authority
                      if r.rdtype in (dns.rdatatype.NSEC, dns.rdatatype.NSEC3)
                      and r.name.is_subdomain(parent)]
            covered = {(r.name, r.rdtype) for r in proofs}
            proof_sigs = [r for r in sigs if (r.name, r.covers) in covered]
            if not proofs or not proof_sigs:
                return
            reply.authority = [*proofs, *proof_sigs]
            answer = ZoneAnswer(Kind.NODATA, question, parent, reply, server=server)
        ttl = min(r.ttl for r in (*reply.answer, *reply.authority))
        if len(self._referral_ds) > 10_000:
            self._referral_ds.clear()
        self._referral_ds[child] = (self.clock.now() + ttl, answer)

    def remember_no_ds_proof(self, msg: dns.message.Message, child: dns.name.Name,
                             parent: dns.name.Name, server: ServerAddress | None) -> None:
        """A response from `parent`'s servers carried the signed NSEC/NSEC3 proof that
        `child` is a delegation without DS (beside a CNAME into it): keep it as the
        parent's answer to `DS child`, as for a referral. Its signatures are checked
        when the validator uses it."""
        if server is not None and child not in self._referral_ds:
            self._remember_ds(msg, child, parent, server)

    def ds_from_referral(self, zone: dns.name.Name) -> ZoneAnswer | None:
        """The parent's DS answer (or signed no-DS proof) for `zone` if a referral
        brought one that is still fresh; the validator asks upstream otherwise.

        A DS set the validator found bogus is dropped (forget_referral_ds), so the next
        try asks the parent afresh, as Unbound does.
        """
        kept = self._referral_ds.get(zone)
        if kept is None:
            return None
        if self.clock.now() >= kept[0]:
            del self._referral_ds[zone]
            return None
        return kept[1]

    def keep_ds_answer(self, za: ZoneAnswer) -> None:
        """Keep the parent's answer to a DS query asked ahead of the data (the
        resolver's cut check) as if a referral had brought it, for the key walk."""
        assert za.message is not None
        records = [*za.message.answer, *za.message.authority]
        if records:
            if len(self._referral_ds) > 10_000:
                self._referral_ds.clear()
            ttl = min(r.ttl for r in records)
            self._referral_ds[za.question.qname] = (self.clock.now() + ttl, za)

    def forget_referral_ds(self, zone: dns.name.Name) -> None:
        self._referral_ds.pop(zone, None)

    def _skip_known_interior(self, q: Question, point: dns.name.Name,
                             zone: dns.name.Name) -> dns.name.Name:
        now = self.clock.now()
        while True:
            nxt = self._next_name(q, point)
            if nxt == q:
                return point
            known = self._interior.get(nxt.qname)
            if known is None or known[0] != zone or known[1] <= now:
                return point
            point = nxt.qname

    async def query(self, q: Question, work: Work) -> ZoneAnswer:
        deleg = self._start(q, work.leeway)
        point = deleg.zone  # minimisation point: the deepest name known to exist
        minimise = self.config.qname_minimisation and not deleg.forward
        ns_qtype = False  # minimised questions as A (RFC 9156 2.1) until a server balks
        for _ in range(self.config.max_referrals):
            if minimise:
                point = self._skip_known_interior(q, point, deleg.zone)
            ask = self._next_name(q, point) if minimise else q
            if ask != q and ns_qtype:
                ask = Question(ask.qname, dns.rdatatype.NS, ask.qclass)
            result, kind, edes, all_answered = await self._ask_zone(deleg, ask, work)
            if result is None or result.response is None:
                if ask != q and not ns_qtype:
                    ns_qtype = True  # some servers answer only NS for the cut (RFC 7816)
                    continue
                if ask != q:
                    minimise = False  # relaxed mode: the full name may still work
                    continue
                return ZoneAnswer(Kind.FAILURE, q, deleg.zone, edes=edes,
                                  all_answered=all_answered)
            msg = result.response
            if kind is Kind.REFERRAL:
                child = self._referral(msg, deleg.zone, self.clock.now())
                if q.qtype == dns.rdatatype.DS and child.zone == q.qname:
                    # Sent down to the child for a parent-side record. A signed DS set
                    # (or signed proof of none) in the referral is the parent's own
                    # data for it (RFC 4035 3.1.4): that is the answer.
                    self._remember_ds(msg, child.zone, deleg.zone, result.server)
                    carried = self.ds_from_referral(child.zone)
                    if carried is not None:
                        return carried
                    # Otherwise the parent has nothing more to say: no answer here.
                    return ZoneAnswer(Kind.FAILURE, q, deleg.zone, edes=(Ede(
                        EdeCode.NO_REACHABLE_AUTHORITY,
                        f"servers of {deleg.zone} referred a DS query for {q.qname} "
                        "to the child instead of answering it"),))
                self.delegations.put(child)
                self._remember_ds(msg, child.zone, deleg.zone, result.server)
                if self.check_cut is not None and not work.cd:
                    bogus = await self.check_cut(child.zone, work)
                    if bogus:
                        return ZoneAnswer(Kind.BOGUS_CUT, q, child.zone, edes=bogus)
                deleg = child
                point = child.zone
                continue
            if ask != q:
                if kind is Kind.NXDOMAIN:
                    minimise = False  # relaxed: a broken empty non-terminal must not stop us
                    continue
                point = ask.qname  # the name exists and is no cut: go one label deeper
                self._interior.put(point, (deleg.zone,
                                           self.clock.now() + _interior_ttl(msg)))
                continue
            self._child_ns_ttl(deleg, msg)
            left_out = len(getattr(msg, "errors", ()))  # core.wire.parse_response
            notes = (Ede(EdeCode.OTHER, f"{left_out} record(s) with malformed rdata from "
                                        f"{result.server} for zone {deleg.zone} were left "
                                        f"out of the answer to {q}"),) if left_out else ()
            return ZoneAnswer(kind, q, deleg.zone, msg, edes=notes, server=result.server)
        return ZoneAnswer(Kind.FAILURE, q, deleg.zone, edes=(Ede(
            EdeCode.OTHER,
            f"more than {self.config.max_referrals} referrals while resolving {q}"),))
