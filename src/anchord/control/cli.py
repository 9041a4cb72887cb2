"""Operator commands that talk to a running resolver or print its settings.

`anchord nta ...` and `anchord cache flush` read the same config file as `anchord serve`
to find the control API's address and token file, then speak HTTP to it. Every failure
is one line on stderr and exit status 1 (click's usage errors stay at 2).
"""

from __future__ import annotations

import datetime
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, NoReturn

import click

from anchord.control.config import (
    Config,
    ConfigError,
    defaults_as_toml,
    load_config,
    parse_endpoint,
)
from anchord.control.ntastore import format_duration

_TIMEOUT = 10.0  # seconds; the API answers from memory, so this only bounds a hung peer


@click.command("config-defaults")
def config_defaults() -> None:
    """Print every configuration option with its default, as TOML."""
    click.echo(defaults_as_toml())


def _fail(message: str) -> NoReturn:
    click.echo(f"anchord: {message}", err=True)
    sys.exit(1)


class _Api:
    """Just enough of an HTTP client for the control API (urllib: no event loop to start,
    so each command runs in well under a second)."""

    def __init__(self, config_file: str | None) -> None:
        try:
            config = load_config(config_file)
        except ConfigError as e:
            _fail(str(e))
        self.config: Config = config
        where = config_file or "the defaults"
        if not config.control.enabled:
            _fail(f"the control API is switched off in {where} (control.enabled = false)")
        self.listen = config.control.listen
        self.token_file = config.path(config.control.token_file)
        host, port = parse_endpoint(self.listen, 8953)
        self.base = f"http://{f'[{host}]' if ':' in host else host}:{port}"

    def _token(self) -> str | None:
        try:
            return self.token_file.read_text().strip()
        except FileNotFoundError:
            # Not fatal yet: a resolver that is not running is the likelier problem,
            # and the connection attempt below says so more usefully.
            return None
        except OSError as e:
            _fail(f"cannot read the control token {self.token_file}: {e.strerror}")

    def call(self, method: str, path: str, body: dict[str, Any] | None = None
             ) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        token = self._token()
        if token is not None:
            req.add_header("Authorization", f"Bearer {token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=_TIMEOUT) as resp:
                return _decode(resp.read())
        except urllib.error.HTTPError as e:
            doc = _decode(e.read())
            message = doc.get("error") or e.reason
            if e.code == 401 and token is None:
                _fail(f"no control token at {self.token_file}: is the running resolver "
                      "using this config file?")
            if e.code == 401:
                _fail(f"the control API refused the token in {self.token_file} ({message}): "
                      "is it the token file of the running resolver?")
            _fail(str(message))
        except urllib.error.URLError as e:
            reason = e.reason
            if isinstance(reason, ConnectionRefusedError):
                text = "connection refused"
            elif isinstance(reason, OSError):
                text = reason.strerror or str(reason)
            else:
                text = str(reason)
            _fail(f"cannot reach anchord's control API at {self.listen}: {text} "
                  "— is `anchord serve` running?")
        except TimeoutError:
            _fail(f"anchord's control API at {self.listen} did not answer in {_TIMEOUT:.0f} s")


def _decode(raw: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return doc if isinstance(doc, dict) else {}


# A plain string: load_config says "FILE: cannot read: Is a directory" in one line with
# status 1, where click.Path's check printed a usage error with status 2.
_config_option = click.option(
    "-c", "--config", "config_file", metavar="FILE",
    help="The config file of the running resolver (for the API address and token).")


# -- nta -------------------------------------------------------------------------------

@click.group()
def nta() -> None:
    """Negative trust anchors (RFC 7646) on a running resolver."""


@nta.command("add")
@click.argument("zone")
@click.option("--lifetime", metavar="DURATION",
              help="How long it holds: seconds or 90m, 1h, 2d (default: nta.default_lifetime, "
                   "at most nta.max_lifetime).")
@click.option("--reason", default="", help="Why, for the log and `nta list`.")
@click.option("--no-recheck", is_flag=True,
              help="Do not remove it early once the zone validates again.")
@_config_option
def nta_add(zone: str, lifetime: str | None, reason: str, no_recheck: bool,
            config_file: str | None) -> None:
    """Stop validating ZONE and everything below it, for a while."""
    api = _Api(config_file)
    body: dict[str, Any] = {"zone": zone, "reason": reason, "recheck": not no_recheck}
    if lifetime is not None:
        body["lifetime"] = lifetime
    doc = api.call("POST", "/v1/nta", body)
    verb = "replaced" if doc.get("replaced") else "added"
    click.echo(f"NTA {verb} for {doc['zone']} until {_when(doc['expires_at'])} "
               f"({_duration(doc['expires_in'])})")


@nta.command("remove")
@click.argument("zone")
@_config_option
def nta_remove(zone: str, config_file: str | None) -> None:
    """End the negative trust anchor for ZONE now."""
    api = _Api(config_file)
    doc = api.call("DELETE", "/v1/nta/" + urllib.parse.quote(zone, safe=""))
    click.echo(f"NTA for {doc['removed']['zone']} removed")


@nta.command("list")
@click.option("--json", "as_json", is_flag=True, help="The API's JSON instead of a table.")
@_config_option
def nta_list(as_json: bool, config_file: str | None) -> None:
    """Show the negative trust anchors in force."""
    api = _Api(config_file)
    doc = api.call("GET", "/v1/nta")
    if as_json:
        click.echo(json.dumps(doc, indent=1))
        return
    ntas = doc.get("ntas", [])
    if not ntas:
        click.echo("no negative trust anchors")
        return
    rows: list[tuple[str, ...]] = [("ZONE", "EXPIRES", "ADDED", "LAST RECHECK", "REASON")]
    for n in ntas:
        if not n.get("recheck", True):
            recheck = "off"
        elif n.get("last_recheck_at") is None:
            recheck = "not yet"
        else:
            recheck = f"{_when(n['last_recheck_at'])} {n.get('last_recheck_result', '')}"
        rows.append((n["zone"], f"{_when(n['expires_at'])} (in {_duration(n['expires_in'])})",
                     _when(n["added_at"]), recheck.strip(), n.get("reason") or "-"))
    click.echo(_table(rows))


# -- cache -------------------------------------------------------------------------------

@click.group()
def cache() -> None:
    """The answer cache of a running resolver."""


@cache.command("flush")
@click.argument("zone")
@_config_option
def cache_flush(zone: str, config_file: str | None) -> None:
    """Forget cached answers, failures and keys at and below ZONE ('.' for all)."""
    api = _Api(config_file)
    click.echo(flush_summary(api.call("POST", "/v1/cache/flush", {"zone": zone})))


def flush_summary(doc: dict[str, Any]) -> str:
    """The line `cache flush` prints: the answers removed by every worker that reported
    its count in time (see /v1/cache/flush), and which did not."""
    line = f"flushed {doc['zone']}: {doc['answers_removed']} cached answer(s) removed"
    workers = int(doc.get("workers", 1))
    # A resolver from before workers_reported counted worker 0 alone.
    reported = int(doc.get("workers_reported", 1))
    late_field = doc.get("workers_late")  # absent from a resolver before it
    if reported < workers:
        if late_field is None:
            return line + (f"; only {reported} of {workers} workers reported a count (the "
                           "others' removals are not included)")
        late = int(late_field)
        gone = workers - reported - late
        if late:
            line += (f"; {late} of {workers} workers did not report in time (their "
                     "removals are not included)")
        if gone > 0:
            line += (f"; 1 of {workers} workers has ended (its cache ended with it)"
                     if gone == 1 else f"; {gone} of {workers} workers have ended (their "
                     "caches ended with them)")
    elif workers > 1:
        line += f" across {workers} workers"
    return line


# -- formatting ----------------------------------------------------------------------------

def _when(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _duration(seconds: float) -> str:
    return format_duration(seconds)


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in rows]
    return "\n".join(lines)


__all__ = ["config_defaults", "nta", "cache", "flush_summary"]
