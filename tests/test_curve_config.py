"""CURVE's configuration and key files: what gcircusd refuses (exit 2, naming the option and the file), the key
files `gcircusctl keygen` writes, and the key options of the clients."""
from __future__ import annotations

import os
import stat
import subprocess

import pytest

from gcircus.wire.curve import read_public_key, read_secret_certificate
from tests.support.curve import Keys
from tests.support.gcircusctl import GCIRCUSCTL, ctl_env
from tests.support.ports import free_port
from tests.support.processes import PYTHON


@pytest.fixture
def keys(tmp_path) -> Keys:
    return Keys.make(tmp_path)


def check_config(tmp_path, curve: str) -> subprocess.CompletedProcess:
    config = tmp_path / "circus.ini"
    config.write_text(f"[circus]\nendpoint = tcp://127.0.0.1:{free_port()}\n{curve}\n\n[watcher:w]\ncmd = sleep 1000\n")
    return subprocess.run([PYTHON, "-m", "gcircus.cli.gcircusd", "--check-config", config], capture_output=True,
                          text=True, timeout=60)


def test_a_valid_curve_config_passes(tmp_path, keys):
    result = check_config(tmp_path, f"curve_secret_key = {keys.server_secret}\ncurve_clients = {keys.clients}")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("case", ["missing", "public", "group-readable", "no-clients", "clients-missing",
                                  "clients-a-file", "bad-client-key", "only-clients"])
def test_curve_config_errors_name_the_option_and_the_file(tmp_path, keys, case):
    secret, clients = keys.server_secret, keys.clients
    expected = {"missing": ("curve_secret_key", "no such file"),
                "public": ("curve_secret_key", "a public certificate, not a secret one"),
                "group-readable": ("curve_secret_key", "chmod 600"),
                "no-clients": ("curve_clients is missing", "go together"),
                "clients-missing": ("curve_clients", "no such directory"),
                "clients-a-file": ("curve_clients", "not a directory"),
                "bad-client-key": ("curve_clients", "not a CURVE certificate"),
                "only-clients": ("curve_secret_key is missing", "go together")}[case]
    if case == "missing":
        secret = str(tmp_path / "nope.key_secret")
    elif case == "public":
        secret = keys.server_public
    elif case == "group-readable":
        os.chmod(secret, 0o640)
    elif case == "clients-missing":
        clients = str(tmp_path / "nowhere")
    elif case == "clients-a-file":
        clients = keys.server_public
    elif case == "bad-client-key":
        (tmp_path / "keys" / "clients" / "broken.key").write_text("not a certificate\n")
    lines = {"no-clients": f"curve_secret_key = {secret}", "only-clients": f"curve_clients = {clients}"}.get(
        case, f"curve_secret_key = {secret}\ncurve_clients = {clients}")
    result = check_config(tmp_path, lines)
    assert result.returncode == 2, result.stdout
    for text in expected:
        assert text in result.stderr, result.stderr
    assert "circus.ini" in result.stderr and "[circus]" in result.stderr
    if case in ("missing", "public", "group-readable"):
        assert secret in result.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file: an unreadable key cannot be made for it")
def test_an_unreadable_secret_key_is_refused(tmp_path, keys):
    os.chmod(keys.server_secret, 0)
    result = check_config(tmp_path, f"curve_secret_key = {keys.server_secret}\ncurve_clients = {keys.clients}")
    assert result.returncode == 2 and "permission denied" in result.stderr


def test_keygen_writes_a_pair_with_a_private_secret_file(tmp_path):
    directory = tmp_path / "made" / "here"
    result = subprocess.run([*GCIRCUSCTL, "keygen", "web", "--dir", str(directory)], capture_output=True, text=True,
                            timeout=60, env=ctl_env())
    assert result.returncode == 0, result.stderr
    public, secret = directory / "web.key", directory / "web.key_secret"
    assert str(public) in result.stdout and str(secret) in result.stdout
    assert stat.S_IMODE(os.stat(secret).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(public).st_mode) == 0o644
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    pair = read_secret_certificate(str(secret))
    assert read_public_key(str(public)) == pair.public
    again = subprocess.run([*GCIRCUSCTL, "keygen", "web", "--dir", str(directory)], capture_output=True, text=True,
                           timeout=60, env=ctl_env())
    assert again.returncode == 1 and "already exists" in again.stderr
    assert read_secret_certificate(str(secret)) == pair  # never overwritten


def test_client_key_options_refuse_bad_files_before_connecting(tmp_path, keys):
    def ctl(*args):
        return subprocess.run([*GCIRCUSCTL, "--endpoint", f"tcp://127.0.0.1:{free_port()}", *args], capture_output=True,
                              text=True, timeout=60, env=ctl_env())
    only_one = ctl("--curve-key", keys.secret("alice"), "list")
    assert only_one.returncode == 2 and "--curve-key needs --server-key" in only_one.stderr
    os.chmod(keys.secret("alice"), 0o644)
    shared = ctl(*keys.argv("alice"), "list")
    assert shared.returncode == 2 and "chmod 600" in shared.stderr and keys.secret("alice") in shared.stderr
