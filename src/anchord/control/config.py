"""The resolver's configuration: TOML, a default for every option, strict checking.

An unknown key or a bad value stops start-up with one line naming the file, the key
and what is wrong (ConfigError). Every option and its default is listed in the README;
`anchord config-defaults` prints them as TOML.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import re
import tomllib
import types
import typing
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import dns.exception
import dns.name
import dns.rdatatype
import dns.rrset

from anchord.control.ntastore import parse_zone

# The root's trust anchors as IANA publishes them (root-anchors.xml): KSK-2017 and
# KSK-2024. Replace with `dnssec.trust_anchors` in the config.
ROOT_TRUST_ANCHORS = (
    ". IN DS 20326 8 2 E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D",
    ". IN DS 38696 8 2 683D2D0ACB8C9B712A1948B27F741219298D0A450D612C483AF444A4C0FB2B16",
)

# IANA root hints (named.root): name, IPv4, IPv6.
ROOT_HINTS = (
    ("a.root-servers.net.", "198.41.0.4", "2001:503:ba3e::2:30"),
    ("b.root-servers.net.", "170.247.170.2", "2801:1b8:10::b"),
    ("c.root-servers.net.", "192.33.4.12", "2001:500:2::c"),
    ("d.root-servers.net.", "199.7.91.13", "2001:500:2d::d"),
    ("e.root-servers.net.", "192.203.230.10", "2001:500:a8::e"),
    ("f.root-servers.net.", "192.5.5.241", "2001:500:2f::f"),
    ("g.root-servers.net.", "192.112.36.4", "2001:500:12::d0d"),
    ("h.root-servers.net.", "198.97.190.53", "2001:500:1::53"),
    ("i.root-servers.net.", "192.36.148.17", "2001:7fe::53"),
    ("j.root-servers.net.", "192.58.128.30", "2001:503:c27::2:30"),
    ("k.root-servers.net.", "193.0.14.129", "2001:7fd::1"),
    ("l.root-servers.net.", "199.7.83.42", "2001:500:9f::42"),
    ("m.root-servers.net.", "202.12.27.33", "2001:dc3::35"),
)


def _default_hints() -> dict[str, list[str]]:
    return {name: [v4, v6] for name, v4, v6 in ROOT_HINTS}


NONRECURSIVE_MODES = ("cache", "refuse", "recurse")  # server.nonrecursive


class ConfigError(Exception):
    """A problem with the configuration, as one line an operator can act on."""


@dataclass(slots=True)
class ServerConfig:
    listen: list[str] = field(default_factory=lambda: ["127.0.0.1:53", "[::1]:53"])
    access_control: list[str] = field(default_factory=lambda: ["127.0.0.0/8", "::1/128"])
    workers: int = 1
    tcp_idle_timeout: float = 10.0
    max_tcp_clients: int = 256
    fast_path: bool = True
    # A query without RD (recursion desired): "cache" answers it from the cache and
    # never resolves for it, "refuse" refuses every one, "recurse" resolves it as if RD
    # were set. Why "cache" by default: Driver.resolve_norec.
    nonrecursive: str = "cache"


@dataclass(slots=True)
class UpstreamConfig:
    port: int = 53  # port of the authoritative servers (the testbed uses another)
    timeout: float = 1.5  # seconds before one upstream try is abandoned
    attempts: int = 3  # tries per question across a zone's servers
    qname_minimisation: bool = True  # RFC 9156, relaxed mode
    edns_buffer_size: int = 1232
    do_ipv4: bool = True
    do_ipv6: bool = True
    max_referrals: int = 30
    max_cname_chain: int = 12
    max_upstream_queries: int = 120  # per client question, all sub-queries included
    root_hints: dict[str, list[str]] = field(default_factory=_default_hints)
    # zone name -> ["addr" or "addr:port" ...]: stub zones, asked non-recursively.
    stub_zones: dict[str, list[str]] = field(default_factory=dict)
    # zone name -> ["addr[:port]" ...]: forward zones, asked recursively (RD set).
    forward_zones: dict[str, list[str]] = field(default_factory=dict)
    # Servers never asked: addresses and networks ("192.0.2.1", "127.0.0.0/8"), as
    # Unbound's do-not-query-address. Empty by default: the testbed lives on loopback.
    do_not_query: list[str] = field(default_factory=list)


@dataclass(slots=True)
class DnssecConfig:
    enabled: bool = True
    trust_anchors: list[str] = field(default_factory=lambda: list(ROOT_TRUST_ANCHORS))
    insecure_zones: list[str] = field(default_factory=list)  # permanent negative anchors
    clock_skew: int = 0  # seconds of tolerance either side of an RRSIG's validity window
    # Judge signature validity as of this epoch time instead of now (replays); 0 = now.
    override_time: int = 0
    nsec3_max_iterations: int = 150  # RFC 9276: above this, insecure with EDE 27
    max_signature_checks: int = 64  # per client question (KeyTrap bound)
    max_key_tag_collisions: int = 4  # keys tried per RRSIG (KeyTrap bound)
    # Bogus data is asked again of the zone's other servers (each bogus one left out)
    # at most this many times (Unbound's val-max-restart).
    bogus_retries: int = 3
    # "rfc8624" (default, RFC 8624 validation column) or "all" (DSA, SHA-1, ... too;
    # only for replaying old test scenarios).
    algorithm_policy: str = "rfc8624"


@dataclass(slots=True)
class CacheConfig:
    max_entries: int = 1_000_000
    min_ttl: int = 0
    max_ttl: int = 86400
    max_negative_ttl: int = 3600
    aggressive_nsec: bool = False
    # Answer with the TTLs records arrived with, not what remains (Unbound's
    # serve-original-ttl); stale answers too. The cache's own timing is unchanged.
    serve_original_ttl: bool = False
    # A hit on an answer with at most a tenth of its TTL left is answered from the
    # cache and refreshed in the background (Unbound's prefetch).
    prefetch: bool = False


@dataclass(slots=True)
class ServeStaleConfig:
    enabled: bool = True
    max_stale_age: int = 86400  # RFC 8767: 1 to 3 days
    stale_ttl: int = 30
    client_timeout: float = 1.8  # answer stale if a refresh has not finished by then
    failure_recheck: int = 30  # no new upstream try for a name this long after a failure
    # A failed refresh restarts the stale window (max_stale_age from the failure), also
    # for an answer already past it: served while clients ask and upstream stays broken
    # (Unbound's serve-expired-ttl-reset).
    extend_on_failure: bool = False


@dataclass(slots=True)
class FailureCacheConfig:
    enabled: bool = True
    min_ttl: int = 1  # RFC 9520: at least 1 s
    max_ttl: int = 300  # RFC 9520: at most 5 min


@dataclass(slots=True)
class NtaConfig:
    default_lifetime: int = 3600
    max_lifetime: int = 604800
    recheck_interval: int = 300
    state_file: str = "anchord-nta.json"  # relative to the config file's folder


@dataclass(slots=True)
class ControlConfig:
    enabled: bool = True
    listen: str = "127.0.0.1:8953"
    token_file: str = "anchord-control.token"  # relative to the config file's folder
    metrics: bool = True


@dataclass(slots=True)
class FleetConfig:
    # Many resolver instances sharing their NTAs through Redis (control/fleet.py).
    redis_url: str = ""  # "" = off (the local nta.state_file); redis://host:6379/0
    key_prefix: str = "anchord"  # keys <prefix>:ntas, <prefix>:version; channel <prefix>:trust
    instance: str = ""  # this instance's name in the fleet; "" = hostname-pid
    cache_file: str = "anchord-fleet-cache.json"  # last known state, relative to the config


@dataclass(slots=True)
class LogConfig:
    level: str = "info"


@dataclass(slots=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    upstream: UpstreamConfig = field(default_factory=UpstreamConfig)
    dnssec: DnssecConfig = field(default_factory=DnssecConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    serve_stale: ServeStaleConfig = field(default_factory=ServeStaleConfig)
    failure_cache: FailureCacheConfig = field(default_factory=FailureCacheConfig)
    nta: NtaConfig = field(default_factory=NtaConfig)
    control: ControlConfig = field(default_factory=ControlConfig)
    fleet: FleetConfig = field(default_factory=FleetConfig)
    log: LogConfig = field(default_factory=LogConfig)
    # The folder relative paths are resolved against (the config file's own).
    base_dir: str = "."
    # The file this was read from, absolute ("" for the defaults): the dashboard puts it
    # in the commands it suggests, which must read the same file to find API and token.
    source_file: str = ""

    def path(self, relative: str) -> Path:
        p = Path(relative)
        return p if p.is_absolute() else Path(self.base_dir) / p


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is list:
        return f"a list of {_plural_name(typing.get_args(tp)[0])}"
    if origin is dict:
        return "a table"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(
        tp, str(tp)
    )


def _plural_name(tp: Any) -> str:
    # Its own table: "a list of " + the singular name read "a list of a strings".
    if typing.get_origin(tp) is list:
        return "lists"
    if typing.get_origin(tp) is dict:
        return "tables"
    return {int: "integers", float: "numbers", bool: "true/false values", str: "strings"}.get(
        tp, str(tp)
    )


def _coerce(value: Any, tp: Any, path: str) -> Any:
    """`value` as option type `tp`; ConfigError naming the key at `path` if it is not."""
    where = f"key '{path}'"
    origin = typing.get_origin(tp)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected {_type_name(tp)}, got {_shown(value)}")
        (inner,) = typing.get_args(tp)
        return [_coerce(v, inner, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {_shown(value)}")
        _, vt = typing.get_args(tp)
        return {str(k): _coerce(v, vt, _subkey(path, str(k))) for k, v in value.items()}
    if origin in (typing.Union, types.UnionType):
        raise ConfigError(f"{where}: unsupported option type")
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {_shown(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {_shown(value)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {_shown(value)}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {_shown(value)}")
        return value
    raise ConfigError(f"{where}: unsupported option type {tp!r}")


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _subkey(path: str, key: str) -> str:
    """The path of table entry `key` as TOML writes it: zone and server names hold dots,
    so they are quoted (upstream.stub_zones."example.org."), as in the file."""
    return f"{path}.{key}" if _BARE_KEY.fullmatch(key) else f"{path}.{json.dumps(key)}"


def _shown(value: Any) -> str:
    """A value from the file as the operator wrote it (TOML), not as Python's repr: a
    date-time would read datetime.datetime(1979, 5, 27, ...) otherwise."""
    if isinstance(value, datetime.datetime):
        return f"the date-time {value.isoformat()}"
    if isinstance(value, datetime.date):
        return f"the date {value.isoformat()}"
    if isinstance(value, datetime.time):
        return f"the time {value.isoformat()}"
    return _toml_value(value)


# Config fields set by load_config, not options a file may set.
_NOT_OPTIONS = frozenset({"base_dir", "source_file"})


def _fill(obj: Any, table: dict[str, Any], where: str) -> None:
    hints = typing.get_type_hints(type(obj))
    known = {f.name: f for f in fields(obj)}
    for key, value in table.items():
        path = f"{where}.{key}" if where else key
        if key not in known or key in _NOT_OPTIONS:
            options = ", ".join(sorted(k for k in known if k not in _NOT_OPTIONS))
            raise ConfigError(f"unknown key '{path}' (known here: {options})")
        tp = hints[key]
        current = getattr(obj, key)
        if is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"'{path}' must be a table ([{path}])")
            _fill(current, value, path)
        else:
            setattr(obj, key, _coerce(value, tp, path))


def _check_range(where: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ConfigError(f"key '{where}': {value} is out of range ({low} to {high})")


def _port(text: str) -> int:
    # int() would say "invalid literal for int() with base 10", which names no port.
    if text.startswith("-") and text[1:].isascii() and text[1:].isdigit():
        raise ValueError(f"port {text} is out of range (1 to 65535)")
    if not (text.isascii() and text.isdigit()):
        raise ValueError(f"port {text!r} is not a number")
    return int(text)


def parse_endpoint(text: str, default_port: int = 53) -> tuple[str, int]:
    """'127.0.0.1:53', '[::1]:53', '::1', '127.0.0.1' -> (host, port); ValueError if bad."""
    text = text.strip()
    host, port = text, default_port
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"unclosed '[' in {text!r}")
        host = text[1:end]
        rest = text[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"expected ':port' after ']' in {text!r}")
            port = _port(rest[1:])
    elif text.count(":") == 1:
        host, p = text.split(":")
        port = _port(p)
    ipaddress.ip_address(host)
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} is out of range (1 to 65535)")
    return host, port


# A listen address in a file may not take port 0: the resolver would answer on a port
# nobody is told. Port 0 itself still works and is kept for the tests, which set it on
# the Config objects they build (server.listen, control.listen) and read back the port
# bound (frontend.workers.pin_ports, the dashboard); those never pass through
# _validate. The testbed and the replay write real ports into the files they hand out.
_LISTEN_PORT_0 = "port 0 would let the kernel pick a port clients cannot know"


def _check_endpoint(path: str, text: str, default_port: int, port_0: str) -> tuple[str, int]:
    """parse_endpoint's (host, port) for the address at key `path`; ConfigError naming
    the key and the address if it is not one or has port 0 (`port_0` says why not)."""
    try:
        host, port = parse_endpoint(text, default_port)
    except ValueError as e:
        raise ConfigError(f"key '{path}': bad address {text!r}: {e}") from None
    if port == 0:
        raise ConfigError(f"key '{path}': bad address {text!r}: {port_0}")
    return host, port


_Binding = tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]


def _binding(host: str, port: int) -> _Binding:
    # Compared as addresses: "127.0.0.1" is "127.0.0.1:53", "::1" is "[0::1]:53".
    return ipaddress.ip_address(host), port


def _clash(a: _Binding, b: _Binding) -> bool:
    """Would binding both fail as "address already in use"? The same address and port, or
    a wildcard address (which takes every address of its family on that port) beside
    another of its family."""
    return a[1] == b[1] and a[0].version == b[0].version and (
        a[0] == b[0] or a[0].is_unspecified or b[0].is_unspecified)


def _check_listen(listen: list[str], key: str = "server.listen") -> None:
    """The listen addresses' rules, for server.listen and for `serve --listen` (`key`
    names them in the error: "server.listen[1]", "--listen[1]")."""
    seen: dict[_Binding, int] = {}
    for i, item in enumerate(listen):
        # The second bind would fail as "address already in use (another resolver
        # running?)", which sends the operator looking for a process.
        bound = _binding(*_check_endpoint(f"{key}[{i}]", item, 53, _LISTEN_PORT_0))
        if bound in seen:
            raise ConfigError(f"key '{key}[{i}]': {item!r} is listed twice (also "
                              f"{key}[{seen[bound]}])")
        overlap = next((j for other, j in seen.items() if _clash(other, bound)), None)
        if overlap is not None:
            raise ConfigError(f"key '{key}[{i}]': {item!r} overlaps "
                              f"{key}[{overlap}] ({listen[overlap]!r}): "
                              "a wildcard address already takes every address on that port")
        seen[bound] = i


def _validate(cfg: Config, listen_key: str = "server.listen") -> None:
    # listen_key: where server.listen came from ("--listen" when the command line gave it).
    _check_listen(cfg.server.listen, listen_key)
    _check_networks("server.access_control", cfg.server.access_control)
    if not cfg.server.listen:
        raise ConfigError("key 'server.listen': empty: the resolver would listen nowhere")
    _check_range("server.workers", cfg.server.workers, 1, 256)
    if cfg.server.nonrecursive not in NONRECURSIVE_MODES:
        raise ConfigError(f"key 'server.nonrecursive': {cfg.server.nonrecursive!r} is not "
                          + "/".join(NONRECURSIVE_MODES))
    # Values that would start a resolver that answers nothing (every TCP connection cut,
    # every question a SERVFAIL) are refused here, not discovered by the clients.
    _check_range("server.tcp_idle_timeout", cfg.server.tcp_idle_timeout, 0.1, 3600)
    _check_range("server.max_tcp_clients", cfg.server.max_tcp_clients, 1, 65535)
    _check_range("upstream.max_referrals", cfg.upstream.max_referrals, 1, 100)
    _check_range("upstream.max_cname_chain", cfg.upstream.max_cname_chain, 1, 100)
    _check_range("upstream.max_upstream_queries", cfg.upstream.max_upstream_queries, 1, 10000)
    _check_range("upstream.port", cfg.upstream.port, 1, 65535)
    _check_range("upstream.timeout", cfg.upstream.timeout, 0.01, 60)
    _check_range("upstream.attempts", cfg.upstream.attempts, 1, 20)
    _check_range("upstream.edns_buffer_size", cfg.upstream.edns_buffer_size, 512, 65535)
    named = {key: _check_servers(f"upstream.{key}", getattr(cfg.upstream, key),
                                 cfg.upstream.port, zones=key != "root_hints")
             for key in ("stub_zones", "forward_zones", "root_hints")}
    for name, where in named["forward_zones"].items():
        # The iterator keeps one delegation per zone: the forward entry silently replaced
        # the stub one, whose servers were never asked.
        if name in named["stub_zones"]:
            raise ConfigError(f"key '{where}': zone {name.to_text()!r} is also a stub zone "
                              f"({named['stub_zones'][name]}): a zone is asked either without "
                              "recursion (stub) or with RD set (forward), not both")
    _check_networks("upstream.do_not_query", cfg.upstream.do_not_query)
    if not cfg.upstream.root_hints and "." not in cfg.upstream.stub_zones \
            and "." not in cfg.upstream.forward_zones:
        raise ConfigError("key 'upstream.root_hints': empty, and no stub or forward zone for '.'")
    _check_range("cache.min_ttl", cfg.cache.min_ttl, 0, 86400 * 7)
    _check_range("cache.max_ttl", cfg.cache.max_ttl, 1, 86400 * 30)
    if cfg.cache.min_ttl > cfg.cache.max_ttl:
        raise ConfigError("key 'cache.min_ttl': larger than cache.max_ttl")
    _check_range("cache.max_entries", cfg.cache.max_entries, 100, 100_000_000)
    _check_range("serve_stale.max_stale_age", cfg.serve_stale.max_stale_age, 0, 86400 * 7)
    _check_range("serve_stale.stale_ttl", cfg.serve_stale.stale_ttl, 1, 86400)
    _check_range("serve_stale.client_timeout", cfg.serve_stale.client_timeout, 0, 60)
    _check_range("failure_cache.min_ttl", cfg.failure_cache.min_ttl, 1, 300)
    _check_range("failure_cache.max_ttl", cfg.failure_cache.max_ttl, 1, 300)
    if cfg.failure_cache.min_ttl > cfg.failure_cache.max_ttl:
        raise ConfigError("key 'failure_cache.min_ttl': larger than failure_cache.max_ttl")
    _check_range("nta.default_lifetime", cfg.nta.default_lifetime, 1, cfg.nta.max_lifetime)
    _check_range("nta.max_lifetime", cfg.nta.max_lifetime, 1, 604800)
    _check_range("dnssec.nsec3_max_iterations", cfg.dnssec.nsec3_max_iterations, 0, 2500)
    _check_range("dnssec.max_signature_checks", cfg.dnssec.max_signature_checks, 1, 10000)
    _check_range("dnssec.bogus_retries", cfg.dnssec.bogus_retries, 0, 10)
    _check_range("dnssec.max_key_tag_collisions", cfg.dnssec.max_key_tag_collisions, 1, 64)
    _check_range("dnssec.clock_skew", cfg.dnssec.clock_skew, 0, 86400 * 7)
    _check_range("dnssec.override_time", cfg.dnssec.override_time, 0, 2**32 * 4)
    _check_range("cache.max_negative_ttl", cfg.cache.max_negative_ttl, 0, 86400 * 7)
    _check_range("serve_stale.failure_recheck", cfg.serve_stale.failure_recheck, 0, 3600)
    _check_range("nta.recheck_interval", cfg.nta.recheck_interval, 1, 86400)
    insecure: dict[dns.name.Name, str] = {}
    for i, zone in enumerate(cfg.dnssec.insecure_zones):
        if zone.strip() in (".", ""):
            raise ConfigError(
                f"key 'dnssec.insecure_zones[{i}]': the root would turn validation off for "
                "every name; set dnssec.enabled = false if that is really meant")
        _check_unique(f"dnssec.insecure_zones[{i}]", zone, insecure)
    if cfg.dnssec.algorithm_policy not in ("rfc8624", "all"):
        raise ConfigError(
            f"key 'dnssec.algorithm_policy': {cfg.dnssec.algorithm_policy!r} "
            "is not one of 'rfc8624', 'all'"
        )
    if cfg.log.level not in ("debug", "info", "warning", "error"):
        raise ConfigError(f"key 'log.level': {cfg.log.level!r} is not debug/info/warning/error")
    control = _binding(*_check_endpoint("control.listen", cfg.control.listen, 8953,
                                        _LISTEN_PORT_0))
    if cfg.control.enabled:
        # The API's TCP listener and the resolver's on one address: the same misleading
        # "address already in use" as two server.listen entries.
        for i, item in enumerate(cfg.server.listen):
            if _clash(_binding(*parse_endpoint(item, 53)), control):
                raise ConfigError(f"key 'control.listen': {cfg.control.listen!r} takes the "
                                  f"port of {listen_key}[{i}] ({item!r}): the control API "
                                  "needs a port of its own")
    # An empty path, ".", one ending in a slash or an existing folder names a folder:
    # every save would fail.
    files = [("nta.state_file", cfg.nta.state_file)]
    if cfg.control.enabled:
        files.append(("control.token_file", cfg.control.token_file))
    for key, value in files:
        if not value.strip():
            raise ConfigError(f"key '{key}': {value!r} is empty: it must name a file")
        if value.rstrip().endswith(("/", "/.", "/..")) or value.strip() in (".", "..") \
                or cfg.path(value).is_dir():
            raise ConfigError(f"key '{key}': {value!r} names a folder: it must name a file")
    if not (cfg.upstream.do_ipv4 or cfg.upstream.do_ipv6):
        raise ConfigError("key 'upstream.do_ipv4': false, and upstream.do_ipv6 is false too: "
                          "no upstream server could be asked")
    if cfg.fleet.redis_url and not cfg.fleet.redis_url.startswith(
            ("redis://", "rediss://", "unix://")):
        raise ConfigError(f"key 'fleet.redis_url': {cfg.fleet.redis_url!r} is not a Redis URL "
                          "(redis://host:port/db, rediss://... or unix:///path)")
    if not cfg.fleet.key_prefix or any(c.isspace() for c in cfg.fleet.key_prefix):
        raise ConfigError(f"key 'fleet.key_prefix': {cfg.fleet.key_prefix!r} must be a "
                          "non-empty word without white space")
    if any(c.isspace() for c in cfg.fleet.instance):
        raise ConfigError(f"key 'fleet.instance': {cfg.fleet.instance!r} contains white space")
    if not cfg.fleet.cache_file:
        raise ConfigError("key 'fleet.cache_file': must name a file")

    for i, line in enumerate(cfg.dnssec.trust_anchors):
        try:
            parse_trust_anchor(line)
        except (ValueError, dns.exception.DNSException) as e:
            raise ConfigError(f"key 'dnssec.trust_anchors[{i}]': {e}") from None
    if cfg.dnssec.enabled and not cfg.dnssec.trust_anchors:
        # Validation without an anchor proves nothing: every answer would go out
        # insecure, silently. Unbound and Knot also refuse to validate from nothing.
        raise ConfigError("key 'dnssec.trust_anchors': empty while dnssec.enabled = true, so "
                          "nothing could be validated; give the anchors, or set "
                          "dnssec.enabled = false to run without validation")


def _check_zone(path: str, text: str) -> dns.name.Name:
    # One rule for a zone wherever one is named: what the API refuses for an NTA
    # (a wildcard label would be taken literally, never as "every name") is refused here.
    try:
        return parse_zone(text)
    except ValueError as e:
        raise ConfigError(f"key '{path}': {e}") from None


def _check_unique(path: str, text: str, seen: dict[dns.name.Name, str]) -> None:
    """`text`, the name at key `path`, checked (_check_zone) and not already in `seen`
    (name -> where it was first given), to which it is added.

    Names are compared as DNS compares them: "Example.com" and "example.com." are one
    name, but both entries were taken: a stub or forward zone's later entry silently
    replaced the earlier one's servers, a negative anchor or a root server was listed
    twice. TOML refuses a table key written twice only when written exactly alike (and a
    list entry given twice not at all); here every repeat is refused alike."""
    name = _check_zone(path, text)
    if name in seen:
        raise ConfigError(f"key '{path}': {text!r} is listed twice (also {seen[name]}; names "
                          "are compared ignoring case and a final dot)")
    # A table's key is the name itself (upstream.stub_zones."de."); a list entry's key
    # (dnssec.insecure_zones[0]) is not, so the name goes with it.
    seen[name] = f"{path}, {text!r}" if path.endswith("]") else path


def _check_servers(path: str, table: dict[str, list[str]], port: int,
                   zones: bool) -> dict[dns.name.Name, str]:
    """A name -> ["addr[:port]", ...] table: stub and forward zones (`zones`: the names
    are zones) or root hints (the names are the root servers'). Returns each name with
    the key it is given at."""
    seen: dict[dns.name.Name, str] = {}
    for name, addrs in table.items():
        where = _subkey(path, name)
        if not zones and name.strip() in ("", "."):
            # dnspython reads "" as the root, which names no root server.
            raise ConfigError(f"key '{where}': a root hint needs the root server's name "
                              "(like \"a.root-servers.net.\")")
        _check_unique(where, name, seen)
        if not addrs:
            raise ConfigError(f"key '{where}': no address: there would be no server to ask")
        for i, a in enumerate(addrs):
            # A server is never asked on port 0 (upstream.port refuses it the same way).
            _check_endpoint(f"{where}[{i}]", a, port, "port 0 is out of range (1 to 65535)")
    return seen


def _check_networks(path: str, items: list[str]) -> None:
    for i, item in enumerate(items):
        try:
            parse_network(item)
        except ValueError:
            raise ConfigError(f"key '{path}[{i}]': {item!r} is not an address or a network "
                              "like 127.0.0.0/8") from None


def parse_network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """'127.0.0.0/8', '::1/128' or a bare address (a /32 or /128) -> the network;
    ValueError if it is neither. Host bits are ignored (127.0.0.1/8 is 127.0.0.0/8), as
    Unbound's access-control and do-not-query-address take them."""
    return ipaddress.ip_network(text, strict=False)


def parse_trust_anchor(line: str) -> dns.rrset.RRset:
    """A DS or DNSKEY record in zone-file syntax -> dns.rrset.RRset."""

    parts = line.split()
    if len(parts) < 4:
        raise ValueError(f"not a DS or DNSKEY record: {line!r}")
    owner, rest = parts[0], parts[1:]
    ttl = 3600
    if rest and rest[0].isdigit():
        ttl = int(rest.pop(0))
    if rest and rest[0].upper() == "IN":
        rest.pop(0)
    if not rest or rest[0].upper() not in ("DS", "DNSKEY"):
        raise ValueError(f"a trust anchor must be a DS or DNSKEY record: {line!r}")
    rtype = rest.pop(0).upper()
    return dns.rrset.from_text(owner, ttl, "IN", rtype, " ".join(rest))


def unusable_trust_anchors(cfg: Config) -> list[str]:
    """The trust anchors whose algorithm (or DS digest type) the validator cannot use
    under dnssec.algorithm_policy; empty if at least one anchor is usable.

    Only when none is usable does this matter: every answer is then insecure (RFC 4035
    5, RFC 8624 3), which is legitimate, but the operator should hear it once."""
    if not cfg.dnssec.enabled:
        return []
    # Imported here: the core is not needed to read a config file.
    from anchord.core.validator import ValidatorPolicy

    policy = (ValidatorPolicy.permissive() if cfg.dnssec.algorithm_policy == "all"
              else ValidatorPolicy())
    unusable = []
    for line in cfg.dnssec.trust_anchors:
        usable = False
        for rd in parse_trust_anchor(line):
            ok = policy.validates_algorithm(int(rd.algorithm))
            if rd.rdtype == dns.rdatatype.DS:
                ok = ok and policy.validates_digest(int(rd.digest_type))
            usable = usable or ok
        if usable:
            return []
        unusable.append(" ".join(line.split()))
    return unusable


def _validate_with(cfg: Config, listen: list[str] | None) -> None:
    if listen is None:
        _validate(cfg)
    else:
        cfg.server.listen = list(listen)
        _validate(cfg, "--listen")


def load_config(path: str | Path | None, listen: list[str] | None = None) -> Config:
    """Read and check a config file; None gives the defaults. `listen` (serve --listen)
    stands in for server.listen before the checks, so they judge what will be bound."""
    cfg = Config()
    if path is None:
        _validate_with(cfg, listen)
        return cfg
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        # One line for a missing file, a folder or an unreadable file alike.
        raise ConfigError(f"{p}: cannot read: {e.strerror or e}") from None
    try:
        # utf-8-sig drops a leading byte order mark, which Windows editors write and
        # tomllib rejects as "Invalid statement" at 1:1; one anywhere else stays an error.
        table = tomllib.loads(raw.decode("utf-8-sig"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: not valid TOML: {e}") from None
    cfg.base_dir = str(p.resolve().parent)
    # abspath, not resolve(): the name the operator gave, not a symlink's target.
    cfg.source_file = os.path.abspath(p)
    try:
        _fill(cfg, table, "")
        _validate_with(cfg, listen)
    except ConfigError as e:
        raise ConfigError(f"{p}: {e}") from None
    return cfg


def defaults_as_toml() -> str:
    """Every option with its default, as a TOML document (for `anchord config-defaults`)."""
    lines: list[str] = []
    cfg = Config()
    for section in fields(cfg):
        if section.name in _NOT_OPTIONS:
            continue
        lines.append(f"[{section.name}]")
        obj = getattr(cfg, section.name)
        for f in fields(obj):
            value = getattr(obj, f.name)
            lines.append(f"{f.name} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f'"{k}" = {_toml_value(v)}' for k, v in value.items()) + " }"
    if isinstance(value, (datetime.date, datetime.time)):  # datetime is a date too
        return value.isoformat()
    return repr(value)


__all__ = ["Config", "ConfigError", "load_config", "parse_endpoint",
           "parse_network", "parse_trust_anchor",
           "unusable_trust_anchors", "defaults_as_toml", "MISSING"]
