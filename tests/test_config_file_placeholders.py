"""$(circus.config_dir) and $(circus.python): gcircus's placeholders for a config's own directory and interpreter.

They let a config name its files and the interpreter gcircusd runs under whatever directory gcircusd starts in and
whatever is on PATH. config_dir is the directory of the file the value is written in, so an included file's value
points next to that file.
"""
from __future__ import annotations

import os
import sys

from gcircus.config import load_config
from gcircus.expand import FILE_PLACEHOLDERS
from tests.support.daemons import write_config


def test_config_dir_is_the_directory_of_the_file_in_every_kind_of_section(tmp_path):
    path = write_config(tmp_path / "app.ini", """
        [circus]
        pidfile = $(circus.config_dir)/run/gcircusd.pid

        [env]
        DATA = $(circus.config_dir)/data

        [socket:s]
        path = $(circus.config_dir)/s.sock

        [watcher:w]
        working_dir = $(CIRCUS.CONFIG_DIR)
        cmd = ((circus.config_dir))/bin/app --worker $(circus.wid)
        stdout_stream.filename = $(circus.config_dir)/log/w.log
        """)
    config = load_config(path)
    here = str(tmp_path)
    assert config.circus["pidfile"] == f"{here}/run/gcircusd.pid"
    assert config.env["DATA"] == f"{here}/data"
    assert config.sockets[0]["path"] == f"{here}/s.sock"
    watcher = config.watchers[0]
    assert watcher["working_dir"] == here
    # Spawn-time placeholders are left for the spawn.
    assert watcher["cmd"] == f"{here}/bin/app --worker $(circus.wid)"
    assert watcher["stdout_stream"]["filename"] == f"{here}/log/w.log"
    assert watcher["env"]["DATA"] == f"{here}/data"


def test_config_dir_of_an_included_file_is_that_files_directory(tmp_path):
    (tmp_path / "conf.d").mkdir()
    write_config(tmp_path / "conf.d" / "extra.ini", """
        [watcher:extra]
        cmd = $(circus.config_dir)/extra.sh
        """)
    path = write_config(tmp_path / "main.ini", """
        [circus]
        include = conf.d/*.ini

        [watcher:main]
        cmd = $(circus.config_dir)/main.sh
        """)
    watchers = {w["name"]: w for w in load_config(path).watchers}
    assert watchers["main"]["cmd"] == f"{tmp_path}/main.sh"
    assert watchers["extra"]["cmd"] == f"{tmp_path}/conf.d/extra.sh"


def test_config_dir_is_absolute_when_the_config_is_named_relatively(tmp_path, monkeypatch):
    (tmp_path / "conf").mkdir()
    write_config(tmp_path / "conf" / "app.ini", """
        [watcher:w]
        cmd = $(circus.config_dir)/run.sh
        """)
    monkeypatch.chdir(tmp_path)
    assert load_config("conf/app.ini").watchers[0]["cmd"] == f"{tmp_path}/conf/run.sh"


def test_python_is_the_interpreter_gcircusd_runs_under(tmp_path):
    path = write_config(tmp_path / "app.ini", """
        [watcher:w]
        cmd = "$(circus.python)" -m http.server
        """)
    assert load_config(path).watchers[0]["cmd"] == f'"{sys.executable}" -m http.server'


def test_each_placeholder_of_the_table_is_documented_in_readme():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    for placeholder in FILE_PLACEHOLDERS:
        assert f"$(circus.{placeholder.name})" in readme
