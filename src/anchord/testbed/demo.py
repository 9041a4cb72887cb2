"""`anchord demo`: the testbed, a real `anchord serve`, and a sample of questions.

It prints one row per question (name, rcode, AD, EDE) for good names and for each
named fault, asks each twice (the second answer comes from cache and must say the
same), and exits non-zero when an answer is not what the testbed's fault predicts.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import click
import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode

from anchord.testbed.command import Testbed, TestbedError
from anchord.testbed.zones import TestbedSpec


@dataclass(frozen=True)
class Expect:
    name: str
    rcode: str
    ad: bool
    ede: int | None = None
    note: str = ""


def expectations(children: int) -> list[Expect]:
    sample = sorted({0, 1, children // 2, children - 1, 7 if children > 7 else 0})
    rows = [Expect(f"www.c{i}.de.", "NOERROR", True, note="signed child")
            for i in sample]
    rows += [
        Expect("www.hoster.com.", "NOERROR", True, note="signed, under com"),
        Expect("anything.wild.de.", "NOERROR", True, note="wildcard answer"),
        Expect("www.alias.de.", "NOERROR", True, note="CNAME into another zone"),
        Expect("nosuchname.c1.de.", "NXDOMAIN", True, note="proven by NSEC"),
        Expect("www.unsigned.de.", "NOERROR", False, note="no DS: insecure"),
        Expect("www.optout.de.", "NOERROR", False, note="NSEC3 opt-out: insecure"),
        Expect("www.bogus.de.", "SERVFAIL", False, 6, note="RRSIG does not verify"),
        Expect("www.expired.de.", "SERVFAIL", False, 7, note="signatures expired"),
        Expect("www.notyet.de.", "SERVFAIL", False, 8, note="signatures not yet valid"),
        Expect("www.nokey.de.", "SERVFAIL", False, 9, note="no DNSKEY matches the DS"),
    ]
    return rows


def ask(name: str, port: int) -> tuple[str, bool, list[tuple[int, str]]]:
    q = dns.message.make_query(name, "A", want_dnssec=True, use_edns=0, payload=1232)
    r = dns.query.udp(q, "127.0.0.1", port=port, timeout=5)
    edes = [(int(o.code), o.text or "") for o in r.options
            if isinstance(o, dns.edns.EDEOption)]
    return dns.rcode.to_text(r.rcode()), bool(r.flags & dns.flags.AD), edes


def _fail(message: str) -> NoReturn:
    # Prefixed with the command, as `anchord testbed` and `anchord rpl` say theirs,
    # not click's bare "Error:".
    click.echo(f"anchord demo: {message}", err=True)
    sys.exit(1)


def _wait_for_resolver(port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            _fail("anchord serve exited at start-up (see its log above)")
        try:
            ask("www.c0.de.", port)
            return
        except (dns.exception.Timeout, OSError):
            time.sleep(0.2)
    _fail("anchord serve did not answer in time")


@click.command("demo")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
              default=Path("out/demo"), show_default=True, help="Where the testbed's files go.")
@click.option("--children", type=click.IntRange(8, 1_000_000), default=1000, show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), default=5300, show_default=True,
              help="Port of the testbed's authoritative servers.")
@click.option("--resolver-port", type=click.IntRange(1, 65535), default=5354,
              show_default=True)
def demo(directory: Path, children: int, port: int, resolver_port: int) -> None:
    """Serve the signed testbed, start `anchord serve` on it, ask a sample, print a table."""
    t0 = time.monotonic()
    click.echo(f"signing and serving the testbed ({children} children under de) in {directory}")
    try:
        tb = Testbed(TestbedSpec(children=children), directory, now=time.time(), port=port,
                     resolver_port=resolver_port, control_port=resolver_port + 1)
        tb.start()
    except TestbedError as e:
        _fail(str(e))
    if tb.config_note:
        click.echo(tb.config_note)
    click.echo(f"testbed ready in {time.monotonic() - t0:.1f} s; starting anchord serve "
               f"(control API on 127.0.0.1:{resolver_port + 1})")
    proc = subprocess.Popen([sys.executable, "-m", "anchord", "serve", "-c",
                             str(tb.resolver_config)])
    failures = 0
    try:
        _wait_for_resolver(resolver_port, proc, 30)
        header = f"{'name':22} {'rcode':9} {'AD':3} {'cached':7} {'EDE':4} text / note"
        click.echo("\n" + header + "\n" + "-" * len(header))
        for exp in expectations(children):
            for attempt in ("fresh", "cached"):
                rcode, ad, edes = ask(exp.name, resolver_port)
                code = edes[0][0] if edes else None
                ok = rcode == exp.rcode and ad == exp.ad and (exp.ede is None or code == exp.ede)
                failures += not ok
                text = edes[0][1] if edes else exp.note
                click.echo(f"{exp.name:22} {rcode:9} {'ad' if ad else '-':3} "
                           f"{attempt:7} {code if code is not None else '-':<4} {text}"
                           + ("" if ok else f"   <-- expected {exp.rcode}"
                              f"{' ad' if exp.ad else ''} EDE {exp.ede}"))
        click.echo(f"\n{'all answers as expected' if not failures else f'{failures} unexpected'}"
                   f" ({time.monotonic() - t0:.1f} s)")
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        tb.stop()
    if failures:
        sys.exit(1)
