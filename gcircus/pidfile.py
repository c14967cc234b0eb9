"""A pidfile that is also a lock, so two gcircusd daemons can never run with the same pidfile.

The file is held open with an exclusive flock for the life of the daemon: a stale file left by a crashed daemon is
simply taken over (its lock died with it), while a live daemon's file is refused with its pid in the message. A root
gcircusd does not follow a symbolic link another user planted at the pidfile's path (gcircus.integrity).
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os

from gcircus import integrity


class PidfileError(Exception):
    """The pidfile cannot be created, or another live daemon holds it."""


class Pidfile:
    """Create with a path, then `acquire()`; `release()` removes the file if it still holds our pid."""

    def __init__(self, path: str):
        self.path = os.path.abspath(path)
        self._fd: int | None = None

    @classmethod
    def adopt(cls, path: str, fd: int) -> Pidfile:
        """The pidfile this process locked before it re-executed itself (gcircus.handover): `fd` still holds the
        lock (it was made inheritable for the exec only), and the pid in it is still ours."""
        pidfile = cls(path)
        os.set_inheritable(fd, False)
        pidfile._fd = fd
        return pidfile

    @property
    def fd(self) -> int | None:
        """The locked descriptor while the pidfile is held (what a hand-over carries), else None."""
        return self._fd

    def acquire(self) -> None:
        directory = os.path.dirname(self.path)
        if not os.path.isdir(directory):
            raise PidfileError(f"cannot create pidfile {self.path}: directory {directory} does not exist")
        try:
            fd = integrity.open_unplanted(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644, "pidfile")
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # a link another user planted (gcircus.integrity): said as it is
                raise PidfileError(str(exc.strerror)) from None
            raise PidfileError(f"cannot create pidfile {self.path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            other = _read_pid(fd)
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                who = f"pid {other}" if other else "another process"
                raise PidfileError(f"pidfile {self.path} is locked by a running gcircusd ({who})") from None
            raise PidfileError(f"cannot lock pidfile {self.path}: {exc.strerror}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            if _read_pid(self._fd) == os.getpid():
                os.unlink(self.path)
        os.close(self._fd)
        self._fd = None


def _read_pid(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).split()[0])
    except (OSError, ValueError, IndexError):
        return None
