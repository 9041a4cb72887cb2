"""`workers = 2`: an NTA and a flush made through the control API reach both workers.

A real `anchord serve` with two worker processes against the testbed (in a thread here),
asked from many client sockets so the kernel's SO_REUSEPORT hash sends some to each
worker. Answers are first cached (and on the fast path) in both; after the API call,
every socket must see EDE 33 within 100 ms.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import pytest
from prometheus_client.parser import text_string_to_metric_families

from anchord.testbed.command import Testbed
from anchord.testbed.zones import TestbedSpec
from tests.e2e_support import (
    TESTBED_ADDRESSES,
    free_port,
    free_port_on,
    set_toml_key,
    start_resolver,
)

SOCKETS = 32  # client source ports: P(all on one worker) = 2 * 2**-32


def _ask(socks: list[socket.socket], port: int, name: str) -> list[dns.message.Message]:
    q = dns.message.make_query(name, "A", want_dnssec=True)
    wire = q.to_wire()
    for s in socks:
        s.sendto(wire, ("127.0.0.1", port))
    return [dns.message.from_wire(s.recv(65535)) for s in socks]


def _api(port: int, token: str, method: str, path: str, body: dict[str, object]) -> object:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", method=method, data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())


def _two_workers_config(tb: Testbed, tmp_path: Path, control_port: int) -> Path:
    cfg = tb.resolver_toml.read_text()
    cfg = set_toml_key(cfg, "server", "listen", f'["127.0.0.1:{free_port()}"]')
    cfg = set_toml_key(cfg, "server", "workers", "2")
    cfg = set_toml_key(cfg, "control", "listen", f'"127.0.0.1:{control_port}"')
    config = tmp_path / "tb" / "workers.toml"
    config.write_text(cfg)
    return config


@dataclass
class TwoWorkers:
    resolver: Any
    control_port: int
    token: str
    socks: list[socket.socket]


@contextlib.contextmanager
def _two_workers(tmp_path: Path) -> Iterator[TwoWorkers]:
    """A testbed and a 2-worker resolver, both running, with SOCKETS client sockets;
    stopped on the way out (the resolver's log stays readable)."""
    tb = Testbed(TestbedSpec(children=4), tmp_path / "tb", now=time.time(),
                 port=free_port_on(TESTBED_ADDRESSES))
    tb.start()
    try:
        control_port = free_port()
        resolver = start_resolver(_two_workers_config(tb, tmp_path, control_port))
        socks: list[socket.socket] = []
        try:
            assert resolver.proc.wait_for("anchord[1]: listening on udp", 10), resolver.log
            assert resolver.proc.wait_for("control API on", 10), resolver.log
            token = (tmp_path / "tb" / "control.token").read_text().strip()
            for _ in range(SOCKETS):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.settimeout(5)
                s.bind(("127.0.0.1", 0))
                socks.append(s)
            yield TwoWorkers(resolver, control_port, token, socks)
        finally:
            for s in socks:
                s.close()
            resolver.stop()
    finally:
        tb.stop()


def test_nta_and_flush_reach_every_worker_within_100ms(tmp_path: Path) -> None:
    with _two_workers(tmp_path) as w:
        for _ in range(3):  # resolve, cache, fast path: in each worker
            replies = _ask(w.socks, w.resolver.port, "www.c1.de.")
            assert all(r.flags & dns.flags.AD and not r.options for r in replies)
        _api(w.control_port, w.token, "POST", "/v1/nta",
             {"zone": "c1.de.", "lifetime": 600, "reason": "test"})
        time.sleep(0.1)
        replies = _ask(w.socks, w.resolver.port, "www.c1.de.")
        assert all([o.code for o in r.options] == [33] for r in replies), replies
        assert not any(r.flags & dns.flags.AD for r in replies)
        # The removal travels the same way; then a flush.
        req = urllib.request.Request(f"http://127.0.0.1:{w.control_port}/v1/nta/c1.de.",
                                     method="DELETE",
                                     headers={"Authorization": f"Bearer {w.token}"})
        urllib.request.urlopen(req, timeout=5).close()
        time.sleep(0.1)
        replies = _ask(w.socks, w.resolver.port, "www.c1.de.")
        assert all(r.flags & dns.flags.AD and not r.options for r in replies), replies
    log = w.resolver.log
    assert "worker" not in log or "ended" not in log, log


def _cache_answers_settled(control_port: int, token: str) -> int:
    """/v1/status's cached answers of all workers once two reads a snapshot round
    apart agree (each worker reports its cache size every REPORT_INTERVAL)."""
    from anchord.frontend.workers import REPORT_INTERVAL

    last = -1
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        time.sleep(2 * REPORT_INTERVAL)
        now = int(_api_get(control_port, token, "/v1/status")["cache"]["answers"])
        if now == last:
            return now
        last = now
    raise AssertionError("the cached answers in /v1/status do not settle")


def _worker_pids(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def test_flush_counts_the_answers_of_every_worker(tmp_path: Path) -> None:
    """Each worker caches the same answers (the kernel spreads the client sockets over
    both), so a flush removes them twice; it reported worker 0's half only. A worker that
    does not answer within a second is left out and named, not waited for."""
    import os
    import signal

    with _two_workers(tmp_path) as w:
        for name in ("www.c1.de.", "www.c2.de.", "www.c3.de."):
            assert all(r.rcode() == 0 for r in _ask(w.socks, w.resolver.port, name))
        cached = _cache_answers_settled(w.control_port, w.token)
        flushed = _api(w.control_port, w.token, "POST", "/v1/cache/flush", {"zone": "de."})
        assert isinstance(flushed, dict)
        left = _cache_answers_settled(w.control_port, w.token)
        assert flushed["answers_removed"] == cached - left, (flushed, cached, left)
        assert flushed["workers"] == 2 and flushed["workers_reported"] == 2, flushed
        # A worker that is stuck (stopped here) is not waited for beyond FLUSH_WAIT.
        for _ in range(2):
            _ask(w.socks, w.resolver.port, "www.c1.de.")
        [other] = _worker_pids(w.resolver.proc.popen.pid)
        os.kill(other, signal.SIGSTOP)
        try:
            started = time.monotonic()
            late = _api(w.control_port, w.token, "POST", "/v1/cache/flush", {"zone": "."})
            took = time.monotonic() - started
        finally:
            os.kill(other, signal.SIGCONT)
        assert isinstance(late, dict)
        assert late["workers"] == 2 and late["workers_reported"] == 1, late
        assert late["workers_late"] == 1, late
        assert late["answers_removed"] >= 1 and 0.9 < took < 5, (late, took)
    served = [int(n) for n in re.findall(r"served (\d+) queries", w.resolver.log)]
    assert len(served) == 2 and all(served), w.resolver.log  # each worker had some
    assert "did not report their count within 1 s" in w.resolver.log, w.resolver.log


def _queries_metric(control_port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{control_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return sum(s.value for fam in text_string_to_metric_families(text)
               if fam.name == "anchord_queries" for s in fam.samples)


def test_metrics_and_status_count_the_queries_of_every_worker(tmp_path: Path) -> None:
    with _two_workers(tmp_path) as w:
        rounds = 3  # resolved, then cached: the fast path must be counted as well
        for _ in range(rounds):
            assert len(_ask(w.socks, w.resolver.port, "www.c1.de.")) == SOCKETS
        sent = rounds * SOCKETS  # plus start_resolver's probes
        deadline = time.monotonic() + 3
        while _queries_metric(w.control_port) < sent:
            assert time.monotonic() < deadline, (
                f"/metrics counts {_queries_metric(w.control_port)} of {sent} queries")
            time.sleep(0.1)
        time.sleep(1.0)  # every worker has sent its latest snapshot by now
        counted = _queries_metric(w.control_port)
        status = _api_get(w.control_port, w.token, "/v1/status")
        assert status["counters"]["queries"] == counted, status
        assert sum(status["counters"]["responses"].values()) == counted, status
    served = [int(n) for n in re.findall(r"served (\d+) queries", w.resolver.log)]
    assert len(served) == 2 and all(served), w.resolver.log  # each worker had some
    assert sum(served) == counted, (served, counted)


def test_a_killed_worker_is_reaped_and_logged_after_a_flush_found_it_gone(
        tmp_path: Path) -> None:
    """A flush right after the kill meets the dead worker's pipe (EPIPE) and drops it;
    the process was then never waited for: a zombie, and no 'ended' line."""
    import os
    import signal

    with _two_workers(tmp_path) as w:
        [other] = _worker_pids(w.resolver.proc.popen.pid)
        os.kill(other, signal.SIGKILL)
        # Dead (its pipes closed) but not yet reaped: the flush's write then fails.
        while "\nState:\tZ" not in Path(f"/proc/{other}/status").read_text():
            time.sleep(0.005)
        flushed = _api(w.control_port, w.token, "POST", "/v1/cache/flush", {"zone": "."})
        assert isinstance(flushed, dict) and flushed["workers_late"] == 0, flushed
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and Path(f"/proc/{other}").exists():
            time.sleep(0.1)
        assert not Path(f"/proc/{other}").exists(), "the killed worker was not reaped"
        assert _ask(w.socks, w.resolver.port, "www.c1.de.")  # worker 0 still answers
    assert f"worker process {other} ended (status 9)" in w.resolver.log, w.resolver.log


def _api_get(port: int, token: str, path: str) -> Any:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}",
                                 headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())


def test_pin_ports_chooses_one_port_for_every_worker() -> None:
    from anchord.control.config import Config
    from anchord.frontend.workers import pin_ports

    cfg = Config()
    cfg.server.listen = ["127.0.0.1:0", "127.0.0.1:5399"]
    pin_ports(cfg)
    assert cfg.server.listen[1] == "127.0.0.1:5399"
    assert not cfg.server.listen[0].endswith(":0")


@pytest.mark.parametrize("ntas", [[], ["a.de."], ["a.de.", "b.de."]])
def test_apply_ntas_makes_the_set_exact(world: object, ntas: list[str]) -> None:
    import dns.name

    from anchord.core.trustmap import NegativeAnchor
    from anchord.frontend.workers import apply_ntas

    driver = world.resolver  # type: ignore[attr-defined]
    driver.add_nta(dns.name.from_text("old.de."), 60)
    forgotten: list[str] = []
    driver.forget_listeners.append(lambda z: forgotten.append(z.to_text()))
    wanted = [NegativeAnchor(dns.name.from_text(z), "r", 0.0, 1e12) for z in ntas]
    apply_ntas(driver, wanted)
    assert [n.zone.to_text() for n in driver.trust.ntas()] == ntas
    assert all(not n.recheck for n in driver.trust.ntas())
    assert sorted(forgotten) == sorted(["old.de.", *ntas])


def test_hub_sums_the_forget_answers_and_does_not_wait_for_a_gone_worker() -> None:
    """Hub.forgotten: one worker answers its count, one closes its pipe (it ended), one
    says nothing: the sum of the one that answered, after the timeout, not before."""
    import asyncio
    import os

    import dns.name

    from anchord.frontend.workers import Hub, _forgot_message

    async def main() -> None:
        pipes = {pid: (os.pipe(), os.pipe()) for pid in (101, 102, 103)}
        hub = Hub({pid: trust[1] for pid, (trust, _) in pipes.items()},
                  {pid: report[0] for pid, (_, report) in pipes.items()})
        hub.follow_reports()
        hub._forget(dns.name.from_text("de."))
        line = json.loads(os.read(pipes[101][0][0], 4096))
        assert line == {"forget": "de.", "id": hub.forget_number}
        os.write(pipes[101][1][1], _forgot_message(line["id"], 7))
        os.write(pipes[101][1][1], _forgot_message(line["id"] - 1, 50))  # an older forget
        os.close(pipes[102][1][1])
        started = time.monotonic()
        assert await hub.forgotten(timeout=0.3) == (7, 1, 1)  # 103 late, 102 ended
        assert 0.25 < time.monotonic() - started < 3  # 103 was waited for, no longer
        # Without the silent one, the answer comes as soon as the last count is in.
        del hub.fds[103]
        hub._forget(dns.name.from_text("."))
        os.write(pipes[101][1][1], _forgot_message(hub.forget_number, 2))
        started = time.monotonic()
        assert await hub.forgotten(timeout=5) == (2, 1, 0)
        assert time.monotonic() - started < 4  # not the 5 s timeout
        # Not hub.stop_all: it would signal the made-up pids.
        for fd in [*hub.reports.values(), *hub.fds.values(), pipes[103][0][1]]:
            asyncio.get_running_loop().remove_reader(fd)
            os.close(fd)
        for pid, (trust, report) in pipes.items():
            os.close(trust[0])
            if pid != 102:  # closed above
                os.close(report[1])

    asyncio.run(main())
