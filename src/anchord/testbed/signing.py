"""Zone signing for the testbed: RRSIGs plus an NSEC or NSEC3 chain.

dnspython's sign_zone() builds NSEC chains only and works through transactions; the
testbed also needs NSEC3 with opt-out, spans that leave chosen delegations out, and
signatures with chosen times, so this small signer does the whole job over a plain
dict of rdatasets. Pure: times and keys come in as parameters.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

import dns.dnssec
import dns.name
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.rdtypes.ANY.DNSKEY
import dns.rdtypes.ANY.NSEC
import dns.rdtypes.ANY.NSEC3
import dns.rdtypes.ANY.NSEC3PARAM
import dns.rdtypes.util

Name = dns.name.Name
RdKey = tuple[Name, int, int]
Records = dict[RdKey, dns.rdataset.Rdataset]

RRSIG = int(dns.rdatatype.RRSIG)
NSEC = int(dns.rdatatype.NSEC)
NSEC3 = int(dns.rdatatype.NSEC3)
NS = int(dns.rdatatype.NS)
DS = int(dns.rdatatype.DS)
SOA = int(dns.rdatatype.SOA)
DNSKEY = int(dns.rdatatype.DNSKEY)


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A private key with its DNSKEY rdata (a CSK: flags 257, signs every RRset)."""

    zone: Name
    algorithm: int
    private: Any  # a cryptography private key
    dnskey: dns.rdtypes.ANY.DNSKEY.DNSKEY

    @classmethod
    def from_private(cls, zone: Name, private: Any, algorithm: int) -> SigningKey:
        dnskey = dns.dnssec.make_dnskey(private.public_key(), algorithm, flags=257)
        return cls(zone, algorithm, private, dnskey)

    @property
    def key_tag(self) -> int:
        return dns.dnssec.key_id(self.dnskey)


@dataclass(frozen=True, slots=True)
class Denial:
    """How the zone proves non-existence: "nsec", "nsec3" or "unsigned"."""

    kind: str
    iterations: int = 0
    salt: bytes = b""
    opt_out: bool = False
    # Delegations left out of the NSEC3 chain (only meaningful with opt_out).
    exclude: frozenset[Name] = field(default_factory=frozenset)


def sign_rdataset(
    owner: Name,
    rds: dns.rdataset.Rdataset,
    key: SigningKey,
    inception: int,
    expiration: int,
) -> dns.rdataset.Rdataset:
    sig = dns.dnssec.sign(
        (owner, rds),
        key.private,
        key.zone,
        key.dnskey,
        inception=inception,
        expiration=expiration,
    )
    out = dns.rdataset.Rdataset(dns.rdataclass.IN, dns.rdatatype.RRSIG, rds.rdtype)
    out.add(sig, rds.ttl)
    return out


def _bitmap(types: set[int]) -> list[tuple[int, bytes]]:
    rdtypes = [dns.rdatatype.RdataType.make(t) for t in sorted(types)]
    return dns.rdtypes.util.Bitmap.from_rdtypes(rdtypes).windows


def _negative_ttl(records: Records, origin: Name) -> int:
    soa = records[(origin, SOA, 0)]
    return int(min(soa.ttl, soa[0].minimum))  # RFC 9077


def sign_records(
    unsigned: Records,
    origin: Name,
    key: SigningKey,
    inception: int,
    expiration: int,
    denial: Denial,
) -> Records:
    """Return a signed copy: DNSKEY, denial chain, and an RRSIG over every
    authoritative RRset (not over delegation NS or glue, RFC 4035 2.2)."""
    records: Records = dict(unsigned)
    soa_ttl = records[(origin, SOA, 0)].ttl
    keyset = dns.rdataset.Rdataset(dns.rdataclass.IN, dns.rdatatype.DNSKEY)
    keyset.add(key.dnskey, soa_ttl)
    records[(origin, DNSKEY, 0)] = keyset

    types_at: dict[Name, set[int]] = {}
    for name, rdtype, _ in records:
        types_at.setdefault(name, set()).add(rdtype)
    cuts = {n for n, ts in types_at.items() if NS in ts and n != origin}

    def below_cut(name: Name) -> bool:
        parent = name
        while parent != origin and len(parent) > len(origin):
            parent = parent.parent()
            if parent in cuts:
                return True
        return False

    authoritative = sorted(n for n in types_at if not below_cut(n))
    neg_ttl = _negative_ttl(records, origin)
    if denial.kind == "nsec":
        _add_nsec_chain(records, authoritative, types_at, neg_ttl)
    elif denial.kind == "nsec3":
        _add_nsec3_chain(records, origin, authoritative, types_at, cuts, neg_ttl, denial)

    for (name, rdtype, _covers), rds in list(records.items()):
        if rdtype == RRSIG or below_cut(name):
            continue
        if name in cuts and rdtype not in (DS, NSEC):
            continue  # the child's NS is the child's data; only DS and NSEC are ours
        records[(name, RRSIG, rdtype)] = sign_rdataset(name, rds, key, inception, expiration)
    return records


def _add_nsec_chain(
    records: Records, names: list[Name], types_at: dict[Name, set[int]], ttl: int
) -> None:
    for i, name in enumerate(names):
        nxt = names[(i + 1) % len(names)]
        types = types_at[name] | {RRSIG, NSEC}
        rd = dns.rdtypes.ANY.NSEC.NSEC(dns.rdataclass.IN, dns.rdatatype.NSEC, nxt, _bitmap(types))
        rds = dns.rdataset.Rdataset(dns.rdataclass.IN, dns.rdatatype.NSEC)
        rds.add(rd, ttl)
        records[(name, NSEC, 0)] = rds


def nsec3_owner(name: Name, origin: Name, salt: bytes, iterations: int) -> Name:
    label = dns.dnssec.nsec3_hash(name, salt, iterations, 1).lower()
    return dns.name.Name((label.encode(),) + origin.labels)


def _add_nsec3_chain(
    records: Records,
    origin: Name,
    names: list[Name],
    types_at: dict[Name, set[int]],
    cuts: set[Name],
    ttl: int,
    denial: Denial,
) -> None:
    # Every authoritative name and every empty non-terminal between it and the apex.
    owners: dict[Name, set[int]] = {}
    for name in names:
        if denial.opt_out and name in denial.exclude:
            continue
        types = set(types_at[name])
        if name in cuts:
            types &= {NS, DS}
            if DS in types:
                types.add(RRSIG)
        else:
            types.add(RRSIG)
        owners[name] = types
        parent = name
        while parent != origin:
            parent = parent.parent()
            owners.setdefault(parent, set())
    owners[origin] |= {dns.rdatatype.NSEC3PARAM}
    param = dns.rdtypes.ANY.NSEC3PARAM.NSEC3PARAM(
        dns.rdataclass.IN, dns.rdatatype.NSEC3PARAM, 1, 0, denial.iterations, denial.salt
    )
    prds = dns.rdataset.Rdataset(dns.rdataclass.IN, dns.rdatatype.NSEC3PARAM)
    prds.add(param, ttl)
    records[(origin, int(dns.rdatatype.NSEC3PARAM), 0)] = prds

    hashed = sorted(
        (base64.b32hexdecode(dns.dnssec.nsec3_hash(n, denial.salt, denial.iterations, 1)), n)
        for n in owners
    )
    flags = 1 if denial.opt_out else 0
    for i, (digest, name) in enumerate(hashed):
        nxt = hashed[(i + 1) % len(hashed)][0]
        rd = dns.rdtypes.ANY.NSEC3.NSEC3(
            dns.rdataclass.IN,
            dns.rdatatype.NSEC3,
            1,
            flags,
            denial.iterations,
            denial.salt,
            nxt,
            _bitmap(owners[name]) if owners[name] else [],
        )
        rds = dns.rdataset.Rdataset(dns.rdataclass.IN, dns.rdatatype.NSEC3)
        rds.add(rd, ttl)
        owner = dns.name.Name((base64.b32hexencode(digest).lower(),) + origin.labels)
        records[(owner, NSEC3, 0)] = rds
