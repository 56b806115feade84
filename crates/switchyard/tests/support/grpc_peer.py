"""A real gRPC server or client (grpcio, generic handlers: raw bytes, no protoc) for the
gateway's gRPC tests and bench.

  grpc_peer.py server [--tls CERT KEY]
      serves test.Echo on 127.0.0.1 (a free port, printed as "PORT n"), until killed:
        Unary   echoes the request as "echo:" + request, trailing metadata
                x-trailer: kept and x-trace-bin (binary), initial metadata x-initial: yes
        Fail    answers NOT_FOUND "no such order" with trailing metadata x-why: because
        Stream  (unary-stream) sends three messages, then trailing metadata x-count: 3
  grpc_peer.py call TARGET METHOD PAYLOAD [--ca PEM --authority NAME] [--metadata K=V]...
      one call; prints JSON: code, details, response, initial and trailing metadata
  grpc_peer.py bench TARGET SECONDS CONCURRENCY
      unary calls on one channel for SECONDS with CONCURRENCY in flight; prints JSON
      {"calls": n, "errors": n, "seconds": s, "calls_per_second": r}
"""

import asyncio
import json
import sys
import time
from concurrent import futures

import grpc


def unary(request, context):
    context.send_initial_metadata((("x-initial", "yes"),))
    context.set_trailing_metadata((("x-trailer", "kept"), ("x-trace-bin", b"\x00\x01\xfe")))
    return b"echo:" + request


def fail(request, context):
    context.set_trailing_metadata((("x-why", "because"),))
    context.abort(grpc.StatusCode.NOT_FOUND, "no such order")


def stream(request, context):
    for i in range(3):
        yield b"part-%d:" % i + request
    context.set_trailing_metadata((("x-count", "3"),))


def serve(args):
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "Fail": grpc.unary_unary_rpc_method_handler(fail),
        "Stream": grpc.unary_stream_rpc_method_handler(stream),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Echo", handlers),))
    if args[:1] == ["--tls"]:
        cert, key = open(args[1], "rb").read(), open(args[2], "rb").read()
        port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials(((key, cert),)))
    else:
        port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print("PORT %d" % port, flush=True)
    server.wait_for_termination()


def metadata_dict(pairs):
    out = {}
    for key, value in pairs or ():
        out[key] = value.hex() if isinstance(value, bytes) else value
    return out


def call(args):
    target, method, payload = args[0], args[1], args[2].encode()
    options, metadata, ca = [], [], None
    rest = args[3:]
    while rest:
        flag, value, rest = rest[0], rest[1], rest[2:]
        if flag == "--ca":
            ca = open(value, "rb").read()
        elif flag == "--authority":
            options.append(("grpc.default_authority", value))
            options.append(("grpc.ssl_target_name_override", value))
        elif flag == "--metadata":
            key, _, val = value.partition("=")
            metadata.append((key, val))
    if ca is not None:
        channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(ca), options)
    else:
        channel = grpc.insecure_channel(target, options)
    result = {}
    try:
        if method.endswith("/Stream"):
            responses = channel.unary_stream(method)(payload, timeout=10, metadata=metadata)
            result["responses"] = [r.decode() for r in responses]
            result["initial"] = metadata_dict(responses.initial_metadata())
            result["trailing"] = metadata_dict(responses.trailing_metadata())
            result["code"] = responses.code().name
        else:
            response, outcome = channel.unary_unary(method).with_call(payload, timeout=10, metadata=metadata)
            result.update(code=outcome.code().name, response=response.decode(), details=outcome.details())
            result["initial"] = metadata_dict(outcome.initial_metadata())
            result["trailing"] = metadata_dict(outcome.trailing_metadata())
    except grpc.RpcError as error:
        result.update(code=error.code().name, details=error.details())
        result["initial"] = metadata_dict(error.initial_metadata())
        result["trailing"] = metadata_dict(error.trailing_metadata())
    print(json.dumps(result), flush=True)


async def bench(args):
    target, seconds, concurrency = args[0], float(args[1]), int(args[2])
    calls = errors = 0
    async with grpc.aio.insecure_channel(target) as channel:
        method = channel.unary_unary("/test.Echo/Unary")
        await method(b"warm-up", timeout=10)
        end = time.monotonic() + seconds

        async def worker():
            nonlocal calls, errors
            while time.monotonic() < end:
                try:
                    await method(b"ping", timeout=10)
                    calls += 1
                except grpc.RpcError:
                    errors += 1

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.monotonic() - started
    print(json.dumps({"calls": calls, "errors": errors, "seconds": round(elapsed, 2), "calls_per_second": round(calls / elapsed)}))


if __name__ == "__main__":
    mode, rest = sys.argv[1], sys.argv[2:]
    if mode == "server":
        serve(rest)
    elif mode == "call":
        call(rest)
    elif mode == "bench":
        asyncio.run(bench(rest))
    else:
        sys.exit("unknown mode " + mode)
