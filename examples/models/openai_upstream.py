#!/usr/bin/env python3
"""A small OpenAI-compatible model server (Python 3 standard library only).

It stands in for a real model server (vLLM, PAI-EAS, ...) in the example and in the
tests (crates/switchyard/tests/models.rs):

  POST /v1/chat/completions   JSON answer with `usage`; with "stream": true, server-sent
                              events: one chunk per word, spaced in time, and with
                              "stream_options": {"include_usage": true} a usage chunk
                              before `data: [DONE]`
  POST /v1/completions        as chat, non-streaming
  POST /v1/embeddings         one vector per input, `usage` with prompt_tokens only
  GET  /v1/models, /v1/models/{id}
  GET  /_seen                 what it received so far: [{"method", "path", "authorization"}]
                              (so a test can check which token reached it)

Token counts are deterministic: prompt_tokens is the number of words in the messages
(at least 1), completion_tokens the number of chunks sent.

Request headers steer it (for tests and benchmarks):
  x-upstream-chunks: N         words in a streamed answer (default 5)
  x-upstream-interval-ms: N    pause between two chunks (default 200)
  x-upstream-stall-ms: N       after the first chunk, wait N ms before the rest

Usage: openai_upstream.py [--port PORT] [--host 127.0.0.1]
It prints "listening on HOST:PORT" once it accepts connections (port 0: any free port).
"""

import argparse
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SEEN = []
SEEN_LOCK = threading.Lock()
WORDS = ["Switchyard", "streams", "every", "token", "as", "it", "comes", "from", "the", "model"]


def count_words(value):
    """Words in a prompt, a list of prompts, or chat messages."""
    if isinstance(value, str):
        return len(value.split())
    if isinstance(value, list):
        return sum(count_words(v.get("content", "") if isinstance(v, dict) else v) for v in value)
    return 0


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "openai-upstream/1"

    def log_message(self, *_):
        pass

    def _record(self):
        with SEEN_LOCK:
            SEEN.append({"method": self.command, "path": self.path, "authorization": self.headers.get_all("authorization") or []})

    def _json(self, status, payload):
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self):
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            return json.loads(raw or b"{}")
        except ValueError:
            return None

    def _int_header(self, name, default):
        try:
            return int(self.headers.get(name, default))
        except ValueError:
            return default

    def do_GET(self):
        if self.path == "/_seen":
            with SEEN_LOCK:
                return self._json(200, SEEN)
        self._record()
        if self.path == "/v1/models":
            return self._json(200, {"object": "list", "data": [{"id": "tiny-chat", "object": "model", "owned_by": "example"}]})
        if self.path.startswith("/v1/models/"):
            return self._json(200, {"id": self.path[len("/v1/models/"):], "object": "model", "owned_by": "example"})
        self._json(404, {"error": {"message": f"no such path {self.path}", "type": "invalid_request_error"}})

    def do_POST(self):
        self._record()
        request = self._body()
        if request is None:
            return self._json(400, {"error": {"message": "body is not JSON", "type": "invalid_request_error"}})
        model = request.get("model", "tiny-chat")
        if self.path == "/v1/chat/completions":
            prompt = max(1, count_words(request.get("messages", [])))
            if request.get("stream"):
                return self._stream(model, prompt, bool((request.get("stream_options") or {}).get("include_usage")))
            words = WORDS[: self._int_header("x-upstream-chunks", 5)]
            message = {"role": "assistant", "content": " ".join(words)}
            return self._json(200, {
                "id": "chatcmpl-1", "object": "chat.completion", "created": int(time.time()), "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": prompt, "completion_tokens": len(words), "total_tokens": prompt + len(words)},
            })
        if self.path == "/v1/completions":
            prompt = max(1, count_words(request.get("prompt", "")))
            words = WORDS[: self._int_header("x-upstream-chunks", 5)]
            return self._json(200, {
                "id": "cmpl-1", "object": "text_completion", "created": int(time.time()), "model": model,
                "choices": [{"index": 0, "text": " ".join(words), "finish_reason": "stop"}],
                "usage": {"prompt_tokens": prompt, "completion_tokens": len(words), "total_tokens": prompt + len(words)},
            })
        if self.path == "/v1/embeddings":
            inputs = request.get("input", "")
            inputs = inputs if isinstance(inputs, list) else [inputs]
            prompt = max(1, count_words(inputs))
            data = [{"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3]} for i in range(len(inputs))]
            return self._json(200, {"object": "list", "data": data, "model": model,
                                    "usage": {"prompt_tokens": prompt, "total_tokens": prompt}})
        self._json(404, {"error": {"message": f"no such path {self.path}", "type": "invalid_request_error"}})

    def _chunk(self, payload):
        data = b"data: " + (payload if isinstance(payload, bytes) else json.dumps(payload).encode()) + b"\n\n"
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _stream(self, model, prompt, include_usage):
        chunks = self._int_header("x-upstream-chunks", 5)
        interval = self._int_header("x-upstream-interval-ms", 200) / 1000
        stall = self._int_header("x-upstream-stall-ms", 0) / 1000
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        base = {"id": "chatcmpl-2", "object": "chat.completion.chunk", "created": int(time.time()), "model": model}
        try:
            for i in range(chunks):
                if i == 1 and stall:
                    time.sleep(stall)
                elif i > 0:
                    time.sleep(interval)
                word = WORDS[i % len(WORDS)] + ("" if i + 1 == chunks else " ")
                delta = {"role": "assistant", "content": word} if i == 0 else {"content": word}
                chunk = dict(base, choices=[{"index": 0, "delta": delta, "finish_reason": None}])
                if include_usage:
                    chunk["usage"] = None
                chunk["sent_ns"] = time.time_ns()
                self._chunk(chunk)
            self._chunk(dict(base, choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}]))
            if include_usage:
                usage = {"prompt_tokens": prompt, "completion_tokens": chunks, "total_tokens": prompt + chunks}
                self._chunk(dict(base, choices=[], usage=usage))
            self._chunk(b"[DONE]")
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    host, port = server.server_address[:2]
    print(f"listening on {host}:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
