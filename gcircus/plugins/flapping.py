"""Flapping, accepted as a plugin class: every watcher already has the crash-loop back-off (gcircus.backoff)."""
from __future__ import annotations

import logging

from gcircus.plugins.base import NativePlugin

log = logging.getLogger(__name__)


class Flapping(NativePlugin):
    """A no-op: a [plugin:X] section using Flapping configures the built-in back-off of every watcher instead."""

    name = "flapping"

    def handle_init(self) -> None:
        log.info("%s: flapping detection is built into every watcher; this plugin does nothing", self.plugin_name)
