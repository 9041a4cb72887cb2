"""`anchord serve` as a process: start-up lines, clean shutdown, one-line errors."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import dns.message
import dns.query
import pytest

CLI = [sys.executable, "-c", "from anchord.cli import main; main()", "serve"]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(tmp_path: Path, text: str = "") -> Path:
    p = tmp_path / "anchord.toml"
    # Stub the root to a closed loopback port: start-up must not need the Internet.
    p.write_text(text or '[upstream]\nstub_zones = { "." = ["127.0.0.1:9"] }\n'
                 'timeout = 0.1\nattempts = 1\n\n[control]\nenabled = false\n')
    return p


def _one_line_status_1(r: subprocess.CompletedProcess[str], *words: str) -> None:
    assert r.returncode == 1, r.stderr
    assert r.stderr.startswith("anchord: ") and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    for word in words:
        assert word in r.stderr, r.stderr


def test_config_error_is_one_line_exit_1(tmp_path: Path) -> None:
    cfg = _config(tmp_path, "[server]\nworkers = 0\n")
    r = subprocess.run([*CLI, "-c", str(cfg)], capture_output=True, text=True, timeout=30)
    _one_line_status_1(r, f"anchord: {cfg}: ", "server.workers")


def test_missing_file_and_directory_are_one_line_exit_1(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    r = subprocess.run([*CLI, "-c", str(missing)], capture_output=True, text=True, timeout=30)
    _one_line_status_1(r, f"anchord: {missing}: cannot read", "No such file")
    r = subprocess.run([*CLI, "-c", str(tmp_path)], capture_output=True, text=True, timeout=30)
    _one_line_status_1(r, f"anchord: {tmp_path}: cannot read", "Is a directory")


def test_no_trust_anchor_with_validation_on_is_refused(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    cfg.write_text(cfg.read_text() + "\n[dnssec]\ntrust_anchors = []\n")
    r = subprocess.run([*CLI, "-c", str(cfg)], capture_output=True, text=True, timeout=30)
    _one_line_status_1(r, f"anchord: {cfg}: ", "dnssec.trust_anchors",
                       "dnssec.enabled = false")


def test_unusable_trust_anchors_are_named_in_one_warning(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    # GOST digest (3) and a DSA key (3): RFC 8624 says neither is to be validated.
    anchors = ['. IN DS 20326 8 3 E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237'
               'C7F8EC8D', '. IN DNSKEY 257 3 3 AQPJ////4Q==']
    cfg.write_text(cfg.read_text() + "\n[dnssec]\ntrust_anchors = [" +
                   ", ".join(f'"{a}"' for a in anchors) + "]\n")
    first = _first_log_line(cfg)
    assert "no trust anchor uses an algorithm" in first, first
    assert "20326 8 3" in first and "DNSKEY 257 3 3" in first


def _first_log_line(cfg: Path, *extra: str, lines: int = 1) -> str:
    """The first `lines` lines `anchord serve -c cfg` logs; then it is stopped."""
    args = extra or ("--listen", f"127.0.0.1:{_free_port()}")
    proc = subprocess.Popen([*CLI, "-c", str(cfg), *args], stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        return "".join(proc.stderr.readline() for _ in range(lines))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=15)


def test_bad_listen_option_is_a_config_error(tmp_path: Path) -> None:
    r = subprocess.run([*CLI, "-c", str(_config(tmp_path)), "--listen", "nowhere:53"],
                       capture_output=True, text=True, timeout=30)
    _one_line_status_1(r, "--listen")


@pytest.mark.parametrize(("listen", "said"), [
    (["127.0.0.1:0"], "'--listen[0]': bad address '127.0.0.1:0': port 0 would let"),
    (["127.0.0.1:5399", "127.0.0.1:5399"], "'--listen[1]': '127.0.0.1:5399' is listed twice"),
    (["0.0.0.0:5399", "127.0.0.1:5399"], "'--listen[1]': '127.0.0.1:5399' overlaps"),
])
def test_listen_option_follows_the_server_listen_rules(tmp_path: Path, listen: list[str],
                                                       said: str) -> None:
    args = [a for item in listen for a in ("--listen", item)]
    r = subprocess.run([*CLI, "-c", str(_config(tmp_path)), *args],
                       capture_output=True, text=True, timeout=30)
    _one_line_status_1(r, said)


def test_listen_option_is_judged_against_control_listen_in_place_of_the_file(
        tmp_path: Path) -> None:
    """--listen stands in for server.listen before the checks: it may not take the
    control API's port, and the file's own server.listen no longer counts."""
    base = _config(tmp_path).read_text().replace("enabled = false",
                                                  'listen = "127.0.0.1:5397"')
    cfg = tmp_path / "anchord.toml"
    cfg.write_text(base)
    r = subprocess.run([*CLI, "-c", str(cfg), "--listen", "127.0.0.1:5397"],
                       capture_output=True, text=True, timeout=30)
    _one_line_status_1(r, "key 'control.listen': '127.0.0.1:5397' takes the port of "
                          "--listen[0]")
    # The file's server.listen clashes with control.listen; --listen replaces it.
    cfg.write_text('[server]\nlisten = ["127.0.0.1:5397"]\n' + base)
    first = _first_log_line(cfg, "--listen", f"127.0.0.1:{_free_port()}", lines=2)
    assert "control API on http://127.0.0.1:5397" in first, first


def test_port_in_use_is_one_line_exit_1(tmp_path: Path) -> None:
    holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # no SO_REUSEPORT
    holder.bind(("127.0.0.1", 0))
    port = holder.getsockname()[1]
    try:
        r = subprocess.run([*CLI, "-c", str(_config(tmp_path)), "--listen",
                            f"127.0.0.1:{port}"], capture_output=True, text=True, timeout=30)
    finally:
        holder.close()
    assert r.returncode == 1, r.stderr
    assert "address already in use" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("kind", [socket.SOCK_DGRAM, socket.SOCK_STREAM])
def test_port_held_with_reuseport_is_refused(tmp_path: Path, workers: int, kind: int) -> None:
    # What a first anchord with workers > 1 holds: a socket with SO_REUSEPORT. A second
    # instance must not join it (it would take half of the clients), whatever its workers.
    holder = socket.socket(socket.AF_INET, kind)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    holder.bind(("127.0.0.1", _free_port()))
    if kind == socket.SOCK_STREAM:
        holder.listen(1)
    port = holder.getsockname()[1]
    cfg = _config(tmp_path)
    cfg.write_text(cfg.read_text() + f"\n[server]\nworkers = {workers}\n")
    try:
        r = subprocess.run([*CLI, "-c", str(cfg), "--listen", f"127.0.0.1:{port}"],
                           capture_output=True, text=True, timeout=30)
    finally:
        holder.close()
    assert r.returncode == 1, r.stderr
    assert r.stderr.strip() == (f"anchord: cannot listen on 127.0.0.1:{port}: address "
                                "already in use (another resolver running?)")


@pytest.mark.parametrize("control", [False, True])
def test_second_instance_on_the_same_address_is_refused(tmp_path: Path, control: bool) -> None:
    port = _free_port()
    # With the control API on, the same config means the same API port too: the error
    # must still name the DNS address, checked before the control plane starts.
    text = ('[upstream]\nstub_zones = { "." = ["127.0.0.1:9"] }\ntimeout = 0.1\n'
            f'attempts = 1\n\n[control]\nlisten = "127.0.0.1:{_free_port()}"\n') \
        if control else ""
    config = _config(tmp_path, text)
    first = subprocess.Popen([*CLI, "-c", str(config), "--listen",
                              f"127.0.0.1:{port}"], stderr=subprocess.PIPE, text=True)
    try:
        assert first.stderr is not None
        while "listening on" not in first.stderr.readline():
            assert first.poll() is None
        r = subprocess.run([*CLI, "-c", str(config), "--listen",
                            f"127.0.0.1:{port}"], capture_output=True, text=True, timeout=30)
        assert r.returncode == 1 and f"127.0.0.1:{port}: address already in use" in r.stderr
        assert first.poll() is None
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=15)


def test_serve_logs_listeners_answers_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = _free_port()
    proc = subprocess.Popen([*CLI, "-c", str(_config(tmp_path)), "--listen",
                             f"127.0.0.1:{port}"], stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        deadline = time.monotonic() + 20
        assert proc.stderr is not None
        while len(lines) < 2 and time.monotonic() < deadline:
            lines.append(proc.stderr.readline())
        assert any(f"listening on udp 127.0.0.1:{port}" in x for x in lines), lines
        assert any(f"listening on tcp 127.0.0.1:{port}" in x for x in lines), lines
        # The root is unreachable: the answer is a SERVFAIL that says so.
        r = dns.query.udp(dns.message.make_query("example.", "A", use_edns=0), "127.0.0.1",
                          port=port, timeout=10)
        assert r.rcode() in (0, 2, 3)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
        assert proc.returncode == 0, err
        assert "Traceback" not in err and "shutting down" in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_sighup_is_logged_and_serving_goes_on(tmp_path: Path) -> None:
    port = _free_port()
    proc = subprocess.Popen([*CLI, "-c", str(_config(tmp_path)), "--listen",
                             f"127.0.0.1:{port}"], stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        while "listening on tcp" not in proc.stderr.readline():
            assert proc.poll() is None
        proc.send_signal(signal.SIGHUP)
        line = proc.stderr.readline()
        assert line.startswith("anchord: SIGHUP: ") and "not supported" in line, line
        assert proc.poll() is None
        r = dns.query.udp(dns.message.make_query("example.", "A", use_edns=0), "127.0.0.1",
                          port=port, timeout=10)
        assert r.rcode() in (0, 2, 3)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=15)
        assert proc.returncode == 0 and "shutting down" in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_an_empty_access_control_list_is_warned_about(tmp_path: Path) -> None:
    """Allowed (a resolver held back on purpose), but every client would be refused."""
    cfg = _config(tmp_path)
    cfg.write_text("[server]\naccess_control = []\n" + cfg.read_text())
    first = _first_log_line(cfg)
    assert "server.access_control is empty: every client is refused" in first, first


def test_an_unbracketed_ipv6_address_with_what_looks_like_a_port_gets_a_hint(
        tmp_path: Path) -> None:
    """Unbound and Knot write ::1@5354; here "::1:5354" is the address ::1:5354 on port
    53, which this host does not have."""
    r = subprocess.run([*CLI, "-c", str(_config(tmp_path)), "--listen", "::1:5354"],
                       capture_output=True, text=True, timeout=30)
    _one_line_status_1(r, "cannot listen on ::1:5354", "is written [::1]:5354")
