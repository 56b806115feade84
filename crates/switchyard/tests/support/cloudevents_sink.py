"""A CloudEvents HTTP sink for the event bus tests: parses every POST with the CloudEvents
Python SDK (cloudevents.http.from_http, both structured and binary content modes) and keeps
what it parsed; GET /_events returns it as JSON. --status makes it refuse every event.

    python cloudevents_sink.py --port 0 [--status 500]   # prints "listening on HOST:PORT"
"""

import argparse
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cloudevents.http import from_http

EVENTS = []
LOCK = threading.Lock()


class Sink(BaseHTTPRequestHandler):
    status = 202

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        headers = {name.lower(): value for name, value in self.headers.items()}
        try:
            event = from_http(headers, body)
        except Exception as error:  # the SDK's refusal is the test's finding
            self.answer(400, {"error": f"{type(error).__name__}: {error}"})
            return
        mode = "structured" if headers.get("content-type", "").startswith("application/cloudevents+json") else "binary"
        with LOCK:
            EVENTS.append({"mode": mode, "attributes": dict(event.get_attributes()), "data": event.data})
        self.answer(self.status, {})

    def do_GET(self):
        with LOCK:
            self.answer(200, EVENTS)

    def answer(self, status, value):
        payload = json.dumps(value, default=str).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--status", type=int, default=202)
    args = parser.parse_args()
    Sink.status = args.status
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Sink)
    print(f"listening on {server.server_address[0]}:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
