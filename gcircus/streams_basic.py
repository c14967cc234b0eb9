"""Where a child's stdout/stderr go until the line-aware stream pipeline lands.

A file sink (`filename`, with any of Circus's file stream classes) is opened in append mode and handed to the child
as its fd, so output reaches the file directly, losslessly and at disk speed, with no reader on the hub. Rotation and
time prefixes need the stream pipeline (a later issue); until then those options are accepted and logged as pending.
An unconfigured stream, or a stdout stream class, inherits gcircusd's own stdout/stderr, as in Circus.
"""
from __future__ import annotations

import logging
import os

from gcircus.expand import expand_circus_vars

log = logging.getLogger(__name__)

_FILE_CLASSES = {"FileStream", "WatchedFileStream", "TimedRotatingFileStream"}
_INHERIT_CLASSES = {"StdoutStream", "FancyStdoutStream"}
_PENDING_OPTIONS = {"max_bytes", "backup_count", "time_format", "rotate_when", "rotate_interval", "utc", "color"}


class OutputTargets:
    """Opens, per spawned process, the file descriptors its stdout and stderr are connected to."""

    def __init__(self, stdout_conf: dict, stderr_conf: dict):
        self.stdout_conf = stdout_conf
        self.stderr_conf = stderr_conf
        for label, conf in (("stdout_stream", stdout_conf), ("stderr_stream", stderr_conf)):
            pending = sorted(_PENDING_OPTIONS & set(conf))
            if pending:
                log.warning("%s options %s are accepted but not applied yet (output goes to the file unrotated)",
                            label, ", ".join(pending))

    def open(self, wid: int, env: dict) -> tuple[int | None, int | None]:
        return self._open_one(self.stdout_conf, wid, env), self._open_one(self.stderr_conf, wid, env)

    @staticmethod
    def _open_one(conf: dict, wid: int, env: dict) -> int | None:
        if not conf:
            return None
        cls = str(conf.get("class", "")).rsplit(".", 1)[-1].rsplit(":", 1)[-1]
        if cls in _INHERIT_CLASSES or ("filename" not in conf and not cls):
            return None
        if cls and cls not in _FILE_CLASSES:
            log.warning("stream class %r is not supported yet; output goes to gcircusd's own stream", cls)
            return None
        filename = expand_circus_vars(str(conf["filename"]), {"wid": str(wid), "env": env})
        directory = os.path.dirname(filename)
        if directory:
            os.makedirs(directory, exist_ok=True)
        return os.open(filename, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)

    @staticmethod
    def close_parent_copies(*fds: int | None) -> None:
        """After the spawn the child holds its own copies; ours must not leak."""
        for fd in fds:
            if fd is not None:
                os.close(fd)
