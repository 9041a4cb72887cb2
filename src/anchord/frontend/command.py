"""`anchord serve`: load the config, build the resolver, listen until SIGINT/SIGTERM.
SIGHUP is logged and otherwise ignored (no reload)."""

from __future__ import annotations

import asyncio
import errno
import inspect
import logging
import signal
import sys
from collections.abc import Callable
from typing import Any

import click

from anchord.control.config import (
    Config,
    ConfigError,
    load_config,
    unusable_trust_anchors,
)
from anchord.frontend.server import Frontend, Resolver

log = logging.getLogger("anchord")


class _Fatal(Exception):
    """A start-up failure reported as one line with an exit status (no traceback)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def _default_resolver(config: Config) -> Resolver:
    # Imported here: the driver pulls in the whole resolution core, which `--help` and
    # the config errors do not need.
    from anchord.engine.driver import build_resolver

    return build_resolver(config)


async def _maybe_await(value: Any) -> None:
    if inspect.isawaitable(value):
        await value


def listen_error(e: OSError) -> str:
    """The one line for a listener that cannot be bound; e.filename is the address
    (Frontend.start, check_addresses_free)."""
    where = f" on {e.filename}" if e.filename else ""
    if e.errno == errno.EADDRINUSE:
        return f"cannot listen{where}: address already in use (another resolver running?)"
    text = str(e.filename or "")
    if e.errno == errno.EADDRNOTAVAIL and text.count(":") >= 2 and "[" not in text:
        # "::1:5354" is an IPv6 address (on port 53), not ::1 on port 5354: a port
        # follows a bracketed address, where Unbound and Knot write "::1@5354".
        head, _, tail = text.rpartition(":")
        return (f"cannot listen{where}: {e.strerror or e} (an IPv6 address with a port "
                f"is written [{head}]:{tail}; without brackets it is all address, on "
                "port 53)")
    return f"cannot listen{where}: {e.strerror or e}"


def _sighup() -> None:
    log.warning("SIGHUP: reloading the configuration is not supported; still serving "
                "with the configuration read at start (restart anchord to apply changes)")


async def run_server(config: Config, resolver: Resolver,
                     ready: Callable[[Frontend], None] | None = None,
                     stop: asyncio.Event | None = None) -> None:
    """Serve until `stop` is set or SIGINT/SIGTERM arrives; then shut down cleanly."""
    loop = asyncio.get_running_loop()
    stop = stop if stop is not None else asyncio.Event()
    frontend = Frontend(resolver, config.server)
    # Handlers before the listeners: a signal that arrives once "listening on" is
    # logged must already be handled (a SIGHUP would otherwise still end the process).
    installed: list[signal.Signals] = []
    handlers: list[tuple[signal.Signals, Callable[[], None]]] = [
        (signal.SIGINT, stop.set), (signal.SIGTERM, stop.set),
        # Operators (and logrotate scripts) send SIGHUP to Unbound/Knot to reload; its
        # default action would end the resolver with no word. Reloading is not
        # supported: say so and keep serving.
        (signal.SIGHUP, _sighup)]
    for sig, handler in handlers:
        try:
            loop.add_signal_handler(sig, handler)
            installed.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):
            pass  # not the main thread (tests) or no signal support: `stop` still works
    try:
        described = await frontend.start()
    except OSError as e:
        for sig in installed:
            loop.remove_signal_handler(sig)
        raise _Fatal(listen_error(e), 1) from None
    for line in described:
        log.info("listening on %s", line)
    start_background = getattr(resolver, "start_background", None)
    if callable(start_background):
        await _maybe_await(start_background(loop))
    if ready is not None:
        ready(frontend)
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        for sig in installed:
            loop.remove_signal_handler(sig)
        await frontend.close()
        closer = getattr(resolver, "close", None)
        if callable(closer):
            await _maybe_await(closer())
        st = frontend.stats
        log.info("served %d queries (%d dropped, %d formerr, %d refused by ACL)",
                 st.queries, st.dropped, st.formerr, st.refused_acl)


def _runner() -> asyncio.Runner:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.Runner()
    return asyncio.Runner(loop_factory=uvloop.new_event_loop)


def serve_config(config: Config, resolver_factory: Callable[[Config], Resolver] | None = None,
                 hub: Any = None) -> int:
    """Run the server in the foreground; returns the process exit status.

    With server.workers > 1 the other workers are forked first (workers.py); `hub` is
    then worker 0's channel to them."""
    factory = resolver_factory or _default_resolver
    if hub is None and config.server.workers > 1:
        from anchord.frontend.workers import serve_workers

        return serve_workers(config, factory)
    with _runner() as runner:
        try:
            runner.run(_serve(config, factory, hub))
        except _Fatal as e:
            click.echo(f"anchord: {e}", err=True)
            return e.status
        except KeyboardInterrupt:  # a second Ctrl-C during shutdown
            return 130
    return 0


async def _serve(config: Config, factory: Callable[[Config], Resolver], hub: Any = None
                 ) -> None:
    try:
        resolver = factory(config)
    except ImportError as e:
        raise _Fatal(f"the resolver core is not available: {e}", 1) from None
    watcher = None
    if hub is not None and hasattr(resolver, "trust_listeners"):
        hub.attach(resolver)  # NTA changes and flushes go to the other workers
        watcher = asyncio.get_running_loop().create_task(hub.watch())
    if hub is None:
        # The DNS addresses are checked before the control plane starts: a second
        # instance is refused naming the DNS port, before it writes a token or NTA file.
        # (With workers, worker 0 checked them before forking.)
        from anchord.frontend.server import check_addresses_free

        try:
            check_addresses_free(config.server.listen)
        except OSError as e:
            raise _Fatal(listen_error(e), 1) from None
    # The control plane (NTA store, HTTP API, metrics) lives in anchord.control.
    from anchord.control.api import ControlError, start_control

    try:
        control = await start_control(config, resolver)
    except ControlError as e:
        raise _Fatal(str(e), 1) from None
    if control is not None and hub is not None:
        # Worker 0 answers /metrics and /v1/status for all workers: add the others' counts.
        control.collector.peers = hub.snapshots
        control.others_forgotten = hub.forgotten  # a flush counts their answers too
    fleet = None
    if control is not None and config.fleet.redis_url:
        # A fleet: the NTAs live in Redis (control/fleet.py), not in nta.state_file.
        from anchord.control.fleet import attach_fleet

        fleet = await attach_fleet(config, control)
    try:
        await run_server(config, resolver, ready=control.attach if control else None)
    finally:
        if watcher is not None:
            watcher.cancel()
        if fleet is not None:
            await fleet.close()
        if control is not None:
            await control.close()


@click.command()
# A plain string, not click.Path(dir_okay=False): click's check printed a 3-line usage
# error with status 2; load_config reports a folder or a missing file in one line.
@click.option("-c", "--config", "config_file", metavar="FILE",
              help="TOML configuration file (defaults apply without one).")
@click.option("--listen", "listen", multiple=True, metavar="ADDR:PORT",
              help="Listen here instead of server.listen (repeatable).")
# Hidden: the incident replay (`anchord replay`) runs the real resolver on a simulated
# clock that reads EPOCH at real time --clock-real-start (default: now) and runs X times
# faster than real time. Only the clock source differs.
@click.option("--clock-start", "clock_start", type=float, default=None, hidden=True)
@click.option("--clock-scale", "clock_scale", type=float, default=None, hidden=True)
@click.option("--clock-real-start", "clock_real_start", type=float, default=None, hidden=True)
def serve(config_file: str | None, listen: tuple[str, ...], clock_start: float | None = None,
          clock_scale: float | None = None, clock_real_start: float | None = None) -> None:
    """Run the resolver: answer clients on the configured addresses."""
    try:
        config = load_config(config_file, list(listen) if listen else None)
    except ConfigError as e:
        # Status 1 as the README promises (2 stays click's for a mistyped command line).
        click.echo(f"anchord: {e}", err=True)
        sys.exit(1)
    logging.basicConfig(level=config.log.level.upper(), stream=sys.stderr,
                        format="anchord: %(message)s")
    unusable = unusable_trust_anchors(config)
    if unusable:
        log.warning("no trust anchor uses an algorithm and digest anchord can validate "
                    "(dnssec.algorithm_policy = %r), so every answer is insecure "
                    "(RFC 4035 5, RFC 8624): %s", config.dnssec.algorithm_policy,
                    "; ".join(unusable))
    if not config.server.access_control:
        log.warning("server.access_control is empty: every client is refused (REFUSED, "
                    "EDE 18)")
    if clock_start is not None or clock_scale is not None:
        sys.exit(serve_config(config, _scaled_resolver_factory(
            clock_start, clock_scale or 1.0, clock_real_start)))
    sys.exit(serve_config(config))


def _scaled_resolver_factory(start: float | None, scale: float, real_start: float | None
                             ) -> Callable[[Config], Resolver]:
    """build_resolver on a ScaledClock (hidden --clock-* options of `serve`)."""
    import time

    from anchord.engine.clock import ScaledClock

    if scale <= 0:
        click.echo("anchord: --clock-scale must be positive", err=True)
        sys.exit(2)
    clock = ScaledClock(time.time() if start is None else start, scale, real_start)

    def factory(config: Config) -> Resolver:
        from anchord.engine.driver import build_resolver

        return build_resolver(config, clock=clock)

    return factory


__all__ = ["serve", "serve_config", "run_server", "listen_error"]
