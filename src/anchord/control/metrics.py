"""Prometheus metrics, read at scrape time.

The frontend and the resolver already keep plain counters (FrontendStats, cache sizes,
the trust map). One custom Collector turns them into metric families when Prometheus
scrapes, so answering a query costs nothing extra: no prometheus_client object is
touched on the hot path. A fleet is aggregated by Prometheus itself (DESIGN.md).

With `server.workers > 1` only worker 0 serves the API, so it adds up the counters of
all workers: each other worker sends a snapshot of its own every REPORT_INTERVAL
(frontend/workers.py) and the sum is taken at scrape time (`peers`). Nothing is sent per
query, so the hot path stays as it is.
"""

from __future__ import annotations

import collections
import dataclasses
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import dns.rcode
from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from anchord import __version__
from anchord.core.outcome import EdeCode

# FrontendStats fields exported one-to-one as counters: name -> help.
_PLAIN_COUNTERS = {
    "dropped": "Queries answered with nothing (unreadable, QR set, overload).",
    "formerr": "Queries answered FORMERR.",
    "refused_acl": "Queries refused by access control.",
    "truncated": "Responses sent with TC set.",
    "send_dropped": "UDP replies not sent: the socket's send buffer stayed full, or the "
                    "kernel refused them.",
    "crashes": "Queries that hit the last-resort error handler (each one is a bug).",
    "tcp_connections": "TCP connections accepted.",
    "tcp_rejected": "TCP connections closed for exceeding server.max_tcp_clients.",
}


def rcode_name(value: int) -> str:
    try:
        return dns.rcode.to_text(dns.rcode.Rcode(value))
    except ValueError:
        return str(value)


def _ede_name(code: int) -> str:
    try:
        return EdeCode(code).name.lower()
    except ValueError:
        return "unknown"


def counts_of(stats: Any) -> dict[str, Any]:
    """FrontendStats -> JSON-able counts: ints as they are, Counters as [key, n] pairs
    (pairs, not an object: the int keys of `responses` and `edes` stay ints). Every
    field goes, so a counter added to FrontendStats is summed without touching this."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(stats):
        value = getattr(stats, f.name)
        if isinstance(value, collections.Counter):
            out[f.name] = [[k, n] for k, n in value.items()]
        elif isinstance(value, int):
            out[f.name] = value
    return out


def add_counts(total: Any, counts: Mapping[str, Any]) -> None:
    """Add counts_of() output into the FrontendStats `total`. Unknown names are skipped:
    a worker may run a version with a counter this one lacks, for a moment."""
    for name, value in counts.items():
        current = getattr(total, name, None)
        if isinstance(current, collections.Counter):
            for key, n in value:
                current[key] += int(n)
        elif isinstance(current, int):
            setattr(total, name, current + int(value))


class AnchordCollector(Collector):
    """Reads the live counters of one resolver process when scraped.

    `frontend` and `driver` are attached after start-up (the frontend exists only once
    the listeners are bound); anything missing is simply not exported.
    """

    def __init__(self, started_at: float | None = None) -> None:
        self.frontend: Any = None  # anchord.frontend.server.Frontend, duck-typed
        self.driver: Any = None  # anchord.engine.driver.Driver, duck-typed
        # With server.workers > 1 (worker 0 only): the latest snapshot of every other
        # worker, {"stats": counts_of(...), "cache_answers": n}; added in at scrape time.
        self.peers: Callable[[], list[dict[str, Any]]] | None = None
        # Wall time the process started serving: an adapter-level read, not in the core.
        self.started_at = time.time() if started_at is None else started_at

    def collect(self) -> Iterator[Metric]:
        info = InfoMetricFamily("anchord_build", "Version of the running resolver.")
        info.add_metric([], {"version": __version__})
        yield info
        yield GaugeMetricFamily("anchord_start_time_seconds",
                                "When this resolver process started (Unix time).",
                                value=self.started_at)
        stats = self.stats()
        if stats is not None:
            yield from self._frontend(stats)
        if self.driver is not None:
            yield from self._resolver(self.driver)

    def stats(self) -> Any:
        """The frontend counters of this process, plus the other workers' if any: a new
        FrontendStats then (the live one is never written to), else the live one."""
        own = getattr(self.frontend, "stats", None)
        if own is None or self.peers is None:
            return own
        total = type(own)()
        add_counts(total, counts_of(own))
        for snapshot in self.peers():
            add_counts(total, snapshot.get("stats", {}))
        return total

    def cache_answers(self) -> int:
        """Entries in the answer caches of every worker (each worker has its own)."""
        n = len(self.driver.core.answers) if self.driver is not None else 0
        if self.peers is not None:
            n += sum(int(s.get("cache_answers", 0)) for s in self.peers())
        return n

    def _frontend(self, stats: Any) -> Iterator[Metric]:
        queries = CounterMetricFamily("anchord_queries", "Client queries received.",
                                      labels=["transport"])
        queries.add_metric(["udp"], stats.udp_queries)
        queries.add_metric(["tcp"], stats.tcp_queries)
        yield queries
        responses = CounterMetricFamily("anchord_responses", "Responses sent, by header rcode.",
                                        labels=["rcode"])
        for rcode, n in sorted(stats.responses.items()):
            responses.add_metric([rcode_name(rcode)], n)
        yield responses
        edes = getattr(stats, "edes", None)
        if edes is not None:
            family = CounterMetricFamily(
                "anchord_ede", "Extended DNS Errors in outcomes answered, by code (RFC 8914).",
                labels=["code", "name"])
            for code, n in sorted(edes.items()):
                family.add_metric([str(code), _ede_name(code)], n)
            yield family
        rejections = CounterMetricFamily("anchord_rejections",
                                         "Queries rejected before resolution, by reason.",
                                         labels=["reason"])
        for reason, n in sorted(stats.rejections.items()):
            rejections.add_metric([reason], n)
        yield rejections
        for name, help_text in _PLAIN_COUNTERS.items():
            value = getattr(stats, name, None)
            if value is not None:
                yield CounterMetricFamily(f"anchord_{name}", help_text, value=value)

    def _resolver(self, driver: Any) -> Iterator[Metric]:
        core = driver.core
        cache = GaugeMetricFamily("anchord_cache_entries", "Entries in the resolver's caches.",
                                  labels=["cache"])
        cache.add_metric(["answers"], self.cache_answers())
        yield cache
        yield GaugeMetricFamily("anchord_ntas_active",
                                "Negative trust anchors in force (RFC 7646).",
                                value=len(driver.trust.ntas()))
        # The upstream transport counts nothing today; export it as soon as one does.
        sent = getattr(core.transport, "queries_sent", None)
        if isinstance(sent, int):
            yield CounterMetricFamily("anchord_upstream_queries",
                                      "Queries sent to authoritative servers.", value=sent)


def make_registry(collector: AnchordCollector) -> CollectorRegistry:
    """A registry of our own (not the global one): several resolvers in one test
    process must not collide, and the default process metrics come along explicitly."""
    from prometheus_client import GCCollector, PlatformCollector, ProcessCollector

    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The text exposition format (what GET /metrics returns)."""
    return generate_latest(registry)


__all__ = ["AnchordCollector", "rcode_name", "make_registry", "render", "counts_of",
           "add_counts"]
