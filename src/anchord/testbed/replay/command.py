"""`anchord rpl PATH... [--report FILE.json] [-v]`: run replay scenarios, print totals."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from anchord.testbed.folders import FolderError, check_file_writable
from anchord.testbed.replay.parser import parse_file
from anchord.testbed.replay.report import format_table, write_json
from anchord.testbed.replay.runner import Result, run_scenario


def collect(paths: tuple[str, ...]) -> list[Path]:
    """The .rpl files named, or found (recursively, sorted) in the folders named;
    ValueError for a folder without any (a wrong path, not a run of no scenarios)."""
    files: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = sorted(p.rglob("*.rpl"))
            if not found:
                raise ValueError(f"no .rpl files in {p} (nor in its subfolders)")
            files.extend(found)
        else:
            files.append(p)
    return files


def run_one(path: Path) -> Result:
    try:
        scenario = parse_file(path)
    except OSError as e:
        return Result(str(path), "fail", f"cannot read: {e.strerror}")
    return run_scenario(scenario)


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--report", "report", type=click.Path(dir_okay=False),
              help="Write every result and the totals as JSON to this file.")
@click.option("-v", "--verbose", is_flag=True, help="One line per scenario.")
def rpl(paths: tuple[str, ...], report: str | None, verbose: bool) -> None:
    """Run Unbound and Deckard replay scenarios (.rpl) against anchord's resolver."""
    try:
        files = collect(paths)
        # Before the run, not after it: a report that cannot be written is a mistyped
        # path, better said at once than as a traceback once every scenario has run.
        if report:
            check_file_writable(Path(report))
    except (ValueError, FolderError) as e:
        click.echo(f"anchord rpl: {e}", err=True)
        sys.exit(1)
    results: list[Result] = []
    crashed = False
    for path in files:
        try:
            result = run_one(path)
        except Exception as e:  # noqa: BLE001 - the runner itself broke: say so, go on
            crashed = True
            result = Result(str(path), "fail", f"runner crashed: {type(e).__name__}: {e}")
        results.append(result)
        if verbose:
            click.echo(f"{result.status.upper():12} {path}"
                       + (f"  {result.reason}" if result.reason else ""), err=True)
    click.echo(format_table(results))
    if report:
        write_json(results, report)
        click.echo(f"report written to {report}")
    # Failing scenarios are results, not errors; only a crash of the runner is.
    sys.exit(1 if crashed else 0)


__all__ = ["collect", "rpl", "run_one"]
