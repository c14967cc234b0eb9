"""The Circus ini dialect, [env] handling, expansion and include/include_dir."""

from __future__ import annotations

import logging
import os
import textwrap

import pytest

from gcircus.config import load_config
from gcircus.errors import ConfigError
from gcircus.expand import expand_circus_vars, expand_env_value


@pytest.fixture
def write(tmp_path):
    def write(text: str, name: str = "circus.ini") -> str:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
        return str(path)
    return write


def only(config):
    assert len(config.watchers) == 1
    return config.watchers[0]


# --------------------------------------------------------------------------- dialect

def test_comments_and_separators(write):
    w = only(load_config(write("""\
        # hash comment
        ; semicolon comment
        rem a rem comment
        REM another
        [watcher:a]
        cmd: run ; this is a comment
        args = a;b
        hash.inline = x # not a comment
        remote = kept
    """)))
    assert w["cmd"] == "run"
    assert w["args"] == "a;b"
    assert w["options"] == {"hash.inline": "x # not a comment", "remote": "kept"}


def test_continuation_lines_joined_with_newline(write):
    w = only(load_config(write("[watcher:a]\ncmd = run\nargs = one\n   two\n\n\tthree\nnumprocesses = 2\n")))
    assert w["args"] == "one\ntwo\nthree"
    assert w["numprocesses"] == 2


def test_double_quotes_mean_empty_and_quotes_are_kept_otherwise(write):
    w = only(load_config(write("""\
        [watcher:a]
        cmd = echo "hello world" 'x'
        args = ""
        quoted.value = "abc"
        triple.value = '''abc'''
    """)))
    assert w["cmd"] == "echo \"hello world\" 'x'"
    assert w["args"] == ""
    assert w["options"] == {"quoted.value": '"abc"', "triple.value": "'''abc'''"}


def test_percent_brackets_commas_and_equals_are_literal(write):
    w = only(load_config(write("""\
        [watcher:a]
        cmd = date +%Y-%m-%d %(x)s
        args = a, b, c
        eq.value = k=v=w
        br.value = [[x]]
    """)))
    assert w["cmd"] == "date +%Y-%m-%d %(x)s"
    assert w["args"] == "a, b, c"
    assert w["options"] == {"eq.value": "k=v=w", "br.value": "[[x]]"}


def test_first_definition_wins_within_a_file(write):
    w = only(load_config(write("""\
        [watcher:a]
        cmd = first
          continued
        cmd = second
          also ignored
        [watcher:a]
        cmd = third
        numprocesses = 4
    """)))
    assert w["cmd"] == "first\ncontinued"
    assert w["numprocesses"] == 4


def test_empty_sections_are_skipped(write):
    config = load_config(write("[watcher:empty]\n[socket:none]\n[watcher:a]\ncmd = x\n"))
    assert [w["name"] for w in config.watchers] == ["a"]
    assert config.sockets == []


def test_an_unrelated_section_is_a_warning(write, caplog):
    # A section close to a kind gcircus reads ([watchers:a], [Watcher:b]) is an error: tests/test_issue9_messages.py
    with caplog.at_level(logging.WARNING, logger="gcircus.config"):
        config = load_config(write("[myapp:a]\ncmd = x\n[tool]\ncmd = y\n"))
    assert config.watchers == []
    assert "ignoring unknown section [myapp:a]" in caplog.text
    assert "ignoring unknown section [tool]" in caplog.text


def test_default_section_reaches_every_section_without_name_leak(write):
    config = load_config(write("""\
        [DEFAULT]
        shared = yes
        [env]
        A = 1
        [watcher:a]
        cmd = x
        shared = no
        [watcher:b]
        cmd = y
    """))
    a, b = config.watchers
    assert a["options"] == {"shared": "no"}
    assert b["options"] == {"shared": "yes"}
    assert config.env == {"A": "1", "shared": "yes"}
    for w in config.watchers:
        assert "__name__" not in w["env"] and "__name__" not in w["options"]


def test_option_before_section_is_an_error(write):
    path = write("cmd = x\n[watcher:a]\ncmd = y\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.file == path and info.value.line == 1
    assert "outside of any [section]" in str(info.value)


def test_line_without_separator_is_an_error(write):
    path = write("[watcher:a]\ncmd = x\nthis line is junk\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.line == 3 and info.value.section == "watcher:a"
    assert "junk" in str(info.value)


def test_missing_file_is_an_error(tmp_path):
    path = str(tmp_path / "nope.ini")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.file == path and "does not exist" in str(info.value)


def test_non_utf8_file_is_an_error(tmp_path):
    path = tmp_path / "bad.ini"
    path.write_bytes(b"[watcher:a]\ncmd = \xff\xfe\n")
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(str(path))


def test_config_path_is_absolute(write, monkeypatch, tmp_path):
    write("[watcher:a]\ncmd = x\n")
    monkeypatch.chdir(tmp_path)
    assert load_config("circus.ini").path == str(tmp_path / "circus.ini")


# --------------------------------------------------------------------------- env

def test_env_sections_in_order_later_wins(write, monkeypatch):
    monkeypatch.setenv("GC_HOME", "/home/gc")
    config = load_config(write("""\
        [env]
        Path = /bin
        BASE = $GC_HOME/base
        DERIVED = $BASE/sub
        MISSING = [$GC_NOT_SET_ANYWHERE]
        lower = $gc_home
        [watcher:web]
        cmd = x
        [watcher:worker]
        cmd = y
        [env:w*]
        LEVEL = 1
        [env:web, other]
        LEVEL = 2
        EXTRA = $LEVEL
    """))
    assert config.env == {"Path": "/bin", "BASE": "/home/gc/base", "DERIVED": "/home/gc/base/sub",
                          "MISSING": "[]", "lower": "$gc_home"}
    web = next(w for w in config.watchers if w["name"] == "web")
    worker = next(w for w in config.watchers if w["name"] == "worker")
    assert web["env"] == {**config.env, "LEVEL": "2", "EXTRA": "2"}
    assert worker["env"] == {**config.env, "LEVEL": "1"}


def test_env_patterns_are_case_sensitive(write):
    config = load_config(write("[watcher:Web]\ncmd = x\n[env:web]\nA = 1\n"))
    assert only(config)["env"] == {}


def test_circus_env_expansion_everywhere(write, monkeypatch):
    monkeypatch.setenv("GC_PORT", "8123")
    config = load_config(write("""\
        [circus]
        endpoint = tcp://127.0.0.1:$(circus.env.gc_port)
        [env]
        DIR = /srv
        [socket:s]
        port = $(circus.env.GC_PORT)
        [plugin:p]
        use = mypkg.Plugin
        where = ((circus.env.dir))
        [watcher:a]
        cmd = run --dir $(circus.env.DIR) --wid $(circus.wid) --fd $(circus.sockets.s) $(circus.env.NOPE)
        working_dir = $(CIRCUS.ENV.dir)/app
        numprocesses = $(circus.env.N)
        stdout_stream.filename = $(circus.env.DIR)/$(circus.env.WHO).log
        free.form = $(circus.env.WHO)
        [env:a]
        N = 3
        WHO = me
    """))
    assert config.circus["endpoint"] == "tcp://127.0.0.1:8123"
    assert config.sockets[0]["port"] == 8123
    assert config.plugins[0]["config"] == {"where": "/srv"}
    w = only(config)
    assert w["cmd"] == "run --dir /srv --wid $(circus.wid) --fd $(circus.sockets.s) $(circus.env.NOPE)"
    assert w["working_dir"] == "/srv/app"
    assert w["numprocesses"] == 3
    assert w["stdout_stream"] == {"filename": "/srv/me.log"}
    assert w["options"] == {"free.form": "me"}


# --------------------------------------------------------------------------- include

def test_include_and_include_dir(write, tmp_path, caplog):
    main = write("""\
        [circus]
        include = extra/*.ini nomatch*.ini
        include_dir = conf.d
        [watcher:a]
        cmd = main
        numprocesses = 2
    """)
    write("[watcher:a]\nnumprocesses = 7\ngraceful_timeout = 3\n[watcher:b]\ncmd = from-extra\n",
          "extra/one.ini")
    write("[circus]\ninclude = ../never/*.ini\n[watcher:c]\ncmd = from-dir\n", "conf.d/c.ini")
    write("[watcher:d]\ncmd = not-ini\n", "conf.d/d.txt")
    with caplog.at_level(logging.WARNING, logger="gcircus.config"):
        config = load_config(main)
    assert [w["name"] for w in config.watchers] == ["a", "b", "c"]
    a = config.watchers[0]
    assert (a["cmd"], a["numprocesses"], a["graceful_timeout"]) == ("main", 2, 3.0)
    assert "'nomatch*.ini' does not lead to any config" in caplog.text


def test_includes_of_included_files_are_not_followed(write):
    main = write("[circus]\ninclude = one.ini\n[watcher:a]\ncmd = x\n")
    write("[circus]\ninclude = two.ini\n[watcher:b]\ncmd = y\n", "one.ini")
    write("[watcher:c]\ncmd = z\n", "two.ini")
    assert [w["name"] for w in load_config(main).watchers] == ["a", "b"]


def test_error_in_included_file_names_that_file(write):
    main = write("[circus]\ninclude = inc.ini\n[watcher:a]\ncmd = x\n")
    inc = write("[watcher:a]\nnumprocesses = lots\n", "inc.ini")
    with pytest.raises(ConfigError) as info:
        load_config(main)
    assert info.value.file == inc and info.value.line == 2
    assert str(info.value) == f"{inc}: [watcher:a] numprocesses = 'lots': expected an integer"


# --------------------------------------------------------------------------- expand.py

def test_expand_circus_vars_forms():
    mapping = {"wid": 3, "env": {"Home": "/h"}, "sockets": {"Web": 5}}
    assert expand_circus_vars("$(circus.wid) ((circus.WID)) $(CIRCUS.env.HOME)", mapping) == "3 3 /h"
    assert expand_circus_vars("$(circus.sockets.web) $(circus.unknown-x.y)", mapping) == \
        "5 $(circus.unknown-x.y)"
    assert expand_circus_vars("no placeholders", mapping) == "no placeholders"


def test_expand_env_value_rules():
    environ = {"A": "1", "B_2": "two"}
    assert expand_env_value("$A-$B_2-$C-$a", environ) == "1-two--$a"
    assert expand_env_value("plain", environ) == "plain"


def test_os_environ_untouched_by_loading(write):
    before = dict(os.environ)
    load_config(write("[env]\nGC_SHOULD_NOT_LEAK = 1\n[watcher:a]\ncmd = x\n"))
    assert dict(os.environ) == before
