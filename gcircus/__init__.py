"""gcircus: a gevent process supervisor that is a drop-in for Circus.

`from gcircus import get_arbiter` (Circus's library entry point) is resolved on first use (PEP 562): importing the
package stays light, since every `gcircus.*` module imports it, gcircusctl's start-up included, and the arbiter
with its channels (gevent, zmq, psutil) has no business there.
"""
import importlib

__version__ = "0.1.0"

_LAZY = {"get_arbiter": "gcircus.daemon"}  # name -> the module that defines it


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'gcircus' has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
