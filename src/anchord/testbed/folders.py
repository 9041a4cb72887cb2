"""The folders testbed commands write into (`testbed --dir`, `demo --dir`, `replay --out`).

Checked before any work starts, so a folder that cannot be made or written to is one
line naming it, not a traceback from the first file written, minutes in.
"""

from __future__ import annotations

from pathlib import Path


class FolderError(Exception):
    """An output folder that cannot be created or written to, as one line."""


def check_writable(directory: Path) -> None:
    """Create `directory` (and its parents) if missing and write a probe file in it."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / ".anchord-write-test"
        probe.write_text("x")
        probe.unlink()
    except OSError as e:
        raise FolderError(f"output folder {directory} is not writable: "
                          f"{e.strerror or e}") from None


__all__ = ["FolderError", "check_writable"]
