"""Authenticated denial of existence: the proof logic over NSEC and NSEC3 records.

The caller has already verified the signatures over every record passed in; these
functions only decide what the records prove (RFC 4035 5.4, RFC 5155 8). Verdicts:

- SECURE: proven;
- INSECURE: proven only through an NSEC3 opt-out span (the name may be an unsigned
  delegation, so no AD), or the NSEC3 iterations exceed the policy (RFC 9276, EDE 27);
- BOGUS: not proven: EDE 12 when no record of the zone was given at all, EDE 6 with a
  sentence saying which part of the proof the records fail.

Names compare in canonical order (RFC 4034 6.1): dns.name.Name's ordering is exactly that.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar, cast

import dns.dnssec
import dns.name
import dns.rdatatype
import dns.rrset
from dns.rdtypes.ANY.NSEC import NSEC
from dns.rdtypes.ANY.NSEC3 import NSEC3

from anchord.core.outcome import Ede, EdeCode, Verdict
from anchord.core.validator import ValidatorPolicy

_NS = dns.rdatatype.NS
_SOA = dns.rdatatype.SOA
_DS = dns.rdatatype.DS
_CNAME = dns.rdatatype.CNAME
_DNAME = dns.rdatatype.DNAME
_OPT_OUT = 0x01
_SHA1 = 1

# A prover returns a Verdict when it decided, or a string saying what is not proven.
_Result = Verdict | str


def _name(name: dns.name.Name) -> str:
    text = name.to_text(omit_final_dot=True)
    return text if text else "."


def _types(windows: Sequence[tuple[int, bytes]]) -> frozenset[int]:
    """The RR types in an NSEC/NSEC3 type bitmap (RFC 4034 4.1.2)."""
    found: set[int] = set()
    for window, bitmap in windows:
        for index, octet in enumerate(bitmap):
            for bit in range(8):
                if octet & (0x80 >> bit):
                    found.add(window * 256 + index * 8 + bit)
    return frozenset(found)


def _is_delegation(types: frozenset[int]) -> bool:
    """NS without SOA: the parent side of a zone cut, authoritative only for DS/NSEC."""
    return _NS in types and _SOA not in types


def _wildcard(name: dns.name.Name) -> dns.name.Name:
    return dns.name.from_text("*", name)


def _type_text(rdtype: int) -> str:
    return dns.rdatatype.to_text(dns.rdatatype.RdataType.make(rdtype))


@dataclass(frozen=True, slots=True)
class _Nsec:
    owner: dns.name.Name
    next: dns.name.Name
    types: frozenset[int]

    def covers(self, name: dns.name.Name) -> bool:
        """owner < name < next, so name does not exist (RFC 4035 5.4).

        Not when next lies below name (name is then an empty non-terminal), nor when
        name lies below a delegation or DNAME at the owner: those names are not this
        zone's to deny (the "ancestor delegation" trap).
        """
        if name == self.owner:
            return False
        if self.owner < self.next:
            inside = self.owner < name < self.next
        else:  # the zone's last NSEC points back to the apex
            inside = name > self.owner or name < self.next
        if not inside or self.next.is_subdomain(name):
            return False
        below_cut = name.is_subdomain(self.owner) and (
            _is_delegation(self.types) or _DNAME in self.types)
        return not below_cut

    def is_empty_non_terminal(self, name: dns.name.Name) -> bool:
        return self.owner < name < self.next and self.next.is_subdomain(name)


def _nsecs_of(zone: dns.name.Name, rrsets: Sequence[dns.rrset.RRset]) -> list[_Nsec]:
    found: list[_Nsec] = []
    for rrset in rrsets:
        if rrset.rdtype != dns.rdatatype.NSEC or not rrset.name.is_subdomain(zone):
            continue
        for rdata in rrset:
            nsec = cast(NSEC, rdata)
            found.append(_Nsec(rrset.name, nsec.next, _types(nsec.windows)))
    return found


def _closest_encloser(qname: dns.name.Name, nsec: _Nsec, zone: dns.name.Name) -> dns.name.Name:
    """The longest existing ancestor of qname that the covering NSEC shows.

    The names either side of qname exist; qname's common ancestor with the nearer of
    them is the closest encloser (as Unbound's nsec_closest_encloser computes it).
    """
    common = max(qname.fullcompare(nsec.owner)[2], qname.fullcompare(nsec.next)[2])
    encloser = qname.split(common)[1]
    return encloser if encloser.is_subdomain(zone) else zone


@dataclass(slots=True)
class _Nsec3:
    owner: dns.name.Name
    hash: bytes
    next: bytes
    types: frozenset[int]
    opt_out: bool


@dataclass(slots=True)
class _Chain:
    """The NSEC3 records of one zone sharing one parameter set (RFC 5155 8.2)."""

    zone: dns.name.Name
    iterations: int
    salt: bytes
    records: list[_Nsec3]
    _hashes: dict[dns.name.Name, bytes] = field(default_factory=dict)

    def digest(self, name: dns.name.Name) -> bytes:
        if name not in self._hashes:
            text = dns.dnssec.nsec3_hash(name, self.salt, self.iterations, _SHA1)
            self._hashes[name] = base64.b32hexdecode(text)
        return self._hashes[name]

    def match(self, name: dns.name.Name) -> _Nsec3 | None:
        digest = self.digest(name)
        return next((r for r in self.records if r.hash == digest), None)

    def cover(self, name: dns.name.Name) -> _Nsec3 | None:
        digest = self.digest(name)
        for record in self.records:
            if record.hash < record.next:
                inside = record.hash < digest < record.next
            else:  # the last record of the chain wraps to the first
                inside = digest > record.hash or digest < record.next
            if inside:
                return record
        return None


def _chain_of(zone: dns.name.Name, rrsets: Sequence[dns.rrset.RRset]) -> _Chain | None:
    """The usable NSEC3 records: owner one label below the zone, SHA-1, flags 0 or 1.

    Records with another parameter set than the first usable one are ignored.
    """
    chain: _Chain | None = None
    for rrset in rrsets:
        if rrset.rdtype != dns.rdatatype.NSEC3 or rrset.name.parent() != zone:
            continue
        try:
            owner_hash = base64.b32hexdecode(rrset.name[0].decode("ascii").upper())
        except (binascii.Error, UnicodeDecodeError, ValueError):
            continue
        for rdata in rrset:
            nsec3 = cast(NSEC3, rdata)
            if nsec3.algorithm != _SHA1 or nsec3.flags & ~_OPT_OUT:
                continue  # RFC 5155 8.2: unknown hash or flags, ignore the record
            if chain is None:
                chain = _Chain(zone, nsec3.iterations, nsec3.salt, [])
            if (nsec3.iterations, nsec3.salt) != (chain.iterations, chain.salt):
                continue
            chain.records.append(_Nsec3(rrset.name, owner_hash, nsec3.next,
                                        _types(nsec3.windows), bool(nsec3.flags & _OPT_OUT)))
    return chain


@dataclass(frozen=True, slots=True)
class _Encloser:
    name: dns.name.Name
    next_closer: dns.name.Name
    cover: _Nsec3


def _closest_encloser_proof(qname: dns.name.Name, chain: _Chain) -> _Encloser | str:
    """RFC 5155 8.3: an NSEC3 matches the closest encloser, one covers the next closer."""
    candidate = qname
    next_closer: dns.name.Name | None = None
    while True:
        matched = chain.match(candidate)
        if matched is not None:
            if next_closer is None:
                return f"an NSEC3 matches {_name(qname)} itself"
            if _is_delegation(matched.types) or _DNAME in matched.types:
                return (f"the closest encloser {_name(candidate)} is a delegation or DNAME,"
                        f" so names below it are not denied by {_name(chain.zone)}")
            cover = chain.cover(next_closer)
            if cover is None:
                return f"no NSEC3 covers the next closer name {_name(next_closer)}"
            return _Encloser(candidate, next_closer, cover)
        if candidate == chain.zone or len(candidate) <= 1:
            return f"no NSEC3 matches any ancestor of {_name(qname)}"
        next_closer = candidate
        candidate = candidate.parent()


def _prove(
    zone: dns.name.Name,
    claim: str,
    nsecs: Sequence[dns.rrset.RRset],
    nsec3s: Sequence[dns.rrset.RRset],
    policy: ValidatorPolicy,
    by_nsec: Callable[[list[_Nsec]], _Result],
    by_nsec3: Callable[[_Chain], _Result],
    missing_code: EdeCode = EdeCode.NSEC_MISSING,
) -> Verdict:
    """Run the NSEC proof, else the NSEC3 proof, and word a failure as one sentence.

    `missing_code` is the EDE when no record of the zone came at all: 12 (NSEC
    Missing) where data is denied, which is what RFC 8914 defines it for."""
    records = _nsecs_of(zone, nsecs)
    chain = _chain_of(zone, nsec3s)
    reasons: list[str] = []
    if records:
        result = by_nsec(records)
        if isinstance(result, Verdict):
            return result
        reasons.append(f"NSEC: {result}")
    if chain is not None:
        if chain.iterations > policy.nsec3_max_iterations:
            # RFC 9276 3.2: checked before hashing, so the cost is never paid.
            return Verdict.insecure(Ede(
                EdeCode.UNSUPPORTED_NSEC3_ITERATIONS,
                f"NSEC3 iterations {chain.iterations} above limit"
                f" {policy.nsec3_max_iterations} for zone {_name(zone)},"
                f" so it is not checked {claim}",
            ))
        result = by_nsec3(chain)
        if isinstance(result, Verdict):
            return result
        reasons.append(f"NSEC3: {result}")
    if not reasons:
        return Verdict.bogus(
            missing_code,
            f"no NSEC or NSEC3 record of {_name(zone)} to prove {claim}",
        )
    return Verdict.bogus(
        EdeCode.DNSSEC_BOGUS,
        f"denial records of {_name(zone)} fail to prove {claim}: {'; '.join(reasons)}",
    )


def _covering(records: list[_Nsec], name: dns.name.Name) -> _Nsec | None:
    return next((r for r in records if r.covers(name)), None)


def _exact(records: list[_Nsec], name: dns.name.Name) -> _Nsec | None:
    return next((r for r in records if r.owner == name), None)


def _opt_out(cover: _Nsec3) -> Verdict | None:
    return Verdict.insecure() if cover.opt_out else None


def prove_nxdomain(
    qname: dns.name.Name,
    zone: dns.name.Name,
    nsecs: Sequence[dns.rrset.RRset],
    nsec3s: Sequence[dns.rrset.RRset],
    policy: ValidatorPolicy,
) -> Verdict:
    """qname does not exist, nor a wildcard that could have answered for it."""

    def by_nsec(records: list[_Nsec]) -> _Result:
        if _exact(records, qname) is not None:
            return f"an NSEC shows {_name(qname)} exists"
        cover = _covering(records, qname)
        if cover is None:
            return f"no NSEC covers {_name(qname)}"
        wildcard = _wildcard(_closest_encloser(qname, cover, zone))
        if _exact(records, wildcard) is not None:
            return f"the wildcard {_name(wildcard)} exists"
        if _covering(records, wildcard) is None:
            return f"no NSEC covers the wildcard {_name(wildcard)}"
        return Verdict.secure()

    def by_nsec3(chain: _Chain) -> _Result:
        encloser = _closest_encloser_proof(qname, chain)
        if isinstance(encloser, str):
            return encloser
        wildcard = _wildcard(encloser.name)
        if chain.match(wildcard) is not None:
            return f"an NSEC3 shows the wildcard {_name(wildcard)} exists"
        if chain.cover(wildcard) is None:
            return f"no NSEC3 covers the wildcard {_name(wildcard)}"
        return _opt_out(encloser.cover) or Verdict.secure()

    claim = f"that {_name(qname)} does not exist"
    return _prove(zone, claim, nsecs, nsec3s, policy, by_nsec, by_nsec3)


def _nodata_types(types: frozenset[int], name: dns.name.Name, qtype: int,
                  zone: dns.name.Name) -> str | None:
    """Why a record at `name` with `types` does not deny qtype, or None if it does."""
    if qtype in types:
        return f"the record at {_name(name)} lists {_type_text(qtype)}"
    if _CNAME in types:
        return f"{_name(name)} has a CNAME"
    if qtype == _DS:
        if _SOA in types and name != dns.name.root:
            return f"the record at {_name(name)} is from the child zone apex, not the parent"
        return None
    if _is_delegation(types):
        return (f"{_name(name)} is a delegation; {_name(zone)} is not authoritative for"
                f" its {_type_text(qtype)} records")
    return None


def prove_nodata(
    qname: dns.name.Name,
    qtype: int,
    zone: dns.name.Name,
    nsecs: Sequence[dns.rrset.RRset],
    nsec3s: Sequence[dns.rrset.RRset],
    policy: ValidatorPolicy,
) -> Verdict:
    """qname exists (or a wildcard answers for it) but has no qtype records."""

    def by_nsec(records: list[_Nsec]) -> _Result:
        exact = _exact(records, qname)
        if exact is not None:  # RFC 4035 3.1.3.1
            why = _nodata_types(exact.types, qname, qtype, zone)
            return why if why is not None else Verdict.secure()
        if any(r.is_empty_non_terminal(qname) for r in records):
            return Verdict.secure()  # an empty non-terminal has no types at all
        cover = _covering(records, qname)
        if cover is None:
            return f"no NSEC matches or covers {_name(qname)}"
        wildcard = _wildcard(_closest_encloser(qname, cover, zone))
        wild = _exact(records, wildcard)  # RFC 4035 3.1.3.4
        if wild is None:
            return f"no NSEC matches the wildcard {_name(wildcard)}"
        why = _nodata_types(wild.types, wildcard, qtype, zone)
        return why if why is not None else Verdict.secure()

    def by_nsec3(chain: _Chain) -> _Result:
        matched = chain.match(qname)
        if matched is not None:  # RFC 5155 8.5 and 8.6
            why = _nodata_types(matched.types, qname, qtype, zone)
            return why if why is not None else Verdict.secure()
        encloser = _closest_encloser_proof(qname, chain)
        if isinstance(encloser, str):
            return encloser
        if qtype == _DS:  # RFC 5155 8.6: only an opt-out span can deny DS here
            return _opt_out(encloser.cover) or (
                f"{_name(qname)} does not exist and no opt-out covers it")
        wildcard = _wildcard(encloser.name)
        wild = chain.match(wildcard)  # RFC 5155 8.7
        if wild is None:
            # The next closer name in an opt-out span may be an unsigned delegation
            # with qname inside it (RFC 5155 6, 9.2): nothing is proven, but nothing
            # is bogus either; the answer stands as insecure, without AD.
            return _opt_out(encloser.cover) or (
                f"no NSEC3 matches {_name(qname)} or the wildcard {_name(wildcard)}")
        why = _nodata_types(wild.types, wildcard, qtype, zone)
        if why is not None:
            return why
        # An opt-out span over the next closer name may hide an unsigned delegation
        # that would take the name away from the wildcard: proven only as insecure.
        return _opt_out(encloser.cover) or Verdict.secure()

    claim = f"that {_name(qname)} has no {_type_text(qtype)} records"
    return _prove(zone, claim, nsecs, nsec3s, policy, by_nsec, by_nsec3)


def prove_no_ds(
    child: dns.name.Name,
    zone: dns.name.Name,
    nsecs: Sequence[dns.rrset.RRset],
    nsec3s: Sequence[dns.rrset.RRset],
    policy: ValidatorPolicy,
) -> Verdict:
    """A referral to `child` is unsigned: the parent proves the cut has no DS.

    SECURE: an NSEC/NSEC3 at child lists NS, not DS, not SOA (a provably insecure
    delegation). INSECURE: an opt-out NSEC3 covers the next closer (RFC 5155 6): the
    child is insecure too. Either way the caller treats the child as unsigned.
    """

    def delegation_without_ds(types: frozenset[int]) -> str | None:
        if _DS in types:
            return f"the record at {_name(child)} lists DS"
        if _SOA in types:
            return f"the record at {_name(child)} is from the child zone apex"
        if _NS not in types:
            return f"{_name(child)} is not a delegation (no NS in the bitmap)"
        return None

    def by_nsec(records: list[_Nsec]) -> _Result:
        exact = _exact(records, child)
        if exact is None:
            return f"no NSEC matches {_name(child)}"
        why = delegation_without_ds(exact.types)
        return why if why is not None else Verdict.secure()

    def by_nsec3(chain: _Chain) -> _Result:
        matched = chain.match(child)
        if matched is not None:
            why = delegation_without_ds(matched.types)
            return why if why is not None else Verdict.secure()
        encloser = _closest_encloser_proof(child, chain)
        if isinstance(encloser, str):
            return encloser
        return _opt_out(encloser.cover) or (
            f"no NSEC3 matches {_name(child)} and no opt-out span covers it")

    claim = f"that the delegation {_name(child)} has no DS"
    return _prove(zone, claim, nsecs, nsec3s, policy, by_nsec, by_nsec3)


def prove_wildcard_answer(
    qname: dns.name.Name,
    closest_encloser: dns.name.Name,
    zone: dns.name.Name,
    nsecs: Sequence[dns.rrset.RRset],
    nsec3s: Sequence[dns.rrset.RRset],
    policy: ValidatorPolicy,
) -> Verdict:
    """A wildcard-expanded answer is allowed: the next closer name does not exist.

    RFC 4035 3.1.3.3 / 5.3.4 (NSEC covering qname), RFC 5155 8.8 (NSEC3 covering the
    next closer). An opt-out cover leaves room for an unsigned delegation that would
    take precedence over the wildcard, so it is only INSECURE.
    """
    if not qname.is_subdomain(closest_encloser) or qname == closest_encloser:
        return Verdict.bogus(
            EdeCode.DNSSEC_BOGUS,
            f"wildcard answer for {_name(qname)} claims closest encloser"
            f" {_name(closest_encloser)}, which is not an ancestor",
        )
    next_closer = qname.split(len(closest_encloser) + 1)[1]

    def by_nsec(records: list[_Nsec]) -> _Result:
        if _covering(records, qname) is None:
            return f"no NSEC covers {_name(qname)}"
        return Verdict.secure()

    def by_nsec3(chain: _Chain) -> _Result:
        cover = chain.cover(next_closer)
        if cover is None:
            return f"no NSEC3 covers the next closer name {_name(next_closer)}"
        return _opt_out(cover) or Verdict.secure()

    claim = f"that the wildcard answer for {_name(qname)} is allowed"
    # The data is there, only its wildcard proof is not: RFC 8914 keeps 12 for missing
    # data without a denial, so this is plain "DNSSEC Bogus" (as Unbound answers).
    return _prove(zone, claim, nsecs, nsec3s, policy, by_nsec, by_nsec3,
                  missing_code=EdeCode.DNSSEC_BOGUS)


T = TypeVar("T")


def relevant_records(qname: dns.name.Name, zone: dns.name.Name, items: Sequence[T],
                     rrset_of: Callable[[T], dns.rrset.RRset]) -> list[T]:
    """The items whose NSEC/NSEC3 RRset matches or covers qname, one of its ancestors
    within `zone`, or the wildcard below one of them: every record a denial of qname
    can need (RFC 8198 synthesis picks its proof from these)."""
    names: list[dns.name.Name] = []
    name = qname
    while True:
        names.append(name)
        names.append(_wildcard(name))
        if name == zone or len(name) <= 1 or not name.is_subdomain(zone):
            break
        name = name.parent()
    chains: dict[tuple[int, bytes], _Chain] = {}
    out: list[T] = []
    for item in items:
        rrset = rrset_of(item)
        if rrset.rdtype == dns.rdatatype.NSEC:
            records = _nsecs_of(zone, [rrset])
            if any(r.owner == n or r.covers(n) or r.is_empty_non_terminal(n)
                   for r in records for n in names):
                out.append(item)
        elif rrset.rdtype == dns.rdatatype.NSEC3:
            single = _chain_of(zone, [rrset])
            if single is None:
                continue
            params = (single.iterations, single.salt)
            chain = chains.setdefault(params, _Chain(zone, single.iterations, single.salt, []))
            single._hashes = chain._hashes  # share the hashing work
            if any(single.match(n) is not None or single.cover(n) is not None
                   for n in names):
                out.append(item)
    return out
