"""The fleet trust store: two in-process resolvers sharing their NTAs through a real
redis-server on a loopback port (no persistence, in a temporary folder)."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import dns.name
import dns.rdatatype
import pytest
import redis

from anchord.control.fleet import RedisTrustStore, redact
from anchord.control.ntastore import TrustStoreError
from anchord.core.outcome import EdeCode, Question, Security
from tests.conftest import World
from tests.requirements import require_tools

_tools = require_tools("redis-server")

BOGUS = dns.name.from_text("bogus.de.")
Q = Question(dns.name.from_text("www.bogus.de."), dns.rdatatype.A)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self.folder)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.02)
        client.close()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, decode_responses=True)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    folder = tmp_path / "redis"
    folder.mkdir()
    srv = RedisServer(folder)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def _store(srv: RedisServer, cache: Path, name: str) -> RedisTrustStore:
    return RedisTrustStore(srv.url, cache, prefix="t", instance=name, connect_timeout=0.3,
                           command_timeout=0.5, poll_interval=0.5, retry_min=0.05,
                           retry_max=0.3)


async def _join(world: World, store: RedisTrustStore) -> RedisTrustStore:
    """What `anchord serve` does through Control: changes go to the store."""
    world.resolver.on_trust_change = store.save
    await store.start(world.resolver)
    return store


def _zones(world: World) -> list[str]:
    return [n.zone.to_text() for n in world.resolver.trust.ntas()]


async def _until(check: Callable[[], bool], within: float, what: str) -> float:
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > within:
            raise AssertionError(f"not within {within} s: {what}")
        await asyncio.sleep(0.01)
    return time.monotonic() - start


async def _edes(world: World) -> tuple[Security, list[int]]:
    out = await world.resolver.resolve(Q)
    return out.security, [e.code for e in out.edes]


def test_add_and_removal_reach_the_other_instance_within_a_second(
        server: RedisServer, make_world: Callable[..., World], tmp_path: Path) -> None:
    a, b = make_world(), make_world()

    async def main() -> None:
        sa = await _join(a, _store(server, tmp_path / "a.json", "a"))
        sb = await _join(b, _store(server, tmp_path / "b.json", "b"))
        try:
            security, codes = await _edes(b)
            assert security is Security.BOGUS and codes[:1] == [EdeCode.DNSSEC_BOGUS]
            a.resolver.add_nta(BOGUS, 7200, "key rollover")
            await _until(lambda: _zones(b) == ["bogus.de."], 1.0, "NTA on B")
            nta = b.resolver.trust.ntas()[0]
            assert nta.reason == "key rollover" and nta == a.resolver.trust.ntas()[0]
            # B's cached bogus answer was flushed: EDE 33 now.
            security, codes = await _edes(b)
            assert security is Security.INSECURE and EdeCode.NEGATIVE_TRUST_ANCHOR in codes
            stored = server.client().hgetall("t:ntas")
            assert list(stored) == ["bogus.de."]
            assert json.loads(stored["bogus.de."])["reason"] == "key rollover"
            # B's cache file follows too (what it would start from with Redis down).
            cached = json.loads((tmp_path / "b.json").read_text())
            assert [n["zone"] for n in cached["ntas"]] == ["bogus.de."]

            b.resolver.remove_nta(BOGUS)  # removal made on the other side
            await _until(lambda: _zones(a) == [], 1.0, "removal on A")
            security, codes = await _edes(a)
            assert security is Security.BOGUS and EdeCode.NEGATIVE_TRUST_ANCHOR not in codes
            assert server.client().hgetall("t:ntas") == {}
        finally:
            await sa.close()
            await sb.close()

    asyncio.run(main())


def test_concurrent_adds_and_expiry_lose_nothing(
        server: RedisServer, make_world: Callable[..., World], tmp_path: Path) -> None:
    a, b = make_world(), make_world()
    one, two = dns.name.from_text("one.de."), dns.name.from_text("two.de.")

    async def main() -> None:
        sa = await _join(a, _store(server, tmp_path / "a.json", "a"))
        sb = await _join(b, _store(server, tmp_path / "b.json", "b"))
        try:
            # Same loop turn: both pushes race for the hash.
            a.resolver.add_nta(one, 60, "a's")
            b.resolver.add_nta(two, 7200, "b's")
            both = ["one.de.", "two.de."]
            await _until(lambda: _zones(a) == both and _zones(b) == both, 1.0, "both on both")
            assert sorted(server.client().hgetall("t:ntas")) == both
            # A's clock passes one.de's end: A's expiry removes it fleet-wide, though B's
            # own clock has not got there yet.
            a.clock.advance(61)
            await a.resolver.maintain_ntas()
            await _until(lambda: _zones(b) == ["two.de."], 1.0, "expiry on B")
            assert sorted(server.client().hgetall("t:ntas")) == ["two.de."]
        finally:
            await sa.close()
            await sb.close()

    asyncio.run(main())


def test_redis_outage_keeps_the_last_state_and_a_restart_reads_the_cache(
        server: RedisServer, make_world: Callable[..., World], tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    a, b = make_world(), make_world()
    other = dns.name.from_text("other.de.")

    async def main() -> None:
        sa = await _join(a, _store(server, tmp_path / "a.json", "a"))
        sb = await _join(b, _store(server, tmp_path / "b.json", "b"))
        try:
            a.resolver.add_nta(BOGUS, 7200, "rollover")
            await _until(lambda: _zones(b) == ["bogus.de."], 1.0, "NTA on B")

            server.stop()
            await _until(lambda: bool(sa.problem and sb.problem), 3.0, "outage noticed")
            await asyncio.sleep(0.8)  # a few failed reconnects: still one warning each
            warnings = [r for r in caplog.records if "unreachable" in r.getMessage()]
            assert len(warnings) == 2, [r.getMessage() for r in warnings]
            for w in (a, b):
                assert _zones(w) == ["bogus.de."]
                security, codes = await _edes(w)
                assert security is Security.INSECURE and EdeCode.NEGATIVE_TRUST_ANCHOR in codes

            # A restarts while Redis is down: it starts from its cache file.
            await sa.close()
            a2 = make_world()
            sa = await _join(a2, _store(server, tmp_path / "a.json", "a"))
            assert sa.problem and _zones(a2) == ["bogus.de."]
            security, codes = await _edes(a2)
            assert security is Security.INSECURE and EdeCode.NEGATIVE_TRUST_ANCHOR in codes

            # Redis returns (empty: no persistence); the instances write their state back,
            # and a new add on A reaches B again.
            server.start()
            await _until(lambda: not sa.problem and not sb.problem, 3.0, "reconnected")
            await _until(lambda: sorted(server.client().hgetall("t:ntas")) == ["bogus.de."],
                         1.0, "state written back")
            a2.resolver.add_nta(other, 600, "after the outage")
            took = await _until(lambda: _zones(b) == ["bogus.de.", "other.de."], 1.0,
                                "add after the outage on B")
            assert took < 1.0
        finally:
            await sa.close()
            await sb.close()

    asyncio.run(main())


def test_changes_made_on_both_sides_during_an_outage_are_merged(
        server: RedisServer, make_world: Callable[..., World], tmp_path: Path) -> None:
    a, b = make_world(), make_world()
    late = dns.name.from_text("late.de.")

    async def main() -> None:
        sa = await _join(a, _store(server, tmp_path / "a.json", "a"))
        sb = await _join(b, _store(server, tmp_path / "b.json", "b"))
        try:
            a.resolver.add_nta(BOGUS, 7200)
            await _until(lambda: _zones(b) == ["bogus.de."], 1.0, "NTA on B")
            server.client().save()  # this time Redis comes back with its data
            server.stop()
            await _until(lambda: bool(sa.problem and sb.problem), 3.0, "outage noticed")
            a.resolver.add_nta(late, 600, "added while Redis was away")  # kept locally
            b.resolver.remove_nta(BOGUS)  # and a removal on the other side
            assert _zones(a) == ["bogus.de.", "late.de."] and _zones(b) == []
            server.start()
            await _until(lambda: _zones(a) == _zones(b) == ["late.de."], 3.0,
                         "both outage changes on both")
            assert sorted(server.client().hgetall("t:ntas")) == ["late.de."]
        finally:
            await sa.close()
            await sb.close()

    asyncio.run(main())


def test_a_password_never_reaches_the_logs() -> None:
    assert redact("redis://user:pw@10.0.0.1:6379/0") == "redis://user:***@10.0.0.1:6379/0"
    assert redact("redis://127.0.0.1:6379") == "redis://127.0.0.1:6379"


def test_a_bad_entry_in_the_cache_file_costs_only_itself(tmp_path: Path) -> None:
    # Read while Redis is away: the valid NTAs stay in force, the bad one is named.
    cache = tmp_path / "fleet.json"
    good = {"zone": "bogus.de.", "reason": "r", "added_at": 1.0, "expires_at": 2.0}
    cache.write_text(json.dumps({"version": 1, "ntas": [good, {"zone": "a..b"}],
                                 "fleet": {"synced": {}, "redis_version": 3}}))
    store = RedisTrustStore("redis://127.0.0.1:1/0", cache)
    assert [n.zone.to_text() for n in store._read_cache()] == ["bogus.de."]
    assert store._version == 3


def _hand_write(srv: RedisServer, field: str, raw: str) -> None:
    """What another tool (or an operator with redis-cli) does: a field and a version
    bump, announced as anchord announces its own changes."""
    client = srv.client()
    client.hset("t:ntas", field, raw)
    version = client.incr("t:version")
    client.publish("t:trust", json.dumps({"instance": "redis-cli", "version": version}))


def test_an_endless_entry_in_redis_costs_only_itself_and_never_wedges_the_writer(
        server: RedisServer, make_world: Callable[..., World], tmp_path: Path) -> None:
    """The trial: "expires_at": Infinity put c1.de under an endless NTA, GET /v1/nta
    answered 500, and the follower died: every later change stayed on this instance."""
    a = make_world()

    async def main() -> None:
        sa = await _join(a, _store(server, tmp_path / "a.json", "a"))
        try:
            now = a.clock.now()
            bad = {"zone": "c1.de.", "reason": "r", "added_at": now, "expires_at": "@",
                   "recheck": True, "last_recheck_at": None, "last_recheck_result": "",
                   "questions": []}
            for value, zone in (("Infinity", "c1.de."), ("1e300", "c2.de."),
                                (f'{now + 60}, "reason": "a\\ud800b"', "c4.de.")):
                raw = json.dumps({**bad, "zone": zone}).replace('"@"', value)
                _hand_write(server, zone, raw)
            await asyncio.sleep(1.0)
            assert _zones(a) == []  # none of them in force
            a.resolver.add_nta(dns.name.from_text("c3.de."), 600, "after the bad ones")
            await _until(lambda: "c3.de." in server.client().hgetall("t:ntas"), 2.0,
                         "c3.de. in Redis")
            # The bad fields are not ours to delete: left as they are.
            assert {"c1.de.", "c2.de.", "c4.de."} <= set(server.client().hgetall("t:ntas"))
            assert sa.failure == "" and sa.problem == ""
        finally:
            await sa.close()

    asyncio.run(main())


def test_a_follower_that_fails_says_so_at_save_and_recovers(
        server: RedisServer, make_world: Callable[..., World], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure other than an outage (here a bug in applying what Redis holds) is
    retried, not the follower's end, and a save meanwhile is not reported as done."""
    a = make_world()

    async def main() -> None:
        sa = await _join(a, _store(server, tmp_path / "a.json", "a"))
        try:
            real = a.resolver.replace_ntas

            def broken(ntas: object) -> bool:
                raise OverflowError("cannot convert float infinity to integer")

            monkeypatch.setattr(a.resolver, "replace_ntas", broken)
            _hand_write(server, "x.de.", "{}")  # any change makes the follower reload
            await _until(lambda: bool(sa.failure), 2.0, "the failure noticed")
            assert "OverflowError" in sa.problem
            with pytest.raises(TrustStoreError, match="NOT pushed to Redis"):
                a.resolver.add_nta(BOGUS, 600, "while broken")
            monkeypatch.setattr(a.resolver, "replace_ntas", real)
            await _until(lambda: "bogus.de." in server.client().hgetall("t:ntas"), 3.0,
                         "the change pushed once the follower works again")
            # The push lands in Redis before the same round's reload clears the failure.
            await _until(lambda: sa.failure == "" and sa.problem == "", 3.0,
                         "the failure cleared after the round that pushed")
            a.resolver.remove_nta(BOGUS)  # saves without an error again
        finally:
            await sa.close()

    asyncio.run(main())


def test_the_redis_entries_meet_the_state_files_rules(
        caplog: pytest.LogCaptureFixture) -> None:
    """One function for both: a recheck question outside the zone is left out, two
    fields for one zone keep one, a deep or huge value costs only its field."""
    from anchord.control.fleet import _decode_map

    entry = {"zone": "c1.de.", "reason": "r", "added_at": 1.0, "expires_at": 2.0,
             "questions": ["www.bogus.de. A", "www.c1.de. A"]}
    fields = {"c1.de.": json.dumps(entry), "C1.DE.": json.dumps(entry),
              "deep.de.": "[" * 100_000 + "]" * 100_000,
              "long.de.": json.dumps({**entry, "zone": "long.de."}).replace(
                  '"expires_at": 2.0', '"expires_at": ' + "9" * 5000)}
    with caplog.at_level(logging.WARNING, logger="anchord.fleet"):
        ntas, unreadable = _decode_map(fields)
    assert [n.zone.to_text() for n in ntas] == ["c1.de."]
    assert [q.qname.to_text() for q in ntas[0].questions] == ["www.c1.de."]
    assert sorted(unreadable) == ["c1.de.", "deep.de.", "long.de."]
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "'www.bogus.de. A' is not in c1.de." in text
    assert "are for the same zone" in text


def test_an_nta_added_in_the_future_is_taken_as_now_and_written_back_once(
        server: RedisServer, make_world: Callable[..., World], tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    """An entry written by an instance (or a tool) whose clock was ahead: kept, its
    added_at taken as now by the state file's rule, and what is in force written back to
    Redis, so later syncs find nothing to change (no warning per poll, no flush)."""
    a = make_world()

    async def main() -> None:
        now = a.clock.now()
        entry = {"zone": "bogus.de.", "reason": "clock ahead", "added_at": now + 3600,
                 "expires_at": now + 7200, "recheck": False, "last_recheck_at": None,
                 "last_recheck_result": "", "questions": []}
        _hand_write(server, "bogus.de.", json.dumps(entry))
        with caplog.at_level(logging.WARNING):
            sa = await _join(a, _store(server, tmp_path / "a.json", "a"))
            try:
                (nta,) = a.resolver.trust.ntas()
                assert (nta.added_at, nta.expires_at) == (now, now + 7200)
                await _until(lambda: json.loads(server.client().hget("t:ntas", "bogus.de.")
                                                or "{}").get("added_at") == now, 2.0,
                             "added_at taken as now written back to Redis")
                await asyncio.sleep(1.2)  # two polls
            finally:
                await sa.close()
        lines = [r.getMessage() for r in caplog.records if "in the future" in r.getMessage()]
        assert len(lines) == 1 and "bogus.de. from the fleet" in lines[0], lines
        assert f"'added_at' is {now + 3600!r}" in lines[0]

    asyncio.run(main())
