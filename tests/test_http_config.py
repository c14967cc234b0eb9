"""[http]: off without the section, on with it or with Circus's httpd; the loopback rule of the control channel, TLS
and a token off loopback, an owner-only token file. Every mistake is a configuration error naming file, section and
option, found when the file is loaded (nothing starts)."""
import pytest

from gcircus.config import load_config
from gcircus.daemon import Arbiter
from gcircus.errors import ConfigError
from tests.support.daemons import write_config
from tests.support.http import write_token

WATCHER = "[watcher:web]\ncmd = sleep 1000\n"


def load(tmp_path, circus: str = "", http: str | None = None) -> Arbiter:
    section = f"[http]\n{http}\n" if http is not None else ""
    path = write_config(tmp_path / "circus.ini", f"[circus]\n{circus}\n{section}{WATCHER}")
    return Arbiter.load_from_config(path)


def refused(tmp_path, circus: str = "", http: str | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, circus, http)
    return caught.value


def test_no_section_no_server(tmp_path):
    assert load(tmp_path).http is None


def test_the_defaults_listen_on_loopback_without_a_token(tmp_path):
    http = load(tmp_path, http="max_connections = 8").http
    assert http["bind"] == "127.0.0.1:9102" and http["token_file"] is None and http["max_connections"] == 8


def test_an_empty_section_is_ignored_as_every_empty_section(tmp_path):
    assert load(tmp_path, http="").http is None


def test_circus_httpd_options_turn_it_on(tmp_path):
    assert load(tmp_path, "httpd = true\nhttpd_host = 127.0.0.1\nhttpd_port = 8123").http["bind"] == "127.0.0.1:8123"
    assert load(tmp_path, "httpd = false\nhttpd_port = 8123").http is None


def test_a_section_wins_over_httpd(tmp_path):
    assert load(tmp_path, "httpd = true\nhttpd_port = 8123", "bind = unix:/tmp/x.sock").http["bind"] == \
        "unix:/tmp/x.sock"


@pytest.mark.parametrize("bind", ["9102", "127.0.0.1:", "127.0.0.1:99999", "unix:"])
def test_a_bad_bind_names_the_option(tmp_path, bind):
    error = refused(tmp_path, http=f"bind = {bind}")
    assert (error.section, error.option, error.value) == ("http", "bind", bind)
    assert str(error).startswith(f"{tmp_path / 'circus.ini'}: [http] bind = ")


def test_token_role_is_read_operate_or_define(tmp_path):
    assert load(tmp_path, http="max_connections = 8").http["token_role"] == "define"  # everything, by default
    assert load(tmp_path, http="token_role = Operate").http["token_role"] == "operate"
    for role in ("none", "admin"):  # none would refuse every command: not a role for the API
        error = refused(tmp_path, http=f"token_role = {role}")
        assert (error.section, error.option, error.value) == ("http", "token_role", role)


def test_an_unknown_option_is_refused_with_its_closest_name(tmp_path):
    error = refused(tmp_path, http="token_fil = x")
    assert error.suggestion == "token_file"


def test_a_remote_bind_needs_the_opt_in(tmp_path):
    error = refused(tmp_path, http="bind = 0.0.0.0:9102")
    assert (error.section, error.option) == ("http", "bind")
    assert "allow_remote_endpoints = true" in error.reason


def test_the_probe_listener_may_listen_anywhere_without_the_opt_in(tmp_path):
    """It serves /healthz and /readyz alone (tests/test_kubernetes_manifest.py checks that on a real gcircusd)."""
    assert load(tmp_path, http="probe_bind = 0.0.0.0:9103").http["probe_bind"] == "0.0.0.0:9103"
    error = refused(tmp_path, http="probe_bind = 0.0.0.0")
    assert (error.section, error.option) == ("http", "probe_bind")


def test_a_remote_bind_needs_tls_and_a_token_too(tmp_path):
    error = refused(tmp_path, http="bind = 0.0.0.0:9102\nallow_remote_endpoints = true")
    assert "token_file and certfile" in error.reason
    token = write_token(tmp_path)
    error = refused(tmp_path, http=f"bind = 0.0.0.0:9102\nallow_remote_endpoints = true\ntoken_file = {token}")
    assert "needs certfile" in error.reason


def test_a_remote_httpd_host_names_the_circus_option(tmp_path):
    error = refused(tmp_path, "httpd = true\nhttpd_host = 0.0.0.0\nhttpd_port = 8123")
    assert (error.section, error.option) == ("circus", "httpd_host")


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660])
def test_a_token_file_others_may_read_is_refused(tmp_path, mode):
    token = write_token(tmp_path, mode=mode)
    error = refused(tmp_path, http=f"token_file = {token}")
    assert (error.section, error.option) == ("http", "token_file")
    assert "chmod 600" in error.reason


def test_a_missing_or_empty_token_file_is_refused(tmp_path):
    assert "cannot read" in refused(tmp_path, http=f"token_file = {tmp_path / 'none'}").reason
    empty = tmp_path / "empty"
    empty.write_text("\n")
    empty.chmod(0o600)
    assert "empty" in refused(tmp_path, http=f"token_file = {empty}").reason


def test_keyfile_without_certfile_is_refused(tmp_path):
    error = refused(tmp_path, http=f"keyfile = {tmp_path / 'key.pem'}")
    assert error.option == "keyfile"


def test_the_section_is_a_known_kind(tmp_path):
    path = write_config(tmp_path / "circus.ini", f"[HTTP]\nbind = 127.0.0.1:1\n{WATCHER}")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "[http]" in str(caught.value)
