"""The fleet trust store: NTAs shared by many resolver instances through Redis.

DESIGN.md ("Past one process, past one machine"): NTAs live in Redis, every change is
published and every instance applies it within a second; each instance keeps its last
known state on local disk and keeps serving with it while Redis is unreachable. This is
the second implementation of ntastore.TrustStore (the first is the local file).

In Redis, under `fleet.key_prefix` (P):

    P:ntas      a hash, one field per zone ("bogus.de."), value the NTA as JSON
    P:version   a counter, incremented in the same transaction as every change
    P:epoch     a random token written with the first change to an empty Redis
    P:trust     the channel: {"instance": ..., "version": n} after every change

One field per zone rather than one JSON value for the whole set: two instances adding
NTAs for different zones at the same moment write different fields, so neither can
overwrite the other's (a single value would need read-modify-write, and the later write
would drop the earlier add). Changes still go through WATCH/MULTI on the hash: a removal
or a re-timing applies only if the field still holds what this instance last saw (a
compare-and-set per zone), so an instance whose NTA just expired cannot delete the one
an operator re-added a moment ago on another instance. A zone this instance adds fresh
is written unconditionally (the operator's latest word wins).

How an instance follows (one asyncio task per instance, redis.asyncio):
- a local change (Driver.on_trust_change -> Control.persist -> save) is written to the
  cache file at once and pushed in the background: save never waits for the network, so
  a hung Redis cannot stall answering;
- a message on the channel (or a poll of P:version every `poll_interval`, which catches
  messages lost while the subscription was down) reloads the hash and hands it to
  Driver.replace_ntas, which does not call on_trust_change: no echo;
- Redis unreachable: one warning per outage, reconnect with back-off (retry_min doubling
  to retry_max); local changes meanwhile are kept as a diff against the last state seen
  in Redis and merged in (same per-zone rules) when it returns, then the set is reloaded.
- Redis back with another epoch (it lost its data: no persistence, a stale replica):
  every instance writes its state back instead of following Redis to an empty set;
- start-up: Redis if reachable, else the cache file (which also keeps the last state
  seen in Redis, so changes made during an outage survive a restart during it).

The cache file is FileTrustStore's format (an operator can read it, or point
nta.state_file at it) plus a "fleet" member; it is written atomically the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import socket
import urllib.parse
from pathlib import Path
from typing import Any

import redis
import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, WatchError

from anchord.control.config import Config
from anchord.control.ntastore import (
    FORMAT_VERSION,
    StateFileError,
    TrustStoreError,
    decode_entries,
    load_json,
    log_dropped,
    nta_from_json,
    nta_to_json,
    short_repr,
    summarize_dropped,
    write_atomically,
)
from anchord.core.trustmap import NegativeAnchor

log = logging.getLogger("anchord.fleet")

# What a lost or refused connection raises (redis wraps most, not all, socket errors).
_DOWN = (RedisError, OSError, asyncio.TimeoutError)


def _encode_one(nta: NegativeAnchor) -> str:
    # sort_keys: the same NTA is always the same string, so strings compare as values.
    return json.dumps(nta_to_json(nta), sort_keys=True)


def _encode_map(ntas: list[NegativeAnchor]) -> dict[str, str]:
    return {n.zone.to_text(): _encode_one(n) for n in ntas}


def _decode_map(fields: dict[str, str], say: bool = True
                ) -> tuple[list[NegativeAnchor], dict[str, str]]:
    """Hash fields -> (NTAs, fields that could not be read: kept as they are, not lost).

    Each field is held to the state file's rules (ntastore.nta_from_json, one function
    for both): a field another tool wrote, with an endless NTA or a reason that cannot go
    into an answer, must cost only itself. Of two fields for one zone ('de.', 'DE.') the
    later is kept, the other is left alone like an unreadable one, both with a line
    (`say`: only when the fields come from Redis, not for every re-reading of them)."""
    report = log.error if say else log.debug
    by_zone: dict[Any, tuple[str, NegativeAnchor]] = {}
    unreadable: dict[str, str] = {}
    for field, value in fields.items():
        notes: list[str] = []
        try:
            nta = nta_from_json(load_json(value), notes)
        except StateFileError as e:
            report("fleet: NTA entry %s in Redis cannot be read (%s); ignored",
                      short_repr(field), e)
            unreadable[field] = value
            continue
        if notes:
            report("fleet: NTA entry %s in Redis: %s", short_repr(field),
                        "; ".join(notes))
        earlier = by_zone.get(nta.zone)
        if earlier is not None:
            report("fleet: NTA entries %s and %s in Redis are for the same zone; %s "
                      "ignored", short_repr(earlier[0]), short_repr(field),
                      short_repr(earlier[0]))
            unreadable[earlier[0]] = fields[earlier[0]]
        by_zone[nta.zone] = (field, nta)
    return [nta for _, nta in by_zone.values()], unreadable


def redact(url: str) -> str:
    """The URL without its password, for logs and status."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


# How long one read of the subscription waits: also how soon the reader sees `stop`.
_READ_TIMEOUT = 1.0


def _log_stop(task: asyncio.Task[None]) -> None:
    # The follower only ends by cancellation; anything else must be seen (save says so).
    if not task.cancelled() and task.exception() is not None:
        log.error("fleet: the Redis follower stopped", exc_info=task.exception())

class RedisTrustStore:
    """NTAs in Redis, shared by a fleet; a local cache file for when Redis is away."""

    def __init__(self, url: str, cache_file: Path | str, prefix: str = "anchord",
                 instance: str = "", *, connect_timeout: float = 1.0,
                 command_timeout: float = 2.0, poll_interval: float = 2.0,
                 retry_min: float = 0.2, retry_max: float = 5.0) -> None:
        self.url = url
        self.path = Path(cache_file)  # shown by the status endpoint as the store's file
        self.prefix = prefix
        self.instance = instance or f"{socket.gethostname()}-{os.getpid()}"
        self.ntas_key = f"{prefix}:ntas"
        self.version_key = f"{prefix}:version"
        # A random token set with the first write to an empty Redis: when it changes,
        # Redis has lost the data set this instance followed.
        self.epoch_key = f"{prefix}:epoch"
        self.channel = f"{prefix}:trust"
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self.poll_interval = poll_interval
        self.retry_min = retry_min
        self.retry_max = retry_max
        self.problem = ""  # the current outage, for the status endpoint ("" = connected)
        # Why following Redis failed other than by an outage (a bug, data it could not
        # handle): local changes then do not reach the fleet, and save says so.
        self.failure = ""
        self.driver: Any = None
        # The last state seen in Redis (zone -> JSON) and its version; and this
        # instance's state. They differ while a local change waits to be pushed.
        self._base: dict[str, str] = {}
        self._version = -1
        self._epoch = ""
        self._local: dict[str, str] = {}
        self._seq = 0  # bumped by every save: a reload never overwrites a newer change
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._was_up = False

    # -- TrustStore ----------------------------------------------------------------------
    def load(self) -> list[NegativeAnchor]:
        """Synchronous start-up read: Redis if reachable, else the cache file."""
        try:
            client = redis.Redis.from_url(self.url, decode_responses=True,
                                          socket_connect_timeout=self.connect_timeout,
                                          socket_timeout=self.command_timeout)
            try:
                pipe = client.pipeline(transaction=True)
                pipe.hgetall(self.ntas_key)
                pipe.get(self.version_key)
                pipe.get(self.epoch_key)
                fields, version, epoch = pipe.execute()
            finally:
                client.close()
        except _DOWN as e:
            self._down(e)
            return self._read_cache()
        ntas, unreadable = _decode_map(fields)
        self._base = dict(fields)
        self._version = int(version or 0)
        self._epoch = epoch or ""
        self._local = {**_encode_map(ntas), **unreadable}
        return ntas

    def save(self, ntas: list[NegativeAnchor]) -> None:
        """Driver.on_trust_change (through Control.persist): keep it, push it soon."""
        self._local = {**self._unreadable(), **_encode_map(ntas)}
        self._seq += 1
        if self._wake is not None:
            self._wake.set()
        self._write_cache()  # an OSError reaches Control.persist, which reports it
        # An outage is the design's case (pushed when Redis is back); a follower that
        # failed or stopped pushes nothing: the API must not answer "saved".
        stopped = self._task is not None and self._task.done()
        if self.failure or stopped:
            why = self.failure or "the Redis follower has stopped"
            raise TrustStoreError(f"NTAs saved to {self.path} but NOT pushed to Redis at "
                                  f"{redact(self.url)} ({why}): the fleet does not have them")

    # -- running -------------------------------------------------------------------------
    async def start(self, driver: Any) -> None:
        """Load (Redis, else the cache file), put the NTAs in force, follow the fleet."""
        self.driver = driver
        self._wake = asyncio.Event()
        client = self._client()
        try:
            await self._fetch_and_apply(client)
            source = f"Redis at {redact(self.url)}"
        except _DOWN as e:
            self._down(e)
            self._apply_local(self._read_cache())
            source = f"the fleet cache file {self.path} (Redis unreachable)"
        finally:
            await client.aclose()
        try:
            self._write_cache()
        except OSError as e:  # serving matters more than the cache: say so, go on
            log.error("fleet: cannot write the cache file %s: %s", self.path, e)
        log.info("fleet %s: instance %s, %d NTA(s) from %s", self.prefix, self.instance,
                 len(driver.trust.ntas()), source)
        self._task = asyncio.get_running_loop().create_task(self._run())
        self._task.add_done_callback(_log_stop)

    async def close(self) -> None:
        """Stop following; push a change still waiting if Redis answers at once."""
        if self._task is not None:
            self._task.cancel()
            # Bounded: shutting down must not hang on a Redis client that ignores us.
            _, pending = await asyncio.wait({self._task}, timeout=2 * _READ_TIMEOUT
                                            + 2 * self.command_timeout)
            if pending:
                log.warning("fleet: the Redis follower did not stop in time; left behind")
            self._task = None
        if self._local != self._base and not self.problem:
            client = self._client()
            try:
                await asyncio.wait_for(self._push(client), self.command_timeout)
            except _DOWN as e:
                log.warning("fleet: NTA change not pushed at shutdown (%s); it stays in %s",
                            e, self.path)
            finally:
                await client.aclose()

    # -- internals -------------------------------------------------------------------------
    def _client(self) -> redis.asyncio.Redis:
        # No retries inside the client: the back-off below is the one retry policy.
        return redis.asyncio.Redis.from_url(
            self.url, decode_responses=True, socket_connect_timeout=self.connect_timeout,
            socket_timeout=self.command_timeout, retry=Retry(NoBackoff(), 0))

    def _unreadable(self) -> dict[str, str]:
        """Fields of the last Redis state that did not decode: not ours to delete."""
        return _decode_map(self._base, say=False)[1]

    def _down(self, error: BaseException) -> None:
        if not self.problem:  # once per outage
            log.warning("fleet: Redis at %s unreachable (%s); serving the last known NTAs "
                        "(kept in %s), retrying", redact(self.url), error or type(error).__name__,
                        self.path)
        self.problem = (f"Redis at {redact(self.url)} unreachable "
                        f"({error or type(error).__name__}); serving the last known NTAs")

    def _up(self) -> None:
        if self.problem:
            log.info("fleet: Redis at %s reachable again; NTAs resynced (%d in force)",
                     redact(self.url), len(self.driver.trust.ntas()))
        self.problem = ""
        self.failure = ""

    def _failed(self, error: Exception) -> None:
        """Following failed, not for an outage: logged once (with the traceback) per
        distinct error, shown in status, retried with the outage's back-off."""
        text = f"{type(error).__name__}: {error}"
        if text != self.failure:
            log.error("fleet: following Redis at %s failed (%s); NTA changes made here do "
                      "not reach the fleet until it works again, retrying",
                      redact(self.url), text, exc_info=error)
        self.failure = text
        self.problem = (f"following Redis at {redact(self.url)} failed ({text}); NTA "
                        "changes made here do not reach the fleet")

    async def _run(self) -> None:
        delay = self.retry_min
        while True:
            client = self._client()
            self._was_up = False
            try:
                await self._session(client)
            except asyncio.CancelledError:
                raise
            except _DOWN as e:
                self._down(e)
            except Exception as e:  # noqa: BLE001 - one bad field must not end following
                # for good (it did: every later change stayed here, "saved")
                self._failed(e)
            finally:
                with contextlib.suppress(*_DOWN):
                    await client.aclose()
            if self._was_up:
                delay = self.retry_min  # the session had been up: start the back-off anew
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.retry_max)

    async def _session(self, client: redis.asyncio.Redis) -> None:
        """Subscribe, resync, then follow messages, polls and local changes until the
        connection fails (raises)."""
        assert self._wake is not None
        pubsub = client.pubsub()
        try:
            await pubsub.subscribe(self.channel)
            # Subscribed first, then read: a change made in between is not missed.
            await self._sync(client, force=True)
            self._up()
            self._was_up = True
            stop = asyncio.Event()
            reader = asyncio.get_running_loop().create_task(self._read(pubsub, stop))
            try:
                while True:
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), self.poll_interval)
                    self._wake.clear()
                    if reader.done():
                        reader.result()  # the subscription's error
                        raise redis.ConnectionError("the subscription ended")
                    await self._sync(client)
            finally:
                # redis-py's get_message(timeout=...) can swallow a cancellation (its
                # timeout context catches it), so the reader also checks `stop` after
                # each read of at most 1 s; waiting for it is bounded all the same.
                stop.set()
                reader.cancel()
                # asyncio.wait, not `await reader`: the reader's own end is not ours to
                # raise, and a cancellation of this task must still get through.
                await asyncio.wait({reader}, timeout=_READ_TIMEOUT + self.command_timeout)
        finally:
            with contextlib.suppress(*_DOWN):
                await pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]

    async def _read(self, pubsub: Any, stop: asyncio.Event) -> None:
        assert self._wake is not None
        try:
            while not stop.is_set():
                message = await pubsub.get_message(ignore_subscribe_messages=True,
                                                   timeout=_READ_TIMEOUT)
                if message is None or message.get("type") != "message":
                    continue
                try:
                    version = int(json.loads(message["data"]).get("version", -2))
                except (ValueError, AttributeError, TypeError):
                    version = -2
                if version != self._version:  # our own push comes back: nothing to do
                    self._wake.set()
        finally:
            self._wake.set()  # a dead subscription wakes the session, which then fails

    async def _sync(self, client: redis.asyncio.Redis, force: bool = False) -> None:
        """Push what changed here, then reload if Redis moved on."""
        if force and self._epoch:
            epoch = await client.get(self.epoch_key)
            if epoch != self._epoch:
                # Not the data set we followed: Redis lost it (restarted without
                # persistence, failed over to a stale replica). Write back what this
                # instance holds rather than follow it to an empty set; every instance
                # does, so the fleet's state comes back whole.
                log.warning("fleet: Redis at %s has lost the NTAs (epoch %s, was %s); "
                            "writing back this instance's %d", redact(self.url), epoch,
                            self._epoch, len(self._local))
                self._base, self._version, self._epoch = {}, -1, ""
        while True:
            seq = self._seq
            pushed = False
            if self._local != self._base:
                await self._push(client)
                pushed = True
            if not (force or pushed):
                raw = await client.get(self.version_key)
                if int(raw or 0) == self._version:
                    return
            if self._seq != seq:
                force = True
                continue  # changed here while we talked: push that first
            if await self._fetch_and_apply(client, seq):
                return
            force = True

    async def _fetch_and_apply(self, client: redis.asyncio.Redis, seq: int | None = None
                               ) -> bool:
        pipe = client.pipeline(transaction=True)
        pipe.hgetall(self.ntas_key)
        pipe.get(self.version_key)
        pipe.get(self.epoch_key)
        fields, raw, epoch = await pipe.execute()
        if seq is not None and self._seq != seq:
            return False  # a newer local change: applying now would undo it
        moved = (dict(fields), int(raw or 0), epoch or "") != (
            self._base, self._version, self._epoch)
        self._base = dict(fields)
        self._version = int(raw or 0)
        self._epoch = epoch or ""
        ntas, unreadable = _decode_map(self._base)
        changed = self.driver.replace_ntas(ntas)
        # What is in force now (expired ones dropped): the difference, if any, is pushed
        # (the expired fields deleted) on the next round.
        self._local = {**unreadable, **_encode_map(self.driver.trust.ntas())}
        if self._local != self._base and self._wake is not None:
            self._wake.set()
        if changed or moved:
            self._write_cache()
        return True

    def _apply_local(self, ntas: list[NegativeAnchor]) -> None:
        self.driver.replace_ntas(ntas)
        self._local = {**self._unreadable(), **_encode_map(self.driver.trust.ntas())}

    async def _push(self, client: redis.asyncio.Redis) -> None:
        """Apply (base -> local) to the hash, zone by zone, in one WATCH/MULTI."""
        local, base = dict(self._local), dict(self._base)
        async with client.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(self.ntas_key)
                    current = await pipe.hgetall(self.ntas_key)
                    pipe.multi()  # type: ignore[no-untyped-call]
                    writes = 0
                    for zone, value in local.items():
                        if base.get(zone) == value or current.get(zone) == value:
                            continue  # unchanged here, or already there
                        if zone in base and current.get(zone) != base[zone]:
                            continue  # changed elsewhere since we saw it: theirs wins
                        pipe.hset(self.ntas_key, zone, value)
                        writes += 1
                    for zone in base.keys() - local.keys():
                        if zone in current and current[zone] == base[zone]:
                            pipe.hdel(self.ntas_key, zone)
                            writes += 1
                    if not writes:
                        await pipe.reset()  # type: ignore[no-untyped-call]
                        return  # nothing to write: the reload brings the others' state
                    pipe.set(self.epoch_key, secrets.token_hex(8), nx=True)
                    pipe.incr(self.version_key)
                    results = await pipe.execute()
                    break
                except WatchError:
                    continue  # the hash changed under us: read it again
        version = int(results[-1])
        await client.publish(self.channel, json.dumps({"instance": self.instance,
                                                       "version": version}))

    # -- the cache file ----------------------------------------------------------------------
    def _write_cache(self) -> None:
        ntas, _ = _decode_map(self._local, say=False)
        doc = {"version": FORMAT_VERSION, "ntas": [nta_to_json(n) for n in ntas],
               "fleet": {"synced": self._base, "redis_version": self._version,
                         "redis_epoch": self._epoch}}
        write_atomically(self.path, (json.dumps(doc, indent=1) + "\n").encode())

    def _read_cache(self) -> list[NegativeAnchor]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as e:
            log.error("fleet: cache file %s cannot be read (%s); starting without NTAs",
                      self.path, e.strerror)
            return []
        try:
            doc = load_json(raw)
            if not isinstance(doc, dict) or doc.get("version") != FORMAT_VERSION \
                    or not isinstance(doc.get("ntas"), list):
                raise StateFileError("not an anchord NTA file")
            # Entry by entry, as the file store reads: one bad entry costs only itself.
            ntas, dropped = decode_entries(doc["ntas"])
            if dropped:
                log.error("fleet: cache file %s: %d NTA entr%s cannot be read and %s "
                          "dropped (%s); keeping the other %d", self.path, len(dropped),
                          "y" if len(dropped) == 1 else "ies",
                          "was" if len(dropped) == 1 else "were",
                          summarize_dropped(dropped), len(ntas))
                log_dropped(f"fleet: cache file {self.path}", dropped)
            fleet = doc.get("fleet") or {}
            synced = fleet.get("synced") or {}
            if not isinstance(synced, dict):
                raise StateFileError("'fleet.synced' is not an object")
            self._base = {str(k): str(v) for k, v in synced.items()}
            self._version = int(fleet.get("redis_version", -1))
            self._epoch = str(fleet.get("redis_epoch", ""))
        except (ValueError, KeyError, TypeError, OverflowError, StateFileError) as e:
            log.error("fleet: cache file %s is corrupt (%s); starting without NTAs until "
                      "Redis answers", self.path, e)
            self._base, self._version, self._epoch = {}, -1, ""
            return []
        return ntas


def store_from_config(config: Config) -> RedisTrustStore:
    f = config.fleet
    return RedisTrustStore(f.redis_url, config.path(f.cache_file), f.key_prefix, f.instance)


async def attach_fleet(config: Config, control: Any) -> RedisTrustStore:
    """`anchord serve` with fleet.redis_url: the Redis store replaces the control plane's
    file store (Control.persist then saves to it) and takes over the driver's NTAs."""
    store = store_from_config(config)
    control.store = store
    await store.start(control.driver)
    return store


__all__ = ["RedisTrustStore", "store_from_config", "attach_fleet", "redact"]
