"""A monkeypatched gevent WSGI app that embeds a gcircus arbiter (used by test_embedding.py).

Usage: python embedded_app.py PORT. Serves the supervised pids as JSON; SIGTERM stops the arbiter, then the server.
"""
from gevent import monkey

monkey.patch_all()

import json  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402

import gevent  # noqa: E402
from gevent.pywsgi import WSGIServer  # noqa: E402

from gcircus import get_arbiter  # noqa: E402


def main() -> None:
    port = int(sys.argv[1])
    arbiter = get_arbiter([{"name": "workers", "cmd": "/bin/sleep 1000", "numprocesses": 2,
                            "graceful_timeout": 5}], background=True)

    def app(environ, start_response):
        watcher = arbiter.get_watcher("workers")
        body = json.dumps({"pids": watcher.pids, "status": watcher.status()}).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    arbiter.start()  # returns: background=True
    server = WSGIServer(("127.0.0.1", port), app, log=None)

    def shutdown():
        arbiter.stop()
        server.stop()

    gevent.signal_handler(signal.SIGTERM, lambda: gevent.spawn(shutdown))
    server.serve_forever()


if __name__ == "__main__":
    main()
