"""DNSSEC validation primitives: one RRset against its RRSIGs, one DNSKEY set against DS.

Pure functions: no I/O, no clock (`now` is a parameter), every public-key operation
charged to a WorkBudget. Each returns a Verdict whose EDE names the zone, the RRset and
the key tag, because that sentence is what an operator reads during an incident.

The crypto is dnspython's (`dns.dnssec.validate_rrsig`); this module decides which
(signature, key) pairs to try, in which order, within which time window, and how to
word the failure.
"""

from __future__ import annotations

import hashlib
import struct
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, cast

import dns.dnssec
import dns.exception
import dns.name
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.rrset
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from dns.dnssecalgs import get_algorithm_cls_from_dnskey
from dns.dnssecalgs.base import GenericPublicKey
from dns.dnssectypes import Algorithm, DSDigest
from dns.rdtypes.ANY.DNSKEY import DNSKEY
from dns.rdtypes.ANY.DS import DS
from dns.rdtypes.ANY.RRSIG import RRSIG
from dns.rdtypes.dnskeybase import Flag

from anchord.core.limits import WorkBudget
from anchord.core.outcome import Ede, EdeCode, Security, Verdict

# RFC 8624 section 3.1, "DNSSEC Validation" column: MUST for 5, 7, 8, 10, 13;
# RECOMMENDED for 14, 15; MAY for 16 (validated here: cheap, dnspython has it);
# MUST NOT for 1 (RSAMD5), 3 (DSA), 6 (DSA-NSEC3-SHA1). RSASHA1 (5, 7) stays validated
# because the validation column says MUST: refusing it would turn the zones still signed
# with it insecure. (RFC 9904 moves these tables to IANA without changing dnspython's
# policy, which keeps the same deny set.) ECC-GOST (12) is MAY and dnspython cannot do it.
RFC8624_ALGORITHMS: frozenset[int] = frozenset(
    {
        Algorithm.RSASHA1,
        Algorithm.RSASHA1NSEC3SHA1,
        Algorithm.RSASHA256,
        Algorithm.RSASHA512,
        Algorithm.ECDSAP256SHA256,
        Algorithm.ECDSAP384SHA384,
        Algorithm.ED25519,
        Algorithm.ED448,
    }
)
# RFC 8624 section 3.3, validation column: SHA-1 MUST, SHA-256 MUST, SHA-384 RECOMMENDED.
RFC8624_DIGESTS: frozenset[int] = frozenset({DSDigest.SHA1, DSDigest.SHA256, DSDigest.SHA384})
# Old scenario suites (2007-era Unbound tests) sign with DSA and RSAMD5.
PERMISSIVE_ALGORITHMS: frozenset[int] = RFC8624_ALGORITHMS | {
    Algorithm.RSAMD5,
    Algorithm.DSA,
    Algorithm.DSANSEC3SHA1,
}

_SERIAL = 1 << 32
_HALF = 1 << 31


@dataclass(frozen=True, slots=True)
class ValidatorPolicy:
    """What the validator accepts; the operator's knobs, not per-query state.

    clock_skew widens every signature's validity window by that many seconds at both
    ends. It defaults to 0 (exactly RFC 4035 5.3.1); an operator whose clock is not
    trusted sets a few minutes.
    """

    algorithms: frozenset[int] = RFC8624_ALGORITHMS
    digests: frozenset[int] = RFC8624_DIGESTS
    nsec3_max_iterations: int = 150  # RFC 9276: above this, treat as insecure (EDE 27)
    clock_skew: int = 0

    @staticmethod
    def permissive() -> ValidatorPolicy:
        """Also validate DSA and RSAMD5 (for old test scenarios), all digests dnspython has."""
        return ValidatorPolicy(algorithms=PERMISSIVE_ALGORITHMS, digests=RFC8624_DIGESTS)

    def validates_algorithm(self, algorithm: int) -> bool:
        return algorithm in self.algorithms

    def validates_digest(self, digest_type: int) -> bool:
        return digest_type in self.digests




_DSA_ALGORITHMS = frozenset({Algorithm.DSA, Algorithm.DSANSEC3SHA1})

# Pure functions of a key's bytes, remembered because every answer below a zone needs
# them again: dnspython recomputes a key tag by a Python loop over the key and parses
# the public key (a curve point check for ECDSA, a quarter of a verify) on every
# validate_rrsig call. Keyed by the exact key material, never by time, so nothing here
# can vouch for a signature; cleared when full, so a flood of keys cannot grow them.
_KEY_MEMO_LIMIT = 8192
_KeyMaterial = tuple[int, int, int, bytes]  # flags, protocol, algorithm, key
_key_tags: dict[_KeyMaterial, int] = {}
_public_keys: dict[tuple[int, bytes], GenericPublicKey] = {}


def _material(key: DNSKEY) -> _KeyMaterial:
    return (key.flags, key.protocol, key.algorithm, key.key)


def key_tag(key: DNSKEY) -> int:
    """dns.dnssec.key_id(key) (RFC 4034 Appendix B), remembered per key material."""
    material = _material(key)
    tag = _key_tags.get(material)
    if tag is None:
        if len(_key_tags) >= _KEY_MEMO_LIMIT:
            _key_tags.clear()
        tag = _key_tags[material] = dns.dnssec.key_id(key)
    return tag


def _public_key(key: DNSKEY) -> GenericPublicKey:
    """The parsed public key, as dns.dnssec._validate_signature makes it (same errors:
    UnsupportedAlgorithm, or ValidationFailure for unusable key material; those are not
    remembered, so a bad key fails the same way every time)."""
    memo = (int(key.algorithm), bytes(key.key))
    public = _public_keys.get(memo)
    if public is None:
        public_cls = get_algorithm_cls_from_dnskey(key).public_cls
        try:
            public = public_cls.from_dnskey(key)
        except ValueError as e:
            raise dns.exception.ValidationFailure("invalid public key") from e
        if len(_public_keys) >= _KEY_MEMO_LIMIT:
            _public_keys.clear()
        _public_keys[memo] = public
    return public


def _validate_rrsig(rrset: dns.rrset.RRset, rrsig: RRSIG, key: DNSKEY, when: float,
                    signed: list[bytes]) -> None:
    """dns.dnssec.validate_rrsig(rrset, rrsig, {signer: [key]}, None, when, allow_all)
    step by step, with the same checks in the same order and the same exceptions, minus
    its per-call set-up: no one-key Rdataset to build (hashing renders each rdata),
    the key tag and public key from the memos above, and the signed data (`signed`,
    filled on first use) computed once per RRSIG rather than once per candidate key."""
    if rrsig.type_covered != rrset.rdtype or rrsig.rdclass != rrset.rdclass:
        raise dns.exception.ValidationFailure("RRSIG does not cover the RRset")
    candidate = (
        key.algorithm == rrsig.algorithm
        and key_tag(key) == rrsig.key_tag
        and (key.flags & Flag.ZONE) == Flag.ZONE
        and key.protocol == 3
        # A revoked key may only validate the DNSKEY RRset (RFC 5011 2.1).
        and ((key.flags & Flag.REVOKE) == 0 or rrsig.type_covered == dns.rdatatype.DNSKEY)
    )
    if rrsig.expiration < when:
        raise dns.exception.ValidationFailure("expired")
    if rrsig.inception > when:
        raise dns.exception.ValidationFailure("not yet valid")
    if not signed:
        signed.append(dns.dnssec._make_rrsig_signature_data(rrset, rrsig))  # noqa: SLF001
    if candidate:
        digest = _verification_digest(key, rrsig.signature, signed[0])
        if digest in _verified:
            _verified.move_to_end(digest)
            return
        try:
            _public_key(key).verify(rrsig.signature, signed[0])
        except (InvalidSignature, dns.exception.ValidationFailure):
            pass
        else:
            _verified[digest] = None
            if len(_verified) > _VERIFIED_LIMIT:
                _verified.popitem(last=False)
            return
    raise dns.exception.ValidationFailure("verify failure")


# Signatures that verified, by a digest of everything the public-key operation reads:
# algorithm, key, signature and signed data (which holds the RRSIG's own fields, its
# validity window included, and the RRset in canonical form). The same proof or SOA
# comes with every negative answer of a zone, and every expansion of a wildcard signs
# the same data, so their checks repeat exactly. Only the crypto is skipped: the key
# tag, zone-key, revocation and time checks above (and the caller's window check
# against the `now` it was given) run on every call, so a remembered verification can
# never make a signature valid outside its window or for another key.
_VERIFIED_LIMIT = 16_384
_verified: OrderedDict[bytes, None] = OrderedDict()


def _verification_digest(key: DNSKEY, signature: bytes, signed: bytes) -> bytes:
    h = hashlib.sha256()
    for part in (bytes([int(key.algorithm)]), bytes(key.key), bytes(signature), signed):
        h.update(len(part).to_bytes(4, "big"))
        h.update(part)
    return h.digest()


def _dsa_signature(signature: bytes) -> tuple[int, int] | None:
    """(r, s) of a DSA signature: RFC 2536 form (T, R, S) or DER (as Unbound accepts)."""
    if len(signature) == 41:
        return int.from_bytes(signature[1:21], "big"), int.from_bytes(signature[21:], "big")
    try:
        r, s = decode_dss_signature(signature)
    except ValueError:
        return None
    return r, s


def dsa_verify(rrset: dns.rrset.RRset, rrsig: RRSIG, key: DNSKEY) -> bool:
    """RFC 2536 DSA verification done with integer arithmetic (FIPS 186 4.7).

    dnspython hands DSA to `cryptography`, which refuses every prime that is not
    1024/2048/3072/4096 bits; RFC 2536 keys have T = 0..8, a prime of 512 + 64*T bits
    (the 2007 scenario zones use T = 0). This path does the same public-key check for
    any T, and also accepts a DER-encoded (r, s), the form Unbound's OpenSSL code
    passes through. It is reached only when the policy validates DSA (the permissive
    policy for old scenarios) and dnspython could not verify.
    """
    data = bytes(key.key)
    if not data or data[0] > 8:
        return False
    size = 64 + data[0] * 8
    if len(data) != 1 + 20 + 3 * size:
        return False
    q = int.from_bytes(data[1:21], "big")
    p = int.from_bytes(data[21 : 21 + size], "big")
    g = int.from_bytes(data[21 + size : 21 + 2 * size], "big")
    y = int.from_bytes(data[21 + 2 * size :], "big")
    if q.bit_length() != 160 or not (1 < g < p and 1 < y < p) or (p - 1) % q:
        return False
    parsed = _dsa_signature(bytes(rrsig.signature))
    if parsed is None:
        return False
    r, s = parsed
    if not (0 < r < q and 0 < s < q):
        return False
    signed = dns.dnssec._make_rrsig_signature_data(rrset, rrsig)  # noqa: SLF001
    digest = int.from_bytes(hashlib.sha1(signed).digest(), "big")
    w = pow(s, -1, q)
    v = (pow(g, digest * w % q, p) * pow(y, r * w % q, p)) % p % q
    return v == r


def _name(name: dns.name.Name) -> str:
    """A name as an operator writes it: no trailing dot (except the root)."""
    text = name.to_text(omit_final_dot=True)
    return text if text else "."


def _rrset_text(rrset: dns.rrset.RRset) -> str:
    return f"{_name(rrset.name)}/{dns.rdatatype.to_text(rrset.rdtype)}"


def _alg(algorithm: int) -> str:
    return f"alg {int(algorithm)}"


def owner_labels(name: dns.name.Name) -> int:
    """RFC 4034 3.1.3: labels of the owner, not counting the root nor a leading '*'."""
    count = len(name) - 1 if name.is_absolute() else len(name)
    if name.is_wild():
        count -= 1
    return count


def serial_time(value: int, now: float) -> int:
    """RFC 4034 3.1.5: a 32-bit signature time as the absolute time nearest `now`.

    RRSIG times wrap in 2106; reading them as serial numbers relative to now keeps
    comparisons right on both sides of the wrap.
    """
    base = int(now)
    return base + ((value - base + _HALF) % _SERIAL) - _HALF


def wildcard_expansion(rrset_owner: dns.name.Name, rrsig: RRSIG) -> dns.name.Name | None:
    """The closest encloser of the wildcard an answer was synthesised from, or None.

    An RRSIG labels field smaller than the owner's label count means the RRset was
    expanded from `*.<closest encloser>` (RFC 4035 5.3.4); the caller must then demand
    the proof that the next closer name does not exist (RFC 4035 3.1.3.3, RFC 5155 8.8).
    """
    if rrset_owner.is_wild() or rrsig.labels >= owner_labels(rrset_owner):
        return None
    return rrset_owner.split(rrsig.labels + 1)[1]


@dataclass(slots=True)
class _Failure:
    """Why one RRSIG did not make the RRset secure; `depth` ranks how far it got.

    The verdict reports the failure that got furthest (a signature that reached the
    crypto and failed says more than one whose key is absent).
    """

    depth: int
    code: EdeCode
    text: str


@dataclass(slots=True)
class _Attempt:
    failures: list[_Failure] = field(default_factory=list)
    unsupported: list[RRSIG] = field(default_factory=list)

    def fail(self, depth: int, code: EdeCode, text: str) -> None:
        self.failures.append(_Failure(depth, code, text))

    def best(self) -> _Failure | None:
        if not self.failures:
            return None
        # max() keeps the first of equal depth: the order the RRSIGs came in.
        return max(self.failures, key=lambda f: f.depth)


_DEPTH_MISSING_KEY = 1
_DEPTH_BAD_LABELS = 2
_DEPTH_TIME = 3
_DEPTH_CRYPTO = 4
_DEPTH_LIMIT = 5  # the work limit is the reason to report: trying more was refused


def _candidate_keys(dnskeys: Iterable[DNSKEY], rrsig: RRSIG) -> list[DNSKEY]:
    """Keys that may have made `rrsig` (RFC 4035 5.3.1): tag, algorithm, zone-key bit."""
    return [
        key
        for key in dnskeys
        if key.algorithm == rrsig.algorithm
        and key.flags & 0x0100  # Zone Key bit, RFC 4034 2.1.1
        and key.protocol == 3
        and key_tag(key) == rrsig.key_tag
    ]


def _limit_text(zone: dns.name.Name, rrset: dns.rrset.RRset, budget: WorkBudget) -> str:
    return (
        f"validation work limit hit validating {_rrset_text(rrset)} in zone {_name(zone)}"
        f" ({budget.max_signature_checks} signature checks,"
        f" {budget.max_key_tag_collisions} keys per key tag)"
    )


def _check_one(
    rrset: dns.rrset.RRset,
    rrsig: RRSIG,
    keys: list[DNSKEY],
    zone: dns.name.Name,
    now: float,
    policy: ValidatorPolicy,
    budget: WorkBudget,
    attempt: _Attempt,
    missing_key_code: EdeCode,
) -> int | None:
    """Try one RRSIG; the TTL cap on success, None (and a recorded failure) otherwise."""

    def what() -> str:  # text only for a failure: a success renders no names
        return (f"RRSIG over {_rrset_text(rrset)} by {_name(zone)} key tag {rrsig.key_tag}"
                f" ({_alg(rrsig.algorithm)})")

    if rrsig.labels > owner_labels(rrset.name):
        attempt.fail(_DEPTH_BAD_LABELS, EdeCode.DNSSEC_BOGUS,
                     f"{what()} has labels {rrsig.labels}, more than the owner name has")
        return None
    candidates = _candidate_keys(keys, rrsig)
    if not candidates:
        attempt.fail(_DEPTH_MISSING_KEY, missing_key_code,
                     f"{what()}: no DNSKEY of {_name(zone)} with key tag {rrsig.key_tag}"
                     f" and {_alg(rrsig.algorithm)}")
        return None
    inception = serial_time(rrsig.inception, now)
    expiration = serial_time(rrsig.expiration, now)
    # Checked before the crypto: an out-of-window signature costs no budget.
    if expiration < inception:
        attempt.fail(_DEPTH_TIME, EdeCode.SIGNATURE_EXPIRED_BEFORE_VALID,
                     f"{what()} expires before its inception")
        return None
    if now > expiration + policy.clock_skew:
        attempt.fail(_DEPTH_TIME, EdeCode.SIGNATURE_EXPIRED,
                     f"{what()} expired {int(now - expiration)} s ago")
        return None
    if now < inception - policy.clock_skew:
        attempt.fail(_DEPTH_TIME, EdeCode.SIGNATURE_NOT_YET_VALID,
                     f"{what()} is not valid for another {int(inception - now)} s")
        return None
    # KeyTrap: beyond a few keys sharing one tag, the rest are not tried.
    tried = candidates[: budget.max_key_tag_collisions]
    signed: list[bytes] = []
    for key in tried:
        if not budget.charge_signature():
            attempt.fail(_DEPTH_LIMIT, EdeCode.DNSSEC_BOGUS, _limit_text(zone, rrset, budget))
            return None
        try:
            # dnspython's checks include the time; `when` for them is a moment inside the
            # window already accepted above (clock skew and serial arithmetic are ours).
            _validate_rrsig(rrset, rrsig, key, float(min(max(now, inception), expiration)),
                            signed)
        except (dns.exception.ValidationFailure, dns.exception.UnsupportedAlgorithm,
                dns.exception.DeniedByPolicy):
            if not (rrsig.algorithm in _DSA_ALGORITHMS and dsa_verify(rrset, rrsig, key)):
                continue
        remaining = max(0, expiration - int(now))
        return min(remaining, rrsig.original_ttl)
    if len(candidates) > len(tried):
        attempt.fail(_DEPTH_LIMIT, EdeCode.DNSSEC_BOGUS,
                     f"{_limit_text(zone, rrset, budget)}: {len(candidates)} keys share key"
                     f" tag {rrsig.key_tag}")
        return None
    attempt.fail(_DEPTH_CRYPTO, EdeCode.DNSSEC_BOGUS, f"{what()} does not verify")
    return None


def verify_rrset(
    rrset: dns.rrset.RRset,
    rrsigs: dns.rrset.RRset | None,
    dnskeys: dns.rrset.RRset | Iterable[DNSKEY],
    zone: dns.name.Name,
    now: float,
    policy: ValidatorPolicy,
    budget: WorkBudget,
    missing_key_code: EdeCode = EdeCode.DNSSEC_BOGUS,
) -> Verdict:
    """Is `rrset` signed by a trusted key of `zone`, now? (RFC 4035 5.3)

    An RRSIG by a key tag that is not in the zone's DNSKEY set is plain "DNSSEC Bogus"
    (EDE 6; RFC 8914 keeps 9 for a DS that matches no DNSKEY, which verify_dnskeys
    reports by passing `missing_key_code`): the 2026-05-05 .de signatures were this case.

    Secure as soon as one RRSIG verifies; its ttl_cap is the smaller of the signature's
    remaining life and its original TTL (RFC 4035 5.3.3). Insecure (EDE 1) when every
    RRSIG by the zone uses an algorithm the policy does not validate. Otherwise Bogus
    with the most specific reason found.
    """
    keys = [cast(DNSKEY, k) for k in dnskeys]
    sigs: list[RRSIG] = []
    if rrsigs is not None and rrsigs.name == rrset.name:
        sigs = [
            cast(RRSIG, s)
            for s in rrsigs
            if s.type_covered == rrset.rdtype and s.signer == zone
        ]
    if not sigs:
        return Verdict.bogus(
            EdeCode.RRSIGS_MISSING,
            f"no RRSIG by {_name(zone)} over {_rrset_text(rrset)}",
        )
    attempt = _Attempt()
    for rrsig in sigs:
        if not policy.validates_algorithm(rrsig.algorithm):
            attempt.unsupported.append(rrsig)
            continue
        cap = _check_one(rrset, rrsig, keys, zone, now, policy, budget, attempt,
                         missing_key_code)
        if cap is not None:
            return Verdict.secure(cap)
        if budget.exhausted:
            break  # nothing more may be tried for this question
    best = attempt.best()
    if best is None:
        algs = ", ".join(sorted({_alg(s.algorithm) for s in attempt.unsupported}))
        return Verdict.insecure(Ede(
            EdeCode.UNSUPPORTED_DNSKEY_ALGORITHM,
            f"{_rrset_text(rrset)} in {_name(zone)} is signed only with unsupported"
            f" algorithms ({algs})",
        ))
    return Verdict.bogus(best.code, best.text)


# DS digest types (RFC 4034 5.1.4, RFC 4509, RFC 6605): the ones dnspython's make_ds
# computes. Hashed here directly: make_ds also recomputes the key tag and builds a DS
# rdata to compare, which cost more than the hash itself (a tenth of a cold name's CPU).
_DS_HASHES: dict[int, Callable[[bytes], Any]] = {
    DSDigest.SHA1: hashlib.sha1, DSDigest.SHA256: hashlib.sha256, DSDigest.SHA384: hashlib.sha384}


def _ds_matches(ds: DS, key: DNSKEY, zone: dns.name.Name) -> bool:
    """Does `ds` name `key` (RFC 4034 5.1.4: digest over owner name | DNSKEY rdata)?"""
    if ds.key_tag != key_tag(key) or ds.algorithm != key.algorithm:
        return False
    make = _DS_HASHES.get(int(ds.digest_type))
    if make is None:
        return False  # a digest type nobody here computes names no key
    digest = make(zone.to_digestable())  # lowercased, uncompressed
    digest.update(struct.pack("!HBB", key.flags, key.protocol, key.algorithm))
    digest.update(key.key)
    return bool(digest.digest() == ds.digest)


def _tags(records: Iterable[DS | DNSKEY]) -> str:
    tags = sorted({r.key_tag if isinstance(r, DS) else key_tag(r) for r in records})
    return ", ".join(str(t) for t in tags)


def verify_dnskeys(
    dnskeys: dns.rrset.RRset,
    rrsigs: dns.rrset.RRset | None,
    ds: dns.rrset.RRset | None,
    anchor_keys: dns.rrset.RRset | None,
    zone: dns.name.Name,
    now: float,
    policy: ValidatorPolicy,
    budget: WorkBudget,
) -> Verdict:
    """Is the DNSKEY set of `zone` trusted? (RFC 4035 5.2, RFC 6840 5.11)

    Trust comes from a DS set (the parent's, already validated) or a configured anchor
    (DS or DNSKEY records): a key that one of them names must sign the DNSKEY set. DS
    records with an algorithm or digest type the policy does not validate are ignored;
    when nothing is left the zone is Insecure (EDE 1 or 2). An unsupported algorithm
    beside a supported one opens no downgrade: the supported one must then verify.
    """
    ds_records: list[DS] = []
    anchor_dnskeys: list[DNSKEY] = []
    for trusted in (ds, anchor_keys):
        if trusted is None:
            continue
        if trusted.rdtype == dns.rdatatype.DS:
            ds_records.extend(cast(DS, r) for r in trusted)
        elif trusted.rdtype == dns.rdatatype.DNSKEY:
            anchor_dnskeys.extend(cast(DNSKEY, r) for r in trusted)
    if not ds_records and not anchor_dnskeys:
        # No trust source at all: nothing can make this zone secure. The caller proves
        # the absence of DS before it gets here, so this is the insecure delegation case.
        return Verdict.insecure()

    by_alg = [d for d in ds_records if policy.validates_algorithm(d.algorithm)]
    usable_ds = [d for d in by_alg if policy.validates_digest(d.digest_type)]
    usable_anchor_keys = [k for k in anchor_dnskeys if policy.validates_algorithm(k.algorithm)]
    if not usable_ds and not usable_anchor_keys:
        if ds_records and by_alg:
            digests = ", ".join(sorted({str(d.digest_type) for d in by_alg}))
            return Verdict.insecure(Ede(
                EdeCode.UNSUPPORTED_DS_DIGEST_TYPE,
                f"DS for {_name(zone)} uses only unsupported digest types ({digests})",
            ))
        found = {int(d.algorithm) for d in ds_records} | {int(k.algorithm) for k in anchor_dnskeys}
        algs = ", ".join(_alg(a) for a in sorted(found))
        return Verdict.insecure(Ede(
            EdeCode.UNSUPPORTED_DNSKEY_ALGORITHM,
            f"DS and trust anchors for {_name(zone)} use only unsupported algorithms ({algs})",
        ))

    zone_keys = [cast(DNSKEY, k) for k in dnskeys]
    entry_keys: list[DNSKEY] = []
    for d in usable_ds:
        # Hashing is cheap but a key-tag flood must not make it quadratic either.
        same_tag = [k for k in zone_keys if key_tag(k) == d.key_tag]
        for key in same_tag[: budget.max_key_tag_collisions]:
            if key not in entry_keys and key.flags & 0x0100 and _ds_matches(d, key, zone):
                entry_keys.append(key)
    for anchor in usable_anchor_keys:
        for key in zone_keys:
            same = (key.algorithm == anchor.algorithm and key.key == anchor.key
                    and key.protocol == anchor.protocol)
            if same and key not in entry_keys:
                entry_keys.append(key)
    if not entry_keys:
        source = "the DS" if usable_ds else "the trust anchor"
        tags = _tags([*usable_ds, *usable_anchor_keys])
        return Verdict.bogus(
            EdeCode.DNSKEY_MISSING,
            f"no DNSKEY of {_name(zone)} matches {source} (key tags {tags})",
        )
    verdict = verify_rrset(dnskeys, rrsigs, entry_keys, zone, now, policy, budget,
                           missing_key_code=EdeCode.DNSKEY_MISSING)
    if verdict.security is Security.INSECURE:
        # Entry keys are all of validated algorithms, so this cannot happen; were it to,
        # a matched DS without a usable signature is a broken chain, not an insecure one.
        return Verdict.bogus(
            EdeCode.DNSSEC_BOGUS,
            f"DNSKEY set of {_name(zone)} is not signed by a key the DS names"
            f" (key tags {_tags(entry_keys)})",
        )
    if verdict.is_bogus and verdict.edes and verdict.edes[0].code is EdeCode.DNSKEY_MISSING:
        return Verdict.bogus(
            EdeCode.DNSKEY_MISSING,
            f"DNSKEY set of {_name(zone)} has no RRSIG by a key the DS or anchor names"
            f" (key tags {_tags(entry_keys)})",
        )
    return verdict
