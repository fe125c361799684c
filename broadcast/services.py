"""Starting the long-running parts in one event loop: the web app and, without real
credentials, the Twilio-compatible simulator."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlparse

from aiohttp import web

from broadcast.context import Context
from broadcast.web import create_app
from channels.simulators.twilio import TwilioBehaviour, TwilioSimulator
from channels.twilio.account import twilio_account
from channels.twilio.sms import INBOUND_PATH


class PortInUse(RuntimeError):
    """A port the service needs is taken."""


@dataclass
class Services:
    web_runner: web.AppRunner
    simulator: TwilioSimulator | None
    url: str

    async def stop(self) -> None:
        if self.simulator is not None:
            await self.simulator.stop()
        await self.web_runner.cleanup()


async def start_services(ctx: Context, behaviour: TwilioBehaviour | None = None) -> Services:
    """Serve the web app on the configured host and port; start the simulator when Twilio is simulated."""
    settings = ctx.settings
    simulator = None
    account = twilio_account(settings)
    if account.simulated:
        api = urlparse(account.api_base)
        simulator = TwilioSimulator(account.sid, account.auth_token, settings.public_url + INBOUND_PATH, behaviour)
        try:
            await simulator.start(api.hostname or "127.0.0.1", api.port or 80)
        except OSError as exc:
            await simulator.stop()
            raise PortInUse(
                f"the Twilio simulator cannot listen on {account.api_base} ({exc.strerror}); "
                "set BROADCAST_TWILIO_API_BASE to a free address"
            ) from exc
    runner = web.AppRunner(create_app(ctx), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, settings.host, settings.port).start()
    except OSError as exc:
        await runner.cleanup()
        if simulator is not None:
            await simulator.stop()
        raise PortInUse(
            f"cannot listen on {settings.host}:{settings.port} ({exc.strerror}); set BROADCAST_PORT to a free port"
        ) from exc
    return Services(runner, simulator, f"http://{settings.host}:{settings.port}")
