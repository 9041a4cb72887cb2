"""Whole scenarios through the core and the frontend's renderer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from anchord.testbed.replay.command import rpl
from anchord.testbed.replay.parser import parse_file, parse_text
from anchord.testbed.replay.runner import run_scenario
from tests.requirements import scenario_dir

RPL = scenario_dir()


@pytest.mark.parametrize("name", ["deckard/iter_resolve.rpl", "unbound/iter_resolve.rpl"])
def test_basic_iterative_resolve_passes(name: str) -> None:
    path = RPL / name
    result = run_scenario(parse_file(path))
    assert result.status == "pass", result.reason


def test_wrong_expectation_fails_with_expected_vs_got() -> None:
    path = RPL / "unbound" / "iter_resolve.rpl"
    text = path.read_text()
    head, _, tail = text.rpartition("www.example.com. IN A\t10.20.30.40")  # the CHECK_ANSWER
    result = run_scenario(parse_text(head + "www.example.com. IN A\t10.20.30.41" + tail,
                                     str(path)))
    assert result.status == "fail"
    assert result.reason.startswith("step 10 CHECK_ANSWER: answer:"), result.reason


def test_unsupported_step_is_reported_not_run() -> None:
    text = """server:
stub-zone:
	name: "."
	stub-addr: 193.0.14.129
CONFIG_END
SCENARIO_BEGIN x
STEP 1 CHECK_AUTOTRUST example.com
SCENARIO_END
"""
    result = run_scenario(parse_text(text, "x/unbound/x.rpl"))
    assert result.status == "unsupported" and "CHECK_AUTOTRUST" in result.reason


def test_command_writes_report(tmp_path: Path) -> None:
    path = RPL / "deckard" / "iter_resolve.rpl"
    out = tmp_path / "r.json"
    res = CliRunner().invoke(rpl, [str(path), "--report", str(out)])
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert data["results"][0]["status"] == "pass"
    assert data["totals"]["total"]["pass"] == 1
    assert "iter" in res.output


def test_a_folder_without_scenarios_is_an_error_not_a_run_of_none(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("")
    res = CliRunner().invoke(rpl, [str(tmp_path)])
    assert res.exit_code == 1
    assert res.output == f"anchord rpl: no .rpl files in {tmp_path} (nor in its subfolders)\n"


def test_aggressive_nsec_synthesises_denials_and_is_a_config_choice() -> None:
    """RFC 8198: with aggressive-nsec the second NXDOMAIN is proven from the cached NSECs
    (nothing scripted answers it); with it off the same scenario goes upstream and fails."""
    path = RPL / "unbound" / "val_negcache_nxdomain.rpl"
    text = path.read_text()
    assert run_scenario(parse_text(text, str(path))).status == "pass"
    off = text.replace("aggressive-nsec: yes", "aggressive-nsec: no")
    result = run_scenario(parse_text(off, str(path)))
    assert result.status == "fail" and "step 30" in result.reason, result.reason


def test_a_cut_off_scenario_is_unsupported_not_passed(tmp_path: Path) -> None:
    """The first 60 lines of a passing scenario end inside a RANGE, before any STEP."""
    path = RPL / "unbound" / "val_positive.rpl"
    head = "".join(path.read_text().splitlines(keepends=True)[:60])
    result = run_scenario(parse_text(head, str(path)))
    assert result.status == "unsupported"
    assert result.reason.startswith("malformed scenario (file cut off?): "), result.reason


def test_an_unwritable_report_path_is_refused_before_the_run() -> None:
    path = RPL / "deckard" / "iter_resolve.rpl"
    res = CliRunner().invoke(rpl, [str(path), "--report", "/proc/nope.json"])
    assert res.exit_code == 1
    assert res.output == ("anchord rpl: /proc/nope.json cannot be written: output folder "
                          "/proc is not writable: No such file or directory\n")


def test_a_scenario_that_checks_nothing_is_unsupported_not_passed() -> None:
    """Cut after its QUERY step, a passing scenario has nothing left that could fail."""
    path = RPL / "unbound" / "val_positive.rpl"
    head = "".join(path.read_text().splitlines(keepends=True)[:137])
    result = run_scenario(parse_text(head + "SCENARIO_END\n", str(path)))
    assert result.status == "unsupported"
    assert result.reason == "checks nothing (no CHECK_ANSWER step)"


def test_a_report_write_that_fails_is_one_line_after_the_results() -> None:
    """/dev/full passes the check before the run; the write itself fails (ENOSPC)."""
    path = RPL / "deckard" / "iter_resolve.rpl"
    res = CliRunner().invoke(rpl, [str(path), "--report", "/dev/full"])
    assert res.exit_code == 1
    assert res.exception is None or isinstance(res.exception, SystemExit)
    assert "Traceback" not in res.output
    assert "total" in res.output  # the results were printed before the write
    assert res.output.endswith("anchord rpl: report /dev/full not written: "
                               "No space left on device\n")


@pytest.mark.parametrize(("report", "why"), [
    ("", "--report needs a file name, not an empty string"),
    ("other.rpl", "--report other.rpl: a .rpl file is a scenario, not a report"),
])
def test_an_empty_or_rpl_report_path_is_refused(tmp_path: Path, report: str, why: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    path = RPL / "deckard" / "iter_resolve.rpl"
    monkeypatch.chdir(tmp_path)  # what a wrong refusal writes lands here
    res = CliRunner().invoke(rpl, [str(path), "--report", report])
    assert res.exit_code == 1
    assert res.output == f"anchord rpl: {why}\n"


def test_a_report_path_that_is_an_input_is_refused(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Spelled differently (relative, with ./), the input is still recognised."""
    scenario = tmp_path / "iter_resolve.rpl"
    original = (RPL / "deckard" / "iter_resolve.rpl").read_text()
    scenario.write_text(original)
    # Named without .rpl so the input check, not the suffix check, is what refuses it.
    alias = tmp_path / "iter_resolve"
    alias.symlink_to(scenario)
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(rpl, ["iter_resolve.rpl", "--report", "./iter_resolve"])
    assert res.exit_code == 1
    assert res.output == "anchord rpl: --report ./iter_resolve is one of the input scenarios\n"
    assert scenario.read_text() == original
