"""The answer cache keeps outcomes packed (records as wire bytes): what comes back out
must be what went in, down to the case of every name and the order of the records."""

from __future__ import annotations

import gc

import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset

from anchord.core.cache import (
    AnswerCache,
    AnswerEntry,
    PackedOutcome,
    aged_outcome,
    answer_key,
)
from anchord.core.outcome import Ede, EdeCode, Outcome, Question, Security

SIG = ("A 13 3 3600 20270103105626 20261204095626 10321 Example.COM. "
       "772LjupIbo20DPomUsIv2kFjqI9Wgvsv Z4JBHXtRQ+jpUY1/9B9tYOgJkUcqlgE4 gvNyn5SyENOMsSbXq"
       "VGExA==")


def rrset(owner: str, ttl: int, rdtype: str, *texts: str) -> dns.rrset.RRset:
    return dns.rrset.from_text(owner, ttl, "IN", rdtype, *texts)


def question(name: str, rdtype: str = "A") -> Question:
    return Question(dns.name.from_text(name), dns.rdatatype.from_text(rdtype))


def outcome() -> Outcome:
    """Mixed case, a chain (owners other than the question's name), records in an order
    that is not sorted, every section used, an unknown type, an EDE."""
    q = question("WwW.Example.COM.")
    answer = (
        rrset("WwW.Example.COM.", 300, "CNAME", "Target.Example.com."),
        rrset("WwW.Example.COM.", 300, "RRSIG", SIG.replace("A 13 3", "CNAME 13 3")),
        rrset("Target.Example.com.", 120, "A", "192.0.2.9", "192.0.2.1", "192.0.2.5"),
        rrset("Target.Example.com.", 120, "RRSIG", SIG),
        rrset("Target.Example.com.", 60, "TYPE65280", r"\# 3 ABCDEF"),
    )
    authority = (
        rrset("Example.COM.", 3600, "NSEC", "zz.Example.COM. A NS SOA RRSIG NSEC DNSKEY"),
        rrset("Example.COM.", 3600, "NS", "NS1.example.com.", "ns0.Example.com."),
    )
    additional = (rrset("NS1.example.com.", 7200, "AAAA", "2001:db8::53"),)
    return Outcome(q, dns.rcode.NOERROR, answer, authority, additional, Security.INSECURE,
                   (Ede(EdeCode.OTHER, "a reason"),))


def same(a: Outcome, b: Outcome) -> None:
    """Equal, and byte for byte so: names' case, record order, TTL per RRset."""
    assert a == b
    assert a.question.qname.labels == b.question.qname.labels
    assert (a.rcode, a.security, a.edes, a.freshness) == (b.rcode, b.security, b.edes,
                                                           b.freshness)
    for x, y in zip(a.answer + a.authority + a.additional,
                    b.answer + b.authority + b.additional, strict=True):
        assert x.name.labels == y.name.labels
        assert (x.rdtype, x.rdclass, x.covers, x.ttl) == (y.rdtype, y.rdclass, y.covers,
                                                            y.ttl)
        assert [rd.to_wire() for rd in x] == [rd.to_wire() for rd in y]
        assert [type(rd) for rd in x] == [type(rd) for rd in y]


def test_unpacked_outcome_is_the_stored_one_to_the_byte() -> None:
    o = outcome()
    packed = PackedOutcome(o)
    again = packed.unpack()
    assert again is not o
    same(again, o)
    assert again.answer[1].covers == dns.rdatatype.CNAME
    assert len(packed.wire) < 1000


def test_entry_outcome_is_the_stored_object_while_it_lives() -> None:
    # The fast path tells a just-resolved answer from a cached one by identity.
    o = outcome()
    entry = AnswerEntry.of(o, 100.0, 300, 400.0, stale_ok=True)
    assert entry.outcome is o
    copy = PackedOutcome(o).unpack()
    del o
    gc.collect()
    first, second = entry.outcome, entry.outcome
    assert first is not second  # unpacked anew: nothing kept for an entry not in use
    same(first, copy)


def test_hot_entries_keep_their_objects_up_to_the_limit() -> None:
    cache = AnswerCache(100, hot_limit=2)
    entries = []
    for i in range(3):
        q = question(f"n{i}.example.")
        o = Outcome(q, answer=(rrset(f"n{i}.example.", 60, "A", "192.0.2.1"),))
        entries.append(AnswerEntry.of(o, 0.0, 60, 60.0, stale_ok=True))
        cache.put(q, entries[-1])
    del o  # gone: from now on the entries' objects are unpacked ones
    gc.collect()
    hot = [cache.outcome(e) for e in entries]
    assert cache.outcome(entries[2]) is hot[2]
    assert cache.outcome(entries[1]) is hot[1]
    assert cache.outcome(entries[0]) is not hot[0]  # cooled when the third came in
    same(cache.outcome(entries[0]), hot[0])


def test_aged_outcome_counts_down_copies() -> None:
    o = outcome()
    entry = AnswerEntry.of(o, 1000.0, 60, 1060.0, stale_ok=True)
    aged = aged_outcome(entry.packed.unpack(), entry, 1100.0)
    assert [r.ttl for r in aged.answer] == [200, 200, 20, 20, 0]
    assert [r.ttl for r in o.answer] == [300, 300, 120, 120, 60]


def test_keys_ignore_case_and_drop_below_stops_at_label_boundaries() -> None:
    cache = AnswerCache(100)
    names = ["example.com.", "WWW.example.com.", "a.b.Example.COM.", "xexample.com.",
             "com.", "example.net."]
    for name in names:
        q = question(name)
        cache.put(q, AnswerEntry.of(Outcome(q), 0.0, 60, 60.0, stale_ok=True))
    assert answer_key(question("www.EXAMPLE.com.")) == answer_key(question("WWW.example.com."))
    assert cache.get(question("www.EXAMPLE.com.")) is not None
    assert cache.get(question("www.example.com.", "AAAA")) is None
    assert cache.drop_below(dns.name.from_text("example.com.")) == 3
    assert cache.get(question("xexample.com.")) is not None
    assert cache.get(question("com.")) is not None
    assert cache.drop_below(dns.name.root) == 3
    assert len(cache) == 0


def test_drop_below_only_failures_keeps_good_answers() -> None:
    cache = AnswerCache(100)
    good, bogus = question("good.example."), question("bogus.example.")
    cache.put(good, AnswerEntry.of(Outcome(good, security=Security.SECURE), 0.0, 60, 60.0,
                                   stale_ok=True))
    cache.put(bogus, AnswerEntry.of(Outcome(bogus, security=Security.BOGUS), 0.0, 60, 60.0,
                                    stale_ok=False))
    assert cache.drop_below(dns.name.from_text("example."), only_failures=True) == 1
    assert cache.get(good) is not None and cache.get(bogus) is None
