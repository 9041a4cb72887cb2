"""Where negative trust anchors live between restarts: the trust store.

DESIGN.md asks for one small interface from the start so that the local file store
(one host) and a Redis store (a fleet) are two implementations of it. The driver calls
`save` after every NTA change (`Driver.on_trust_change`); `anchord serve` calls `load`
once at start-up and hands the result to `Driver.restore_ntas`.

The file store writes atomically: a temporary file in the same folder, fsync, rename over
the old file, fsync the folder. A crash or kill -9 at any point leaves either the old or
the new state on disk, never a torn file.

A state file that cannot be read at start-up (bad JSON, wrong shape) does not stop the
resolver: refusing to start would turn one lost NTA into an outage for every name. The
file is moved aside to `<name>.corrupt` (kept for the operator), a one-line error naming
both files is logged, and the resolver starts with no NTAs. `problem` keeps that line so
the status endpoint can show it too.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Protocol

import dns.exception
import dns.name

from anchord.core.trustmap import NegativeAnchor

log = logging.getLogger("anchord.control")

FORMAT_VERSION = 1
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"(?:\d+[smhdw])+")


# -- lifetimes as operators write them --------------------------------------------------

def parse_lifetime(value: Any) -> int:
    """'1h', '90m', '1h30m', '2d', '3600' or 3600 -> seconds; ValueError if not a duration."""
    if isinstance(value, bool):
        raise ValueError(f"lifetime {value!r} is not a duration")
    if isinstance(value, (int, float)):
        seconds = int(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        if text.isdigit():
            seconds = int(text)
        elif _DURATION.fullmatch(text):
            seconds = sum(int(n) * _UNITS[u] for n, u in re.findall(r"(\d+)([smhdw])", text))
        else:
            raise ValueError(f"lifetime {value!r} is not understood: give seconds or a "
                             "duration such as 90m, 1h, 1h30m, 2d")
    else:
        raise ValueError(f"lifetime {value!r} is not a duration")
    if seconds <= 0:
        raise ValueError(f"lifetime {value!r} must be positive")
    return seconds


def format_duration(seconds: float) -> str:
    """3600 -> '1h', 5400 -> '1h30m', 604800 -> '7d' (for messages and tables)."""
    s = int(seconds)
    if s <= 0:
        return "0s"
    out = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if s >= size:
            out.append(f"{s // size}{unit}")
            s %= size
    return "".join(out)


class TrustStore(Protocol):
    """Persistent home of the run-time trust state (NTAs)."""

    def load(self) -> list[NegativeAnchor]: ...

    def save(self, ntas: list[NegativeAnchor]) -> None: ...


class StateFileError(ValueError):
    """The state file exists but does not hold what we wrote."""


def nta_to_json(nta: NegativeAnchor) -> dict[str, Any]:
    return {
        "zone": nta.zone.to_text(),
        "reason": nta.reason,
        "added_at": nta.added_at,
        "expires_at": nta.expires_at,
        "recheck": nta.recheck,
        "last_recheck_at": nta.last_recheck_at,
        "last_recheck_result": nta.last_recheck_result,
    }


def _number(item: dict[str, Any], key: str) -> float:
    value = item.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise StateFileError(f"'{key}' is not a number: {value!r}")
    return float(value)


def nta_from_json(item: Any) -> NegativeAnchor:
    if not isinstance(item, dict):
        raise StateFileError(f"an NTA entry is not an object: {item!r}")
    try:
        zone = dns.name.from_text(str(item["zone"]))
    except KeyError:
        raise StateFileError("an NTA entry has no 'zone'") from None
    except dns.exception.DNSException as e:
        raise StateFileError(f"bad zone {item.get('zone')!r}: {e}") from None
    last = item.get("last_recheck_at")
    return NegativeAnchor(
        zone=zone,
        reason=str(item.get("reason", "")),
        added_at=_number(item, "added_at"),
        expires_at=_number(item, "expires_at"),
        recheck=bool(item.get("recheck", True)),
        last_recheck_at=None if last is None else _number(item, "last_recheck_at"),
        last_recheck_result=str(item.get("last_recheck_result", "")),
    )


def encode(ntas: list[NegativeAnchor]) -> bytes:
    doc = {"version": FORMAT_VERSION, "ntas": [nta_to_json(n) for n in ntas]}
    return (json.dumps(doc, indent=1) + "\n").encode()


def decode(raw: bytes) -> list[NegativeAnchor]:
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise StateFileError(f"not valid JSON: {e}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("ntas"), list):
        raise StateFileError("expected an object with an 'ntas' list")
    if doc.get("version") != FORMAT_VERSION:
        raise StateFileError(f"unknown format version {doc.get('version')!r}")
    return [nta_from_json(item) for item in doc["ntas"]]


def write_atomically(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so that readers (and a crash) see old or new, whole."""
    directory = path.parent
    directory.mkdir(parents=True, exist_ok=True)
    # Same folder: os.replace is only atomic within one file system.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())  # the data is on disk before the name points at it
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    # The rename itself lives in the folder: sync it so it survives a power cut too.
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class FileTrustStore:
    """NTAs in one JSON file on local disk (the one-host store)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.problem = ""  # the start-up error line, if the file had to be set aside

    def load(self) -> list[NegativeAnchor]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return []  # first start: nothing to restore
        except OSError as e:
            # Unreadable (permissions): nothing we could move aside either; say so, go on.
            self.problem = f"NTA state file {self.path} cannot be read: {e.strerror}; " \
                           "starting without the NTAs it holds"
            log.error("%s", self.problem)
            return []
        try:
            return decode(raw)
        except StateFileError as e:
            aside = self.path.with_name(self.path.name + ".corrupt")
            try:
                os.replace(self.path, aside)
                kept = f"moved to {aside}"
            except OSError as move_error:
                kept = f"could not be moved aside: {move_error.strerror}"
            self.problem = (f"NTA state file {self.path} is corrupt ({e}); {kept}; "
                            "starting without NTAs: re-add them with `anchord nta add`")
            log.error("%s", self.problem)
            return []

    def save(self, ntas: list[NegativeAnchor]) -> None:
        write_atomically(self.path, encode(ntas))


__all__ = ["parse_lifetime", "format_duration", "TrustStore", "FileTrustStore",
           "StateFileError", "write_atomically", "nta_to_json", "nta_from_json", "encode",
           "decode"]
