"""`anchord replay de-2026-05-05`: the click command (see run.py for the run itself)."""

from __future__ import annotations

import dataclasses
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from anchord.testbed.incident.timeline import SCENARIOS

if TYPE_CHECKING:
    from anchord.testbed.incident.run import Options


@click.command()
@click.argument("scenario", type=click.Choice(sorted(SCENARIOS)))
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path),
              default=Path("replay-de-2026-05-05"), show_default=True,
              help="Folder for events.csv, upstream.csv, summary.json, report.html, PNGs.")
@click.option("--names", default=2000, show_default=True, type=click.IntRange(10, 100_000),
              help="Child zones under de (clients ask www.cN.de).")
@click.option("--clients", default=200, show_default=True, type=click.IntRange(1, 5000),
              help="Simulated clients (one UDP socket each).")
@click.option("--minutes-per-hour", default=1 / 6, show_default="0.167 (an hour in 10 s)",
              type=click.FloatRange(0.01, 60, min_open=False),
              help="Real minutes one simulated hour lasts (scale = 60 / X).")
@click.option("--rate", default=250.0, show_default=True, type=click.FloatRange(1, 5000),
              help="Client questions (first attempts) per real second, all clients.")
@click.option("--control-names", default=500, show_default=True,
              type=click.IntRange(0, 100_000), help="Control-group names hK.hoster.com.")
@click.option("--no-serve-stale", is_flag=True, help="Run with serve_stale.enabled = false.")
@click.option("--no-nta", is_flag=True, help="No operator NTA at 22:17.")
@click.option("--no-failure-cache", is_flag=True, help="Run with failure_cache.enabled = false.")
@click.option("--compare-variants", is_flag=True,
              help="Run the default and each variant; one report with the curves side by side.")
@click.option("--port-base", default=5390, show_default=True, type=click.IntRange(1024, 65000),
              help="Ports P (testbed), P+1 (resolver), P+2 (control API).")
@click.option("--seed", default=1, show_default=True, type=int)
@click.option("--no-cache", is_flag=True, help="Sign the world again instead of reusing it.")
@click.option("--quiet", is_flag=True, help="No progress line.")
def replay(scenario: str, out: Path, names: int, clients: int, minutes_per_hour: float,
           rate: float, control_names: int, no_serve_stale: bool, no_nta: bool,
           no_failure_cache: bool, compare_variants: bool, port_base: int, seed: int,
           no_cache: bool, quiet: bool) -> None:
    """Replay an incident on the real resolver and draw its graphs (de-2026-05-05)."""
    from anchord.testbed.incident.report import write_compare_report, write_report
    from anchord.testbed.incident.run import Options, ReplayError, run_once
    from anchord.testbed.incident.summary import table

    # SIGTERM ends the replay like Ctrl-C: the world and `anchord serve` it started are
    # stopped on the way out (their ports would stay taken for the next run otherwise).
    signal.signal(signal.SIGTERM, _interrupt)
    base = Options(out=out, names=names, clients=clients, minutes_per_hour=minutes_per_hour,
                   rate=rate, control_names=control_names, port_base=port_base, seed=seed,
                   progress=not quiet)
    if no_cache:
        base.cache_dir = None
    try:
        if compare_variants:
            results = {}
            for variant, changes in VARIANTS:
                opts = _replace(base, out=out / variant, **changes)
                click.echo(f"anchord replay: variant {variant} -> {opts.out}", err=True)
                results[variant] = run_once(opts, variant)
                write_report(opts.out, results[variant])
            write_compare_report(out, results)
            for variant, summary in results.items():
                click.echo(f"\n== {variant}\n{table(summary)}")
            click.echo(f"\nreport: {out / 'report.html'}")
            return
        changes = {"serve_stale": not no_serve_stale, "nta": not no_nta,
                   "failure_cache": not no_failure_cache}
        variant = "+".join(n for n, off in (("no-serve-stale", no_serve_stale),
                                           ("no-nta", no_nta),
                                           ("no-failure-cache", no_failure_cache)) if off)
        opts = _replace(base, **changes)
        summary = run_once(opts, variant or "default")
        write_report(out, summary)
    except ReplayError as e:
        click.echo(f"anchord replay: {e}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("anchord replay: interrupted", err=True)
        sys.exit(130)
    click.echo(table(summary))
    click.echo(f"report: {out / 'report.html'} (wall time {summary['wall_seconds']} s)")


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


VARIANTS: tuple[tuple[str, dict[str, bool]], ...] = (
    ("default", {}),
    ("no-serve-stale", {"serve_stale": False}),
    ("no-nta", {"nta": False}),
    ("no-failure-cache", {"failure_cache": False}),
)


def _replace(opts: Options, **changes: Any) -> Options:
    return dataclasses.replace(opts, **changes)
