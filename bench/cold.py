#!/usr/bin/env python3
"""Cold-cache benchmark: every name of a fresh testbed, asked once, through `anchord serve`.

    python bench/cold.py                    # 10,000 children, 100 queries in flight
    python bench/cold.py --children 2000 --concurrency 50
    python bench/cold.py --dir /tmp/bench   # keep (and reuse) the signed zones

Starts `anchord testbed` and `anchord serve` as processes on free loopback ports (never
the defaults, so a developer's own instance can keep running), sends the distinct names
of names.txt (www.cN.de ... : each needs its own DS, DNSKEY and answer, so every one is a
cold resolution below a warm de) with a bounded number in flight, and prints names/s,
latency percentiles, the count per rcode and the share of answers with AD. Exits 1 if any
name failed (timeout, rcode other than NOERROR, no AD), 2 if the set-up failed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.rcode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.e2e_support import (  # noqa: E402
    TESTBED_ADDRESSES,
    NsdProc,
    free_port,
    free_port_on,
    nsd_conf,
    prepare_resolver_toml,
    start_nsd,
    start_resolver,
    start_testbed,
)


async def ask(port: int, name: str, timeout: float, attempts: int) -> tuple[str, bool, float]:
    """(rcode text or TIMEOUT, AD, seconds) for one name, over UDP with TCP on TC."""
    q = dns.message.make_query(name, "A", want_dnssec=True)
    start = time.perf_counter()
    for _ in range(attempts):
        try:
            # A late answer to some other process's query can land on a reused port:
            # ignore_unexpected skips it instead of failing this name.
            r, _tcp = await dns.asyncquery.udp_with_fallback(
                q, "127.0.0.1", timeout=timeout, port=port, ignore_unexpected=True)
        except dns.exception.Timeout:
            continue
        except (dns.exception.DNSException, OSError) as e:
            return f"ERROR {type(e).__name__}", False, time.perf_counter() - start
        return (dns.rcode.to_text(r.rcode()), bool(r.flags & dns.flags.AD),
                time.perf_counter() - start)
    return "TIMEOUT", False, time.perf_counter() - start


async def run(port: int, names: list[str], concurrency: int, timeout: float,
              attempts: int) -> list[tuple[str, str, bool, float]]:
    sem = asyncio.Semaphore(concurrency)
    results: list[tuple[str, str, bool, float]] = []

    async def one(name: str) -> None:
        async with sem:
            rcode, ad, secs = await ask(port, name, timeout, attempts)
            results.append((name, rcode, ad, secs))

    await asyncio.gather(*(one(n) for n in names))
    return results


def cpu_seconds(pid: int) -> float:
    """User+system CPU time of a live process (Linux /proc), 0.0 if unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def percentile(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    s = sorted(values)
    return s[min(len(s) - 1, int(p / 100 * len(s)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--children", type=int, default=10_000, help="child zones (default 10000)")
    ap.add_argument("--concurrency", type=int, default=100, help="queries in flight")
    ap.add_argument("--timeout", type=float, default=10.0, help="per attempt, seconds")
    ap.add_argument("--attempts", type=int, default=2)
    ap.add_argument("--dir", type=Path, help="testbed directory (kept; signed zones reused)")
    ap.add_argument("--nsd", action="store_true",
                    help="serve the testbed's zone files with NSD and point anchord at it "
                         "(takes the embedded server's CPU out of the figure)")
    ap.add_argument("--start-timeout", type=float, default=1800.0,
                    help="seconds to wait for the testbed to sign and serve")
    args = ap.parse_args()

    tmp = None
    directory = args.dir
    if directory is None:
        tmp = tempfile.TemporaryDirectory(prefix="anchord-bench-")
        directory = Path(tmp.name)
    directory.mkdir(parents=True, exist_ok=True)
    testbed = resolver = None
    nsd: NsdProc | None = None
    try:
        t0 = time.monotonic()
        try:
            testbed = start_testbed(directory, args.children, start_timeout=args.start_timeout)
        except RuntimeError as e:
            print(f"cold.py: {e}", file=sys.stderr)
            return 2
        print(f"testbed: {args.children} children ready in {time.monotonic() - t0:.1f} s "
              f"(port {testbed.port}, {directory})")
        config = testbed.resolver_toml
        try:
            if args.nsd:
                nsd_dir = directory / "nsd"
                nsd_dir.mkdir(exist_ok=True)
                info = testbed.info
                zones = [(z["name"], z["file"]) for z in info["zones"]]  # type: ignore[index]
                port = free_port_on(TESTBED_ADDRESSES)
                conf = nsd_conf(nsd_dir, directory, TESTBED_ADDRESSES, port, zones)
                nsd = start_nsd(conf, port, TESTBED_ADDRESSES[0], ".", timeout=300)
                config = prepare_resolver_toml(config, listen_port=free_port(),
                                               upstream_port=port,
                                               target=nsd_dir / "resolver.toml")
                print(f"NSD serving the zone files on port {port}")
            # Probe with the root only: de and below stay cold for the measured names.
            resolver = start_resolver(config, probe=(".", "SOA"))
        except RuntimeError as e:
            print(f"cold.py: {e}", file=sys.stderr)
            return 2
        names = list(dict.fromkeys(testbed.names()))  # distinct, in file order
        print(f"anchord serve on 127.0.0.1:{resolver.port}; asking {len(names)} names, "
              f"{args.concurrency} in flight")
        cpu0 = (cpu_seconds(resolver.proc.popen.pid), cpu_seconds(testbed.proc.popen.pid))
        start = time.perf_counter()
        results = asyncio.run(run(resolver.port, names, args.concurrency, args.timeout,
                                  args.attempts))
        elapsed = time.perf_counter() - start
        cpu = (cpu_seconds(resolver.proc.popen.pid) - cpu0[0],
               cpu_seconds(testbed.proc.popen.pid) - cpu0[1])
    finally:
        if resolver is not None:
            resolver.proc.stop()
        if nsd is not None:
            nsd.stop()
        if testbed is not None:
            testbed.stop()
        if tmp is not None:
            tmp.cleanup()

    rcodes = Counter(r for _, r, _, _ in results)
    noerror = [x for x in results if x[1] == "NOERROR"]
    ad = sum(1 for x in noerror if x[2])
    latencies = [x[3] for x in results]
    print(f"names: {len(results)} in {elapsed:.2f} s = {len(results) / elapsed:.0f} names/s")
    print("rcodes: " + ", ".join(f"{k} {v}" for k, v in rcodes.most_common()))
    share = 100.0 * ad / len(noerror) if noerror else 0.0
    print(f"AD: {ad}/{len(noerror)} NOERROR answers ({share:.1f} %)")
    print(f"latency: p50 {percentile(latencies, 50) * 1000:.1f} ms, "
          f"p90 {percentile(latencies, 90) * 1000:.1f} ms, "
          f"p99 {percentile(latencies, 99) * 1000:.1f} ms, "
          f"max {max(latencies, default=0) * 1000:.1f} ms")
    print(f"cpu during the run: anchord serve {cpu[0]:.1f} s, testbed {cpu[1]:.1f} s "
          f"(of {elapsed:.1f} s wall)")
    failed = [x for x in results if x[1] != "NOERROR" or not x[2]]
    for name, rcode, has_ad, _ in failed[:20]:
        print(f"FAILED {name}: {rcode}{'' if has_ad else ' (no AD)'}", file=sys.stderr)
    if failed:
        print(f"{len(failed)} of {len(results)} names failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
