"""gcircus: a gevent process supervisor that is a drop-in for Circus.

`get_arbiter` (Circus's library entry point, gcircus.daemon) is loaded on first use (PEP 562): every gcircus module
imports this package, gcircusctl's included, and must not pay for the arbiter, gevent and zmq when it needs none.
"""
import importlib

__version__ = "0.1.0"


def __getattr__(name: str):
    if name != "get_arbiter":
        raise AttributeError(f"module 'gcircus' has no attribute {name!r}")
    return importlib.import_module("gcircus.daemon").get_arbiter
