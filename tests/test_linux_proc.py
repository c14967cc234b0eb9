"""gcircus.linux's /proc readers on real processes: the stat parser agrees with psutil's own, even for a command name
made of spaces and parentheses, and the running check tells a zombie or a reused pid from the process it remembers.
"""
from __future__ import annotations

import os
import signal

import psutil
import pytest
from gevent import subprocess as gsubprocess

from gcircus import linux
from tests.support.waiting import wait_for

TRICKY_NAME = "x) (y z) )"  # the kernel's command name is the executable's base name (up to 15 bytes)


@pytest.fixture
def busy(tmp_path):
    """A shell busy loop started through a link named TRICKY_NAME, killed and reaped after the test."""
    link = tmp_path / TRICKY_NAME
    os.symlink("/bin/sh", link)
    proc = gsubprocess.Popen([str(link), "-c", "while :; do :; done"])
    wait_for(lambda: psutil.Process(proc.pid).name() == TRICKY_NAME, message="the exec of the busy loop")
    yield proc
    proc.kill()
    proc.wait()


def test_stat_fields_match_psutil_with_parentheses_in_the_command_name(busy):
    ps = psutil.Process(busy.pid)
    ticks = os.sysconf("SC_CLK_TCK")
    wait_for(lambda: ps.cpu_times().user >= 0.05, 60, message="the busy loop using CPU")
    os.setpriority(os.PRIO_PROCESS, busy.pid, 7)
    busy.send_signal(signal.SIGSTOP)  # its CPU times stop moving: both readers must see the same ones
    wait_for(lambda: ps.status() == psutil.STATUS_STOPPED, message="the loop stopped")
    stat, times = linux.read_stat(busy.pid), ps.cpu_times()
    assert stat.state == "T"
    assert stat.nice == ps.nice() == 7
    assert stat.utime == round(times.user * ticks) > 0
    assert stat.stime == round(times.system * ticks)
    assert psutil.boot_time() + stat.start_time / ticks == pytest.approx(ps.create_time(), abs=0.01)
    busy.send_signal(signal.SIGCONT)
    wait_for(lambda: linux.read_stat(busy.pid).state != "T", message="the loop running again")


def test_is_running_is_false_for_another_start_time_and_once_the_process_exited(busy):
    started = linux.read_stat(busy.pid).start_time
    assert linux.is_running(busy.pid) and linux.is_running(busy.pid, started)
    assert not linux.is_running(busy.pid, started + 1)  # what a reused pid looks like
    busy.kill()
    wait_for(lambda: not linux.is_running(busy.pid), message="the loop seen as exited (zombie or reaped)")
    with pytest.raises((FileNotFoundError, ProcessLookupError)):
        busy.wait()
        linux.read_stat(busy.pid)
