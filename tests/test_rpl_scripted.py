"""The scripted upstream answers by each dialect's rules; confmap maps the headers."""

from __future__ import annotations

import asyncio

import dns.flags
import dns.message
import dns.rcode

from anchord.core.ports import ServerAddress, UpstreamError
from anchord.testbed.replay.confmap import map_config, parse_override_date
from anchord.testbed.replay.parser import parse_file, parse_text
from anchord.testbed.replay.scripted import ScriptedTransport
from tests.requirements import scenario_dir

RPL = scenario_dir()


def _ask(t: ScriptedTransport, host: str, name: str, rdtype: str):
    q = dns.message.make_query(name, rdtype, want_dnssec=False)
    q.flags = 0
    return q, asyncio.run(t.query(ServerAddress(host), q))


SCRIPT = """{header}
CONFIG_END
SCENARIO_BEGIN t
RANGE_BEGIN 0 10
	ADDRESS 1.2.3.4
ENTRY_BEGIN
MATCH opcode qtype qname
ADJUST copy_id
REPLY QR AA NOERROR DO
SECTION QUESTION
www.example.com. IN A
SECTION ANSWER
www.example.com. IN A 10.0.0.1
ENTRY_END
RANGE_END
RANGE_BEGIN 0 100
	ADDRESS 1.2.3.4
ENTRY_BEGIN
MATCH opcode subdomain
ADJUST copy_id copy_query
REPLY QR NXDOMAIN
SECTION QUESTION
example.com. IN A
ENTRY_END
RANGE_END
STEP 1 QUERY
SCENARIO_END
"""


def test_unbound_blocks_in_file_order_copy_id_and_do() -> None:
    s = parse_text(SCRIPT.format(header="server:"), "x/unbound/t.rpl")
    t = ScriptedTransport(s, step=5)
    q, r = _ask(t, "1.2.3.4", "www.example.com.", "A")
    assert r.ok and r.response.id == q.id
    assert r.response.flags & dns.flags.AA
    assert r.response.ednsflags & dns.flags.DO and r.response.payload == 1232
    # Not matched by the first block: the second (subdomain, copy_query) answers.
    q, r = _ask(t, "1.2.3.4", "mail.example.com.", "MX")
    assert r.response.rcode() == dns.rcode.NXDOMAIN
    assert r.response.question[0].name == q.question[0].name
    # Outside step 0..10 only the second block is active.
    t.step = 50
    _, r = _ask(t, "1.2.3.4", "www.example.com.", "A")
    assert r.response.rcode() == dns.rcode.NXDOMAIN
    # Unbound leaves what nothing matches unanswered: a timeout, counted and recorded.
    _, r = _ask(t, "9.9.9.9", "www.example.com.", "A")
    assert r.error is UpstreamError.TIMEOUT
    assert t.unmatched == 1 and [s.disposition for s in t.sent][-1] == "unmatched"


def test_deckard_first_eligible_block_only_servfail_and_edns() -> None:
    s = parse_text(SCRIPT.format(header="stub-addr: 1.2.3.4"), "x/deckard/t.rpl")
    t = ScriptedTransport(s, step=5)
    _, r = _ask(t, "1.2.3.4", "www.example.com.", "A")
    assert r.response.payload == 4096  # Deckard: every message has EDNS 4096
    # The first eligible block has no match: Deckard does not look further -> SERVFAIL.
    _, r = _ask(t, "1.2.3.4", "mail.example.com.", "MX")
    assert r.response.rcode() == dns.rcode.SERVFAIL
    assert t.unmatched == 1


DECKARD_REPLY_STEPS = """stub-addr: 1.2.3.4
CONFIG_END
SCENARIO_BEGIN t
STEP 10 QUERY
ENTRY_BEGIN
REPLY RD
SECTION QUESTION
cz. IN A
ENTRY_END
STEP 20 REPLY
ENTRY_BEGIN
MATCH opcode qtype qname
ADJUST copy_id
REPLY QR AA TC NOERROR
SECTION QUESTION
cz. IN A
ENTRY_END
STEP 30 REPLY
ENTRY_BEGIN
MATCH opcode qtype qname
ADJUST copy_id
REPLY QR AA NOERROR
SECTION QUESTION
cz. IN A
SECTION ANSWER
cz. IN A 10.20.30.40
ENTRY_END
SCENARIO_END
"""


def test_deckard_reply_steps_answer_once_each_in_order_when_no_range_is_eligible() -> None:
    # pydnstest Scenario.reply: REPLY steps not yet passed are one-shot answers.
    s = parse_text(DECKARD_REPLY_STEPS, "x/deckard/t.rpl")
    t = ScriptedTransport(s, step=10)
    _, r = _ask(t, "9.9.9.9", "cz.", "A")
    assert r.response.flags & dns.flags.TC
    _, r = _ask(t, "9.9.9.9", "cz.", "A")
    assert not r.response.flags & dns.flags.TC and r.response.answer
    _, r = _ask(t, "9.9.9.9", "cz.", "A")
    assert r.response.rcode() == dns.rcode.SERVFAIL  # both used up
    t = ScriptedTransport(s, step=25)  # a REPLY step already passed is not used
    _, r = _ask(t, "9.9.9.9", "cz.", "A")
    assert r.response.answer


def test_deckard_unknown_address_may_use_any_block() -> None:
    s = parse_text(SCRIPT.format(header="stub-addr: 1.2.3.4"), "x/deckard/t.rpl")
    t = ScriptedTransport(s, step=5)
    _, r = _ask(t, "7.7.7.7", "www.example.com.", "A")  # named by no RANGE
    assert r.response.answer


def test_deckard_do_not_answer_times_out() -> None:
    path = RPL / "deckard" / "iter_timeouted_ns.rpl"
    s = parse_file(path)
    t = ScriptedTransport(s, step=11)
    _, r = _ask(t, "1.1.1.1", "fail.net.", "A")
    assert r.error is UpstreamError.TIMEOUT


def test_held_queries_answered_by_reply_step() -> None:
    s = parse_text(SCRIPT.format(header="server:"), "x/unbound/t.rpl")
    t = ScriptedTransport(s, step=5, hold_unmatched=True)

    async def flow():
        q = dns.message.make_query("other.test.", "A")
        task = asyncio.ensure_future(t.query(ServerAddress("5.5.5.5"), q))
        await asyncio.sleep(0)
        assert len(t.pending) == 1
        assert t.fail_pending(UpstreamError.TIMEOUT)
        return await task

    assert asyncio.run(flow()).error is UpstreamError.TIMEOUT


def test_confmap_unbound_header() -> None:
    header = """server:
	val-override-date: "20070916134226"
	trust-anchor: "example.com. 3600 IN DS 2854 3 1 46e4ffc6e9a4793b488954bd3f0cc6af0dfb201b"
	qname-minimisation: "no"
	module-config: "iterator"
	domain-insecure: example.net
	serve-expired: yes
	serve-expired-client-timeout: 1800
	target-fetch-policy: "0 0 0 0 0"
stub-zone:
	name: "."
	stub-addr: 193.0.14.129
stub-zone:
	name: "example.org"
	stub-addr: 1.2.3.4@10053
"""
    m = map_config(parse_text(SCRIPT.format(header=header), "x/unbound/t.rpl"))
    c = m.config
    assert m.reason is None
    assert c.dnssec.override_time == parse_override_date("20070916134226") == 1189950146
    assert m.clock_start == 0.0
    assert len(c.dnssec.trust_anchors) == 1 and c.dnssec.algorithm_policy == "all"
    assert not c.upstream.qname_minimisation and not c.dnssec.enabled
    assert c.dnssec.insecure_zones == ["example.net."]
    assert c.serve_stale.enabled and c.serve_stale.client_timeout == 1.8
    assert c.upstream.stub_zones == {".": ["193.0.14.129"], "example.org.": ["1.2.3.4:10053"]}


def test_confmap_do_not_query_localhost_is_unbounds_default_and_leaves_addresses() -> None:
    """do-not-query-localhost is Unbound's (default yes); turning it off must not drop the
    scenario's own do-not-query-address entries; Deckard's servers live on loopback."""
    def unbound(header: str) -> list[str]:
        m = map_config(parse_text(SCRIPT.format(header=f"server:\n{header}"),
                                  "x/unbound/t.rpl"))
        return m.config.upstream.do_not_query

    assert unbound("\tverbosity: 1") == ["127.0.0.0/8", "::1/128"]
    assert unbound("\tdo-not-query-address: 192.0.2.0/24\n"
                   "\tdo-not-query-localhost: no") == ["192.0.2.0/24"]
    assert unbound("\tdo-not-query-localhost: no\n"
                   "\tdo-not-query-address: 192.0.2.0/24") == ["192.0.2.0/24"]
    deckard = map_config(parse_text(SCRIPT.format(header="stub-addr: 127.0.0.10"),
                                    "x/deckard/t.rpl"))
    assert deckard.config.upstream.do_not_query == []


def test_confmap_deckard_clock_starts_at_override_and_unknown_key_unsupported() -> None:
    header = """stub-addr: 193.0.14.129
val-override-date: 20181130121750
query-minimization: off
forward-addr: 192.0.2.1
frobnicate: yes"""
    m = map_config(parse_text(SCRIPT.format(header=header), "x/deckard/t.rpl"))
    assert m.clock_start == parse_override_date("20181130121750")
    assert m.config.dnssec.override_time == 0
    assert m.config.upstream.forward_zones == {".": ["192.0.2.1"]}
    assert "." not in m.config.upstream.stub_zones
    assert m.reason == "key frobnicate"
