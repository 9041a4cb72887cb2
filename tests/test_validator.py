"""The validation primitives against hand-signed RRsets, with an explicit `now`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import dns.dnssec
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from dns.rdtypes.ANY.DNSKEY import DNSKEY
from dns.rdtypes.ANY.RRSIG import RRSIG

from anchord.core.limits import WorkBudget
from anchord.core.outcome import EdeCode, Security, Verdict
from anchord.core.validator import (
    ValidatorPolicy,
    dsa_verify,
    serial_time,
    verify_dnskeys,
    verify_rrset,
    wildcard_expansion,
)

ZONE = dns.name.from_text("bogus.de.")
WWW = dns.name.from_text("www.bogus.de.")
INCEPTION = 1_778_000_000  # 2026-05-05, the .de event
EXPIRATION = INCEPTION + 14 * 86400
NOW = INCEPTION + 86400
DAY = 86400
POLICY = ValidatorPolicy()


@dataclass
class Key:
    private: Any
    dnskey: DNSKEY

    @property
    def tag(self) -> int:
        return dns.dnssec.key_id(self.dnskey)


def make_key(algorithm: int = 13, flags: int = 256) -> Key:
    private: Any
    if algorithm == 13:
        private = ec.generate_private_key(ec.SECP256R1())
    elif algorithm == 14:
        private = ec.generate_private_key(ec.SECP384R1())
    elif algorithm in (8, 10):
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif algorithm == 15:
        private = ed25519.Ed25519PrivateKey.generate()
    elif algorithm == 16:
        private = ed448.Ed448PrivateKey.generate()
    else:
        raise ValueError(algorithm)
    dnskey = dns.dnssec.make_dnskey(private.public_key(), algorithm, flags=flags)
    return Key(private, dnskey)


ZSK = make_key(13)
KSK = make_key(13, flags=257)


def rrset_a(name: dns.name.Name = WWW, ttl: int = 3600) -> dns.rrset.RRset:
    return dns.rrset.from_text(name, ttl, "IN", "A", "192.0.2.1", "192.0.2.2")


def sign(
    rrset: dns.rrset.RRset,
    key: Key,
    inception: int = INCEPTION,
    expiration: int = EXPIRATION,
    signer: dns.name.Name = ZONE,
) -> RRSIG:
    return dns.dnssec.sign(rrset, key.private, signer, key.dnskey, inception, expiration,
                           policy=dns.dnssec.allow_all_policy)


def sigset(rrset: dns.rrset.RRset, *sigs: RRSIG) -> dns.rrset.RRset:
    out = dns.rrset.RRset(rrset.name, dns.rdataclass.IN, dns.rdatatype.RRSIG,
                          dns.rdatatype.A if not sigs else sigs[0].type_covered)
    out.update_ttl(rrset.ttl)
    for sig in sigs:
        out.add(sig)
    return out


def keyset(*keys: Key | DNSKEY, name: dns.name.Name = ZONE) -> dns.rrset.RRset:
    out = dns.rrset.RRset(name, dns.rdataclass.IN, dns.rdatatype.DNSKEY)
    out.update_ttl(3600)
    for key in keys:
        out.add(key.dnskey if isinstance(key, Key) else key)
    return out


def corrupt(sig: RRSIG) -> RRSIG:
    flipped = bytes([sig.signature[0] ^ 0xFF]) + sig.signature[1:]
    return cast(RRSIG, sig.replace(signature=flipped))


def check(rrset: dns.rrset.RRset, *sigs: RRSIG, now: float = NOW,
          keys: dns.rrset.RRset | None = None,
          policy: ValidatorPolicy = POLICY) -> Verdict:
    return verify_rrset(rrset, sigset(rrset, *sigs) if sigs else None,
                        keys if keys is not None else keyset(ZSK, KSK),
                        ZONE, now, policy, WorkBudget())


def code(verdict: Verdict) -> EdeCode:
    assert verdict.edes, verdict
    return verdict.edes[0].code


# --- verify_rrset -------------------------------------------------------------------


# RFC 8624 3.1: RSASHA256, RSASHA512, ECDSA P-256 and P-384, Ed25519, Ed448.
VALIDATED_ALGORITHMS = [13, 8, 15, 10, 14, 16]


@pytest.mark.parametrize("algorithm", VALIDATED_ALGORITHMS)
def test_rfc4035_good_signature_is_secure(algorithm: int) -> None:
    key = make_key(algorithm)
    rrset = rrset_a()
    verdict = check(rrset, sign(rrset, key), keys=keyset(key))
    assert verdict.security is Security.SECURE
    assert verdict.edes == ()


@pytest.mark.parametrize("algorithm", VALIDATED_ALGORITHMS)
def test_rfc4035_corrupted_signature_is_bogus_with_ede6_for_every_algorithm(
        algorithm: int) -> None:
    key = make_key(algorithm)
    rrset = rrset_a()
    verdict = check(rrset, corrupt(sign(rrset, key)), keys=keyset(key))
    assert verdict.security is Security.BOGUS
    assert code(verdict) == EdeCode.DNSSEC_BOGUS
    assert f"alg {algorithm}" in verdict.edes[0].text


def test_rfc4035_corrupted_signature_is_bogus_with_ede6_naming_key_tag() -> None:
    rrset = rrset_a()
    verdict = check(rrset, corrupt(sign(rrset, ZSK)))
    assert verdict.security is Security.BOGUS
    assert code(verdict) is EdeCode.DNSSEC_BOGUS
    text = verdict.edes[0].text
    assert f"key tag {ZSK.tag}" in text
    assert "www.bogus.de/A" in text and "alg 13" in text and "does not verify" in text


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (EXPIRATION + 30 * DAY, EdeCode.SIGNATURE_EXPIRED),
        (INCEPTION - 7 * DAY, EdeCode.SIGNATURE_NOT_YET_VALID),
    ],
    ids=["rfc4035_expired_rrsig_is_bogus_with_ede7",
         "rfc4035_not_yet_valid_rrsig_is_bogus_with_ede8"],
)
def test_rfc4035_rrsig_outside_validity_window(now: int, expected: EdeCode) -> None:
    rrset = rrset_a()
    verdict = check(rrset, sign(rrset, ZSK), now=now)
    assert verdict.security is Security.BOGUS
    assert code(verdict) is expected
    assert str(ZSK.tag) in verdict.edes[0].text


@pytest.mark.parametrize("now", [INCEPTION, EXPIRATION])
def test_rfc4035_validity_window_ends_are_inclusive(now: int) -> None:
    rrset = rrset_a()
    assert check(rrset, sign(rrset, ZSK), now=now).is_secure


def test_clock_skew_widens_the_window() -> None:
    rrset = rrset_a()
    sig = sign(rrset, ZSK)
    skewed = ValidatorPolicy(clock_skew=300)
    assert check(rrset, sig, now=EXPIRATION + 200, policy=skewed).is_secure
    assert check(rrset, sig, now=INCEPTION - 200, policy=skewed).is_secure
    assert code(check(rrset, sig, now=EXPIRATION + 400, policy=skewed)) is (
        EdeCode.SIGNATURE_EXPIRED)


def test_rfc8914_rrsig_expiring_before_inception_is_bogus_with_ede25() -> None:
    rrset = rrset_a()
    verdict = check(rrset, sign(rrset, ZSK, EXPIRATION, INCEPTION), now=NOW)
    assert code(verdict) is EdeCode.SIGNATURE_EXPIRED_BEFORE_VALID


def test_rfc4034_3_1_5_signature_times_are_serial_numbers() -> None:
    now = 2**32 - 100  # just before the 2106 wrap
    assert serial_time(2**32 - 200, now) == 2**32 - 200
    assert serial_time(50, now) == 2**32 + 50  # after the wrap, not in 1970
    assert serial_time(INCEPTION, NOW) == INCEPTION


def test_rfc4035_one_expired_and_one_good_rrsig_is_secure() -> None:
    rrset = rrset_a()
    old = sign(rrset, KSK, INCEPTION - 60 * DAY, INCEPTION - 30 * DAY)
    good = sign(rrset, ZSK)
    assert check(rrset, old, good).is_secure
    assert check(rrset, good, old).is_secure


def test_rfc4035_5_3_3_ttl_cap_is_remaining_signature_life() -> None:
    rrset = rrset_a(ttl=3600)
    verdict = check(rrset, sign(rrset, ZSK), now=EXPIRATION - 600)
    assert verdict.is_secure and verdict.ttl_cap == 600


def test_rfc4035_5_3_3_ttl_cap_is_at_most_original_ttl() -> None:
    rrset = rrset_a(ttl=300)
    assert check(rrset, sign(rrset, ZSK)).ttl_cap == 300


def test_rfc4035_missing_rrsig_is_bogus_with_ede10() -> None:
    verdict = check(rrset_a())
    assert verdict.is_bogus and code(verdict) is EdeCode.RRSIGS_MISSING
    assert "www.bogus.de/A" in verdict.edes[0].text


def test_rfc4035_rrsig_by_another_zone_counts_as_missing_ede10() -> None:
    rrset = rrset_a()
    sig = sign(rrset, ZSK, signer=dns.name.from_text("de."))
    assert code(check(rrset, sig)) is EdeCode.RRSIGS_MISSING


def test_rfc8914_rrsig_by_key_not_in_dnskey_set_is_bogus_with_ede6() -> None:
    rrset = rrset_a()
    stranger = make_key(13)
    verdict = check(rrset, sign(rrset, stranger))
    assert verdict.is_bogus and code(verdict) is EdeCode.DNSSEC_BOGUS
    assert str(stranger.tag) in verdict.edes[0].text


def test_rfc4034_3_1_3_labels_above_owner_count_is_bogus() -> None:
    rrset = rrset_a()
    sig = sign(rrset, ZSK)
    verdict = check(rrset, cast(RRSIG, sig.replace(labels=5)))
    assert verdict.is_bogus and code(verdict) is EdeCode.DNSSEC_BOGUS
    assert "labels" in verdict.edes[0].text


def test_rfc8624_rrsig_with_unvalidated_algorithm_is_insecure_with_ede1() -> None:
    rrset = rrset_a()
    only_rsa = ValidatorPolicy(algorithms=frozenset({8}))
    verdict = check(rrset, sign(rrset, ZSK), policy=only_rsa)
    assert verdict.security is Security.INSECURE
    assert code(verdict) is EdeCode.UNSUPPORTED_DNSKEY_ALGORITHM


def test_rfc8624_default_policy_validates_rsasha1_and_permissive_adds_dsa() -> None:
    assert 5 in POLICY.algorithms and 7 in POLICY.algorithms
    assert 3 not in POLICY.algorithms and 1 not in POLICY.algorithms
    assert {1, 3, 6} <= ValidatorPolicy.permissive().algorithms


def test_wildcard_synthesised_answer_reports_closest_encloser() -> None:
    wild = dns.name.from_text("*.bogus.de.")
    source = rrset_a(wild)
    sig = sign(source, ZSK)  # labels = 2
    expanded = rrset_a(dns.name.from_text("a.b.bogus.de."))
    assert wildcard_expansion(expanded.name, sig) == ZONE
    assert wildcard_expansion(wild, sig) is None
    assert wildcard_expansion(WWW, sign(rrset_a(), ZSK)) is None
    # the expanded answer verifies: dnspython rebuilds the '*' owner from labels
    assert check(expanded, sig).is_secure


def test_keytrap_colliding_key_tags_hit_the_work_limit() -> None:
    # 50 DNSKEYs sharing one key tag: bump one high byte up and another down, which
    # keeps the RFC 4034 appendix B checksum (the key tag) unchanged.
    base = ZSK.dnskey
    keys: list[DNSKEY] = []
    for i in range(50):
        raw = bytearray(base.key)
        raw[2 + 2 * (i % 20)] = (raw[2 + 2 * (i % 20)] + 1 + i // 20) % 256
        raw[0] = (raw[0] - 1 - i // 20) % 256
        key = cast(DNSKEY, base.replace(key=bytes(raw)))
        if dns.dnssec.key_id(key) == ZSK.tag and key not in keys:
            keys.append(key)
    assert len(keys) >= 40
    rrset = rrset_a()
    good = sign(rrset, ZSK)
    sigs = [cast(RRSIG, good.replace(signature=bytes([i]) + good.signature[1:]))
            for i in range(50)]
    budget = WorkBudget()
    # The work is counted, not timed (a wall-clock bound fails on a loaded machine): 50
    # signatures against 40+ keys would be 2,000+ checks without the budget.
    verdict = verify_rrset(rrset, sigset(rrset, *sigs), keyset(*keys, ZSK), ZONE, NOW,
                           POLICY, budget)
    assert verdict.is_bogus and code(verdict) is EdeCode.DNSSEC_BOGUS
    assert "work limit" in verdict.edes[0].text and "www.bogus.de/A" in verdict.edes[0].text
    assert budget.signature_checks <= budget.max_signature_checks


def test_work_budget_refuses_after_its_limit() -> None:
    budget = WorkBudget(max_signature_checks=2)
    assert budget.charge_signature() and budget.charge_signature()
    assert not budget.charge_signature() and budget.exhausted and budget.remaining == 0


# --- verify_dnskeys -----------------------------------------------------------------


def ds_for(key: Key, digest: str = "SHA256", zone: dns.name.Name = ZONE) -> dns.rdata.Rdata:
    # allow_all: dnspython refuses to *create* SHA-1 DS by default; validating one is fine.
    return dns.dnssec.make_ds(zone, key.dnskey, digest, policy=dns.dnssec.allow_all_policy)


def ds_set(*records: dns.rdata.Rdata | str) -> dns.rrset.RRset:
    out = dns.rrset.RRset(ZONE, dns.rdataclass.IN, dns.rdatatype.DS)
    out.update_ttl(3600)
    for record in records:
        if isinstance(record, str):
            record = dns.rdata.from_text("IN", "DS", record)
        out.add(record)
    return out


def check_keys(ds: dns.rrset.RRset | None, *, sig_key: Key = KSK, broken: bool = False,
               anchor: dns.rrset.RRset | None = None, now: float = NOW) -> Verdict:
    keys = keyset(ZSK, KSK)
    sig = sign(keys, sig_key)
    if broken:
        sig = corrupt(sig)
    return verify_dnskeys(keys, sigset(keys, sig), ds, anchor, ZONE, now, POLICY, WorkBudget())


def test_rfc4035_5_2_dnskey_set_signed_by_ds_key_is_secure() -> None:
    verdict = check_keys(ds_set(ds_for(KSK)))
    assert verdict.is_secure and verdict.ttl_cap == 3600


def test_rfc4035_5_2_sha384_and_sha1_ds_are_accepted() -> None:
    assert check_keys(ds_set(ds_for(KSK, "SHA384"))).is_secure
    assert check_keys(ds_set(ds_for(KSK, "SHA1"))).is_secure


def test_trust_anchor_as_dnskey_is_secure() -> None:
    assert check_keys(None, anchor=keyset(KSK)).is_secure


def test_trust_anchor_as_ds_is_secure() -> None:
    assert check_keys(None, anchor=ds_set(ds_for(KSK))).is_secure


def test_rfc4035_ds_matching_no_dnskey_is_bogus_with_ede9() -> None:
    stranger = make_key(13, flags=257)
    verdict = check_keys(ds_set(ds_for(stranger)))
    assert verdict.is_bogus and code(verdict) is EdeCode.DNSKEY_MISSING
    assert verdict.edes[0].text == (
        f"no DNSKEY of bogus.de matches the DS (key tags {stranger.tag})")


def test_rfc4035_ds_with_wrong_digest_is_bogus_with_ede9() -> None:
    real = ds_for(KSK)
    fake = real.replace(digest=bytes(len(real.digest)))  # type: ignore[attr-defined]
    assert code(check_keys(ds_set(fake))) is EdeCode.DNSKEY_MISSING


def test_rfc4035_dnskey_set_signed_only_by_other_key_is_bogus_with_ede9() -> None:
    verdict = check_keys(ds_set(ds_for(KSK)), sig_key=ZSK)
    assert verdict.is_bogus and code(verdict) is EdeCode.DNSKEY_MISSING


@pytest.mark.parametrize(
    ("now", "expected"),
    [(EXPIRATION + 30 * DAY, EdeCode.SIGNATURE_EXPIRED),
     (INCEPTION - 7 * DAY, EdeCode.SIGNATURE_NOT_YET_VALID)],
)
def test_rfc4035_5_2_dnskey_rrsig_outside_window_is_bogus(now: int, expected: EdeCode) -> None:
    assert code(check_keys(ds_set(ds_for(KSK)), now=now)) is expected


def test_rfc4035_5_2_dnskey_set_without_rrsig_is_bogus_with_ede10() -> None:
    keys = keyset(ZSK, KSK)
    verdict = verify_dnskeys(keys, None, ds_set(ds_for(KSK)), None, ZONE, NOW, POLICY,
                             WorkBudget())
    assert code(verdict) is EdeCode.RRSIGS_MISSING


def test_rfc4035_5_2_broken_dnskey_signature_is_bogus_with_ede6() -> None:
    verdict = check_keys(ds_set(ds_for(KSK)), broken=True)
    assert verdict.is_bogus and code(verdict) is EdeCode.DNSSEC_BOGUS
    assert str(KSK.tag) in verdict.edes[0].text


def test_rfc8624_ds_with_only_unsupported_algorithm_is_insecure_not_bogus() -> None:
    verdict = check_keys(ds_set(f"{KSK.tag} 3 2 {'ab' * 32}"))
    assert verdict.security is Security.INSECURE
    assert code(verdict) is EdeCode.UNSUPPORTED_DNSKEY_ALGORITHM


def test_rfc4035_ds_with_only_unknown_digest_type_is_insecure_with_ede2() -> None:
    verdict = check_keys(ds_set(f"{KSK.tag} 13 200 {'ab' * 32}"))
    assert verdict.security is Security.INSECURE
    assert code(verdict) is EdeCode.UNSUPPORTED_DS_DIGEST_TYPE


def test_rfc6840_5_11_unsupported_ds_algorithm_beside_broken_supported_one_is_bogus() -> None:
    ds = ds_set(f"{KSK.tag} 3 2 {'ab' * 32}", ds_for(KSK))
    verdict = check_keys(ds, broken=True)
    assert verdict.security is Security.BOGUS
    assert code(verdict) is EdeCode.DNSSEC_BOGUS


def test_rfc6840_5_11_any_one_supported_ds_algorithm_suffices() -> None:
    other = make_key(15, flags=257)
    keys = keyset(ZSK, KSK, other)
    ds = ds_set(ds_for(KSK), ds_for(other))
    sigs = sigset(keys, corrupt(sign(keys, KSK)), sign(keys, other))
    assert verify_dnskeys(keys, sigs, ds, None, ZONE, NOW, POLICY, WorkBudget()).is_secure


@pytest.mark.parametrize("module", ["validator", "denial", "limits"])
def test_validation_primitives_import_no_io_or_clock(module: str) -> None:
    import ast
    import pathlib

    import anchord.core

    source = pathlib.Path(anchord.core.__file__).parent / f"{module}.py"
    banned = {"asyncio", "socket", "time", "random", "threading"}
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.Import):
            assert not {a.name.split(".")[0] for a in node.names} & banned
        elif isinstance(node, ast.ImportFrom):
            assert (node.module or "").split(".")[0] not in banned


# --- DSA (permissive policy, old scenario zones) ---------------------------------------

# From Unbound's testdata/val_wild_pos.rpl (BSD-3-Clause, NLnet Labs): a DSA key with
# T = 0 (512-bit prime, which `cryptography` refuses) and a DER-encoded signature.
_DSA_ZONE = dns.name.from_text("example.com.")
_DSA_KEYS = dns.rrset.from_text(
    _DSA_ZONE, 3600, "IN", "DNSKEY",
    "256 3 3 ALXLUsWqUrY3JYER3T4TBJIIs70j+sDS /UT2QRp61SE7S3EEXopNXoFE73JLRmvp"
    " i/UrOO/Vz4Se6wXv/CYCKjGw06U4WRgR YXcpEhJROyNapmdIKSxhOzfLVE1gqA0P"
    " weZR8dtY3aNQSRn3sPpwJr6Mi/PqQKAM MrZ9ckJpf1+bQMOOvxgzz2U1GS18b3yZ"
    " KcgTMEaJzd/GZYzi/BN2DzQ0MsrSwYXf sNLFOBbs8PJMW4LYIxeeOe6rUgkWOF7C"
    " C9Dh/dduQ1QrsJhmZAEFfd6ByYV+",
)
_DSA_SIG = dns.rrset.from_text(
    _DSA_ZONE, 3600, "IN", "RRSIG",
    "DNSKEY 3 2 3600 20070926134802 20070829134802 2854 example.com."
    " MCwCFG1yhRNtTEa3Eno2zhVVuy2EJX3w AhQeLyUp6+UXcpC5qGNu9tkrTEgPUg==",
)
_DSA_NOW = 1_189_950_146  # 2007-09-16 13:42:26, the scenario's val-override-date


def _dsa_check(sigs: dns.rrset.RRset, policy: ValidatorPolicy) -> Verdict:
    return verify_rrset(_DSA_KEYS, sigs, _DSA_KEYS, _DSA_ZONE, _DSA_NOW, policy, WorkBudget())


def test_dsa_512_bit_key_with_der_signature_verifies_under_permissive_policy() -> None:
    assert _dsa_check(_DSA_SIG, ValidatorPolicy.permissive()).security is Security.SECURE


def test_dsa_is_not_validated_by_the_default_policy() -> None:
    assert _dsa_check(_DSA_SIG, POLICY).security is Security.INSECURE


def test_dsa_tampered_signature_or_data_is_bogus() -> None:
    sig = cast(RRSIG, _DSA_SIG[0])
    raw = bytearray(sig.signature)
    raw[10] ^= 0x01
    bad = dns.rrset.from_rdata(_DSA_ZONE, 3600, sig.replace(signature=bytes(raw)))
    assert code(_dsa_check(bad, ValidatorPolicy.permissive())) is EdeCode.DNSSEC_BOGUS
    r, s = decode_dss_signature(bytes(sig.signature))
    plain = bytes([0]) + r.to_bytes(20, "big") + s.to_bytes(20, "big")
    assert dsa_verify(_DSA_KEYS, cast(RRSIG, sig.replace(signature=plain)),
                      cast(DNSKEY, _DSA_KEYS[0]))
    other = dns.rrset.from_text(_DSA_ZONE, 3600, "IN", "A", "192.0.2.1")
    assert not dsa_verify(other, cast(RRSIG, sig.replace(type_covered=dns.rdatatype.A)),
                          cast(DNSKEY, _DSA_KEYS[0]))
