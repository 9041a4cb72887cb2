"""A scenario's config header -> anchord's Config, the clock's start and what cannot be mapped.

Each peer's defaults differ from anchord's where it matters for the expected answers
(serve-stale off, aggressive NSEC on in Unbound, no trust anchor unless configured),
so the mapping starts from the peer's defaults, not anchord's. A key that would change
the expected answer and has no anchord equivalent makes the scenario unsupported with
that key named; tuning and logging keys are ignored (FORMAT.md lists them).
"""

from __future__ import annotations

import calendar
import time
from dataclasses import dataclass, field

import dns.exception

from anchord.control.config import Config, _default_hints, parse_trust_anchor
from anchord.testbed.replay.parser import ConfigItem, Dialect, Scenario

# Unbound keys that only tune performance, logging or Unbound-internal behaviour.
IGNORED_KEYS = frozenset({
    "target-fetch-policy", "trust-anchor-signaling", "minimal-responses",
    "iter-scrub-promiscuous", "rrset-roundrobin", "access-control", "log-time-ascii",
    "log-servfail", "verbosity", "val-log-level", "num-queries-per-thread", "msg-cache-size",
    "msg-cache-slabs", "rrset-cache-size", "outbound-msg-retry", "directory", "harden-glue",
    "stub-prime", "discard-timeout", "ede", "ede-serve-expired", "log-queries",
    "log-replies", "use-syslog", "logfile", "interface", "port", "chroot", "username",
    "pidfile", "do-daemonize",
    # Fetches DNSKEY sets as soon as a DS names them: earlier upstream work, same answers.
    "prefetch-key",
    # Deckard's flat keys that anchord already does by default or that name things only.
    "stub-name",
})

# What Unbound's do-not-query-localhost adds to do-not-query-address.
_LOCALHOST = ("127.0.0.0/8", "::1/128")

# Where the answer depends on a feature anchord does not have.
_SECTIONS_UNSUPPORTED = frozenset({"auth-zone", "rpz", "view", "remote-control", "dnstap",
                                   "python", "dynlib", "cachedb"})


# Unbound hardening switches whose default is "no"; set to "no" they change nothing
# (anchord does not do the hardened behaviour either), set to "yes" they are unsupported.
_DEFAULT_OFF_KEYS = frozenset({"harden-referral-path", "harden-algo-downgrade",
                               "harden-below-nxdomain"})


@dataclass(slots=True)
class Mapped:
    config: Config
    clock_start: float
    unsupported: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # tolerances and default choices

    @property
    def reason(self) -> str | None:
        return "; ".join(self.unsupported) if self.unsupported else None


def parse_override_date(value: str) -> int:
    """YYYYMMDDHHMMSS (UTC) -> epoch seconds; a plain epoch number is accepted too."""
    value = value.strip()
    if len(value) == 14 and value.isdigit():
        return calendar.timegm(time.strptime(value, "%Y%m%d%H%M%S"))
    return int(value)


def _yes(value: str) -> bool:
    return value.strip().lower() in ("yes", "on", "true", "1")


def _endpoint(addr: str) -> str:
    """Unbound's `addr@port` -> anchord's 'addr:port' / '[v6]:port'."""
    host, _, port = addr.partition("@")
    host = host.strip()
    if not port:
        return host
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _zone(name: str) -> str:
    name = name.strip()
    return name if name.endswith(".") else name + "."


def map_config(scenario: Scenario) -> Mapped:
    cfg = Config()
    # Peer defaults (see the module docstring).
    cfg.dnssec.trust_anchors = []
    cfg.dnssec.algorithm_policy = "all"  # 2007-era DSA and RSA/SHA-1 signatures
    cfg.serve_stale.enabled = False
    cfg.cache.aggressive_nsec = True
    cfg.upstream.root_hints = {}
    cfg.server.listen = []
    cfg.control.enabled = False
    mapped = Mapped(cfg, 0.0)
    mapped.notes.append("aggressive NSEC on, serve-stale off unless configured (peer defaults)")
    if scenario.dialect is Dialect.UNBOUND:
        _map_unbound(scenario, mapped)
    else:
        _map_deckard(scenario, mapped)
    if scenario.header_blocks:
        mapped.unsupported.append("RFC 5011 state file (AUTOTRUST_FILE/TEMPFILE)")
    if not (cfg.upstream.stub_zones.get(".") or cfg.upstream.forward_zones.get(".")
            or cfg.upstream.root_hints):
        if cfg.upstream.stub_zones or cfg.upstream.forward_zones:
            # Only non-root zones are scripted; the root must exist for the config.
            cfg.upstream.root_hints = {"root.invalid.": ["192.0.2.254"]}
        else:
            # No root in the header: the peer's compiled-in root hints (Deckard's
            # "world" captures of real servers rely on them).
            cfg.upstream.root_hints = _default_hints()
    return mapped


def _map_common(item: ConfigItem, mapped: Mapped) -> bool:
    """Keys both dialects share; True when handled."""
    cfg = mapped.config
    key, value = item.key, item.value
    if key == "trust-anchor":
        anchor = " ".join(value.split())
        try:
            parse_trust_anchor(anchor)
        except dns.exception.DNSException as e:
            raise ValueError(f"trust anchor dnspython rejects ({e})") from None
        cfg.dnssec.trust_anchors.append(anchor)
    elif key == "val-override-date":
        cfg.dnssec.override_time = parse_override_date(value)
    elif key == "val-override-timestamp":
        cfg.dnssec.override_time = int(value)
    elif key in ("qname-minimisation", "query-minimization"):
        cfg.upstream.qname_minimisation = _yes(value)
    elif key == "do-ip6":
        cfg.upstream.do_ipv6 = _yes(value)
    elif key == "do-ip4":
        cfg.upstream.do_ipv4 = _yes(value)
    elif key == "domain-insecure":
        cfg.dnssec.insecure_zones.append(_zone(value))
    elif key == "do-not-query-address":
        cfg.upstream.do_not_query.append(value)
    elif key == "do-not-query-localhost":
        # Only the loopback networks: do-not-query-address entries stay.
        others = [n for n in cfg.upstream.do_not_query if n not in _LOCALHOST]
        cfg.upstream.do_not_query = others + (list(_LOCALHOST) if _yes(value) else [])
    elif key in IGNORED_KEYS:
        pass
    else:
        return False
    return True


def _map_unbound(scenario: Scenario, mapped: Mapped) -> None:
    cfg = mapped.config
    # Unbound's do-not-query-localhost defaults to yes. Unbound only: Deckard's scripted
    # servers live on loopback (kresd runs there with loopback servers allowed).
    cfg.upstream.do_not_query = list(_LOCALHOST)
    zones: dict[int, dict[str, list[str]]] = {}  # block -> {"kind", "name", "addr"...}
    for item in scenario.config:
        if item.section in _SECTIONS_UNSUPPORTED:
            mapped.unsupported.append(f"section {item.section}")
            continue
        if item.section in ("stub-zone", "forward-zone"):
            z = zones.setdefault(item.block, {"kind": [item.section], "name": [], "addr": []})
            if item.key == "name":
                z["name"].append(_zone(item.value))
            elif item.key in ("stub-addr", "forward-addr"):
                z["addr"].append(_endpoint(item.value.split()[0]))
            elif item.key in IGNORED_KEYS or item.key == "forward-tcp-upstream":
                pass
            else:
                mapped.unsupported.append(f"key {item.key}")
            continue
        try:
            if _map_common(item, mapped) or _map_unbound_server(item, mapped):
                continue
        except ValueError as e:
            mapped.unsupported.append(f"bad value for key {item.key}: {e}")
            continue
        mapped.unsupported.append(f"key {item.key}")
    _add_zones(zones, mapped)
    # Unbound marks a stale answer whose refresh failed as unresolvable for NORR_TTL
    # (5 s), not RFC 8767's 30 s.
    cfg.serve_stale.failure_recheck = 5
    # Unbound's cache clock starts near 0; signatures are judged at val-override-date.
    mapped.clock_start = 0.0 if cfg.dnssec.override_time else time.time()


def _map_unbound_server(item: ConfigItem, mapped: Mapped) -> bool:
    cfg = mapped.config
    key, value = item.key, item.value
    if key == "module-config":
        modules = value.split()
        if modules == ["iterator"]:
            cfg.dnssec.enabled = False
        elif modules != ["validator", "iterator"]:
            mapped.unsupported.append(f"key module-config {value!r}")
    elif key == "fake-sha1" or key == "fake-dsa":
        if _yes(value):
            # Unbound then accepts SHA-1/DSA signatures without checking them (some
            # 2007 test signatures do not verify); anchord always checks.
            mapped.notes.append(f"{key}: yes in the header: anchord still verifies "
                                "SHA-1/DSA signatures")
    elif key == "local-zone" and value.split()[-1:] == ["nodefault"]:
        # Removes one of Unbound's built-in local zones (test., invalid., ...), which
        # anchord does not have: nothing to remove.
        pass
    elif key in _DEFAULT_OFF_KEYS and not _yes(value):
        pass  # Unbound's default, and anchord's behaviour
    elif key == "harden-unknown-additional":
        # Unknown types in ADDITIONAL are dropped with "yes"; anchord never passes a
        # server's additional section through, so either value is its behaviour.
        pass
    elif key == "aggressive-nsec":
        cfg.cache.aggressive_nsec = _yes(value)
    elif key == "serve-expired":
        cfg.serve_stale.enabled = _yes(value)
    elif key == "serve-expired-ttl":
        cfg.serve_stale.max_stale_age = int(value)
    elif key == "prefetch":
        cfg.cache.prefetch = _yes(value)
    elif key == "val-max-restart":
        cfg.dnssec.bogus_retries = int(value)
    elif key == "serve-expired-ttl-reset":
        cfg.serve_stale.extend_on_failure = _yes(value)
    elif key == "serve-original-ttl":
        cfg.cache.serve_original_ttl = _yes(value)
    elif key == "serve-expired-reply-ttl":
        cfg.serve_stale.stale_ttl = max(1, int(value))
    elif key == "serve-expired-client-timeout":
        cfg.serve_stale.client_timeout = int(value) / 1000.0  # milliseconds
    elif key == "cache-min-ttl":
        cfg.cache.min_ttl = int(value)
    elif key == "cache-max-ttl":
        cfg.cache.max_ttl = max(1, int(value))
    elif key == "cache-max-negative-ttl":
        cfg.cache.max_negative_ttl = int(value)
    else:
        return False
    return True


def _add_zones(zones: dict[int, dict[str, list[str]]], mapped: Mapped) -> None:
    cfg = mapped.config
    for z in zones.values():
        if not z["name"]:
            continue
        name = z["name"][0]
        target = cfg.upstream.stub_zones if z["kind"][0] == "stub-zone" \
            else cfg.upstream.forward_zones
        if not z["addr"]:
            mapped.unsupported.append(f"{z['kind'][0]} {name} without addresses")
            continue
        target.setdefault(name, []).extend(z["addr"])


def _map_deckard(scenario: Scenario, mapped: Mapped) -> None:
    cfg = mapped.config
    for item in scenario.config:
        try:
            if not _map_common(item, mapped) and not _map_deckard_key(item, mapped):
                mapped.unsupported.append(f"key {item.key}")
        except ValueError as e:
            mapped.unsupported.append(f"bad value for key {item.key}: {e}")
    if cfg.upstream.forward_zones.get("."):
        cfg.upstream.stub_zones.pop(".", None)
    # Deckard's whole clock starts at the override date and moves with TIME_PASSES;
    # validity is judged at the resolver's (fake) now.
    start = cfg.dnssec.override_time
    cfg.dnssec.override_time = 0
    mapped.clock_start = float(start) if start else time.time()


def _map_deckard_key(item: ConfigItem, mapped: Mapped) -> bool:
    cfg = mapped.config
    key, value = item.key, item.value
    if key == "stub-addr":
        cfg.upstream.stub_zones.setdefault(".", []).append(_endpoint(value))
    elif key == "forward-addr":
        cfg.upstream.forward_zones.setdefault(".", []).append(_endpoint(value))
    elif key == "features":
        name, _, number = value.partition("=")
        if name.strip() == "min_ttl":
            cfg.cache.min_ttl = int(number)
        elif name.strip() == "max_ttl":
            cfg.cache.max_ttl = int(number)
        else:
            mapped.unsupported.append(f"key features {name.strip()}")
    elif key in ("harden-glue",):
        pass
    else:
        return False
    return True


__all__ = ["IGNORED_KEYS", "Mapped", "map_config", "parse_override_date"]
