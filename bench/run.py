"""Side-by-side benchmark: anchord and every peer resolver installed, one worker each.

    python3 bench/run.py                      # full run (about 15-25 minutes)
    python3 bench/run.py --quick              # small sizes, a couple of minutes

Builds the signed testbed (anchord.testbed.command.Testbed; zones cached between runs),
serves it with NSD on port 53 of 127.54.x.x (loopback only), starts anchord serve and each
peer found (unbound always; kresd, pdns_recursor, named when installed) on its own
loopback port, pins the load generator (and NSD) to one core and the resolver to the
other (taskset), and measures with dnsperf:

  (a) cached answers: queries/s for --duration s over a warmed set of --cached-names
      names; p50/p99 latency at 10k queries/s (-Q 10000, per-query latency from -v);
      resolver CPU us per query from /proc/<pid>/stat utime+stime deltas;
  (b) cold: --cold distinct validated names (www.cN.de, one zone each: DS, DNSKEY and
      the answer validated), each asked once: names/s and CPU us per name;
  (c) memory: RSS growth per cached answer after --mem distinct wildcard names
      (nK.wild.de: one A RRset, its RRSIG and the NSEC proof per name).

Prints a table with every figure as a ratio to Unbound's from the same run and writes
bench/results.json. Needs root only for NSD on port 53 (peers iterate to port 53).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import dns.message
import dns.query
import dns.rcode

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "src"))

from anchord.testbed.command import Testbed  # noqa: E402
from anchord.testbed.zones import Addresses, TestbedSpec  # noqa: E402

# Not the tests' 127.53/8 addresses: a benchmark may run beside the test suite.
ADDRESSES = Addresses(root=("127.54.0.1",), de=("127.54.1.1", "127.54.1.2"),
                      com=("127.54.2.1",), children=("127.54.3.1",))
LOAD_CPU = "0"  # dnsperf and NSD
RESOLVER_CPU = "1"
TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.bind(("127.0.0.1", 0))
        port = int(u.getsockname()[1])
    return port


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def rss_bytes(pid: int) -> int:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE


def tree_pids(pid: int) -> list[int]:
    """`pid` and its descendants (kresd and named fork helpers in some set-ups)."""
    out = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    for c in children:
        out += tree_pids(int(c))
    return out


# --- the authority -----------------------------------------------------------------------

def build_testbed(children: int, work: Path) -> dict[str, object]:
    directory = work / f"testbed-{children}"
    t = time.monotonic()
    tb = Testbed(TestbedSpec(children=children, addresses=ADDRESSES), directory,
                 now=time.time(), port=free_port(), resolver_port=free_port(),
                 control_port=free_port())
    tb.start(timeout=3600)
    tb.stop()
    log(f"testbed with {children} children ready in {time.monotonic() - t:.0f} s")
    info: dict[str, object] = tb.info
    info["directory"] = str(directory)
    return info


def start_nsd(info: dict[str, object], work: Path) -> subprocess.Popen[bytes]:
    directory = Path(str(info["directory"]))
    nsd_dir = work / "nsd"
    nsd_dir.mkdir(exist_ok=True)
    lines = ["server:"]
    lines += [f"    ip-address: {a}" for a in ADDRESSES.all()]
    lines += ["    port: 53", f'    zonesdir: "{directory}"', f'    pidfile: "{nsd_dir}/nsd.pid"',
              '    username: ""', '    chroot: ""', '    database: ""',
              f'    zonelistfile: "{nsd_dir}/zone.list"', f'    xfrdfile: "{nsd_dir}/xfrd.state"',
              f'    logfile: "{nsd_dir}/nsd.log"', "    server-count: 1", "    verbosity: 0",
              "    hide-version: yes",
              # Response rate limiting (on in Debian's build, 200 answers/s per /24 and
              # kind of answer) would cap the mem part's wildcard answers, which RRL
              # counts as one kind, at about 300 names/s for every resolver alike.
              "    rrl-ratelimit: 0", "    rrl-whitelist-ratelimit: 0",
              "", "remote-control:", "    control-enable: no", ""]
    for z in info["zones"]:  # type: ignore[attr-defined]
        lines += ["zone:", f'    name: "{z["name"]}"', f'    zonefile: "{z["file"]}"', ""]
    conf = nsd_dir / "nsd.conf"
    conf.write_text("\n".join(lines))
    proc = subprocess.Popen(["taskset", "-c", LOAD_CPU, "nsd", "-c", str(conf), "-d"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"nsd exited: {(nsd_dir / 'nsd.log').read_text()[-2000:]}")
        try:
            r = dns.query.udp(dns.message.make_query("www.c0.de.", "A"), ADDRESSES.children[0],
                              port=53, timeout=0.5)
            if r.rcode() == dns.rcode.NOERROR and r.answer:
                return proc
        except (dns.exception.Timeout, OSError):
            pass
        time.sleep(0.2)
    raise RuntimeError("nsd did not start")


# --- the resolvers --------------------------------------------------------------------------

@dataclass
class Resolver:
    name: str
    binary: str
    configure: Callable[[Path, int, dict[str, object]], list[str]]  # -> argv
    proc: subprocess.Popen[bytes] | None = None
    port: int = 0
    pid: int = 0
    logfile: Path | None = None

    def start(self, work: Path, info: dict[str, object], env: dict[str, str] | None = None
              ) -> None:
        d = work / self.name
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        self.port = free_port()
        argv = self.configure(d, self.port, info)
        self.logfile = d / "output.log"
        out = open(self.logfile, "wb")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(["taskset", "-c", RESOLVER_CPU, *argv], cwd=d,
                                     stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True, env=env)
        out.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.logfile.read_text()[-3000:]}")
            try:
                dns.query.udp(dns.message.make_query(".", "SOA"), "127.0.0.1", port=self.port,
                              timeout=1)
                break
            except (dns.exception.Timeout, OSError):
                time.sleep(0.2)
        else:
            raise RuntimeError(f"{self.name} does not answer:\n{self.logfile.read_text()[-3000:]}")
        # The serving process: the deepest one of the tree that is not taskset itself.
        self.pid = self._serving_pid()

    def _serving_pid(self) -> int:
        assert self.proc is not None
        pids = tree_pids(self.proc.pid)
        best = pids[0]
        for pid in pids:
            try:
                comm = Path(f"/proc/{pid}/comm").read_text().strip()
            except OSError:
                continue
            if comm != "taskset":
                best = pid
                break
        return best

    def cpu(self) -> float:
        return sum(cpu_seconds(p) for p in tree_pids(self.pid))

    def rss(self) -> int:
        return sum(rss_bytes(p) for p in tree_pids(self.pid))

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None


def _ds_text(info: dict[str, object]) -> str:
    return str(info["trust_anchor"]).strip()


def _hints(info: dict[str, object]) -> list[tuple[str, str]]:
    return [(n, addrs[0]) for n, addrs in info["root_hints"].items()]  # type: ignore[attr-defined]


def anchord_config(python: str) -> Callable[[Path, int, dict[str, object]], list[str]]:
    def configure(d: Path, port: int, info: dict[str, object]) -> list[str]:
        hints = ", ".join(f'"{n}" = ["{a}"]' for n, a in _hints(info))
        (d / "anchord.toml").write_text(
            "[server]\n"
            f'listen = ["127.0.0.1:{port}"]\n'
            "workers = 1\nfast_path = true\n\n"
            "[upstream]\nport = 53\ndo_ipv6 = false\n"
            f"root_hints = {{ {hints} }}\n\n"
            f'[dnssec]\ntrust_anchors = ["{_ds_text(info)}"]\n\n'
            "[control]\nenabled = false\n\n"
            '[nta]\nstate_file = "nta.json"\n\n'
            '[log]\nlevel = "warning"\n')
        return [python, "-c", "from anchord.cli import main; main()", "serve", "-c",
                str(d / "anchord.toml")]

    return configure


def unbound_config(d: Path, port: int, info: dict[str, object]) -> list[str]:
    hints = "".join(f". 3600000 NS {n}\n{n} 3600000 A {a}\n" for n, a in _hints(info))
    (d / "root.hints").write_text(hints)
    (d / "unbound.conf").write_text(f"""server:
    interface: 127.0.0.1@{port}
    port: {port}
    do-daemonize: no
    username: ""
    chroot: ""
    directory: "{d}"
    pidfile: ""
    use-syslog: no
    logfile: ""
    verbosity: 0
    num-threads: 1
    do-ip6: no
    do-not-query-localhost: no
    access-control: 127.0.0.0/8 allow
    root-hints: "{d}/root.hints"
    trust-anchor: "{_ds_text(info)}"
    module-config: "validator iterator"
    msg-cache-size: 512m
    rrset-cache-size: 1024m
    key-cache-size: 128m
    outgoing-range: 4096
    num-queries-per-thread: 4096
    so-rcvbuf: 4m
""")
    return ["unbound", "-d", "-c", str(d / "unbound.conf")]


def kresd_config(d: Path, port: int, info: dict[str, object]) -> list[str]:
    hints = ", ".join(f"['{n}'] = {{'{a}'}}" for n, a in _hints(info))
    (d / "ta.keys").write_text(_ds_text(info) + "\n")
    (d / "config").write_text(f"""
net.listen('127.0.0.1', {port}, {{ kind = 'dns' }})
net.ipv6 = false
modules = {{ 'hints > iterate' }}
hints.root({{ {hints} }})
trust_anchors.add_file('{d}/ta.keys', true)
cache.size = 1024 * MB
""")
    return ["kresd", "-n", "-c", str(d / "config"), str(d)]


def pdns_config(d: Path, port: int, info: dict[str, object]) -> list[str]:
    hints = "".join(f". 3600000 NS {n}\n{n} 3600000 A {a}\n" for n, a in _hints(info))
    (d / "root.hints").write_text(hints)
    ds = _ds_text(info).split()
    (d / "ta.lua").write_text(f'addTA(".", "{" ".join(ds[3:])}")\n')
    (d / "recursor.conf").write_text(f"""local-address=127.0.0.1
local-port={port}
hint-file={d}/root.hints
lua-config-file={d}/ta.lua
dnssec=validate
threads=1
pdns-distributes-queries=no
reuseport=yes
socket-dir={d}
daemon=no
write-pid=no
query-local-address=0.0.0.0
dont-query=
max-cache-entries=2000000
max-packetcache-entries=2000000
""")
    return ["pdns_recursor", f"--config-dir={d}"]


def named_config(d: Path, port: int, info: dict[str, object]) -> list[str]:
    hints = "".join(f". 3600000 NS {n}\n{n} 3600000 A {a}\n" for n, a in _hints(info))
    (d / "root.hints").write_text(hints)
    ds = _ds_text(info).split()
    (d / "named.conf").write_text(f"""options {{
    directory "{d}";
    listen-on port {port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    recursion yes;
    allow-query {{ 127.0.0.0/8; }};
    dnssec-validation yes;
    max-cache-size 1024m;
    pid-file none;
}};
trust-anchors {{ . static-ds {ds[3]} {ds[4]} {ds[5]} "{ds[6]}"; }};
zone "." {{ type hint; file "{d}/root.hints"; }};
""")
    return ["named", "-g", "-n", "1", "-c", str(d / "named.conf")]


# --- dnsperf ------------------------------------------------------------------------------------

@dataclass
class PerfResult:
    sent: int = 0
    completed: int = 0
    qps: float = 0.0
    elapsed: float = 0.0
    rcodes: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)


def dnsperf(port: int, names: Path, *extra: str, verbose: bool = False) -> PerfResult:
    argv = ["taskset", "-c", LOAD_CPU, "dnsperf", "-s", "127.0.0.1", "-p", str(port),
            "-d", str(names), *extra]
    if verbose:
        argv.append("-v")
    out = subprocess.run(argv, capture_output=True, text=True, timeout=3600).stdout
    r = PerfResult()
    m = re.search(r"Queries sent:\s+(\d+)", out)
    r.sent = int(m.group(1)) if m else 0
    m = re.search(r"Queries completed:\s+(\d+)", out)
    r.completed = int(m.group(1)) if m else 0
    m = re.search(r"Queries per second:\s+([\d.]+)", out)
    r.qps = float(m.group(1)) if m else 0.0
    m = re.search(r"Run time \(s\):\s+([\d.]+)", out)
    r.elapsed = float(m.group(1)) if m else 0.0
    m = re.search(r"Response codes:\s+(.*)", out)
    if m:
        for part in m.group(1).split(","):
            code, _, n = part.strip().partition(" ")
            r.rcodes[code] = int(n.split()[0]) if n else 0
    if verbose:
        # "> NOERROR www.c1.de. A 0.000123" per completed query
        for line in out.splitlines():
            if line.startswith(">"):
                try:
                    r.latencies.append(float(line.split()[-1]))
                except ValueError:
                    pass
    if not r.completed:
        raise RuntimeError(f"dnsperf got no answers:\n{out[-2000:]}")
    return r


def write_names(path: Path, names: list[str], rdtype: str = "A") -> Path:
    path.write_text("".join(f"{n} {rdtype}\n" for n in names))
    return path


def percentile(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p / 100))]


# --- the measurements ----------------------------------------------------------------------------

class _Skip(Exception):
    """A part left out with --parts."""


def measure(res: Resolver, work: Path, info: dict[str, object], args: argparse.Namespace,
            env: dict[str, str] | None) -> dict[str, float]:
    out: dict[str, float] = {}
    files = work / "names"
    files.mkdir(exist_ok=True)
    children = int(info["children"])  # type: ignore[call-overload]
    cached = write_names(files / "cached.txt",
                         [f"www.c{i}.de." for i in range(min(args.cached_names, children))])

    # (a) cached answers
    parts = set(args.parts.split(","))
    if "cached" in parts:
        res.start(work, info, env)
    try:
        if "cached" not in parts:
            raise _Skip
        for _ in range(3):  # resolve, then cache (anchord's fast path learns on a repeat)
            dnsperf(res.port, cached, "-n", "1", "-q", "50")
        dnsperf(res.port, cached, "-l", "2")  # warm-up at full load
        cpu0 = res.cpu()
        r = dnsperf(res.port, cached, "-l", str(args.duration))
        cpu1 = res.cpu()
        out["cached_qps"] = r.qps
        out["cached_cpu_us"] = (cpu1 - cpu0) / max(1, r.completed) * 1e6
        out["cached_lost"] = r.sent - r.completed
        r = dnsperf(res.port, cached, "-l", str(args.latency_duration), "-Q", "10000",
                    verbose=True)
        out["p50_ms"] = percentile(r.latencies, 50) * 1000
        out["p99_ms"] = percentile(r.latencies, 99) * 1000
        out["latency_qps"] = r.qps
        log(f"{res.name}: cached {out['cached_qps']:.0f} q/s, {out['cached_cpu_us']:.1f} us/q, "
            f"p50 {out['p50_ms']:.3f} ms, p99 {out['p99_ms']:.3f} ms")
    except _Skip:
        pass
    finally:
        res.stop()

    # (b) cold validated names
    if "cold" in parts:
        res.start(work, info, env)
    try:
        if "cold" not in parts:
            raise _Skip
        n = min(args.cold, children)
        cold = write_names(files / f"cold-{n}.txt", [f"www.c{i}.de." for i in range(n)])
        cpu0 = res.cpu()
        t = time.monotonic()
        r = dnsperf(res.port, cold, "-n", "1", "-q", str(args.cold_outstanding), "-t", "10")
        wall = time.monotonic() - t
        cpu1 = res.cpu()
        ok = r.rcodes.get("NOERROR", 0)
        out["cold_names_per_s"] = ok / max(r.elapsed, 1e-9)
        out["cold_cpu_us"] = (cpu1 - cpu0) / max(1, ok) * 1e6
        out["cold_failed"] = n - ok
        log(f"{res.name}: cold {ok}/{n} names in {r.elapsed:.1f} s ({wall:.1f} s wall): "
            f"{out['cold_names_per_s']:.0f} names/s, {out['cold_cpu_us']:.0f} us/name "
            f"{r.rcodes}")
    except _Skip:
        pass
    finally:
        res.stop()

    # (c) memory per cached answer
    if "mem" in parts:
        res.start(work, info, env)
    try:
        if "mem" not in parts:
            raise _Skip
        warm = write_names(files / "mem-warm.txt", [f"w{i}.wild.de." for i in range(200)])
        dnsperf(res.port, warm, "-n", "1", "-q", "20")
        time.sleep(0.5)
        rss0 = res.rss()
        mem = write_names(files / f"mem-{args.mem}.txt",
                          [f"n{i}.wild.de." for i in range(args.mem)])
        t = time.monotonic()
        r = dnsperf(res.port, mem, "-n", "1", "-q", str(args.cold_outstanding), "-t", "10")
        wall = time.monotonic() - t
        time.sleep(0.5)
        rss1 = res.rss()
        ok = r.rcodes.get("NOERROR", 0)
        out["mem_names"] = ok
        out["mem_seconds"] = wall
        out["rss_per_answer_bytes"] = (rss1 - rss0) / max(1, ok)
        out["rss_mib"] = rss1 / 2**20
        # Each answer holds two RRsets with their signatures: the A record and the proof.
        log(f"{res.name}: {ok}/{args.mem} wildcard answers cached in {wall:.0f} s "
            f"({ok / max(wall, 1e-9):.0f} names/s), RSS {rss0 / 2**20:.0f} -> "
            f"{rss1 / 2**20:.0f} MiB: {out['rss_per_answer_bytes']:.0f} bytes per answer, "
            f"{out['rss_per_answer_bytes'] / 2:.0f} per RRset")
    except _Skip:
        pass
    finally:
        res.stop()
    return out


FIGURES = [  # key, label, higher is better
    ("cached_qps", "cached answers, queries/s", True),
    ("cached_cpu_us", "cached answers, CPU us/query", False),
    ("p50_ms", "p50 latency at 10k q/s, ms", False),
    ("p99_ms", "p99 latency at 10k q/s, ms", False),
    ("cold_names_per_s", "cold validated names/s", True),
    ("cold_cpu_us", "cold CPU us/name", False),
    ("rss_per_answer_bytes", "RSS bytes per cached answer", False),
]


def table(results: dict[str, dict[str, float]]) -> str:
    names = list(results)
    base = results.get("unbound", {})
    width = 32
    lines = [" " * width + "".join(f"{n:>22}" for n in names)]
    for key, label, _ in FIGURES:
        row = f"{label:<{width}}"
        for n in names:
            v = results[n].get(key)
            if v is None:
                row += f"{'-':>22}"
                continue
            ratio = ""
            if base.get(key):
                ratio = f" ({v / base[key]:.2f}x)"
            # Loopback latencies are tens of microseconds: one decimal of a ms hides them.
            shown = f"{v:.3f}" if key.endswith("_ms") else f"{v:,.1f}"
            row += f"{shown + ratio:>22}"
        lines.append(row)
    return "\n".join(lines)


# Debian packages of the peers measured beside Unbound (which the test command installs).
PEER_DEBS = ("knot-resolver", "pdns-recursor", "bind9")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    ap.add_argument("--children", type=int, default=10_000)
    ap.add_argument("--cold", type=int, default=10_000)
    ap.add_argument("--mem", type=int, default=100_000)
    ap.add_argument("--cached-names", type=int, default=300)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--latency-duration", type=int, default=10)
    ap.add_argument("--cold-outstanding", type=int, default=100)
    ap.add_argument("--parts", default="cached,cold,mem",
                    help="which measurements: cached, cold, mem (comma-separated)")
    ap.add_argument("--only", default="", help="comma-separated resolver names")
    ap.add_argument("--python", default=sys.executable,
                    help="interpreter for anchord (e.g. /usr/bin/python3)")
    ap.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "anchord-bench"))
    ap.add_argument("--output", default=str(HERE / "results.json"))
    ap.add_argument("--no-install", action="store_true",
                    help="do not install the peers and tools from Debian first")
    args = ap.parse_args()
    if not args.no_install:
        # The same idempotent set-up as the test command, plus the peers it leaves out.
        subprocess.run(["bash", str(ROOT / "scripts" / "setup.sh")], check=True,
                       env={**os.environ, "ANCHORD_EXTRA_DEBS": " ".join(PEER_DEBS)})
    if args.quick:
        args.children, args.cold, args.mem = 1000, 1000, 5000
        args.duration, args.latency_duration = 3, 3
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    for tool in ("dnsperf", "nsd", "taskset", "unbound"):
        if shutil.which(tool) is None:
            print(f"bench: {tool} is not installed (apt-get install {tool})", file=sys.stderr)
            return 2
    info = build_testbed(args.children, work)
    nsd = start_nsd(info, work)
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    candidates = [
        Resolver("unbound", "unbound", unbound_config),
        Resolver("anchord", args.python, anchord_config(args.python)),
        Resolver("pdns-recursor", "pdns_recursor", pdns_config),
        Resolver("bind", "named", named_config),
        Resolver("knot-resolver", "kresd", kresd_config),
    ]
    only = {s for s in args.only.split(",") if s}
    results: dict[str, dict[str, float]] = {}
    try:
        for res in candidates:
            if only and res.name not in only:
                continue
            if shutil.which(res.binary) is None:
                log(f"{res.name}: not installed, skipped")
                continue
            log(f"{res.name}: measuring")
            try:
                results[res.name] = measure(res, work, info, args,
                                            env if res.name == "anchord" else None)
            except (RuntimeError, subprocess.TimeoutExpired) as e:
                log(f"{res.name}: failed: {e}")
                res.stop()
    finally:
        os.killpg(nsd.pid, signal.SIGTERM)
        nsd.wait(timeout=15)
    print()
    print(table(results))
    doc = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "kernel": os.uname().release},
        "python": subprocess.run([args.python, "-c", "import sys; print(sys.version)"],
                                 capture_output=True, text=True).stdout.strip(),
        "sizes": {"children": args.children, "cold": args.cold, "mem": args.mem,
                  "cached_names": args.cached_names, "duration": args.duration},
        "results": results,
        "ratios_to_unbound": {
            n: {k: v / results["unbound"][k] for k, v in r.items()
                if results.get("unbound", {}).get(k)}
            for n, r in results.items()},
    }
    Path(args.output).write_text(json.dumps(doc, indent=1) + "\n")
    print(f"\nwritten to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
