"""One child process: spawn it with every Circus spawn option, see it exit through SIGCHLD, stop its whole tree.

Spawning uses the C fork/exec path of the stdlib (`subprocess.Popen`, taken from before any monkeypatching), which is
about three times faster than gevent's pure-Python child set-up; the exit is seen through gevent's child watcher,
the same SIGCHLD machinery `gevent.subprocess` relies on. gevent's loop is the one and only reaper: nothing in
gcircus calls `waitpid`, and the stdlib `Popen` object is never asked to wait or poll.
"""
from __future__ import annotations

import errno
import grp
import importlib.util
import logging
import os
import pwd
import resource
import shlex
import signal
import subprocess
import time

import gevent
import gevent.event
from gevent.socket import wait_read
import psutil

from gcircus import linux
from gcircus.expand import expand_circus_vars

log = logging.getLogger(__name__)


def _stdlib_popen():
    """A private copy of the stdlib's Popen, immune to the host app's monkeypatching.

    We want the C fork/exec path (vfork when possible), not gevent's pure-Python child set-up; `patch_all()` disables
    the stdlib module's fork_exec, so we load the stdlib source under another name.
    """
    spec = importlib.util.spec_from_file_location("gcircus._stdlib_subprocess", subprocess.__file__)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Popen


_Popen = _stdlib_popen()

RUNNING, DEAD_OR_ZOMBIE, UNEXISTING, OTHER = 0, 1, 2, 3


class SpawnError(Exception):
    """The child could not be started (command not found, permission denied, unknown user...)."""


def resolve_user(uid: int | str | None, gid: int | str | None) -> tuple[int | None, int | None, str | None]:
    """Turn config uid/gid (names or numbers) into numbers, plus the user name for HOME/USER and initgroups.

    A uid without a gid takes that user's primary group, as Circus does.
    """
    if uid is None and gid is None:
        return None, None, None
    username = None
    num_uid = None
    if uid is not None:
        try:
            entry = pwd.getpwuid(int(uid)) if str(uid).isdigit() else pwd.getpwnam(str(uid))
        except KeyError:
            if str(uid).isdigit():
                return int(uid), _resolve_gid(gid), None
            raise SpawnError(f"unknown user {uid!r}") from None
        num_uid, username = entry.pw_uid, entry.pw_name
        if gid is None:
            return num_uid, entry.pw_gid, username
    return num_uid, _resolve_gid(gid), username


def _resolve_gid(gid: int | str | None) -> int | None:
    if gid is None:
        return None
    if str(gid).isdigit():
        return int(gid)
    try:
        return grp.getgrnam(str(gid)).gr_gid
    except KeyError:
        raise SpawnError(f"unknown group {gid!r}") from None


class ProcessExit:
    """How a child ended: `returncode` as subprocess reports it (negative signal number for a signal death)."""

    __slots__ = ("status", "returncode", "time")

    def __init__(self, status: int):
        self.status = status
        self.returncode = os.waitstatus_to_exitcode(status)
        self.time = time.time()

    @property
    def signaled(self) -> bool:
        return self.returncode < 0


class Process:
    """A child process, spawned on construction unless `spawn=False`.

    Blocking methods (`wait`, `stop`) block only the calling greenlet. `on_exit(process)` is called from the hub once
    the child has been reaped; the caller decides what to do with it.
    """

    def __init__(self, name: str, wid: int, cmd: str, args=None, working_dir: str | None = None,
                 shell: bool = False, uid=None, gid=None, env: dict | None = None, rlimits: dict | None = None,
                 executable: str | None = None, use_fds: bool = False, watcher=None, spawn: bool = True,
                 pipe_stdout: bool = True, pipe_stderr: bool = True, close_child_stdin: bool = True,
                 close_child_stdout: bool = False, close_child_stderr: bool = False, *,
                 shell_args: str | None = None, umask: int | None = None, pdeathsig: int | None = None,
                 stdin_fd: int | None = None, pass_fds: tuple = (), sockets: dict | None = None,
                 stdout=None, stderr=None, format_vars: dict | None = None, on_exit=None):
        self.name = name
        self.wid = wid
        self.cmd = cmd
        self.args = args
        self.working_dir = working_dir or os.getcwd()
        self.shell = shell
        self.shell_args = shell_args
        self.uid = uid
        self.gid = gid
        self.env = env
        self.rlimits = rlimits or {}
        self.executable = executable
        self.use_fds = use_fds
        self.watcher = watcher
        self.pipe_stdout = pipe_stdout
        self.pipe_stderr = pipe_stderr
        self.close_child_stdin = close_child_stdin
        self.close_child_stdout = close_child_stdout
        self.close_child_stderr = close_child_stderr
        self.umask = umask
        self.pdeathsig = pdeathsig
        self.stdin_fd = stdin_fd
        self.pass_fds = tuple(pass_fds)
        self.sockets = sockets or {}
        self.stdout_target = stdout
        self.stderr_target = stderr
        self.format_vars = format_vars or {}
        self.on_exit = on_exit
        self.started: float = 0.0
        self.stopping = False
        self.pid: int = 0
        self.exit: ProcessExit | None = None
        self.stdout = None
        self.stderr = None
        self._popen = None
        self._child_watcher = None
        self._exited = gevent.event.Event()
        self._psutil: psutil.Process | None = None
        if spawn:
            self.spawn()

    # -- spawning ------------------------------------------------------------------------------------------------

    def format_args(self, sockets_fds: dict | None = None) -> list[str]:
        """The argv to execute, with `$(circus.*)` placeholders expanded (wid, sockets, watcher attributes...)."""
        mapping = dict(self.format_vars)
        mapping.update(wid=str(self.wid), shell=self.shell, args=self.args or "", env=self.env or {},
                       working_dir=self.working_dir, uid=self.uid, gid=self.gid, rlimits=self.rlimits,
                       executable=self.executable, use_fds=self.use_fds,
                       sockets=sockets_fds if sockets_fds is not None else self.sockets)

        def expand(text: str) -> str:
            return expand_circus_vars(text, mapping).replace("$WID", str(self.wid))

        cmd = expand(self.cmd)
        if isinstance(self.args, (list, tuple)):
            extra = [expand(str(a)) for a in self.args]
        elif self.args:
            extra = shlex.split(expand(self.args))
        else:
            extra = []
        if self.shell:
            line = " ".join([cmd] + [shlex.quote(a) for a in extra])
            return [line] + (shlex.split(expand(self.shell_args)) if self.shell_args else [])
        return shlex.split(cmd) + extra

    def _child_env(self, username: str | None) -> dict:
        env = dict(self.env or {})
        if username is not None:
            home = pwd.getpwnam(username).pw_dir
            env.setdefault("HOME", home)
            env.setdefault("USER", username)
            env.setdefault("LOGNAME", username)
        return env

    def spawn(self) -> None:
        """Start the child; raise SpawnError with a readable reason if it cannot be started."""
        uid, gid, username = resolve_user(self.uid, self.gid)
        argv = self.format_args()
        if not argv:
            raise SpawnError("empty command")
        env = self._child_env(username)
        stdin = subprocess.DEVNULL if self.close_child_stdin else None
        if self.stdin_fd is not None:
            stdin = self.stdin_fd
        stdout = self._output_target(self.stdout_target, self.pipe_stdout, self.close_child_stdout)
        stderr = self._output_target(self.stderr_target, self.pipe_stderr, self.close_child_stderr)
        kwargs: dict = dict(cwd=self.working_dir, env=env, stdin=stdin, stdout=stdout, stderr=stderr,
                            close_fds=True, pass_fds=self.pass_fds, start_new_session=True,
                            executable=self.executable, umask=-1 if self.umask is None else self.umask)
        needs_preexec = bool(self.rlimits) or bool(self.pdeathsig)
        if needs_preexec:
            # Steps that must run in the child between fork and exec, in Circus's order (rlimits while still
            # privileged, then the identity switch, then the parent-death signal, which a uid change would reset).
            kwargs["preexec_fn"] = _ChildSetup(self.rlimits, uid, gid, username, self.pdeathsig, os.getpid())
        else:
            if gid is not None:
                kwargs["group"] = gid
            if uid is not None:
                kwargs["user"] = uid
                if username is not None:
                    kwargs["extra_groups"] = os.getgrouplist(username, gid if gid is not None else uid)
        if self.shell:
            argv_to_run = ["/bin/sh", "-c"] + argv
        else:
            argv_to_run = argv
        try:
            popen = _Popen(argv_to_run, **kwargs)
        except FileNotFoundError as exc:
            missing = exc.filename or argv_to_run[0]
            if missing == self.working_dir:
                raise SpawnError(f"working_dir {self.working_dir!r} does not exist") from None
            raise SpawnError(f"command not found: {missing!r}") from None
        except PermissionError as exc:
            raise SpawnError(f"permission denied: {exc.filename or argv_to_run[0]!r}") from None
        except subprocess.SubprocessError as exc:
            raise SpawnError(f"child set-up failed (rlimits, uid/gid or stdin_socket): {exc}") from None
        except OSError as exc:
            raise SpawnError(f"{exc.strerror or exc}: {argv_to_run[0]!r}") from None
        self._popen = popen
        self.pid = popen.pid
        self.started = time.time()
        self.stdout = popen.stdout
        self.stderr = popen.stderr
        # Arm the child watcher before yielding to the hub: the loop reaps on SIGCHLD only when it runs, so the exit
        # of even an instantly dying child cannot be missed.
        self._child_watcher = gevent.get_hub().loop.child(self.pid, False)
        self._child_watcher.start(self._on_sigchld)

    @staticmethod
    def _output_target(target, pipe: bool, close: bool):
        if close:
            return subprocess.DEVNULL
        if target is not None:
            return target
        return subprocess.PIPE if pipe else None

    def _on_sigchld(self) -> None:
        watcher = self._child_watcher
        watcher.stop()
        self.exit = ProcessExit(watcher.rstatus)
        if self._popen is not None:
            # Tell the stdlib object the child is gone so it never tries to reap it itself.
            self._popen.returncode = self.exit.returncode
        self._exited.set()
        if self.on_exit is not None:
            self.on_exit(self)

    # -- state ---------------------------------------------------------------------------------------------------

    def is_alive(self) -> bool:
        return self.pid != 0 and not self._exited.is_set()

    def poll(self) -> int | None:
        """The return code if the child has exited, else None (never reaps: the hub does)."""
        return self.exit.returncode if self.exit else None

    def returncode(self) -> int | None:
        return self.poll()

    @property
    def status(self) -> int:
        if self.pid == 0:
            return UNEXISTING
        return DEAD_OR_ZOMBIE if self._exited.is_set() else RUNNING

    def wait(self, timeout: float | None = None) -> int | None:
        """Block this greenlet until the child has been reaped (or `timeout`); return its return code or None."""
        self._exited.wait(timeout)
        return self.poll()

    def age(self) -> float:
        return time.time() - self.started if self.started else 0.0

    def children(self, recursive: bool = False) -> list[int]:
        if not self.is_alive():
            return []
        if recursive:
            return linux.descendants(self.pid)
        return linux._read_children(self.pid)

    def is_child(self, pid: int) -> bool:
        return pid in self.children()

    # -- signals -------------------------------------------------------------------------------------------------

    def send_signal(self, sig: int) -> bool:
        """Signal the main process; False if it is already gone."""
        if not self.is_alive():
            return False
        try:
            os.kill(self.pid, sig)
            return True
        except ProcessLookupError:
            return False

    def send_signal_child(self, pid: int, sig: int) -> None:
        if pid not in self.children():
            raise psutil.NoSuchProcess(pid)
        os.kill(pid, sig)

    def send_signal_children(self, sig: int, recursive: bool = False) -> list[int]:
        signalled = []
        for pid in self.children(recursive):
            try:
                os.kill(pid, sig)
                signalled.append(pid)
            except ProcessLookupError:
                pass
        return signalled

    def signal_group(self, sig: int) -> bool:
        """Signal the child's whole process group (it leads its own session); False if the group is empty."""
        if not self.pid:
            return False
        try:
            os.killpg(self.pid, sig)
            return True
        except (ProcessLookupError, PermissionError):
            return False

    # -- stopping ------------------------------------------------------------------------------------------------

    def stop(self, stop_signal: int = signal.SIGTERM, graceful_timeout: float = 30.0, stop_children: bool = False,
             send=None) -> int | None:
        """Stop the child and everything it started; block until all of it is gone. Return the child's return code.

        `stop_signal` goes to the child (and with `stop_children` to its process group and every descendant); after
        `graceful_timeout` seconds whatever is left of the tree gets SIGKILL. Descendants that left the process group
        are remembered by pid and start time (against pid reuse) and waited for through pidfds, so nothing escapes.
        `send(pid, signum)` delivers each signal to one pid (the watcher passes its own, which runs the signal hooks
        and publishes `kill` events); the default is a plain kill.
        """
        send = send or _plain_kill
        self.stopping = True
        tree = _Tree(self.pid)
        deadline = time.monotonic() + max(0.0, graceful_timeout)
        if self.is_alive():
            send(self.pid, stop_signal)
        if stop_children:
            self.signal_group(stop_signal)
            for pid in tree.alive():
                send(pid, stop_signal)
        if graceful_timeout > 0:
            self._exited.wait(max(0.0, deadline - time.monotonic()))
        if self.is_alive():
            send(self.pid, signal.SIGKILL)
            self.signal_group(signal.SIGKILL)
            for pid in tree.alive():
                send(pid, signal.SIGKILL)
        self._exited.wait()
        # The main process is gone; whatever it left behind in its group or tree gets the stop signal, the rest of
        # the grace period, then SIGKILL. A stop never leaves an orphan behind.
        tree.add_group_members()
        leftovers = tree.alive()
        if leftovers:
            self.signal_group(stop_signal)
            for pid in leftovers:
                send(pid, stop_signal)
            tree.wait(max(0.0, deadline - time.monotonic()))
            leftovers = tree.alive()
            if leftovers:
                self.signal_group(signal.SIGKILL)
                for pid in leftovers:
                    send(pid, signal.SIGKILL)
                tree.wait(None)
        self.close_pipes()
        self.stopping = False
        return self.poll()

    def kill_tree(self) -> None:
        """SIGKILL the child, its process group and its descendants at once (forced shutdown)."""
        victims = linux.descendants(self.pid) if self.is_alive() else []
        self.signal_group(signal.SIGKILL)
        for pid in [self.pid] + victims if self.is_alive() else victims:
            _plain_kill(pid, signal.SIGKILL)

    def close_pipes(self) -> None:
        for pipe in (self.stdout, self.stderr):
            if pipe is not None:
                try:
                    pipe.close()
                except OSError:
                    pass

    # -- info ----------------------------------------------------------------------------------------------------

    def psutil_process(self) -> psutil.Process | None:
        if not self.is_alive():
            return None
        if self._psutil is None:
            try:
                self._psutil = psutil.Process(self.pid)
            except psutil.Error:
                return None
        return self._psutil

    def __repr__(self) -> str:
        return f"<Process {self.name}[{self.wid}] pid={self.pid}>"

    def __lt__(self, other: "Process") -> bool:
        return self.started < other.started


class _ChildSetup:
    """The preexec step, run in the forked child just before exec: rlimits, identity, parent-death signal."""

    def __init__(self, rlimits: dict, uid, gid, username, pdeathsig, parent_pid: int):
        self.rlimits = [(getattr(resource, "RLIMIT_" + name.upper()), value) for name, value in rlimits.items()]
        self.uid = uid
        self.gid = gid
        self.username = username
        self.pdeathsig = pdeathsig
        self.parent_pid = parent_pid

    def __call__(self) -> None:
        for which, value in self.rlimits:
            try:
                resource.setrlimit(which, (value, value))
            except ValueError:
                if which != resource.RLIMIT_NOFILE or value != resource.RLIM_INFINITY:
                    raise
                hard = resource.getrlimit(which)[1]
                resource.setrlimit(which, (hard, hard))
        if self.gid is not None:
            os.setgid(self.gid)
        if self.uid is not None:
            if self.username is not None:
                os.initgroups(self.username, self.gid if self.gid is not None else os.getgid())
            os.setuid(self.uid)
        if self.pdeathsig:
            linux.set_parent_death_signal(self.pdeathsig)
            if os.getppid() != self.parent_pid:
                # The parent died between fork and prctl: the signal would never come, so act on it now.
                os.kill(os.getpid(), self.pdeathsig)


def _plain_kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


class _Tree:
    """The descendants of a process, remembered by pid and start time so they can be found after their parent dies."""

    def __init__(self, pid: int):
        self.pgid = pid
        self.members: dict[int, int | None] = {}
        for child in linux.descendants(pid):
            self.members[child] = linux.start_time(child)

    def add_group_members(self) -> None:
        """Remember members of the process group that were not seen as descendants (started after the snapshot).

        One killpg(0) tells whether the group still has members at all, so the common case costs a single syscall.
        Orphaned members were re-parented to us (we are a child subreaper) or to init; we look among our own children.
        """
        try:
            os.killpg(self.pgid, 0)
        except OSError:
            return
        for child in linux._read_children(os.getpid()):
            if child not in self.members:
                try:
                    if os.getpgid(child) == self.pgid:
                        self.members[child] = linux.start_time(child)
                except OSError:
                    pass

    def alive(self) -> list[int]:
        live = []
        for pid, started in list(self.members.items()):
            if linux.start_time(pid) != started or _is_zombie(pid):
                del self.members[pid]
            else:
                live.append(pid)
        return live

    def wait(self, timeout: float | None) -> None:
        """Block until every remembered process is gone, or `timeout`; pidfds make this an I/O wait, not a poll."""
        with gevent.Timeout(timeout, False):
            for pid in self.alive():
                _wait_pid_gone(pid)


def _is_zombie(pid: int) -> bool:
    """True when `pid` has terminated (zombie or gone): it no longer runs, whoever reaps it."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return True
    state = data[data.rfind(b")") + 2:data.rfind(b")") + 3]
    return state in (b"Z", b"X")


def _wait_pid_gone(pid: int) -> None:
    """Block this greenlet until `pid` has terminated, waiting on a pidfd (readable once the process exits)."""
    try:
        fd = os.pidfd_open(pid)
    except OSError as exc:
        if exc.errno == errno.ESRCH:
            return
        raise
    try:
        if not _is_zombie(pid):
            wait_read(fd)
    finally:
        os.close(fd)
