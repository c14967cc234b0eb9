"""gcircus: a gevent process supervisor that is a drop-in for Circus."""

__version__ = "0.1.0"


def get_arbiter(*args, **kwargs):
    """Build an Arbiter from watcher dicts, with Circus's `get_arbiter` signature (see gcircus.arbiter)."""
    from gcircus.arbiter import get_arbiter as _get_arbiter

    return _get_arbiter(*args, **kwargs)
