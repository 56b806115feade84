"""A real WebSocket server or client (the `websockets` package) for the gateway's
WebSocket tests.

  ws_peer.py server
      echoes on 127.0.0.1 (a free port, printed as "PORT n") until killed. Each
      connection first gets a JSON hello with the request's path and headers; then text
      comes back as "echo:" + text, binary as b"echo:" + bytes; "close-me" makes the
      server close with code 4000 "server says bye". No pings (so idle means idle).
  ws_peer.py client URL STEP [--header NAME:VALUE]...
      STEP is echo (client closes), server-close, idle (wait for the gateway to close
      a quiet connection) or handshake (report a refused handshake's status); prints JSON
"""

import asyncio
import json
import logging
import sys
import time

from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed, InvalidStatus


async def echo(ws):
    hello = {"path": ws.request.path, "headers": {k.lower(): v for k, v in ws.request.headers.raw_items()}}
    await ws.send(json.dumps(hello))
    async for message in ws:
        if message == "close-me":
            await ws.close(code=4000, reason="server says bye")
            return
        await ws.send("echo:" + message if isinstance(message, str) else b"echo:" + message)


async def server():
    logging.getLogger("websockets").setLevel(logging.CRITICAL)
    async with serve(echo, "127.0.0.1", 0, ping_interval=None) as running:
        port = next(iter(running.sockets)).getsockname()[1]
        print("PORT %d" % port, flush=True)
        await asyncio.Future()


async def client(url, step, headers):
    result = {}
    try:
        async with connect(url, additional_headers=headers, ping_interval=None, open_timeout=10, close_timeout=5) as ws:
            result["hello"] = json.loads(await ws.recv())
            if step == "echo":
                await ws.send("hi there")
                result["text"] = await ws.recv()
                await ws.send(b"\x00\x01\xff")
                result["binary"] = (await ws.recv()).hex()
                for i in range(50):
                    await ws.send("n%d" % i)
                result["many"] = [await ws.recv() for _ in range(50)] == ["echo:n%d" % i for i in range(50)]
                await ws.close(code=1000, reason="client done")
                result["close_code"] = ws.close_code
            elif step == "server-close":
                await ws.send("close-me")
                try:
                    await ws.recv()
                except ConnectionClosed as closed:
                    result["close_code"] = closed.rcvd.code if closed.rcvd else None
                    result["close_reason"] = closed.rcvd.reason if closed.rcvd else None
            elif step == "idle":
                started = time.monotonic()
                try:
                    await asyncio.wait_for(ws.recv(), timeout=30)
                except ConnectionClosed as closed:
                    result["closed_after"] = round(time.monotonic() - started, 2)
                    result["close_frame"] = closed.rcvd is not None
    except InvalidStatus as refused:
        result["refused"] = refused.response.status_code
        result["error_code"] = refused.response.headers.get("x-ca-error-code")
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "server":
        asyncio.run(server())
    else:
        url, step, rest = sys.argv[2], sys.argv[3], sys.argv[4:]
        headers = [tuple(value.split(":", 1)) for flag, value in zip(rest[::2], rest[1::2]) if flag == "--header"]
        asyncio.run(client(url, step, headers))
