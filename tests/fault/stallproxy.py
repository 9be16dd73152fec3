#!/usr/bin/env python3
"""stallproxy: a small fault-injecting TCP proxy for the fault rig.

    stallproxy.py LISTEN_HOST:PORT TARGET_HOST:PORT [--delay-ms N]

Forwards every connection to TARGET, each chunk delayed by --delay-ms (both
directions). SIGUSR1 stalls all forwarding (bytes are held, connections stay
open, as a congested or frozen path looks); SIGUSR2 resumes. Prints READY
when listening. Stops on SIGTERM. Only for the project's own test hosts.
"""
import argparse
import asyncio
import signal
import sys


def parse_addr(text):
    host, _, port = text.rpartition(":")
    return host, int(port)


async def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("listen")
    ap.add_argument("target")
    ap.add_argument("--delay-ms", type=float, default=0.0)
    args = ap.parse_args()
    lhost, lport = parse_addr(args.listen)
    thost, tport = parse_addr(args.target)
    flowing = asyncio.Event()
    flowing.set()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, flowing.clear)
    loop.add_signal_handler(signal.SIGUSR2, flowing.set)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)

    async def pump(reader, writer):
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                if args.delay_ms:
                    await asyncio.sleep(args.delay_ms / 1000.0)
                await flowing.wait()
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            try:
                writer.close()
            except Exception:
                pass

    async def handle(creader, cwriter):
        try:
            treader, twriter = await asyncio.open_connection(thost, tport)
        except OSError:
            cwriter.close()
            return
        await asyncio.gather(pump(creader, twriter), pump(treader, cwriter))

    server = await asyncio.start_server(handle, lhost, lport)
    print("READY", flush=True)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
