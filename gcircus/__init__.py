"""gcircus: a gevent process supervisor that is a drop-in for Circus."""

__version__ = "0.1.0"
