"""A running frontend in a background thread, for the loopback tests (no tests here)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import dns.name
import dns.rdatatype
import dns.rrset

from anchord.control.config import Config
from anchord.core.outcome import Ede, EdeCode, Outcome, Question, Security
from anchord.frontend.command import run_server
from anchord.frontend.server import Frontend

BOGUS_TEXT = "RRSIG with malformed signature found for example.de/nsec3 (keytag=33834)"


class FakeResolver:
    """Answers every question the same way: A 192.0.2.1, or Bogus for names under bogus."""

    def __init__(self) -> None:
        self.questions: list[tuple[Question, bool]] = []
        self.started = False
        self.closed = False

    async def resolve(self, question: Question, cd: bool) -> Outcome:
        self.questions.append((question, cd))
        if question.qname.is_subdomain(dns.name.from_text("bogus.example.de.")):
            rr = dns.rrset.from_text(question.qname, 60, "IN", "A", "192.0.2.66")
            return Outcome(question, answer=(rr,), security=Security.BOGUS,
                           edes=(Ede(EdeCode.DNSSEC_BOGUS, BOGUS_TEXT),))
        if question.qtype == dns.rdatatype.A:
            rr = dns.rrset.from_text(question.qname, 60, "IN", "A", "192.0.2.1")
            return Outcome(question, answer=(rr,), security=Security.SECURE)
        return Outcome(question)

    async def resolve_norec(self, question: Question, cd: bool) -> Outcome:
        return await self.resolve(question, cd)  # no cache here to answer from

    def start_background(self, loop: asyncio.AbstractEventLoop) -> None:
        self.started = True

    def close(self) -> None:
        self.closed = True


@dataclass
class Running:
    frontend: Frontend
    port: int
    resolver: FakeResolver


@contextlib.contextmanager
def running_server(access_control: list[str] | None = None,
                   listen: list[str] | None = None, idle: float = 10.0,
                   uvloop: bool = True, max_tcp_clients: int = 256) -> Iterator[Running]:
    config = Config()
    config.server.listen = listen or ["127.0.0.1:0"]
    config.server.tcp_idle_timeout = idle
    config.server.max_tcp_clients = max_tcp_clients
    if access_control is not None:
        config.server.access_control = access_control
    resolver = FakeResolver()
    started = threading.Event()
    box: dict[str, object] = {}

    def thread_main() -> None:
        factory = None
        if uvloop:
            import uvloop as uv

            factory = uv.new_event_loop
        with asyncio.Runner(loop_factory=factory) as runner:
            stop = asyncio.Event()

            def ready(fe: Frontend) -> None:
                box["frontend"], box["loop"], box["stop"] = fe, asyncio.get_running_loop(), stop
                started.set()

            try:
                runner.run(run_server(config, resolver, ready=ready, stop=stop))
            except BaseException as e:  # surfaced to the test below
                box["error"] = e
                started.set()

    thread = threading.Thread(target=thread_main, daemon=True)
    thread.start()
    assert started.wait(10), "server did not start"
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    fe = box["frontend"]
    assert isinstance(fe, Frontend)
    try:
        yield Running(fe, fe.bound[0][2], resolver)
    finally:
        loop = box["loop"]
        assert isinstance(loop, asyncio.AbstractEventLoop)
        loop.call_soon_threadsafe(box["stop"].set)  # type: ignore[attr-defined]
        thread.join(10)
        assert not thread.is_alive()
