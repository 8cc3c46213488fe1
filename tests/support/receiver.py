#!/usr/bin/python3
"""An HTTP receiver for the alert and ping tests: a webhook (or healthchecks-style
ping endpoint) on loopback that logs every request and answers 200, or 500 while the
file --fail-while exists, so a test can make the receiver fail and recover.

Writes its port to --port-file once it listens. Each request is one JSON line in
--log: {"path", "code", "auth", "body", "at_ms", "answered_ms"} (body parsed as JSON
when it is JSON; when it arrived and when its answer went out, Unix ms). With
--slow-path P --slow-secs S, a request to P is answered S seconds after it arrived.
"""

import argparse
import json
import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--fail-while", required=True)
    parser.add_argument("--slow-path")
    parser.add_argument("--slow-secs", type=float, default=0.0)
    args = parser.parse_args()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            at_ms = time.time() * 1000
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length).decode("utf-8", "replace")
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw
            code = 500 if os.path.exists(args.fail_while) else 200
            if self.path == args.slow_path:
                time.sleep(args.slow_secs)
            with open(args.log, "a") as log:
                log.write(json.dumps({
                    "path": self.path,
                    "code": code,
                    "auth": self.headers.get("Authorization"),
                    "token": self.headers.get("X-Token"),
                    "body": body,
                    "at_ms": at_ms,
                    "answered_ms": time.time() * 1000,
                }) + "\n")
            self.send_response(code)
            self.end_headers()
            self.wfile.write(b"ok" if code == 200 else b"receiver is failing on purpose")

        do_GET = do_POST

        def log_message(self, *_):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(server.server_address[1]))
    os.rename(tmp, args.port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
