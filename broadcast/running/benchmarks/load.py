"""A load generator for webhooks: ``python -m broadcast.running.benchmarks.load``, a process of its own.

It replays prepared HTTP requests (a file of length-prefixed raw requests) over keep-alive
connections to one loopback address, either at a fixed rate (open loop: a request's latency is
counted from the moment it was due, so a server that falls behind is charged for the queue it
builds) or as fast as the server answers (closed loop: each connection sends its next request when
the last one is answered). Stops after the given seconds or when the requests run out, whichever
comes first, and prints one JSON line: requests answered, statuses, rate and latency quantiles.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import struct
import sys
import time
from collections import Counter, deque
from collections.abc import Iterator
from pathlib import Path

DRAIN_SECONDS = 10.0
_LENGTH = struct.Struct("<I")


def write_requests(path: Path, requests: list[bytes]) -> None:
    """Store raw HTTP requests for the generator."""
    with open(path, "wb") as out:
        for request in requests:
            out.write(_LENGTH.pack(len(request)))
            out.write(request)


def read_requests(path: Path) -> list[bytes]:
    data = path.read_bytes()
    out, at = [], 0
    while at < len(data):
        (size,) = _LENGTH.unpack_from(data, at)
        out.append(data[at + 4 : at + 4 + size])
        at += 4 + size
    return out


class Connection(asyncio.Protocol):
    """One keep-alive connection with at most one request outstanding."""

    def __init__(self, load: Load) -> None:
        self.load = load
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.due = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def send(self, request: bytes, due: float) -> None:
        assert self.transport is not None
        self.due = due
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        head_end = self.buffer.find(b"\r\n\r\n")
        if head_end < 0:
            return
        head = self.buffer[:head_end].decode("latin-1")
        length = 0
        for line in head.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        if len(self.buffer) < head_end + 4 + length:
            return
        self.buffer = self.buffer[head_end + 4 + length :]
        status = int(head.split(" ", 2)[1])
        self.load.answered(self, status, self.due)

    def connection_lost(self, exc: Exception | None) -> None:
        self.load.lost(self)


class Load:
    """Sends requests over ``connections`` connections and records what comes back."""

    def __init__(self, requests: list[bytes], connections: int) -> None:
        self.requests: Iterator[bytes] = iter(requests)
        self.total = len(requests)
        self.connections = connections
        self.idle: deque[Connection] = deque()
        self.waiters: deque[asyncio.Future[None]] = deque()
        self.latencies: list[float] = []
        self.statuses: Counter[int] = Counter()
        self.sent = 0
        self.last = 0.0
        self.errors = 0
        self.closed_loop = False
        self.sending_done = False
        self.stop_at = 0.0
        self.finished = asyncio.Event()

    async def connect(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(self.connections):
            _, protocol = await loop.create_connection(lambda: Connection(self), host, port)
            self.idle.append(protocol)

    def answered(self, conn: Connection, status: int, due: float) -> None:
        now = time.perf_counter()
        self.last = now
        self.latencies.append(now - due)
        self.statuses[status] += 1
        if self.closed_loop and now < self.stop_at and self.send_on(conn, now):
            return
        self.idle.append(conn)
        if self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
        self.check_finished()

    def lost(self, conn: Connection) -> None:
        self.errors += 1
        if conn in self.idle:
            self.idle.remove(conn)
        self.check_finished()

    def check_finished(self) -> None:
        """Once sending has ended: set ``finished`` when every request sent has been answered (or lost)."""
        if self.sending_done and self.sent <= len(self.latencies) + self.errors:
            self.finished.set()

    def send_on(self, conn: Connection, due: float) -> bool:
        request = next(self.requests, None)
        if request is None:
            return False
        self.sent += 1
        conn.send(request, due)
        return True

    async def open_loop(self, rate: float, seconds: float) -> None:
        """Send at ``rate`` a second for ``seconds``; latency counts from when each request was due."""
        started = time.perf_counter()
        count = min(self.total, int(rate * seconds))
        for i in range(count):
            due = started + i / rate
            if time.perf_counter() > started + seconds + DRAIN_SECONDS:
                break  # the server fell far behind: stop offering, report what was answered
            delay = due - time.perf_counter()
            if delay > 0.001:
                await asyncio.sleep(delay)
            while not self.idle:
                waiter = asyncio.get_running_loop().create_future()
                self.waiters.append(waiter)
                await waiter
            if not self.send_on(self.idle.popleft(), due):
                break

    async def closed(self, seconds: float) -> None:
        """Every connection sends again as soon as it is answered, for ``seconds``."""
        self.closed_loop = True
        now = time.perf_counter()
        self.stop_at = now + seconds
        while self.idle:
            if not self.send_on(self.idle.popleft(), now):
                break
        await asyncio.sleep(seconds)


def quantile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


async def main_async(args: argparse.Namespace) -> dict[str, object]:
    load = Load(read_requests(Path(args.requests)), args.connections)
    await load.connect(args.host, args.port)
    started = time.perf_counter()
    if args.rate > 0:
        await load.open_loop(args.rate, args.seconds)
    else:
        await load.closed(args.seconds)
    load.sending_done = True
    load.check_finished()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(load.finished.wait(), DRAIN_SECONDS)
    elapsed = time.perf_counter() - started
    answered = len(load.latencies)
    ms = [x * 1000 for x in load.latencies]
    return {
        "mode": "open" if args.rate > 0 else "closed",
        "offered_rate": args.rate,
        "connections": args.connections,
        "sent": load.sent,
        "answered": answered,
        "errors": load.errors,
        "statuses": {str(k): v for k, v in sorted(load.statuses.items())},
        "seconds": round(elapsed, 2),
        "rate": round(answered / max(1e-9, load.last - started), 1),
        "latency_ms": {
            "p50": round(quantile(ms, 0.50), 2),
            "p90": round(quantile(ms, 0.90), 2),
            "p99": round(quantile(ms, 0.99), 2),
            "max": round(max(ms, default=0.0), 2),
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--requests", required=True, help="file of length-prefixed raw HTTP requests")
    parser.add_argument("--rate", type=float, default=0.0, help="requests a second; 0: as fast as answered")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args(argv)
    print(json.dumps(asyncio.run(main_async(args))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
