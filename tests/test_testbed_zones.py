"""Zone building without sockets: algorithms, TTL cap, reuse of the on-disk cache."""

from __future__ import annotations

import time
from pathlib import Path

import dns.dnssec
import dns.name
import dns.rdatatype
import dns.rrset
import pytest

from anchord.testbed.zones import (
    TestbedSpec,
    build_hierarchy,
    load_or_build,
    zone_path,
)

NOW = 1_780_000_000.0  # a fixed clock: zones.py never reads the wall clock


def _validate_zone(records: dict, origin: dns.name.Name, now: float) -> int:
    """Check every RRSIG in a zone against its apex DNSKEY set; return how many."""
    keys = records[(origin, int(dns.rdatatype.DNSKEY), 0)]
    keyset = {origin: keys}
    checked = 0
    for (name, rdtype, covers), rds in records.items():
        if rdtype != dns.rdatatype.RRSIG:
            continue
        data = records[(name, covers, 0)]
        dns.dnssec.validate((name, data), (name, rds), keyset, now=now)
        checked += 1
    return checked


@pytest.mark.parametrize("algorithm", [8, 13, 15])
def test_zone_signed_with_requested_algorithm_validates(algorithm: int) -> None:
    spec = TestbedSpec(children=2, algorithms=(("c1.de.", algorithm),))
    h = build_hierarchy(spec, NOW)
    origin = dns.name.from_text("c1.de.")
    zone = h.zones[origin]
    assert zone.algorithm == algorithm
    assert _validate_zone(zone.records, origin, NOW) >= 5
    # The DS in de points at that key.
    de = h.zones[dns.name.from_text("de.")]
    ds = de.records[(origin, int(dns.rdatatype.DS), 0)][0]
    assert ds.algorithm == algorithm and ds.digest_type == 2


def test_max_ttl_caps_every_ttl() -> None:
    h = build_hierarchy(TestbedSpec(children=2, max_ttl=60), NOW)
    for zone in h.zones.values():
        for rds in zone.records.values():
            assert rds.ttl <= 60
        soa = zone.records[(zone.origin, int(dns.rdatatype.SOA), 0)][0]
        assert soa.minimum <= 60


def test_signatures_follow_the_clock_passed_in() -> None:
    h = build_hierarchy(TestbedSpec(children=1), NOW)
    root = h.zones[dns.name.root]
    sig = root.records[(dns.name.root, int(dns.rdatatype.RRSIG), int(dns.rdatatype.SOA))][0]
    assert sig.inception == int(NOW) - 3600 and sig.expiration == int(NOW) + 30 * 86400
    expired = h.zones[dns.name.from_text("expired.de.")]
    key = (dns.name.from_text("www.expired.de."), int(dns.rdatatype.RRSIG), 1)
    assert expired.records[key][0].expiration < NOW


def test_build_is_deterministic() -> None:
    a = build_hierarchy(TestbedSpec(children=3), NOW)
    b = build_hierarchy(TestbedSpec(children=3), NOW)
    assert a.trust_anchor == b.trust_anchor
    de = dns.name.from_text("de.")
    assert a.zones[de].to_text() == b.zones[de].to_text()


def test_disk_cache_reused_when_spec_matches(tmp_path: Path) -> None:
    spec = TestbedSpec(children=4)
    first = load_or_build(spec, NOW, tmp_path)
    stamp = zone_path(tmp_path, dns.name.from_text("c3.de.")).stat().st_mtime_ns
    time.sleep(0.01)
    again = load_or_build(spec, NOW + 600, tmp_path)
    assert again.now == first.now and again.trust_anchor == first.trust_anchor
    assert zone_path(tmp_path, dns.name.from_text("c3.de.")).stat().st_mtime_ns == stamp
    child = again.zone(dns.name.from_text("c3.de."))
    assert child is not None and _validate_zone(child.records, child.origin, NOW) >= 5
    rebuilt = load_or_build(TestbedSpec(children=5), NOW, tmp_path)
    assert rebuilt.zone(dns.name.from_text("c4.de.")) is not None


@pytest.mark.parametrize("index", [65535, 65536, 99_999, 999_999])
def test_children_past_65535_get_valid_distinct_addresses(index: int) -> None:
    """100,000 children must work: c65536.de broke an AAAA of one 16-bit group."""
    from anchord.testbed.zones import build_child

    zone, _ = build_child(TestbedSpec(children=index + 1), index, NOW)
    www = dns.name.from_text(f"www.c{index}.de.")
    (aaaa,) = zone.records[(www, int(dns.rdatatype.AAAA), 0)]
    assert int.from_bytes(aaaa.to_digestable()[-4:], "big") == index
