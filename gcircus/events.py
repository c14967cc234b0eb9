"""Every event gcircus publishes (EVENTS), the Event in-process subscribers receive, and Circus's wire form of one.

Inside the daemon an event stays an Event: only the PUB publisher builds topics (`frames`), and only subscribers on
the other side of that socket (CircusPlugin) split them back (`split_topic`). An Event is checked against EVENTS
when it is made, so a misspelt event or field fails in the tests instead of reaching subscribers.
"""
from __future__ import annotations

import json
import time as clock
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, NamedTuple

WATCHER = "watcher"  # the kind of source of every event (the topic's first part): there are no arbiter-level topics
TOPIC_PREFIX = f"{WATCHER}."


class EventSpec(NamedTuple):
    kind: str
    fields: frozenset[str]  # besides `time`, which every event has


# PROTOCOL.md 3.2 (it says when each is published), plus gcircus's own: `stream` (a sink failed, or works again:
# error None) and the lifecycle events below
EVENTS: dict[str, EventSpec] = {name: EventSpec(kind, frozenset(fields)) for name, (kind, *fields) in {
    "spawn": (WATCHER, "process_pid"),  # time: the process's start
    "reap": (WATCHER, "process_pid", "exit_code"),  # time: its exit; exit_code: -signum after a signal
    "kill": (WATCHER, "process_pid"),
    "start": (WATCHER,), "stop": (WATCHER,), "reload": (WATCHER,), "updated": (WATCHER,),
    "add": (WATCHER,), "remove": (WATCHER,),
    "hook_success": (WATCHER, "name"), "hook_failure": (WATCHER, "name", "error"),
    "stream": (WATCHER, "name", "error"),
    # gcircus's lifecycle (gcircus.states): every move of the watcher, with the reason when there is one (why it
    # backs off, failed or waits), and each process becoming ready, not ready again (sd_notify RELOADING=1) or
    # unhealthy (replaced); `detail` is what its check or the process said.
    "state": (WATCHER, "state", "previous", "reason"),
    "ready": (WATCHER, "process_pid", "wid"),
    "not_ready": (WATCHER, "process_pid", "wid", "detail"),
    "unhealthy": (WATCHER, "process_pid", "wid", "detail"),
    # gcircusd replaced itself in place (gcircus.handover): published by the new image for each watcher it adopted.
    "upgrade": (WATCHER, "old_version", "new_version"),
}.items()}


# The events Circus has no word for: Circus's own subscribers receive them on the PUB channel and ignore them.
LIFECYCLE_EVENTS = frozenset({"state", "ready", "not_ready", "unhealthy", "upgrade"})


@dataclass(frozen=True, slots=True)
class Event:
    """One published event. `fields` (exactly EVENTS[name].fields) is read-only: every subscriber gets the same."""

    watcher: str  # the watcher's name as configured
    name: str
    fields: Mapping[str, Any]
    time: float

    @classmethod
    def of(cls, watcher: str, name: str, fields: dict) -> Event:
        """Event `name` of `watcher`; a `time` in `fields` is its time (a spawn's is the start), otherwise now."""
        stamp = fields.pop("time", None)
        return cls(watcher, name, MappingProxyType(fields), clock.time() if stamp is None else stamp)

    def __post_init__(self) -> None:
        spec = EVENTS.get(self.name)
        if spec is None or spec.fields != self.fields.keys():
            raise ValueError(f"event {self.name!r} with fields {sorted(self.fields)} is not as EVENTS declares")

    @property
    def kind(self) -> str:
        return EVENTS[self.name].kind


# -- Circus's wire format (PROTOCOL.md 3.1): for the PUB publisher and Circus-compatible subscribers only -------------

def res_name(name: str) -> str:
    """A watcher name as topics spell it: lowercase, spaces as underscores (`Echo Upper` -> `echo_upper`)."""
    return name.lower().replace(" ", "_")


def topic(event: Event) -> str:
    return f"{event.kind}.{res_name(event.watcher)}.{event.name}"


def message(event: Event) -> dict:
    return {"time": event.time, **event.fields}


def frames(event: Event) -> list[bytes]:
    return [topic(event).encode(), json.dumps(message(event)).encode()]


def split_topic(raw: bytes | str) -> tuple[str, str]:
    """`watcher.<res_name>.<event>` -> (res_name, event); a res_name with dots stays whole."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    if text.startswith(TOPIC_PREFIX):
        text = text[len(TOPIC_PREFIX):]
    name, _, action = text.rpartition(".")
    return name, action
