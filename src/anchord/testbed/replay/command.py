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


def check_report_path(report: str, inputs: list[Path]) -> None:
    """ValueError for a report path that is empty, or that would overwrite a scenario:
    one of the inputs (compared resolved: ./x.rpl and x.rpl are the same file), or any
    .rpl file (a slip of the shell's completion, never a JSON report)."""
    if not report:
        raise ValueError("--report needs a file name, not an empty string")
    target = Path(report)
    if target.suffix.lower() == ".rpl":
        raise ValueError(f"--report {report}: a .rpl file is a scenario, not a report")
    resolved = target.resolve()
    if any(p.resolve() == resolved for p in inputs):
        raise ValueError(f"--report {report} is one of the input scenarios")
    check_file_writable(target)


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
        if report is not None:
            check_report_path(report, files)
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
    if report is not None:
        try:
            write_json(results, report)
        except OSError as e:
            # The results above still stand; only the report is lost (a full disk
            # passes the check before the run).
            click.echo(f"anchord rpl: report {report} not written: "
                       f"{e.strerror or e}", err=True)
            sys.exit(1)
        click.echo(f"report written to {report}")
    # Failing scenarios are results, not errors; only a crash of the runner is.
    sys.exit(1 if crashed else 0)


__all__ = ["check_report_path", "collect", "rpl", "run_one"]
