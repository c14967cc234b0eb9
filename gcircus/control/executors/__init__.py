"""The daemon's side of the command table: importing this package registers every executor (see base.py)."""
from gcircus.control.executors import info, lifecycle, mutate, signals, upgrade  # noqa: F401
from gcircus.control.executors.base import EXECUTORS, Deferred, Queued  # noqa: F401
