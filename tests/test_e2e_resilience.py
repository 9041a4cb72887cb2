"""The .de break end to end: real testbed process, real `anchord serve`, real dig, and
the operator's real commands (`anchord testbed fault`, `anchord nta`)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import pytest

from .e2e_support import (
    ANCHORD,
    Reply,
    ResolverProc,
    TestbedProc,
    dig,
    free_port,
    set_toml_key,
    start_resolver,
    start_testbed,
)

TTL = 3  # every TTL in the testbed capped, so caches drain within seconds


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestbedProc, ResolverProc]]:
    directory = tmp_path_factory.mktemp("resilience")
    tb = start_testbed(directory, children=10, extra=["--max-ttl", str(TTL)])
    config = tb.resolver_toml
    text = config.read_text()
    text = set_toml_key(text, "control", "enabled", "true")
    text = set_toml_key(text, "control", "listen", f'"127.0.0.1:{free_port()}"')
    text = set_toml_key(text, "serve_stale", "failure_recheck", "2")
    config.write_text(text)
    resolver = start_resolver(config)
    try:
        yield tb, resolver
    finally:
        resolver.stop()
        tb.stop()


def anchord(*args: str) -> str:
    r = subprocess.run([*ANCHORD, *args], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def ask(resolver: ResolverProc, name: str) -> Reply:
    return dig(resolver.port, name)


def test_de_rollover_stale_then_bogus_then_nta_then_repair(
        world: tuple[TestbedProc, ResolverProc]) -> None:
    tb, resolver = world
    cfg = str(resolver.config)
    before = ask(resolver, "www.c0.de.")
    assert before.rcode == "NOERROR" and before.ad, before.output

    anchord("testbed", "fault", "--dir", str(tb.directory), "de.", "rollover")
    time.sleep(TTL + 1)

    stale = ask(resolver, "www.c0.de.")
    assert stale.rcode == "NOERROR", stale.output
    assert stale.ede_codes[0] == 3, stale.output  # a stale answer says so first

    broken = ask(resolver, "www.unsigned.de.")
    assert broken.rcode == "SERVFAIL", broken.output
    assert broken.ede_codes[0] == 6 and 22 not in broken.ede_codes, broken.output
    text = broken.edes[0][1]
    assert "NSEC3" in text and " by de key tag " in text, broken.output

    anchord("nta", "add", "de", "--lifetime", "1h", "--reason", "rollover", "-c", cfg)
    listed = anchord("nta", "list", "-c", cfg)
    assert "de" in listed and "rollover" in listed
    for name in ("www.unsigned.de.", "www.c3.de.", "www.c0.de."):
        r = ask(resolver, name)
        assert r.rcode == "NOERROR" and not r.ad, r.output
        assert 33 in r.ede_codes, r.output

    anchord("testbed", "fault", "--dir", str(tb.directory), "de.", "repair")
    anchord("nta", "remove", "de", "-c", cfg)
    deadline = time.monotonic() + 20
    while True:
        r = ask(resolver, "www.c4.de.")
        if r.rcode == "NOERROR" and r.ad:
            break
        assert time.monotonic() < deadline, r.output
        time.sleep(0.5)


# -- unreachable and servfail, on a testbed and resolver of their own ----------------------

@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestbedProc, ResolverProc]]:
    """Short timers, so a cache drains, a refresh gives up and a failure retries in seconds."""
    tb = start_testbed(tmp_path_factory.mktemp("unreachable"), children=3,
                       extra=["--max-ttl", "2"])
    config = tb.resolver_toml
    text = config.read_text()
    for section, key, value in (("upstream", "timeout", "0.3"),
                                ("serve_stale", "client_timeout", "0.5"),
                                ("serve_stale", "failure_recheck", "3"),
                                ("failure_cache", "max_ttl", "2")):
        text = set_toml_key(text, section, key, value)
    config.write_text(text)
    resolver = start_resolver(config)
    try:
        yield tb, resolver
    finally:
        resolver.stop()
        tb.stop()


@pytest.mark.parametrize(("zone", "kind"), [("c1.de", "unreachable"), ("c2.de", "servfail")])
def test_rfc8767_unreachable_and_servfail_stale_then_servfail_then_repair(
        quick: tuple[TestbedProc, ResolverProc], zone: str, kind: str) -> None:
    tb, resolver = quick
    cached, uncached = f"www.{zone}.", f"nosuch.{zone}."
    before = ask(resolver, cached)
    assert before.rcode == "NOERROR" and before.ad and not before.edes, before.output

    anchord("testbed", "fault", "--dir", str(tb.directory), zone, kind)
    time.sleep(3)  # past the 2 s TTL

    # Stale at once (the client timer may answer before the refresh has failed, with 3
    # alone); once it has failed, the stale answers also say why: 22 or 23.
    deadline = time.monotonic() + 5
    while True:
        stale = ask(resolver, cached)
        assert stale.rcode == "NOERROR" and stale.ede_codes[0] == 3, stale.output
        if {22, 23} & set(stale.ede_codes[1:]):
            break
        assert time.monotonic() < deadline, stale.output
        time.sleep(0.3)
    failed = ask(resolver, uncached)
    assert failed.rcode == "SERVFAIL", failed.output
    assert failed.ede_codes[0] in (22, 23), failed.output
    assert zone in failed.edes[0][1], failed.output

    anchord("testbed", "fault", "--dir", str(tb.directory), zone, "repair")
    deadline = time.monotonic() + 10
    while True:
        fresh, gone = ask(resolver, cached), ask(resolver, uncached)
        if fresh.ad and not fresh.edes and gone.rcode == "NXDOMAIN" and not gone.edes:
            break
        assert time.monotonic() < deadline, fresh.output + gone.output
        time.sleep(0.5)
