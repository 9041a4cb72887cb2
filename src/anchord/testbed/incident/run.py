"""One replay run: start the world and `anchord serve`, drive clients and the timeline,
stop everything, write events/upstream/summary. The click command is in command.py."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import io
import json
import re
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dns.name

from anchord.engine.clock import parse_utc_iso
from anchord.testbed.faults import send_fault
from anchord.testbed.folders import FolderError, check_writable
from anchord.testbed.incident.clients import Clients, Workload
from anchord.testbed.incident.record import (
    EventWriter,
    read_events,
    read_upstream,
    write_upstream_sim,
)
from anchord.testbed.incident.summary import Marks, summarize, table
from anchord.testbed.incident.timeline import SimClock, Timeline, hhmm, scale_for
from anchord.testbed.incident.world import default_cache_dir, world_spec
from anchord.testbed.zones import Addresses, derive_key

NTA_LIFETIME = "1d"  # what an operator types: long enough to outlast the repair
NTA_LIFETIME_SECONDS = 86400
STARTUP_LEAD = 2.5  # real seconds between launching `serve` and the clock's start
PRIME_SECONDS = 3600.0  # simulated: from 17:00 the cache is primed (see PRIME_SHARE)
PRIME_CONCURRENCY = 16
# Only the most popular names are primed: the long tail (names first asked during the
# incident) has nothing to serve stale and fails until the NTA, as it did on 2026-05-05.
PRIME_SHARE = 0.9


class ReplayError(Exception):
    """A problem worth one line (port taken, folder not writable, a process failed)."""


@dataclass(slots=True)
class Options:
    out: Path
    names: int = 2000
    clients: int = 200
    minutes_per_hour: float = 1 / 6
    rate: float = 250.0  # first attempts per real second
    control_names: int = 500
    zipf_s: float = 1.0
    serve_stale: bool = True
    nta: bool = True
    failure_cache: bool = True
    port_base: int = 5390
    cache_dir: Path | None = field(default_factory=default_cache_dir)
    seed: int = 1
    progress: bool = True

    @property
    def scale(self) -> float:
        return scale_for(self.minutes_per_hour)

    @property
    def ports(self) -> tuple[int, int, int]:
        """(testbed, resolver, control API)."""
        return self.port_base, self.port_base + 1, self.port_base + 2


def check_ports(opts: Options) -> None:
    tb, res, ctl = opts.ports
    wanted = [(a, tb, kind) for a in Addresses().all() for kind in ("udp", "tcp")]
    wanted += [("127.0.0.1", res, "udp"), ("127.0.0.1", res, "tcp"), ("127.0.0.1", ctl, "tcp")]
    for addr, port, kind in wanted:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if kind == "udp"
                          else socket.SOCK_STREAM)
        try:
            if kind == "tcp":
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((addr, port))
        except OSError as e:
            what = "in use" if e.errno == errno.EADDRINUSE else (e.strerror or str(e))
            raise ReplayError(f"port {port} ({kind}) on {addr} is {what}; choose other "
                              "ports with --port-base") from None
        finally:
            s.close()


def anchord_command() -> list[str]:
    # This interpreter's anchord, never the first `anchord` on PATH: the replay must
    # measure the code it was started from (a second checkout or a venv).
    return [sys.executable, "-m", "anchord"]


def resolver_toml(info: dict[str, Any], opts: Options) -> str:
    _, res, ctl = opts.ports
    hints = ", ".join(f'"{n}" = ["{a[0]}"]' for n, a in info["root_hints"].items())
    # Upstream timeouts are in simulated seconds; keep at least 0.5 real seconds so a busy
    # testbed process is not taken for an unreachable one.
    timeout = min(60.0, max(1.5, round(0.5 * opts.scale, 1)))  # config allows up to 60
    # RFC 8767's client response timer (1.8 s) is meant to be long against an upstream
    # round trip; here a loopback resolution of a few real milliseconds lasts simulated
    # seconds, so the timer is stretched the same way (at least 0.25 real seconds).
    client_timeout = min(60.0, max(1.8, round(0.25 * opts.scale, 1)))
    return (
        "# Written by `anchord replay`: the resolver under test, on the replay's world.\n"
        f'[server]\nlisten = ["127.0.0.1:{res}"]\n\n'
        f"[upstream]\nport = {info['port']}\ntimeout = {timeout}\n"
        f"root_hints = {{ {hints} }}\n\n"
        f'[dnssec]\ntrust_anchors = ["{info["trust_anchor"]}"]\n\n'
        f"[serve_stale]\nenabled = {str(opts.serve_stale).lower()}\n"
        f"client_timeout = {client_timeout}\n\n"
        f"[failure_cache]\nenabled = {str(opts.failure_cache).lower()}\n\n"
        f'[nta]\nstate_file = "nta.json"\nrecheck_interval = 300\n\n'
        f'[control]\nlisten = "127.0.0.1:{ctl}"\ntoken_file = "control.token"\n\n'
        '[log]\nlevel = "info"\n'
    )


class _LogWatcher(threading.Thread):
    """Copies the resolver's stderr to resolver.log and notes NTA events and readiness."""

    def __init__(self, stream: Any, path: Path, clock_box: list[SimClock]) -> None:
        super().__init__(daemon=True, name="replay-resolver-log")
        self.stream = stream
        self.path = path
        self.clock_box = clock_box
        self.ready = threading.Event()
        self.lines: list[str] = []
        self.nta_events: list[tuple[float, str, str]] = []  # (sim time, what, line)

    def run(self) -> None:
        with open(self.path, "w") as log:
            for raw in self.stream:
                line = raw.rstrip("\n")
                t = self.clock_box[0].now() if self.clock_box else 0.0
                log.write(f"{hhmm(t, True) if self.clock_box else '--:--:--'} {line}\n")
                log.flush()
                self.lines.append(line)
                del self.lines[:-50]
                if "listening on" in line:
                    self.ready.set()
                event = nta_event(line, t)
                if event is not None:
                    self.nta_events.append((*event, line))


def nta_event(line: str, now: float) -> tuple[float, str] | None:
    """(simulated time, "added" | "recheck" | "expiry" | "operator") for a line of the
    resolver's log about the NTA for de, None for any other line. `now` is the reader's
    time, used for removals; an addition takes the resolver's own time instead, from the
    end its line gives (anchord.engine.clock.utc_iso) minus the lifetime we asked for:
    the reader sees the line a few real milliseconds late, which is simulated seconds."""
    m = re.search(r"NTA for de\.? (removed \((.*)\)|expired)", line)
    if m:
        why = m.group(2) or "expiry"
        return now, ("recheck" if why.startswith("recheck") else
                     "expiry" if why == "expiry" else "operator")
    m = re.search(r"NTA added for de\.? until (\S+)", line)
    if m:
        try:
            end = parse_utc_iso(m.group(1))
        except ValueError:
            return None  # not the driver's line: no mark rather than a wrong one
        return end - NTA_LIFETIME_SECONDS, "added"
    return None


def _stop(proc: subprocess.Popen[Any] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def add_nta_with_cli(config: Path) -> str:  # noqa: D103 - see docstring
    """`anchord nta add de --lifetime 1d --reason ... -c resolver.toml`: the real CLI
    command's code, run in this process (a new interpreter would cost simulated minutes)."""
    from anchord.control.cli import nta  # imported at start-up too (see _drive)

    out = io.StringIO()
    err = io.StringIO()
    args = ["add", "de", "--lifetime", NTA_LIFETIME, "--reason",
            "de rollover: RRSIGs by a key not in the DNSKEY set", "-c", str(config)]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            nta.main(args, prog_name="anchord nta", standalone_mode=False)
    except SystemExit as e:
        if e.code:
            raise ReplayError(err.getvalue().strip()
                              or f"anchord nta add exited {e.code}") from None
    return out.getvalue().strip()


class Run:
    def __init__(self, opts: Options, variant: str = "default",
                 timeline: Timeline | None = None) -> None:
        self.opts = opts
        self.variant = variant
        self.tl = timeline or Timeline()
        # Absolute: `anchord serve` runs with the output folder as its working directory,
        # so a relative --out (scripts/main passes one) would point it at nothing.
        self.out = opts.out.resolve()
        self.world_dir = self.out / "world"
        self.marks = Marks()
        self.clock: SimClock | None = None
        self.notes: list[str] = []

    # -- processes ------------------------------------------------------------------
    def start_world(self) -> subprocess.Popen[str]:
        o = self.opts
        tb, res, ctl = o.ports
        cmd = [sys.executable, "-m", "anchord.testbed.incident.world", "--dir",
               str(self.world_dir), "--children", str(o.names), "--com-names",
               str(o.control_names), "--port", str(tb), "--resolver-port", str(res),
               "--control-port", str(ctl), "--signed-at", repr(self.tl.start),
               "--cache-dir", str(o.cache_dir or "")]
        log = open(self.out / "world.log", "w")  # noqa: SIM115 - owned by the child
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True)
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if line != "ready":
            _stop(proc)
            tail = (self.out / "world.log").read_text().strip().splitlines()[-1:] or [""]
            why = line.removeprefix("error: ") or tail[0]
            raise ReplayError(f"the testbed did not start: {why}")
        return proc

    def start_resolver(self, config: Path, clock: SimClock) -> tuple[subprocess.Popen[str],
                                                                     _LogWatcher]:
        cmd = anchord_command() + ["serve", "-c", str(config)] + clock.args()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True, cwd=self.out)
        watcher = _LogWatcher(proc.stderr, self.out / "resolver.log", [clock])
        watcher.start()
        deadline = time.time() + 30
        while not watcher.ready.wait(0.1):
            if proc.poll() is not None or time.time() > deadline:
                _stop(proc)
                watcher.join(2)
                last = watcher.lines[-1] if watcher.lines else "no output"
                raise ReplayError(f"`anchord serve` did not start: {last}")
        token = self.out / "control.token"
        while not token.exists() and time.time() < deadline:
            time.sleep(0.05)
        return proc, watcher

    # -- the run --------------------------------------------------------------------
    def execute(self) -> dict[str, Any]:
        o = self.opts
        try:
            check_writable(self.out)
        except FolderError as e:
            raise ReplayError(str(e)) from None
        check_ports(o)
        for stale in ("nta.json", "events.csv", "upstream.csv", "summary.json"):
            (self.out / stale).unlink(missing_ok=True)
        world = resolver = None
        wall0 = time.time()
        try:
            world = self.start_world()
            info = json.loads((self.world_dir / "testbed.json").read_text())
            config = self.out / "resolver.toml"
            config.write_text(resolver_toml(info, o))
            clock = SimClock.starting_in(self.tl.start - PRIME_SECONDS, o.scale, STARTUP_LEAD)
            self.clock = clock
            resolver, watcher = self.start_resolver(config, clock)
            events = EventWriter(self.out / "events.csv")
            try:
                stats = asyncio.run(self._drive(config, clock, events))
            finally:
                events.close()
            for t, how, _line in watcher.nta_events:
                if how == "added" and self.marks.nta_added_at is None:
                    self.marks.nta_added_at = t
                elif how != "added" and self.marks.nta_removed_at is None:
                    self.marks.nta_removed_at, self.marks.nta_removed_by = t, how
        finally:
            _stop(resolver)
            _stop(world)
        n_up = write_upstream_sim(self.world_dir / "upstream.csv", self.out / "upstream.csv",
                                  clock.start, clock.scale, clock.real_start)
        summary = self.summarize()
        summary["wall_seconds"] = round(time.time() - wall0, 1)
        summary["settings"] = {
            "names": o.names, "clients": o.clients,
            "minutes_per_hour": round(o.minutes_per_hour, 4),
            "scale": round(o.scale, 2), "rate_per_real_second": o.rate,
            "control_names": o.control_names, "zipf_s": o.zipf_s,
            "serve_stale": o.serve_stale, "nta": o.nta, "failure_cache": o.failure_cache,
            "skipped_first_attempts": stats.skipped, "upstream_rows": n_up,
        }
        (self.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
        return summary

    def summarize(self) -> dict[str, Any]:
        assert self.clock is not None
        events = list(read_events(self.out / "events.csv"))
        upstream = list(read_upstream(self.out / "world" / "upstream.csv", self.clock.start,
                                      self.clock.scale, self.clock.real_start))
        spec = world_spec(self.opts.names, self.opts.control_names)
        de = dns.name.from_text("de.")
        tag = derive_key(spec, de, "rogue", spec.algorithm_for(de)).key_tag
        return summarize(events, upstream, self.marks, self.tl, tag, self.variant)

    async def _drive(self, config: Path, clock: SimClock, events: EventWriter) -> Any:
        o = self.opts
        import anchord.control.cli  # noqa: F401 - paid now, not when the NTA is due
        de_names = [f"www.c{i}.de." for i in range(o.names)]
        control = [f"h{k}.hoster.com." for k in range(o.control_names)]
        workload = Workload(de_names, control, zipf_s=o.zipf_s, seed=o.seed,
                            control_share=0.2 if control else 0.0)
        _, res, _ = o.ports
        clients = Clients(workload, o.clients, ("127.0.0.1", res), clock, events.write,
                          seed=o.seed + 6)
        await clients.open()
        await asyncio.sleep(max(0.0, clock.real_at(clock.start) - time.time()))
        prime = (workload.most_popular("de", PRIME_SHARE)
                 + workload.most_popular("control", PRIME_SHARE))
        tasks = [asyncio.create_task(self._prime(clients, prime, clock))]
        await asyncio.sleep(max(0.0, clock.real_at(self.tl.start) - time.time()))
        end_real = clock.real_at(self.tl.end)
        tasks.append(asyncio.create_task(self._timeline(config, clock)))
        if o.progress:
            tasks.append(asyncio.create_task(self._progress(clock, clients)))
        try:
            await clients.run(o.rate, end_real)
            await clients.drain(2.0)
        finally:
            for t in tasks:
                t.cancel()
            clients.close()
            if o.progress:
                sys.stderr.write("\n")
        return clients.stats

    async def _prime(self, clients: Clients, names: list[str], clock: SimClock) -> None:
        primed = await clients.prime(names, PRIME_CONCURRENCY)
        counts = ", ".join(f"{k}: {v}" for k, v in sorted(primed.items()))
        self.notes.append(f"cache primed with the {len(names)} most popular names "
                          f"({counts}) between {hhmm(clock.start)} and "
                          f"{hhmm(clock.now(), True)}")
        if clock.now() > self.tl.break_at - 1800:
            self.notes.append("priming ended less than 30 simulated minutes before the "
                              "break: lower --rate or --names, or raise --minutes-per-hour")

    async def _at(self, clock: SimClock, t: float) -> None:
        await asyncio.sleep(max(0.0, clock.real_at(t) - time.time()))

    async def _timeline(self, config: Path, clock: SimClock) -> None:
        loop = asyncio.get_running_loop()

        async def fault(kind: str) -> float:
            reply = await loop.run_in_executor(None, send_fault, self.world_dir, "de.", kind)
            if not reply.get("ok"):
                self.notes.append(f"fault {kind} failed: {reply.get('error')}")
            return clock.now()

        await self._at(clock, self.tl.break_at)
        self.marks.break_at = await fault("rollover")
        if self.opts.nta:
            await self._at(clock, self.tl.nta_at)
            asked = clock.now()
            try:
                line = await loop.run_in_executor(None, add_nta_with_cli, config)
                self.notes.append(f"{line} (asked at {hhmm(asked, True)}, "
                                  f"answered at {hhmm(clock.now(), True)})")
            except ReplayError as e:
                self.marks.nta_error = str(e)
                self.notes.append(f"anchord nta add failed: {e}")
        await self._at(clock, self.tl.repair_at)
        self.marks.repair_at = await fault("repair")

    async def _progress(self, clock: SimClock, clients: Clients) -> None:
        tty = sys.stderr.isatty()
        last_line = 0.0
        while True:
            now = clock.now()
            frac = min(1.0, max(0.0, (now - self.tl.start) / (self.tl.end - self.tl.start)))
            bar = "#" * int(frac * 30) + "." * (30 - int(frac * 30))
            st = clients.stats
            sf = st.by_rcode.get("SERVFAIL", 0)
            text = (f"[{self.variant}] sim {hhmm(now)} UTC [{bar}] {100 * frac:3.0f}%  "
                    f"queries {st.sent}  SERVFAIL {sf}  in flight {st.in_flight}")
            if tty:
                sys.stderr.write("\r" + text)
                sys.stderr.flush()
            elif time.time() - last_line >= 5:
                sys.stderr.write(text + "\n")
                last_line = time.time()
            await asyncio.sleep(0.5)


def run_once(opts: Options, variant: str = "default") -> dict[str, Any]:
    run = Run(opts, variant)
    summary = run.execute()
    if run.notes:
        summary["notes"] = run.notes
        (opts.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


__all__ = ["Options", "ReplayError", "Run", "run_once", "table"]
