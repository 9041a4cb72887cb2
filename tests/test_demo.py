"""`anchord demo` (the README's first command) end to end, small and on free ports:
the testbed, a real `anchord serve` and the sample table, with the exit status."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from anchord.testbed.zones import Addresses

from .e2e_support import free_port, free_port_on, port_free_on

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _resolver_port() -> int:
    """A port free on 127.0.0.1 whose successor (the control API's) is free too."""
    for _ in range(50):
        port = free_port()
        if port < 65535 and port_free_on(["127.0.0.1"], port + 1):
            return port
    raise RuntimeError("no two consecutive free ports on 127.0.0.1")


def test_demo_exits_0_and_its_table_shows_www_bogus_de_servfail_with_ede6(
        tmp_path: Path) -> None:
    testbed_port = free_port_on(Addresses().all())
    resolver_port = _resolver_port()
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run(
        [sys.executable, "-m", "anchord", "demo", "--dir", str(tmp_path / "demo"),
         "--children", "8", "--port", str(testbed_port),
         "--resolver-port", str(resolver_port)],
        capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line.split() for line in done.stdout.splitlines()]
    bogus = [row for row in rows if row and row[0] == "www.bogus.de."]
    assert len(bogus) == 2, done.stdout  # fresh and cached
    for row in bogus:
        assert row[1:3] == ["SERVFAIL", "-"] and row[4] == "6", row
    assert {row[3] for row in bogus} == {"fresh", "cached"}
    assert "all answers as expected" in done.stdout


def test_scripts_main_help_runs_nothing_and_shows_the_replay_options(tmp_path: Path) -> None:
    main = Path(__file__).resolve().parents[1] / "scripts" / "main"
    env = {**os.environ, "PYTHON": sys.executable}
    for flag in ("--help", "-h"):
        r = subprocess.run(["bash", str(main), "--names", "10", flag], capture_output=True,
                           text=True, timeout=60, env=env, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        # No set-up (apt, pip) and no demo: it would print "signing and serving".
        assert r.stdout.startswith("Usage: ./scripts/main") and "signing" not in r.stdout
        assert "control API on 127.0.0.1:5355" in r.stdout
        assert "--compare-variants" in r.stdout and "--port-base" in r.stdout



def test_testbed_and_demo_name_a_folder_they_cannot_write_in_one_line(tmp_path: Path) -> None:
    """As `replay --out` does (the same check): a FileNotFoundError traceback before."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    folder = str(blocker / "sub")  # under a file: cannot be created, even by root
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    port, resolver_port = free_port_on(Addresses().all()), _resolver_port()
    for command in (["testbed", "--dir", folder, "--children", "1"],
                    ["demo", "--dir", folder, "--children", "8"]):
        done = subprocess.run(
            [sys.executable, "-m", "anchord", *command, "--port", str(port),
             "--resolver-port", str(resolver_port)],
            capture_output=True, text=True, timeout=60, env=env)
        assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
        assert done.stderr.count("\n") == 1, done.stderr
        assert done.stderr == (f"anchord {command[0]}: output folder {folder} is not "
                               "writable: Not a directory\n")
