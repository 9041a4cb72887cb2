"""The folders and files testbed commands write into (`testbed --dir`, `demo --dir`,
`replay --out`, `rpl --report`).

Checked before any work starts, so a folder that cannot be made or written to is one
line naming it, not a traceback from the first file written, minutes in.
"""

from __future__ import annotations

import os
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


def check_file_writable(path: Path) -> None:
    """The same check for a file written at the end of a run: its folder (created if
    missing) takes a new file, and the file, if it is there already, may be replaced."""
    if path.is_dir():
        raise FolderError(f"{path} is a folder, not a file")
    try:
        check_writable(path.parent)
    except FolderError as e:
        raise FolderError(f"{path} cannot be written: {e}") from None
    if path.exists() and not os.access(path, os.W_OK):
        raise FolderError(f"{path} is not writable")


__all__ = ["FolderError", "check_file_writable", "check_writable"]
