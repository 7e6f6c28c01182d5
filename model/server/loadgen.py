"""An open-loop load generator: sends requests at a fixed rate, whatever the server's speed, and
measures each latency from the moment the request was due (so a slow server cannot hide its queue:
no coordinated omission). Debian's wrk has no fixed-rate mode, hence this. Run in its own process:

    python -m model.server.loadgen --url http://127.0.0.1:8080/invocations --rate 200 --seconds 10 \
        --content-type application/json --body '{"instances": [[...]]}'

Prints one JSON object: sent, ok, errors, p50_ms, p90_ms, p99_ms, max_ms, achieved_rate.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from urllib.parse import urlparse


async def _connection(host: str, port: int, request: bytes, due: asyncio.Queue, latencies: list, errors: list) -> None:
    """One client connection; reconnects when the server closes it (gunicorn's sync workers do, every time)."""
    writer = None
    while (scheduled := await due.get()) is not None:
        if writer is None:
            reader, writer = await asyncio.open_connection(host, port)
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        length, close = 0, False
        for line in head.lower().split(b"\r\n"):
            if line.startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
            close |= line.startswith(b"connection:") and b"close" in line
        await reader.readexactly(length)
        latencies.append(time.perf_counter() - scheduled)
        if not head.startswith(b"HTTP/1.1 200"):
            errors.append(head.split(b"\r\n", 1)[0].decode())
        if close:
            writer.close()
            writer = None
    if writer is not None:
        writer.close()


async def run(url: str, rate: float, seconds: float, content_type: str, body: bytes, connections: int) -> dict:
    target = urlparse(url)
    request = (f"POST {target.path} HTTP/1.1\r\nHost: {target.netloc}\r\nContent-Type: {content_type}\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    due: asyncio.Queue = asyncio.Queue()
    latencies: list[float] = []
    errors: list[str] = []
    workers = [asyncio.create_task(_connection(target.hostname, target.port, request, due, latencies, errors))
               for _ in range(connections)]
    start = time.perf_counter()
    total = int(rate * seconds)
    for number in range(total):
        scheduled = start + number / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        due.put_nowait(scheduled)
    for _ in workers:
        due.put_nowait(None)
    await asyncio.gather(*workers)
    elapsed = time.perf_counter() - start
    ordered = sorted(latencies)

    def percentile(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000, 2)

    return {"sent": total, "ok": len(latencies) - len(errors), "errors": len(errors), "p50_ms": percentile(0.50),
            "p90_ms": percentile(0.90), "p99_ms": percentile(0.99), "max_ms": round(ordered[-1] * 1000, 2),
            "achieved_rate": round(len(latencies) / elapsed, 1)}


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cli.add_argument("--url", required=True)
    cli.add_argument("--rate", type=float, default=200.0, help="requests a second")
    cli.add_argument("--seconds", type=float, default=10.0)
    cli.add_argument("--content-type", default="application/json")
    cli.add_argument("--body", required=True)
    cli.add_argument("--connections", type=int, default=32, help="connections kept open (enough never to queue here)")
    args = cli.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    print(json.dumps(asyncio.run(run(args.url, args.rate, args.seconds, args.content_type, args.body.encode(),
                                     args.connections))))


if __name__ == "__main__":
    main()
