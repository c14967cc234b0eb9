"""The hand-over snapshot: what the running daemon is (watchers, processes, back-off state, descriptors), written
as versioned JSON to an anonymous memory file the re-executed image inherits, and validated when read back.

JSON and not pickle: the new image may be another version of gcircus, and must be able to say precisely what in the
state it does not understand instead of failing on a class it no longer has.
"""
from __future__ import annotations

import json
import os
import time

VERSION = 1


class SnapshotError(ValueError):
    """The snapshot cannot be read or does not have the expected shape; the message says what is wrong."""


# field -> the types it may have, per level; checked by validate() so that adopt() can trust what it reads.
_TOP = {"version": (int,), "gcircus_version": (str,), "config_path": (str, type(None)), "argv": (list,),
        "taken_at": (float, int), "watchers": (list,), "sockets": (dict,), "request": (dict, type(None)),
        "pidfile": (dict, type(None))}
_WATCHER = {"name": (str,), "state": (str,), "reason": (str,), "processes": (list,), "history": (dict,),
            "policy": (dict,), "retry_in": (float, int, type(None))}
_PROCESS = {"pid": (int,), "wid": (int,), "started": (float, int), "state": (str,),
            "ready_at": (float, int, type(None)), "status_text": (str,), "check_detail": (str,),
            "expires_in": (float, int, type(None)),
            "streams": (dict,), "exit_status": (int, type(None))}

# Optional (an older image does not write them): the events held back for the subscribers (gcircus.control.publisher),
# a watcher's notify socket, a process's readiness still awaited (gcircus.checks.follow.readiness_state).
_EVENTS = {"subscriptions": (int,), "events": (list,)}
_NOTIFY_SOCKET = {"fd": (int,), "address": (str,)}
_READINESS = {"ready_deadline": (float, int, type(None)), "ready_fd": (int, type(None))}


def write(snapshot: dict) -> int:
    """The snapshot in a new memfd (inheritable, offset 0); OSError if it cannot be created or written."""
    data = json.dumps(snapshot).encode()
    fd = os.memfd_create("gcircus-handover", 0)  # no MFD_CLOEXEC: the new image inherits it
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read(fd: int) -> dict:
    """Read, close and validate the snapshot in `fd`; SnapshotError naming what is wrong."""
    try:
        with os.fdopen(fd, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise SnapshotError(f"cannot read the hand-over state from descriptor {fd}: {exc.strerror}") from None
    try:
        snapshot = json.loads(data)
    except ValueError as exc:
        raise SnapshotError(f"the hand-over state is not valid JSON: {exc}") from None
    validate(snapshot)
    return snapshot


def validate(snapshot) -> None:
    """SnapshotError unless `snapshot` is a state of a version this image reads, with every field well typed."""
    _check(snapshot, _TOP, "the hand-over state")
    if snapshot["version"] != VERSION:
        raise SnapshotError(f"the hand-over state is version {snapshot['version']}, this gcircusd reads version "
                            f"{VERSION}")
    for index, watcher in enumerate(snapshot["watchers"]):
        _check(watcher, _WATCHER, f"watchers[{index}]")
        _check_optional(watcher, "notify_socket", _NOTIFY_SOCKET, f"watchers[{index}]")
        for number, process in enumerate(watcher["processes"]):
            where = f"watcher {watcher['name']!r} processes[{number}]"
            _check(process, _PROCESS, where)
            _check({key: process.get(key) for key in _READINESS}, _READINESS, where)
            if not isinstance(process.get("ready_sent", False), bool):
                raise SnapshotError(f"{where}: 'ready_sent' has the wrong type")
    _check_optional(snapshot, "events", _EVENTS, "the hand-over state")
    for name, fd in snapshot["sockets"].items():
        if not isinstance(fd, int) or fd < 0:
            raise SnapshotError(f"sockets[{name!r}] must be a descriptor number, not {fd!r}")


def _check(value, fields: dict, where: str) -> None:
    if not isinstance(value, dict):
        raise SnapshotError(f"{where} must be an object, not {type(value).__name__}")
    for key, types in fields.items():
        if key not in value:
            raise SnapshotError(f"{where}: {key!r} is missing")
        if isinstance(value[key], bool) or not isinstance(value[key], types):
            raise SnapshotError(f"{where}: {key!r} has the wrong type ({type(value[key]).__name__})")


def _check_optional(value: dict, key: str, fields: dict, where: str) -> None:
    if value.get(key) is not None:
        _check(value[key], fields, f"{where}: {key!r}")


def now() -> float:
    return time.time()
