"""`anchord testbed`: build (or reuse) the signed hierarchy, serve it, write the files
a resolver and the tests need. Also the Python API the other test suites start it with:

    tb = Testbed(TestbedSpec(children=20), Path(tmp), port=5300, now=time.time())
    tb.start()          # background thread; returns once every address is serving
    ...                 # tb.info (testbed.json as a dict), tb.resolver_toml, tb.fault(...)
    tb.stop()

This module is the adapter that reads the wall clock (only in the click command) and
owns the event loop; zones.py and authserver.py take `now` and sockets from here.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import click
import dns.exception
import dns.name

from anchord.control.config import load_config
from anchord.testbed.anchors import DELV_ANCHOR_FILE, delv_anchor_file
from anchord.testbed.authserver import Authority, AuthServer
from anchord.testbed.faults import (
    SOCKET_NAME,
    FaultKind,
    FaultState,
    parse_fault_zone,
    send_fault,
    serve_control,
)
from anchord.testbed.folders import FolderError, check_writable
from anchord.testbed.zones import (
    Addresses,
    Hierarchy,
    TestbedSpec,
    load_or_build,
    root_ns,
    zone_path,
)

DEFAULT_PORT = 5300


class TestbedError(Exception):
    """A start-up problem worth one line (port taken, bad directory)."""

    __test__ = False


class Testbed:
    """One running testbed: zones, listeners, control socket, files in `directory`."""

    __test__ = False

    def __init__(
        self,
        spec: TestbedSpec,
        directory: Path,
        *,
        now: float,
        port: int = DEFAULT_PORT,
        resolver_port: int = 5354,
        control_port: int = 8954,
    ) -> None:
        self.spec = spec
        self.directory = Path(directory)
        self.now = now
        self.port = port
        self.resolver_port = resolver_port
        self.control_port = control_port
        self.hierarchy: Hierarchy | None = None
        self.faults: FaultState | None = None
        self._server: AuthServer | None = None
        self._control: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Event | None = None
        # The resolver config that matches this testbed: resolver.toml, or
        # resolver.toml.new when resolver.toml holds the user's edits (see
        # _write_resolver_config); `config_note` is the one line that says so.
        self.resolver_config: Path = self.resolver_toml
        self.config_note = ""

    # --- inside a running event loop -----------------------------------------------

    async def start_async(self) -> None:
        try:
            check_writable(self.directory)
        except FolderError as e:
            raise TestbedError(str(e)) from None
        loop = asyncio.get_running_loop()
        # Signing 100,000 zones takes minutes: keep the loop responsive meanwhile.
        self.hierarchy = await loop.run_in_executor(
            None, load_or_build, self.spec, self.now, self.directory / "zones"
        )
        self.faults = FaultState(self.spec, self.hierarchy.now)
        authority = Authority(self.hierarchy, self.faults)
        self._server = AuthServer(authority, list(self.spec.addresses.all()), self.port)
        try:
            await self._server.start()
        except OSError as e:
            raise TestbedError(
                f"cannot listen on port {self.port} of {', '.join(self.spec.addresses.all())}: "
                f"{e.strerror or e}"
            ) from None
        self._control = await serve_control(
            self.directory / SOCKET_NAME, self.faults, authority.is_zone
        )
        self._write_files()

    async def stop_async(self) -> None:
        if self._control is not None:
            self._control.close()
            await self._control.wait_closed()
            self._control = None
            (self.directory / SOCKET_NAME).unlink(missing_ok=True)
        if self._server is not None:
            await self._server.stop()
            self._server = None

    # --- in a background thread -----------------------------------------------------

    def start(self, timeout: float = 600.0) -> Testbed:
        """Serve from a background thread; returns once serving, raises TestbedError."""
        ready = threading.Event()
        failure: list[BaseException] = []

        async def run() -> None:
            self._stopped = asyncio.Event()
            try:
                await self.start_async()
            except BaseException as e:  # handed to the caller's thread below
                failure.append(e)
                ready.set()
                return
            ready.set()
            await self._stopped.wait()
            await self.stop_async()

        def target() -> None:
            self._loop = asyncio.new_event_loop()
            try:
                self._loop.run_until_complete(run())
            finally:
                self._loop.close()

        self._thread = threading.Thread(target=target, name="anchord-testbed", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise TestbedError("the testbed did not start in time")
        if failure:
            self._thread.join()
            raise failure[0]
        return self

    def stop(self) -> None:
        if self._thread is None or self._loop is None or self._stopped is None:
            return
        self._loop.call_soon_threadsafe(self._stopped.set)
        self._thread.join(timeout=30)
        self._thread = None

    def __enter__(self) -> Testbed:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def fault(self, zone: str, kind: str) -> None:
        """Apply a fault directly (same effect as the control socket)."""
        assert self.faults is not None
        self.faults.apply(dns.name.from_text(zone), FaultKind(kind))

    # --- files ------------------------------------------------------------------------

    @property
    def resolver_toml(self) -> Path:
        return self.directory / "resolver.toml"

    @property
    def info(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.directory / "testbed.json").read_text())
        return data

    def _write_files(self) -> None:
        h = self.hierarchy
        assert h is not None
        d = self.directory
        with open(d / "names.txt", "w") as f:
            for name in h.existing_names():
                f.write(name + "\n")
        (d / "trust-anchor.txt").write_text(h.trust_anchor + "\n")
        # delv cannot read the DS line above: the same anchor in BIND syntax for
        # `delv -a DIR/delv-anchor.conf` (README, "Using it").
        delv_anchor_file(h.trust_anchor, d / DELV_ANCHOR_FILE)
        hints = {name: [addr] for name, addr in root_ns(self.spec)}
        hosting = h.hosting()
        a = self.spec.addresses
        zones = [
            {
                "name": z.to_text(),
                "file": str(zone_path(d / "zones", z).relative_to(d)),
                "addresses": sorted(addr for addr, zs in hosting.items() if z in zs),
            }
            for z in sorted({z for zs in hosting.values() for z in zs})
        ]
        info = {
            "port": self.port,
            "addresses": {"root": a.root, "de": a.de, "com": a.com, "children": a.children},
            "servers": [
                {"address": addr, "port": self.port, "zones": sorted(z.to_text() for z in zs)}
                for addr, zs in sorted(hosting.items())
            ],
            "zones": zones,
            "root_hints": hints,
            "trust_anchor": h.trust_anchor,
            "children": self.spec.children,
            "algorithm": self.spec.algorithm,
            "max_ttl": self.spec.max_ttl,
            "fault_zones": h.fault_names,
            "signed_at": h.now,
            "control_socket": SOCKET_NAME,
            "resolver_config": "resolver.toml",
            "delv_anchor": DELV_ANCHOR_FILE,
            "resolver_listen": f"127.0.0.1:{self.resolver_port}",
        }
        text = self._resolver_config(hints, h.trust_anchor)
        info["resolver_config_sha256"] = _sha256(text)
        previous = self._previous_config_hash()
        (d / "testbed.json").write_text(json.dumps(info, indent=1) + "\n")
        self.resolver_config = self._write_resolver_config(text, previous)
        load_config(self.resolver_config)  # the file we hand out must load; fail loudly here

    def _previous_config_hash(self) -> str:
        """The hash of the resolver.toml the last start wrote ('' if unknown)."""
        try:
            old = json.loads((self.directory / "testbed.json").read_text())
        except (OSError, ValueError):
            return ""
        value = old.get("resolver_config_sha256", "") if isinstance(old, dict) else ""
        return value if isinstance(value, str) else ""

    def _write_resolver_config(self, text: str, previous: str) -> Path:
        """Write resolver.toml, unless it holds edits of the user's: then keep it and
        write resolver.toml.new beside it, as dpkg and rpm do with an edited config file
        (an operator's edits are never lost; a file we wrote and nobody touched is
        simply refreshed: the testbed.json of the last start has its hash)."""
        path = self.resolver_toml
        try:
            current = path.read_text()
        except FileNotFoundError:
            current = None
        if current is None or current == text or _sha256(current) == previous:
            path.write_text(text)
            path.with_name(path.name + ".new").unlink(missing_ok=True)
            self.config_note = ""
            return path
        new = path.with_name(path.name + ".new")
        new.write_text(text)
        self.config_note = (f"{path} has changes not made by the testbed: kept; this "
                            f"testbed's resolver config is {new} (diff them, then move it "
                            "over or merge)")
        return new

    def _resolver_config(self, hints: dict[str, list[str]], anchor: str) -> str:
        hint_items = ", ".join(f'"{n}" = ["{addrs[0]}"]' for n, addrs in hints.items())
        return (
            "# Written by `anchord testbed`: a resolver for the testbed's hierarchy.\n"
            "[server]\n"
            f'listen = ["127.0.0.1:{self.resolver_port}"]\n\n'
            "[upstream]\n"
            f"port = {self.port}\n"
            f"root_hints = {{ {hint_items} }}\n\n"
            "[dnssec]\n"
            f'trust_anchors = ["{anchor}"]\n\n'
            "[control]\n"
            f'listen = "127.0.0.1:{self.control_port}"\n'
            'token_file = "control.token"\n\n'
            "[nta]\n"
            'state_file = "nta.json"\n'
        )


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# --- the click command ---------------------------------------------------------------


def _spec(
    children: int,
    algorithm: int,
    zone_algorithms: tuple[str, ...],
    max_ttl: int,
    addresses: Addresses,
) -> TestbedSpec:
    overrides = []
    for item in zone_algorithms:
        zone, _, alg = item.partition("=")
        if alg not in ("8", "13", "15"):
            raise click.BadParameter(
                f"{item!r}: expected ZONE=8|13|15", param_hint="--zone-algorithm"
            )
        overrides.append((dns.name.from_text(zone).to_text(), int(alg)))
    return TestbedSpec(
        children=children,
        algorithm=algorithm,
        algorithms=tuple(overrides),
        max_ttl=max_ttl,
        addresses=addresses,
    )


@click.group(invoke_without_command=True)
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where zones, names.txt, testbed.json and resolver.toml go.",
)
@click.option(
    "--children",
    default=1000,
    show_default=True,
    type=click.IntRange(0, 1_000_000),
    help="Number of child zones c0.de, c1.de, ...",
)
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--algorithm",
    default="13",
    show_default=True,
    type=click.Choice(["8", "13", "15"]),
    help="DNSSEC algorithm of every zone.",
)
@click.option(
    "--zone-algorithm",
    multiple=True,
    metavar="ZONE=ALG",
    help="Per-zone algorithm override, e.g. c3.de=15 (repeatable).",
)
@click.option("--max-ttl", default=0, type=click.IntRange(0), help="Cap every TTL (0: no cap).")
@click.option(
    "--resolver-port",
    default=5354,
    show_default=True,
    type=click.IntRange(1, 65535),
    help="Listen port written into resolver.toml.",
)
@click.option("--root-address", default="127.53.0.1", show_default=True)
@click.option("--de-address", multiple=True, help="Default: 127.53.1.1 and 127.53.1.2.")
@click.option("--com-address", default="127.53.2.1", show_default=True)
@click.option("--child-address", default="127.53.3.1", show_default=True)
@click.pass_context
def testbed(
    ctx: click.Context,
    directory: Path | None,
    children: int,
    port: int,
    algorithm: str,
    zone_algorithm: tuple[str, ...],
    max_ttl: int,
    resolver_port: int,
    root_address: str,
    de_address: tuple[str, ...],
    com_address: str,
    child_address: str,
) -> None:
    """Serve a signed root/de/com hierarchy on loopback (and `testbed fault` to break it)."""
    if ctx.invoked_subcommand is not None:
        return
    if directory is None:
        raise click.UsageError("--dir is required")
    addresses = Addresses(
        root=(root_address,),
        de=tuple(de_address) or Addresses().de,
        com=(com_address,),
        children=(child_address,),
    )
    spec = _spec(children, int(algorithm), zone_algorithm, max_ttl, addresses)
    # The one place the testbed reads the wall clock: signatures are made relative to it.
    tb = Testbed(spec, directory, now=time.time(), port=port, resolver_port=resolver_port)
    try:
        asyncio.run(_serve(tb))
    except TestbedError as e:
        click.echo(f"anchord testbed: {e}", err=True)
        sys.exit(1)


async def _serve(tb: Testbed) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await tb.start_async()
    addrs = ", ".join(tb.spec.addresses.all())
    if tb.config_note:
        click.echo(f"anchord testbed: {tb.config_note}")
    click.echo(
        f"anchord testbed: serving {addrs} port {tb.port}; resolver config {tb.resolver_config}",
        err=False,
    )
    sys.stdout.flush()
    try:
        await stop.wait()
    finally:
        await tb.stop_async()


@testbed.command("fault")
@click.option("--dir", "directory", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.argument("zone")
@click.argument("kind", type=click.Choice([k.value for k in FaultKind]))
def fault(directory: Path, zone: str, kind: str) -> None:
    """Apply a fault to ZONE on the testbed running in DIR."""
    try:
        parse_fault_zone(zone)
    except (ValueError, dns.exception.DNSException) as e:
        click.echo(f"anchord testbed fault: zone {zone!r}: {e}", err=True)
        sys.exit(1)
    reply = send_fault(directory, zone, kind)
    if not reply.get("ok"):
        click.echo(f"anchord testbed fault: {reply.get('error')}", err=True)
        sys.exit(1)
    click.echo(f"{reply['zone']} {reply['kind']} (active: {json.dumps(reply['active'])})")
