"""Configuration files are capped in size, and every error or warning quotes a value cut short.

Before, a 512 MiB include took gigabytes of memory to parse and produced a 2 GiB error message; a multi-MiB
section name also cost minutes of CPU in the "did you mean" ranking.
"""
from __future__ import annotations

import logging

import pytest

from gcircus.client import Client
from gcircus.config import MAX_CONFIG_FILE_SIZE, MAX_CONFIG_TOTAL_SIZE, load_config
from gcircus.errors import QUOTED_VALUE_LIMIT, ConfigError
from tests.support.control import answers
from tests.support.waiting import wait_for

# An error line: the fixed text plus the quoted value cut at QUOTED_VALUE_LIMIT characters.
SHORT = 4 * QUOTED_VALUE_LIMIT + 500


def _main(tmp_path, extra: str = "") -> str:
    path = tmp_path / "circus.ini"
    path.write_text(f"[circus]\nendpoint = ipc://{tmp_path}/ctl\npubsub_endpoint = ipc://{tmp_path}/pub\n{extra}"
                    "[watcher:a]\ncmd = sleep 300\ngraceful_timeout = 5\n")
    return str(path)


def _padding(size: int) -> str:
    return "# " + "x" * (size - 3) + "\n"


def test_a_config_file_over_the_limit_is_refused_naming_it(tmp_path, daemon_factory):
    path = _main(tmp_path)
    with open(path, "a") as f:
        f.write(_padding(MAX_CONFIG_FILE_SIZE))
    daemon = daemon_factory(path)
    assert daemon.wait() == 2
    out = daemon.output()
    assert f"{path}: the configuration file is larger than {MAX_CONFIG_FILE_SIZE} bytes" in out
    assert len(out) < SHORT


def test_an_include_over_the_limit_is_refused_naming_it(tmp_path, daemon_factory):
    include = tmp_path / "big.ini"
    include.write_text("[watcher:b]\ncmd = sleep 300\n" + _padding(MAX_CONFIG_FILE_SIZE))
    daemon = daemon_factory(_main(tmp_path, "include = big.ini\n"))
    assert daemon.wait() == 2
    out = daemon.output()
    assert f"{include}: the configuration file is larger than" in out
    assert len(out) < SHORT


def test_includes_together_over_the_total_limit_are_refused(tmp_path):
    count = MAX_CONFIG_TOTAL_SIZE // (MAX_CONFIG_FILE_SIZE - 4096) + 1
    for i in range(count):
        (tmp_path / f"part{i}.ini").write_text(f"[watcher:p{i}]\ncmd = sleep 300\n"
                                               + _padding(MAX_CONFIG_FILE_SIZE - 4096))
    with pytest.raises(ConfigError) as error:
        load_config(_main(tmp_path, "include = part*.ini\n"))
    assert "together are larger than" in str(error.value)
    assert len(str(error.value)) < SHORT


@pytest.mark.parametrize("line", [
    "numprocesses = " + "9x" * 300_000,  # a bad value
    "y" * 600_000,  # a line that is no option
])
def test_errors_quote_a_huge_value_cut_short(tmp_path, line):
    path = tmp_path / "circus.ini"
    path.write_text(f"[circus]\nendpoint = ipc://{tmp_path}/ctl\n[watcher:a]\ncmd = sleep 300\n{line}\n")
    with pytest.raises(ConfigError) as error:
        load_config(str(path))
    message = str(error.value)
    assert len(message) < SHORT and "characters)" in message


def test_warnings_about_a_huge_section_or_key_are_short(tmp_path, caplog):
    path = tmp_path / "circus.ini"
    path.write_text(f"[circus]\nendpoint = ipc://{tmp_path}/ctl\n[watcher:a]\ncmd = sleep 300\n"
                    f"{'k.' * 300_000} = 1\n[{'s' * 600_000}]\nfoo = 1\n")
    with caplog.at_level(logging.WARNING, logger="gcircus.config"):
        load_config(str(path))
    messages = [record.getMessage() for record in caplog.records]
    assert any("unknown section" in m for m in messages)
    assert all(len(m) < SHORT for m in messages), [len(m) for m in messages]


def test_a_set_error_quotes_a_huge_value_cut_short(tmp_path, daemon_factory):
    daemon_factory(_main(tmp_path))
    client = Client(f"ipc://{tmp_path}/ctl", timeout=30)
    try:
        wait_for(lambda: answers(client), timeout=30, message="gcircusd answering")
        reply = client.call("set", name="a", options={"numprocesses": "x" * 500_000})
        assert reply["status"] == "error"
        assert len(reply["reason"]) < SHORT and "characters)" in reply["reason"]
    finally:
        client.close()


