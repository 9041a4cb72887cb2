"""`anchord nta` and `anchord cache` against a real `anchord serve` process on the testbed.

The operator's path end to end: the CLI reads resolver.toml, finds the API and the token,
adds an NTA for bogus.de; the resolver answers www.bogus.de NOERROR without AD and with
EDE 33; the NTA outlives a kill -9; after removal the answer is SERVFAIL with EDE 6 again.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import pytest

from anchord.control.cli import flush_summary
from anchord.testbed.command import Testbed, TestbedError
from anchord.testbed.zones import TestbedSpec

ANCHORD = [sys.executable, "-c", "from anchord.cli import main; main()"]
BOGUS = "www.bogus.de."


def _free_port() -> int:
    # Free for both UDP and TCP (the resolver binds both on one port).
    for _ in range(50):
        port = random.randint(20000, 60000)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u, \
                socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            try:
                u.bind(("127.0.0.1", port))
                t.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


@pytest.fixture(scope="module")
def testbed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    directory = tmp_path_factory.mktemp("testbed-control")
    for _ in range(20):
        try:
            tb = Testbed(TestbedSpec(children=3), directory, now=time.time(),
                         port=random.randint(20000, 60000), resolver_port=_free_port(),
                         control_port=_free_port()).start()
            break
        except TestbedError:
            continue
    else:
        pytest.fail("no free port for the testbed")
    yield tb
    tb.stop()


def anchord(*args: str, config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ANCHORD, *args, "-c", str(config)], capture_output=True,
                          text=True, timeout=30)


class Serve:
    """`anchord serve -c resolver.toml` as a child process, stderr in a file."""

    def __init__(self, tb: Testbed, config: Path | None = None) -> None:
        self.log = tb.directory / f"serve-{time.monotonic_ns()}.log"
        config = config if config is not None else tb.resolver_toml
        with open(self.log, "w") as err:
            self.proc = subprocess.Popen([*ANCHORD, "serve", "-c", str(config)],
                                         stderr=err, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while "listening on tcp" not in self.log.read_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"serve did not start: {self.log.read_text()}")
            time.sleep(0.05)

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(15)
        return self.log.read_text()


def ask(tb: Testbed, name: str) -> dns.message.Message:
    q = dns.message.make_query(name, "A", want_dnssec=True, use_edns=0)
    try:
        return dns.query.udp(q, "127.0.0.1", port=tb.resolver_port, timeout=5)
    except dns.exception.Timeout:
        # As dig does: one more try. A cold resolution against the Python testbed
        # took over 5 s once on a machine running other benchmarks at the same time.
        return dns.query.udp(q, "127.0.0.1", port=tb.resolver_port, timeout=10)


def edes(r: dns.message.Message) -> list[int]:
    return [int(o.code) for o in r.options if isinstance(o, dns.edns.EDEOption)]


def test_not_running_is_one_clear_line(testbed: Testbed, tmp_path: Path) -> None:
    cfg = tmp_path / "r.toml"
    port = _free_port()
    cfg.write_text(f'[control]\nlisten = "127.0.0.1:{port}"\n')
    r = anchord("nta", "list", config=cfg)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.strip() == (f"anchord: cannot reach anchord's control API at "
                                f"127.0.0.1:{port}: connection refused — is `anchord serve` "
                                "running?")
    cfg.write_text("[control]\nenabled = false\n")
    r = anchord("nta", "list", config=cfg)
    assert r.returncode == 1 and "control.enabled = false" in r.stderr


def test_nta_through_the_cli_survives_kill_and_changes_answers(testbed: Testbed,
                                                               tmp_path: Path) -> None:
    cfg = testbed.resolver_toml
    state = testbed.directory / "nta.json"
    state.unlink(missing_ok=True)
    serve = Serve(testbed)
    try:
        r = ask(testbed, BOGUS)
        assert r.rcode() == dns.rcode.SERVFAIL and edes(r)[:1] == [6]

        r2 = anchord("nta", "add", "bogus.de", "--lifetime", "90m", "--reason",
                     "rollover gone wrong", config=cfg)
        assert r2.returncode == 0, r2.stderr
        # The lifetime asked for, not 1h29m59s: the time left is rounded up.
        assert r2.stdout.startswith("NTA added for bogus.de. until ") and "(1h30m)" in r2.stdout

        r = ask(testbed, BOGUS)
        assert r.rcode() == dns.rcode.NOERROR and r.answer
        assert not r.flags & dns.flags.AD and 33 in edes(r)

        table = anchord("nta", "list", config=cfg)
        assert table.returncode == 0
        header, row = table.stdout.splitlines()
        assert header.split()[:2] == ["ZONE", "EXPIRES"]
        assert row.startswith("bogus.de.") and "rollover gone wrong" in row and "not yet" in row

        too_long = anchord("nta", "add", "de", "--lifetime", "8d", config=cfg)
        assert too_long.returncode == 1
        assert too_long.stderr.strip() == ("anchord: lifetime 8d is longer than the maximum, "
                                           "7d (nta.max_lifetime = 604800)")

        # A config pointing at another token file: 401, said in one line.
        wrong = tmp_path / "wrong.toml"
        wrong.write_text(cfg.read_text().replace('"control.token"',
                                                 f'"{tmp_path / "other.token"}"'))
        (tmp_path / "other.token").write_text("not-the-token\n")
        denied = anchord("nta", "list", config=wrong)
        assert denied.returncode == 1 and "refused the token" in denied.stderr
        assert "wrong token" in denied.stderr and len(denied.stderr.splitlines()) == 1

        # kill -9: nothing runs at exit, so only what was already on disk survives.
        serve.kill9()
        assert json.loads(state.read_text())["ntas"][0]["zone"] == "bogus.de."
        serve = Serve(testbed)
        listed = anchord("nta", "list", "--json", config=cfg)
        ntas = json.loads(listed.stdout)["ntas"]
        assert [(n["zone"], n["reason"]) for n in ntas] == [("bogus.de.",
                                                             "rollover gone wrong")]
        assert 33 in edes(ask(testbed, BOGUS))
        assert "restored 1 NTA(s)" in serve.log.read_text()

        gone = anchord("nta", "remove", "bogus.de", config=cfg)
        assert gone.returncode == 0 and gone.stdout.strip() == "NTA for bogus.de. removed"
        r = ask(testbed, BOGUS)
        assert r.rcode() == dns.rcode.SERVFAIL and edes(r)[:1] == [6]
        again = anchord("nta", "remove", "bogus.de", config=cfg)
        assert again.returncode == 1 and again.stderr.strip() == "anchord: no NTA for bogus.de."
        assert anchord("nta", "list", config=cfg).stdout.strip() == "no negative trust anchors"

        flushed = anchord("cache", "flush", "de", config=cfg)
        assert flushed.returncode == 0 and flushed.stdout.startswith("flushed de.: ")
    finally:
        log = serve.stop()
    assert "Traceback" not in log


def test_corrupt_state_file_starts_with_a_loud_line(testbed: Testbed) -> None:
    state = testbed.directory / "nta.json"
    state.write_text('{"version": 1, "ntas": [')  # torn by something other than us
    serve = Serve(testbed)
    try:
        assert anchord("nta", "list", config=testbed.resolver_toml).returncode == 0
    finally:
        log = serve.stop()
    lines = [x for x in log.splitlines() if "corrupt" in x]
    assert len(lines) == 1 and str(state) in lines[0] and f"{state}.corrupt-" in lines[0]
    kept = list(testbed.directory.glob("nta.json.corrupt-*"))
    assert len(kept) == 1 and str(kept[0]) in lines[0]
    assert json.loads(state.read_text())["ntas"] == []
    os.unlink(kept[0])


def test_nta_not_saved_is_exit_1_and_says_so(testbed: Testbed) -> None:
    cfg = testbed.directory / "unsaved.toml"
    cfg.write_text(testbed.resolver_toml.read_text().replace(
        'state_file = "nta.json"', 'state_file = "/proc/anchord-nta.json"'))
    serve = Serve(testbed, cfg)
    try:
        r = anchord("nta", "add", "bogus.de", config=cfg)
        assert r.returncode == 1, r.stdout + r.stderr
        assert r.stdout == ""
        assert r.stderr.strip() == (
            "anchord: NTA for bogus.de. is in force but NOT saved (cannot save NTAs to "
            "/proc/anchord-nta.json: No such file or directory): it will not survive a "
            "restart")
        assert 33 in edes(ask(testbed, BOGUS))  # in force all the same
    finally:
        serve.stop()


@pytest.mark.parametrize("args,words", [
    (("*.de",), "wildcard label"),
    (("bad\x07.de",), "non-printable character U+0007"),
    (("\\000.de",), "a label holds the byte 0x00"),
    (("de", "--lifetime", "1m1m"), "repeats a unit"),
    (("de", "--lifetime", "-5"), "must be positive"),
    (("de", "--lifetime", "\u0661\u0662\u0660"), "ASCII digits"),
])
def test_nta_add_refuses_bad_input_in_one_line(testbed: Testbed, args: tuple[str, ...],
                                               words: str) -> None:
    serve = Serve(testbed)
    try:
        r = anchord("nta", "add", *args, config=testbed.resolver_toml)
        assert r.returncode == 1 and r.stdout == "", r.stdout
        assert words in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert anchord("nta", "list", config=testbed.resolver_toml).stdout.strip() == \
            "no negative trust anchors"
    finally:
        serve.stop()


def test_cache_flush_says_whose_answers_it_counted() -> None:
    """With workers = 2 the count is the sum of both caches; a worker that did not report
    in time is named as missing, not silently left out."""
    one = {"zone": "de.", "answers_removed": 1, "workers": 1, "workers_reported": 1}
    assert flush_summary(one) == "flushed de.: 1 cached answer(s) removed"
    two = {**one, "answers_removed": 2, "workers": 2, "workers_reported": 2}
    assert flush_summary(two) == "flushed de.: 2 cached answer(s) removed across 2 workers"
    late = {**two, "answers_removed": 1, "workers_reported": 1, "workers_late": 1}
    assert flush_summary(late) == ("flushed de.: 1 cached answer(s) removed; 1 of 2 workers "
                                   "did not report in time (their removals are not "
                                   "included)")
    # A worker that ended is not "late": its cache is gone, nothing was left out.
    ended = {**late, "workers": 3, "workers_late": 1}
    assert flush_summary(ended) == ("flushed de.: 1 cached answer(s) removed; 1 of 3 workers "
                                    "did not report in time (their removals are not "
                                    "included); 1 of 3 workers has ended (its cache "
                                    "ended with it)")
    # A resolver from before workers_late: who is missing is unknown.
    unknown = {"zone": "de.", "answers_removed": 1, "workers": 2, "workers_reported": 1}
    assert flush_summary(unknown) == ("flushed de.: 1 cached answer(s) removed; only 1 of 2 "
                                      "workers reported a count (the others' removals are "
                                      "not included)")
    # One from before workers_reported counted worker 0 only.
    old = {"zone": "de.", "answers_removed": 1, "workers": 2}
    assert flush_summary(old) == flush_summary(unknown)
