"""The read-only web dashboard: `GET /` and `GET /dashboard` on the control API.

One server-rendered HTML page (inline CSS, no script, no external assets: it must work
on a resolver host with no Internet, which is when it is needed) that answers what an
operator asks when a zone above their users breaks: are answers failing, why (the EDE
codes), which NTAs are in force and when they end, is the trust store healthy, and what
to type next. It refreshes itself every 5 seconds.

It shows what the API already computes: it calls the handlers of GET /v1/status and
GET /v1/nta and reads their JSON, so the page and the API can never disagree. Every
value that comes from data (zone names, reasons, recheck results, store errors) goes
through html.escape: an NTA reason is typed by whoever holds the token, and the page is
read in a browser.

Totals since start-up hide a new failure under hours of good answers (on 2026-05-05 the
SERVFAIL rate climbed slowly as caches drained), so the page also keeps a few counter
snapshots in memory, taken when it is drawn, and shows the last minute's counts and rates.
"""

from __future__ import annotations

import collections
import html
import json
import os
import shlex
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from anchord.control.config import parse_endpoint
from anchord.control.ntastore import format_duration
from anchord.core.outcome import EdeCode

if TYPE_CHECKING:  # api.py imports this module to register the routes
    from anchord.control.api import Control

PATHS = ("/", "/dashboard")
REFRESH_SECONDS = 5
WINDOW = 60.0  # seconds of history behind the "last minute" columns
_MIN_SPAN = 10.0  # a rate over less than this is noise; wait for the next refreshes
_MIN_GAP = 2.0  # many open tabs must not fill the history with near-identical snapshots
# EDE codes that mean validation failed (DESIGN.md: the codes a validator gives most).
_DNSSEC_FAILURES = frozenset({1, 2, 5, 6, 7, 8, 9, 10, 11, 12, 25})
# RFC 8914 spells these words this way; title() alone would write "Dnssec", "Rrsigs".
_WORDS = {"DNSSEC": "DNSSEC", "DNSKEY": "DNSKEY", "DS": "DS", "NSEC": "NSEC",
          "NSEC3": "NSEC3", "RRSIGS": "RRSIGs", "NXDOMAIN": "NXDOMAIN"}


def ede_title(code: int) -> str:
    """6 -> 'DNSSEC Bogus', 33 -> 'Negative Trust Anchor' (the registry's wording)."""
    try:
        name = EdeCode(code).name
    except ValueError:
        return "unassigned"
    return " ".join(_WORDS.get(w, w.capitalize()) for w in name.split("_"))


class Recent:
    """Counter snapshots of about the last minute; `delta` gives the increase since then."""

    def __init__(self) -> None:
        self._snaps: collections.deque[tuple[float, dict[str, int]]] = collections.deque(
            maxlen=int(WINDOW / _MIN_GAP) + 2)

    def delta(self, now: float, counts: dict[str, int]) -> tuple[float, dict[str, int]] | None:
        """Record `counts`; (seconds covered, increase per key) over up to WINDOW seconds,
        or None while the history is too short to say anything."""
        # Keep the newest snapshot older than WINDOW so the span reaches a full minute.
        while len(self._snaps) >= 2 and now - self._snaps[1][0] >= WINDOW:
            self._snaps.popleft()
        base = self._snaps[0] if self._snaps else None
        if not self._snaps or now - self._snaps[-1][0] >= _MIN_GAP:
            self._snaps.append((now, dict(counts)))
        if base is None or now - base[0] < _MIN_SPAN:
            return None
        return now - base[0], {k: v - base[1].get(k, 0) for k, v in counts.items()}


def register(app: web.Application, control: Control) -> None:
    page = Dashboard(control)
    for path in PATHS:
        app.router.add_get(path, page.handle)


class Dashboard:
    def __init__(self, control: Control) -> None:
        self.control = control
        self.recent = Recent()

    async def handle(self, request: web.Request) -> web.Response:
        # The API's own handlers: their documents, not a second copy of their logic.
        status = _doc(await self.control._status(request))
        ntas: list[dict[str, Any]] = _doc(await self.control._list_ntas(request))["ntas"]
        body = self.render(status, ntas, time.monotonic())
        resp = web.Response(text=body, content_type="text/html", charset="utf-8")
        resp.headers["Cache-Control"] = "no-store"
        return resp

    # -- the page --------------------------------------------------------------------------
    def render(self, status: dict[str, Any], ntas: list[dict[str, Any]], now: float) -> str:
        counters = status.get("counters", {})
        responses: dict[str, int] = counters.get("responses", {})
        edes = {int(k): v for k, v in counters.get("ede", {}).items()}
        counts = {f"rcode {k}": v for k, v in responses.items()}
        counts.update({f"ede {k}": v for k, v in edes.items()})
        recent = self.recent.delta(now, counts)
        parts = [
            _HEAD.format(refresh=REFRESH_SECONDS, css=_CSS),
            self._header(status),
            self._problems(status, recent),
            '<div class="grid">',
            self._answers(responses, edes, recent),
            self._trust(ntas),
            "</div>",
            self._next_steps(ntas, recent),
            "</body></html>\n",
        ]
        return "\n".join(p for p in parts if p)

    def _dns_endpoints(self) -> list[tuple[str, int]]:
        """Where clients reach the resolver: the bound sockets (port 0 resolved), else the
        configured addresses (a worker setup whose frontend object has no `bound`)."""
        bound = getattr(self.control.frontend, "bound", None) or []
        if bound:
            return sorted({(h, p) for _, h, p in bound})
        return [parse_endpoint(item) for item in self.control.config.server.listen]

    def _header(self, status: dict[str, Any]) -> str:
        cfg = self.control.config
        dns_at = [_hostport(h, p) for h, p in self._dns_endpoints()]
        api_at = cfg.control.listen
        if self.control.address is not None:
            api_at = _hostport(*self.control.address)
        c = status.get("counters", {})
        facts = [
            ("version", status.get("version", "?")),
            ("up", format_duration(status.get("uptime_seconds", 0))),
            ("DNS on", ", ".join(dns_at) + " (UDP+TCP)"),
            ("control API on", api_at),
            ("cache entries", status.get("cache", {}).get("answers", 0)),
            ("queries", f"{c.get('queries', 0)} (UDP {c.get('udp_queries', 0)}, "
                        f"TCP {c.get('tcp_queries', 0)})"),
            ("dropped", c.get("dropped", 0)),
            ("crashes", c.get("crashes", 0)),
        ]
        dl = "".join(f"<div><dt>{_e(k)}</dt><dd>{_e(v)}</dd></div>" for k, v in facts)
        return (f"<header><h1>anchord</h1><span class=\"muted\">read-only, refreshes every "
                f"{REFRESH_SECONDS} s</span></header><dl class=\"facts\">{dl}</dl>")

    def _problems(self, status: dict[str, Any],
                  recent: tuple[float, dict[str, int]] | None) -> str:
        store = status.get("trust_store", {})
        out = []
        if store.get("problem"):
            out.append(f"<b>Trust store problem:</b> {_e(store['problem'])}")
        if store.get("save_error"):
            out.append(f"<b>NTAs are in force but not saved:</b> {_e(store['save_error'])} "
                       "&mdash; they will be lost at the next restart until this is fixed.")
        if status.get("counters", {}).get("crashes"):
            out.append("<b>Crashes:</b> queries hit the last-resort error handler; each one "
                       "is a bug (the log has the traceback).")
        html_out = "".join(f'<div class="alert">{m}</div>' for m in out)
        if recent is not None:
            failed = sum(n for k, n in recent[1].items()
                         if k.startswith("ede ") and int(k[4:]) in _DNSSEC_FAILURES)
            if failed:
                html_out += (f'<div class="warn"><b>{failed} answer(s) in the last '
                             f"{recent[0]:.0f} s failed DNSSEC validation.</b> "
                             "If a zone above your users is broken, see &ldquo;What to do "
                             "next&rdquo; below.</div>")
        return html_out

    def _answers(self, responses: dict[str, int], edes: dict[int, int],
                 recent: tuple[float, dict[str, int]] | None) -> str:
        total = sum(responses.values())
        span, delta = recent if recent is not None else (0.0, {})
        recent_total = sum(v for k, v in delta.items() if k.startswith("rcode "))
        head = ("<tr><th></th><th>total</th><th>% of all</th>"
                + (f"<th>last {span:.0f} s</th><th>per min</th><th>% of these</th></tr>"
                   if recent else "<th colspan=3 class=muted>last minute: shown after "
                                  f"{_MIN_SPAN:.0f} s open</th></tr>"))

        def row(label: str, key: str, n: int, cls: str = "") -> str:
            cells = f"<td>{n}</td><td>{_pct(n, total)}</td>"
            if recent is not None:
                d = delta.get(key, 0)
                cells += (f"<td>{d}</td><td>{d * 60 / span:.1f}</td>"
                          f"<td>{_pct(d, recent_total)}</td>")
            return f'<tr class="{cls}"><th>{label}</th>{cells}</tr>'

        rrows = [row(_e(k), f"rcode {k}", n, "bad" if k == "SERVFAIL" else "")
                 for k, n in sorted(responses.items(), key=lambda kv: -kv[1])]
        erows = [row(f"{c} <span class=muted>{_e(ede_title(c))}</span>", f"ede {c}", n,
                     "bad" if c in _DNSSEC_FAILURES else "")
                 for c, n in sorted(edes.items())]
        none = '<tr><td colspan=6 class="muted">none yet</td></tr>'
        return (f"<section><h2>Answers by rcode</h2><table>{head}"
                f"{''.join(rrows) or none}</table>"
                f"<h2>Extended DNS Errors in answers</h2><table>{head}"
                f"{''.join(erows) or none}</table>"
                '<p class="muted">Percentages are of the answers sent (since start-up, '
                "and in the recent window); one answer can carry several EDE codes.</p></section>")

    def _trust(self, ntas: list[dict[str, Any]]) -> str:
        rows = []
        for n in ntas:
            last = "not yet" if not n.get("last_recheck") else (
                f"{_e(_short_time(n['last_recheck']))}<br>{_e(n.get('last_recheck_result') or '')}")
            if not n.get("recheck"):
                last = "off (--no-recheck)"
            rows.append(f"<tr><td class=zone>{_e(n['zone'])}</td><td>{_e(n['reason'])}</td>"
                        f"<td class=t>{_e(_short_time(n['added']))}</td>"
                        f"<td class=t>{_e(format_duration(n['expires_in']))}</td>"
                        f"<td>{last}</td></tr>")
        table = ("<table class=left><tr><th>zone</th><th>reason</th><th>added (UTC)</th>"
                 "<th>ends in</th><th>last recheck</th></tr>"
                 + ("".join(rows) or '<tr><td colspan=5 class="muted">none</td></tr>')
                 + "</table>")
        insecure = self.control.config.dnssec.insecure_zones
        zones = ", ".join(f"<span class=zone>{_e(z)}</span>" for z in insecure) or \
            '<span class="muted">none</span>'
        return (f"<section><h2>Negative trust anchors ({len(ntas)})</h2>{table}"
                '<p class="muted">Names at and below these zones are answered without '
                "validation (EDE 33) until the NTA ends or a recheck finds the zone "
                "validating again.</p>"
                f"<h2>Insecure zones (config, permanent)</h2><p>{zones}</p></section>")

    def _next_steps(self, ntas: list[dict[str, Any]],
                    recent: tuple[float, dict[str, int]] | None) -> str:
        # The CLI finds the API and its token through the config `anchord serve` runs
        # with, so the commands name that file, as the shell must read it.
        cfg = self.control.config
        if cfg.source_file:
            c = f" -c {shlex.quote(cfg.source_file)}"
            where = (f"The commands read the API address and token from "
                     f"<code>{_e(cfg.source_file)}</code>, the config file "
                     "<code>anchord serve</code> runs with.")
        else:
            # No -c: both sides use the defaults, and the token file is relative to the
            # folder each runs in, so the CLI must run where the server was started.
            c = ""
            token = os.path.abspath(cfg.path(cfg.control.token_file))
            where = ("<code>anchord serve</code> runs without a config file (the "
                     "defaults): run the commands without <code>-c</code> in the folder "
                     "it was started in, where they find its token "
                     f"(<code>{_e(token)}</code>).")
        dns_at = self._dns_endpoints()
        host, port = dns_at[0] if dns_at else ("127.0.0.1", 53)
        at = f"@{host}" + ("" if port == 53 else f" -p {port}")
        cmds = [
            ("See why a name fails: the EDE text names the zone, record and key tag",
             f"dig +dnssec NAME {at}"),
            ("A zone above your users is broken (bogus): let its names resolve",
             f'anchord nta add ZONE --lifetime 1h --reason "what broke, ticket"{c}'),
        ]
        cmds += [(f"Once {n['zone']} validates again (the recheck also ends it by itself): "
                  "end its NTA now",
                  f"anchord nta remove {n['zone']}{c}") for n in ntas]
        cmds += [
            ("After fixing or lifting an NTA, drop answers cached meanwhile",
             f"anchord cache flush ZONE{c}"),
            ("NTAs as a table or JSON", f"anchord nta list{c}"),
        ]
        items = "".join(f"<li>{_e(why)}<pre>{_e(cmd)}</pre></li>" for why, cmd in cmds)
        return (f"<section class=\"next\"><h2>What to do next</h2><ol>{items}</ol>"
                f'<p class="muted">{where} '
                "JSON: <code>/v1/status</code>, <code>/v1/nta</code>; metrics: "
                "<code>/metrics</code>.</p></section>")


def _doc(resp: web.Response) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(resp.text or "{}")
    return doc


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _short_time(iso: str) -> str:
    """The API's '2026-05-05T19:30:00+00:00' as '2026-05-05 19:30:00' (the column says UTC)."""
    return iso.replace("T", " ").removesuffix("+00:00")


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f} %" if whole else "&ndash;"


_HEAD = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="{refresh}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>anchord</title><style>{css}</style></head><body>"""

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.2em 2em;color:#222;background:#fafafa}
header{display:flex;align-items:baseline;gap:1em}h1{margin:0;font-size:1.6em}
h2{font-size:1.1em;margin:1.2em 0 .4em}
.muted{color:#777;font-weight:normal}
.facts{display:flex;flex-wrap:wrap;gap:.4em 2em;margin:.6em 0}
.facts dt{font-size:.8em;color:#777}.facts dd{margin:0;font-weight:600}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(480px,1fr));gap:0 2em}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{border-bottom:1px solid #e3e3e3;padding:.25em .4em;text-align:right;vertical-align:top}
table:not(.left) th{white-space:nowrap}
th:first-child,td:first-child,table.left td,table.left th{text-align:left}
tr.bad th,tr.bad td{color:#a30000}
td.t{white-space:nowrap}
td.zone,.zone{font-family:ui-monospace,monospace;font-weight:600}
.alert{background:#a30000;color:#fff;padding:.6em .9em;margin:.5em 0;border-radius:4px;
font-size:1.05em}
.warn{background:#fff3cd;border:1px solid #e0b400;padding:.5em .9em;margin:.5em 0;
border-radius:4px}
pre{display:table;background:#272822;color:#f8f8f2;
padding:.35em .7em;margin:.2em 0 .5em;border-radius:3px}
.next ol{padding-left:1.4em}
"""

__all__ = ["PATHS", "Dashboard", "Recent", "ede_title", "register"]
