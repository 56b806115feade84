#!/usr/bin/env python3
"""A small event function for Switchyard's `function` backends (`invocation: Event`).

Python 3 standard library only. It serves HTTP on 127.0.0.1:PORT, reads the event JSON the
gateway POSTs (path, httpMethod, headers, queryParameters, pathParameters, body,
isBase64Encoded) and answers with a response JSON chosen by the event's `path`, i.e. the
path the client called (the keyword may follow any prefix: /fn/status/404):

  .../binary              a small binary body, base64-encoded (isBase64Encoded: true)
  .../status/<code>       the function's own answer with that status (e.g. 404, 500)
  .../malformed/<case>    a response the gateway must refuse with 502:
                            not-json, no-status, status-700, bad-base64, oversized,
                            oversized-stream (chunked, no length declared),
                            headers-not-object, header-crlf, header-hop-by-hop, body-not-string
  .../platform-error      the platform itself fails: HTTP 503 with a plain body, no JSON
  anything else           200 echoing the event back as the JSON body

`GET /_count` (straight to the function, not through the gateway) answers with the number
of events received so far, so a test can tell that a refused request never arrived.

Usage: python3 event_function.py PORT   (0 picks a free port; the port is printed on
stdout as `listening PORT` once it serves)
"""

import base64
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BINARY = bytes([0x00, 0xFF, 0x10, 0x80, 0xFE]) + b"png?"
OVERSIZED_BYTES = 2 * 1024 * 1024

_count = 0
_count_lock = threading.Lock()


def respond(status, body, headers=None, is_base64=False):
    out = {"statusCode": status, "body": body, "isBase64Encoded": is_base64}
    if headers is not None:
        out["headers"] = headers
    return json.dumps(out).encode()


class Streamed:
    """A response sent chunked, with no Content-Length: the gateway must stop reading it."""

    def __init__(self, total):
        self.total = total


MALFORMED = {
    "not-json": lambda: b"<html>this is not JSON</html>",
    "no-status": lambda: json.dumps({"body": "no status here", "headers": {}}).encode(),
    "status-700": lambda: respond(700, "far out"),
    "bad-base64": lambda: respond(200, "this is *not* base64!", is_base64=True),
    "oversized": lambda: respond(200, "x" * OVERSIZED_BYTES),
    "oversized-stream": lambda: Streamed(OVERSIZED_BYTES),
    "headers-not-object": lambda: json.dumps({"statusCode": 200, "headers": ["x-a: 1"], "body": ""}).encode(),
    "header-crlf": lambda: respond(200, "", {"x-a": "1\r\nset-cookie: session=stolen"}),
    "header-hop-by-hop": lambda: respond(200, "", {"Connection": "close"}),
    "body-not-string": lambda: json.dumps({"statusCode": 200, "body": {"a": 1}}).encode(),
}


def after(parts, word):
    """The segment after `word` in the path (None when absent): `/fn/status/404` -> "404"."""
    if word in parts:
        i = parts.index(word)
        return parts[i + 1] if i + 1 < len(parts) else ""
    return None


def answer(event):
    """The response JSON bytes (or, for a platform failure, a (status, bytes) pair)."""
    parts = [p for p in event.get("path", "/").split("/") if p]
    if "binary" in parts:
        return respond(200, base64.b64encode(BINARY).decode(), {"content-type": "image/png"}, True)
    status = after(parts, "status")
    if status and status.isdigit():
        code = int(status)
        return respond(code, json.dumps({"error": "chosen by the function", "status": code}),
                       {"content-type": "application/json", "x-function": "event_function.py"})
    case = after(parts, "malformed")
    if case in MALFORMED:
        return MALFORMED[case]()
    if "platform-error" in parts:
        return (503, b"function platform overloaded")
    return respond(200, json.dumps(event), {"content-type": "application/json", "x-function": "event_function.py",
                                            "x-seen-method": event.get("httpMethod", "")})


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        if self.path == "/_count":
            with _count_lock:
                self.send_bytes(200, json.dumps({"events": _count}).encode(), "application/json")
        else:
            self.send_bytes(405, b"events are POSTed", "text/plain")

    def do_POST(self):
        global _count
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length)
        with _count_lock:
            _count += 1
        try:
            event = json.loads(raw)
        except ValueError as e:
            self.send_bytes(400, f"not an event: {e}".encode(), "text/plain")
            return
        out = answer(event)
        if isinstance(out, Streamed):
            self.send_chunked(out.total)
        elif isinstance(out, tuple):
            self.send_bytes(out[0], out[1], "text/plain")
        else:
            self.send_bytes(200, out, "application/json")

    def send_bytes(self, status, body, content_type):
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def send_chunked(self, total):
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        chunk = b'{"statusCode": 200, "body": "' + b"x" * 65536
        sent = 0
        try:
            while sent < total:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
                chunk = b"x" * 65536
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass  # the gateway stopped reading once over its limit

    def log_message(self, *args):
        pass


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 9000
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print(f"listening {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
