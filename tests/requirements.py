"""What the tests need from the machine, found or failed for (never skipped).

`./scripts/test` installs every tool below (scripts/setup.sh); a test that cannot find one
fails with a line that says how to get it, so a broken set-up shows in CI instead of
turning into a silent skip.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

_HERE = Path(__file__).resolve().parent


def missing_tools(*tools: str) -> list[str]:
    """The tools from `tools` that are not on PATH."""
    return [t for t in tools if shutil.which(t) is None]


def require_tools(*tools: str) -> Callable[[], Iterator[None]]:
    """An autouse fixture for a test module: fail each test when a tool is missing."""

    @pytest.fixture(autouse=True)
    def _required_tools() -> Iterator[None]:
        missing = missing_tools(*tools)
        if missing:
            pytest.fail(f"missing {', '.join(missing)}: run ./scripts/test, which installs "
                        "them (scripts/setup.sh)")
        yield

    return _required_tools


def scenario_dir() -> Path:
    """The peers' replay scenarios: shared/rpl beside the checkout (CI lays shared/ there)."""
    for candidate in (_HERE.parents[1] / "shared" / "rpl", Path("/work/shared/rpl")):
        if candidate.is_dir():
            return candidate
    pytest.fail("the scenario set shared/rpl is not beside the checkout")
