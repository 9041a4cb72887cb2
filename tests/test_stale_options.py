"""Serve-stale and cache options beyond RFC 8767's defaults (the peers' knobs), in-process.

TTL 0 answers are never stale candidates; cache.serve_original_ttl answers TTLs as
received; serve_stale.extend_on_failure restarts the stale window on a failed refresh;
dnssec.bogus_retries bounds how often bogus data is asked of a zone's other servers.
"""

from __future__ import annotations

import asyncio

import dns.name
import dns.rcode
import dns.rdataset
import dns.rdatatype
import pytest

from anchord.control.config import Config, ConfigError, load_config
from anchord.core.outcome import EdeCode, Freshness, Outcome, Question, Security
from anchord.testbed.faults import FaultKind
from anchord.testbed.replay.confmap import map_config
from anchord.testbed.replay.parser import parse_text
from anchord.testbed.zones import Hierarchy, TestbedSpec, build_hierarchy

from .conftest import SIGNED_AT, World, config_for

TTL = 60


@pytest.fixture(scope="module")
def hierarchy() -> Hierarchy:
    return build_hierarchy(TestbedSpec(children=4, max_ttl=TTL), SIGNED_AT)


def world_with(h: Hierarchy, **options: object) -> World:
    cfg = config_for(h)
    for dotted, value in options.items():
        section, key = dotted.split("__")
        setattr(getattr(cfg, section), key, value)
    return World(h, cfg)


def ask(world: World, name: str, qtype: str = "A") -> Outcome:
    q = Question(dns.name.from_text(name), dns.rdatatype.from_text(qtype))
    return asyncio.run(world.resolver.resolve(q))


def fault(world: World, zone: str, kind: FaultKind) -> None:
    world.faults.apply(dns.name.from_text(zone), kind)


def test_rfc1035_ttl0_answer_is_never_served_stale(hierarchy: Hierarchy) -> None:
    w = world_with(hierarchy)
    zone = w.authority._served_zone(dns.name.from_text("unsigned.de."))
    assert zone is not None
    zone.add_unsigned(dns.name.from_text("zero.unsigned.de."),
                      dns.rdataset.from_text("IN", "A", 0, "192.0.2.9"))
    assert ask(w, "zero.unsigned.de.").rcode == dns.rcode.NOERROR
    kept = ask(w, "www.unsigned.de.")
    assert kept.rcode == dns.rcode.NOERROR
    w.clock.advance(TTL + 1)
    fault(w, "unsigned.de.", FaultKind.UNREACHABLE)
    # The TTL-0 record was for its own transaction only: no stale copy to fall back on.
    gone = ask(w, "zero.unsigned.de.")
    assert gone.rcode == dns.rcode.SERVFAIL and gone.edes
    # The same zone's cached record with a real TTL is answered stale.
    stale = ask(w, "www.unsigned.de.")
    assert stale.freshness is Freshness.STALE and stale.edes[0].code == EdeCode.STALE_ANSWER


def test_serve_original_ttl_answers_ttls_as_received_fresh_and_stale(
        hierarchy: Hierarchy) -> None:
    w = world_with(hierarchy, cache__serve_original_ttl=True)
    first = ask(w, "www.c1.de.")
    original = {(r.name, r.rdtype, r.covers): r.ttl for r in first.answer}
    w.clock.advance(10)
    later = ask(w, "www.c1.de.")
    assert later.freshness is Freshness.FRESH
    assert {(r.name, r.rdtype, r.covers): r.ttl for r in later.answer} == original
    w.clock.advance(TTL + 1)
    fault(w, "c1.de.", FaultKind.UNREACHABLE)
    stale = ask(w, "www.c1.de.")
    assert stale.freshness is Freshness.STALE and stale.edes[0].code == EdeCode.STALE_ANSWER
    assert {(r.name, r.rdtype, r.covers): r.ttl for r in stale.answer} == original


def test_without_serve_original_ttl_answers_age(hierarchy: Hierarchy) -> None:
    w = world_with(hierarchy)
    first = ask(w, "www.c1.de.")
    w.clock.advance(10)
    later = ask(w, "www.c1.de.")
    assert max(r.ttl for r in later.answer) == max(r.ttl for r in first.answer) - 10


@pytest.mark.parametrize("extend", [False, True])
def test_extend_on_failure_brings_back_an_answer_past_its_stale_window(
        hierarchy: Hierarchy, extend: bool) -> None:
    w = world_with(hierarchy, serve_stale__max_stale_age=20,
                   serve_stale__extend_on_failure=extend)
    fresh = ask(w, "www.c2.de.")
    assert fresh.rcode == dns.rcode.NOERROR
    w.clock.advance(TTL + 25)  # past the 20 s stale window
    fault(w, "c2.de.", FaultKind.UNREACHABLE)
    o = ask(w, "www.c2.de.")
    if not extend:
        assert o.rcode == dns.rcode.SERVFAIL and o.edes
        return
    assert o.freshness is Freshness.STALE and o.edes[0].code == EdeCode.STALE_ANSWER
    assert o.edes[1].code in (EdeCode.NO_REACHABLE_AUTHORITY, EdeCode.NETWORK_ERROR)
    # The window now runs from the failure: still answered, upstream left alone meanwhile.
    sent = len(w.transport.sent)
    w.clock.advance(5)
    again = ask(w, "www.c2.de.")
    assert again.freshness is Freshness.STALE
    assert len(w.transport.sent) == sent
    # Each failed refresh (after the recheck window) extends it again.
    for _ in range(4):
        w.clock.advance(w.config.serve_stale.failure_recheck + 1)
        assert ask(w, "www.c2.de.").freshness is Freshness.STALE
    fault(w, "c2.de.", FaultKind.REPAIR)
    w.clock.advance(w.config.serve_stale.failure_recheck + 1)
    assert ask(w, "www.c2.de.").freshness is Freshness.FRESH


def _upstream_queries(w: World) -> int:
    return len(w.transport.sent)


def test_bogus_retries_bounds_asking_other_servers(hierarchy: Hierarchy) -> None:
    counts = {}
    for retries in (0, 3):
        w = world_with(hierarchy, dnssec__bogus_retries=retries)
        fault(w, "de.", FaultKind.ROLLOVER)
        o = ask(w, "de.", "SOA")  # signed by a key not in de's DNSKEY set
        assert o.security is Security.BOGUS
        assert o.edes[0].code == EdeCode.DNSSEC_BOGUS
        counts[retries] = _upstream_queries(w)
    assert counts[0] < counts[3], counts


def test_new_options_are_checked_and_documented(tmp_path: object) -> None:
    from pathlib import Path

    cfg = Config()
    assert not cfg.cache.serve_original_ttl and not cfg.serve_stale.extend_on_failure
    assert cfg.dnssec.bogus_retries == 3
    path = Path(str(tmp_path)) / "a.toml"
    path.write_text("[dnssec]\nbogus_retries = 99\n")
    with pytest.raises(ConfigError, match="bogus_retries"):
        load_config(path)
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    for option in ("cache.serve_original_ttl", "serve_stale.extend_on_failure",
                   "dnssec.bogus_retries"):
        assert f"| {option} |" in readme, option


def test_unbound_keys_map_onto_the_options() -> None:
    text = """server:
	serve-expired: yes
	serve-expired-ttl-reset: yes
	serve-original-ttl: yes
	val-max-restart: 0
CONFIG_END
SCENARIO_BEGIN t
SCENARIO_END
"""
    m = map_config(parse_text(text, "x/unbound/t.rpl"))
    assert m.reason is None
    c = m.config
    assert c.serve_stale.extend_on_failure and c.cache.serve_original_ttl
    assert c.dnssec.bogus_retries == 0
    # Unbound leaves a failed name alone for NORR_TTL (5 s), not RFC 8767's 30 s.
    assert c.serve_stale.failure_recheck == 5
