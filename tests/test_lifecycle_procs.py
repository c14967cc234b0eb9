"""`procs NAME` with a real gcircusd and real children: a row per process (pid, wid, state, age, restarts, last exit,
detail) as JSON and as gcircusctl's table, in the shell too; an unknown watcher is the usual error."""
from __future__ import annotations

import json
import os
import signal

from gevent import subprocess as gsubprocess

from gcircus.cli.gcircusctl import main as gcircusctl
from tests.support.gcircusctl import GCIRCUSCTL, ctl_env
from tests.support.waiting import wait_for

HEADER = ["PID", "WID", "STATE", "AGE", "RESTARTS", "LAST EXIT", "DETAIL"]


def ctl(capsys, running, *argv: str) -> tuple[int, str, str]:
    code = gcircusctl(["--endpoint", running.endpoint, *argv])
    out, err = capsys.readouterr()
    return code, out, err


def procs(running) -> dict:
    reply = running.call("procs", name="sleeper")
    assert reply["status"] == "ok", reply
    return reply


def by_wid(reply: dict) -> dict[int, dict]:
    return {row["wid"]: row for row in reply["processes"]}


def test_each_process_has_its_row(running):
    reply = procs(running)
    assert reply["watcher"] == {"name": "sleeper", "state": "active", "reason": "", "numprocesses": 2, "ready": 2,
                                "depends_on": [], "backoffs": 0, "max_backoffs": 5, "retry_at": None,
                                "spawn_failures": 0}
    rows = reply["processes"]
    assert sorted(row["pid"] for row in rows) == sorted(running.pids())
    assert [row["wid"] for row in rows] == [1, 2]
    for row in rows:
        assert set(row) == {"pid", "wid", "state", "age", "started", "restarts", "last_exit", "ready_at", "detail",
                            "status"}
        assert (row["state"], row["restarts"], row["last_exit"], row["detail"], row["status"]) == \
            ("ready", 0, None, "", "")
        assert row["age"] >= 0 and row["started"] <= row["ready_at"]


def test_a_killed_process_shows_in_its_replacement_row(running, capsys):
    before = by_wid(procs(running))
    os.kill(before[1]["pid"], signal.SIGKILL)
    wait_for(lambda: (lambda rows: rows[1]["pid"] != before[1]["pid"] and rows[1]["state"] == "ready")(
        by_wid(procs(running))), message="wid 1 replaced")
    after = by_wid(procs(running))
    assert after[1]["restarts"] == 1
    assert {k: after[1]["last_exit"][k] for k in ("pid", "code", "description")} == \
        {"pid": before[1]["pid"], "code": -signal.SIGKILL, "description": "signal SIGKILL"}
    assert after[2] == {**before[2], "age": after[2]["age"]}  # the other process is untouched
    # gcircusctl's table: the watcher's line, the header, a row per process, each column aligned on its header.
    code, out, err = ctl(capsys, running, "procs", "sleeper")
    assert (code, err) == (0, "")
    line, header, *rows = out.splitlines()
    assert line == "sleeper: active, ready 2/2"
    assert header.split() == ["PID", "WID", "STATE", "AGE", "RESTARTS", "LAST", "EXIT", "DETAIL"]
    starts = [header.index(name) for name in HEADER]
    cells = [[row[start:end].strip() for start, end in zip(starts, [*starts[1:], None])] for row in rows]
    assert cells[0][:3] == [str(after[1]["pid"]), "1", "ready"] and cells[0][4:] == ["1", "signal SIGKILL", "-"]
    assert cells[1][:3] == [str(after[2]["pid"]), "2", "ready"] and cells[1][4:] == ["0", "-", "-"]
    assert all(cell[3].endswith(("s", "m", "h", "d")) for cell in cells), cells


def test_json_prints_the_raw_reply(running, capsys):
    code, out, _ = ctl(capsys, running, "procs", "sleeper", "--json")
    reply = json.loads(out)
    assert code == 0 and reply["status"] == "ok" and len(reply["processes"]) == 2
    assert reply["watcher"]["state"] == "active"


def test_an_unknown_watcher_is_the_usual_error(running, capsys):
    reply = running.call("procs", name="nope")
    assert (reply["status"], reply["errno"], reply["reason"]) == ("error", 3, "program nope not found")
    assert ctl(capsys, running, "procs", "nope") == (3, "", "error: program nope not found\n")
    code, out, err = ctl(capsys, running, "procs")
    assert (code, out) == (2, "") and err.endswith("usage: procs NAME\n")


def test_the_shell_has_procs(running, tmp_path):
    result = gsubprocess.run(GCIRCUSCTL + ["-c", running.config], input="procs sleeper\n", stdout=gsubprocess.PIPE,
                             stderr=gsubprocess.PIPE, text=True, timeout=15, env=ctl_env(HOME=str(tmp_path)))
    assert result.returncode == 0, result.stderr
    assert "sleeper: active, ready 2/2\nPID " in result.stdout
