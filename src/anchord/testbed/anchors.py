"""The testbed's trust anchor in the formats other validators read.

`anchord testbed` writes DIR/trust-anchor.txt (the DS line, as anchord's
dnssec.trust_anchors takes it) and DIR/delv-anchor.conf from this module, so that
`delv -a DIR/delv-anchor.conf` can check anchord's answers independently; the tests
build their delv anchor files with the same function.
"""

from __future__ import annotations

from pathlib import Path

DELV_ANCHOR_FILE = "delv-anchor.conf"


def delv_anchor_file(trust_anchor: str, path: Path) -> Path:
    """'. IN DS tag alg dt hex' -> a delv/BIND trust-anchors file with a static-ds."""
    parts = trust_anchor.split()
    i = parts.index("DS")
    owner = parts[0]
    tag, alg, digest_type = parts[i + 1:i + 4]
    digest = "".join(parts[i + 4:])
    path.write_text(
        f'trust-anchors {{\n  "{owner}" static-ds {tag} {alg} {digest_type} "{digest}";\n}};\n')
    return path


__all__ = ["DELV_ANCHOR_FILE", "delv_anchor_file"]
