"""gcircusctl's interactive shell: piped sessions, a terminal session (prompt, readline completion, history) and the
completion methods themselves."""
from __future__ import annotations

import errno
import io
import os
import pty

from gevent import subprocess as gsubprocess

from gcircus.cli.ctlshell import ControlShell
from gcircus.cli.session import Session
from gcircus.control.commands import COMMANDS
from tests.support.gcircusctl import GCIRCUSCTL, ctl_env
from tests.support.ports import free_port
from tests.support.waiting import wait_for


def shell_session(config: str, script: str, **env: str) -> gsubprocess.CompletedProcess:
    return gsubprocess.run(GCIRCUSCTL + ["-c", config], input=script, stdout=gsubprocess.PIPE,
                           stderr=gsubprocess.PIPE, text=True, timeout=15, env=ctl_env(**env))


def test_piped_session_runs_each_command_and_ends_cleanly_at_eof(running, tmp_path):
    pids = ",".join(map(str, running.pids()))
    result = shell_session(running.config, "list\nLIST sleeper\n\nstatus nope\nbogus arg\nstop sleeper --waiting\n"
                           "status\n", HOME=str(tmp_path))
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[0].startswith("gcircusctl ") and running.endpoint in lines[0]
    assert lines[1:] == ["sleeper: active", "sleeper", pids, "ok", "sleeper: stopped"]
    assert result.stderr.splitlines() == ["error: program nope not found",
                                          "*** unknown command 'bogus'; `help` lists them"]
    assert not (tmp_path / ".gcircusctl_history").exists()  # no terminal, no history


def test_help_in_the_shell(running, tmp_path):
    result = shell_session(running.config, "help\nhelp stop\n? list\nhelp nope\n", HOME=str(tmp_path))
    assert result.returncode == 0
    overview = result.stdout.split("Commands:\n")[1]
    assert {line.split()[0] for line in overview.splitlines() if line.startswith("  ")} >= set(COMMANDS) | {"exit"}
    assert COMMANDS["stop"].summary in result.stdout and "--waiting" in result.stdout
    assert COMMANDS["list"].summary in result.stdout
    assert "unknown command 'nope'" in result.stderr


def test_shell_without_a_daemon_says_so_and_still_runs(tmp_path):
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    result = gsubprocess.run(GCIRCUSCTL + ["--endpoint", endpoint], input="help list\nexit\nlist\n", text=True,
                             stdout=gsubprocess.PIPE, stderr=gsubprocess.PIPE, timeout=15, env=ctl_env())
    assert result.returncode == 0
    assert f"nothing is listening at {endpoint}" in result.stderr
    assert COMMANDS["list"].summary in result.stdout
    assert result.stderr.count("nothing is listening") == 1  # `exit` left before the last `list`


# -- completion -----------------------------------------------------------------------------------------------------

def make_shell(endpoint: str) -> ControlShell:
    return ControlShell(Session(endpoint=endpoint, timeout=2), stdin=io.StringIO(), stdout=io.StringIO())


def test_command_names_complete_from_the_command_table():
    shell = make_shell(f"tcp://127.0.0.1:{free_port()}")
    assert shell.completenames("st") == sorted(n + " " for n in COMMANDS if n.startswith("st"))
    assert shell.completenames("li") == ["list ", "listen ", "listsockets "]
    assert shell.completenames("ex") == ["exit "]
    assert shell.complete_help("sto", "help sto", 5, 8) == ["stop "]


def test_arguments_complete_watcher_names_and_the_command_flags(running):
    shell = make_shell(running.endpoint)
    try:
        assert shell.completedefault("sl", "status sl", 7, 9) == ["sleeper "]
        assert shell.completedefault("", "STOP ", 5, 5) == ["sleeper "]
        assert shell.completedefault("x", "stop x", 5, 6) == []
        assert shell.completedefault("--w", "stop sleeper --w", 13, 16) == ["--waiting ", "--with-dependents "]
        assert shell.completedefault("--", "reload --", 7, 9) == [f"--{f.name} " for f in COMMANDS["reload"].flags]
        assert shell.completedefault("sl", "bogus sl", 6, 8) == []
        assert shell.completedefault("sl", "listen sl", 7, 9) == []
    finally:
        shell.session.close()


def test_watcher_names_are_cached_briefly_and_absent_daemons_complete_nothing(running):
    shell = make_shell(running.endpoint)
    try:
        assert shell.watcher_names() == ["sleeper"]
        running.call("quit", waiting=True)
        running.daemon.wait(timeout=10)
        assert shell.watcher_names() == ["sleeper"]  # within the cache window: no call
        shell._watchers_at -= 60
        assert shell.watcher_names() == []
    finally:
        shell.session.close()


# -- a real terminal ------------------------------------------------------------------------------------------------

class Terminal:
    """gcircusctl on a pseudo-terminal, read without blocking the hub."""

    def __init__(self, argv: list[str], env: dict):
        master, slave = pty.openpty()
        self.proc = gsubprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True)
        os.close(slave)
        os.set_blocking(master, False)
        self.master = master
        self.output = b""

    def read(self) -> bytes:
        try:
            self.output += os.read(self.master, 65536)
        except BlockingIOError:
            pass
        except OSError as exc:  # EIO once the child has closed the terminal
            if exc.errno != errno.EIO:
                raise
        return self.output

    def expect(self, text: str, after: int = 0) -> int:
        """Wait until `text` shows up past offset `after`; return the offset just past it."""
        data = text.encode()
        wait_for(lambda: data in self.read()[after:], timeout=10, message=f"{text!r} on the terminal")
        return self.output.index(data, after) + len(data)

    def send(self, text: str) -> None:
        os.write(self.master, text.encode())

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        os.close(self.master)


def test_terminal_session_with_prompt_tab_completion_and_history(running, tmp_path):
    env = ctl_env(HOME=str(tmp_path), TERM="dumb")
    terminal = Terminal(GCIRCUSCTL + ["-c", running.config], env)
    try:
        at = terminal.expect("sleeper: active")
        at = terminal.expect("(gcircusctl) ", at)
        terminal.send("statu\tsl\t\n")  # completes to `status sleeper `
        at = terminal.expect("status sleeper", at)
        at = terminal.expect("active", at)
        at = terminal.expect("(gcircusctl) ", at)
        terminal.send("\x04")  # Ctrl-D
        assert terminal.proc.wait(timeout=10) == 0
    finally:
        terminal.close()
    history = (tmp_path / ".gcircusctl_history").read_text()
    assert "status sleeper" in history


def test_unwritable_history_is_skipped(running, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / ".gcircusctl_history").mkdir()  # cannot be read or written as a file
    terminal = Terminal(GCIRCUSCTL + ["-c", running.config], ctl_env(HOME=str(home), TERM="dumb"))
    try:
        at = terminal.expect("(gcircusctl) ")
        terminal.send("list\n")
        terminal.expect("sleeper", at)
        terminal.send("exit\n")
        assert terminal.proc.wait(timeout=10) == 0
        assert b"Traceback" not in terminal.read()
    finally:
        terminal.close()
