"""Control-protocol errors and Circus's errno table (PROTOCOL.md 2.3): the numbers are part of the wire contract."""
from __future__ import annotations

NOT_SPECIFIED = 0
INVALID_JSON = 1
UNKNOWN_COMMAND = 2
MESSAGE_ERROR = 3
OS_ERROR = 4
COMMAND_ERROR = 5
BAD_MSG_DATA_ERROR = 6
# gcircus's own: the sender lacks the role the command needs (README, Securing the control channel). Nothing changed.
ACCESS_REFUSED = 7


class ControlError(Exception):
    """An error reply: `reason` is what the client sees, `errno` Circus's code for it."""

    errno = NOT_SPECIFIED

    def __init__(self, reason: str, errno: int | None = None):
        super().__init__(reason)
        self.reason = reason
        if errno is not None:
            self.errno = errno


class MessageError(ControlError):
    """A request that is well-formed JSON but invalid: missing or wrong properties, unknown watcher..."""

    errno = MESSAGE_ERROR


class Refused(MessageError):
    """A request a policy refuses (endpoint_owner's and the run-as limits, gcircus.control.ownership; the roles,
    AccessRefused): nothing changed. The reply is that of any invalid request unless a subclass says otherwise; the
    audit log records it as `refused`."""


class CommandError(ControlError):
    """The command was valid but could not be carried out."""

    errno = COMMAND_ERROR


class AccessRefused(Refused):
    """The peer's role (its [access] grants) is weaker than the one the command needs; the reason names both. Its own
    errno (7), and a `refused` audit line as every Refused."""

    errno = ACCESS_REFUSED


class ArgumentError(Exception):
    """Client side: the command line given to gcircusctl does not fit the command."""
