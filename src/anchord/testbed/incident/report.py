"""DIR/report.html and its PNGs (matplotlib, Agg): the six charts an operator looks at,
with the break, the NTA, the repair and the NTA's removal marked on each."""

from __future__ import annotations

import datetime
import html
import json
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from anchord.testbed.incident.record import Event, Upstream, read_events
from anchord.testbed.incident.summary import table
from anchord.testbed.incident.timeline import UTC, Timeline

BIN_MINUTES = 5
CHARTS = (
    ("1-de-rcodes.png", "Response codes for .de (share of client questions)"),
    ("2-de-rcodes-without-stale.png", "The same, stale answers not counted as answers"),
    ("3-client-volume.png", "Client queries vs unique (client, name) pairs per minute"),
    ("4-upstream.png", "Upstream queries per minute: total and to de's servers"),
    ("5-ede.png", "EDE codes in responses per minute"),
    ("6-control-rcodes.png", "Control group (hK.hoster.com): response codes"),
)


def _saver(out: Path, made: list[tuple[str, str]]) -> Callable[[Any, str, str], None]:
    """save(fig, name, title): write a chart as a PNG in `out` and list it in `made`."""

    def save(fig: Any, name: str, title: str) -> None:
        fig.autofmt_xdate()
        fig.tight_layout()
        fig.savefig(out / name, dpi=90)
        _plt().close(fig)
        made.append((name, title))

    return save


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _marks(summary: dict[str, Any], tl: Timeline) -> list[tuple[str, float]]:
    def parse(v: str | None) -> float | None:
        if not v:
            return None
        return datetime.datetime.strptime(v, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC
                                                                          ).timestamp()

    out = [("break", tl.break_at), ("NTA", parse(summary.get("nta_added_at"))),
           ("repair", tl.repair_at), ("NTA removed", parse(summary.get("nta_removed_at")))]
    return [(label, t) for label, t in out if t is not None]


def _dt(t: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(t, UTC).replace(tzinfo=None)


def _bin(t: float, tl: Timeline) -> int:
    return int((t - tl.start) // (BIN_MINUTES * 60))


def _nbins(tl: Timeline) -> int:
    return int((tl.end - tl.start) // (BIN_MINUTES * 60)) + 1


def _xs(tl: Timeline) -> list[datetime.datetime]:
    return [_dt(tl.start + (i + 0.5) * BIN_MINUTES * 60) for i in range(_nbins(tl))]


def shares(events: list[Event], tl: Timeline, group: str, stale_counts: bool = True
           ) -> dict[str, list[float | None]]:
    totals = [0] * _nbins(tl)
    counts: dict[str, list[int]] = defaultdict(lambda: [0] * _nbins(tl))
    for e in events:
        if e.group != group or e.attempt != 1:
            continue
        b = _bin(e.t, tl)
        if not 0 <= b < len(totals):
            continue
        totals[b] += 1
        if e.stale and not stale_counts:
            counts["stale (left out)"][b] += 1
            continue
        counts[e.rcode if e.rcode in ("NOERROR", "SERVFAIL", "NXDOMAIN") else "other"][b] += 1
    return {k: [c / t if t else None for c, t in zip(v, totals, strict=True)]
            for k, v in counts.items()}


def _setup(ax: Any, title: str, marks: list[tuple[str, float]], ylabel: str) -> None:
    import matplotlib.dates as mdates

    ax.set_title(title, fontsize=10)
    ax.set_ylabel(ylabel)
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M"))  # type: ignore[no-untyped-call]
    ax.grid(alpha=0.3)
    colors = {"break": "red", "NTA": "green", "repair": "blue", "NTA removed": "purple"}
    for label, t in marks:
        ax.axvline(_dt(t), color=colors.get(label, "grey"), ls="--", lw=1)
        ax.annotate(label, (_dt(t), 1.0), xycoords=("data", "axes fraction"), rotation=90,
                    va="top", ha="right", fontsize=7, color=colors.get(label, "grey"))


EDE_NAMES = {3: "3 Stale Answer", 6: "6 DNSSEC Bogus", 9: "9 DNSKEY Missing",
             13: "13 Cached Error", 19: "19 Stale NXDOMAIN", 22: "22 No Reachable Authority",
             33: "33 Negative Trust Anchor"}


def ede_per_minute(events: list[Event], tl: Timeline) -> dict[int, list[float]]:
    """Responses carrying each EDE code, per simulated minute, in BIN_MINUTES bins."""
    n = _nbins(tl)
    ede: dict[int, list[int]] = defaultdict(lambda: [0] * n)
    for e in events:
        b = _bin(e.t, tl)
        if 0 <= b < n:
            for code in set(e.ede):
                ede[code][b] += 1
    return {code: [v / BIN_MINUTES for v in counts] for code, counts in ede.items()}


COLORS = {"NOERROR": "tab:green", "SERVFAIL": "tab:red", "NXDOMAIN": "tab:orange",
          "other": "tab:grey", "stale (left out)": "tab:olive"}


def charts(out: Path, events: list[Event], upstream: list[Upstream],
           summary: dict[str, Any], tl: Timeline) -> list[tuple[str, str]]:
    plt = _plt()
    marks = _marks(summary, tl)
    xs = _xs(tl)
    made: list[tuple[str, str]] = []
    save = _saver(out, made)

    for (name, title), group, stale_counts in (
            (CHARTS[0], "de", True), (CHARTS[1], "de", False), (CHARTS[5], "control", True)):
        fig, ax = plt.subplots(figsize=(9, 3.6))
        for k, ys in sorted(shares(events, tl, group, stale_counts).items()):
            ax.plot(xs, [float("nan") if y is None else y for y in ys], label=k,
                    color=COLORS.get(k))
        ax.set_ylim(-0.02, 1.05)
        _setup(ax, title, marks, "share")
        ax.legend(fontsize=8, loc="center left")
        save(fig, name, title)

    # 3: volume vs unique pairs
    n = _nbins(tl)
    volume = [0] * n
    pairs: list[set[tuple[int, str]]] = [set() for _ in range(n)]
    for e in events:
        b = _bin(e.t, tl)
        if 0 <= b < n:
            volume[b] += 1
            pairs[b].add((e.client, e.name))
    per_min = float(BIN_MINUTES)
    fig, ax = plt.subplots(figsize=(9, 3.6))
    ax.plot(xs, [v / per_min for v in volume], label="client queries (retries included)")
    ax.plot(xs, [len(p) / per_min for p in pairs], label="unique (client, name) pairs")
    _setup(ax, CHARTS[2][1], marks, "per simulated minute")
    ax.legend(fontsize=8)
    save(fig, *CHARTS[2])

    # 4: upstream
    total = [0] * n
    to_de = [0] * n
    for u in upstream:
        b = _bin(u.t, tl)
        if 0 <= b < n:
            total[b] += 1
            if u.zone == "de.":
                to_de[b] += 1
    fig, ax = plt.subplots(figsize=(9, 3.6))
    ax.plot(xs, [v / per_min for v in total], label="all upstream queries")
    ax.plot(xs, [v / per_min for v in to_de], label="to de's servers")
    _setup(ax, CHARTS[3][1], marks, "per simulated minute")
    ax.legend(fontsize=8)
    save(fig, *CHARTS[3])

    # 5: EDE codes
    ede = ede_per_minute(events, tl)
    fig, ax = plt.subplots(figsize=(9, 3.6))
    for code in sorted(ede):
        ax.plot(xs, ede[code], label=EDE_NAMES.get(code, str(code)))
    _setup(ax, CHARTS[4][1], marks, "responses per simulated minute")
    if ede:
        ax.legend(fontsize=8)
    save(fig, *CHARTS[4])
    return made


DEFINITIONS = f"""
<ul>
<li>Shares count each client question once, at its first attempt; retries after SERVFAIL
(up to 3) are in the client volume chart.</li>
<li>Chart 2 counts a stale answer (EDE 3 or 19) as not an answer: what clients would have
seen without serve-stale.</li>
<li>Times are simulated UTC on 2026-05-05; bins of {BIN_MINUTES} simulated minutes.</li>
</ul>
"""


def write_report(out: Path, summary: dict[str, Any], tl: Timeline | None = None) -> Path:
    from anchord.testbed.incident.record import read_upstream  # noqa: F401 - same module

    tl = tl or Timeline()
    events = list(read_events(out / "events.csv"))
    upstream = read_upstream_sim(out / "upstream.csv")
    made = charts(out, events, upstream, summary, tl)
    s = summary.get("settings", {})
    body = [f"<h1>anchord replay de-2026-05-05 ({html.escape(summary.get('variant', ''))})</h1>",
            f"<p>{s.get('names')} de children, {s.get('clients')} clients, "
            f"{s.get('rate_per_real_second')} questions per real second, one simulated hour "
            f"in {60 * s.get('minutes_per_hour', 0):.0f} real seconds; wall time "
            f"{summary.get('wall_seconds')} s.</p>",
            f"<pre>{html.escape(table(summary))}</pre>", DEFINITIONS,
            f"<p>{html.escape(marks_text(_marks(summary, tl)))}</p>"]
    for name, title in made:
        body.append(f"<h2>{html.escape(title)}</h2><img src='{name}' alt='{html.escape(title)}'>")
    body.append(f"<h2>summary.json</h2><pre>{html.escape(json.dumps(summary, indent=1))}</pre>")
    path = out / "report.html"
    path.write_text(_page("anchord replay de-2026-05-05", "\n".join(body)))
    return path


def read_upstream_sim(path: Path) -> list[Upstream]:
    import csv

    if not path.exists():
        return []
    with open(path, newline="") as f:
        return [Upstream(float(r["t"]), r["server"], r["zone"], r["qname"], r["qtype"])
                for r in csv.DictReader(f)]


def _page(title: str, body: str) -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title>"
            "<style>body{font-family:sans-serif;max-width:960px;margin:auto}"
            "img{max-width:100%}pre{background:#f4f4f4;padding:8px}</style></head>"
            f"<body>{body}</body></html>\n")


COMPARE_CHARTS = (
    ("compare-noerror.png", ".de NOERROR share (first attempts)"),
    ("compare-noerror-without-stale.png", ".de NOERROR share, stale not counted"),
    ("compare-client-volume.png", "client queries per minute (retries included)"),
    ("compare-upstream.png", "upstream queries per minute"),
    ("compare-ede.png", "EDE codes in responses per minute, one panel per variant"),
    ("compare-control.png", "control group (hK.hoster.com): NOERROR share"),
)


def marks_text(marks: list[tuple[str, float]]) -> str:
    """The legend of the dashed lines, for the page under the charts."""
    return ("Dashed lines on every chart: "
            + ", ".join(f"{label} {_dt(t):%H:%M:%S}" for label, t in marks)
            + " (simulated UTC).")


def write_compare_report(out: Path, results: dict[str, dict[str, Any]],
                         tl: Timeline | None = None) -> Path:
    """One page with each variant's curves side by side, and each variant's table.
    Every chart of a single run has its comparison here (COMPARE_CHARTS, same order)."""
    tl = tl or Timeline()
    plt = _plt()
    xs = _xs(tl)
    n = _nbins(tl)
    data = {v: (list(read_events(out / v / "events.csv")),
                read_upstream_sim(out / v / "upstream.csv")) for v in results}
    made: list[tuple[str, str]] = []
    base_marks = _marks(results.get("default", next(iter(results.values()))), tl)

    save = _saver(out, made)

    def line(ax: Any, ys: Sequence[float | None], label: str, **style: Any) -> None:
        ax.plot(xs[:len(ys)], [float("nan") if y is None else y for y in ys], label=label,
                **style)

    ylabels = ("share", "share", "per simulated minute", "per simulated minute")
    for i, ((name, title), ylabel) in enumerate(zip(COMPARE_CHARTS[:4], ylabels,
                                                    strict=True)):
        fig, ax = plt.subplots(figsize=(9, 3.8))
        for variant, (events, upstream) in data.items():
            if i < 2:
                line(ax, shares(events, tl, "de", stale_counts=(i == 0)).get("NOERROR", []),
                     variant)
            else:
                counts = Counter(_bin(x.t, tl) for x in (events if i == 2 else upstream))
                line(ax, [counts.get(b, 0) / BIN_MINUTES for b in range(n)], variant)
        _setup(ax, title, base_marks, ylabel)
        ax.legend(fontsize=8)
        save(fig, name, title)

    # 5: EDE codes, one panel per variant (codes x variants on one axis would be a tangle)
    name, title = COMPARE_CHARTS[4]
    fig, axes = plt.subplots(len(data), 1, figsize=(9, 2.4 * len(data) + 0.8), sharex=True,
                             sharey=True, squeeze=False)
    for ax, (variant, (events, _)) in zip(axes[:, 0], data.items(), strict=True):
        ede = ede_per_minute(events, tl)
        for code in sorted(ede):  # one colour per code in every panel
            line(ax, ede[code], EDE_NAMES.get(code, str(code)),
                 color=f"C{sorted(EDE_NAMES).index(code) if code in EDE_NAMES else 9}")
        _setup(ax, f"{variant}: EDE codes per minute", base_marks, "per sim. minute")
        if ede:
            ax.legend(fontsize=7, loc="upper left")
    save(fig, name, title)

    # 6: the control group, which no variant should move
    name, title = COMPARE_CHARTS[5]
    fig, ax = plt.subplots(figsize=(9, 3.8))
    for k, (variant, (events, _)) in enumerate(data.items()):
        # Flat lines on top of each other: wider first, so each stays visible.
        line(ax, shares(events, tl, "control").get("NOERROR", []), variant,
             lw=1.2 + 2.0 * (len(data) - 1 - k))
    ax.set_ylim(-0.02, 1.05)
    _setup(ax, title, base_marks, "share")
    ax.legend(fontsize=8, loc="center left")
    save(fig, name, title)

    body = ["<h1>anchord replay de-2026-05-05: variants side by side</h1>", DEFINITIONS,
            f"<p>{html.escape(marks_text(base_marks))} The marks are those of the "
            f"{'default' if 'default' in results else 'first'} run.</p>"]
    for name, title in made:
        body.append(f"<h2>{html.escape(title)}</h2><img src='{name}'>")
    for variant, summary in results.items():
        links = " · ".join(f"<a href='{variant}/{png}'>{html.escape(t)}</a>"
                           for png, t in CHARTS)
        body.append(f"<h2><a href='{variant}/report.html'>{html.escape(variant)}</a></h2>"
                    f"<p>charts: {links}</p>"
                    f"<pre>{html.escape(table(summary))}</pre>")
    (out / "summary.json").write_text(json.dumps(results, indent=1) + "\n")
    path = out / "report.html"
    path.write_text(_page("anchord replay: variants", "\n".join(body)))
    return path
