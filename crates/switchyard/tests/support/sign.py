#!/usr/bin/env python3
"""An independent signer for Switchyard's Signature auth, written from the product spec
(shared DESIGN.md, "Authentication (apps)") with the Python standard library only, so the
tests do not check the gateway's signer against itself.

Reads one JSON request description on stdin:
  {"method": "POST", "path": "/orders/%E5%BC%A0", "query": "b=2&a=1",
   "headers": {"Content-Type": "...", "X-Tenant": "blue"}, "body": "qty=2",
   "key": "204000001", "secret": "s3cr3t", "algorithm": "HmacSHA256",
   "timestamp": 1700000000000, "nonce": "...",            (defaults: now, a fresh UUID)
   "signed": ["X-Tenant"],                                 (besides the X-Ca- ones)
   "content_md5": true,                                    (send Content-MD5 of the body)
   "method_header": false}                                 (no X-Ca-Signature-Method: HmacSHA256)
and prints {"headers": {...every header to send...}, "stringToSign": "..."}.
"""
import base64
import hashlib
import hmac
import json
import sys
import time
import urllib.parse
import uuid

ALGORITHMS = {"HmacSHA256": hashlib.sha256, "HmacSHA1": hashlib.sha1}


def header(headers, name):
    """A header's value, its name compared ignoring case ("" when absent)."""
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value
    return ""


def resource(path, query, body, content_type):
    """The path, then `?` and the query and form parameters sorted by key, decoded;
    the first value of a repeated key counts; `key` alone when the value is empty."""
    pairs = urllib.parse.parse_qsl(query or "", keep_blank_values=True)
    if content_type.lower().startswith("application/x-www-form-urlencoded"):
        pairs += urllib.parse.parse_qsl(body or "", keep_blank_values=True)
    first = {}
    for key, value in pairs:
        if key and key not in first:
            first[key] = value
    text = urllib.parse.unquote(path)
    if first:
        text += "?" + "&".join(k if first[k] == "" else k + "=" + first[k] for k in sorted(first))
    return text


def sign(request):
    headers = dict(request.get("headers", {}))
    algorithm = request.get("algorithm", "HmacSHA256")
    headers["X-Ca-Key"] = request["key"]
    headers["X-Ca-Timestamp"] = str(request.get("timestamp", int(time.time() * 1000)))
    headers["X-Ca-Nonce"] = request.get("nonce", str(uuid.uuid4()))
    signed = request.get("signed_exactly")
    if request.get("method_header", True):
        headers["X-Ca-Signature-Method"] = algorithm
    elif signed is None:
        signed = ["X-Ca-Key", "X-Ca-Nonce", "X-Ca-Timestamp"] + request.get("signed", [])
    body = request.get("body", "")
    if request.get("content_md5"):
        headers["Content-MD5"] = base64.b64encode(hashlib.md5(body.encode()).digest()).decode()
    if signed is None:
        signed = ["X-Ca-Key", "X-Ca-Nonce", "X-Ca-Signature-Method", "X-Ca-Timestamp"] + request.get("signed", [])
    headers["X-Ca-Signature-Headers"] = ",".join(signed)
    lines = [request["method"]] + [header(headers, n) for n in ("Accept", "Content-MD5", "Content-Type", "Date")]
    string_to_sign = "\n".join(lines) + "\n"
    for name in sorted(signed):
        string_to_sign += name + ":" + header(headers, name) + "\n"
    string_to_sign += resource(request["path"], request.get("query"), body, header(headers, "Content-Type"))
    digest = hmac.new(request["secret"].encode(), string_to_sign.encode(), ALGORITHMS[algorithm]).digest()
    headers["X-Ca-Signature"] = base64.b64encode(digest).decode()
    return {"headers": headers, "stringToSign": string_to_sign}


if __name__ == "__main__":
    json.dump(sign(json.load(sys.stdin)), sys.stdout)
