"""The testbed's signed DNS hierarchy: root, de (NSEC3, opt-out), com and N children.

Everything here is a pure function of a TestbedSpec and a clock value `now`: no wall
clock is read, keys are derived from the spec's seed (so a rebuild is byte-identical and
a running server can re-derive any key without a key store), and ECDSA signatures are
deterministic (RFC 6979). The signed zones are written as master files that NSD, ldns and
BIND tools read; a restart with the same spec loads them back instead of signing again.

Named faults are built into the data (bogus.de, expired.de, ...); run-time faults
(rollover, unreachable, servfail) live in faults.py and are applied by the server.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path

import dns.dnssec
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.rdtypes.ANY.NSEC
import dns.rdtypes.ANY.NSEC3
import dns.rdtypes.util
import dns.rrset
import dns.zone
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from anchord.testbed.signing import Denial, SigningKey, sign_records

Name = dns.name.Name
RdKey = tuple[Name, int, int]  # (owner, rdtype, covers)
Records = dict[RdKey, dns.rdataset.Rdataset]

ROOT = dns.name.root
DAY = 86400
FORMAT_VERSION = 1  # bump when the generated data changes shape, so caches are rebuilt

# Fault zones under de, each with `www` A; the names tests and peers look for.
FAULT_ZONES = ("bogus", "expired", "notyet", "nokey", "unsigned", "optout", "wild", "alias")


@dataclass(frozen=True, slots=True)
class Addresses:
    """Loopback addresses per level: distinct, so delegations are real hops."""

    root: tuple[str, ...] = ("127.53.0.1",)
    de: tuple[str, ...] = ("127.53.1.1", "127.53.1.2")
    com: tuple[str, ...] = ("127.53.2.1",)
    children: tuple[str, ...] = ("127.53.3.1",)

    def all(self) -> tuple[str, ...]:
        return self.root + self.de + self.com + self.children


@dataclass(frozen=True, slots=True)
class TestbedSpec:
    """What goes into the zone data. Two equal specs give identical zones."""

    __test__ = False  # not a pytest test class, despite the name

    children: int = 1000
    algorithm: int = 13
    # zone name (text, e.g. "c3.de." or "de.") -> algorithm, overriding `algorithm`.
    algorithms: tuple[tuple[str, int], ...] = ()
    max_ttl: int = 0  # 0: no cap; else every TTL (and SOA minimum) is capped to this
    addresses: Addresses = field(default_factory=Addresses)
    seed: str = "anchord-testbed"
    oob_every: int = 50  # every Nth child (index % N == 7) has its NS under hoster.com
    # For the incident replay (`anchord replay`); the defaults leave the data as before.
    child_ttl_mix: bool = False  # children's TTLs from a realistic mix (60 s to 1 day)
    de_ds_ttl: int = 0  # TTL of the DS records in de, as a TLD sets it (0: 86400)
    de_negative_ttl: int = 0  # de's SOA minimum: NSEC3 and negative TTL (0: 300)
    com_names: int = 0  # hK.hoster.com A records in com (mixed TTLs): a control group

    def algorithm_for(self, zone: Name) -> int:
        for text, alg in self.algorithms:
            if dns.name.from_text(text) == zone:
                return alg
        return self.algorithm

    def fingerprint(self) -> str:
        data = asdict(self)
        for key, default in _REPLAY_FIELDS.items():  # absent when unused: caches stay valid
            if data.get(key) == default:
                data.pop(key, None)
        blob = json.dumps([FORMAT_VERSION, data], sort_keys=True, default=list)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def ttl(self, value: int) -> int:
        return min(value, self.max_ttl) if self.max_ttl > 0 else value

    def is_out_of_bailiwick(self, index: int) -> bool:
        return self.oob_every > 0 and index % self.oob_every == 7

    def mixed_ttl(self, kind: str, index: int, default: int = 3600) -> int:
        """A child's (or control name's) TTL: `default`, or with child_ttl_mix a value
        drawn deterministically from CHILD_TTL_MIX (most between 300 s and 1 h)."""
        if not self.child_ttl_mix:
            return default
        digest = hashlib.sha256(f"{self.seed}|ttl|{kind}|{index}".encode()).digest()
        point = int.from_bytes(digest[:4], "big") % sum(w for _, w in CHILD_TTL_MIX)
        for ttl, weight in CHILD_TTL_MIX:
            if point < weight:
                return ttl
            point -= weight
        return default  # pragma: no cover - the weights cover every point


# TTL (seconds) -> weight (percent) of the children's TTLs in the replay world.
CHILD_TTL_MIX = (
    (60, 4), (300, 22), (600, 12), (900, 12), (1800, 15), (3600, 25), (14400, 5), (86400, 5),
)
_REPLAY_FIELDS = {"child_ttl_mix": False, "de_ds_ttl": 0, "de_negative_ttl": 0, "com_names": 0}


class ZoneKind(Enum):
    NSEC = "nsec"
    NSEC3 = "nsec3"
    UNSIGNED = "unsigned"


def child_name(index: int) -> Name:
    return dns.name.from_text(f"c{index}.de.")


def derive_key(spec: TestbedSpec, zone: Name, purpose: str, algorithm: int) -> SigningKey:
    """A key that is a pure function of (seed, zone, purpose).

    Deriving keys instead of storing them keeps the cache to zone files only and lets
    the running server make a "rogue" key for a rollover fault on any zone, even one it
    loaded from disk. RSA cannot be derived from a seed cheaply; it is generated from a
    seeded DRBG-free path (fresh key) and only its public half matters to the data, so
    RSA zones are re-signed on every build (they are opt-in, few, and small).
    """
    material = hashlib.sha256(f"{spec.seed}|{zone.to_text()}|{purpose}".encode()).digest()
    if algorithm == 13:
        order = int("FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551", 16)
        scalar = int.from_bytes(material, "big") % (order - 1) + 1
        key: object = ec.derive_private_key(scalar, ec.SECP256R1())
    elif algorithm == 15:
        key = ed25519.Ed25519PrivateKey.from_private_bytes(material)
    elif algorithm == 8:
        key = _rsa_key(material)
    else:
        raise ValueError(f"algorithm {algorithm} is not supported by the testbed (8, 13, 15)")
    return SigningKey.from_private(zone, key, algorithm)


_RSA_CACHE: dict[bytes, rsa.RSAPrivateKey] = {}


def _rsa_key(material: bytes) -> rsa.RSAPrivateKey:
    # Cached per process so that the DNSKEY stays stable while a testbed runs.
    if material not in _RSA_CACHE:
        _RSA_CACHE[material] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return _RSA_CACHE[material]


def rsa_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


class RecordSet:
    """Unsigned zone content under construction: owner/type -> rdataset."""

    def __init__(self, origin: Name, spec: TestbedSpec) -> None:
        self.origin = origin
        self.spec = spec
        self.records: Records = {}

    def add(self, owner: str | Name, ttl: int, rdtype: str, *texts: str) -> None:
        name = owner if isinstance(owner, Name) else dns.name.from_text(owner, self.origin)
        rdt = dns.rdatatype.from_text(rdtype)
        key = (name, int(rdt), 0)
        rds = self.records.get(key)
        if rds is None:
            rds = dns.rdataset.Rdataset(dns.rdataclass.IN, rdt)
            self.records[key] = rds
        for text in texts:
            rds.add(
                dns.rdata.from_text(
                    dns.rdataclass.IN, rdt, text, origin=self.origin, relativize=False
                ),
                self.spec.ttl(ttl),
            )

    def soa(self, primary: str, minimum: int = 300) -> None:
        minimum = self.spec.ttl(minimum)
        contact = dns.name.Name((b"hostmaster",) + self.origin.labels).to_text()
        self.add(self.origin, 3600, "SOA", f"{primary} {contact} 1 7200 3600 1209600 {minimum}")


@dataclass(slots=True)
class ZoneData:
    """One zone's final records plus what the server needs to know about it."""

    origin: Name
    kind: ZoneKind
    records: Records
    addresses: tuple[str, ...]
    algorithm: int = 0

    def to_text(self) -> str:
        """Standard master-file format: $ORIGIN and absolute names (NSD reads it)."""
        lines = [f"$ORIGIN {self.origin.to_text()}"]
        for key in sorted(self.records, key=_record_sort_key):
            name = key[0]
            lines.append(self.records[key].to_text(name, relativize=False))
        return "\n".join(lines) + "\n"


def _record_sort_key(key: RdKey) -> tuple[Name, int, int]:
    name, rdtype, covers = key
    # SOA first, so that master-file readers see the apex SOA before anything else.
    order = 0 if rdtype == dns.rdatatype.SOA else 1
    return (name, order, rdtype * 65536 + covers)


def records_from_text(text: str, origin: Name) -> Records:
    zone = dns.zone.from_text(text, origin=origin, relativize=False, check_origin=False)
    records: Records = {}
    for name, rds in zone.iterate_rdatasets():
        records[(name, int(rds.rdtype), int(rds.covers))] = rds
    return records


def times(now: float, fault: str = "") -> tuple[int, int]:
    """Signature (inception, expiration) for a zone, moved for the time faults."""
    base = int(now)
    if fault == "expired":
        return base - 60 * DAY, base - DAY
    if fault == "notyet":
        return base + DAY, base + 31 * DAY
    return base - 3600, base + 30 * DAY


# --- the hierarchy ---------------------------------------------------------------


@dataclass(slots=True)
class Delegation:
    """What a parent needs to know about a child zone: NS names, glue, DS."""

    child: Name
    ns: tuple[str, ...]
    glue: tuple[tuple[str, str], ...]  # (absolute name, IPv4 address)
    ds: tuple[str, ...]  # DS rdata texts; empty for an insecure delegation
    in_nsec3_chain: bool = True  # False: left to an opt-out span (optout.de)


def _sign(
    rs: RecordSet, spec: TestbedSpec, now: float, denial: Denial, fault: str = ""
) -> tuple[Records, SigningKey | None]:
    if denial.kind == "unsigned":
        return dict(rs.records), None
    key = derive_key(spec, rs.origin, "csk", spec.algorithm_for(rs.origin))
    inception, expiration = times(now, fault)
    signed = sign_records(rs.records, rs.origin, key, inception, expiration, denial)
    if fault == "bogus":
        _corrupt(signed, dns.name.from_text("www", rs.origin), dns.rdatatype.A)
    return signed, key


def _corrupt(records: Records, owner: Name, covered: int) -> None:
    """Flip bits in the signature of one RRSIG so that it no longer verifies."""
    key = (owner, int(dns.rdatatype.RRSIG), covered)
    old = records[key]
    new = dns.rdataset.Rdataset(old.rdclass, old.rdtype, old.covers)
    for sig in old:
        broken = bytes([sig.signature[0] ^ 0xFF]) + sig.signature[1:]
        new.add(sig.replace(signature=broken), old.ttl)
    records[key] = new


def _ds_texts(spec: TestbedSpec, key: SigningKey | None, zone: Name) -> tuple[str, ...]:
    if key is None:
        return ()
    ds = dns.dnssec.make_ds(zone, key.dnskey, "SHA256")
    return (ds.to_text(),)


def build_child(spec: TestbedSpec, index: int, now: float) -> tuple[ZoneData, Delegation]:
    """One ordinary child cN.de: SOA, NS, DNSKEY, www A/AAAA, signed with NSEC."""
    origin = child_name(index)
    rs = RecordSet(origin, spec)
    addr = spec.addresses.children[index % len(spec.addresses.children)]
    glue: tuple[tuple[str, str], ...] = ()
    if spec.is_out_of_bailiwick(index):
        ns = ("ns1.hoster.com.",)
    else:
        ns_name = f"ns1.{origin.to_text()}"
        ns, glue = (ns_name,), ((ns_name, addr),)
        rs.add(ns_name, spec.mixed_ttl("child", index), "A", addr)
    ttl = spec.mixed_ttl("child", index)
    rs.soa(ns[0])
    rs.add(origin, ttl, "NS", *ns)
    rs.add("www", ttl, "A", f"192.0.2.{index % 250 + 1}")
    # Two 16-bit groups: past c65535 one group would overflow (100,000 children must work).
    rs.add("www", ttl, "AAAA", f"2001:db8::{index >> 16:x}:{index & 0xFFFF:x}")
    records, key = _sign(rs, spec, now, Denial("nsec"))
    zone = ZoneData(
        origin, ZoneKind.NSEC, records, spec.addresses.children, key.algorithm if key else 0
    )
    return zone, Delegation(origin, ns, glue, _ds_texts(spec, key, origin))


def build_fault_zone(spec: TestbedSpec, label: str, now: float) -> tuple[ZoneData, Delegation]:
    origin = dns.name.from_text(f"{label}.de.")
    addr = spec.addresses.children[0]
    ns_name = f"ns1.{origin.to_text()}"
    rs = RecordSet(origin, spec)
    rs.soa(ns_name)
    rs.add(origin, 3600, "NS", ns_name)
    rs.add(ns_name, 3600, "A", addr)
    if label == "wild":
        # Only the apex, ns1 and the wildcard: every other name is a wildcard answer.
        rs.add("*", 3600, "A", "192.0.2.200")
        rs.add("*", 3600, "TXT", '"wildcard"')
    else:
        rs.add("www", 3600, "A", "192.0.2.100")
    if label == "alias":
        # www points into another zone; chain.alias.de shows a chain inside this zone.
        del rs.records[(dns.name.from_text("www", origin), int(dns.rdatatype.A), 0)]
        rs.add("www", 3600, "CNAME", "www.c0.de.")
        rs.add("chain", 3600, "CNAME", "www2")
        rs.add("www2", 3600, "A", "192.0.2.101")
        rs.add("hosted", 3600, "CNAME", "www.hoster.com.")
    unsigned = label in ("unsigned", "optout")
    denial = Denial("unsigned" if unsigned else "nsec")
    records, key = _sign(rs, spec, now, denial, label)
    ds = _ds_texts(spec, key, origin)
    if label == "nokey":
        # The parent publishes the DS of a key this zone never uses.
        ghost = derive_key(spec, origin, "ghost", spec.algorithm_for(origin))
        ds = _ds_texts(spec, ghost, origin)
    kind = ZoneKind.UNSIGNED if unsigned else ZoneKind.NSEC
    zone = ZoneData(origin, kind, records, spec.addresses.children, key.algorithm if key else 0)
    return zone, Delegation(origin, (ns_name,), ((ns_name, addr),), ds, label != "optout")


def _nic_names(addresses: tuple[str, ...], suffix: str) -> list[tuple[str, str]]:
    return [(f"{chr(ord('a') + i)}.{suffix}", a) for i, a in enumerate(addresses)]


def build_de(spec: TestbedSpec, delegations: Iterable[Delegation], now: float) -> ZoneData:
    origin = dns.name.from_text("de.")
    rs = RecordSet(origin, spec)
    nics = _nic_names(spec.addresses.de, "nic.de.")
    rs.soa(nics[0][0], spec.de_negative_ttl or 300)
    rs.add(origin, 86400, "NS", *[n for n, _ in nics])
    for name, addr in nics:
        rs.add(name, 86400, "A", addr)
    excluded: set[Name] = set()
    for d in delegations:
        rs.add(d.child, 86400, "NS", *d.ns)
        for name, addr in d.glue:
            rs.add(name, 86400, "A", addr)
        if d.ds:
            rs.add(d.child, spec.de_ds_ttl or 86400, "DS", *d.ds)
        if not d.in_nsec3_chain:
            excluded.add(d.child)
    # RFC 9276: 0 additional iterations, empty salt; opt-out like large TLDs use.
    denial = Denial("nsec3", iterations=0, salt=b"", opt_out=True, exclude=frozenset(excluded))
    records, key = _sign(rs, spec, now, denial)
    assert key is not None
    return ZoneData(origin, ZoneKind.NSEC3, records, spec.addresses.de, key.algorithm)


def build_com(spec: TestbedSpec, now: float) -> ZoneData:
    origin = dns.name.from_text("com.")
    rs = RecordSet(origin, spec)
    gtlds = _nic_names(spec.addresses.com, "gtld.com.")
    rs.soa(gtlds[0][0])
    rs.add(origin, 86400, "NS", *[n for n, _ in gtlds])
    for name, addr in gtlds:
        rs.add(name, 86400, "A", addr)
    # The out-of-bailiwick name server of some de children, and a CNAME target.
    rs.add("ns1.hoster.com.", 3600, "A", spec.addresses.children[0])
    rs.add("www.hoster.com.", 3600, "A", "192.0.2.150")
    # A large RRset, for truncation (TC) and TCP fallback tests.
    chunk = '"' + "x" * 200 + '"'
    rs.add("big.hoster.com.", 3600, "TXT", *[f'"{i:02d}" {chunk}' for i in range(12)])
    for k in range(spec.com_names):
        rs.add(f"h{k}.hoster.com.", spec.mixed_ttl("com", k), "A", f"198.51.100.{k % 250 + 1}")
    records, key = _sign(rs, spec, now, Denial("nsec"))
    assert key is not None
    return ZoneData(origin, ZoneKind.NSEC, records, spec.addresses.com, key.algorithm)


def root_ns(spec: TestbedSpec) -> list[tuple[str, str]]:
    # The root servers are named under a name the root itself is authoritative for,
    # so priming needs no other zone.
    return _nic_names(spec.addresses.root, "root-servers.")


def build_root(spec: TestbedSpec, tlds: list[ZoneData], now: float) -> tuple[ZoneData, str]:
    rs = RecordSet(ROOT, spec)
    servers = root_ns(spec)
    rs.soa(servers[0][0], 86400)
    rs.add(ROOT, 518400, "NS", *[n for n, _ in servers])
    for name, addr in servers:
        rs.add(name, 518400, "A", addr)
    for tld in tlds:
        ns = tld.records[(tld.origin, int(dns.rdatatype.NS), 0)]
        rs.add(tld.origin, 172800, "NS", *[r.to_text() for r in ns])
        for r in ns:
            glue = tld.records.get((r.target, int(dns.rdatatype.A), 0))
            if glue is not None:
                rs.add(r.target, 172800, "A", *[g.to_text() for g in glue])
        tld_key = derive_key(spec, tld.origin, "csk", tld.algorithm)
        rs.add(tld.origin, 86400, "DS", *_ds_texts(spec, tld_key, tld.origin))
    records, key = _sign(rs, spec, now, Denial("nsec"))
    assert key is not None
    anchor = f". IN DS {_ds_texts(spec, key, ROOT)[0]}"
    return ZoneData(ROOT, ZoneKind.NSEC, records, spec.addresses.root, key.algorithm), anchor


@dataclass(slots=True)
class Hierarchy:
    """The whole testbed's data. Children may live on disk only (see zone())."""

    spec: TestbedSpec
    now: float
    trust_anchor: str
    zones: dict[Name, ZoneData]  # zones held in memory
    child_zones: list[Name]  # every child and fault zone under de
    zones_dir: Path | None = None
    fault_names: dict[str, str] = field(default_factory=dict)  # zone -> probe name

    def hosting(self) -> dict[str, set[Name]]:
        """address -> zone origins served there."""
        out: dict[str, set[Name]] = {}
        for z in self.zones.values():
            for a in z.addresses:
                out.setdefault(a, set()).add(z.origin)
        for c in self.child_zones:
            if c in self.zones:
                continue
            for a in self.spec.addresses.children:
                out.setdefault(a, set()).add(c)
        return out

    def zone(self, origin: Name) -> ZoneData | None:
        z = self.zones.get(origin)
        if z is not None or self.zones_dir is None:
            return z
        path = zone_path(self.zones_dir, origin)
        if not path.exists():
            return None
        records = records_from_text(path.read_text(), origin)
        kind = (
            ZoneKind.NSEC
            if any(k[1] == dns.rdatatype.NSEC for k in records)
            else (ZoneKind.UNSIGNED)
        )
        return ZoneData(
            origin, kind, records, self.spec.addresses.children, self.spec.algorithm_for(origin)
        )

    def existing_names(self) -> Iterator[str]:
        """Names that resolve securely: one www per healthy zone."""
        for i in range(self.spec.children):
            yield f"www.c{i}.de."
        yield "www.wild.de."
        yield "www.alias.de."
        yield "www.hoster.com."


def zone_path(zones_dir: Path, origin: Name) -> Path:
    text = origin.to_text().rstrip(".") or "root"
    return zones_dir / f"{text}.zone"


def build_hierarchy(spec: TestbedSpec, now: float, zones_dir: Path | None = None) -> Hierarchy:
    """Sign every zone. With zones_dir, write each zone file as it is made and keep only
    root/de/com in memory (children are read back on demand), so memory stays flat
    for 100,000 children."""
    if zones_dir is not None:
        zones_dir.mkdir(parents=True, exist_ok=True)
    zones: dict[Name, ZoneData] = {}
    delegations: list[Delegation] = []
    child_zones: list[Name] = []

    def keep(z: ZoneData) -> None:
        if zones_dir is not None:
            zone_path(zones_dir, z.origin).write_text(z.to_text())
        else:
            zones[z.origin] = z

    for i in range(spec.children):
        z, d = build_child(spec, i, now)
        keep(z)
        delegations.append(d)
        child_zones.append(z.origin)
    fault_names: dict[str, str] = {}
    for label in FAULT_ZONES:
        z, d = build_fault_zone(spec, label, now)
        zones[z.origin] = z  # small and few: always in memory
        delegations.append(d)
        child_zones.append(z.origin)
        fault_names[z.origin.to_text()] = (
            f"anything.{z.origin}" if label == "wild" else f"www.{z.origin}"
        )
    de = build_de(spec, delegations, now)
    com = build_com(spec, now)
    root, anchor = build_root(spec, [de, com], now)
    for z in (de, com, root):
        zones[z.origin] = z
    if zones_dir is not None:
        for z in zones.values():
            zone_path(zones_dir, z.origin).write_text(z.to_text())
        _write_manifest(zones_dir, spec, now, anchor, child_zones)
    return Hierarchy(spec, now, anchor, zones, child_zones, zones_dir, fault_names)


# --- reuse across restarts ---------------------------------------------------------

MANIFEST = "manifest.json"
REUSE_WINDOW = 7 * DAY  # signatures last 30 days; rebuild once a week's margin is used


def _write_manifest(
    zones_dir: Path, spec: TestbedSpec, now: float, anchor: str, child_zones: list[Name]
) -> None:
    manifest = {
        "fingerprint": spec.fingerprint(),
        "now": now,
        "trust_anchor": anchor,
        "children": spec.children,
    }
    (zones_dir / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")


def load_or_build(spec: TestbedSpec, now: float, zones_dir: Path) -> Hierarchy:
    """Reuse DIR/zones if it was built from the same spec recently enough; else sign."""
    try:
        manifest = json.loads((zones_dir / MANIFEST).read_text())
    except (OSError, ValueError):
        manifest = {}
    rsa_used = spec.algorithm == 8 or any(a == 8 for _, a in spec.algorithms)
    fresh = (
        manifest.get("fingerprint") == spec.fingerprint()
        and 0 <= now - float(manifest.get("now", 0)) <= REUSE_WINDOW
        and not rsa_used  # RSA keys are not derivable, so their zones are re-signed
    )
    if not fresh:
        return build_hierarchy(spec, now, zones_dir)
    built_at = float(manifest["now"])
    zones: dict[Name, ZoneData] = {}
    child_zones = [child_name(i) for i in range(spec.children)]
    fault_names: dict[str, str] = {}
    for label in FAULT_ZONES:
        origin = dns.name.from_text(f"{label}.de.")
        child_zones.append(origin)
        fault_names[origin.to_text()] = f"anything.{origin}" if label == "wild" else f"www.{origin}"
    kinds = {"de.": ZoneKind.NSEC3}
    addrs = {".": spec.addresses.root, "de.": spec.addresses.de, "com.": spec.addresses.com}
    for text in (".", "de.", "com."):
        origin = dns.name.from_text(text)
        records = records_from_text(zone_path(zones_dir, origin).read_text(), origin)
        zones[origin] = ZoneData(
            origin, kinds.get(text, ZoneKind.NSEC), records, addrs[text], spec.algorithm_for(origin)
        )
    hierarchy = Hierarchy(
        spec, built_at, manifest["trust_anchor"], zones, child_zones, zones_dir, fault_names
    )
    for label in FAULT_ZONES:
        origin = dns.name.from_text(f"{label}.de.")
        z = hierarchy.zone(origin)
        if z is not None:
            zones[origin] = z
    return hierarchy


def nsec3_hash_bytes(name: Name, salt: bytes, iterations: int) -> bytes:
    return base64.b32hexdecode(dns.dnssec.nsec3_hash(name, salt, iterations, 1))
