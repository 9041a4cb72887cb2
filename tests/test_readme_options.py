"""Every option `anchord config-defaults` prints is in the README's tables, with that
default: an operator reads the README, not the dataclasses."""

from __future__ import annotations

import re
from pathlib import Path

from anchord.control.config import defaults_as_toml

README = Path(__file__).resolve().parent.parent / "README.md"
# Defaults too long for a table cell, described in words there instead.
DESCRIBED = {"upstream.root_hints": "IANA's 13 root servers",
             "dnssec.trust_anchors": "the root's DS for key tags 20326 and 38696"}


def _norm(text: str) -> str:
    # Backticks, quotes and spaces differ between TOML and a table cell: `"x"`, x, { }.
    return re.sub(r"\s+", "", text.replace("`", "").replace('"', ""))


def _defaults() -> dict[str, str]:
    out, section = {}, ""
    for line in defaults_as_toml().splitlines():
        if line.startswith("["):
            section = line.strip("[]")
        elif line.strip():
            key, value = line.split(" = ", 1)
            out[f"{section}.{key}"] = value
    return out


def test_every_option_is_in_the_readme_with_its_default() -> None:
    rows: dict[str, list[str]] = {}
    for line in README.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) >= 2:
            rows.setdefault(cells[0].strip("`"), []).append(cells[1])
    problems = []
    for key, value in _defaults().items():
        if key not in rows:
            problems.append(f"{key}: not in a README table")
            continue
        wanted = DESCRIBED.get(key, value)
        if not any(_norm(cell) == _norm(wanted) for cell in rows[key]):
            problems.append(f"{key}: README says {rows[key]}, config-defaults {value}")
    assert not problems, "\n".join(problems)
