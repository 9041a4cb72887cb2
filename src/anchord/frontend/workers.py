"""`workers = N`: N processes sharing the listening addresses (SO_REUSEPORT).

The process `anchord serve` starts is worker 0: it runs the control plane (NTA store,
HTTP API, metrics) beside its listeners. Before any event loop exists it forks workers
1..N-1; each builds its own resolver (its own caches) and binds the same addresses, and
the kernel spreads clients over the sockets.

Trust changes and cache flushes reach the other workers over one pipe per worker:
worker 0's driver reports every NTA change (Driver.trust_listeners: the whole NTA list)
and every core.forget_below (Driver.forget_listeners: the zone) and the hub writes one
JSON line per event to every pipe. A worker applies a line as soon as its loop sees the
pipe readable: well within the 100 ms the design asks for. Workers take NTAs without
rechecks (worker 0 rechecks and broadcasts the removal); each expires them itself at
the same end time. At start a worker reads the NTA state file itself, so it never serves
a moment without the NTAs in force; worker 0's restore follows on the pipe anyway.

Each forget line carries a number, and the worker answers it on its counter pipe (below)
with the count of answers it removed. The control API's flush waits up to FLUSH_WAIT for
those counts and reports their sum with its own (Hub.forgotten); a worker that is stuck
is left out, not waited for. Forgets nobody waits for (an NTA change's) are answered too,
and the answers dropped.

Counters travel the other way, on a second pipe per worker: every REPORT_INTERVAL each
worker writes one JSON line, a snapshot of its FrontendStats and its answer cache size,
and worker 0 keeps the latest per worker; /metrics and /v1/status add them to its own at
scrape time (control/metrics.py). A snapshot per interval, not a message per query: the
cached-answer path does no extra work, and the sums are at most an interval old. A
worker that ends keeps its last counts in the sums (counters must not go down).

A worker whose pipe reaches end of file (worker 0 is gone) shuts down. Worker 0 stops
the others with SIGTERM when it stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import dns.name

from anchord.control.config import Config, parse_endpoint
from anchord.core.trustmap import NegativeAnchor

log = logging.getLogger("anchord.workers")

# Seconds between two counter snapshots of a worker: /metrics is "fresh within about a
# second" and a JSON line twice a second costs nothing next to the queries it counts.
REPORT_INTERVAL = 0.5
# Seconds the control API's flush waits for the other workers' counts of removed answers.
# A worker answers as soon as its loop sees the forget (milliseconds); one that is stuck
# or gone must not hold the API: the answer then says how many workers reported.
FLUSH_WAIT = 1.0


# -- messages ------------------------------------------------------------------------------

def _ntas_message(ntas: list[NegativeAnchor]) -> bytes:
    from anchord.control.ntastore import nta_to_json

    return (json.dumps({"ntas": [nta_to_json(n) for n in ntas]}) + "\n").encode()


def _forget_message(zone: dns.name.Name, number: int) -> bytes:
    return (json.dumps({"forget": zone.to_text(), "id": number}) + "\n").encode()


def _forgot_message(number: int, removed: int) -> bytes:
    return (json.dumps({"forgot": number, "answers_removed": removed}) + "\n").encode()


def _report_message(frontend: Any, driver: Any) -> bytes:
    from anchord.control.metrics import counts_of

    core = getattr(driver, "core", None)
    cache = len(core.answers) if core is not None else 0
    return (json.dumps({"stats": counts_of(frontend.stats), "cache_answers": cache})
            + "\n").encode()


def apply_ntas(driver: Any, ntas: list[NegativeAnchor]) -> None:
    """Make `driver`'s NTAs exactly `ntas` (without rechecks), forgetting what changed."""
    trust = driver.core.trust
    current = {n.zone: n for n in trust.ntas()}
    wanted = {n.zone: replace(n, recheck=False) for n in ntas}
    for zone in current.keys() - wanted.keys():
        trust.remove_nta(zone)
        driver.core.forget_below(zone)
    for zone, nta in wanted.items():
        old = current.get(zone)
        if old is None or (old.added_at, old.expires_at, old.reason) != (
                nta.added_at, nta.expires_at, nta.reason):
            trust.add_nta(nta)
            driver.core.forget_below(zone)


def apply_message(driver: Any, line: bytes) -> bytes | None:
    """Apply one line from worker 0; the answer to send back on the counter pipe (for a
    forget: how many cached answers it removed), or None."""
    from anchord.control.ntastore import nta_from_json

    doc = json.loads(line)
    if "ntas" in doc:
        apply_ntas(driver, [nta_from_json(item) for item in doc["ntas"]])
    if "forget" in doc:
        answers = driver.core.answers
        before = len(answers)
        driver.core.forget_below(dns.name.from_text(doc["forget"]))
        if "id" in doc:
            return _forgot_message(int(doc["id"]), before - len(answers))
    return None


# -- worker 0's side ---------------------------------------------------------------------------


def _read_chunk(fd: int) -> bytes | None:
    """What a non-blocking pipe holds: None if nothing yet, b"" once the other end is
    gone (closed, or an error reading it: the peer is treated as gone either way)."""
    try:
        return os.read(fd, 65536)
    except BlockingIOError:
        return None
    except OSError:
        return b""

class Hub:
    """Worker 0's pipes to the other workers; writes never block the event loop."""

    def __init__(self, fds: dict[int, int], reports: dict[int, int] | None = None) -> None:
        self.fds = fds  # worker pid -> write end
        # The workers not yet reaped: a pipe dropped on EPIPE leaves fds before watch()
        # sees the process end, and it must still be waited for (no zombie) and logged.
        self.running = set(fds)
        self.reports = dict(reports or {})  # worker pid -> read end of its counter pipe
        self.peer_stats: dict[int, dict[str, Any]] = {}  # worker pid -> latest snapshot
        self.forget_number = 0  # of the latest forget sent to the workers
        # forget number -> (workers still to answer, pid -> answers removed, done) while
        # the control API waits for it (forgotten)
        self._forgetting: dict[int, tuple[set[int], dict[int, int],
                                          asyncio.Future[None]]] = {}
        self._pending: dict[int, bytearray] = {}
        for fd in [*fds.values(), *self.reports.values()]:
            os.set_blocking(fd, False)

    def attach(self, driver: Any) -> None:
        driver.trust_listeners.append(lambda ntas: self.broadcast(_ntas_message(ntas)))
        driver.forget_listeners.append(self._forget)
        self.follow_reports()

    def _forget(self, zone: dns.name.Name) -> None:
        self.forget_number += 1
        self.broadcast(_forget_message(zone, self.forget_number))

    async def forgotten(self, timeout: float = FLUSH_WAIT) -> tuple[int, int, int]:
        """(answers removed, workers that said so, workers still running that did not
        answer in time) for the latest forget the workers were sent, waiting at most
        `timeout` s for their answers. Call it right after the forget_below, before any
        await: an answer for a forget nobody waits for is dropped."""
        # The workers the forget was written to, but not one whose counter pipe has
        # closed (it ended; the watch drops it from fds within a second).
        waiting = self.fds.keys() & self.reports.keys()
        removed: dict[int, int] = {}
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        number = self.forget_number
        self._forgetting[number] = (waiting, removed, done)
        try:
            if waiting:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(done, timeout)
        finally:
            del self._forgetting[number]
        if waiting:
            log.warning("cache flush: %d worker(s) did not report their count within "
                        "%g s", len(waiting), timeout)
        # A worker neither counted nor late has ended: its cache ended with it.
        return sum(removed.values()), len(removed), len(waiting)

    def _forgot(self, pid: int, doc: dict[str, Any]) -> None:
        entry = self._forgetting.get(doc.get("forgot", -1))
        if entry is None:
            return  # an NTA change's forget, or a flush that stopped waiting
        waiting, removed, done = entry
        if pid in waiting:
            waiting.discard(pid)
            removed[pid] = int(doc.get("answers_removed", 0))
        if not waiting and not done.done():
            done.set_result(None)

    def _gone(self, pid: int) -> None:
        """A worker's counter pipe closed: no flush waits for it any more."""
        for waiting, _, done in self._forgetting.values():
            waiting.discard(pid)
            if not waiting and not done.done():
                done.set_result(None)

    # -- counters from the other workers ------------------------------------------------
    def follow_reports(self) -> None:
        """Read the workers' counter snapshots as they arrive (on the running loop)."""
        loop = asyncio.get_running_loop()
        for pid, fd in self.reports.items():
            loop.add_reader(fd, self._report_readable, pid, fd, bytearray())

    def snapshots(self) -> list[dict[str, Any]]:
        """The latest snapshot of every other worker (AnchordCollector.peers)."""
        return list(self.peer_stats.values())

    def _report_readable(self, pid: int, fd: int, buffer: bytearray) -> None:
        chunk = _read_chunk(fd)
        if chunk is None:
            return
        if not chunk:  # the worker is gone: its counts stay, its cache went with it
            self._close_report(pid, fd)
            if pid in self.peer_stats:
                self.peer_stats[pid]["cache_answers"] = 0
            self._gone(pid)
            return
        buffer.extend(chunk)
        end = buffer.rfind(b"\n")
        if end < 0:
            return
        lines = bytes(buffer[:end]).split(b"\n")
        del buffer[:end + 1]
        for line in lines:
            try:
                doc = json.loads(line)
            except ValueError:
                log.error("worker %d sent unreadable counters: %r", pid, line[:80])
                continue
            if not isinstance(doc, dict):
                continue
            if "forgot" in doc:
                self._forgot(pid, doc)
            else:  # a snapshot: whole counts, not a delta, so the newest one wins
                self.peer_stats[pid] = doc

    def _close_report(self, pid: int, fd: int) -> None:
        self.reports.pop(pid, None)
        with contextlib.suppress(RuntimeError, ValueError):
            asyncio.get_running_loop().remove_reader(fd)
        with contextlib.suppress(OSError):
            os.close(fd)

    # -- trust updates to the other workers --------------------------------------------

    def broadcast(self, data: bytes) -> None:
        for pid, fd in list(self.fds.items()):
            pending = self._pending.get(fd)
            if pending:
                pending += data  # keep the order behind what is still queued
                continue
            self._write(pid, fd, data)

    def _write(self, pid: int, fd: int, data: bytes) -> None:
        try:
            n = os.write(fd, data)
        except BlockingIOError:
            n = 0
        except OSError as e:  # the worker is gone (EPIPE)
            log.error("worker %d does not take trust updates any more: %s", pid, e.strerror)
            self._drop(pid, fd)
            return
        if n < len(data):
            self._pending[fd] = bytearray(data[n:])
            with contextlib.suppress(RuntimeError):
                asyncio.get_running_loop().add_writer(fd, self._flush, pid, fd)

    def _flush(self, pid: int, fd: int) -> None:
        pending = self._pending.get(fd)
        if not pending:
            return
        try:
            n = os.write(fd, pending)
        except BlockingIOError:
            return
        except OSError:
            self._drop(pid, fd)
            return
        del pending[:n]
        if not pending:
            del self._pending[fd]
            asyncio.get_running_loop().remove_writer(fd)

    def _drop(self, pid: int, fd: int) -> None:
        self.fds.pop(pid, None)
        self._pending.pop(fd, None)
        with contextlib.suppress(RuntimeError, ValueError):
            asyncio.get_running_loop().remove_writer(fd)
        with contextlib.suppress(OSError):
            os.close(fd)

    async def watch(self) -> None:
        """Log workers that end while worker 0 serves (their sockets close; the kernel
        gives their share of clients to the others)."""
        while self.running:
            await asyncio.sleep(1.0)
            for pid in list(self.running):
                try:
                    done, status = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    done, status = pid, 0
                if done:
                    log.error("worker process %d ended (status %d)", pid, status)
                    self.running.discard(pid)
                    fd = self.fds.get(pid)
                    if fd is not None:
                        self._drop(pid, fd)

    def stop_all(self, timeout: float = 5.0) -> None:
        import time

        pids = list(self.running)
        self.running.clear()
        for fd in self.reports.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self.reports.clear()
        for fd in self.fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds.clear()
        for pid in pids:  # unreaped, so the pid is still theirs even if they ended
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for pid in pids:
            while True:
                try:
                    done, _ = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    break
                if done:
                    break
                if time.monotonic() > deadline:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    break
                time.sleep(0.02)


# -- the other workers' side --------------------------------------------------------------------

def follow(driver: Any, fd: int, stop: asyncio.Event,
           answer: Callable[[bytes], None] | None = None) -> None:
    """Apply worker 0's updates as they arrive; stop serving when its pipe closes.
    `answer` sends worker 0 what a forget removed (Reporter.answer)."""
    loop = asyncio.get_running_loop()
    os.set_blocking(fd, False)
    buffer = bytearray()

    def readable() -> None:
        chunk = _read_chunk(fd)
        if chunk is None:
            return
        if not chunk:
            loop.remove_reader(fd)
            log.info("worker 0 is gone: stopping")
            stop.set()
            return
        buffer.extend(chunk)
        while True:
            end = buffer.find(b"\n")
            if end < 0:
                break
            line = bytes(buffer[:end])
            del buffer[:end + 1]
            try:
                reply = apply_message(driver, line)
            except Exception:  # noqa: BLE001 - a bad line must not stop the worker
                log.exception("cannot apply a trust update from worker 0")
                continue
            if reply is not None and answer is not None:
                answer(reply)

    loop.add_reader(fd, readable)


class Reporter:
    """A worker's side of the counter pipe: a snapshot every REPORT_INTERVAL, and the
    answer to each forget (what it removed) as soon as it is applied."""

    def __init__(self, driver: Any, fd: int) -> None:
        self.driver = driver
        self.fd = fd
        self.frontend: Any = None
        self._unsent = bytearray()  # what the pipe has not taken yet (it was full)
        self._task: asyncio.Task[None] | None = None
        os.set_blocking(fd, False)

    def start(self, frontend: Any) -> None:
        """run_server's ready callback: the frontend (and its counters) now exist."""
        self.frontend = frontend
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(REPORT_INTERVAL)
            if not self.send():
                return

    def answer(self, line: bytes) -> None:
        """Send one line now, behind what is still unsent (a forget's count)."""
        self._unsent += line
        self._write()

    def send(self) -> bool:
        """Write the current snapshot (or what is left of the last one); never blocks.
        False once worker 0 does not read any more."""
        if not self._unsent and self.frontend is not None:
            self._unsent += _report_message(self.frontend, self.driver)
        return self._write()

    def _write(self) -> bool:
        if not self._unsent:
            return True
        try:
            n = os.write(self.fd, self._unsent)
        except BlockingIOError:
            return True  # worker 0 is busy: the next round sends the rest
        except OSError:
            return False  # worker 0 is gone (EPIPE); the trust pipe stops this worker
        del self._unsent[:n]
        return True

    def stop(self) -> None:
        """Cancel the rounds and send the final counts (the last queries count too)."""
        if self._task is not None:
            self._task.cancel()
        self.send()
        with contextlib.suppress(OSError):
            os.close(self.fd)


def pin_ports(config: Config) -> None:
    """Every worker must bind the same ports: choose one now for each `:0` listen entry."""
    fixed = []
    for item in config.server.listen:
        host, port = parse_endpoint(item)
        if port == 0:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            with socket.socket(family, socket.SOCK_DGRAM) as probe:
                probe.bind((host, 0))
                port = probe.getsockname()[1]
            item = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        fixed.append(item)
    config.server.listen = fixed


def serve_workers(config: Config, factory: Callable[[Config], Any]) -> int:
    """Fork workers 1..N-1, then serve as worker 0 with the control plane; exit status."""
    from anchord.frontend import command
    from anchord.frontend.server import check_addresses_free

    pin_ports(config)
    # The workers bind with SO_REUSEPORT, which would also share the port with another
    # process holding it: bind once without it first, so a second instance is refused.
    try:
        check_addresses_free(config.server.listen)
    except OSError as e:
        print(f"anchord: {command.listen_error(e)}", file=sys.stderr)
        return 1
    fds: dict[int, int] = {}
    reports: dict[int, int] = {}
    for index in range(1, config.server.workers):
        rfd, wfd = os.pipe()
        report_r, report_w = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # a worker
            status = 1
            try:
                os.close(wfd)
                os.close(report_r)
                # Worker 0's ends of the earlier workers' pipes: a worker holding one
                # would keep that pipe open after its owner ended.
                for other in [*fds.values(), *reports.values()]:
                    os.close(other)
                status = _run_worker(config, factory, index, rfd, report_w)
            except BaseException:  # noqa: BLE001 - a child must never return into the caller
                log.exception("worker %d failed", index)
            finally:
                logging.shutdown()
                os._exit(status)
        os.close(rfd)
        os.close(report_w)
        fds[pid] = wfd
        reports[pid] = report_r
    hub = Hub(fds, reports)
    try:
        return command.serve_config(config, factory, hub=hub)
    finally:
        hub.stop_all()


def _run_worker(config: Config, factory: Callable[[Config], Any], index: int, fd: int,
                report_fd: int) -> int:
    from anchord.frontend import command

    for handler in logging.getLogger().handlers:
        handler.setFormatter(logging.Formatter(f"anchord[{index}]: %(message)s"))

    async def main() -> None:
        resolver = factory(config)
        if hasattr(resolver, "trust_listeners"):
            from anchord.control.ntastore import decode_lenient

            # Read only: worker 0 owns the file (and sets a corrupt one aside, reporting
            # the entries it drops); the valid entries are in force here from the start.
            try:
                ntas, _ = decode_lenient(config.path(config.nta.state_file).read_bytes())
                apply_ntas(resolver, ntas)
            except FileNotFoundError:
                pass
            except (OSError, ValueError) as e:
                log.error("cannot read the NTA state file (worker 0 sends it): %s", e)
        stop = asyncio.Event()
        reporter = Reporter(resolver, report_fd)
        if hasattr(resolver, "core"):
            follow(resolver, fd, stop, reporter.answer)
        try:
            await command.run_server(config, resolver, stop=stop, ready=reporter.start)
        finally:
            reporter.stop()

    with command._runner() as runner:
        try:
            runner.run(main())
        except command._Fatal as e:
            print(f"anchord[{index}]: {e}", file=sys.stderr)
            return e.status
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                print(f"anchord[{index}]: address in use", file=sys.stderr)
            return 1
    return 0


__all__ = ["Hub", "Reporter", "apply_ntas", "apply_message", "follow", "pin_ports",
           "serve_workers", "REPORT_INTERVAL", "FLUSH_WAIT"]
