"""One child process: spawn it with every Circus spawn option, see it exit through SIGCHLD, stop its whole tree.

Spawning uses the C fork/exec path of the stdlib (`subprocess.Popen`, taken from before any monkeypatching), which is
about three times faster than gevent's pure-Python child set-up; the exit is seen through gevent's child watcher,
the same SIGCHLD machinery `gevent.subprocess` relies on. gevent's loop is the one and only reaper: nothing in
gcircus calls `waitpid`, and the stdlib `Popen` object is never asked to wait or poll.
"""
from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import functools
import importlib.util
import inspect
import logging
import operator
import os
import pwd
import resource
import shlex
import signal
import subprocess
import time
from typing import TYPE_CHECKING, Any

import gevent
import gevent.event
import gevent.fileobject
import gevent.monkey
import gevent.subprocess
import psutil

from gcircus import cgroups, identity, launcher, linux
from gcircus.expand import expand_circus_vars
from gcircus.procinfo import NA
from gcircus.states import SPAWNED

log = logging.getLogger(__name__)


def _stdlib_popen():
    """A private copy of the stdlib's Popen, immune to the host app's monkeypatching.

    We want the C fork/exec path (vfork when possible), not gevent's pure-Python child set-up; `patch_all()` disables
    the stdlib module's fork_exec, so we load the stdlib source under another name.
    """
    spec = importlib.util.spec_from_file_location("gcircus._stdlib_subprocess", subprocess.__file__)
    assert spec is not None and spec.loader is not None  # subprocess.__file__ is a source file
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Popen


_Popen = _stdlib_popen()
# The private copy has its own exception classes: a failed preexec step raises this one, not subprocess's.
_SUBPROCESS_ERRORS = (subprocess.SubprocessError, _Popen.__init__.__globals__["SubprocessError"])


def _popen_class():
    """The Popen to spawn with: the stdlib's C path, or gevent's own inside a host that monkeypatched `os`.

    In a patched host, the stdlib's fork_exec can wait forever for the child's exec report (the patched at-fork
    handlers and gevent's SIGCHLD plumbing keep the report pipe open), while gevent's Popen is built for exactly that
    process. It costs about twice as much per spawn; an unpatched gcircusd never takes that path.
    """
    if gevent.monkey.is_module_patched("os"):
        return gevent.subprocess.Popen
    return _Popen


@functools.lru_cache(maxsize=256)
def _split(text: str) -> tuple[str, ...]:
    """shlex.split, remembered: every process of a watcher usually runs the same command line, and splitting it took
    70 µs of each spawn (10,000 processes: 0.7 s of the hub's time). A line with a per-process placeholder
    ($(circus.wid)) differs per process and just costs the split, as before."""
    return tuple(shlex.split(text))


RUNNING, DEAD_OR_ZOMBIE, UNEXISTING, OTHER = 0, 1, 2, 3


# Spawn failures caused by a shortage of the daemon's resources (fds, processes, memory), not by the watcher's
# configuration: they pass once the shortage does, so they are retried for as long as it lasts.
TRANSIENT_SPAWN_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.EAGAIN, errno.ENOMEM})


class SpawnError(Exception):
    """The child could not be started (command not found, permission denied, unknown user...).

    `transient` marks a shortage of the daemon's own resources (TRANSIENT_SPAWN_ERRNOS): retried, never given up on.
    """

    def __init__(self, message: str, transient: bool = False):
        super().__init__(message)
        self.transient = transient


def resolve_user(uid: int | str | None, gid: int | str | None) -> tuple[int | None, int | None, str | None]:
    """gcircus.identity.resolve_user, with an unusable uid or gid reported as a SpawnError (see there)."""
    try:
        return identity.resolve_user(uid, gid)
    except identity.IdentityError as exc:
        raise SpawnError(str(exc)) from None


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


@dataclasses.dataclass(frozen=True)
class SpawnSpec:
    """What a spawn runs, as whom, where and with which descriptors: fixed when the Process is created.

    A watcher builds one per spawn from its own spec (so a `set` never changes a process half-way); Circus's
    `Process(name, wid, cmd, **options)` builds one from the keywords.
    """

    name: str
    cmd: str
    args: Any = None
    working_dir: str | None = None  # None: gcircusd's working directory
    shell: bool = False
    shell_args: str | None = None
    uid: Any = None
    gid: Any = None
    env: dict | None = None
    rlimits: dict = dataclasses.field(default_factory=dict)
    executable: str | None = None
    use_fds: bool = False
    pipe_stdout: bool = True
    pipe_stderr: bool = True
    close_child_stdin: bool = True
    close_child_stdout: bool = False
    close_child_stderr: bool = False
    umask: int | None = None
    pdeathsig: int | None = None
    stdin_fd: int | None = None
    pass_fds: tuple = ()
    sockets: dict = dataclasses.field(default_factory=dict)
    stdout_target: Any = None  # a file object or descriptor for the child's stdout instead of a pipe
    stderr_target: Any = None
    format_vars: dict = dataclasses.field(default_factory=dict)  # $(circus.NAME) values of cmd and args
    ready_fd: int | None = None  # fd:N readiness: the child gets the write end of a pipe as this descriptor
    cgroup: Any = None  # a gcircus.cgroups.WatcherCgroup (prepared): the child enters it before it execs


class Process:
    """A child process, spawned on construction unless `spawn=False`.

    Blocking methods (`wait`, `stop`) block only the calling greenlet. `on_exit(process)` is called from the hub once
    the child has been reaped; the caller decides what to do with it. The spawn spec's fields read as attributes
    (`process.cmd`), as Circus's processes have them.
    """

    if TYPE_CHECKING:  # the spawn spec's fields, read as attributes, are properties generated below the class
        def __getattr__(self, name: str) -> Any: ...

    def __init__(self, name: str, wid: int, cmd: str | None = None, *, spec: SpawnSpec | None = None, watcher=None,
                 spawn: bool = True, on_exit=None, stdout=None, stderr=None, **options):
        if spec is None:
            if cmd is None:
                raise TypeError("Process needs a cmd or a spawn spec")
            spec = SpawnSpec(name, cmd, stdout_target=stdout, stderr_target=stderr, **options)
        self.spec = spec if spec.working_dir else dataclasses.replace(spec, working_dir=os.getcwd())
        self.name = name
        self.wid = wid
        self.watcher = watcher
        self.on_exit = on_exit
        self.started: float = 0.0
        self.stopping = False
        self.pid: int = 0
        self.program = ""  # the basename of what the child runs once past its launcher (set at spawn)
        self.exit: ProcessExit | None = None
        # Where the process stands in its watcher's eyes (gcircus.states: spawned, ready, unhealthy, stopping), what
        # its checks last said, and what it said itself (sd_notify STATUS=); the watcher sets them.
        self.state = SPAWNED
        self.ready_at: float | None = None
        self.check_detail = ""
        self.status_text = ""
        self.stdout = None
        self.stderr = None
        # With ready_fd: the read end of the readiness pipe (a gevent file object, non-blocking), until close_pipes.
        self.ready_pipe: gevent.fileobject.FileObjectPosix | None = None
        self._popen: Any = None
        self._child_watcher: Any = None
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
            extra = list(_split(expand(self.args)))
        else:
            extra = []
        if self.shell:
            line = " ".join([cmd] + [shlex.quote(a) for a in extra])
            return [line] + (list(_split(expand(self.shell_args))) if self.shell_args else [])
        return [*_split(cmd), *extra]

    def _child_env(self, username: str | None) -> dict:
        env = dict(self.env or {})
        if username is not None:
            env.setdefault("HOME", pwd.getpwnam(username).pw_dir)
            env.setdefault("USER", username)
            env.setdefault("LOGNAME", username)
        return env

    def spawn(self) -> None:
        """Start the child; raise SpawnError with a readable reason if it cannot be started."""
        uid, gid, username = resolve_user(self.uid, self.gid)
        try:
            argv = self.format_args()
        except ValueError as exc:  # unbalanced quotes once placeholders were expanded
            raise SpawnError(f"cannot split the command line into arguments: {exc}") from None
        if not argv:
            raise SpawnError("empty command")
        env = self._child_env(username)
        ready = _ReadyPipeSetup.open(self.ready_fd, self.sockets if self.use_fds else {}) if (
            self.ready_fd is not None) else None
        try:
            popen = self._launch(argv, env, uid, gid, username, ready)
        except BaseException:
            if ready is not None:
                ready.abandon()
            raise
        self._popen = popen
        self.pid = popen.pid
        self.started = time.time()
        self.program = "sh" if self.shell else os.path.basename(argv[0])  # what /proc shows once it runs
        self.stdout = popen.stdout
        self.stderr = popen.stderr
        self.ready_pipe = ready.reader() if ready is not None else None
        # Arm the child watcher before yielding to the hub: the loop reaps on SIGCHLD only when it runs, so the exit
        # of even an instantly dying child cannot be missed.
        self._child_watcher = gevent.get_hub().loop.child(self.pid, False)
        self._child_watcher.start(self._on_sigchld)

    @classmethod
    def adopt(cls, name: str, wid: int, spec: SpawnSpec, pid: int, started: float, watcher=None,
              on_exit=None, ready_fd: int | None = None) -> Process:
        """A Process around a child this gcircusd already runs (spawned before it re-executed itself, see
        gcircus.handover): same pid, wid and start time, its child watcher armed again, and with `ready_fd` the
        read end of its fd:N readiness pipe (carried over the exec) read again.

        ChildProcessError if `pid` is not a child of ours (gone and reaped, or never ours): such a pid cannot be
        accounted for, and the caller must leave it alone. A child that already exited stays a zombie until the hub
        reaps it: `kick_reaper()` after adopting makes the loop look at once, and `on_exit` runs as for any exit.
        """
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)  # ChildProcessError if not our child
        process = cls(name, wid, spec=spec, watcher=watcher, spawn=False, on_exit=on_exit)
        process.pid, process.started = pid, started
        process._popen = _AdoptedPopen()
        if ready_fd is not None:
            os.set_inheritable(ready_fd, False)  # inheritable for the exec only
            process.ready_pipe = gevent.fileobject.FileObjectPosix(ready_fd, "rb", bufsize=0)
        gevent.get_hub().loop.install_sigchld()
        process._child_watcher = gevent.get_hub().loop.child(pid, False)
        process._child_watcher.start(process._on_sigchld)
        return process

    @classmethod
    def adopt_exited(cls, name: str, wid: int, spec: SpawnSpec, pid: int, started: float, status: int,
                     watcher=None, on_exit=None) -> Process:
        """A Process around a child the image gcircusd replaced had already reaped (wait `status`), its exit not
        handled yet: the caller hands it to `on_exit` as any exit."""
        process = cls(name, wid, spec=spec, watcher=watcher, spawn=False, on_exit=on_exit)
        process.pid, process.started, process.exit = pid, started, ProcessExit(status)
        process._exited.set()
        return process

    def disown(self) -> None:
        """Stop watching the child's exit (adopted again by another Process, after a hand-over's rebuild failed)."""
        if self._child_watcher is not None:
            self._child_watcher.stop()
        if self.ready_pipe is not None:  # its fd:N readiness check fails: the pipe is not read twice
            self.ready_pipe.close()

    def _launch(self, argv: list[str], env: dict, uid: int | None, gid: int | None, username: str | None,
                ready: _ReadyPipeSetup | None):
        """Fork and exec the child (the Popen object); SpawnError with a readable reason if it cannot start."""
        cgroup_fd = None if self.cgroup is None else self._open_cgroup()  # a spawn error now if gone or not writable
        try:
            needs_preexec = bool(self.rlimits) or ready is not None
            plan = launcher.plan(can_skip_preexec=not needs_preexec and not self.executable,
                                 other_user=uid is not None or gid is not None, pdeathsig=self.pdeathsig,
                                 parent_pid=os.getpid(), cgroup_fd=cgroup_fd,
                                 cgroup_procs=None if self.cgroup is None else self.cgroup.procs_path,
                                 keep_pwd="PWD" in env)
            needs_preexec = needs_preexec or plan.preexec
            kwargs = self._popen_options(env, uid, gid, username, needs_preexec=needs_preexec, ready=ready,
                                         cgroup_fd=cgroup_fd if needs_preexec else None,
                                         launcher_fds=plan.pass_fds)
            return self._run_popen(argv, env, uid, gid, plan.prefix, kwargs)
        finally:
            _close_quietly(cgroup_fd)

    def _open_cgroup(self) -> int:
        """A write descriptor on the cgroup's cgroup.procs; SpawnError if it cannot be opened (gone, not writable).

        The child enters its cgroup by writing "0" to this descriptor before it execs its command: in its launcher
        (gcircus-launch, which inherits it; see gcircus.launcher) or, for a child of another user, in a preexec
        step before the uid switch. Only the fallback shell launcher writes to the path itself (then the
        descriptor just proves it can be opened).
        The command never runs outside its cgroup: a launcher exits 125 with a message on the child's stderr
        instead of exec'ing it, a preexec failure is a spawn error. Moving gcircusd itself into the cgroup around
        the fork (what a vfork would inherit) was rejected: for that moment gcircusd's allocations would be charged
        to the watcher, whose memory_max could get the supervisor OOM-killed.
        """
        try:
            return self.cgroup.open_procs()
        except cgroups.CgroupError as exc:
            raise SpawnError(f"cannot place the process in its cgroup: {exc}") from None

    def _run_popen(self, argv: list[str], env: dict, uid: int | None, gid: int | None, prefix: list[str] | None,
                   kwargs: dict):
        """Popen with the prepared options (and the launcher `prefix`, if any: see gcircus.launcher); SpawnError with
        a readable reason if the child cannot start."""
        argv_to_run = ["/bin/sh", "-c"] + argv if self.shell else argv
        if prefix is not None:
            # The launcher execs the command itself, so a missing or non-executable command must be found here.
            self._check_executable(argv_to_run[0], env)
            argv_to_run = prefix + argv_to_run
        # gevent's C loop creates child watchers without installing its SIGCHLD handler (gevent.subprocess does it
        # on each spawn); without it no exit is ever seen in a host that never used gevent.subprocess. It must be in
        # place before the fork, and costs a flag test once installed.
        gevent.get_hub().loop.install_sigchld()
        try:
            return _popen_class()(argv_to_run, **kwargs)
        except _SUBPROCESS_ERRORS as exc:
            raise SpawnError(f"child set-up failed (cgroup, rlimits, uid/gid or parent-death signal): {exc}") from None
        except OSError as exc:
            raise SpawnError(self._describe_spawn_error(exc, argv_to_run[0], uid, gid),
                             transient=exc.errno in TRANSIENT_SPAWN_ERRNOS) from None
        except (ValueError, TypeError) as exc:
            # What validation should have refused (a NUL byte, an unencodable value) must still leave the watcher
            # in charge: a SpawnError is retried and reported, any other exception would escape the watcher.
            raise SpawnError(f"the command, its arguments or its environment cannot be executed: {exc}") from None

    def _popen_options(self, env: dict, uid: int | None, gid: int | None, username: str | None,
                       needs_preexec: bool, ready: _ReadyPipeSetup | None = None,
                       cgroup_fd: int | None = None, launcher_fds: tuple[int, ...] = ()) -> dict:
        """Popen's keyword arguments: descriptors, environment, and the identity/limits/parent-death set-up.

        `cgroup_fd` goes to the preexec step; `launcher_fds` are kept open for the launcher (it closes them)."""
        stdin = subprocess.DEVNULL if self.close_child_stdin else None
        if self.stdin_fd is not None:
            stdin = self.stdin_fd
        stdout = self._output_target(self.stdout_target, self.pipe_stdout, self.close_child_stdout)
        stderr = self._output_target(self.stderr_target, self.pipe_stderr, self.close_child_stderr)
        pass_fds = self.pass_fds
        if not pass_fds and self.use_fds and self.sockets:
            pass_fds = tuple(int(fd) for fd in self.sockets.values())
        if ready is not None:
            pass_fds = (*pass_fds, ready.child_fd)  # kept open by Popen; _child_setup puts the pipe there
        pass_fds = (*pass_fds, *launcher_fds)
        kwargs: dict = dict(cwd=self.working_dir, env=env, stdin=stdin, stdout=stdout, stderr=stderr,
                            close_fds=True, pass_fds=pass_fds, start_new_session=True,
                            executable=self.executable, umask=-1 if self.umask is None else self.umask)
        groups = identity.supplementary_groups(uid, gid, username)  # in the parent: see there why
        if needs_preexec:
            # Steps that must run in the child between fork and exec, in Circus's order (rlimits while still
            # privileged, then the identity switch, then the parent-death signal, which a uid change would reset).
            kwargs["preexec_fn"] = functools.partial(_child_setup, _rlimit_steps(self.rlimits), uid, gid, groups,
                                                     self.pdeathsig, os.getpid(),
                                                     None if ready is None else (ready.write_fd, ready.child_fd),
                                                     cgroup_fd)
            return kwargs
        for key, value in (("group", gid), ("user", uid), ("extra_groups", groups)):
            if value is not None:
                kwargs[key] = value
        return kwargs

    def _check_executable(self, program: str, env: dict) -> None:
        """Raise the OSError exec would raise for `program`, resolved as execvp does (PATH, else /bin:/usr/bin)."""
        if "/" in program:
            candidates = [os.path.join(self.working_dir, program)]
        else:
            candidates = [os.path.join(d or ".", program) for d in (env.get("PATH") or os.defpath).split(os.pathsep)]
        denied = None
        for candidate in candidates:
            if os.path.isfile(candidate):
                if os.access(candidate, os.X_OK):
                    return
                denied = candidate
        if denied is not None:
            raise SpawnError(f"permission denied: {denied!r} is not executable")
        raise SpawnError(f"command not found: {program!r}")

    def _describe_spawn_error(self, exc: OSError, program: str, uid, gid) -> str:
        """A message a user can act on. Runs only on failure, so its extra checks cost nothing on a normal spawn.

        The stdlib reports every failure before exec (chdir, setgroups/setgid/setuid) with the working directory as
        the file name, so a failure naming the working directory is told apart by looking at that directory.
        """
        filename = exc.filename if exc.filename is not None else program
        reason = exc.strerror or str(exc)
        if exc.errno in TRANSIENT_SPAWN_ERRNOS:
            return f"{reason} (in gcircusd itself, while setting up the child)"
        if filename == self.working_dir:
            if not os.path.exists(self.working_dir):
                return f"working_dir {self.working_dir!r} does not exist"
            if not os.path.isdir(self.working_dir):
                return f"working_dir {self.working_dir!r} is not a directory"
            if uid is not None or gid is not None:
                return f"cannot switch to uid={self.uid!r} gid={self.gid!r}: {reason}"
            return f"cannot change to working_dir {self.working_dir!r}: {reason}"
        if isinstance(exc, FileNotFoundError):
            return f"command not found: {filename!r}"
        if isinstance(exc, PermissionError):
            return f"permission denied: {filename!r} (not executable?)"
        return f"{reason}: {filename!r}"

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
        # Tell the Popen object the child is gone so it never tries to reap it itself (spawn set it before arming us).
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
        return linux.descendants(self.pid) if recursive else linux.children(self.pid)

    def is_child(self, pid: int) -> bool:
        return pid in self.children()

    # -- signals -------------------------------------------------------------------------------------------------

    def send_signal(self, sig: int) -> bool:
        """Signal the main process; False if it is already gone."""
        return self.is_alive() and linux.kill(self.pid, sig)

    def send_signal_child(self, pid: int, sig: int) -> None:
        if pid not in self.children():
            raise psutil.NoSuchProcess(pid)
        os.kill(pid, sig)

    def send_signal_children(self, sig: int, recursive: bool = False) -> list[int]:
        return [pid for pid in self.children(recursive) if linux.kill(pid, sig)]

    def signal_group(self, sig: int) -> bool:
        """Signal the child's whole process group (it leads its own session); False if the group is empty.

        After the child was reaped its pid can be reused, and the new owner may lead a group of the same number;
        the kernel never reuses a pid still naming a live group, so a pid that exists again means the group is gone.
        """
        if not self.pid:
            return False
        if self._exited.is_set() and os.path.exists(f"/proc/{self.pid}"):
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
        `send(pid, signum, deliver=None)` delivers each signal to one pid (the watcher passes its own, which runs the
        signal hooks and publishes `kill` events) through `deliver(pid, signum)` when given; the default is a plain
        kill. With `stop_children` the main process's stop signal is its group's: one killpg, announced through
        `send` for the main process, so that it, like every member, gets the signal once. A `send(pid, signum)`
        without `deliver` still works: the main process then gets its signal by pid and again with its group.
        """
        if not self.pid:
            return None
        send = send or _plain_send
        self.stopping = True
        # Once the child is reaped its pid may belong to someone else: only a live child's tree is ours to walk.
        tree = linux.Tree(self.children(recursive=True))
        deadline = time.monotonic() + max(0.0, graceful_timeout)
        grouped: list[bool] = []
        if self.is_alive():
            if stop_children and _takes_deliver(getattr(send, "__func__", send)):
                send(self.pid, stop_signal, deliver=lambda pid, signum: grouped.append(self._signal_leader(signum)))
            else:
                send(self.pid, stop_signal)
        if stop_children:
            self._signal_tree(stop_signal, tree.alive(), send, group_signalled=any(grouped))
        if graceful_timeout > 0:
            self._exited.wait(max(0.0, deadline - time.monotonic()))
        if self.is_alive():
            send(self.pid, signal.SIGKILL)
            self._signal_tree(signal.SIGKILL, tree.alive(), send)
        self._exited.wait()
        # The main process is gone; whatever it left behind in its group or tree gets the stop signal, the rest of
        # the grace period, then SIGKILL. A stop never leaves an orphan behind.
        self._stop_leftovers(tree, stop_signal, deadline, send, report=False)
        self.close_pipes()
        self.stopping = False
        return self.poll()

    def stop_leftovers(self, stop_signal: int = signal.SIGTERM, graceful_timeout: float = 30.0,
                       send=None) -> list[int]:
        """The main process exited on its own: stop what it left running in its process group, and their trees.

        Same escalation as `stop` (stop signal, `graceful_timeout`, SIGKILL); blocks this greenlet until they are
        gone. Returns the pids found (one killpg(0) when there are none, the common case). Descendants that left
        the group (setsid) cannot be told apart once their parent died; gcircusd sweeps them when it exits.
        """
        if not self.pid or not self._exited.is_set():
            return []
        return self._stop_leftovers(linux.Tree(), stop_signal, time.monotonic() + max(0.0, graceful_timeout),
                                    send or linux.kill, report=True)

    def _stop_leftovers(self, tree: linux.Tree, stop_signal: int, deadline: float, send, report: bool) -> list[int]:
        """Stop the group members and tree left by the exited main process; `report` logs what was found."""
        if self.signal_group(0):  # one killpg tells whether the group has members at all, the common case's cost
            tree.add_group_members(self.pid)
        found = tree.alive()
        if found:
            if report:
                log.info("%s exited leaving %d process(es) behind (%s): stopping them", self,
                         len(found), ", ".join(map(str, found)))
            grace = max(0.0, deadline - time.monotonic())
            tree.stop(stop_signal, grace, functools.partial(self._signal_tree, send=send))
        elif self.signal_group(0):
            # Group members we cannot see (not our children: without a subreaper they went to init).
            if report:
                log.info("%s exited leaving members of its process group behind: stopping them", self)
            self.signal_group(stop_signal)
            if not self._wait_group_empty(deadline):
                self.signal_group(signal.SIGKILL)
                # Bounded: a zombie member whose (escaped) parent never reaps it would keep the group non-empty.
                self._wait_group_empty(time.monotonic() + 1.0)
        return found

    def _signal_tree(self, signum: int, pids: list[int], send, group_signalled: bool = False) -> None:
        """One round of a stop: the process group (unless `group_signalled` already), then each pid of the tree that
        is not in it (it left the group).

        A member of the group gets the group's signal only: sent a second time, the signal may reach a program
        already handling the first, and to some a second SIGTERM or SIGINT means "quit now" (a shell's trap ran
        twice). A pid whose group cannot be read (gone meanwhile) is sent the signal anyway.
        """
        grouped = group_signalled or self._signal_whole_group(signum)
        for pid in pids:
            if grouped and _process_group(pid) == self.pid:
                continue
            send(pid, signum)

    def _signal_whole_group(self, signum: int) -> bool:
        """killpg, then SIGCONT to the group (a stopped member must get to handle it, as `send` does by pid); False
        if the group is gone."""
        grouped = self.signal_group(signum)
        if grouped and signum not in (signal.SIGKILL, signal.SIGCONT):
            self.signal_group(signal.SIGCONT)
        return grouped

    def _signal_leader(self, signum: int) -> bool:
        """Deliver the main process's stop signal to its whole group; by pid if the group cannot be signalled (then
        False: the group still gets its own signal). ProcessLookupError if the main process is gone."""
        if self._signal_whole_group(signum):
            return True
        os.kill(self.pid, signum)
        if signum not in (signal.SIGKILL, signal.SIGCONT):
            os.kill(self.pid, signal.SIGCONT)
        return False

    def _wait_group_empty(self, deadline: float) -> bool:
        """Wait (polling, this fallback only) until the group is empty or `deadline`; True if it emptied."""
        delay = 0.005
        while self.signal_group(0):  # the group still has members
            if time.monotonic() >= deadline:
                return False
            gevent.sleep(delay)
            delay = min(delay * 2, 0.1)
        return True

    def kill_tree(self) -> None:
        """SIGKILL the child, its process group and its descendants at once (forced shutdown)."""
        victims = [self.pid, *self.children(recursive=True)] if self.is_alive() else []
        self._signal_tree(signal.SIGKILL, victims, linux.kill)

    def close_pipes(self) -> None:
        for pipe in (self.stdout, self.stderr, self.ready_pipe):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()

    # -- info ----------------------------------------------------------------------------------------------------

    def program_shown(self, read: str) -> str:
        """The program name to report for this process, given the one read from /proc (`read`).

        The spawn returns while the child is still inside execve (an empty command line, "N/A") or, on the fast
        path, running its launcher (see gcircus.launcher) for a few milliseconds more: during that
        time the name read is not the process's, and the program it is about to run is reported instead.
        """
        if self.program and (read == NA or read in launcher.LAUNCHER_PROGRAMS):
            return self.program
        return read

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

    def __lt__(self, other: Process) -> bool:
        return self.started < other.started


def _rlimit_steps(rlimits: dict) -> list[tuple[int, int]]:
    """(RLIMIT_* constant, value) pairs; an unknown limit name is a SpawnError naming it."""
    steps = []
    for name, value in rlimits.items():
        which = getattr(resource, "RLIMIT_" + str(name).upper(), None)
        if which is None:
            raise SpawnError(f"unknown resource limit rlimit_{name}")
        steps.append((which, int(value)))
    return steps


@functools.lru_cache(maxsize=64)
def _takes_deliver(send) -> bool:
    """Whether a stop's `send` (a function, not a bound method: the cache must not keep watchers alive) takes the
    `deliver` argument."""
    try:
        return "deliver" in inspect.signature(send).parameters
    except (TypeError, ValueError):  # a builtin or a callable without a signature
        return False


def _plain_send(pid: int, signum: int, deliver=None) -> None:
    """A stop's default `send`: the signal alone, no hooks or events (an embedded Process stopped by itself)."""
    if deliver is None:
        linux.kill(pid, signum)
    else:
        with contextlib.suppress(ProcessLookupError):
            deliver(pid, signum)


def _process_group(pid: int) -> int | None:
    """The process group of `pid`, or None if it cannot be read (gone, or not ours to ask)."""
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def _child_setup(rlimits: list, uid, gid, groups, pdeathsig, parent_pid: int,
                 ready_fd: tuple[int, int] | None = None, cgroup_fd: int | None = None) -> None:
    """The preexec step, run in the forked child just before exec: cgroup, readiness descriptor, rlimits, identity,
    parent-death signal.

    Everything that needs a lookup (limit constants, supplementary groups) was resolved in the parent: only plain
    system calls run here. `ready_fd` is (pipe write end, N): the pipe becomes the child's descriptor N (first, so
    a lower RLIMIT_NOFILE cannot forbid it).
    """
    step = "entering its cgroup (cgroup.procs)"
    try:
        if cgroup_fd is not None:
            os.write(cgroup_fd, b"0")
        step = "dup2 of the readiness pipe"
        if ready_fd is not None:
            os.dup2(ready_fd[0], ready_fd[1], inheritable=True)
        step = "setrlimit"
        for which, value in rlimits:
            try:
                resource.setrlimit(which, (value, value))
            except ValueError:
                if which != resource.RLIMIT_NOFILE or value != resource.RLIM_INFINITY:
                    raise
                hard = resource.getrlimit(which)[1]
                resource.setrlimit(which, (hard, hard))
        step = "setgroups/setgid/setuid"
        if groups is not None:
            os.setgroups(groups)
        if gid is not None:
            os.setgid(gid)
        if uid is not None:
            os.setuid(uid)
        step = "prctl(PR_SET_PDEATHSIG)"
        if pdeathsig:
            linux.set_parent_death_signal(pdeathsig)
    except (OSError, ValueError) as exc:
        # gevent's Popen (monkeypatched hosts) hands this exception to the parent as is; the stdlib's keeps
        # only its class. Either way the parent sees a SubprocessError, which spawn() turns into a SpawnError.
        raise ChildSetupError(f"{step} failed: {exc}") from None
    if pdeathsig and os.getppid() != parent_pid:
        # The parent died between fork and prctl: the signal would never come, so act on it now.
        os.kill(os.getpid(), pdeathsig)


class _ReadyPipeSetup:
    """The pipe of an fd:N readiness check (s6 style) while its child is spawned.

    The child gets the write end as descriptor N (dup2 in _child_setup), gcircusd keeps the read end. If N is not
    open in gcircusd, it is held on /dev/null for the length of the spawn: no pipe the spawn creates can then get
    number N (the dup2 would clobber it in the child), and Popen finds N open when it marks it inheritable.
    """

    def __init__(self, child_fd: int, read_fd: int, write_fd: int, placeholder: int | None):
        self.child_fd = child_fd
        self.read_fd = read_fd
        self.write_fd = write_fd
        self.placeholder = placeholder
        self._child_side_open = True

    @classmethod
    def open(cls, child_fd: int, sockets: dict) -> _ReadyPipeSetup:
        """The pipe for descriptor `child_fd`; SpawnError if N is taken by an inherited socket or unusable."""
        if child_fd in {int(fd) for fd in sockets.values()}:
            raise SpawnError(f"ready = fd:{child_fd}: descriptor {child_fd} is also an inherited socket's")
        try:
            placeholder = _hold_descriptor(child_fd)
        except OSError as exc:
            raise SpawnError(f"ready = fd:{child_fd}: descriptor {child_fd} cannot be used: {exc.strerror}",
                             transient=exc.errno in TRANSIENT_SPAWN_ERRNOS) from None
        try:
            read_fd, write_fd = os.pipe()
        except OSError as exc:
            _close_quietly(placeholder)
            raise SpawnError(f"cannot create the readiness pipe: {exc.strerror}",
                             transient=exc.errno in TRANSIENT_SPAWN_ERRNOS) from None
        return cls(child_fd, read_fd, write_fd, placeholder)

    def close_child_side(self) -> None:
        """Close what only the child needed: the write end (so EOF comes when the child's copies close) and the
        placeholder."""
        if self._child_side_open:
            self._child_side_open = False
            _close_quietly(self.write_fd)
            _close_quietly(self.placeholder)

    def abandon(self) -> None:
        """The spawn failed: close everything."""
        self.close_child_side()
        _close_quietly(self.read_fd)

    def reader(self) -> gevent.fileobject.FileObjectPosix:
        """The read end as a non-blocking gevent file object (closing it wakes a greenlet waiting on it)."""
        self.close_child_side()
        return gevent.fileobject.FileObjectPosix(self.read_fd, "rb", bufsize=0)


def _hold_descriptor(fd: int) -> int | None:
    """Open /dev/null as descriptor `fd` (close-on-exec) unless `fd` is already open; return it if opened."""
    try:
        fcntl.fcntl(fd, fcntl.F_GETFD)
        return None
    except OSError as exc:
        if exc.errno != errno.EBADF:
            raise
    devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    if devnull != fd:
        try:
            os.dup2(devnull, fd, inheritable=False)
        finally:
            os.close(devnull)
    return fd


def _close_quietly(fd: int | None) -> None:
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)


class _AdoptedPopen:
    """Stands for the Popen object of an adopted child (gcircus.handover): only its returncode is ever set."""

    returncode: int | None = None


def kick_reaper() -> None:
    """Make the hub reap every exited child now: the SIGCHLD of a child that exited while gcircusd re-executed
    itself was taken by the old image (or lost across exec), so its zombie would otherwise wait for the next one."""
    os.kill(os.getpid(), signal.SIGCHLD)


class ChildSetupError(subprocess.SubprocessError):
    """A set-up step in the forked child (rlimits, identity, parent-death signal) failed."""


# The spawn spec's fields read as process attributes; they never change once the process exists.
for _field in dataclasses.fields(SpawnSpec):
    if _field.name != "name":
        setattr(Process, _field.name, property(operator.attrgetter(f"spec.{_field.name}")))
