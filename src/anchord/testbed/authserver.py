"""An authoritative server for the testbed's zones: asyncio UDP and TCP on loopback.

It answers as RFC 1034 4.3.2 describes, with the DNSSEC additions of RFC 4035 3.1 and
RFC 5155 7.2: AA answers, referrals with DS (or the proof there is none), NXDOMAIN and
NODATA with NSEC/NSEC3 proofs, wildcard expansion with its next-closer proof, CNAME
chains inside one zone, RRSIG questions answered with the signatures at the name (as
NSD, Knot and BIND answer them). Each listening address answers only for the zones
hosted there, so a resolver walking root -> de -> child really changes servers. Faults
from faults.py are applied per answer.
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import functools
import logging
from collections import OrderedDict
from dataclasses import dataclass

import dns.dnssec
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.rrset

from anchord.testbed.faults import FaultKind, FaultState
from anchord.testbed.zones import Hierarchy, ZoneData

log = logging.getLogger(__name__)

Name = dns.name.Name
SOA = int(dns.rdatatype.SOA)
NS = int(dns.rdatatype.NS)
DS = int(dns.rdatatype.DS)
CNAME = int(dns.rdatatype.CNAME)
RRSIG = int(dns.rdatatype.RRSIG)
NSEC = int(dns.rdatatype.NSEC)
NSEC3 = int(dns.rdatatype.NSEC3)
ANY = int(dns.rdatatype.ANY)
EDNS_PAYLOAD = 1232  # what we advertise (DNS flag day 2020)
MAX_CNAME_HOPS = 8


class ServedZone:
    """A zone indexed for answering: nodes, cuts, existing names, denial chain."""

    def __init__(self, data: ZoneData) -> None:
        self.origin = data.origin
        self.nodes: dict[Name, dict[tuple[int, int], dns.rdataset.Rdataset]] = {}
        nsec3_owners: list[tuple[bytes, Name]] = []
        self.nsec3_param: tuple[bytes, int] | None = None
        for (name, rdtype, covers), rds in data.records.items():
            self.nodes.setdefault(name, {})[(rdtype, covers)] = rds
            if rdtype == NSEC3:
                digest = base64.b32hexdecode(name.labels[0].upper())
                nsec3_owners.append((digest, name))
                self.nsec3_param = (rds[0].salt, rds[0].iterations)
        self.cuts = {n for n, node in self.nodes.items() if (NS, 0) in node and n != self.origin}
        # Names that exist for lookups: owners of data that is not NSEC3 and not glue
        # below a cut, plus the empty non-terminals above them.
        self.names: set[Name] = set()
        for name, node in self.nodes.items():
            if all(k[0] in (NSEC3, RRSIG) for k in node) or self._below_cut(name):
                continue
            while name not in self.names and name.is_subdomain(self.origin):
                self.names.add(name)
                if name == self.origin:
                    break
                name = name.parent()
        self.nsec_owners = sorted(n for n, node in self.nodes.items() if (NSEC, 0) in node)
        nsec3_owners.sort()
        self.nsec3_hashes = [h for h, _ in nsec3_owners]
        self.nsec3_names = [n for _, n in nsec3_owners]

    def add_unsigned(self, name: Name, rds: dns.rdataset.Rdataset) -> None:
        """Create data at run time in an unsigned zone (a name coming into existence)."""
        if self.nsec_owners or self.nsec3_param is not None:
            raise ValueError(f"{self.origin} is signed: records cannot be added unsigned")
        self.nodes.setdefault(name, {})[(int(rds.rdtype), int(rds.covers))] = rds
        while name not in self.names and name.is_subdomain(self.origin):
            self.names.add(name)
            name = name.parent()

    def _below_cut(self, name: Name) -> bool:
        while name != self.origin and len(name) > len(self.origin):
            name = name.parent()
            if name in self.cuts:
                return True
        return False

    def find_cut(self, qname: Name) -> Name | None:
        """The highest delegation point at or above qname (below the apex)."""
        labels = len(self.origin)
        for depth in range(labels + 1, len(qname) + 1):
            candidate = qname.split(depth)[1]
            if candidate in self.cuts:
                return candidate
        return None

    def get(self, name: Name, rdtype: int) -> dns.rdataset.Rdataset | None:
        node = self.nodes.get(name)
        return None if node is None else node.get((rdtype, 0))

    def closest_encloser(self, qname: Name) -> Name:
        name = qname
        while name not in self.names and name != self.origin:
            name = name.parent()
        return name

    def nsec_for(self, name: Name) -> Name:
        """Owner of the NSEC that matches or covers `name`."""
        i = bisect.bisect_right(self.nsec_owners, name) - 1
        return self.nsec_owners[i]  # i == -1 wraps to the last NSEC, which covers it

    def nsec3_hash(self, name: Name) -> bytes:
        assert self.nsec3_param is not None
        salt, iterations = self.nsec3_param
        return base64.b32hexdecode(dns.dnssec.nsec3_hash(name, salt, iterations, 1))

    def nsec3_match(self, name: Name) -> Name | None:
        h = self.nsec3_hash(name)
        i = bisect.bisect_left(self.nsec3_hashes, h)
        if i < len(self.nsec3_hashes) and self.nsec3_hashes[i] == h:
            return self.nsec3_names[i]
        return None

    def nsec3_cover(self, name: Name) -> Name:
        i = bisect.bisect_right(self.nsec3_hashes, self.nsec3_hash(name)) - 1
        return self.nsec3_names[i]


@dataclass(slots=True)
class _Answer:
    """Sections being filled for one response."""

    answer: list[dns.rrset.RRset]
    authority: list[dns.rrset.RRset]
    additional: list[dns.rrset.RRset]
    rcode: dns.rcode.Rcode = dns.rcode.NOERROR
    aa: bool = True


class Authority:
    """Sans-socket answering: query message + the address it arrived on -> response.

    Returns None when the query is to be dropped (an "unreachable" fault)."""

    def __init__(self, hierarchy: Hierarchy, faults: FaultState, cache_size: int = 4096):
        self.hierarchy = hierarchy
        self.faults = faults
        self.hosting = hierarchy.hosting()
        self._served: OrderedDict[Name, ServedZone] = OrderedDict()
        self._cache_size = cache_size
        # Zones held in memory are indexed once; children on disk go through an LRU.
        self._pinned = {o: ServedZone(z) for o, z in hierarchy.zones.items()}

    def is_zone(self, name: Name) -> bool:
        return any(name in zones for zones in self.hosting.values())

    def _served_zone(self, origin: Name) -> ServedZone | None:
        z = self._pinned.get(origin) or self._served.get(origin)
        if z is not None:
            if origin in self._served:
                self._served.move_to_end(origin)
            return z
        data = self.hierarchy.zone(origin)
        if data is None:
            return None
        z = ServedZone(data)
        self._served[origin] = z
        if len(self._served) > self._cache_size:
            self._served.popitem(last=False)
        return z

    def zone_for(self, address: str, qname: Name, qtype: int) -> Name | None:
        hosted = self.hosting.get(address, set())
        name = qname
        while True:
            if name in hosted:
                # RFC 4035 3.1.4.1: a DS query at a cut belongs to the parent side,
                # if this server also serves the parent.
                if qtype == DS and name == qname and name != dns.name.root:
                    parent = name.parent()
                    while True:
                        if parent in hosted:
                            return parent
                        if parent == dns.name.root:
                            break
                        parent = parent.parent()
                return name
            if name == dns.name.root:
                return None
            name = name.parent()

    def respond(self, query: dns.message.Message, address: str) -> dns.message.Message | None:
        response = dns.message.make_response(query, our_payload=EDNS_PAYLOAD)
        response.flags &= ~dns.flags.RA
        if query.opcode() != dns.opcode.QUERY:
            response.set_rcode(dns.rcode.NOTIMP)
            return response
        if len(query.question) != 1:
            response.set_rcode(dns.rcode.FORMERR)
            return response
        question = query.question[0]
        do = bool(query.ednsflags & dns.flags.DO)
        if query.edns >= 0:
            response.use_edns(0, dns.flags.DO if do else 0, EDNS_PAYLOAD)
        if question.rdclass != dns.rdataclass.IN:
            response.set_rcode(dns.rcode.REFUSED)
            return response
        qname, qtype = question.name, int(question.rdtype)
        origin = self.zone_for(address, qname, qtype)
        zone = self._served_zone(origin) if origin is not None else None
        if zone is None:
            response.set_rcode(dns.rcode.REFUSED)
            return response
        fault = self.faults.get(zone.origin)
        if fault is FaultKind.UNREACHABLE:
            return None
        if fault is FaultKind.SERVFAIL:
            response.set_rcode(dns.rcode.SERVFAIL)
            return response
        out = _Answer([], [], [])
        self._lookup(zone, qname, qtype, do, out)
        if out.aa:
            response.flags |= dns.flags.AA
        response.set_rcode(out.rcode)
        response.answer = out.answer
        response.authority = _dedup(out.authority)
        response.additional = _dedup(out.additional)
        return response

    # --- the lookup algorithm ------------------------------------------------------

    def _rrset(
        self, zone: ServedZone, owner: Name, rds: dns.rdataset.Rdataset, as_name: Name | None = None
    ) -> dns.rrset.RRset:
        rrset = dns.rrset.RRset(as_name or owner, rds.rdclass, rds.rdtype, rds.covers)
        rrset.update(rds)
        return rrset

    def _add(
        self,
        zone: ServedZone,
        section: list[dns.rrset.RRset],
        owner: Name,
        rdtype: int,
        do: bool,
        as_name: Name | None = None,
    ) -> bool:
        """Add the RRset (and with DO its RRSIG) to a section; False if there is none."""
        rds = zone.get(owner, rdtype)
        if rds is None:
            return False
        section.append(self._rrset(zone, owner, rds, as_name))
        if do:
            node = zone.nodes[owner]
            sigs = self.faults.signatures(zone.origin, owner, rds, node.get((RRSIG, rdtype)))
            if sigs is not None:
                section.append(self._rrset(zone, owner, sigs, as_name))
        return True

    def _add_signatures(self, zone: ServedZone, section: list[dns.rrset.RRset], owner: Name,
                        as_name: Name | None = None) -> bool:
        """Every RRSIG at `owner` (an explicit RRSIG question); False if there are none.

        NSD, Knot and BIND answer such a question with the signatures of every RRset at
        the name, with or without DO: the client asked for those records by type (RFC
        3225: records matching an explicit question go out whatever the DO bit), and
        RRSIGs are not signed themselves (RFC 4035 2.2). A faulted zone serves the
        signatures its fault puts beside the data."""
        node = zone.nodes.get(owner, {})
        found = False
        for rdtype, covers in sorted(node):
            if rdtype != RRSIG:
                continue
            covered = node.get((covers, 0))
            sigs = node[(rdtype, covers)] if covered is None else self.faults.signatures(
                zone.origin, owner, covered, node[(rdtype, covers)])
            if sigs is not None:
                section.append(self._rrset(zone, owner, sigs, as_name))
                found = True
        return found

    def _lookup(self, zone: ServedZone, qname: Name, qtype: int, do: bool, out: _Answer) -> None:
        name = qname
        for _ in range(MAX_CNAME_HOPS):
            cut = zone.find_cut(name)
            if cut is not None and not (qtype == DS and name == cut):
                if name == qname:
                    self._referral(zone, cut, do, out)
                return  # a CNAME into a child zone: the resolver follows it there
            if name in zone.names:
                node = zone.nodes.get(name, {})
                if qtype == ANY and node:
                    for rdtype, covers in sorted(node):
                        if covers == 0 and rdtype not in (RRSIG, NSEC):
                            self._add(zone, out.answer, name, rdtype, do)
                    return
                if qtype == RRSIG:
                    if not self._add_signatures(zone, out.answer, name):
                        self._nodata(zone, name, qtype, do, out)  # an unsigned zone
                    return
                if self._add(zone, out.answer, name, qtype, do):
                    if qtype == NS and name == zone.origin:
                        self._glue(zone, name, do, out)
                    return
                cname = zone.get(name, CNAME)
                if cname is not None and qtype != CNAME:
                    self._add(zone, out.answer, name, CNAME, do)
                    target = cname[0].target
                    if not target.is_subdomain(zone.origin):
                        return
                    name = target
                    continue
                self._nodata(zone, name, qtype, do, out)
                return
            # The name does not exist: a wildcard at the closest encloser may answer.
            ce = zone.closest_encloser(name)
            wildcard = dns.name.Name((b"*",) + ce.labels)
            if wildcard in zone.names:
                if self._wildcard(zone, name, ce, wildcard, qtype, do, out):
                    target_rds = zone.get(wildcard, CNAME)
                    if target_rds is None or qtype == CNAME:
                        return
                    target = target_rds[0].target
                    if not target.is_subdomain(zone.origin):
                        return
                    name = target
                    continue
                return
            self._nxdomain(zone, name, ce, do, out)
            return

    def _wildcard(
        self,
        zone: ServedZone,
        name: Name,
        ce: Name,
        wildcard: Name,
        qtype: int,
        do: bool,
        out: _Answer,
    ) -> bool:
        """Answer from the wildcard; True if a CNAME was added (caller follows it)."""
        if qtype == RRSIG:
            added = self._add_signatures(zone, out.answer, wildcard, as_name=name)
        else:
            added = self._add(zone, out.answer, wildcard, qtype, do, as_name=name)
        if added:
            self._no_such_name(zone, name, ce, do, out, wildcard_too=False)
            return False
        if qtype != CNAME and self._add(zone, out.answer, wildcard, CNAME, do, as_name=name):
            self._no_such_name(zone, name, ce, do, out, wildcard_too=False)
            return True
        # Wildcard NODATA (RFC 4035 3.1.3.4, RFC 5155 7.2.5).
        self._soa(zone, do, out)
        if do:
            self._no_such_name(zone, name, ce, do, out, wildcard_too=False)
            if zone.nsec3_param is not None:
                match = zone.nsec3_match(wildcard)
                if match is not None:
                    self._add(zone, out.authority, match, NSEC3, do)
            else:
                self._add(zone, out.authority, wildcard, NSEC, do)
        return False

    def _referral(self, zone: ServedZone, cut: Name, do: bool, out: _Answer) -> None:
        out.aa = False
        self._add(zone, out.authority, cut, NS, False)  # the child's NS is never signed
        if do and not self._add(zone, out.authority, cut, DS, do):
            self._no_ds_proof(zone, cut, do, out)
        self._glue(zone, cut, False, out)

    def _glue(self, zone: ServedZone, owner: Name, do: bool, out: _Answer) -> None:
        ns = zone.get(owner, NS)
        for rd in ns or ():
            if rd.target.is_subdomain(zone.origin):
                for rdtype in (int(dns.rdatatype.A), int(dns.rdatatype.AAAA)):
                    self._add(zone, out.additional, rd.target, rdtype, do and owner == zone.origin)

    def _no_ds_proof(self, zone: ServedZone, cut: Name, do: bool, out: _Answer) -> None:
        if zone.nsec3_param is None:
            self._add(zone, out.authority, cut, NSEC, do)
            return
        match = zone.nsec3_match(cut)
        if match is not None:
            self._add(zone, out.authority, match, NSEC3, do)
            return
        # Opt-out (RFC 5155 7.2.7): closest provable encloser + the span covering the cut.
        encloser = cut.parent()
        while zone.nsec3_match(encloser) is None and encloser != zone.origin:
            encloser = encloser.parent()
        self._add(zone, out.authority, zone.nsec3_match(encloser) or zone.origin, NSEC3, do)
        next_closer = cut.split(len(encloser) + 1)[1]
        self._add(zone, out.authority, zone.nsec3_cover(next_closer), NSEC3, do)

    def _soa(self, zone: ServedZone, do: bool, out: _Answer) -> None:
        soa = zone.get(zone.origin, SOA)
        assert soa is not None
        rrset = self._rrset(zone, zone.origin, soa)
        rrset.ttl = min(soa.ttl, soa[0].minimum)  # RFC 2308 / RFC 9077
        out.authority.append(rrset)
        if do:
            sigs = self.faults.signatures(
                zone.origin, zone.origin, soa, zone.nodes[zone.origin].get((RRSIG, SOA))
            )
            if sigs is not None:
                sig_rrset = self._rrset(zone, zone.origin, sigs)
                sig_rrset.ttl = rrset.ttl
                out.authority.append(sig_rrset)

    def _nodata(self, zone: ServedZone, name: Name, qtype: int, do: bool, out: _Answer) -> None:
        self._soa(zone, do, out)
        if not do or (zone.nsec3_param is None and not zone.nsec_owners):
            return  # unsigned zone: nothing to prove with
        if zone.nsec3_param is None:
            self._add(zone, out.authority, zone.nsec_for(name), NSEC, do)
        elif qtype == DS and name in zone.cuts:
            self._no_ds_proof(zone, name, do, out)
        else:
            match = zone.nsec3_match(name)
            if match is not None:
                self._add(zone, out.authority, match, NSEC3, do)

    def _nxdomain(self, zone: ServedZone, name: Name, ce: Name, do: bool, out: _Answer) -> None:
        out.rcode = dns.rcode.NXDOMAIN
        self._soa(zone, do, out)
        if do:
            self._no_such_name(zone, name, ce, do, out, wildcard_too=True)

    def _no_such_name(
        self, zone: ServedZone, name: Name, ce: Name, do: bool, out: _Answer, wildcard_too: bool
    ) -> None:
        """Proof that `name` does not exist (and, for NXDOMAIN, that no wildcard does)."""
        if not do or (zone.nsec3_param is None and not zone.nsec_owners):
            return  # an unsigned zone has no denial records to give
        wildcard = dns.name.Name((b"*",) + ce.labels)
        if zone.nsec3_param is None:
            self._add(zone, out.authority, zone.nsec_for(name), NSEC, do)
            if wildcard_too:
                self._add(zone, out.authority, zone.nsec_for(wildcard), NSEC, do)
            return
        next_closer = name.split(len(ce) + 1)[1]
        if wildcard_too:
            match = zone.nsec3_match(ce)
            if match is not None:
                self._add(zone, out.authority, match, NSEC3, do)
        self._add(zone, out.authority, zone.nsec3_cover(next_closer), NSEC3, do)
        if wildcard_too:
            self._add(zone, out.authority, zone.nsec3_cover(wildcard), NSEC3, do)


def _dedup(rrsets: list[dns.rrset.RRset]) -> list[dns.rrset.RRset]:
    seen: set[tuple[Name, int, int]] = set()
    out = []
    for r in rrsets:
        key = (r.name, int(r.rdtype), int(r.covers))
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


# --- sockets -------------------------------------------------------------------------


def udp_limit(query: dns.message.Message) -> int:
    return max(512, min(query.payload, 65535)) if query.edns >= 0 else 512


def render(response: dns.message.Message, limit: int) -> bytes:
    """Wire format within `limit` bytes; if it does not fit, an empty answer with TC."""
    try:
        return response.to_wire(max_size=limit)
    except dns.exception.TooBig:
        response.answer, response.authority, response.additional = [], [], []
        response.flags |= dns.flags.TC
        return response.to_wire(max_size=limit)


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, authority: Authority, address: str) -> None:
        self.authority = authority
        self.address = address
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        wire = _answer_wire(self.authority, data, self.address, tcp=False)
        if wire is not None and self.transport is not None:
            self.transport.sendto(wire, addr)


def _answer_wire(authority: Authority, data: bytes, address: str, tcp: bool) -> bytes | None:
    try:
        query = dns.message.from_wire(data)
    except dns.exception.DNSException:
        return None  # not a DNS message we can answer; a real server drops it too
    if query.flags & dns.flags.QR:
        return None
    try:
        response = authority.respond(query, address)
    except Exception:  # noqa: BLE001 - a bug in the testbed must not kill the listener
        log.exception("testbed: failed to answer %s", query.question)
        response = dns.message.make_response(query)
        response.set_rcode(dns.rcode.SERVFAIL)
    if response is None:
        return None
    return render(response, 65535 if tcp else udp_limit(query))


async def _tcp_client(
    authority: Authority, address: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        while True:
            header = await asyncio.wait_for(reader.readexactly(2), timeout=10)
            data = await reader.readexactly(int.from_bytes(header, "big"))
            wire = _answer_wire(authority, data, address, tcp=True)
            if wire is not None:
                writer.write(len(wire).to_bytes(2, "big") + wire)
                await writer.drain()
    except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
        pass
    finally:
        writer.close()


class AuthServer:
    """UDP and TCP listeners on every testbed address, all on one port."""

    def __init__(self, authority: Authority, addresses: list[str], port: int) -> None:
        self.authority = authority
        self.addresses = addresses
        self.port = port
        self._udp: list[asyncio.DatagramTransport] = []
        self._tcp: list[asyncio.AbstractServer] = []

    async def start(self) -> None:
        """Bind everything; OSError (e.g. the port is taken) after closing what was bound."""
        loop = asyncio.get_running_loop()
        try:
            for address in self.addresses:
                transport, _ = await loop.create_datagram_endpoint(
                    lambda a=address: _UdpProtocol(self.authority, a),  # type: ignore[misc]
                    local_addr=(address, self.port),
                )
                self._udp.append(transport)
                server = await asyncio.start_server(
                    functools.partial(_tcp_client, self.authority, address),
                    address,
                    self.port,
                    reuse_address=True,
                )
                self._tcp.append(server)
        except OSError:
            await self.stop()
            raise

    async def stop(self) -> None:
        for t in self._udp:
            t.close()
        for s in self._tcp:
            s.close()
        for s in self._tcp:
            await s.wait_closed()
        self._udp, self._tcp = [], []
