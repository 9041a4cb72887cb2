"""The replay's world: the testbed (root, de with N children, com with control names),
served by the embedded authoritative server in its own process, with a counter of every
upstream query it receives (the resolver's upstream traffic) written to upstream.csv.

Run by `anchord replay` as
    python -m anchord.testbed.incident.world --dir DIR/world --children N --signed-at T ...
Zones are signed at simulated time T (the scenario's start). Upstream queries are stamped
with the real time; the replay converts them to simulated time with the shared clock.
It prints one line "ready" on stdout once serving, and stops on SIGTERM/SIGINT.
Faults go through the testbed's control socket DIR/world/testbed.sock, as with
`anchord testbed fault`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

import dns.message
import dns.name
import dns.rdatatype

from anchord.testbed.command import Testbed, TestbedError
from anchord.testbed.zones import MANIFEST, TestbedSpec

# What a TLD's operator sets (DENIC publishes DS with 7200 s; the SOA minimum gives the
# NSEC3 and negative TTL, capped by the SOA TTL of 3600 s).
DE_DS_TTL = 7200
DE_NEGATIVE_TTL = 3600
UPSTREAM_HEADER = "real,server,zone,qname,qtype\n"


def world_spec(children: int, com_names: int) -> TestbedSpec:
    return TestbedSpec(children=children, child_ttl_mix=True, de_ds_ttl=DE_DS_TTL,
                       de_negative_ttl=DE_NEGATIVE_TTL, com_names=com_names)


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "anchord" / "replay-worlds"


def _link_tree(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        target = dst / f.name
        if target.exists():
            target.unlink()
        try:
            os.link(f, target)
        except OSError:
            shutil.copy2(f, target)


def reuse_cached_zones(spec: TestbedSpec, signed_at: float, zones: Path, cache: Path | None
                       ) -> Path | None:
    """Hard-link signed zones from the cache into `zones` (load_or_build then reuses
    them); returns the cache folder for this spec and time."""
    if cache is None:
        return None
    folder = cache / f"{spec.fingerprint()}-{int(signed_at)}"
    if (folder / MANIFEST).exists() and not (zones / MANIFEST).exists():
        _link_tree(folder, zones)
    return folder


def save_zones_to_cache(zones: Path, folder: Path | None) -> None:
    if folder is None or (folder / MANIFEST).exists() or not (zones / MANIFEST).exists():
        return
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    try:
        _link_tree(zones, tmp)
        tmp.rename(folder)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)


class UpstreamCounter:
    """Wraps Authority.respond: one CSV row per query the resolver sends."""

    def __init__(self, authority: Any, path: Path) -> None:
        self.authority = authority
        self.inner = authority.respond
        self.rows: list[str] = []
        self.file = open(path, "w", buffering=1 << 16)  # noqa: SIM115 - closed in close()
        self.file.write(UPSTREAM_HEADER)
        authority.respond = self.respond

    def respond(self, query: dns.message.Message, address: str) -> dns.message.Message | None:
        if query.question:
            q = query.question[0]
            zone = self.authority.zone_for(address, q.name, int(q.rdtype))
            self.rows.append(
                f"{time.time():.4f},{address},{zone.to_text() if zone else ''},"
                f"{q.name.to_text()},{dns.rdatatype.to_text(q.rdtype)}\n")
        response: dns.message.Message | None = self.inner(query, address)
        return response

    def flush(self) -> None:
        if self.rows:
            self.file.write("".join(self.rows))
            self.rows = []
        self.file.flush()

    def close(self) -> None:
        self.flush()
        self.file.close()


async def serve_world(args: argparse.Namespace) -> int:
    directory = Path(args.dir)
    spec = world_spec(args.children, args.com_names)
    signed_at = args.signed_at  # signatures made "now" in simulated time
    cache = reuse_cached_zones(spec, signed_at, directory / "zones",
                               Path(args.cache_dir) if args.cache_dir else None)
    tb = Testbed(spec, directory, now=signed_at, port=args.port,
                 resolver_port=args.resolver_port, control_port=args.control_port)
    try:
        await tb.start_async()
    except TestbedError as e:
        print(f"error: {e}", flush=True)
        return 1
    save_zones_to_cache(directory / "zones", cache)
    assert tb._server is not None
    # Index every child zone now (about 3 ms each), not on its first query: a first
    # query that waits for it would look like a slow server to the resolver.
    authority = tb._server.authority
    for origin in tb.hierarchy.child_zones[:4000] if tb.hierarchy else ():
        authority._served_zone(origin)
    counter = UpstreamCounter(tb._server.authority, directory / "upstream.csv")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    try:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), 0.5)
            except TimeoutError:
                pass
            counter.flush()
    finally:
        counter.close()
        await tb.stop_async()
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="anchord-replay-world")
    p.add_argument("--dir", required=True)
    p.add_argument("--children", type=int, default=2000)
    p.add_argument("--com-names", type=int, default=500)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--resolver-port", type=int, required=True)
    p.add_argument("--control-port", type=int, required=True)
    p.add_argument("--cache-dir", default="")
    p.add_argument("--signed-at", type=float, required=True)
    args = p.parse_args(argv)
    try:
        import uvloop

        return uvloop.run(serve_world(args))
    except ImportError:  # pragma: no cover
        return asyncio.run(serve_world(args))


if __name__ == "__main__":
    sys.exit(main())
