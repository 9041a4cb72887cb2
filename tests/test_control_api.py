"""The control API over loopback HTTP, in front of a resolver on the in-process testbed."""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import dns.name
import dns.rcode
import dns.rdatatype
import pytest
from prometheus_client.parser import text_string_to_metric_families

from anchord.control import api as api_module
from anchord.control.api import (
    Control,
    ControlError,
    load_or_create_token,
    nta_view,
    start_control,
)
from anchord.control.ntastore import FileTrustStore, TrustStoreError, nta_reason
from anchord.core.outcome import EdeCode, Question, Security
from anchord.core.trustmap import NegativeAnchor
from anchord.frontend.server import Frontend
from tests.conftest import World

TOKEN = "s3cret-token"
BOGUS = "www.bogus.de."


class Client:
    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base

    async def call(self, method: str, path: str, body: Any = None, token: str | None = TOKEN,
                   raw: bytes | None = None,
                   headers: dict[str, str] | None = None) -> tuple[int, Any]:
        headers = dict(headers or {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        data = raw if raw is not None else (None if body is None else json.dumps(body))
        async with self.session.request(method, self.base + path, data=data,
                                        headers=headers) as r:
            text = await r.text()
            if r.content_type == "application/json":
                return r.status, json.loads(text)
            return r.status, text


def run_api(world: World, tmp_path: Path,
            body: Callable[[Control, Client], Awaitable[None]],
            state_file: Path | None = None, read_timeout: float | None = None) -> None:
    """Start the API on an ephemeral loopback port, run `body` against it, stop it."""
    world.config.control.listen = "127.0.0.1:0"
    state = state_file if state_file is not None else tmp_path / "nta.json"

    async def main() -> None:
        control = Control(world.config, world.resolver, FileTrustStore(state))
        if read_timeout is not None:
            control.read_timeout = read_timeout
        world.resolver.on_trust_change = control.persist
        control.attach(Frontend(world.resolver, world.config.server))
        url = await control.start_api(TOKEN)
        try:
            async with aiohttp.ClientSession() as session:
                await body(control, Client(session, url))
        finally:
            await control.close()

    asyncio.run(main())


def test_token_is_required_and_checked(world: World, tmp_path: Path) -> None:
    async def body(control: Control, api: Client) -> None:
        for token in (None, "wrong", ""):
            status, doc = await api.call("GET", "/v1/status", token=token)
            assert status == 401 and "token" in doc["error"]
        status, doc = await api.call("GET", "/v1/nta", token="wrong")
        assert status == 401
        status, doc = await api.call("GET", "/v1/status")
        assert status == 200 and doc["version"] and doc["ntas"] == 0

    run_api(world, tmp_path, body)


def test_nta_lifecycle_changes_answers_and_state_file(world: World, tmp_path: Path) -> None:
    q = Question(dns.name.from_text(BOGUS), dns.rdatatype.A)

    async def body(control: Control, api: Client) -> None:
        before = await world.resolver.resolve(q)
        # Bogus is SERVFAIL on the wire (render.py); the outcome keeps the verdict.
        assert before.security is Security.BOGUS
        assert [e.code for e in before.edes][:1] == [EdeCode.DNSSEC_BOGUS]
        status, doc = await api.call("POST", "/v1/nta", {"zone": "bogus.de", "lifetime": "2h",
                                                         "reason": "key rollover"})
        assert status == 201, doc
        assert doc["zone"] == "bogus.de." and doc["expires_in"] == 7200
        assert doc["reason"] == "key rollover" and doc["recheck"] is True
        # The cached failure was flushed: the next answer is insecure, with EDE 33.
        under = await world.resolver.resolve(q)
        assert under.rcode == dns.rcode.NOERROR and under.security is Security.INSECURE
        assert EdeCode.NEGATIVE_TRUST_ANCHOR in [e.code for e in under.edes]
        status, doc = await api.call("GET", "/v1/nta")
        assert [n["zone"] for n in doc["ntas"]] == ["bogus.de."]
        assert doc["ntas"][0]["added"].endswith("+00:00")
        saved = json.loads((tmp_path / "nta.json").read_text())
        assert [n["zone"] for n in saved["ntas"]] == ["bogus.de."]
        status, doc = await api.call("DELETE", "/v1/nta/bogus.de")
        assert status == 200 and doc["removed"]["zone"] == "bogus.de."
        status, doc = await api.call("DELETE", "/v1/nta/bogus.de.")
        assert status == 404 and "no NTA for bogus.de." in doc["error"]
        after = await world.resolver.resolve(q)
        assert after.security is Security.BOGUS and after.edes[0].code == EdeCode.DNSSEC_BOGUS
        assert json.loads((tmp_path / "nta.json").read_text())["ntas"] == []

    run_api(world, tmp_path, body)


@pytest.mark.parametrize("request_body,words", [
    ({"zone": "de", "lifetime": "8d"}, "longer than the maximum, 7d"),
    ({"zone": "de", "lifetime": 604801}, "nta.max_lifetime"),
    ({"zone": "de", "lifetime": "soon"}, "not understood"),
    ({"zone": "a..de"}, "not a domain name"),
    ({"zone": "has space.de"}, "white space"),
    ({"zone": "x" * 64 + ".de"}, "not a domain name"),
    ({"zone": 42}, "not a domain name"),
    ({}, "zone is required"),
    ({"zone": " "}, "zone is required"),
    ({"zone": None}, "zone is required"),
    ({"zone": "."}, "root"),
    ({"zone": "de", "recheck": "yes"}, "'recheck'"),
    (["de"], "JSON object"),
    ({"zone": "c2.de", "extra": 1},
     "unknown key 'extra' in the request body (known: lifetime, reason, recheck, zone)"),
    ({"zone": "de", "lifetime": 0.5}, "at least 1 second"),
    ({"zone": "de", "lifetime": 1e308}, "far too long"),
    ({"zone": "de", "lifetime": "1m1m"}, "repeats a unit"),
    ({"zone": "de", "lifetime": "-5"}, "must be positive"),
    ({"zone": "de", "lifetime": "\u0661\u0662\u0660"}, "ASCII digits"),
    ({"zone": "*.de"}, "wildcard label"),
    ({"zone": "de", "reason": "x" * 1200}, "at most 300"),
    ({"zone": "de", "reason": "a\nFAKE anchord: NTA removed"}, "one line of printable"),
    ({"zone": "de", "reason": "a\x1b[2Jb"}, "one line of printable"),
    ({"zone": "a.*.de"}, "wildcard label"),
    ({"zone": "bad\x00.de"}, "non-printable character U+0000"),
    ({"zone": "bad\x07.de"}, "non-printable character U+0007"),
    ({"zone": "\\000.de"}, "a label holds the byte 0x00"),  # escapes decoded: refused
    ({"zone": "a\\032b.de"}, "a label holds the byte 0x20"),
])
def test_bad_nta_requests_are_400(world: World, tmp_path: Path, request_body: Any,
                                  words: str) -> None:
    async def body(control: Control, api: Client) -> None:
        status, doc = await api.call("POST", "/v1/nta", request_body)
        assert status == 400 and words in doc["error"], doc
        assert world.resolver.trust.ntas() == []

    run_api(world, tmp_path, body)


@pytest.mark.parametrize("raw,words", [
    (b'{"zone": "de", "lifetime": NaN}', "not a finite number"),
    (b'{"zone": "de", "lifetime": Infinity}', "not a finite number"),
])
def test_nan_and_infinity_lifetimes_are_400(world: World, tmp_path: Path, raw: bytes,
                                            words: str) -> None:
    async def body(control: Control, api: Client) -> None:
        status, doc = await api.call("POST", "/v1/nta", raw=raw)
        assert status == 400 and words in doc["error"] and len(doc["error"]) < 160, doc

    run_api(world, tmp_path, body)


@pytest.mark.parametrize("raw,words", [
    (b"[" * 60000, "nests JSON more than 8 levels"),  # json.loads: RecursionError
    (b'{"zone": "de", "lifetime": ' + b"9" * 5000 + b"}", "a number of 5000 digits"),
    (b'{"zone": "de", "lifetime": -' + b"9" * 5000 + b"}", "a number of 5000 digits"),
    (b'{"zone": ' + b"[" * 500 + b"]" * 500 + b"}", "nests JSON more than 8 levels"),
    (b'{"zone": "de", "reason": "\xff"}', "not valid JSON"),
    (b"\xff\xfe", "not valid JSON"),
    (b'{"zone": "de", "zone": "com"}', "gives 'zone' twice"),  # not the last one silently
], ids=["60000-brackets", "5000-digits", "5000-digits-negative", "nested-500", "bad-utf8-string",
        "bad-utf8", "duplicate-key"])
def test_every_body_decode_failure_is_a_json_400(world: World, tmp_path: Path, raw: bytes,
                                                 words: str) -> None:
    async def body(control: Control, api: Client) -> None:
        for path in ("/v1/nta", "/v1/cache/flush"):
            status, doc = await api.call("POST", path, raw=raw)
            assert status == 400 and words in doc["error"] and len(doc["error"]) < 160, doc

    run_api(world, tmp_path, body)


def test_a_handler_bug_is_a_json_500_with_a_logged_traceback(
        world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    async def body(control: Control, api: Client) -> None:
        def broken() -> None:
            raise RuntimeError("counter snapshot went wrong")

        monkeypatch.setattr(control.collector, "stats", broken)
        status, doc = await api.call("GET", "/v1/status")
        assert status == 500 and "internal error on GET /v1/status" in doc["error"], doc
        status, doc = await api.call("GET", "/v1/nta")  # the API still answers
        assert status == 200

    with caplog.at_level("ERROR", logger="anchord.control"):
        run_api(world, tmp_path, body)
    failed = [r for r in caplog.records if "GET /v1/status failed" in r.getMessage()]
    assert failed and failed[0].exc_info is not None
    assert "counter snapshot went wrong" in caplog.text


def test_a_one_second_nta_reads_one_second_left_a_moment_after_it_is_added() -> None:
    nta = NegativeAnchor(dns.name.from_text("de."), "", 1000.0, 1001.0, True)
    assert nta_view(nta, 1000.004)["expires_in"] == 1
    assert nta_view(nta, 1001.5)["expires_in"] == 0


def test_flush_body_takes_only_zone(world: World, tmp_path: Path) -> None:
    async def body(control: Control, api: Client) -> None:
        status, doc = await api.call("POST", "/v1/cache/flush", {"zone": "de", "all": True})
        assert status == 400 and doc["error"] == ("unknown key 'all' in the request body "
                                                  "(known: zone)")

    run_api(world, tmp_path, body)


def test_too_large_body_names_the_limit(world: World, tmp_path: Path) -> None:
    async def body(control: Control, api: Client) -> None:
        big = json.dumps({"zone": "de", "reason": "x" * 70000}).encode()
        status, doc = await api.call("POST", "/v1/nta", raw=big)
        assert status == 413 and doc["error"] == ("the request body is larger than the "
                                                  "limit of 65536 bytes")

    run_api(world, tmp_path, body)


def test_401_does_not_reveal_the_token_path(world: World, tmp_path: Path) -> None:
    async def body(control: Control, api: Client) -> None:
        status, doc = await api.call("GET", "/v1/status", token=None)
        assert status == 401 and "control.token_file" in doc["error"]
        assert world.config.control.token_file not in doc["error"]
        assert "/" not in doc["error"]

    run_api(world, tmp_path, body)


@pytest.mark.parametrize("request_bytes", [
    b"POST /v1/nta HTTP/1.1\r\nHost: x\r\n",  # headers never finished
    b"POST /v1/nta HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode() +
    b"\r\nContent-Length: 100\r\n\r\n{\"zone\"",  # body never finished
])
def test_half_sent_request_is_closed_after_the_read_timeout(world: World, tmp_path: Path,
                                                            request_bytes: bytes) -> None:
    async def body(control: Control, api: Client) -> None:
        assert control.address is not None
        reader, writer = await asyncio.open_connection(*control.address)
        writer.write(request_bytes)
        await writer.drain()
        start = asyncio.get_running_loop().time()
        # The server closes it (after a 408 for the body case): EOF well before 10 s.
        await asyncio.wait_for(reader.read(), 5)
        assert asyncio.get_running_loop().time() - start < 5
        writer.close()

    run_api(world, tmp_path, body, read_timeout=0.5)


async def _timed_exchange(address: tuple[str, int], request: bytes
                          ) -> tuple[bytes, float, float]:
    """Send `request`, read until the server closes: (reply, first byte at, EOF at)."""
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection(*address)
    writer.write(request)
    await writer.drain()
    start = loop.time()
    first = await asyncio.wait_for(reader.read(1), 30)
    first_at = loop.time() - start
    rest = await asyncio.wait_for(reader.read(), 30)
    eof_at = loop.time() - start
    writer.close()
    return first + rest, first_at, eof_at


def test_408_comes_at_the_read_timeout_and_the_close_right_after(world: World,
                                                                 tmp_path: Path) -> None:
    async def body(control: Control, api: Client) -> None:
        assert control.address is not None
        reply, first_at, eof_at = await _timed_exchange(
            control.address, b"POST /v1/nta HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            + TOKEN.encode() + b"\r\nContent-Length: 100\r\n\r\n{\"zone\"")
        assert reply.startswith(b"HTTP/1.1 408 ") and b"within 2 s" in reply
        assert 1.9 < first_at < 2.5
        # aiohttp's own lingering (10 s by default) once added a second read timeout.
        assert eof_at < 2 + api_module.LINGER + 0.5

    run_api(world, tmp_path, body, read_timeout=2)


@pytest.mark.parametrize("length", [b"70000", b"99999999999"])
def test_over_limit_content_length_is_413_before_any_body(world: World, tmp_path: Path,
                                                          length: bytes) -> None:
    async def body(control: Control, api: Client) -> None:
        assert control.address is not None
        reply, first_at, eof_at = await _timed_exchange(
            control.address, b"POST /v1/nta HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            + TOKEN.encode() + b"\r\nContent-Length: " + length + b"\r\n\r\n")
        assert reply.startswith(b"HTTP/1.1 413 ") and b"limit of 65536 bytes" in reply
        assert first_at < 0.5 and eof_at < api_module.LINGER + 0.5

    run_api(world, tmp_path, body, read_timeout=5)


def test_defaults_and_maximum_lifetime(world: World, tmp_path: Path) -> None:
    async def body(control: Control, api: Client) -> None:
        status, doc = await api.call("POST", "/v1/nta", {"zone": "de"})
        assert status == 201 and doc["expires_in"] == world.config.nta.default_lifetime
        status, doc = await api.call("POST", "/v1/nta", {"zone": "de", "lifetime": "7d",
                                                         "recheck": False})
        assert status == 201 and doc["replaced"] is True and doc["expires_in"] == 604800
        status, doc = await api.call("POST", "/v1/nta", raw=b"{nope")
        assert status == 400 and "not valid JSON" in doc["error"]

    run_api(world, tmp_path, body)


def test_cache_flush_and_unknown_endpoints(world: World, tmp_path: Path) -> None:
    q = Question(dns.name.from_text("c1.de."), dns.rdatatype.SOA)

    async def body(control: Control, api: Client) -> None:
        await world.resolver.resolve(q)
        assert len(world.resolver.core.answers) > 0
        status, doc = await api.call("POST", "/v1/cache/flush", {"zone": "de"})
        assert status == 200 and doc["zone"] == "de." and doc["answers_removed"] >= 1
        assert doc["workers"] == world.config.server.workers == 1
        assert world.resolver.core.answers.get(q) is None
        status, doc = await api.call("POST", "/v1/cache/flush", {"zone": "a..b"})
        assert status == 400
        status, doc = await api.call("GET", "/v1/nothing")
        assert status == 404 and "no such endpoint" in doc["error"]
        status, doc = await api.call("PUT", "/v1/nta")
        assert status == 405 and "error" in doc

    run_api(world, tmp_path, body)


def test_metrics_parse_and_count_edes(world: World, tmp_path: Path) -> None:
    async def body(control: Control, api: Client) -> None:
        st = control.frontend.stats
        st.udp_queries, st.tcp_queries = 5, 2
        st.responses[2] += 3
        st.edes[6] += 3
        await api.call("POST", "/v1/nta", {"zone": "bogus.de"})
        status, text = await api.call("GET", "/metrics", token=None)  # open on loopback
        assert status == 200
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for fam in text_string_to_metric_families(text) for s in fam.samples}
        assert samples[("anchord_queries_total", (("transport", "udp"),))] == 5
        assert samples[("anchord_responses_total", (("rcode", "SERVFAIL"),))] == 3
        assert samples[("anchord_ede_total", (("code", "6"), ("name", "dnssec_bogus")))] == 3
        assert samples[("anchord_ntas_active", ())] == 1
        assert ("anchord_cache_entries", (("cache", "answers"),)) in samples
        assert samples[("anchord_build_info", (("version", "0.1.0"),))] == 1

    run_api(world, tmp_path, body)


def test_token_file_is_created_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "control.token"
    token = load_or_create_token(path)
    assert len(token) >= 32 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_token(path) == token
    path.write_text("\n")
    with pytest.raises(ControlError, match="empty"):
        load_or_create_token(path)


def test_start_control_restores_ntas_and_reports_port_in_use(world: World,
                                                             tmp_path: Path) -> None:
    world.config.base_dir = str(tmp_path)
    world.config.control.listen = "127.0.0.1:0"
    now = world.clock.now()
    (tmp_path / "anchord-nta.json").write_text(json.dumps({"version": 1, "ntas": [
        {"zone": "bogus.de.", "reason": "r", "added_at": now, "expires_at": now + 60},
        {"zone": "old.de.", "reason": "", "added_at": now - 99, "expires_at": now - 1},
    ]}))

    async def main() -> None:
        control = await start_control(world.config, world.resolver)
        assert control is not None and control.address is not None
        try:
            assert [n.zone.to_text() for n in world.resolver.trust.ntas()] == ["bogus.de."]
            # The expired one is gone from the file as well.
            saved = json.loads((tmp_path / "anchord-nta.json").read_text())
            assert [n["zone"] for n in saved["ntas"]] == ["bogus.de."]
            assert (tmp_path / "anchord-control.token").exists()
            world.config.control.listen = f"127.0.0.1:{control.address[1]}"
            with pytest.raises(ControlError, match="cannot listen for the control API"):
                await start_control(world.config, world.resolver)
        finally:
            await control.close()
        assert await start_control(world.config, object()) is None

    asyncio.run(main())


def test_status_names_the_dropped_state_file_entries(world: World, tmp_path: Path) -> None:
    world.config.base_dir = str(tmp_path)
    world.config.control.listen = "127.0.0.1:0"
    now = world.clock.now()
    (tmp_path / "anchord-nta.json").write_text(json.dumps({"version": 1, "ntas": [
        {"zone": "bogus.de.", "reason": "r", "added_at": now, "expires_at": now + 60},
        {"zone": "a..b", "reason": "r", "added_at": now, "expires_at": now + 60},
    ]}))

    async def main() -> None:
        control = await start_control(world.config, world.resolver)
        assert control is not None and control.address is not None
        try:
            # The valid NTA is in force, and written back without the bad one.
            assert [n.zone.to_text() for n in world.resolver.trust.ntas()] == ["bogus.de."]
            saved = json.loads((tmp_path / "anchord-nta.json").read_text())
            assert [n["zone"] for n in saved["ntas"]] == ["bogus.de."]
            token = (tmp_path / "anchord-control.token").read_text().strip()
            async with aiohttp.ClientSession() as session:
                api = Client(session, f"http://127.0.0.1:{control.address[1]}")
                status, doc = await api.call("GET", "/v1/status", token=token)
            problem = doc["trust_store"]["problem"]
            assert status == 200, doc
            assert "entry 2 'a..b': zone 'a..b' is not a domain name" in problem, doc
            assert "anchord-nta.json.corrupt-" in problem
            assert "starting with the other 1" in problem
        finally:
            await control.close()

    asyncio.run(main())


def test_a_state_file_no_copy_can_be_made_of_is_left_as_it_is_until_a_change(
        world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """The copy fails as on a read-only file system: os.link raises EROFS (a patched
    function fails for root too; folder permissions do not stop root). The original, with
    the entry that cannot be read, must survive the start, the start-up save included
    (restore_ntas saved at once and overwrote it); `nta add` through the API still saves,
    rewriting the file (the copy is tried again first and fails again)."""
    world.config.base_dir = str(tmp_path)
    world.config.control.listen = "127.0.0.1:0"
    now = world.clock.now()
    path = tmp_path / "anchord-nta.json"
    original = json.dumps({"version": 1, "ntas": [
        {"zone": "bogus.de.", "reason": "r", "added_at": now, "expires_at": now + 60},
        {"zone": "a..b", "reason": "r", "added_at": now, "expires_at": now + 60},
    ]}).encode()
    path.write_bytes(original)

    def read_only(src: object, dst: object) -> None:
        raise OSError(errno.EROFS, "Read-only file system", str(src), None, str(dst))

    monkeypatch.setattr(os, "link", read_only)

    async def main() -> None:
        with caplog.at_level(logging.WARNING, logger="anchord.control"):
            control = await start_control(world.config, world.resolver)
        assert control is not None and control.address is not None
        try:
            assert [n.zone.to_text() for n in world.resolver.trust.ntas()] == ["bogus.de."]
            assert path.read_bytes() == original  # untouched, start-up save included
            assert not list(tmp_path.glob("anchord-nta.json.corrupt-*"))
            lines = [r.getMessage() for r in caplog.records]
            assert len(lines) == 1, lines
            assert "no copy could be kept (Read-only file system)" in lines[0]
            assert "the file is left as it is" in lines[0]
            assert "starting with the other 1" in lines[0]
            token = (tmp_path / "anchord-control.token").read_text().strip()
            async with aiohttp.ClientSession() as session:
                api = Client(session, f"http://127.0.0.1:{control.address[1]}")
                status, doc = await api.call("GET", "/v1/status", token=token)
                assert "the file is left as it is" in doc["trust_store"]["problem"]
                caplog.clear()
                with caplog.at_level(logging.WARNING, logger="anchord.control"):
                    status, doc = await api.call("POST", "/v1/nta", {"zone": "c1.de"},
                                                 token=token)
                assert status == 201 and doc["saved"] is True, doc
                saved = json.loads(path.read_text())
                assert [n["zone"] for n in saved["ntas"]] == ["bogus.de.", "c1.de."]
                (line,) = [r.getMessage() for r in caplog.records]
                assert "rewritten by the first save of the NTAs" in line
                assert "still no copy could be kept (Read-only file system)" in line
                status, doc = await api.call("GET", "/v1/status", token=token)
                assert "rewritten by the first save of the NTAs" in doc["trust_store"]["problem"]
                caplog.clear()
                status, doc = await api.call("DELETE", "/v1/nta/c1.de", token=token)
                assert status == 200 and doc["saved"] is True, doc
                assert not caplog.records  # an ordinary save from then on
        finally:
            await control.close()

    asyncio.run(main())


def test_metrics_and_status_add_the_other_workers_snapshots(world: World,
                                                            tmp_path: Path) -> None:
    from anchord.control.metrics import counts_of
    from anchord.frontend.server import FrontendStats

    other = FrontendStats(queries=7, udp_queries=4, tcp_queries=3, dropped=1, crashes=1,
                          tcp_connections=2)
    other.responses[2] += 5
    other.edes[6] += 2
    other.edes[22] += 1
    other.rejections["formerr"] += 1
    # Through JSON, as the snapshot travels on the pipe from the worker.
    snapshot = json.loads(json.dumps({"stats": counts_of(other), "cache_answers": 11}))

    async def body(control: Control, api: Client) -> None:
        st = control.frontend.stats
        st.queries, st.udp_queries = 5, 5
        st.responses[2] += 3
        st.edes[6] += 3
        control.collector.peers = lambda: [snapshot]
        own_cache = len(world.resolver.core.answers)
        status, text = await api.call("GET", "/metrics", token=None)
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for fam in text_string_to_metric_families(text) for s in fam.samples}
        assert samples[("anchord_queries_total", (("transport", "udp"),))] == 9
        assert samples[("anchord_queries_total", (("transport", "tcp"),))] == 3
        assert samples[("anchord_responses_total", (("rcode", "SERVFAIL"),))] == 8
        assert samples[("anchord_ede_total", (("code", "6"), ("name", "dnssec_bogus")))] == 5
        assert samples[("anchord_ede_total", (("code", "22"),
                                              ("name", "no_reachable_authority")))] == 1
        assert samples[("anchord_rejections_total", (("reason", "formerr"),))] == 1
        assert samples[("anchord_dropped_total", ())] == 1
        assert samples[("anchord_crashes_total", ())] == 1
        assert samples[("anchord_tcp_connections_total", ())] == 2
        assert samples[("anchord_cache_entries", (("cache", "answers"),))] == own_cache + 11
        status, doc = await api.call("GET", "/v1/status")
        assert doc["counters"]["queries"] == 12 and doc["counters"]["dropped"] == 1
        assert doc["counters"]["responses"] == {"SERVFAIL": 8}
        assert doc["counters"]["ede"] == {"6": 5, "22": 1}
        assert doc["cache"]["answers"] == own_cache + 11
        # The live counters of this worker are read, never written, by the sum.
        assert st.queries == 5 and st.edes[6] == 3

    run_api(world, tmp_path, body)


def test_nta_change_that_cannot_be_saved_is_not_a_success(world: World, tmp_path: Path) -> None:
    unwritable = Path("/proc/anchord-nta.json")  # not writable, even for root

    async def body(control: Control, api: Client) -> None:
        status, doc = await api.call("POST", "/v1/nta", {"zone": "bogus.de"})
        assert status == 500 and doc["saved"] is False, doc
        assert doc["error"] == ("NTA for bogus.de. is in force but NOT saved (cannot save NTAs "
                                f"to {unwritable}: No such file or directory): it will not "
                                "survive a restart")
        assert [n.zone.to_text() for n in world.resolver.trust.ntas()] == ["bogus.de."]
        status, doc = await api.call("DELETE", "/v1/nta/bogus.de")
        assert status == 500 and doc["saved"] is False and "NOT saved" in doc["error"]
        assert world.resolver.trust.ntas() == []

    run_api(world, tmp_path, body, state_file=unwritable)


def test_saved_nta_change_says_so(world: World, tmp_path: Path) -> None:
    async def body(control: Control, api: Client) -> None:
        status, doc = await api.call("POST", "/v1/nta", {"zone": "bogus.de"})
        assert status == 201 and doc["saved"] is True and "error" not in doc
        status, doc = await api.call("DELETE", "/v1/nta/bogus.de")
        assert status == 200 and doc["saved"] is True

    run_api(world, tmp_path, body)


def test_a_very_long_zone_in_the_url_gets_the_apis_json_error(world: World,
                                                               tmp_path: Path) -> None:
    """aiohttp's request-line limit (8190 bytes) answered a 10,000-character
    /v1/nta/<zone> with its own text/plain 400 before the API saw it."""
    async def body(control: Control, api: Client) -> None:
        status, doc = await api.call("DELETE", "/v1/nta/" + "a" * 10_000)
        assert status == 400 and isinstance(doc, dict), doc
        assert "is not a domain name" in doc["error"] and len(doc["error"]) < 200, doc

    run_api(world, tmp_path, body)


def test_a_store_that_did_not_take_the_change_is_not_a_success(world: World,
                                                                tmp_path: Path) -> None:
    """The fleet store raises TrustStoreError (its follower failed: the change is not in
    Redis): "saved" must be false, as for a file that cannot be written."""
    class NotPushed:
        path = tmp_path / "fleet.json"

        def load(self) -> list[NegativeAnchor]:
            return []

        def save(self, ntas: list[NegativeAnchor]) -> None:
            raise TrustStoreError("NTAs saved to fleet.json but NOT pushed to Redis")

    async def body(control: Control, api: Client) -> None:
        control.store = NotPushed()
        status, doc = await api.call("POST", "/v1/nta", {"zone": "bogus.de"})
        assert status == 500 and doc["saved"] is False, doc
        assert "NOT pushed to Redis" in doc["error"]
        # It is in the fleet's cache file: lost to the other instances, not to a restart.
        assert doc["error"].endswith("the other instances do not have it"), doc
        status, doc = await api.call("DELETE", "/v1/nta/bogus.de")
        assert status == 500 and doc["error"].endswith("the other instances keep the NTA")

    run_api(world, tmp_path, body)


def test_the_api_and_the_state_file_refuse_the_same_reasons(world: World,
                                                            tmp_path: Path) -> None:
    async def body(control: Control, api: Client) -> None:
        for reason in ("a\ud800b", "a\nb", "x" * 301, {"a": [1, 2]}):
            status, doc = await api.call("POST", "/v1/nta", {"zone": "bogus.de",
                                                             "reason": reason})
            assert status == 400 and "'reason'" in doc["error"], doc
            with pytest.raises(ValueError) as refused:
                nta_reason(reason)
            assert doc["error"] == str(refused.value)
        status, doc = await api.call("POST", "/v1/nta", {"zone": "bogus.de",
                                                         "recheck": "false"})
        assert status == 400 and doc["error"] == "'recheck' must be true or false", doc

    run_api(world, tmp_path, body)


def test_a_body_that_does_not_match_its_content_encoding_is_a_400(
        world: World, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """aiohttp fails to decode it inside request.read(): a client's error, not our bug."""
    async def body(control: Control, client: Client) -> None:
        status, data = await client.call("POST", "/v1/nta", raw=b'{"zone": "x.de"}',
                                         headers={"Content-Encoding": "gzip"})
        assert (status, data) == (400, {"error": "the request body cannot be decoded "
                                                 "(Content-Encoding gzip)"})

    with caplog.at_level("DEBUG", logger="anchord.control"):
        run_api(world, tmp_path, body)
    assert "Traceback" not in caplog.text and not any(r.exc_info for r in caplog.records)


@pytest.mark.parametrize(("request_head", "reason"), [
    (b"GET /v1/nta/" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
     "a request line or header over 65536 bytes"),
    (b"GET /v1/nta HTTP/1.1\r\nHost: x\r\nX-Long: " + b"b" * 9_000 + b"\r\n\r\n",
     "a request line or header over 8190 bytes"),
    (b"GET /v1/nta HTTP/1.1\r\nHost: x\r\nno colon\r\n\r\n", "header"),
], ids=["request-line", "header", "malformed"])
def test_a_request_past_the_http_limits_is_a_400_and_one_log_line(
        world: World, tmp_path: Path, caplog: pytest.LogCaptureFixture,
        request_head: bytes, reason: str) -> None:
    """aiohttp answers these itself, and logged each with a full traceback (LineTooLong):
    a client's mistake, so one line with its address and the reason."""
    async def body(control: Control, api: Client) -> None:
        assert control.address is not None
        reply, _, _ = await _timed_exchange(control.address, request_head)
        assert reply.split(b"\r\n")[0].endswith(b" 400 Bad Request"), reply[:200]
        status, _ = await api.call("GET", "/v1/nta")  # the API still answers
        assert status == 200

    with caplog.at_level("DEBUG"):
        run_api(world, tmp_path, body)
    assert "Traceback" not in caplog.text, caplog.text
    lines = [r for r in caplog.records if "127.0.0.1" in r.getMessage()]
    assert len(lines) == 1 and lines[0].exc_info is None, caplog.text
    assert reason in lines[0].getMessage(), lines[0].getMessage()
    assert lines[0].levelno <= logging.WARNING
