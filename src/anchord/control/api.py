"""The control API: HTTP and JSON on `control.listen` (loopback by default).

Endpoints (every one but /metrics needs `Authorization: Bearer <token>`):

    GET    /v1/status          version, uptime, cache sizes, counters (of all workers)
    GET    /v1/nta             the negative trust anchors in force
    POST   /v1/nta             {"zone", "lifetime", "reason", "recheck"} -> add (or replace)
    DELETE /v1/nta/<zone>      remove; 404 if there is none
    POST   /v1/cache/flush     {"zone"} -> forget cached answers at and below the zone
                               (the count is of all workers that report within 1 s)
    GET    /metrics            Prometheus text format
    GET    /, /dashboard       read-only HTML page (dashboard.py); token as for /metrics

/metrics needs no token while the API listens on a loopback address (a local Prometheus
or node agent scrapes it; it only reads counters). On any other address it needs the token
like the rest: Prometheus sends it with `authorization: {credentials_file: ...}`.

Errors are JSON, {"error": "one line"}, with 400 (bad request), 401 (token), 404, 405
(method), 408 (body too slow), 413 (body too large) or 500 (see below, or a bug: logged).
An NTA change answers `"saved": true` once the trust store has it; if the store cannot be
written, the change is in force all the same but the answer is 500 with `"saved": false`
and an "error" line saying it will not survive a restart (the CLI exits 1 on it).
The API runs on the resolver's own event loop, so handlers call the driver directly:
no locks, and an NTA is in force for the next query once the response is sent.
"""

from __future__ import annotations

import asyncio
import datetime
import hmac
import ipaddress
import json
import logging
import math
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, ContentEncodingError, LineTooLong

from anchord import __version__
from anchord.control import dashboard
from anchord.control.config import Config, parse_endpoint
from anchord.control.metrics import AnchordCollector, make_registry, rcode_name, render
from anchord.control.ntastore import (
    FileTrustStore,
    TrustStore,
    TrustStoreError,
    lifetime_over_max,
    nta_reason,
    nta_to_json,
    nta_zone,
    parse_lifetime,
    parse_zone,
    short_repr,
    too_deep,
)
from anchord.core.trustmap import NegativeAnchor
from anchord.engine.driver import Driver

log = logging.getLogger("anchord.control")

_MAX_BODY = 64 * 1024  # control requests are tiny; refuse anything larger
_TOO_LARGE = f"the request body is larger than the limit of {_MAX_BODY} bytes"
_OPEN_ON_LOOPBACK = ("/metrics", *dashboard.PATHS)  # read-only: no token on loopback
# Seconds a client may take to send a whole request. aiohttp arms keepalive_timeout when
# a connection opens, so it also closes a connection whose request headers never finish;
# the body is read under the same bound in _body.
READ_TIMEOUT = 10.0
# Seconds aiohttp keeps reading (and dropping) a body it did not need after the answer
# went out (a 401, or a 413 refused from the Content-Length header), so the client's
# unsent bytes do not turn the close into a reset that loses the answer. aiohttp's
# default (10 s) on top of READ_TIMEOUT kept a stalled client waiting 20 s for the close.
LINGER = 1.0
# Depth of JSON nesting a body may have: control requests are flat objects. Deeper ones
# are refused before anything walks them (json.loads itself stops near 1,000 levels with
# a RecursionError, and repr() in an error message could hit the same limit).
_MAX_DEPTH = 8
# Digits of a JSON integer: Python refuses to convert more than 4,300 (ValueError from
# json.loads), and no control value needs more than a few.
_MAX_DIGITS = 30
# The keys each POST takes: anything else is a typo the client should hear about.
_NTA_KEYS = ("zone", "lifetime", "reason", "recheck")
_FLUSH_KEYS = ("zone",)
# An NTA change that is in force but could not be written to the trust store: the
# request half failed (it will not survive a restart), so not a 2xx.
_NOT_SAVED = 500


class _ClientErrorLine(logging.Filter):
    """aiohttp answers a request it cannot parse (a request line or header over its limit,
    a malformed header) with its own 400, and logs it at ERROR with its parser's traceback.
    The mistake is the client's: this filter on the API's server logger (the AppRunner's
    documented `logger`) replaces such a record with one line, the client and the reason."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, BadHttpMessage):
            return True  # anything else aiohttp logs stays as it is
        # aiohttp's record is "Error handling request from %s", request.remote.
        args = record.args if isinstance(record.args, tuple) else ()
        client = str(args[0]) if args else "a client"
        log.log(min(record.levelno, logging.WARNING),
                "control API: bad request from %s refused with %d: %s",
                client, exc.code, _bad_request_reason(exc))
        return False


def _bad_request_reason(exc: BadHttpMessage) -> str:
    if isinstance(exc, LineTooLong) and len(exc.args) > 1:
        # Its message quotes the first 100 bytes of the line: the limit says enough.
        return f"a request line or header over {exc.args[1]} bytes"
    text = " ".join(str(exc.message).split())  # one line, whatever the client sent
    return text if len(text) <= 200 else text[:200] + "..."


# aiohttp's messages about the API's connections (see _ClientErrorLine).
_http_log = logging.getLogger("anchord.control.http")
_http_log.addFilter(_ClientErrorLine())


class ControlError(Exception):
    """A start-up failure of the control plane, as one line (serve exits with it)."""


class ApiError(Exception):
    def __init__(self, status: int, message: str, close: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.close = close  # answer, then close the connection (no keep-alive)


class _DuplicateKey(ValueError):
    """A JSON object naming one key twice: json.loads would keep the last silently."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for key, value in pairs:
        if key in doc:
            raise _DuplicateKey(f"the request body gives {key!r} twice")
        doc[key] = value
    return doc


class _NumberTooLong(ValueError):
    pass


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > _MAX_DIGITS:
        raise _NumberTooLong(f"the request body has a number of {len(text.lstrip('-'))} "
                             f"digits; at most {_MAX_DIGITS}")
    return int(text)


def _payload_error_text(request: web.Request, error: BaseException) -> str:
    """What a RequestPayloadError says to the client: aiohttp's own message is a repr of
    its internal exception, so name the Content-Encoding when that is what failed."""
    cause = error.__cause__ or error.__context__
    encoding = request.headers.get("Content-Encoding", "").strip()
    if isinstance(cause, ContentEncodingError) and encoding:
        # aiohttp decodes only gzip, deflate, br and zstd: quote anything else it sent.
        name = encoding if encoding.isalnum() and len(encoding) <= 16 else short_repr(encoding)
        return f"the request body cannot be decoded (Content-Encoding {name})"
    return "the request body is malformed (its transfer encoding cannot be read)"


def decode_body(raw: bytes) -> Any:
    """A request body as JSON; ApiError 400 for anything that is not small, sane JSON.

    Every way json.loads can fail lands here, not in a 500: bad syntax or UTF-8
    (ValueError), nesting that exhausts the stack (RecursionError) and integers past
    Python's 4,300-digit conversion limit (refused by _parse_int before int() sees them).
    """
    try:
        doc = json.loads(raw.decode("utf-8"), parse_int=_parse_int,
                         object_pairs_hook=_unique_keys)
    except (_NumberTooLong, _DuplicateKey) as e:
        raise ApiError(400, str(e)) from None
    except RecursionError:
        raise ApiError(400, f"the request body nests JSON more than {_MAX_DEPTH} levels "
                            "deep") from None
    except ValueError:  # JSONDecodeError, UnicodeDecodeError
        raise ApiError(400, "the request body is not valid JSON") from None
    if too_deep(doc, _MAX_DEPTH):
        raise ApiError(400, f"the request body nests JSON more than {_MAX_DEPTH} levels deep")
    return doc


def iso(t: float | None) -> str | None:
    if t is None:
        return None
    return datetime.datetime.fromtimestamp(t, datetime.UTC).isoformat(timespec="seconds")


def nta_view(nta: NegativeAnchor, now: float) -> dict[str, Any]:
    """An NTA as the API shows it: the stored fields plus readable times."""
    view = nta_to_json(nta)
    view.update(added=iso(nta.added_at), expires=iso(nta.expires_at),
                # Rounded up: an NTA in force never reads "0 s left" (a 1 s NTA did,
                # as the reply is made a few milliseconds after the NTA).
                expires_in=max(0, math.ceil(nta.expires_at - now)),
                last_recheck=iso(nta.last_recheck_at))
    return view


# -- the token ---------------------------------------------------------------------------

def load_or_create_token(path: Path) -> str:
    """The bearer token; a new random one (mode 0600) if the file does not exist yet."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    except OSError as e:
        raise ControlError(f"cannot create the control token file {path}: {e.strerror}") from None
    else:
        token = secrets.token_urlsafe(32)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
        log.info("control token written to %s", path)
        return token
    try:
        token = path.read_text().strip()
    except OSError as e:
        raise ControlError(f"cannot read the control token file {path}: {e.strerror}") from None
    if not token:
        raise ControlError(f"the control token file {path} is empty")
    if path.stat().st_mode & 0o077:
        log.warning("control token file %s is readable by other users: chmod 600 it", path)
    return token


# -- the plane -----------------------------------------------------------------------------

class Control:
    """The trust store wiring and the HTTP API of one resolver process."""

    def __init__(self, config: Config, driver: Driver, store: TrustStore) -> None:
        self.config = config
        self.driver = driver
        self.store = store
        self.collector = AnchordCollector()
        self.registry = make_registry(self.collector)
        self.collector.driver = driver
        self.frontend: Any = None
        # With server.workers > 1 (worker 0 only): what the other workers removed for the
        # forget just sent them, and how many said so (workers.Hub.forgotten).
        self.others_forgotten: Callable[[], Awaitable[tuple[int, int, int]]] | None = None
        self.save_error = ""
        # A file that could not be written loses the change at a restart; the fleet
        # store kept it in its cache file, only the other instances do not have it.
        self.save_local = True
        self.address: tuple[str, int] | None = None  # where the API is bound
        self._token = ""
        self._metrics_open = False
        self._runner: web.AppRunner | None = None
        self._started = time.monotonic()
        self.read_timeout = READ_TIMEOUT

    # -- trust store -------------------------------------------------------------------
    def persist(self, ntas: list[NegativeAnchor]) -> None:
        """Driver.on_trust_change: write the NTAs out. A failed write must not undo the
        NTA (it is already in force and answering); it is logged and shown in status."""
        try:
            self.store.save(ntas)
            self.save_error = ""
        except OSError as e:
            # The store's own path, not e.filename: that is the temporary file.
            where = getattr(self.store, "path", None) or "the trust store"
            self.save_error = f"cannot save NTAs to {where}: {e.strerror or e}"
            self.save_local = False
            log.error("%s", self.save_error)
        except TrustStoreError as e:  # the store's own sentence (the fleet's follower)
            self.save_error = str(e)
            self.save_local = True
            log.error("%s", self.save_error)

    def attach(self, frontend: Any) -> None:
        """run_server's ready callback: the frontend (and its counters) now exist."""
        self.frontend = frontend
        self.collector.frontend = frontend

    # -- HTTP ----------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard], client_max_size=_MAX_BODY)
        app.router.add_get("/v1/status", self._status)
        app.router.add_get("/v1/nta", self._list_ntas)
        app.router.add_post("/v1/nta", self._add_nta)
        app.router.add_delete("/v1/nta/{zone}", self._remove_nta)
        app.router.add_post("/v1/cache/flush", self._flush)
        if self.config.control.metrics:
            app.router.add_get("/metrics", self._metrics)
        dashboard.register(app, self)
        return app

    async def start_api(self, token: str) -> str:
        host, port = parse_endpoint(self.config.control.listen, 8953)
        self._token = token
        self._metrics_open = ipaddress.ip_address(host).is_loopback
        # aiohttp answers a request line over max_line_size (8190 bytes) with its own
        # text/plain 400, before any middleware could make it JSON. Raised to the body's
        # limit, a mistyped or pasted long /v1/nta/<zone> reaches the handler and gets
        # the API's JSON error; only a request line past 64 KiB gets aiohttp's (and one
        # line in the log, _ClientErrorLine, not a traceback).
        runner = web.AppRunner(self.app(), access_log=None, handle_signals=False,
                               keepalive_timeout=self.read_timeout,
                               lingering_time=min(LINGER, self.read_timeout),
                               max_line_size=_MAX_BODY, logger=_http_log)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port, reuse_address=True).start()
        except OSError as e:
            await runner.cleanup()
            raise ControlError(f"cannot listen for the control API on "
                               f"{self.config.control.listen}: {e.strerror or e}") from None
        self._runner = runner
        bound = runner.addresses[0]
        self.address = (bound[0], bound[1])
        shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
        return f"http://{shown}:{bound[1]}"

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @web.middleware
    async def _guard(self, request: web.Request,
                     handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                     ) -> web.StreamResponse:
        try:
            if not (request.path in _OPEN_ON_LOOPBACK and self._metrics_open):
                self._check_token(request)
            size = request.content_length
            if size is not None and size > _MAX_BODY:
                # Refused from the header, before any byte of the body is awaited: a
                # client announcing 99999999999 bytes hears it now, not after a timeout.
                raise ApiError(413, _TOO_LARGE)
            return await handler(request)
        except ApiError as e:
            resp = _error(e.status, str(e))
            if e.status in (408, 413) or e.close:
                # No keep-alive after a body that never came, was not read or could not
                # be decoded: answer, then close (after at most LINGER s of draining,
                # see start_api).
                resp.force_close()
            return resp
        except web.HTTPException as e:  # aiohttp's own 404/405/413: keep the JSON shape
            what = f"{request.method} {request.path}"
            text = {404: f"no such endpoint: {what}",
                    405: f"method not allowed: {what}",
                    413: _TOO_LARGE,
                    }.get(e.status, e.reason)
            resp = _error(e.status, text)
            if e.status == 413:
                resp.force_close()
            return resp
        except Exception:  # noqa: BLE001 - the one boundary where a handler bug is caught
            # A bug in a handler: without this aiohttp answers a text/plain 500 page;
            # the API promises JSON, and the traceback belongs in the resolver's log.
            log.exception("control API: %s %s failed", request.method, request.path)
            return _error(500, f"internal error on {request.method} {request.path}; "
                               "the resolver's log has the details")

    def _check_token(self, request: web.Request) -> None:
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not given:
            # Not the token file's path: the client is not authenticated yet (the CLI,
            # which read the config, names the file itself).
            raise ApiError(401, "missing token: send 'Authorization: Bearer <token>' with "
                                "the token from the resolver's control.token_file")
        if not hmac.compare_digest(given.strip().encode(), self._token.encode()):
            raise ApiError(401, "wrong token")

    async def _body(self, request: web.Request, known: tuple[str, ...]) -> dict[str, Any]:
        try:
            # A client that stops half-way through its body must not hold the
            # connection (and a handler) for ever.
            raw = await asyncio.wait_for(request.read(), self.read_timeout)
        except TimeoutError:
            raise ApiError(408, f"the request body did not arrive within "
                                f"{self.read_timeout:g} s") from None
        except web.RequestPayloadError as e:
            # aiohttp could not undo the body's transfer or content encoding (a body
            # sent as "gzip" that is not gzip): the client's error, so a 400, not the
            # 500 and traceback of a handler bug.
            # aiohttp's parser has given up on this body; mark it finished, or the
            # drain after our answer reads the stored error again and logs it as an
            # unhandled exception. Where the next request would start is unknown: close.
            request.content.feed_eof()
            raise ApiError(400, _payload_error_text(request, e), close=True) from None
        body = decode_body(raw)
        if not isinstance(body, dict):
            raise ApiError(400, "the request body must be a JSON object")
        unknown = sorted(k for k in body if k not in known)
        if unknown:
            raise ApiError(400, f"unknown key {short_repr(unknown[0])} in the request body "
                                f"(known: {', '.join(sorted(known))})")
        return body

    def _now(self) -> float:
        return float(self.driver.clock.now())

    async def _status(self, request: web.Request) -> web.Response:
        st = self.collector.stats()  # every worker's counters, as /metrics shows them
        counters: dict[str, Any] = {}
        if st is not None:
            counters = {
                "queries": st.queries, "udp_queries": st.udp_queries,
                "tcp_queries": st.tcp_queries, "dropped": st.dropped, "formerr": st.formerr,
                "refused_acl": st.refused_acl, "truncated": st.truncated,
                "send_dropped": st.send_dropped,
                "crashes": st.crashes,
                "responses": {rcode_name(k): v for k, v in sorted(st.responses.items())},
                "ede": {str(k): v for k, v in sorted(getattr(st, "edes", {}).items())},
            }
        store_path = getattr(self.store, "path", None)
        return _json({
            "version": __version__,
            "uptime_seconds": round(time.monotonic() - self._started, 3),
            "cache": {"answers": self.collector.cache_answers()},
            "ntas": len(self.driver.trust.ntas()),
            "counters": counters,
            "trust_store": {
                "path": None if store_path is None else str(store_path),
                "problem": getattr(self.store, "problem", ""),
                "save_error": self.save_error,
            },
        })

    async def _list_ntas(self, request: web.Request) -> web.Response:
        now = self._now()
        return _json({"ntas": [nta_view(n, now) for n in self.driver.trust.ntas()]})

    async def _add_nta(self, request: web.Request) -> web.Response:
        body = await self._body(request, _NTA_KEYS)
        cfg = self.config.nta
        try:
            # The same rules as for the state file at start-up (ntastore): there a
            # root NTA is dropped and a longer one cut to the maximum.
            zone = nta_zone(body.get("zone"))
            raw_life = body.get("lifetime")
            lifetime = cfg.default_lifetime if raw_life is None else parse_lifetime(raw_life)
            reason = nta_reason(body.get("reason", ""))
        except ValueError as e:
            raise ApiError(400, str(e)) from None
        too_long = lifetime_over_max(lifetime, cfg.max_lifetime)
        if too_long is not None:
            raise ApiError(400, too_long)
        recheck = body.get("recheck", True)
        if not isinstance(recheck, bool):
            raise ApiError(400, "'recheck' must be true or false")
        replaced = any(n.zone == zone for n in self.driver.trust.ntas())
        nta = self.driver.add_nta(zone, lifetime, reason, recheck)  # persist() runs inside
        view = nta_view(nta, self._now())
        view["replaced"] = replaced
        view["saved"] = not self.save_error
        if self.save_error:
            # The NTA stays in force (answering), but the promise "written before the
            # API answers" is broken: a failure status, so no script mistakes it for done.
            view["error"] = (f"NTA for {zone} is in force but NOT saved ({self.save_error}): "
                             + ("the other instances do not have it" if self.save_local
                                else "it will not survive a restart"))
            return _json(view, status=_NOT_SAVED)
        return _json(view, status=201)

    async def _remove_nta(self, request: web.Request) -> web.Response:
        try:
            zone = parse_zone(request.match_info["zone"])
        except ValueError as e:
            raise ApiError(400, str(e)) from None
        removed = self.driver.remove_nta(zone, why="operator, through the control API")
        if removed is None:
            raise ApiError(404, f"no NTA for {zone}")
        doc: dict[str, Any] = {"removed": nta_view(removed, self._now()),
                               "saved": not self.save_error}
        if self.save_error:
            doc["error"] = (f"NTA for {zone} is removed but the removal is NOT saved "
                            f"({self.save_error}): "
                            + ("the other instances keep the NTA" if self.save_local
                               else "it will be back after a restart"))
            return _json(doc, status=_NOT_SAVED)
        return _json(doc)

    async def _flush(self, request: web.Request) -> web.Response:
        body = await self._body(request, _FLUSH_KEYS)
        try:
            zone = parse_zone(body.get("zone"))
        except ValueError as e:
            raise ApiError(400, str(e)) from None
        answers = self.driver.core.answers
        before = len(answers)
        self.driver.core.forget_below(zone)
        removed, reported, late = before - len(answers), 1, 0
        if self.others_forgotten is not None:
            # The other workers flush their own caches from the pipe and send back what
            # they removed (frontend/workers.py); one that does not within a second is
            # left out of the sum, and `workers_reported` says so.
            others, count, late = await self.others_forgotten()
            removed += others
            reported += count
        log.info("cache flushed at and below %s (operator): %d answer(s) removed",
                 zone, removed)
        return _json({"zone": zone.to_text(), "answers_removed": removed,
                      "workers": self.config.server.workers, "workers_reported": reported,
                      "workers_late": late})

    async def _metrics(self, request: web.Request) -> web.Response:
        resp = web.Response(body=render(self.registry))
        resp.content_type = "text/plain"
        resp.charset = "utf-8"
        resp.headers["Content-Type"] = "text/plain; version=0.0.4; charset=utf-8"
        return resp


def _json(doc: dict[str, Any], status: int = 200) -> web.Response:
    return web.json_response(doc, status=status, dumps=lambda d: json.dumps(d, indent=1))


def _error(status: int, message: str) -> web.Response:
    return _json({"error": message}, status=status)


async def start_control(config: Config, driver: object) -> Control | None:
    """At `anchord serve` start: restore NTAs from the trust store, persist every change,
    and open the HTTP API if `control.enabled`. Raises ControlError (one line).

    None for a resolver that is not anchord's driver (serve_config with a test double):
    there are no NTAs to keep or control then."""
    if not isinstance(driver, Driver):
        return None
    store = FileTrustStore(config.path(config.nta.state_file))
    control = Control(config, driver, store)
    # Set before restoring: restore_ntas saves once, dropping NTAs that ended while down;
    # not over a file that holds entries no copy of could be kept (store.held): that one
    # is left as it is until the NTAs are next saved (FileTrustStore.save).
    driver.on_trust_change = control.persist
    ntas = store.load()
    driver.restore_ntas(ntas, save=not store.held)
    restored = len(driver.trust.ntas())
    if restored:
        log.info("restored %d NTA(s) from %s", restored, store.path)
    if config.control.enabled:
        token = load_or_create_token(config.path(config.control.token_file))
        url = await control.start_api(token)
        log.info("control API on %s", url)
    return control


__all__ = ["Control", "ControlError", "start_control", "parse_zone", "load_or_create_token"]
