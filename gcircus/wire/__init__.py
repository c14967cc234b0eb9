"""What the zmq channels share, below every service and client that uses them: the wire format of control requests
and replies, the error codes, how an endpoint is bound safely and closed, and the cap on connections.

The control server, the event publisher, the stats channel, the client and the plugins all build on it, so none of
them imports another sideways.
"""
