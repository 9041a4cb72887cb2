"""The values that flow from where a decision is made to the wire.

An Outcome is what the resolver decided for one question: rcode, records, security
state and the EDE list. It is built where the decision is made and rendered unchanged
(DESIGN.md, "the one invariant"). Nothing downstream re-derives an EDE.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace

import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset


class Security(enum.Enum):
    """RFC 4033 section 5 security states."""

    SECURE = "secure"
    INSECURE = "insecure"
    BOGUS = "bogus"
    INDETERMINATE = "indeterminate"


class EdeCode(enum.IntEnum):
    """Extended DNS Error codes (RFC 8914 and the later IANA registrations)."""

    OTHER = 0
    UNSUPPORTED_DNSKEY_ALGORITHM = 1
    UNSUPPORTED_DS_DIGEST_TYPE = 2
    STALE_ANSWER = 3
    FORGED_ANSWER = 4
    DNSSEC_INDETERMINATE = 5
    DNSSEC_BOGUS = 6
    SIGNATURE_EXPIRED = 7
    SIGNATURE_NOT_YET_VALID = 8
    DNSKEY_MISSING = 9
    RRSIGS_MISSING = 10
    NO_ZONE_KEY_BIT_SET = 11
    NSEC_MISSING = 12
    CACHED_ERROR = 13
    NOT_READY = 14
    BLOCKED = 15
    CENSORED = 16
    FILTERED = 17
    PROHIBITED = 18
    STALE_NXDOMAIN_ANSWER = 19
    NOT_AUTHORITATIVE = 20
    NOT_SUPPORTED = 21
    NO_REACHABLE_AUTHORITY = 22
    NETWORK_ERROR = 23
    INVALID_DATA = 24
    SIGNATURE_EXPIRED_BEFORE_VALID = 25
    TOO_EARLY = 26
    UNSUPPORTED_NSEC3_ITERATIONS = 27
    UNABLE_TO_CONFORM_TO_POLICY = 28
    SYNTHESIZED = 29
    INVALID_QUERY_TYPE = 30
    NEGATIVE_TRUST_ANCHOR = 33


# One explicit priority table (Knot Resolver's idea): a higher number wins the first
# place in the response. Specific DNSSEC reasons beat the generic "bogus", which beats
# policy, which beats stale, which beats the network codes, so "no reachable
# authority" can never hide "bogus" (the 2026-05-05 lesson).
_PRIORITY: dict[int, int] = {
    EdeCode.SIGNATURE_EXPIRED: 90,
    EdeCode.SIGNATURE_NOT_YET_VALID: 90,
    EdeCode.SIGNATURE_EXPIRED_BEFORE_VALID: 90,
    EdeCode.DNSKEY_MISSING: 88,
    EdeCode.RRSIGS_MISSING: 88,
    EdeCode.NSEC_MISSING: 88,
    EdeCode.NO_ZONE_KEY_BIT_SET: 88,
    EdeCode.DNSSEC_BOGUS: 80,
    EdeCode.DNSSEC_INDETERMINATE: 78,
    EdeCode.UNSUPPORTED_NSEC3_ITERATIONS: 70,
    EdeCode.UNSUPPORTED_DNSKEY_ALGORITHM: 70,
    EdeCode.UNSUPPORTED_DS_DIGEST_TYPE: 70,
    EdeCode.NEGATIVE_TRUST_ANCHOR: 65,
    EdeCode.BLOCKED: 60,
    EdeCode.CENSORED: 60,
    EdeCode.FILTERED: 60,
    EdeCode.PROHIBITED: 60,
    EdeCode.NOT_SUPPORTED: 60,
    EdeCode.INVALID_QUERY_TYPE: 60,
    EdeCode.STALE_ANSWER: 50,
    EdeCode.STALE_NXDOMAIN_ANSWER: 50,
    EdeCode.CACHED_ERROR: 5,  # "from cache" qualifies the original reason: it follows it
    EdeCode.NO_REACHABLE_AUTHORITY: 30,
    EdeCode.NETWORK_ERROR: 30,
    EdeCode.INVALID_DATA: 25,
    EdeCode.NOT_AUTHORITATIVE: 20,
}


def ede_priority(code: int) -> int:
    return _PRIORITY.get(code, 10)


@dataclass(frozen=True, slots=True)
class Ede:
    """One Extended DNS Error: a code and a sentence for humans naming zone, record, key."""

    code: EdeCode
    text: str = ""

    def __str__(self) -> str:
        return f"EDE {int(self.code)} ({self.code.name.lower()}): {self.text}"


def order_edes(edes: tuple[Ede, ...] | list[Ede]) -> tuple[Ede, ...]:
    """The EDE list in wire order: by priority, duplicates (same code and text) removed."""
    seen: set[tuple[int, str]] = set()
    unique: list[Ede] = []
    for ede in edes:
        key = (int(ede.code), ede.text)
        if key not in seen:
            seen.add(key)
            unique.append(ede)
    # sorted() is stable: equal-priority codes keep the order they were decided in.
    return tuple(sorted(unique, key=lambda e: -ede_priority(e.code)))


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the validator decided for one piece of data, with its reasons.

    A Bogus or Indeterminate verdict always carries at least one Ede; a Secure one may
    carry a TTL cap from the signatures' expiration (RFC 4035 5.3.3).
    """

    security: Security
    edes: tuple[Ede, ...] = ()
    ttl_cap: int | None = None

    @staticmethod
    def secure(ttl_cap: int | None = None) -> Verdict:
        return Verdict(Security.SECURE, (), ttl_cap)

    @staticmethod
    def insecure(*edes: Ede) -> Verdict:
        return Verdict(Security.INSECURE, tuple(edes))

    @staticmethod
    def bogus(code: EdeCode, text: str) -> Verdict:
        return Verdict(Security.BOGUS, (Ede(code, text),))

    @property
    def is_secure(self) -> bool:
        return self.security is Security.SECURE

    @property
    def is_bogus(self) -> bool:
        return self.security is Security.BOGUS


def combine_security(states: list[Security]) -> Security:
    """The security of an answer made of parts: the weakest part decides."""
    if not states:
        return Security.INSECURE
    for worst in (Security.BOGUS, Security.INDETERMINATE, Security.INSECURE):
        if worst in states:
            return worst
    return Security.SECURE


@dataclass(frozen=True, slots=True)
class Question:
    qname: dns.name.Name
    qtype: dns.rdatatype.RdataType
    qclass: dns.rdataclass.RdataClass = dns.rdataclass.IN

    def __str__(self) -> str:
        return (
            f"{self.qname.to_text()}/{dns.rdatatype.to_text(self.qtype)}"
        )


class Freshness(enum.Enum):
    FRESH = "fresh"
    STALE = "stale"  # served from the RFC 8767 stale window
    CACHED_FAILURE = "cached-failure"  # served from the RFC 9520 failure cache


# weakref_slot: a cache entry refers weakly to the Outcome it was made from (cache.py).
@dataclass(frozen=True, slots=True, weakref_slot=True)
class Outcome:
    """The resolver's whole answer to one question, before rendering.

    `answer`, `authority` and `additional` hold the records as they would go to a
    client with DO set (RRSIGs included); render drops DNSSEC records for clients that
    did not ask. For a Bogus outcome the data is kept (so CD clients can see it) but a
    client without CD gets SERVFAIL with `edes`.
    """

    question: Question
    rcode: int = dns.rcode.NOERROR
    answer: tuple[dns.rrset.RRset, ...] = ()
    authority: tuple[dns.rrset.RRset, ...] = ()
    additional: tuple[dns.rrset.RRset, ...] = ()
    security: Security = Security.INSECURE
    edes: tuple[Ede, ...] = field(default=())
    freshness: Freshness = Freshness.FRESH

    @property
    def is_failure(self) -> bool:
        return self.rcode == dns.rcode.SERVFAIL or self.security is Security.BOGUS

    def with_edes(self, *extra: Ede) -> Outcome:
        return replace(self, edes=order_edes(self.edes + tuple(extra)))

    @staticmethod
    def servfail(question: Question, *edes: Ede, security: Security = Security.INDETERMINATE
                 ) -> Outcome:
        """A failure; every SERVFAIL states its reason (the invariant)."""
        if not edes:
            raise ValueError(f"SERVFAIL for {question} without an EDE: a reason was lost")
        return Outcome(question, dns.rcode.SERVFAIL, security=security, edes=order_edes(edes))
