"""The Twilio simulator as a process of its own, for benchmarks: ``python -m broadcast.running.benchmarks.simulator``.

It runs the same simulator the tests use, so the provider does not share a CPU with what is being
measured (or dies with the web app, in the faults benchmark), and adds ``GET /_bench/stats`` (what it
accepted, per 10 ms) and ``POST /_bench/reset`` to the simulator's own ``/_simulator/twilio`` counts.
Prints one line, ``ready <base url>``, once it listens.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys

from aiohttp import web

from broadcast.running.benchmarks.environment import BENCH_SIMULATOR_TOKEN
from channels.simulators import SimulatedProvider, Simulators
from channels.simulators.twilio import TwilioBehaviour, TwilioSimulator
from channels.twilio.account import SIMULATOR_ACCOUNT_SID


class Stats(SimulatedProvider):
    """Reads out (and resets) what the Twilio simulator accepted."""

    def __init__(self, twilio: TwilioSimulator) -> None:
        super().__init__()
        self.twilio = twilio

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/_bench/stats", self.stats)
        app.router.add_post("/_bench/reset", self.reset)

    async def stats(self, request: web.Request) -> web.Response:
        t = self.twilio
        return web.json_response(
            {
                "created": t.created,
                "parts": t.parts,
                "rejected": {str(code): n for code, n in t.rejected.items()},
                "timeline": sorted(t.timeline.items()),
                "last_departure": t.last_departure,
                "parts_timeline": sorted(t.parts_timeline.items()),
            }
        )

    async def reset(self, request: web.Request) -> web.Response:
        t = self.twilio
        t.created = t.parts = 0
        t.last_departure = 0.0
        t.rejected.clear()
        t.timeline.clear()
        t.parts_timeline.clear()
        if t.capacity is not None:
            t.capacity.tat = 0.0
        return web.json_response({"ok": True})


async def serve(port: int, behaviour: TwilioBehaviour, webhook: str | None) -> None:
    twilio = TwilioSimulator(SIMULATOR_ACCOUNT_SID, BENCH_SIMULATOR_TOKEN, webhook, behaviour)
    simulators = Simulators([twilio, Stats(twilio)])
    url = await simulators.start("127.0.0.1", port)
    print(f"ready {url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await simulators.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--capacity", type=float, default=0.0, help="messages a second sent on; 0: no limit")
    parser.add_argument("--queue-seconds", type=float, default=4 * 3600.0, help="backlog queued before 429")
    parser.add_argument("--webhook", help="the inbound SMS webhook (replies); none by default")
    parser.add_argument("--callbacks", action="store_true", help="post status callbacks")
    parser.add_argument("--reply-share", type=float, default=0.0)
    parser.add_argument("--refuse-first", type=int, default=0, help="answer the first N creates 429 (error 20429)")
    parser.add_argument(
        "--knobs", default="{}", help="more knobs as JSON (see TwilioBehaviour.KNOBS); win over the above"
    )
    args = parser.parse_args(argv)
    behaviour = TwilioBehaviour(
        reply_share=args.reply_share,
        send_status_callbacks=args.callbacks,
        keep_messages=False,
        capacity=args.capacity,
        capacity_queue_seconds=args.queue_seconds,
        inject=[429] * args.refuse_first,
    )
    behaviour = TwilioBehaviour.from_knobs(json.loads(args.knobs), behaviour)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.port, behaviour, args.webhook))
    return 0


if __name__ == "__main__":
    sys.exit(main())
