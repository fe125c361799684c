"""Starting the long-running parts in one event loop: the web app and, for every provider without
real credentials, its simulator."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlparse

from aiohttp import web

from broadcast.core.context import Context
from broadcast.delivering.displays import ScreenWatch
from broadcast.web.app import create_app
from broadcast.web.app_api import ACK_PATH
from channels.push.fcm import simulator_service_account
from channels.push.jpush import SIMULATOR_APP_KEY, SIMULATOR_MASTER_SECRET
from channels.simulators import SimulatedProvider, Simulators
from channels.simulators.push import FCMSimulator, JPushSimulator, PushBehaviour
from channels.simulators.twilio import TwilioBehaviour, TwilioSimulator
from channels.twilio.account import twilio_account, with_overrides
from channels.twilio.sms import INBOUND_PATH

P = TypeVar("P", bound=SimulatedProvider)


class PortInUse(RuntimeError):
    """A port the service needs is taken."""


@dataclass
class Services:
    web_runner: web.AppRunner
    simulators: Simulators | None
    url: str
    screen_watch: ScreenWatch | None = None

    def simulator(self, kind: type[P]) -> P:
        """The running simulator of a kind (KeyError if that provider is real)."""
        for provider in self.simulators.providers if self.simulators else []:
            if isinstance(provider, kind):
                return provider
        raise KeyError(f"no {kind.__name__} is running")

    async def stop(self) -> None:
        if self.screen_watch is not None:
            await self.screen_watch.stop()
        if self.simulators is not None:
            await self.simulators.stop()
        await self.web_runner.cleanup()

    @property
    def pending(self) -> int:
        """Simulated callbacks, replies and taps still to come."""
        return self.simulators.pending if self.simulators is not None else 0


def simulated_providers(
    ctx: Context, twilio: TwilioBehaviour | None = None, push: PushBehaviour | None = None
) -> list[SimulatedProvider]:
    """A simulator for each provider that has no real credentials."""
    settings = ctx.settings
    providers: list[SimulatedProvider] = []
    account = twilio_account(settings)
    if account.simulated:
        # The inbound-message URL as operators are told to configure it: with the retry overrides.
        inbound = with_overrides(settings.public_url + INBOUND_PATH, settings)
        behaviour = twilio or TwilioBehaviour.from_knobs(settings.simulator_twilio)
        providers.append(TwilioSimulator(account.sid, account.auth_token, inbound, behaviour))
    ack_url = settings.public_url + ACK_PATH
    if not (settings.jpush_app_key and settings.jpush_master_secret):
        providers.append(JPushSimulator(SIMULATOR_APP_KEY, SIMULATOR_MASTER_SECRET, ack_url, push))
    if settings.fcm_service_account_file is None:
        providers.append(FCMSimulator(simulator_service_account(settings), ack_url, push))
    return providers


async def start_services(
    ctx: Context, twilio: TwilioBehaviour | None = None, push: PushBehaviour | None = None
) -> Services:
    """Serve the web app on the configured host and port, and the simulators at simulator_url."""
    settings = ctx.settings
    providers = simulated_providers(ctx, twilio, push)
    simulators = None
    if providers:
        simulators = Simulators(providers)
        address = urlparse(settings.simulator_url)
        try:
            await simulators.start(address.hostname or "127.0.0.1", address.port or 80)
        except OSError as exc:
            raise PortInUse(
                f"the provider simulators cannot listen on {settings.simulator_url} ({exc.strerror}); "
                "set BROADCAST_SIMULATOR_URL to a free address"
            ) from exc
    runner = web.AppRunner(create_app(ctx), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, settings.host, settings.port).start()
    except OSError as exc:
        await runner.cleanup()
        if simulators is not None:
            await simulators.stop()
        raise PortInUse(
            f"cannot listen on {settings.host}:{settings.port} ({exc.strerror}); set BROADCAST_PORT to a free port"
        ) from exc
    watch = None
    if settings.mqtt_url or ctx.redis.hlen(ctx.keys.screens):
        # Screens report back over MQTT: listen wherever there are screens (or a broker was given).
        watch = ScreenWatch(ctx)
        watch.start()
    return Services(runner, simulators, f"http://{settings.host}:{settings.port}", watch)
