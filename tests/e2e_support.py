"""Shared helpers for the end-to-end tests: real processes on loopback, real clients.

Processes started here (`anchord testbed`, `anchord serve`, `nsd -d`) run in their own
session, have their output collected by a thread (so pipes never fill), and are stopped
by their own id at the end; a forgotten one is stopped at interpreter exit.

Clients are the Debian ones: dig, kdig, delv. Their text output is parsed into a small
Reply (rcode, flags, EDE list) and every assertion message carries the raw output.

bench/cold.py imports this module too, so it does not import pytest at module level.
"""

from __future__ import annotations

import atexit
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode

# One writer of delv anchor files, the testbed's own (DIR/delv-anchor.conf); re-exported
# for the tests that build one for another signer.
from anchord.testbed.anchors import delv_anchor_file as delv_anchor_file

ANCHORD = [sys.executable, "-c", "from anchord.cli import main; main()"]
LOOPBACK = "127.0.0.1"


# --- ports -----------------------------------------------------------------------------


def free_port(host: str = LOOPBACK) -> int:
    """A port free for both UDP and TCP on `host` right now (the kernel's choice)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind((host, 0))
            port = int(u.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                try:
                    t.bind((host, port))
                except OSError:
                    continue
        return port
    raise RuntimeError("no free port on " + host)


def port_free_on(addresses: list[str] | tuple[str, ...], port: int) -> bool:
    for addr in addresses:
        for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
            with socket.socket(socket.AF_INET, kind) as s:
                try:
                    s.bind((addr, port))
                except OSError:
                    return False
    return True


def free_port_on(addresses: list[str] | tuple[str, ...]) -> int:
    """A port free on every one of `addresses` (UDP and TCP)."""
    for _ in range(50):
        port = free_port(addresses[0])
        if port_free_on(addresses, port):
            return port
    raise RuntimeError("no port free on " + ", ".join(addresses))


# --- processes -------------------------------------------------------------------------

_LIVE: set[Proc] = set()


class Proc:
    """A child process in its own session with its output (stdout+stderr) collected."""

    def __init__(self, name: str, argv: list[str], cwd: Path | None = None) -> None:
        self.name = name
        self.argv = argv
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self.popen = subprocess.Popen(
            argv,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        _LIVE.add(self)
        self._reader = threading.Thread(target=self._read, name=f"{name}-output", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    @property
    def output(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def wait_for(self, text: str, timeout: float) -> bool:
        """True once a line containing `text` was printed; False on exit or timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if any(text in line for line in self.lines):
                    return True
                left = deadline - time.monotonic()
                if left <= 0 or (self.popen.poll() is not None and not self._reader.is_alive()):
                    return False
                self._cond.wait(min(left, 0.2))

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM this process (by its id), then SIGKILL its session if it lingers."""
        _LIVE.discard(self)
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        # Helpers this process forked itself (NSD's server and xfrd) share its session:
        # give them a moment to follow their parent out, then kill what is left of it.
        deadline = time.monotonic() + 5
        while _session_members(self.popen.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _session_members(self.popen.pid):
            try:
                os.killpg(self.popen.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if self.popen.poll() is None:
            self.popen.wait(5)
        self._reader.join(5)
        return self.popen.returncode


def _session_members(sid: int) -> list[int]:
    """Live (not zombie) processes in session `sid`, found through /proc (Linux)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        state, session = fields[0], int(fields[3])
        if session == sid and state != "Z":
            members.append(int(entry.name))
    return members


@atexit.register
def _stop_leftovers() -> None:
    for proc in list(_LIVE):
        proc.stop(5)


# --- the testbed and the resolver as processes -------------------------------------------


@dataclass
class TestbedProc:
    """`anchord testbed --dir DIR` running as a process."""

    __test__ = False

    proc: Proc
    directory: Path
    port: int
    resolver_port: int

    @property
    def info(self) -> dict[str, object]:
        import json

        data: dict[str, object] = json.loads((self.directory / "testbed.json").read_text())
        return data

    @property
    def trust_anchor(self) -> str:
        return (self.directory / "trust-anchor.txt").read_text().strip()

    @property
    def resolver_toml(self) -> Path:
        return self.directory / "resolver.toml"

    def names(self) -> list[str]:
        return (self.directory / "names.txt").read_text().split()

    def stop(self) -> None:
        self.proc.stop()


TESTBED_ADDRESSES = ("127.53.0.1", "127.53.1.1", "127.53.1.2", "127.53.2.1", "127.53.3.1")


def start_testbed(directory: Path, children: int, start_timeout: float = 60.0,
                  extra: list[str] | None = None) -> TestbedProc:
    """Start `anchord testbed` on a free port (never the default 5300); wait until it serves.

    The resolver.toml it writes is then adjusted by `prepare_resolver_toml`: a free listen
    port (passed as --resolver-port) and the control API off, so nothing collides with a
    developer's own testbed and resolver on the default ports.
    """
    last = ""
    for _ in range(5):
        port = free_port_on(TESTBED_ADDRESSES)
        resolver_port = free_port()
        argv = [*ANCHORD, "testbed", "--dir", str(directory), "--children", str(children),
                "--port", str(port), "--resolver-port", str(resolver_port), *(extra or [])]
        proc = Proc("anchord-testbed", argv)
        if proc.wait_for("anchord testbed: serving", start_timeout):
            prepare_resolver_toml(directory / "resolver.toml")
            return TestbedProc(proc, directory, port, resolver_port)
        proc.stop()
        last = proc.output
        if "cannot listen" not in last:
            break
    raise RuntimeError(f"anchord testbed did not start:\n{last}")


def set_toml_key(text: str, section: str, key: str, value: str) -> str:
    """Set `key = value` (value already in TOML syntax) inside [section] of a TOML text."""
    out: list[str] = []
    current = ""
    done = False
    lines = text.splitlines()
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            if current == section and not done:
                out.append(f"{key} = {value}")
                done = True
            current = stripped.strip("[]").strip()
        elif current == section and re.match(rf"{re.escape(key)}\s*=", stripped):
            out.append(f"{key} = {value}")
            done = True
            continue
        out.append(line)
        if i == len(lines) - 1 and current == section and not done:
            out.append(f"{key} = {value}")
            done = True
    if not done:
        out += ["", f"[{section}]", f"{key} = {value}"]
    return "\n".join(out) + "\n"


def prepare_resolver_toml(path: Path, *, listen_port: int | None = None,
                          upstream_port: int | None = None, target: Path | None = None) -> Path:
    """Control API off; optionally another listen/upstream port; write to `target` or back."""
    text = path.read_text()
    text = set_toml_key(text, "control", "enabled", "false")
    if listen_port is not None:
        text = set_toml_key(text, "server", "listen", f'["{LOOPBACK}:{listen_port}"]')
    if upstream_port is not None:
        text = set_toml_key(text, "upstream", "port", str(upstream_port))
    tomllib.loads(text)  # must stay valid TOML
    out = target or path
    out.write_text(text)
    return out


def listen_port_of(config: Path) -> int:
    data = tomllib.loads(config.read_text())
    listen = data["server"]["listen"][0]
    return int(listen.rsplit(":", 1)[1])


@dataclass
class ResolverProc:
    """`anchord serve -c CONFIG` running as a process, answering on 127.0.0.1:port."""

    proc: Proc
    config: Path
    port: int

    def stop(self) -> None:
        code = self.proc.stop()
        assert code == 0 or code == -signal.SIGTERM, (
            f"anchord serve exited with {code}:\n{self.proc.output[-3000:]}")

    @property
    def log(self) -> str:
        return self.proc.output


def start_resolver(config: Path, start_timeout: float = 20.0,
                   probe: tuple[str, str] = (".", "SOA")) -> ResolverProc:
    """Start `anchord serve -c config` (cwd = the config's directory) and wait until it
    answers `probe` with any rcode. A port lost to a race is replaced and retried."""
    last = ""
    for attempt in range(4):
        port = listen_port_of(config)
        proc = Proc("anchord-serve", [*ANCHORD, "serve", "-c", str(config)], cwd=config.parent)
        if proc.wait_for(f"listening on udp {LOOPBACK}:{port}", start_timeout):
            deadline = time.monotonic() + start_timeout
            while time.monotonic() < deadline and proc.alive():
                q = dns.message.make_query(probe[0], probe[1], want_dnssec=True)
                try:
                    dns.query.udp(q, LOOPBACK, port=port, timeout=2, ignore_unexpected=True)
                except (dns.exception.DNSException, OSError):
                    continue
                return ResolverProc(proc, config, port)
        proc.stop()
        last = proc.output
        if "already in use" not in last or attempt == 3:
            break
        prepare_resolver_toml(config, listen_port=free_port())
    raise RuntimeError(f"anchord serve did not start:\n{last}")


# --- clients: dig, kdig, delv ------------------------------------------------------------


@dataclass
class Reply:
    """What a client printed, parsed: rcode name, header flags, EDE (code, text) list."""

    rcode: str
    flags: set[str]
    edes: list[tuple[int, str]] = field(default_factory=list)
    output: str = ""

    @property
    def ad(self) -> bool:
        return "ad" in self.flags

    @property
    def ede_codes(self) -> list[int]:
        return [c for c, _ in self.edes]

    def verdict(self) -> str:
        """secure / insecure / failed, in the sense delv reports."""
        if self.rcode == "SERVFAIL":
            return "failed"
        return "secure" if self.ad else "insecure"


class ClientError(AssertionError):
    pass


def _run(argv: list[str], timeout: float = 20.0) -> str:
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    return r.stdout + r.stderr


_DIG_HEADER = re.compile(r"status: ([A-Z]+)")
_DIG_FLAGS = re.compile(r";; flags:([^;]*);", re.IGNORECASE)
_DIG_EDE = re.compile(r"^; EDE: (\d+)(?: \([^)]*\))?:?\s*(?:\((.*)\))?\s*$")
_KDIG_EDE = re.compile(r"^;; EDE: (\d+)(?: \([^)]*\))?:?\s*(?:'(.*)')?\s*$")


def parse_dig(output: str) -> Reply:
    status = _DIG_HEADER.search(output)
    flags = _DIG_FLAGS.search(output)
    if status is None or flags is None:
        raise ClientError(f"no DNS response in the client's output:\n{output}")
    edes: list[tuple[int, str]] = []
    for line in output.splitlines():
        m = _DIG_EDE.match(line) or _KDIG_EDE.match(line)
        if m:
            edes.append((int(m.group(1)), m.group(2) or ""))
    return Reply(status.group(1), set(flags.group(1).split()), edes, output)


def dig(port: int, name: str, rdtype: str = "A", *opts: str,
        server: str = LOOPBACK) -> Reply:
    out = _run(["dig", "+dnssec", "+time=5", "+tries=1", "-p", str(port), f"@{server}",
                *opts, name, rdtype])
    return parse_dig(out)


def kdig(port: int, name: str, rdtype: str = "A", *opts: str,
         server: str = LOOPBACK) -> Reply:
    out = _run(["kdig", "+dnssec", "+time=5", "+retry=0", "-p", str(port), f"@{server}",
                *opts, name, rdtype])
    return parse_dig(out)


def delv(port: int, anchor_file: Path, name: str, rdtype: str = "A",
         server: str = LOOPBACK, *opts: str) -> tuple[str, str]:
    """(verdict, output): verdict is secure / insecure / failed / unknown."""
    out = _run(["delv", "-a", str(anchor_file), f"@{server}", "-p", str(port), *opts,
                name, rdtype], timeout=30)
    return delv_verdict(out), out


def delv_verdict(output: str) -> str:
    if "; fully validated" in output or "; negative response, fully validated" in output:
        return "secure"
    if "; unsigned answer" in output or "; negative response, unsigned answer" in output:
        return "insecure"
    if "resolution failed" in output:
        return "failed"
    return "unknown"


def ok_rcode(name: str) -> int:
    return int(dns.rcode.from_text(name))


# --- NSD -----------------------------------------------------------------------------------


def nsd_conf(workdir: Path, zonesdir: Path, addresses: list[str] | tuple[str, ...], port: int,
             zones: list[tuple[str, str]]) -> Path:
    """An nsd.conf for an unprivileged foreground NSD: every path in `workdir`.

    zones: (zone name, zone file relative to zonesdir or absolute).
    """
    lines = ["server:"]
    lines += [f"    ip-address: {a}" for a in addresses]
    lines += [
        f"    port: {port}",
        f'    zonesdir: "{zonesdir}"',
        f'    pidfile: "{workdir / "nsd.pid"}"',
        '    username: ""',
        '    chroot: ""',
        '    database: ""',
        f'    zonelistfile: "{workdir / "zone.list"}"',
        f'    xfrdfile: "{workdir / "xfrd.state"}"',
        f'    logfile: "{workdir / "nsd.log"}"',
        "    server-count: 1",
        "    verbosity: 1",
        "    hide-version: yes",
        # Response rate limiting (on in Debian's build) drops repeated answers to one
        # source: a resolver on loopback asking fast must not be mistaken for an attack.
        "    rrl-ratelimit: 0",
        "    rrl-whitelist-ratelimit: 0",
        "",
        "remote-control:",
        "    control-enable: no",
        "",
    ]
    for name, zonefile in zones:
        lines += ["zone:", f'    name: "{name}"', f'    zonefile: "{zonefile}"', ""]
    conf = workdir / "nsd.conf"
    conf.write_text("\n".join(lines))
    return conf


@dataclass
class NsdProc:
    proc: Proc
    conf: Path
    port: int

    @property
    def log(self) -> str:
        logfile = self.conf.parent / "nsd.log"
        text = logfile.read_text() if logfile.exists() else ""
        return self.proc.output + "\n" + text

    def stop(self) -> None:
        self.proc.stop()


def start_nsd(conf: Path, port: int, probe_server: str, probe_zone: str,
              timeout: float = 20.0) -> NsdProc:
    """Check the config with nsd-checkconf, run `nsd -c conf -d`, wait until it answers."""
    check = subprocess.run(["nsd-checkconf", str(conf)], capture_output=True, text=True,
                           timeout=20)
    if check.returncode != 0:
        raise RuntimeError(f"nsd-checkconf {conf} failed:\n{check.stdout}{check.stderr}\n"
                           f"{conf.read_text()}")
    proc = Proc("nsd", ["nsd", "-c", str(conf), "-d"], cwd=conf.parent)
    nsd = NsdProc(proc, conf, port)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.alive():
        q = dns.message.make_query(probe_zone, "SOA")
        try:
            r = dns.query.udp(q, probe_server, port=port, timeout=0.5,
                              ignore_unexpected=True)
        except (dns.exception.DNSException, OSError):
            time.sleep(0.1)
            continue
        if r.rcode() == dns.rcode.NOERROR and r.answer:
            return nsd
        time.sleep(0.1)
    log = nsd.log
    proc.stop()
    raise RuntimeError(f"nsd did not answer {probe_zone} SOA at {probe_server}:{port}:\n{log}")
