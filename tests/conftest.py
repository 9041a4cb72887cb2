"""Shared fixtures: one small signed testbed per session, answered in-process."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from anchord.control.config import Config
from anchord.engine.clock import FakeClock
from anchord.engine.driver import Driver, build_resolver
from anchord.testbed.authserver import Authority
from anchord.testbed.faults import FaultState
from anchord.testbed.inprocess import AuthorityTransport
from anchord.testbed.zones import Hierarchy, TestbedSpec, build_hierarchy

SIGNED_AT = float(int(time.time()))


@pytest.fixture(scope="session")
def small_hierarchy() -> Hierarchy:
    return build_hierarchy(TestbedSpec(children=12), SIGNED_AT)


def config_for(h: Hierarchy) -> Config:
    cfg = Config()
    cfg.upstream.root_hints = {"ns.root-servers.test.": list(h.spec.addresses.root)}
    cfg.upstream.port = 5300
    cfg.dnssec.trust_anchors = [h.trust_anchor]
    return cfg


class World:
    """A resolver wired to the in-process testbed with a fake clock."""

    def __init__(self, h: Hierarchy, cfg: Config | None = None, at: float = SIGNED_AT) -> None:
        self.hierarchy = h
        self.faults = FaultState(h.spec, h.now)
        self.authority = Authority(h, self.faults)
        self.transport = AuthorityTransport(self.authority)
        self.clock = FakeClock(at)
        self.config = cfg or config_for(h)
        self.resolver: Driver = build_resolver(self.config, clock=self.clock,
                                               transport=self.transport, seed=7)


@pytest.fixture
def world(small_hierarchy: Hierarchy) -> World:
    return World(small_hierarchy)


@pytest.fixture
def make_world(small_hierarchy: Hierarchy) -> Callable[..., World]:
    def make(cfg: Config | None = None, at: float = SIGNED_AT) -> World:
        return World(small_hierarchy, cfg, at)

    return make
