"""load_config's one-line errors and the trust-anchor checks (control/config.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from anchord.control.config import (
    ROOT_TRUST_ANCHORS,
    Config,
    ConfigError,
    load_config,
    unusable_trust_anchors,
)


def _load(tmp_path: Path, text: str) -> Config:
    p = tmp_path / "a.toml"
    p.write_text(text)
    return load_config(p)




def test_list_type_error_reads_well(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, "[server]\nlisten = [1]\n")
    assert "expected a string" in str(e.value)
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, '[server]\nlisten = "127.0.0.1:53"\n')
    assert "expected a list of strings," in str(e.value)


def test_unreadable_file_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "a.toml"
    p.write_text("")
    p.chmod(0)
    if os.geteuid() == 0:  # root (as in CI) reads any file: make the read fail as it would
        def denied(self: Path) -> bytes:
            raise PermissionError(13, "Permission denied", str(self))

        monkeypatch.setattr(Path, "read_bytes", denied)
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert str(e.value) == f"{p}: cannot read: Permission denied"


def test_folder_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path)
    assert str(e.value) == f"{tmp_path}: cannot read: Is a directory"


def test_empty_anchors_need_validation_off(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, "[dnssec]\ntrust_anchors = []\n")
    text = str(e.value)
    assert text.startswith(f"{tmp_path / 'a.toml'}: key 'dnssec.trust_anchors'")
    assert "dnssec.enabled = false" in text and "\n" not in text
    cfg = _load(tmp_path, "[dnssec]\nenabled = false\ntrust_anchors = []\n")
    assert cfg.dnssec.trust_anchors == []


def test_unusable_anchors_are_listed_only_when_none_is_usable(tmp_path: Path) -> None:
    gost = ". IN DS 20326 8 3 E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D"
    dsa = ". IN DNSKEY 257 3 3 AQPJ////4Q=="
    cfg = load_config(None)
    assert unusable_trust_anchors(cfg) == []
    cfg.dnssec.trust_anchors = [gost, dsa]
    assert unusable_trust_anchors(cfg) == [gost, dsa]
    cfg.dnssec.algorithm_policy = "all"  # DSA is validated then
    assert unusable_trust_anchors(cfg) == []
    cfg.dnssec.algorithm_policy = "rfc8624"
    cfg.dnssec.trust_anchors = [gost, ROOT_TRUST_ANCHORS[0]]
    assert unusable_trust_anchors(cfg) == []
    cfg.dnssec.enabled = False
    cfg.dnssec.trust_anchors = [gost]
    assert unusable_trust_anchors(cfg) == []


@pytest.mark.parametrize("table,key,value,words", [
    ("server", "tcp_idle_timeout", "0", "out of range"),
    ("server", "tcp_idle_timeout", "nan", "out of range"),
    ("server", "max_tcp_clients", "0", "out of range"),
    ("server", "listen", "[]", "listen nowhere"),
    ("upstream", "max_referrals", "-1", "out of range"),
    ("upstream", "max_upstream_queries", "0", "out of range"),
    ("upstream", "max_cname_chain", "-1", "out of range"),
    ("dnssec", "override_time", "-1", "out of range"),
    ("dnssec", "max_key_tag_collisions", "0", "out of range"),
    ("dnssec", "clock_skew", "-5", "out of range"),
    ("dnssec", "insecure_zones", '["."]', "dnssec.enabled = false"),
    ("cache", "max_negative_ttl", "-1", "out of range"),
    ("serve_stale", "failure_recheck", "-1", "out of range"),
    ("nta", "recheck_interval", "0", "out of range"),
])
def test_values_that_would_answer_nothing_stop_start_up(
        tmp_path: Path, table: str, key: str, value: str, words: str) -> None:
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, f"[{table}]\n{key} = {value}\n")
    text = str(e.value)
    assert f"'{table}.{key}" in text and words in text and "\n" not in text


def test_the_file_read_is_remembered_absolute(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The dashboard shows it in its commands (`-c FILE`), run from any folder."""
    (tmp_path / "anchord.toml").write_text("")
    monkeypatch.chdir(tmp_path)
    assert load_config("anchord.toml").source_file == str(tmp_path / "anchord.toml")
    assert load_config(None).source_file == ""


def test_a_utf8_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    """Windows editors (Notepad, PowerShell's Out-File) start UTF-8 files with a BOM;
    tomllib calls it an 'Invalid statement (at line 1, column 1)', which names nothing
    the operator can see. It carries no content, so it is dropped before parsing."""
    p = tmp_path / "a.toml"
    p.write_bytes(b"\xef\xbb\xbf[cache]\nmax_ttl = 600\n")
    assert load_config(p).cache.max_ttl == 600
    p.write_bytes(b"\xef\xbb\xbf[cache]\nmaxttl = 600\n")
    with pytest.raises(ConfigError, match="unknown key 'cache.maxttl'"):
        load_config(p)
    # Only a leading BOM is a BOM; elsewhere U+FEFF is a character TOML does not allow.
    p.write_bytes(b"[cache]\n\xef\xbb\xbfmax_ttl = 600\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(p)


@pytest.mark.parametrize("key", ["stub_zones", "forward_zones", "root_hints"])
def test_a_bad_name_in_a_server_table_is_one_line(tmp_path: Path, key: str) -> None:
    """The iterator turns these names into dns.name.Name at start: a name dnspython
    rejects was a traceback there (EmptyLabel), not a config error."""
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, f'[upstream]\n{key} = {{ "a..b" = ["192.0.2.1"] }}\n')
    assert str(e.value) == (f"{tmp_path / 'a.toml'}: key 'upstream.{key}.\"a..b\"': "
                            "zone 'a..b' is not a domain name: A DNS label is empty.")


@pytest.mark.parametrize("toml,words", [
    ('[upstream]\nforward_zones = { "*.de" = ["192.0.2.1"] }\n',
     "key 'upstream.forward_zones.\"*.de\"': zone '*.de' has a wildcard label '*'"),
    ('[upstream]\nstub_zones = { "de\\u0001" = ["192.0.2.1"] }\n',
     "key 'upstream.stub_zones.\"de\\u0001\"': zone 'de\\x01' is not a domain name (it "
     "contains the non-printable character U+0001)"),
    ('[upstream]\nforward_zones = { "de." = ["1.2.3.4:0"] }\n',
     "key 'upstream.forward_zones.\"de.\"[0]': bad address '1.2.3.4:0': port 0 is out of "
     "range (1 to 65535)"),
    ('[upstream]\nroot_hints = { "" = ["192.0.2.1"] }\n',
     "key 'upstream.root_hints.\"\"': a root hint needs the root server's name"),
    ('[dnssec]\ninsecure_zones = ["example.", "*.de"]\n',
     "key 'dnssec.insecure_zones[1]': zone '*.de' has a wildcard label '*'"),
    ('[dnssec]\ninsecure_zones = ["de\\u0000"]\n',
     "key 'dnssec.insecure_zones[0]': zone 'de\\x00' is not a domain name (it contains "
     "the non-printable character U+0000)"),
    ('[dnssec]\ninsecure_zones = ["\\\\000.de"]\n',
     "key 'dnssec.insecure_zones[0]': zone '\\\\000.de' is not a domain name (a label "
     "holds the byte 0x00, a control character or a space)"),
    ('[failure_cache]\nmin_ttl = 10\nmax_ttl = 1\n',
     "key 'failure_cache.min_ttl': larger than failure_cache.max_ttl"),
], ids=["wildcard-forward", "control-stub", "port-0", "empty-root-hint", "wildcard-insecure",
        "nul-insecure", "escaped-nul-insecure", "failure-ttls"])
def test_zones_are_held_to_the_nta_apis_rules_and_cross_keys_checked(
        tmp_path: Path, toml: str, words: str) -> None:
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, toml)
    assert str(e.value).startswith(f"{tmp_path / 'a.toml'}: {words}"), str(e.value)
    assert "\n" not in str(e.value)


def test_a_server_table_entry_needs_good_addresses(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, '[upstream]\nstub_zones = { "example." = ["192.0.2.1", "x"] }\n')
    assert "key 'upstream.stub_zones.\"example.\"[1]': bad address 'x'" in str(e.value)
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, '[upstream]\nforward_zones = { "example." = [] }\n')
    assert "key 'upstream.forward_zones.\"example.\"': no address" in str(e.value)


def test_type_errors_name_table_entries_as_toml_does(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, '[upstream]\nroot_hints = { "a." = "192.0.2.1" }\n')
    assert str(e.value).endswith(
        "key 'upstream.root_hints.\"a.\"': expected a list of strings, got \"192.0.2.1\"")
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, '[upstream]\nroot_hints = { a = [5] }\n')  # a bare key stays bare
    assert str(e.value).endswith("key 'upstream.root_hints.a[0]': expected a string, got 5")


@pytest.mark.parametrize("toml,shown", [
    ("1979-05-27T07:32:00", "the date-time 1979-05-27T07:32:00"),
    ("1979-05-27T07:32:00Z", "the date-time 1979-05-27T07:32:00+00:00"),
    ("1979-05-27", "the date 1979-05-27"),
    ("07:32:00", "the time 07:32:00"),
    ("[1979-05-27]", "[1979-05-27]"),
    ('"53"', '"53"'),
])
def test_a_wrong_type_shows_the_value_as_toml_not_python(
        tmp_path: Path, toml: str, shown: str) -> None:
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, f"[upstream]\nport = {toml}\n")
    assert str(e.value).endswith(f"key 'upstream.port': expected an integer, got {shown}")


def test_do_not_query_takes_addresses_and_networks_only(tmp_path: Path) -> None:
    cfg = _load(tmp_path, '[upstream]\ndo_not_query = ["192.0.2.1", "127.0.0.0/8", "::1/128"]\n')
    assert cfg.upstream.do_not_query == ["192.0.2.1", "127.0.0.0/8", "::1/128"]
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, '[upstream]\ndo_not_query = ["192.0.2.1", "999.9.9.9"]\n')
    assert str(e.value).endswith("key 'upstream.do_not_query[1]': '999.9.9.9' is not an "
                                 "address or a network like 127.0.0.0/8")


@pytest.mark.parametrize("listen,words", [
    ('["127.0.0.1:x"]', "port 'x' is not a number"),
    ('["[::1]:"]', "port '' is not a number"),
    ('["127.0.0.1:5\u00b2"]', "is not a number"),
    ('["127.0.0.1:70000"]', "port 70000 is out of range (1 to 65535)"),
    ('["127.0.0.1:-1"]', "port -1 is out of range (1 to 65535)"),
])
def test_a_bad_port_is_named_as_a_port(tmp_path: Path, listen: str, words: str) -> None:
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, f"[server]\nlisten = {listen}\n")
    assert "key 'server.listen[0]'" in str(e.value) and words in str(e.value)
    assert "invalid literal" not in str(e.value)


@pytest.mark.parametrize("listen,second", [
    ('["127.0.0.1:5378", "127.0.0.1:5378"]', "'127.0.0.1:5378'"),
    ('["127.0.0.1", "::1", "127.0.0.1:53"]', "'127.0.0.1:53'"),
    ('["::1", "[0::1]:53"]', "'[0::1]:53'"),
])
def test_a_listen_address_given_twice_is_named(tmp_path: Path, listen: str,
                                               second: str) -> None:
    """It failed at start-up as 'address already in use (another resolver running?)'."""
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, f"[server]\nlisten = {listen}\n")
    assert str(e.value).endswith("is listed twice (also server.listen[0])")
    assert second in str(e.value)


@pytest.mark.parametrize("toml,key,address", [
    ('[server]\nlisten = ["127.0.0.1:5378", "[::1]:0"]\n', "server.listen[1]", "[::1]:0"),
    ('[server]\nlisten = ["127.0.0.1:0", "127.0.0.1:0"]\n', "server.listen[0]",
     "127.0.0.1:0"),
    ('[control]\nlisten = "127.0.0.1:0"\n', "control.listen", "127.0.0.1:0"),
], ids=["server-v6", "server-twice", "control"])
def test_a_listen_address_on_port_0_is_refused(tmp_path: Path, toml: str, key: str,
                                              address: str) -> None:
    """The kernel would pick a free port at each start, and nobody is told which. Tests
    still listen on port 0: they set it on the Config object, not in a file."""
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, toml)
    assert str(e.value) == (f"{tmp_path / 'a.toml'}: key '{key}': bad address {address!r}: "
                            "port 0 would let the kernel pick a port clients cannot know")


def test_listen_addresses_on_real_ports_still_load(tmp_path: Path) -> None:
    cfg = _load(tmp_path, '[server]\nlisten = ["127.0.0.1:5378", "[::1]:5378", "127.0.0.2"]\n'
                          '[control]\nlisten = "127.0.0.1:1"\n')
    assert cfg.server.listen == ["127.0.0.1:5378", "[::1]:5378", "127.0.0.2"]
    assert cfg.control.listen == "127.0.0.1:1"


@pytest.mark.parametrize("listen", ['["0.0.0.0:5379", "127.0.0.77:5379"]',
                                    '["[::1]:5379", "[::]:5379"]'])
def test_a_wildcard_listen_address_overlapping_another_is_named(tmp_path: Path,
                                                               listen: str) -> None:
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, f"[server]\nlisten = {listen}\n")
    assert "key 'server.listen[1]'" in str(e.value) and "overlaps server.listen[0]" in str(e.value)


def test_a_wildcard_and_a_specific_address_on_other_ports_or_families_are_fine(
        tmp_path: Path) -> None:
    cfg = _load(tmp_path, '[server]\nlisten = ["0.0.0.0:5379", "127.0.0.77:5380", '
                          '"[::1]:5379"]\n')
    assert len(cfg.server.listen) == 3


@pytest.mark.parametrize("toml,words", [
    ('[upstream]\nstub_zones = { "Example.com" = ["192.0.2.1"], '
     '"example.com." = ["192.0.2.2"] }\n',
     "key 'upstream.stub_zones.\"example.com.\"': 'example.com.' is listed twice (also "
     "upstream.stub_zones.\"Example.com\"; names are compared ignoring case and a final "
     "dot)"),
    ('[upstream]\nforward_zones = { "de" = ["192.0.2.1"], "DE." = ["192.0.2.2"] }\n',
     "key 'upstream.forward_zones.\"DE.\"': 'DE.' is listed twice (also "
     "upstream.forward_zones.de; names are compared ignoring case and a final dot)"),
    ('[upstream]\nroot_hints = { "a.root-servers.net." = ["192.0.2.1"], '
     '"A.ROOT-SERVERS.NET." = ["192.0.2.2"] }\n',
     "key 'upstream.root_hints.\"A.ROOT-SERVERS.NET.\"': 'A.ROOT-SERVERS.NET.' is listed "
     "twice (also upstream.root_hints.\"a.root-servers.net.\"; names are compared ignoring "
     "case and a final dot)"),
    ('[dnssec]\ninsecure_zones = ["Example.com", "test.", "example.com."]\n',
     "key 'dnssec.insecure_zones[2]': 'example.com.' is listed twice (also "
     "dnssec.insecure_zones[0], 'Example.com'; names are compared ignoring case and a "
     "final dot)"),
    # Exactly alike: TOML itself refuses a table key given twice, not a list entry.
    ('[dnssec]\ninsecure_zones = ["test.", "test."]\n',
     "key 'dnssec.insecure_zones[1]': 'test.' is listed twice (also "
     "dnssec.insecure_zones[0], 'test.'; names are compared ignoring case and a final "
     "dot)"),
], ids=["stub-case", "forward-dot-and-case", "root-hint-case", "insecure-case",
        "insecure-exact"])
def test_a_name_listed_twice_is_named_with_both_keys(tmp_path: Path, toml: str,
                                                    words: str) -> None:
    """The second was silently taken: a stub or forward zone's later entry replaced the
    earlier one's servers (Iterator: one delegation per name)."""
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, toml)
    assert str(e.value) == f"{tmp_path / 'a.toml'}: {words}"


def test_an_exact_duplicate_table_key_stays_a_toml_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        _load(tmp_path, '[upstream]\nstub_zones = { "de." = ["192.0.2.1"], '
                        '"de." = ["192.0.2.2"] }\n')


def test_distinct_names_in_each_list_still_load(tmp_path: Path) -> None:
    cfg = _load(tmp_path, '[upstream]\nstub_zones = { "example.com." = ["192.0.2.1"], '
                          '"sub.example.com." = ["192.0.2.2"] }\n'
                          'forward_zones = { "example.net" = ["192.0.2.3"], '
                          '"example.org" = ["192.0.2.4"] }\n'
                          '[dnssec]\ninsecure_zones = ["example.com.", "test.", "Test.de"]\n')
    assert list(cfg.upstream.stub_zones) == ["example.com.", "sub.example.com."]
    assert list(cfg.upstream.forward_zones) == ["example.net", "example.org"]
    assert cfg.dnssec.insecure_zones == ["example.com.", "test.", "Test.de"]


@pytest.mark.parametrize("stub,forward", [("de.", "de."), ("Example.COM", "example.com.")])
def test_a_zone_both_stub_and_forward_is_named_in_both_places(tmp_path: Path, stub: str,
                                                             forward: str) -> None:
    """The iterator kept one delegation per zone: the forward entry silently replaced the
    stub one."""
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, f'[upstream]\nstub_zones = {{ "{stub}" = ["192.0.2.1"] }}\n'
                        f'forward_zones = {{ "{forward}" = ["192.0.2.2"] }}\n')
    zone = forward if forward.endswith(".") else forward + "."
    assert str(e.value) == (
        f"{tmp_path / 'a.toml'}: key 'upstream.forward_zones.\"{forward}\"': zone {zone!r} "
        f"is also a stub zone (upstream.stub_zones.\"{stub}\"): a zone is asked either "
        "without recursion (stub) or with RD set (forward), not both")


def test_stub_and_forward_zones_above_and_below_each_other_still_load(tmp_path: Path) -> None:
    cfg = _load(tmp_path, '[upstream]\nstub_zones = { "example.com." = ["192.0.2.1"] }\n'
                          'forward_zones = { "sub.example.com." = ["192.0.2.2"], '
                          '"com." = ["192.0.2.3"] }\n')
    assert list(cfg.upstream.stub_zones) == ["example.com."]
    assert list(cfg.upstream.forward_zones) == ["sub.example.com.", "com."]


@pytest.mark.parametrize("server,control,index", [
    ('["127.0.0.1:5380"]', "127.0.0.1:5380", 0),
    ('["[::1]:5380", "0.0.0.0:5380"]', "127.0.0.1:5380", 1),
    ('["127.0.0.1:5380"]', "0.0.0.0:5380", 0),
])
def test_the_control_api_on_a_resolver_port_is_named(tmp_path: Path, server: str,
                                                     control: str, index: int) -> None:
    """Both take TCP on that port: it failed as 'address already in use (another resolver
    running?)', sending the operator after a process that does not exist."""
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, f'[server]\nlisten = {server}\n[control]\nlisten = "{control}"\n')
    assert f"key 'control.listen': '{control}' takes the port of server.listen[{index}]" \
        in str(e.value)


def test_the_control_api_beside_the_resolver_loads(tmp_path: Path) -> None:
    cfg = _load(tmp_path, '[server]\nlisten = ["127.0.0.1:5380", "[::1]:5381"]\n'
                          '[control]\nlisten = "[::1]:5380"\n')
    assert cfg.control.listen == "[::1]:5380"
    # Turned off, its address takes nothing.
    cfg = _load(tmp_path, '[server]\nlisten = ["127.0.0.1:5380"]\n'
                          '[control]\nenabled = false\nlisten = "127.0.0.1:5380"\n')
    assert cfg.control.enabled is False


@pytest.mark.parametrize("toml,key,value,why", [
    ('[nta]\nstate_file = ""\n', "nta.state_file", "''", "is empty"),
    ('[control]\ntoken_file = " "\n', "control.token_file", "' '", "is empty"),
    ('[nta]\nstate_file = "."\n', "nta.state_file", "'.'", "names a folder"),
    ('[nta]\nstate_file = "state/"\n', "nta.state_file", "'state/'", "names a folder"),
])
def test_an_empty_file_path_is_refused(tmp_path: Path, toml: str, key: str, value: str,
                                       why: str) -> None:
    """An empty path is the config file's folder: no NTA could ever be saved."""
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, toml)
    assert str(e.value) == (f"{tmp_path / 'a.toml'}: key '{key}': {value} {why}: it must "
                            "name a file")


def test_an_existing_folder_as_the_state_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, '[nta]\nstate_file = "sub"\n')
    assert "key 'nta.state_file': 'sub' names a folder: it must name a file" in str(e.value)
    assert _load(tmp_path, '[nta]\nstate_file = "sub/ntas.json"\n').nta.state_file


def test_the_token_file_of_a_disabled_control_api_is_not_judged(tmp_path: Path) -> None:
    cfg = _load(tmp_path, '[control]\nenabled = false\ntoken_file = ""\n')
    assert cfg.control.token_file == ""


def test_no_address_family_for_upstream_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, "[upstream]\ndo_ipv4 = false\ndo_ipv6 = false\n")
    assert "key 'upstream.do_ipv4': false, and upstream.do_ipv6 is false too" in str(e.value)
    assert _load(tmp_path, "[upstream]\ndo_ipv6 = false\n").upstream.do_ipv4 is True
