"""The read-only dashboard (GET / and /dashboard) on the control API."""

from __future__ import annotations

import html
from pathlib import Path

import dns.asyncquery
import dns.message
import dns.rcode
from aiohttp import web

from anchord.control.api import Control
from anchord.control.config import load_config
from anchord.control.dashboard import Dashboard, Recent, ede_title
from tests.conftest import World
from tests.test_control_api import BOGUS, Client, run_api


def test_page_is_html_and_shows_ntas_answers_and_edes(world: World, tmp_path: Path) -> None:
    world.config.server.listen = ["127.0.0.1:0"]
    world.config.dnssec.insecure_zones = ["lab.example."]

    async def body(control: Control, api: Client) -> None:
        fe = control.frontend
        await fe.start()
        try:
            port = fe.bound[0][2]
            q = dns.message.make_query(BOGUS, "A", use_edns=0)
            r = await dns.asyncquery.udp(q, "127.0.0.1", port=port, timeout=5)
            assert r.rcode() == dns.rcode.SERVFAIL
            status, doc = await api.call("POST", "/v1/nta", {
                "zone": "bogus.de", "lifetime": "1h", "reason": "DENIC rollover, RRSIGs bad"})
            assert status == 201, doc
            r = await dns.asyncquery.udp(q, "127.0.0.1", port=port, timeout=5)
            assert r.rcode() == dns.rcode.NOERROR
        finally:
            await fe.close()
        async with api.session.get(api.base + "/") as resp:  # no token: loopback
            assert resp.status == 200 and resp.content_type == "text/html"
            page = await resp.text()
        assert 'http-equiv="refresh"' in page and "<script" not in page
        assert "bogus.de." in page and "DENIC rollover, RRSIGs bad" in page
        assert "lab.example." in page  # the insecure zones from the config
        assert f"127.0.0.1:{port}" in page and "0.1.0" in page
        # Both answers were counted with their EDE: 6 (bogus), then 33 (the NTA).
        assert "6 <span class=muted>DNSSEC Bogus</span>" in page
        assert "33 <span class=muted>Negative Trust Anchor</span>" in page
        assert "SERVFAIL" in page and "NOERROR" in page
        # The world's config was not read from a file: the commands take no -c.
        assert "anchord nta remove bogus.de.</pre>" in page and "-c FILE" not in page
        assert "anchord nta add ZONE --lifetime 1h" in page
        assert f"dig +dnssec NAME @127.0.0.1 -p {port}" in page
        async with api.session.get(api.base + "/dashboard") as resp:
            assert resp.status == 200 and "bogus.de." in await resp.text()

    run_api(world, tmp_path, body)


def test_next_steps_name_the_config_file_the_server_runs_with(world: World,
                                                              tmp_path: Path) -> None:
    """`-c FILE` left the operator to guess which file; the page shows the real one,
    quoted for the shell (a folder name with a space is common on some systems)."""
    folder = tmp_path / "etc anchord"
    folder.mkdir()
    (folder / "anchord.toml").write_text("[log]\nlevel = \"info\"\n")
    world.config.source_file = load_config(folder / "anchord.toml").source_file

    async def body(control: Control, api: Client) -> None:
        status, doc = await api.call("POST", "/v1/nta", {"zone": "bogus.de"})
        assert status == 201, doc
        status, page = await api.call("GET", "/", token=None)
        assert status == 200 and "FILE" not in page
        quoted = html.escape(f"'{folder}/anchord.toml'")
        assert f"anchord nta remove bogus.de. -c {quoted}</pre>" in page
        assert f"anchord nta list -c {quoted}</pre>" in page

    run_api(world, tmp_path, body)


def test_next_steps_without_a_config_file_say_where_to_run_them(world: World,
                                                                 tmp_path: Path) -> None:
    """Started without -c, the server runs on the defaults and finds its token file in
    its own folder; the CLI, given no -c either, looks in the folder it runs in."""
    assert world.config.source_file == ""

    async def body(control: Control, api: Client) -> None:
        status, page = await api.call("GET", "/", token=None)
        assert status == 200 and "-c " not in page and "FILE" not in page
        assert "without a config file" in page
        assert html.escape(str(Path.cwd() / "anchord-control.token")) in page

    run_api(world, tmp_path, body)


def test_data_is_escaped_and_store_problems_shown(world: World, tmp_path: Path) -> None:
    async def body(control: Control, api: Client) -> None:
        status, _ = await api.call("POST", "/v1/nta", {
            "zone": "bogus.de", "reason": "<script>alert(1)</script> & \"x\""})
        assert status == 201
        control.store.problem = "state file <b>moved</b> aside"  # type: ignore[attr-defined]
        control.save_error = "cannot save NTAs: disk full"
        status, page = await api.call("GET", "/", token=None)
        assert status == 200
        assert "<script>" not in page and "<b>moved</b>" not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;x&quot;" in page
        assert "state file &lt;b&gt;moved&lt;/b&gt; aside" in page
        assert 'class="alert"' in page and "cannot save NTAs: disk full" in page

    run_api(world, tmp_path, body)


def test_token_needed_off_loopback(world: World, tmp_path: Path) -> None:
    async def body(control: Control, api: Client) -> None:
        # As start_api decides for a non-loopback control.listen (tests bind loopback only).
        control._metrics_open = False
        for path in ("/", "/dashboard", "/metrics"):
            status, doc = await api.call("GET", path, token=None)
            assert status == 401 and "token" in doc["error"], path
            status, _ = await api.call("GET", path, token="wrong")
            assert status == 401
        status, page = await api.call("GET", "/")
        assert status == 200 and "<h1>anchord</h1>" in page

    run_api(world, tmp_path, body)


def test_recent_counts_cover_about_a_minute() -> None:
    recent = Recent()
    assert recent.delta(1000.0, {"rcode SERVFAIL": 10}) is None  # nothing to compare yet
    assert recent.delta(1001.0, {"rcode SERVFAIL": 11}) is None  # too short to be a rate
    for t in range(1005, 1200, 5):
        got = recent.delta(float(t), {"rcode SERVFAIL": 10 + (t - 1000), "ede 6": t - 1000})
    assert got is not None
    span, delta = got
    assert 60 <= span <= 65 and delta["rcode SERVFAIL"] == span
    assert delta["ede 6"] == span
    # A code first seen inside the window counts from zero.
    got = recent.delta(1200.0, {"rcode SERVFAIL": 210, "ede 6": 200, "ede 3": 4})
    assert got is not None and got[1]["ede 3"] == 4


def test_ede_names_follow_the_registry() -> None:
    assert ede_title(6) == "DNSSEC Bogus"
    assert ede_title(3) == "Stale Answer"
    assert ede_title(10) == "RRSIGs Missing"
    assert ede_title(19) == "Stale NXDOMAIN Answer"
    assert ede_title(27) == "Unsupported NSEC3 Iterations"
    assert ede_title(33) == "Negative Trust Anchor"
    assert ede_title(31) == "unassigned"


def test_registered_once_for_both_paths(world: World) -> None:
    control = Control(world.config, world.resolver, store=None)  # type: ignore[arg-type]
    app = control.app()
    handlers = {r.resource.canonical: r.handler for r in app.router.routes()
                if r.method == "GET" and r.resource is not None}
    # One Dashboard behind both paths: the last-minute history is shared, not split.
    assert handlers["/"] == handlers["/dashboard"]
    assert isinstance(handlers["/"].__self__, Dashboard)
    assert isinstance(app, web.Application)
