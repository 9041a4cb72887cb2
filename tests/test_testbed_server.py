"""The embedded testbed, black-box: real sockets, real dig, independent zone verifiers.

One small testbed (20 children) per module; each test names the rule it checks."""

from __future__ import annotations

import random
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.dnssec
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import pytest

from anchord.control.config import load_config
from anchord.testbed.command import Testbed, TestbedError
from anchord.testbed.zones import TestbedSpec
from tests.requirements import require_tools

_tools = require_tools("dig", "ldns-verify-zone", "dnssec-verify")

ROOT, DE, COM, CHILD = "127.53.0.1", "127.53.1.1", "127.53.2.1", "127.53.3.1"


def start_testbed(directory: Path, children: int = 20) -> Testbed:
    """Start on a free port (random, retried: other suites may run testbeds too)."""
    last: Exception | None = None
    for _ in range(20):
        port = random.randint(20000, 60000)
        try:
            tb = Testbed(TestbedSpec(children=children), directory, now=time.time(), port=port)
            return tb.start()
        except TestbedError as e:
            last = e
    raise RuntimeError(f"no free port for the testbed: {last}")


@pytest.fixture(scope="module")
def testbed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    tb = start_testbed(tmp_path_factory.mktemp("testbed"))
    yield tb
    tb.stop()


@dataclass
class Dig:
    status: str
    flags: set[str]
    records: list[tuple[str, str, str, str]]  # (section, owner, type, rdata)

    def section(self, name: str, rdtype: str | None = None) -> list[tuple[str, str, str]]:
        return [
            (o, t, r)
            for s, o, t, r in self.records
            if s == name and (rdtype is None or t == rdtype)
        ]


def dig(tb: Testbed, server: str, qname: str, qtype: str = "A", *extra: str) -> Dig:
    cmd = [
        "dig",
        f"@{server}",
        "-p",
        str(tb.port),
        "+norec",
        "+dnssec",
        "+time=2",
        "+tries=1",
        "+noall",
        "+comments",
        "+answer",
        "+authority",
        "+additional",
        *extra,
        qname,
        qtype,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=True).stdout
    status, flags, section = "", set(), ""
    records: list[tuple[str, str, str, str]] = []
    for line in out.splitlines():
        if "status:" in line:
            status = line.split("status:")[1].split(",")[0].strip()
        elif line.startswith(";; flags:"):
            flags = set(line.split(":")[1].split(";")[0].split())
        elif line.startswith(";; ") and "SECTION:" in line:
            section = line.split()[1]
        elif line and not line.startswith(";"):
            owner, _ttl, _cls, rdtype, rdata = line.split(None, 4)
            records.append((section, owner.lower(), rdtype, rdata))
    return Dig(status, flags, records)


def test_rfc1034_root_refers_to_de_with_signed_ds(testbed: Testbed) -> None:
    r = dig(testbed, ROOT, "www.c0.de")
    assert r.status == "NOERROR" and "aa" not in r.flags and not r.section("ANSWER")
    assert {o for o, _, _ in r.section("AUTHORITY", "NS")} == {"de."}
    assert r.section("AUTHORITY", "DS")
    assert any(rd.startswith("DS ") for _, _, rd in r.section("AUTHORITY", "RRSIG"))
    assert {o for o, _, _ in r.section("ADDITIONAL", "A")} == {"a.nic.de.", "b.nic.de."}


def test_rfc4035_de_refers_to_child_with_ds_and_glue(testbed: Testbed) -> None:
    r = dig(testbed, DE, "www.c0.de")
    assert [o for o, _, _ in r.section("AUTHORITY", "NS")] == ["c0.de."]
    assert r.section("AUTHORITY", "DS") and r.section("AUTHORITY", "RRSIG")
    assert r.section("ADDITIONAL", "A") == [("ns1.c0.de.", "A", CHILD)]


def test_out_of_bailiwick_child_has_no_glue(testbed: Testbed) -> None:
    r = dig(testbed, DE, "www.c7.de")
    assert r.section("AUTHORITY", "NS") == [("c7.de.", "NS", "ns1.hoster.com.")]
    assert not r.section("ADDITIONAL", "A")
    assert dig(testbed, COM, "ns1.hoster.com").section("ANSWER", "A")[0][2] == CHILD


def test_child_answers_authoritatively_with_rrsig(testbed: Testbed) -> None:
    r = dig(testbed, CHILD, "www.c0.de")
    assert "aa" in r.flags and r.status == "NOERROR"
    assert r.section("ANSWER", "A") and r.section("ANSWER", "RRSIG")


def test_rfc4035_rrsig_only_with_do(testbed: Testbed) -> None:
    r = dig(testbed, CHILD, "www.c0.de", "A", "+nodnssec")
    assert r.section("ANSWER", "A") and not r.section("ANSWER", "RRSIG")


def test_rfc5155_nxdomain_under_de_has_three_nsec3_roles(testbed: Testbed) -> None:
    r = dig(testbed, DE, "doesnotexist.de")
    assert r.status == "NXDOMAIN" and "aa" in r.flags
    assert r.section("AUTHORITY", "SOA")
    nsec3 = r.section("AUTHORITY", "NSEC3")
    assert 2 <= len(nsec3) <= 3  # closest encloser, next closer, wildcard (may coincide)
    assert len(r.section("AUTHORITY", "RRSIG")) == len(nsec3) + 1
    # The closest encloser (de.) is proven by an exactly matching NSEC3.
    apex_hash = dns.dnssec.nsec3_hash("de.", b"", 0, 1).lower()
    assert any(o == f"{apex_hash}.de." for o, _, _ in nsec3)


def test_rfc5155_unsigned_delegation_proven_by_matching_nsec3(testbed: Testbed) -> None:
    r = dig(testbed, DE, "unsigned.de", "DS")
    assert r.status == "NOERROR" and not r.section("ANSWER")
    owner = dns.dnssec.nsec3_hash("unsigned.de.", b"", 0, 1).lower() + ".de."
    matches = [rd for o, _, rd in r.section("AUTHORITY", "NSEC3") if o == owner]
    assert len(matches) == 1
    types = matches[0].split()[5:]
    assert "NS" in types and "DS" not in types


def test_rfc5155_optout_delegation_proven_by_optout_span(testbed: Testbed) -> None:
    r = dig(testbed, DE, "optout.de", "DS")
    assert r.status == "NOERROR" and not r.section("ANSWER")
    target = dns.dnssec.nsec3_hash("optout.de.", b"", 0, 1).lower()
    covering = []
    for owner, _, rdata in r.section("AUTHORITY", "NSEC3"):
        _alg, flags, _it, _salt, nxt = rdata.split()[:5]
        start, end = owner.split(".")[0], nxt.lower()
        assert start != target  # optout.de is not in the chain
        inside = start < target < end if start < end else (target > start or target < end)
        if inside:
            covering.append(int(flags))
    assert covering == [1]  # exactly one span covers it, with the opt-out flag


def test_optout_referral_carries_the_no_ds_proof(testbed: Testbed) -> None:
    r = dig(testbed, DE, "www.optout.de")
    assert r.section("AUTHORITY", "NS") and not r.section("AUTHORITY", "DS")
    assert r.section("AUTHORITY", "NSEC3")


def test_rfc4035_wildcard_answer_rrsig_labels_and_proof(testbed: Testbed) -> None:
    r = dig(testbed, CHILD, "a.b.wild.de")
    assert r.section("ANSWER", "A") == [("a.b.wild.de.", "A", "192.0.2.200")]
    (sig,) = r.section("ANSWER", "RRSIG")
    assert sig[2].split()[2] == "2"  # labels of *.wild.de without the '*'
    assert r.section("AUTHORITY", "NSEC")  # the next closer name does not exist


def test_wildcard_nodata(testbed: Testbed) -> None:
    r = dig(testbed, CHILD, "x.wild.de", "AAAA")
    assert r.status == "NOERROR" and not r.section("ANSWER") and r.section("AUTHORITY", "SOA")
    assert r.section("AUTHORITY", "NSEC")


def test_nodata_has_soa_and_nsec(testbed: Testbed) -> None:
    r = dig(testbed, CHILD, "www.c0.de", "MX")
    assert r.status == "NOERROR" and not r.section("ANSWER")
    nsec = r.section("AUTHORITY", "NSEC")
    assert nsec and nsec[0][0] == "www.c0.de." and "MX" not in nsec[0][2]


def test_rrsig_question_answered_with_the_signatures_at_the_name(testbed: Testbed) -> None:
    """As NSD, Knot and BIND answer: every RRSIG at the name, AA, with or without DO (the
    records were asked for by type, RFC 3225), not a NODATA whose NSEC lists RRSIG."""
    for extra in ((), ("+nodnssec",)):
        r = dig(testbed, CHILD, "www.c0.de", "RRSIG", *extra)
        assert r.status == "NOERROR" and "aa" in r.flags, r
        covered = sorted(rd.split()[0] for _, _, rd in r.section("ANSWER", "RRSIG"))
        assert covered == ["A", "AAAA", "NSEC"], r
        assert not r.section("AUTHORITY", "SOA")


def test_rrsig_question_under_a_wildcard_is_expanded_with_its_proof(testbed: Testbed) -> None:
    r = dig(testbed, CHILD, "anything.wild.de", "RRSIG")
    assert r.status == "NOERROR" and "aa" in r.flags
    sigs = r.section("ANSWER", "RRSIG")
    assert {o for o, _, _ in sigs} == {"anything.wild.de."}
    assert "A" in {rd.split()[0] for _, _, rd in sigs}
    assert r.section("AUTHORITY", "NSEC")  # anything.wild.de itself does not exist


def test_rrsig_question_in_an_unsigned_zone_is_nodata(testbed: Testbed) -> None:
    r = dig(testbed, CHILD, "www.unsigned.de", "RRSIG")
    assert r.status == "NOERROR" and not r.section("ANSWER") and r.section("AUTHORITY", "SOA")


def test_rrsig_question_of_a_faulted_zone_gives_the_faulted_signatures(
        testbed: Testbed) -> None:
    """The fault applies to what an RRSIG question returns too, as it does beside data."""
    before = dig(testbed, CHILD, "www.c2.de", "RRSIG").section("ANSWER", "RRSIG")
    testbed.fault("c2.de", "rollover")
    try:
        after = dig(testbed, CHILD, "www.c2.de", "RRSIG").section("ANSWER", "RRSIG")
    finally:
        testbed.fault("c2.de", "repair")
    tags = {rd.split()[6] for _, _, rd in before}
    assert after and not tags & {rd.split()[6] for _, _, rd in after}


def test_cname_chain_followed_inside_zone_only(testbed: Testbed) -> None:
    r = dig(testbed, CHILD, "chain.alias.de")
    assert [t for _, t, _ in r.section("ANSWER") if t != "RRSIG"] == ["CNAME", "A"]
    r = dig(testbed, CHILD, "www.alias.de")
    assert r.section("ANSWER", "CNAME") == [("www.alias.de.", "CNAME", "www.c0.de.")]
    assert not r.section("ANSWER", "A")


def test_ds_query_answered_from_parent_side(testbed: Testbed) -> None:
    r = dig(testbed, DE, "c0.de", "DS")
    assert "aa" in r.flags and r.section("ANSWER", "DS")


def test_refused_outside_hosted_zones(testbed: Testbed) -> None:
    assert dig(testbed, DE, "www.hoster.com").status == "REFUSED"
    assert dig(testbed, CHILD, "www.c0.com").status == "REFUSED"


def test_edns_echo_and_tc_then_tcp(testbed: Testbed) -> None:
    r = dig(testbed, COM, "big.hoster.com", "TXT", "+ignore", "+bufsize=1232")
    assert "tc" in r.flags and not r.section("ANSWER")
    r = dig(testbed, COM, "big.hoster.com", "TXT", "+tcp")
    assert "tc" not in r.flags and len(r.section("ANSWER", "TXT")) == 12


def test_priming_answer_has_root_server_addresses(testbed: Testbed) -> None:
    r = dig(testbed, ROOT, ".", "NS")
    assert "aa" in r.flags and r.section("ANSWER", "NS")
    assert r.section("ADDITIONAL", "A") == [("a.root-servers.", "A", ROOT)]


def test_files_written_and_resolver_config_loads(testbed: Testbed) -> None:
    d = testbed.directory
    names = (d / "names.txt").read_text().split()
    assert "www.c0.de." in names and "www.c19.de." in names
    anchor = (d / "trust-anchor.txt").read_text().strip()
    assert anchor.startswith(". IN DS ")
    tag, alg, digest_type, digest = anchor.split()[3:7]
    assert (d / "delv-anchor.conf").read_text() == (
        f'trust-anchors {{\n  "." static-ds {tag} {alg} {digest_type} "{digest}";\n}};\n')
    assert testbed.info["delv_anchor"] == "delv-anchor.conf"
    cfg = load_config(d / "resolver.toml")
    assert cfg.upstream.port == testbed.port and cfg.dnssec.trust_anchors == [anchor]
    info = testbed.info
    assert info["port"] == testbed.port
    assert {s["address"] for s in info["servers"]} == {ROOT, DE, "127.53.1.2", COM, CHILD}
    assert (d / "zones" / "de.zone").read_text().startswith("$ORIGIN de.")


def _zone_file(tb: Testbed, zone: str) -> Path:
    return tb.directory / "zones" / f"{zone.rstrip('.') or 'root'}.zone"


@pytest.mark.parametrize("zone", ["root", "de", "com", "c0.de", "c7.de", "wild.de", "alias.de"])
def test_signed_zones_verify_with_ldns(testbed: Testbed, zone: str) -> None:
    out = subprocess.run(
        ["ldns-verify-zone", str(_zone_file(testbed, zone))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("zone", ["bogus.de", "expired.de", "notyet.de"])
def test_fault_zones_do_not_verify(testbed: Testbed, zone: str) -> None:
    out = subprocess.run(
        ["ldns-verify-zone", str(_zone_file(testbed, zone))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0


@pytest.mark.parametrize("zone", ["de.", "c0.de."])
def test_signed_zones_verify_with_bind(testbed: Testbed, zone: str) -> None:
    # -z: our zones are signed by one CSK (flags 257), which dnssec-verify calls a KSK.
    out = subprocess.run(
        ["dnssec-verify", "-z", "-o", zone, str(_zone_file(testbed, zone))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr


def test_nokey_ds_matches_no_dnskey(testbed: Testbed) -> None:
    ds = dig(testbed, DE, "nokey.de", "DS").section("ANSWER", "DS")
    keys = dig(testbed, CHILD, "nokey.de", "DNSKEY").section("ANSWER", "DNSKEY")
    assert ds and keys
    ds_tag = int(ds[0][2].split()[0])
    key_rdata = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.DNSKEY, keys[0][2])
    assert dns.dnssec.key_id(key_rdata) != ds_tag  # type: ignore[arg-type]


def test_unsigned_zone_has_no_signatures(testbed: Testbed) -> None:
    r = dig(testbed, CHILD, "www.unsigned.de")
    assert r.section("ANSWER", "A") and not r.section("ANSWER", "RRSIG")
    assert dns.name.from_text("unsigned.de.")  # sanity: the name parses


def test_restart_keeps_an_edited_resolver_toml_and_writes_new(tmp_path: Path) -> None:
    tb = start_testbed(tmp_path, children=3)
    tb.stop()
    config = tmp_path / "resolver.toml"
    generated = config.read_text()
    # Untouched since the testbed wrote it: refreshed in place, nothing to say.
    tb = start_testbed(tmp_path, children=3)
    tb.stop()
    assert tb.resolver_config == config and not tb.config_note
    assert not (tmp_path / "resolver.toml.new").exists()
    # An operator's edit survives a restart; the testbed's own config goes beside it.
    edited = generated.replace("[nta]\n", "[nta]\nrecheck_interval = 60\n")
    config.write_text(edited)
    tb = start_testbed(tmp_path, children=3)
    tb.stop()
    assert config.read_text() == edited
    new = tmp_path / "resolver.toml.new"
    assert tb.resolver_config == new and new.read_text().startswith("# Written by")
    assert "\n" not in tb.config_note and str(new) in tb.config_note
    assert "kept" in tb.config_note
