"""A TCP proxy whose mode a file controls, for fault-injection tests.

    python fault_proxy.py TARGET_HOST TARGET_PORT MODE_FILE

Prints its listening port on the first line of stdout. MODE_FILE holds one word, read every
100 ms and applied to every connection, open or new:

- ``forward``: bytes flow both ways;
- ``blackhole``: connections stay open, bytes sent are swallowed and nothing is answered,
  no FIN, no RST: what a NAT or load balancer that forgot a connection does.
"""

import asyncio
import pathlib
import sys

TARGET_HOST, TARGET_PORT, MODE_FILE = sys.argv[1], int(sys.argv[2]), pathlib.Path(sys.argv[3])
mode = "forward"


async def watch_mode() -> None:
    global mode
    while True:
        try:
            mode = MODE_FILE.read_text().strip() or "forward"
        except OSError:
            pass
        await asyncio.sleep(0.1)


async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while data := await source.read(65536):
            if mode == "blackhole":
                continue  # swallowed: the peer hears nothing
            sink.write(data)
            await sink.drain()
    except (OSError, asyncio.IncompleteReadError):
        pass
    finally:
        try:
            sink.close()
        except OSError:
            pass


async def handle(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
    try:
        upstream_reader, upstream_writer = await asyncio.open_connection(TARGET_HOST, TARGET_PORT)
    except OSError:
        client_writer.close()
        return
    await asyncio.gather(pipe(client_reader, upstream_writer), pipe(upstream_reader, client_writer))


async def main() -> None:
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    asyncio.create_task(watch_mode())
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
