"""Run one scenario: feed its steps to a fresh resolver and compare its answers.

One resolver per scenario (build_resolver with a FakeClock and the ScriptedTransport),
one event loop per scenario (asyncio.run), so one scenario can never disturb the next.
Client queries go through the frontend's own parse_query / render_outcome, so the
answer compared is the wire reply a client would get. The tolerances the comparison
applies are listed in TOLERANCES and, per scenario, in Result.notes.
"""

from __future__ import annotations

import asyncio
import re
import traceback
from dataclasses import dataclass, field

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset

from anchord.core.ports import ServerAddress, UpstreamError
from anchord.core.wire import parse_response
from anchord.engine.clock import FakeClock
from anchord.testbed.replay.confmap import map_config
from anchord.testbed.replay.parser import Dialect, Entry, Scenario, Step
from anchord.testbed.replay.scripted import (
    ScriptedTransport,
    entry_to_message,
    query_matches,
)

# Step kinds that need machinery anchord does not have (Unbound internals, RFC 5011).
UNSUPPORTED_STEPS = frozenset({"CHECK_AUTOTRUST", "CHECK_TEMPFILE", "ASSIGN",
                               "FLUSH_MESSAGE", "EXPIRE_MESSAGE", "FLUSH_INFRA"})
HOLDING_STEPS = frozenset({"REPLY", "TIMEOUT", "ERROR"})
SCENARIO_TIMEOUT = 60.0  # real seconds; a hung scenario is a failure, not a hung run


class Mismatch(Exception):
    """The first difference between what a step expects and what happened."""


@dataclass(slots=True)
class Result:
    file: str
    status: str  # "pass", "fail", "unsupported", "excluded" (rpz / response-ip)
    reason: str = ""
    notes: list[str] = field(default_factory=list)
    unmatched_upstream: int = 0


@dataclass(slots=True)
class _Pending:
    step: int
    query: dns.message.Message
    task: asyncio.Task[bytes | None]


class ScenarioRun:
    def __init__(self, scenario: Scenario) -> None:
        from anchord.engine.driver import build_resolver

        self.scenario = scenario
        self.mapped = map_config(scenario)
        self.clock = FakeClock(self.mapped.clock_start)
        self.transport = ScriptedTransport(
            scenario, hold_unmatched=scenario.dialect is Dialect.UNBOUND
            and any(s.kind in HOLDING_STEPS or _answers_held(s) for s in scenario.steps))
        self.resolver = build_resolver(self.mapped.config, clock=self.clock,
                                       transport=self.transport, seed=1)
        self.queries: list[_Pending] = []
        self.finished: list[_Pending] = []  # in completion order
        # Deckard checks the answer to the latest QUERY (none after a RAW one, whose
        # answer its harness never reads); Unbound the earliest answer not yet checked.
        self.latest: _Pending | None = None
        self.notes: set[str] = set(self.mapped.notes)
        self.sent_mark = 0  # transport.sent index at the last QUERY (CHECK_OUT_QUERY)

    async def run(self) -> None:
        steps = self.scenario.steps
        for i, step in enumerate(steps):
            following = steps[i + 1].number if i + 1 < len(steps) else step.number
            try:
                await self.do_step(step, following)
            except Mismatch as e:
                raise Mismatch(f"step {step.number} {step.kind}: {e}") from None
        self.transport.release_all()
        await self.settle()

    async def do_step(self, step: Step, following: int) -> None:
        kind = step.kind
        # Unbound's harness matches RANGEs with the number of the step after the QUERY;
        # Deckard's with the QUERY's own number (FORMAT.md).
        unbound = self.scenario.dialect is Dialect.UNBOUND
        self.transport.step = following if unbound else step.number
        if kind == "QUERY":
            for entry in step.entries:
                self.start_query(step, entry)
            await self.settle()
        elif kind == "CHECK_ANSWER":
            for entry in step.entries:
                await self.check_answer(entry)
        elif kind == "TIME_PASSES":
            self.clock.advance(_elapse(step))
            await self.settle()
        elif kind == "TRAFFIC" or kind == "NOTHING":
            await self.settle()
        elif kind == "REPLY" and not unbound:
            pass  # Deckard: a one-shot upstream answer, served by the transport
        elif kind == "REPLY":
            for entry in step.entries:
                if not self.transport.answer_pending(entry):
                    raise Mismatch("no held upstream query matches the scripted reply")
            await self.settle()
        elif kind in ("TIMEOUT", "ERROR"):
            error = UpstreamError.TIMEOUT if kind == "TIMEOUT" else UpstreamError.NETWORK
            if not self.transport.fail_pending(error):
                self.notes.add(f"{kind} step with no held upstream query (ignored)")
            await self.settle()
        elif kind == "INFRA_RTT":
            self.infra_rtt(step)
        elif kind == "CHECK_OUT_QUERY" and not unbound:
            # pydnstest ignores it (Step.play): Deckard's files carry some from Unbound's.
            self.notes.add("Deckard CHECK_OUT_QUERY step ignored, as Deckard does")
        elif kind == "CHECK_OUT_QUERY":
            for entry in step.entries:
                self.check_out_query(entry)
            await self.settle()
        else:
            raise Mismatch(f"step kind {kind} not supported")

    def start_query(self, step: Step, entry: Entry) -> None:
        from anchord.frontend.request import parse_query

        if entry.raw is not None:
            wire = entry.raw
            query = dns.message.Message()  # stands in for an unreadable query
        else:
            query = entry_to_message(entry, self.scenario.dialect)
            query.flags &= ~dns.flags.QR
            query.id = 4242 + len(self.queries)
            wire = query.to_wire()
        parsed = parse_query(wire, tcp="tcp" in entry.match)
        self.sent_mark = len(self.transport.sent)
        pending = _Pending(step.number, query,
                           asyncio.ensure_future(self._answer(parsed)))
        pending.task.add_done_callback(lambda _t: self.finished.append(pending))
        self.queries.append(pending)
        self.latest = pending if entry.raw is None else None

    async def _answer(self, parsed: object) -> bytes | None:
        from anchord.frontend.render import render_outcome, render_rejection
        from anchord.frontend.request import ClientQuery

        if not isinstance(parsed, ClientQuery):
            return render_rejection(parsed)  # type: ignore[arg-type]
        outcome = await self.resolver.resolve(parsed.question, cd=parsed.cd)
        return render_outcome(parsed, outcome)

    async def settle(self) -> None:
        """Run the loop until nothing moves: every answer given, or all of the resolver's
        work waiting on a held upstream query (TRAFFIC means exactly this).

        The RFC 8767 client response timer runs on real time (the driver's); when a
        client query waits on a held upstream query and the scenario's timer is short,
        let it run out, so the stale answer it gives does not depend on machine speed."""
        await self._settle()
        stale = self.mapped.config.serve_stale
        if stale.enabled and 0 < stale.client_timeout <= 0.1 and self.transport.pending \
                and not all(p.task.done() for p in self.queries):
            await asyncio.sleep(stale.client_timeout + 0.01)
            await self._settle()

    async def _settle(self) -> None:
        idle = 0
        while idle < 30:
            before = (len(self.transport.sent), len(self.finished))
            await asyncio.sleep(0)
            if all(p.task.done() for p in self.queries) and not self.transport.pending \
                    and not self.resolver.busy:
                idle += 5  # done: a few more turns let background work finish
            elif (len(self.transport.sent), len(self.finished)) == before:
                idle += 1
            else:
                idle = 0

    async def check_answer(self, entry: Entry) -> None:
        if self.scenario.dialect is Dialect.DECKARD:
            pending = await self._latest_answer()
        else:
            pending = await self._earliest_answer()
        if pending.task.exception() is not None:
            exc = pending.task.exception()
            raise Mismatch(f"resolver raised {type(exc).__name__}: {exc}")
        wire = pending.task.result()
        if wire is None:
            raise Mismatch("the query was dropped, no reply")
        # Opaque where dnspython cannot read a record: every record we sent is compared.
        got = parse_response(wire, keep_unreadable=True)
        expected = entry_to_message(entry, self.scenario.dialect)
        problem = compare_answer(entry, expected, got, self.scenario.dialect, self.notes)
        if problem:
            raise Mismatch(problem)

    def infra_rtt(self, step: Step) -> None:
        """`INFRA_RTT addr zone ms`: the server's measured round trip, as if observed.
        Unbound keeps RTTs per server and zone; anchord per server, which is what
        decides the order its servers are tried in."""
        if len(step.args) < 3 or not step.args[2].isdigit():
            raise Mismatch(f"INFRA_RTT {' '.join(step.args)} not understood")
        server = ServerAddress(step.args[0], self.mapped.config.upstream.port)
        self.resolver.core.infra.observe(server, int(step.args[2]) / 1000.0)

    async def _earliest_answer(self) -> _Pending:
        if not self.finished and self.transport.pending:
            # What the script never answers, times out, as it would on a network.
            self.transport.release_all()
            await self.settle()
        if not self.finished:
            raise Mismatch("no answer: the resolver has not replied")
        pending = self.finished.pop(0)
        self.queries.remove(pending)
        return pending

    async def _latest_answer(self) -> _Pending:
        pending = self.latest
        if pending is None:
            raise Mismatch("no answer from the preceding query (none, or a RAW one)")
        if not pending.task.done() and self.transport.pending:
            self.transport.release_all()
            await self.settle()
        if not pending.task.done():
            raise Mismatch("no answer: the resolver has not replied")
        return pending

    def check_out_query(self, entry: Entry) -> None:
        if "copy_id" in entry.adjust and self.transport.answer_pending(entry):
            # Unbound's harness answers a held query from the entry that matches it
            # (fake_event.c: pending_matches_current, then answer_callback_from_entry).
            return
        candidates = [p.sent for p in self.transport.pending]
        candidates += self.transport.sent[self.sent_mark:]
        for sent in candidates:
            if query_matches(entry, sent.request, sent.tcp):
                return
        want = entry.question[0] if entry.question else None
        raise Mismatch(f"expected upstream query {want.name}/{want.rdtype} not sent"
                       if want else "expected upstream query not sent")


# Every tolerance the comparison applies (the report lists them; FORMAT.md asks for it).
TOLERANCES = (
    "sections compared as sets: record order ignored",
    "TTLs ignored unless MATCH ttl",
    "EDNS: OPT record, UDP size and options not compared, except the first EDE code "
    "(MATCH ede=N)",
    "Unbound NOERROR answers (positive, or NODATA): expected NS (and their RRSIGs) in "
    "AUTHORITY and address glue (and its RRSIGs) in ADDITIONAL may be missing from ours "
    "(minimal responses); never extra, and never an SOA or a denial record",
    "any answer, either dialect: NS records (and their RRSIGs) expected in AUTHORITY "
    "may be missing from ours (minimal responses; a negative answer's SOA and proofs are "
    "still compared); never extra",
)
_FLAG_NAMES = ("QR", "AA", "TC", "RD", "RA", "AD", "CD")


def _flags_text(flags: int) -> str:
    return " ".join(n for n in _FLAG_NAMES if flags & dns.flags.from_text(n)) or "-"


def _key(rrset: dns.rrset.RRset, ttl: bool) -> set[tuple[object, ...]]:
    out: set[tuple[object, ...]] = set()
    for rd in rrset:
        out.add((rrset.name.canonicalize(), rrset.rdclass, rrset.rdtype,
                 rd.to_digestable(dns.name.root), rrset.ttl if ttl else None))
    return out


def _records(section: list[dns.rrset.RRset], ttl: bool) -> set[tuple[object, ...]]:
    keys: set[tuple[object, ...]] = set()
    for rrset in section:
        keys |= _key(rrset, ttl)
    return keys


def _show(keys: set[tuple[object, ...]]) -> str:
    items = sorted(f"{k[0]} {dns.rdatatype.to_text(k[2])}"  # type: ignore[arg-type]
                   + (f" ttl={k[4]}" if k[4] is not None else "") for k in keys)
    return ", ".join(items[:3]) + (" ..." if len(items) > 3 else "")


def _glue_only(keys: set[tuple[object, ...]], types: set[dns.rdatatype.RdataType],
               section: list[dns.rrset.RRset]) -> bool:
    """Are these records (from `section`) only of `types`, or RRSIGs over those types?"""
    sig_covers: dict[tuple[object, ...], dns.rdatatype.RdataType] = {}
    for rrset in section:
        if rrset.rdtype == dns.rdatatype.RRSIG:
            for k in _key(rrset, True) | _key(rrset, False):
                sig_covers[k] = rrset.covers
    return all(k[2] in types or (k[2] == dns.rdatatype.RRSIG and sig_covers.get(k) in types)
               for k in keys)


def compare_answer(entry: Entry, expected: dns.message.Message, got: dns.message.Message,
                   dialect: Dialect, notes: set[str]) -> str | None:
    """The first difference as 'what: expected X, got Y', or None when they match."""
    m = entry.match
    every = "all" in m
    if (every or "opcode" in m) and expected.opcode() != got.opcode():
        return f"opcode: expected {expected.opcode()}, got {got.opcode()}"
    if every or "rcode" in m:
        if expected.rcode() != got.rcode():
            edes = [f"EDE {o.code}: {o.text or ''}" for o in got.options
                    if isinstance(o, dns.edns.EDEOption)]
            return (f"rcode: expected {dns.rcode.to_text(expected.rcode())}, "
                    f"got {dns.rcode.to_text(got.rcode())}"
                    + (f" ({edes[0][:120]})" if edes else ""))
    if every or "flags" in m:
        mask = 0
        for n in _FLAG_NAMES:
            mask |= dns.flags.from_text(n)
        if (expected.flags & mask) != (got.flags & mask):
            return (f"flags: expected {_flags_text(expected.flags)}, "
                    f"got {_flags_text(got.flags)}")
    if every or "question" in m or "qname" in m or "qtype" in m:
        eq = [(q.name.canonicalize(), q.rdtype) for q in expected.question]
        gq = [(q.name.canonicalize(), q.rdtype) for q in got.question]
        if eq != gq:
            return f"question: expected {eq}, got {gq}"
    ttl = "ttl" in m
    # NOERROR, with data or NODATA: the NS set and its glue are optional there.
    noerror = expected.rcode() == dns.rcode.NOERROR
    for name in ("answer", "authority", "additional"):
        if not (every or name in m):
            continue
        want = _records(getattr(expected, name), ttl)
        have = _records(getattr(got, name), ttl)
        if want == have:
            continue
        missing, extra = want - have, have - want
        if dialect is Dialect.UNBOUND and noerror and not extra and name != "answer":
            types = {dns.rdatatype.NS} if name == "authority" else \
                {dns.rdatatype.A, dns.rdatatype.AAAA}
            if _glue_only(missing, types, getattr(expected, name)):
                notes.add(f"tolerated: expected {name} NS/glue missing (minimal responses)")
                continue
        if not extra and name == "authority" and _glue_only(
                missing, {dns.rdatatype.NS}, expected.authority):
            notes.add("tolerated: expected authority NS missing (minimal responses)")
            continue
        if missing:
            return f"{name}: expected {_show(missing)} missing" + (
                f", got extra {_show(extra)}" if extra else "")
        return f"{name}: got extra {_show(extra)}"
    if entry.match_ede is not None:
        codes = [o.code for o in got.options if isinstance(o, dns.edns.EDEOption)]
        if not codes:
            return f"EDE: expected {entry.match_ede}, got none"
        if entry.match_ede != "any" and int(entry.match_ede) != int(codes[0]):
            return f"EDE: expected {entry.match_ede}, got {int(codes[0])}"
    return None


def _answers_held(step: Step) -> bool:
    """A CHECK_OUT_QUERY step whose entry is a reply (copy_id) answers a held query."""
    return step.kind == "CHECK_OUT_QUERY" and any("copy_id" in e.adjust for e in step.entries)


_EVAL = re.compile(r"^\$\{([0-9+\-*/ ().]+)\}$")


def _elapse(step: Step) -> float:
    args = step.args
    if len(args) >= 2 and args[0].upper() == "ELAPSE":
        return float(args[1])
    if len(args) >= 2 and args[0].upper() == "EVAL":
        m = _EVAL.match(" ".join(args[1:]))
        if m:
            # Only digits and arithmetic reach eval (the regex), no names.
            return float(eval(m.group(1), {"__builtins__": {}}, {}))  # noqa: S307
    raise Mismatch(f"TIME_PASSES {' '.join(args)} not supported")


def _checks_something(scenario: Scenario) -> bool:
    """Does any step compare what the resolver did with what the script expects?
    CHECK_ANSWER does; so does CHECK_OUT_QUERY, but only for Unbound (Deckard ignores
    it, as pydnstest does)."""
    for step in scenario.steps:
        if not step.entries:
            continue
        if step.kind == "CHECK_ANSWER" or (
                step.kind == "CHECK_OUT_QUERY" and scenario.dialect is Dialect.UNBOUND):
            return True
    return False


def precheck(scenario: Scenario) -> str | None:
    """Why this scenario cannot be run, or None."""
    if scenario.unsupported:
        return scenario.unsupported[0]
    for step in scenario.steps:
        if step.kind in UNSUPPORTED_STEPS:
            return f"step {step.kind}"
        if step.kind == "TIME_PASSES":
            try:
                _elapse(step)
            except Mismatch as e:
                return str(e)
    # A run that compares nothing cannot fail, so its PASS would say nothing: a file
    # cut after its QUERY steps would otherwise count as a passing scenario.
    if not _checks_something(scenario):
        return "checks nothing (no CHECK_ANSWER step)"
    return None


# Out of scope for anchord (issue 5): RPZ and response-IP policy. Scenarios whose config
# uses them are reported as "excluded" and left out of the pass rates and the gate.
EXCLUDED_WHY = "config uses rpz / response-ip (out of scope: no policy zones in anchord)"


def excluded(scenario: Scenario) -> bool:
    for item in scenario.config:
        if item.section == "rpz" or item.key.startswith("response-ip") or (
                item.key == "module-config" and "respip" in item.value.split()):
            return True
    return False


def run_scenario(scenario: Scenario) -> Result:
    """Run one parsed scenario; never raises."""
    if excluded(scenario):
        return Result(scenario.path, "excluded", EXCLUDED_WHY)
    reason = precheck(scenario)
    mapped_reason = map_config(scenario).reason
    if reason or mapped_reason:
        return Result(scenario.path, "unsupported", reason or mapped_reason or "")

    async def main() -> Result:
        run = ScenarioRun(scenario)
        try:
            await asyncio.wait_for(run.run(), SCENARIO_TIMEOUT)
            status, why = "pass", ""
        except Mismatch as e:
            status, why = "fail", str(e)
        except TimeoutError:
            status, why = "fail", f"scenario did not finish in {SCENARIO_TIMEOUT:.0f} s"
        finally:
            run.transport.release_all()
            try:
                await run.resolver.close()
            except Exception:  # noqa: BLE001 - closing must not hide the result
                pass
        return Result(scenario.path, status, why, sorted(run.notes),
                      run.transport.unmatched)

    try:
        return asyncio.run(main())
    except Exception as e:  # noqa: BLE001 - one broken scenario must not stop the run
        tb = traceback.extract_tb(e.__traceback__)
        where = f" at {tb[-1].filename.rsplit('/', 1)[-1]}:{tb[-1].lineno}" if tb else ""
        return Result(scenario.path, "fail", f"exception {type(e).__name__}: {e}{where}")


__all__ = ["EXCLUDED_WHY", "Mismatch", "Result", "ScenarioRun", "excluded", "precheck",
           "run_scenario"]
