"""Run-time faults on a running testbed, and the control channel that carries them.

A fault is applied where answers are made (authserver.py asks FaultState per query),
so it takes effect at once, even on a de zone with 100,000 delegations: a "rollover"
does not re-sign the zone up front, it signs each RRset with the rogue key the first
time it is served (and remembers it). "nsec3-rollover" does the same to the zone's NSEC3
RRsets only (the .de event as reported: DNSKEY set kept, NSEC3 signed only by a key not in
it), so DS and every other RRset still validate. "repair" drops the fault, and the answers
go back to the signatures made by the zone's own key.

Control channel: a unix socket DIR/testbed.sock; one JSON line in, one JSON line out:
    {"zone": "de.", "kind": "rollover"}  ->  {"ok": true}
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Callable
from enum import Enum
from pathlib import Path

import dns.exception
import dns.name
import dns.rdataclass
import dns.rdataset
import dns.rdatatype

from anchord.testbed.signing import SigningKey, sign_rdataset
from anchord.testbed.zones import TestbedSpec, derive_key, times

SOCKET_NAME = "testbed.sock"


class FaultKind(Enum):
    ROLLOVER = "rollover"  # DNSKEY set unchanged; everything else signed by a key not in it
    NSEC3_ROLLOVER = "nsec3-rollover"  # DNSKEY set unchanged; only NSEC3 signed by a key not in it
    UNREACHABLE = "unreachable"  # the zone's servers drop its queries
    SERVFAIL = "servfail"  # the zone's servers answer SERVFAIL
    REPAIR = "repair"  # back to normal


# The faults that serve signatures by a rogue key (derived per zone, not in its DNSKEY set).
_RESIGNING = (FaultKind.ROLLOVER, FaultKind.NSEC3_ROLLOVER)


class FaultState:
    """zone -> active fault, shared by every listener of one testbed."""

    def __init__(self, spec: TestbedSpec, now: float) -> None:
        self.spec = spec
        self.now = now
        self._faults: dict[dns.name.Name, FaultKind] = {}
        self._rogue_keys: dict[dns.name.Name, SigningKey] = {}
        self._rogue_sigs: dict[tuple[dns.name.Name, dns.name.Name, int], dns.rdataset.Rdataset] = {}
        # The server runs in one event loop, but apply() may come from another thread.
        self._lock = threading.Lock()

    def apply(self, zone: dns.name.Name, kind: FaultKind) -> None:
        with self._lock:
            self._rogue_sigs = {k: v for k, v in self._rogue_sigs.items() if k[0] != zone}
            if kind is FaultKind.REPAIR:
                self._faults.pop(zone, None)
            else:
                self._faults[zone] = kind

    def get(self, zone: dns.name.Name) -> FaultKind | None:
        return self._faults.get(zone)

    def active(self) -> dict[str, str]:
        return {z.to_text(): k.value for z, k in self._faults.items()}

    def signatures(
        self,
        zone: dns.name.Name,
        owner: dns.name.Name,
        rds: dns.rdataset.Rdataset,
        original: dns.rdataset.Rdataset | None,
    ) -> dns.rdataset.Rdataset | None:
        """The RRSIG rdataset to serve for `rds` at `owner` in `zone`."""
        fault = self._faults.get(zone)
        if original is None or fault not in _RESIGNING:
            return original
        if rds.rdtype == dns.rdatatype.DNSKEY:
            return original  # the key set stays valid: the break is below it
        if fault is FaultKind.NSEC3_ROLLOVER and rds.rdtype != dns.rdatatype.NSEC3:
            return original  # DS, SOA and the rest keep the zone's own signatures
        with self._lock:
            cache_key = (zone, owner, int(rds.rdtype))
            cached = self._rogue_sigs.get(cache_key)
            if cached is not None:
                return cached
            key = self._rogue_keys.get(zone)
            if key is None:
                algorithm = original[0].algorithm
                key = derive_key(self.spec, zone, "rogue", int(algorithm))
                self._rogue_keys[zone] = key
            inception, expiration = times(self.now)
            sigs = sign_rdataset(owner, rds, key, inception, expiration)
            self._rogue_sigs[cache_key] = sigs
            return sigs


# --- control channel ---------------------------------------------------------------


async def serve_control(
    path: Path, faults: FaultState, known_zone: Callable[[dns.name.Name], bool]
) -> asyncio.AbstractServer:
    """Listen on a unix socket for fault commands (one JSON object per line)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            reply = _handle_line(line, faults, known_zone)
            writer.write((json.dumps(reply) + "\n").encode())
            await writer.drain()
        finally:
            writer.close()

    if path.exists():
        path.unlink()
    return await asyncio.start_unix_server(handle, path=str(path))


def parse_fault_zone(text: str) -> dns.name.Name:
    """A zone name for a fault; ValueError for an empty one, which dnspython reads as
    the root: `fault --dir tb "" repair` (an unset shell variable) must not act on '.'."""
    if not text.strip():
        raise ValueError("an empty zone name is not a zone (write '.' for the root)")
    return dns.name.from_text(text.strip())


def _handle_line(
    line: bytes, faults: FaultState, known_zone: Callable[[dns.name.Name], bool]
) -> dict[str, object]:
    try:
        request = json.loads(line)
        zone = parse_fault_zone(str(request["zone"]))
        kind = FaultKind(str(request.get("kind", "")))
    except (ValueError, KeyError, TypeError, dns.exception.DNSException) as e:
        return {"ok": False, "error": f"bad request: {e}"}
    if not known_zone(zone):
        return {"ok": False, "error": f"{zone} is not a zone of this testbed"}
    faults.apply(zone, kind)
    return {"ok": True, "zone": zone.to_text(), "kind": kind.value, "active": faults.active()}


def send_fault(directory: Path, zone: str, kind: str, timeout: float = 5.0) -> dict[str, object]:
    """Client side: ask the testbed running in `directory` to apply a fault."""
    path = directory / SOCKET_NAME
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect(str(path))
        except OSError as e:
            return {"ok": False, "error": f"no testbed running in {directory} ({e.strerror})"}
        s.sendall((json.dumps({"zone": zone, "kind": kind}) + "\n").encode())
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    try:
        reply: dict[str, object] = json.loads(data)
    except ValueError:
        return {"ok": False, "error": "no reply from the testbed"}
    return reply
