"""Notice that a SUB socket's peer is not a publisher, so `gcircusctl listen` pointed at a control endpoint says so.

zmq refuses a SUB socket's connection to a ROUTER (the control endpoint) during the handshake, because the two socket
types do not go together, and says nothing: the subscriber just waits for events that never come. A monitor on a
socket of our own sees it happen: the connection closes before its handshake succeeded. Whether the peer is then a
daemon's control endpoint is asked with a read-only `globaloptions` request, whose reply also names the pubsub
endpoint meant.

The same watch tells a CURVE mistake: a publisher that requires CURVE (or does not use it), a key it refuses. A
CURVE handshake that fails without detail may be a wrong server key or a control endpoint: said only once the
endpoint is known not to be a control endpoint.
"""
from __future__ import annotations

import zmq

from gcircus.client import CallError, Client
from gcircus.wire.curve import HANDSHAKE_FAILED, ClientKeys, handshake_failure
from gcircus.wire.protocol import recv_monitor_event

_WATCHED = zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_SUCCEEDED | HANDSHAKE_FAILED
_ENDED = zmq.EVENT_DISCONNECTED | HANDSHAKE_FAILED


class HandshakeWatch:
    """A subscription-less SUB socket of its own on `endpoint`, monitored from before it connects (a monitor
    attached to an already connecting socket can miss the start of a handshake), to see how its handshakes end."""

    def __init__(self, endpoint: str, context: zmq.Context | None = None, curve: ClientKeys | None = None):
        self.endpoint = endpoint
        self.curve = curve
        self.probe = (context or zmq.Context.instance()).socket(zmq.SUB)
        self.probe.linger = 0
        if curve is not None:
            curve.apply(self.probe)
        self.monitor = self.probe.get_monitor_socket(_WATCHED)
        self.probe.connect(endpoint)
        self.accepted = False  # a handshake succeeded: the peer is a publisher, nothing more to watch
        self._connecting = False
        self._failed: tuple[int, int] | None = None  # the last handshake failure event and its value

    def refused(self) -> bool:
        """Read the pending monitor events without waiting; True if a connection closed during its handshake."""
        refused = False
        while not self.monitor.closed and self.monitor.poll(0):
            event, value, _ = recv_monitor_event(self.monitor)
            if event & HANDSHAKE_FAILED and not self._certain(self._failed):  # a retry's vaguer failure adds nothing
                self._failed = (event, value)
            if event == zmq.EVENT_CONNECTED:
                self._connecting = True
            elif event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self._connecting, self.accepted = False, True
            elif event & _ENDED:
                refused = refused or self._connecting
                self._connecting = False
        return refused

    def failure(self, certain: bool = True) -> str | None:
        """Why the last handshake failed, when it may be a CURVE mistake (None otherwise); with `certain`, only when
        it cannot be anything else (CURVE on one side only, a refused key)."""
        if self._failed is None or (certain and not self._certain(self._failed)):
            return None
        return handshake_failure(*self._failed, self.endpoint, self.curve is not None)

    @staticmethod
    def _certain(failed: tuple[int, int] | None) -> bool:
        """A failure that cannot be anything but a CURVE mistake: CURVE on one side only, or a refused key."""
        if failed is None:
            return False
        event, value = failed
        return event == zmq.EVENT_HANDSHAKE_FAILED_AUTH or (
            event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL and value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH)

    def close(self) -> None:
        if not self.probe.closed:
            self.probe.disable_monitor()
            self.monitor.close(linger=0)
            self.probe.close(linger=0)

    def __enter__(self) -> HandshakeWatch:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def pubsub_endpoint_of_control(endpoint: str, timeout: float, curve_key: str | None = None,
                               server_key: str | None = None) -> str | None:
    """The pubsub endpoint a daemon reports when `endpoint` is its control endpoint; None if nothing answers so."""
    try:
        with Client(endpoint, timeout=timeout, green=False, curve_key=curve_key, server_key=server_key) as client:
            reply = client.call("globaloptions")
    except CallError:
        return None
    options = reply.get("options") if isinstance(reply, dict) else None
    pubsub = options.get("pubsub_endpoint") if isinstance(options, dict) else None
    return pubsub if isinstance(pubsub, str) and pubsub else None
