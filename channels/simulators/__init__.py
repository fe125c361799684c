"""Local servers that speak the providers' real protocols, so the real channel code runs everywhere.

Every simulated provider mounts its routes on one server (one address for the demo, the tests and
the benchmarks) and plays the network's side on its own: callbacks, replies, key presses, acks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Sequence
from typing import Any

import aiohttp
from aiohttp import web

HANG_SECONDS = 30.0  # how long an injected "timeout" keeps a request waiting


class SimulatedProvider:
    """One provider's side of the simulation: its routes, and the background work they start."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()
        self.session: aiohttp.ClientSession | None = None

    def add_routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run network-side work (a callback, a reply) in the background, tracked for settle()."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def pending(self) -> int:
        return len(self._tasks)

    async def cancel(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class Simulators:
    """All simulated providers behind one local HTTP server."""

    def __init__(self, providers: Sequence[SimulatedProvider]) -> None:
        self.providers = list(providers)
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.base_url = ""

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on host:port (0: any free port); returns the base URL."""
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64))
        # A JPush batch carries up to 1,000 notifications, about 1.5 KB each.
        app = web.Application(client_max_size=4 * 1024 * 1024)
        for provider in self.providers:
            provider.session = self._session
            provider.add_routes(app)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        try:
            await site.start()
        except OSError:
            await self.stop()
            raise
        server: Any = site._server
        self.base_url = f"http://{host}:{server.sockets[0].getsockname()[1]}"
        return self.base_url

    async def stop(self) -> None:
        for provider in self.providers:
            await provider.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    @property
    def pending(self) -> int:
        """Callbacks, replies and acks still to come."""
        return sum(p.pending for p in self.providers)

    async def settle(self, timeout: float = 30.0) -> None:
        """Wait until every scheduled callback and reply has been sent."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.pending:
            if loop.time() > deadline:
                raise TimeoutError(f"{self.pending} simulated callbacks still pending")
            await asyncio.sleep(0.02)
