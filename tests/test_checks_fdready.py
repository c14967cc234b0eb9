"""fd:N readiness with real children: the child finds the pipe at descriptor N (and only when asked), a newline on
it means ready, and EOF, a timeout or closing the pipe mean not ready; nothing of it leaks into gcircusd."""
from __future__ import annotations

import errno
import os
import socket
import sys

import gevent
import pytest

from gcircus.checks.fdready import wait_fd_ready
from gcircus.process import Process, SpawnError
from tests.support.processes import running_own_program
from tests.support.waiting import wait_for

PYTHON = sys.executable


@pytest.fixture
def spawn():
    """`spawn(cmd, **options)` starts a Process; every one is stopped at the end."""
    processes = []

    def start(cmd: str, **options) -> Process:
        process = Process("ready", 1, cmd, **options)
        processes.append(process)
        return process

    yield start
    for process in processes:
        process.stop(graceful_timeout=5)


def python(code: str) -> str:
    return f"{PYTHON} -c \"{code}\""


def descriptors(pid: int) -> dict[int, str]:
    """The child's descriptors once it runs its own program: between fork and exec it still holds gcircusd's."""
    wait_for(lambda: running_own_program(pid), message=f"pid {pid} exec'd")
    path = f"/proc/{pid}/fd"
    return {int(fd): os.readlink(f"{path}/{fd}") for fd in os.listdir(path)}


def test_newline_on_fd_means_ready(spawn):
    process = spawn(python("import os, time; os.write(3, b'starting '); os.write(3, b'done\\n'); time.sleep(100)"),
                    ready_fd=3)
    outcome = wait_fd_ready(process.ready_pipe, 10, child_fd=3)
    assert (outcome.ok, outcome.detail) == (True, "fd 3 got a newline")


def test_shell_printf_to_fd(spawn):
    process = spawn("printf '\\n' >&5; exec sleep 100", shell=True, ready_fd=5)
    assert wait_fd_ready(process.ready_pipe, 10, child_fd=5).ok


def test_closed_before_a_newline_is_not_ready(spawn):
    process = spawn(python("import os, time; os.write(3, b'no newline'); os.close(3); time.sleep(100)"), ready_fd=3)
    outcome = wait_fd_ready(process.ready_pipe, 10, child_fd=3)
    assert (outcome.ok, outcome.detail) == (False, "fd 3 closed before a newline")
    exited = spawn("true", ready_fd=3)
    assert wait_fd_ready(exited.ready_pipe, 10, child_fd=3) == outcome


def test_timeout(spawn):
    process = spawn("sleep 100", ready_fd=3)
    outcome = wait_fd_ready(process.ready_pipe, 0.2, child_fd=3)
    assert (outcome.ok, outcome.detail) == (False, "no newline on fd 3 within 0.2s")


def test_closing_the_pipe_wakes_the_waiter(spawn):
    process = spawn("sleep 100", ready_fd=3)
    waiter = gevent.spawn(wait_fd_ready, process.ready_pipe, None, child_fd=3)
    gevent.sleep(0)  # the waiter is now waiting on the pipe
    process.close_pipes()
    assert waiter.get(timeout=10) == wait_fd_ready(process.ready_pipe, 1, child_fd=3)
    assert not waiter.value.ok


def test_the_child_has_fd_n_only_when_asked(spawn):
    plain = spawn("sleep 100")
    assert sorted(descriptors(plain.pid)) == [0, 1, 2]
    assert plain.ready_pipe is None
    asked = spawn("sleep 100", ready_fd=7)
    fds = descriptors(asked.pid)
    assert sorted(fds) == [0, 1, 2, 7] and fds[7].startswith("pipe:")
    assert fds[7] == f"pipe:[{os.fstat(asked.ready_pipe.fileno()).st_ino}]"  # the other end of our pipe


def test_gcircusd_keeps_no_descriptor_of_the_child(spawn):
    unused = 200
    with pytest.raises(OSError):
        os.fstat(unused)
    process = spawn("sleep 100", ready_fd=unused)
    with pytest.raises(OSError) as info:  # held on /dev/null during the spawn only
        os.fstat(unused)
    assert info.value.errno == errno.EBADF
    process.stop(graceful_timeout=5)
    assert process.ready_pipe.closed


def test_descriptor_set_before_a_lower_fd_limit(spawn):
    process = spawn(python("import os, time; os.write(20, b'\\n'); time.sleep(100)"), ready_fd=20,
                    rlimits={"nofile": 10})
    assert wait_fd_ready(process.ready_pipe, 10, child_fd=20).ok


def test_descriptor_of_an_inherited_socket_is_refused(spawn):
    with socket.socket() as sock:
        fd = sock.fileno()
        with pytest.raises(SpawnError) as info:
            spawn("sleep 100", ready_fd=fd, use_fds=True, sockets={"web": fd})
    assert str(info.value) == f"ready = fd:{fd}: descriptor {fd} is also an inherited socket's"
