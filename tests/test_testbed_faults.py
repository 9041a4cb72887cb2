"""Run-time faults on a running testbed, through the real `anchord testbed fault` CLI."""

from __future__ import annotations

import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dns.dnssec
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from anchord.testbed.command import Testbed, TestbedError
from anchord.testbed.faults import FaultState, _handle_line
from anchord.testbed.zones import TestbedSpec
from tests.requirements import require_tools

_tools = require_tools("dig")

DE, CHILD = "127.53.1.1", "127.53.3.1"
# The real CLI, run the way an operator runs it.
ANCHORD = [sys.executable, "-c", "from anchord.cli import main; main()"]


@pytest.fixture(scope="module")
def testbed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    directory = tmp_path_factory.mktemp("testbed-faults")
    for _ in range(20):
        port = random.randint(20000, 60000)
        try:
            tb = Testbed(TestbedSpec(children=5), directory, now=time.time(), port=port).start()
            break
        except TestbedError:
            continue
    else:
        pytest.fail("no free port")
    yield tb
    tb.stop()


def query(tb: Testbed, server: str, name: str, rdtype: str) -> dns.message.Message | None:
    q = dns.message.make_query(name, rdtype, want_dnssec=True)
    q.flags &= ~dns.flags.RD
    try:
        return dns.query.udp(q, server, port=tb.port, timeout=0.5)
    except dns.exception.Timeout:
        return None


def fault(tb: Testbed, zone: str, kind: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ANCHORD, "testbed", "fault", "--dir", str(tb.directory), zone, kind],
        capture_output=True,
        text=True,
        timeout=30,
    )


def _validates(tb: Testbed, server: str, zone: str, name: str, rdtype: str) -> bool:
    keys = query(tb, server, zone, "DNSKEY")
    answer = query(tb, server, name, rdtype)
    assert keys is not None and answer is not None
    keyset = keys.find_rrset(keys.answer, dns.name.from_text(zone), 1, dns.rdatatype.DNSKEY)
    qname = dns.name.from_text(name)
    rrset = answer.find_rrset(answer.answer, qname, 1, dns.rdatatype.from_text(rdtype))
    sigs = answer.find_rrset(
        answer.answer, qname, 1, dns.rdatatype.RRSIG, dns.rdatatype.from_text(rdtype)
    )
    try:
        dns.dnssec.validate(rrset, sigs, {dns.name.from_text(zone): keyset})
    except dns.dnssec.ValidationFailure:
        return False
    return True


def test_servfail_unreachable_and_repair_change_answers(testbed: Testbed) -> None:
    assert fault(testbed, "c1.de", "servfail").returncode == 0
    r = query(testbed, CHILD, "www.c1.de", "A")
    assert r is not None and r.rcode() == dns.rcode.SERVFAIL
    assert fault(testbed, "c1.de", "unreachable").returncode == 0
    assert query(testbed, CHILD, "www.c1.de", "A") is None
    r = query(testbed, CHILD, "www.c2.de", "A")  # other zones on the same address still work
    assert r is not None and r.rcode() == dns.rcode.NOERROR
    assert fault(testbed, "c1.de", "repair").returncode == 0
    r = query(testbed, CHILD, "www.c1.de", "A")
    assert r is not None and r.rcode() == dns.rcode.NOERROR and r.answer


def test_rollover_breaks_signatures_but_keeps_dnskey_set(testbed: Testbed) -> None:
    assert _validates(testbed, DE, "de.", "c0.de.", "DS")
    before = query(testbed, DE, "de.", "DNSKEY")
    out = fault(testbed, "de", "rollover")
    assert out.returncode == 0, out.stderr
    after = query(testbed, DE, "de.", "DNSKEY")
    assert before is not None and after is not None
    assert before.answer[0] == after.answer[0]  # same key set
    assert _validates(testbed, DE, "de.", "de.", "DNSKEY")  # the key set still self-signs
    assert not _validates(testbed, DE, "de.", "c0.de.", "DS")
    nx = query(testbed, DE, "nothere.de.", "A")
    assert nx is not None
    tags = {r[0].key_tag for r in nx.authority if r.rdtype == dns.rdatatype.RRSIG}
    assert dns.dnssec.key_id(after.answer[0][0]) not in tags  # NSEC3 and SOA re-signed too
    assert fault(testbed, "de", "repair").returncode == 0
    assert _validates(testbed, DE, "de.", "c0.de.", "DS")


def test_nsec3_rollover_breaks_only_the_nsec3_signatures(testbed: Testbed) -> None:
    out = fault(testbed, "de", "nsec3-rollover")
    assert out.returncode == 0, out.stderr
    keys = query(testbed, DE, "de.", "DNSKEY")
    nx = query(testbed, DE, "nothere.de.", "A")
    assert keys is not None and nx is not None
    tag = dns.dnssec.key_id(keys.answer[0][0])
    assert _validates(testbed, DE, "de.", "de.", "DNSKEY")
    assert _validates(testbed, DE, "de.", "c0.de.", "DS")  # DS keeps the zone's signature
    sig_tags = {r.covers: r[0].key_tag for r in nx.authority if r.rdtype == dns.rdatatype.RRSIG}
    assert sig_tags[dns.rdatatype.SOA] == tag
    assert sig_tags[dns.rdatatype.NSEC3] != tag  # only NSEC3 by the key not in the set
    assert fault(testbed, "de", "repair").returncode == 0
    nx = query(testbed, DE, "nothere.de.", "A")
    assert nx is not None
    assert {r[0].key_tag for r in nx.authority if r.rdtype == dns.rdatatype.RRSIG} == {tag}


def test_fault_on_unknown_zone_is_a_one_line_error(testbed: Testbed) -> None:
    out = fault(testbed, "nosuch.de", "servfail")
    assert out.returncode == 1 and "not a zone" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("zone", ["", "  "])
def test_empty_zone_is_refused_not_taken_as_the_root(testbed: Testbed, zone: str) -> None:
    out = fault(testbed, zone, "servfail")
    assert out.returncode == 1 and "empty zone name" in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert testbed.faults is not None and testbed.faults.active() == {}
    # The control socket itself refuses it too (other clients than the CLI).
    state = FaultState(testbed.spec, testbed.now)  # not the shared testbed's
    reply = _handle_line(b'{"zone": "", "kind": "servfail"}', state, lambda z: True)
    assert reply["ok"] is False and "empty zone name" in str(reply["error"])
    assert state.active() == {}


def test_fault_without_running_testbed(tmp_path: Path) -> None:
    out = subprocess.run(
        [*ANCHORD, "testbed", "fault", "--dir", str(tmp_path), "de", "rollover"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 1 and "no testbed running" in out.stderr


def test_port_in_use_gives_one_line_error(testbed: Testbed, tmp_path: Path) -> None:
    out = subprocess.run(
        [
            *ANCHORD,
            "testbed",
            "--dir",
            str(tmp_path),
            "--children",
            "2",
            "--port",
            str(testbed.port),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1
    assert out.stderr.count("\n") == 1 and "cannot listen" in out.stderr
