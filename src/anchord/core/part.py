"""One validated step of an answer (a Part), and finding RRsets in a message section.

Shared by the modules that judge a zone's answer (judge.py), walk the chain of trust
(chain.py), synthesise answers from kept proofs (aggressive.py) and chain the steps
into one answer (resolution.py); kept here once so none of them copies another's.
"""

from __future__ import annotations

from dataclasses import dataclass

import dns.name
import dns.rdatatype
import dns.rrset

from anchord.core.iterator import Kind
from anchord.core.outcome import Verdict


@dataclass(frozen=True, slots=True)
class Part:
    """One validated step of an answer (one CNAME hop, or the final data or denial)."""

    kind: Kind
    rcode: int
    answer: tuple[dns.rrset.RRset, ...]
    authority: tuple[dns.rrset.RRset, ...]
    verdict: Verdict
    target: dns.name.Name | None = None  # where a CNAME or DNAME points


def sigs_for(section: list[dns.rrset.RRset], name: dns.name.Name, covers: int
             ) -> dns.rrset.RRset | None:
    """The RRSIG RRset in `section` covering type `covers` at `name`."""
    for rrset in section:
        if rrset.rdtype == dns.rdatatype.RRSIG and rrset.name == name and rrset.covers == covers:
            return rrset
    return None


def find_rrset(section: list[dns.rrset.RRset], name: dns.name.Name, rdtype: int
               ) -> dns.rrset.RRset | None:
    for rrset in section:
        if rrset.rdtype == rdtype and rrset.name == name:
            return rrset
    return None


def signer_of(sigs: dns.rrset.RRset | None) -> dns.name.Name | None:
    if sigs is None or len(sigs) == 0:
        return None
    return sigs[0].signer  # type: ignore[no-any-return]


def renamed(rrset: dns.rrset.RRset, owner: dns.name.Name) -> dns.rrset.RRset:
    out = dns.rrset.RRset(owner, rrset.rdclass, rrset.rdtype, rrset.covers)
    out.update(rrset)
    return out


def expiry_cap(verdict: Verdict) -> tuple[int, ...]:
    """The verdict's signature-expiry cap as a TTL candidate (0 is a real cap)."""
    return () if verdict.ttl_cap is None else (verdict.ttl_cap,)
