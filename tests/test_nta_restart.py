"""NTAs across a restart (RFC 7646 with README's promises): the recheck keeps asking what
clients asked under the NTA, and the state file is held to the API's rules when read."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from pathlib import Path

import dns.name
import dns.rdatatype
import pytest

from anchord.control.ntastore import FileTrustStore
from anchord.core.outcome import EdeCode, Outcome, Question
from anchord.core.trustmap import NegativeAnchor
from tests.conftest import World

BOGUS_ZONE = dns.name.from_text("bogus.de.")


def ask(world: World, name: str) -> Outcome:
    q = Question(dns.name.from_text(name), dns.rdatatype.A)
    return asyncio.run(world.resolver.resolve(q))


def under_nta(o: Outcome) -> bool:
    return any(e.code is EdeCode.NEGATIVE_TRUST_ANCHOR for e in o.edes)


def counting_store(world: World, path: Path) -> list[list[NegativeAnchor]]:
    """Wire `world` to a file store as `anchord serve` does; the list records each save."""
    store = FileTrustStore(path)
    saves: list[list[NegativeAnchor]] = []

    def save(ntas: list[NegativeAnchor]) -> None:
        saves.append(ntas)
        store.save(ntas)

    world.resolver.on_trust_change = save
    return saves


def restart(make_world: Callable[..., World], path: Path, at: float) -> World:
    """A new process after kill -9: only what is on disk comes back."""
    world = make_world(at=at)
    counting_store(world, path)
    world.resolver.restore_ntas(FileTrustStore(path).load())
    return world


def test_rfc7646_recheck_after_a_restart_still_asks_what_clients_asked(
        make_world: Callable[..., World], tmp_path: Path) -> None:
    """The fresh-user trial: bogus.de's SOA validates, www.bogus.de/A does not. Without
    the asked question in the state file, the first recheck after a restart saw only the
    SOA, removed the NTA and www.bogus.de was SERVFAIL again."""
    path = tmp_path / "nta.json"
    w = make_world()
    counting_store(w, path)
    w.resolver.add_nta(BOGUS_ZONE, lifetime=3600, reason="www does not verify")
    assert under_nta(ask(w, "www.bogus.de."))
    # kill -9 before any recheck ran: nothing is written at exit.
    w2 = restart(make_world, path, w.clock.now() + 10)
    w2.clock.advance(301)
    assert asyncio.run(w2.resolver.maintain_ntas()) == []
    (nta,) = w2.resolver.trust.ntas()
    assert nta.last_recheck_result.startswith("bogus"), nta.last_recheck_result
    assert under_nta(ask(w2, "www.bogus.de."))


def test_questions_are_saved_when_first_recorded_and_at_rechecks_not_per_query(
        make_world: Callable[..., World], tmp_path: Path) -> None:
    path = tmp_path / "nta.json"
    w = make_world()
    saves = counting_store(w, path)
    w.resolver.add_nta(BOGUS_ZONE, lifetime=3600)
    assert len(saves) == 1
    for _ in range(5):
        assert under_nta(ask(w, "www.bogus.de."))
    assert len(saves) == 2  # the first time only
    names = [f"n{i}.bogus.de." for i in range(7)]
    for name in names:
        ask(w, name)
    assert len(saves) == 9  # the list grew to 8: each new one saved
    ask(w, "www.bogus.de.")  # asked again: now the newest, and no write for the order
    assert len(saves) == 9
    ask(w, "late.bogus.de.")  # the list is full: this one replaces the oldest (n0)...
    assert len(saves) == 9  # ...and waits for the next save
    w.clock.advance(301)
    assert asyncio.run(w.resolver.maintain_ntas()) == []  # www still fails
    assert len(saves) == 10
    stored = json.loads(path.read_text())["ntas"][0]
    assert stored["questions"] == [f"{n} A" for n in names[1:]] + [
        "www.bogus.de. A", "late.bogus.de. A"]
    assert stored["last_recheck_result"].startswith("bogus")
    w.clock.advance(301)  # nothing new asked: the recheck's bookkeeping alone is not saved
    asyncio.run(w.resolver.maintain_ntas())
    assert len(saves) == 10
    w2 = restart(make_world, path, w.clock.now())
    (nta,) = w2.resolver.trust.ntas()
    assert [str(q) for q in nta.questions][-1] == "late.bogus.de./A"


def test_a_state_file_without_questions_still_loads(make_world: Callable[..., World],
                                                    tmp_path: Path) -> None:
    w = make_world()
    now = w.clock.now()
    path = tmp_path / "nta.json"
    path.write_text(json.dumps({"version": 1, "ntas": [
        {"zone": "bogus.de.", "reason": "r", "added_at": now, "expires_at": now + 60}]}))
    w2 = restart(make_world, path, now)
    (nta,) = w2.resolver.trust.ntas()
    assert nta.questions == ()


def test_state_file_root_nta_is_dropped_and_a_long_one_clamped(
        make_world: Callable[..., World], tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    """A hand-edited state file meets the API's rules: no NTA for the root (validation
    off for every name), no end beyond now + nta.max_lifetime."""
    w = make_world()
    now = w.clock.now()
    path = tmp_path / "nta.json"
    ten_years = 10 * 365 * 86400
    path.write_text(json.dumps({"version": 1, "ntas": [
        {"zone": ".", "reason": "", "added_at": now, "expires_at": now + ten_years,
         "recheck": False},
        {"zone": "*.de.", "reason": "", "added_at": now, "expires_at": now + 60},
        {"zone": "long.de.", "reason": "", "added_at": now, "expires_at": now + ten_years},
        {"zone": "bogus.de.", "reason": "r", "added_at": now, "expires_at": now + 60},
    ]}))
    with caplog.at_level(logging.WARNING):
        w2 = restart(make_world, path, now)
    ntas = {n.zone.to_text(): n for n in w2.resolver.trust.ntas()}
    assert sorted(ntas) == ["bogus.de.", "long.de."]
    assert ntas["long.de."].expires_at == now + w2.config.nta.max_lifetime
    assert ntas["bogus.de."].expires_at == now + 60
    root = [r.getMessage() for r in caplog.records if "'.'" in r.getMessage()]
    assert len(root) == 1 and "root" in root[0] and "dropped" in root[0], root
    assert any("'*.de.'" in r.getMessage() and "wildcard" in r.getMessage()
               for r in caplog.records)
    clamped = [r for r in caplog.records if "long.de." in r.getMessage()]
    assert len(clamped) == 1 and clamped[0].levelno == logging.WARNING
    assert "nta.max_lifetime = 604800" in clamped[0].getMessage()
    # The bad entries are kept for the operator, as for any unreadable entry.
    assert list(tmp_path.glob("nta.json.corrupt-*"))
    saved = json.loads(path.read_text())["ntas"]
    assert [n["zone"] for n in saved] == ["bogus.de.", "long.de."]


def test_a_fleet_nta_past_max_lifetime_is_cut_the_same_way_at_every_sync(
        make_world: Callable[..., World], caplog: pytest.LogCaptureFixture) -> None:
    """NTAs read from the fleet store (Redis) meet the same lifetime rule as the state
    file's; cut from when they were added, so the next sync sees no change."""
    w = make_world()
    now = w.clock.now()
    ten_years = 10 * 365 * 86400
    fleet = [NegativeAnchor(BOGUS_ZONE, "hand-made", now - 60, now + ten_years, False)]
    with caplog.at_level(logging.WARNING):
        assert w.resolver.replace_ntas(fleet)
        w.clock.advance(30)
        assert not w.resolver.replace_ntas(fleet)  # the same cut: nothing changed
    (nta,) = w.resolver.trust.ntas()
    assert nta.expires_at == now - 60 + w.config.nta.max_lifetime
    cut = [r for r in caplog.records if "bogus.de." in r.getMessage()]
    assert len(cut) == 1 and "nta.max_lifetime = 604800" in cut[0].getMessage()


def test_a_time_in_the_future_is_taken_as_now_and_the_nta_kept(
        make_world: Callable[..., World], tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    """A state file written by a clock that was ahead (or read by one stepped back): the
    NTA stays, its added_at and last recheck are taken as now, one warning names the zone
    and the stored value. Kept as it was, the first recheck waited for that future time,
    so a zone fixed meanwhile stayed under the NTA for its whole life."""
    w = make_world()
    now = w.clock.now()
    path = tmp_path / "nta.json"
    ahead = now + 3600
    path.write_text(json.dumps({"version": 1, "ntas": [
        {"zone": "bogus.de.", "reason": "r", "added_at": ahead, "expires_at": now + 7200,
         "last_recheck_at": ahead, "questions": ["www.bogus.de. A"]},
        # Within the tolerance (FUTURE_TOLERANCE): an instance a little ahead, as it is.
        {"zone": "near.de.", "reason": "", "added_at": now + 200, "expires_at": now + 600,
         "recheck": False},
        # Taken as now, then cut to nta.max_lifetime from now: one line with both.
        {"zone": "long.de.", "reason": "", "added_at": now + 6 * 86400,
         "expires_at": now + 13 * 86400, "recheck": False},
    ]}))
    with caplog.at_level(logging.WARNING):
        w2 = restart(make_world, path, now)
    ntas = {n.zone.to_text(): n for n in w2.resolver.trust.ntas()}
    assert sorted(ntas) == ["bogus.de.", "long.de.", "near.de."]
    assert (ntas["bogus.de."].added_at, ntas["bogus.de."].last_recheck_at) == (now, now)
    assert ntas["bogus.de."].expires_at == now + 7200  # the end is left as it was
    assert ntas["near.de."].added_at == now + 200
    assert ntas["long.de."].added_at == now
    assert ntas["long.de."].expires_at == now + w2.config.nta.max_lifetime
    lines = [r for r in caplog.records if "in the future" in r.getMessage()]
    assert len(lines) == 2 and all(r.levelno == logging.WARNING for r in lines)
    bogus, long = sorted(lines, key=lambda r: r.getMessage())
    assert "NTA for bogus.de. in the state file" in bogus.getMessage()
    assert f"'added_at' is {ahead!r}" in bogus.getMessage()
    assert f"'last_recheck_at' is {ahead!r}" in bogus.getMessage()
    assert "taken as now" in bogus.getMessage()
    assert "long.de." in long.getMessage() and "nta.max_lifetime" in long.getMessage()
    assert not any("near.de." in r.getMessage() for r in caplog.records)
    # Not a bad entry: no copy set aside; the start-up save writes the times taken.
    assert not list(tmp_path.glob("nta.json.corrupt-*"))
    saved = {n["zone"]: n for n in json.loads(path.read_text())["ntas"]}
    assert saved["bogus.de."]["added_at"] == now
    # The recheck is due recheck_interval after now, not after the stored time.
    w2.clock.advance(w2.config.nta.recheck_interval + 1)
    asyncio.run(w2.resolver.maintain_ntas())
    rechecked = w2.resolver.trust.nta(BOGUS_ZONE)
    assert rechecked is not None and rechecked.last_recheck_result.startswith("bogus")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        restart(make_world, path, w2.clock.now())  # the next start: nothing to say
    assert not any("in the future" in r.getMessage() for r in caplog.records)


def test_a_fleet_nta_added_in_the_future_is_taken_as_now_by_the_same_rule(
        make_world: Callable[..., World], caplog: pytest.LogCaptureFixture) -> None:
    """The fleet store's NTAs meet the same rule (Driver._held_to_time_rules, one for
    both); what is in force is pushed back to Redis, after which nothing changes."""
    w = make_world()
    now = w.clock.now()
    fleet = [NegativeAnchor(BOGUS_ZONE, "clock ahead", now + 3600, now + 7200, False)]
    with caplog.at_level(logging.WARNING):
        assert w.resolver.replace_ntas(fleet)
        (nta,) = w.resolver.trust.ntas()
        assert (nta.added_at, nta.expires_at) == (now, now + 7200)
        pushed_back = w.resolver.trust.ntas()  # what the store writes to Redis
        w.clock.advance(30)
        assert not w.resolver.replace_ntas(pushed_back)
    lines = [r.getMessage() for r in caplog.records if "bogus.de." in r.getMessage()]
    assert len(lines) == 1 and "from the fleet" in lines[0], lines
    assert f"'added_at' is {now + 3600!r}" in lines[0]


def test_a_bad_number_beside_a_dropped_root_nta_neither_stops_start_nor_loses_the_rest(
        make_world: Callable[..., World], tmp_path: Path) -> None:
    """The trial's file: a root NTA (dropped, so the file was set aside) and an endless
    one (1e400: OverflowError in restore_ntas); the next start had no NTAs at all."""
    w = make_world()
    now = w.clock.now()
    path = tmp_path / "nta.json"
    good = {"zone": "bogus.de.", "reason": "r", "added_at": now, "expires_at": now + 60}
    text = json.dumps({"version": 1, "ntas": [
        {**good, "zone": "."}, {**good, "zone": "c1.de.", "expires_at": "@"}, good]})
    path.write_text(text.replace('"@"', "1e400"))
    w2 = restart(make_world, path, now)
    assert [n.zone for n in w2.resolver.trust.ntas()] == [BOGUS_ZONE]
    assert under_nta(ask(w2, "www.bogus.de."))
    w3 = restart(make_world, path, now + 1)  # and the start after that
    assert [n.zone for n in w3.resolver.trust.ntas()] == [BOGUS_ZONE]
