"""Demo web worker for conf/app.ini: a small gevent WSGI app.

Several workers share one port through SO_REUSEPORT, so gcircus can run and replace them independently (with
managed sockets, a later feature, gcircusd will hold the listening socket itself).
"""
from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402

from gevent.pywsgi import WSGIServer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--worker", default="?")
    args = parser.parse_args()

    def app(environ, start_response):
        body = json.dumps({"worker": args.worker, "pid": os.getpid(), "path": environ["PATH_INFO"]}).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    listener.bind(("127.0.0.1", args.port))
    listener.listen(1024)
    server = WSGIServer(listener, app, log=None)
    signal.signal(signal.SIGTERM, lambda *_: server.stop(timeout=5))
    print(f"web worker {args.worker} (pid {os.getpid()}) serving on 127.0.0.1:{args.port}", flush=True)
    server.serve_forever()
    sys.exit(0)


if __name__ == "__main__":
    main()
