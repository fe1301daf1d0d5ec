"""A bare grpc.aio echo server: the baseline every benchmark is compared with.

No interceptors, no health, no reflection: the cost of one Python gRPC hop and nothing else.
"""

from __future__ import annotations

import asyncio

import grpc
from grpc import aio


async def echo(request: bytes, context: aio.ServicerContext) -> bytes:
    return request


async def main() -> None:
    server = aio.server()
    handler = grpc.method_handlers_generic_handler("bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)})
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"echo serving on 127.0.0.1:{port}", flush=True)
    await server.wait_for_termination()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
