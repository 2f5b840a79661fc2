#!/usr/bin/env python3
"""bench/latency_proxy.py: a loopback TCP proxy that adds a fixed one-way delay in each direction.

    latency_proxy.py LISTEN_PORT TARGET_PORT DELAY_MS [PIDFILE]

Listens on 127.0.0.1:LISTEN_PORT and forwards every connection to 127.0.0.1:TARGET_PORT; each
chunk read from either side is written to the other DELAY_MS later (order kept, bandwidth not
limited), so a round trip through it costs 2 * DELAY_MS more. This is what a mail provider a few
tens of milliseconds away looks like to a poller, on a machine without tc netem. The bytes pass
through unchanged (TLS stays end to end). Runs until killed (SIGTERM).
"""
import asyncio
import os
import sys


async def pump(reader, writer, delay):
    """Copies reader to writer, each chunk `delay` seconds after it arrived."""
    loop = asyncio.get_running_loop()
    queue = asyncio.Queue()

    async def deliver():
        while True:
            due, data = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if data is None:
                try:
                    writer.write_eof()
                except OSError:
                    pass
                return
            writer.write(data)
            await writer.drain()

    sender = asyncio.create_task(deliver())
    try:
        while True:
            data = await reader.read(65536)
            queue.put_nowait((loop.time() + delay, data or None))
            if not data:
                break
        await sender
    except (ConnectionError, OSError):
        sender.cancel()
    finally:
        writer.close()


async def main():
    listen_port, target_port, delay_ms = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    delay = delay_ms / 1000.0

    async def handle(client_reader, client_writer):
        try:
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1", target_port)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(
            pump(client_reader, server_writer, delay),
            pump(server_reader, client_writer, delay),
            return_exceptions=True,
        )

    server = await asyncio.start_server(handle, "127.0.0.1", listen_port, backlog=128)
    if len(sys.argv) > 4:
        with open(sys.argv[4], "w") as f:
            f.write(f"{os.getpid()}\n")
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
