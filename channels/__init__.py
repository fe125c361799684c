"""Channels, and the registry that says which provider serves each kind of channel."""

from __future__ import annotations

from collections.abc import Iterable

from broadcast.core.models import ChannelKind
from broadcast.core.settings import Settings
from channels.base import Channel, InboundRoute
from channels.push.fcm import FCM
from channels.push.jpush import JPush
from channels.screens.display import Screens
from channels.twilio.sms import TwilioSMS
from channels.twilio.voice import TwilioVoice

# Every provider by name. A channel kind is served by one of them, chosen by provider_name().
PROVIDERS: dict[str, type[Channel]] = {
    TwilioSMS.name: TwilioSMS,
    TwilioVoice.name: TwilioVoice,
    JPush.name: JPush,
    FCM.name: FCM,
    Screens.name: Screens,
}


def provider_name(kind: ChannelKind, settings: Settings) -> str | None:
    """The provider serving ``kind`` under these settings (None: the kind has no provider)."""
    return {
        ChannelKind.sms: TwilioSMS.name,
        ChannelKind.voice: TwilioVoice.name,
        ChannelKind.push: settings.push_provider,
        ChannelKind.screen: Screens.name,
    }.get(kind)


def channel_class(kind: ChannelKind, settings: Settings) -> type[Channel]:
    """The provider class serving ``kind``; KeyError naming the kind if none does."""
    name = provider_name(kind, settings)
    if name is None or name not in PROVIDERS:
        raise KeyError(f"no provider serves the {kind.value} channel")
    return PROVIDERS[name]


def available(kind: ChannelKind, settings: Settings) -> bool:
    return provider_name(kind, settings) in PROVIDERS


def check_configured(settings: Settings, kinds: Iterable[ChannelKind]) -> list[str]:
    """Every reason the given channels could not send with these settings (empty: all fine)."""
    problems: list[str] = []
    for kind in kinds:
        if not available(kind, settings):
            problems.append(f"the {kind.value} channel is not available")
            continue
        problems += [f"{kind.value}: {p}" for p in channel_class(kind, settings).configuration_problems(settings)]
    return problems


def inbound_routes(settings: Settings) -> list[InboundRoute]:
    """Every inbound route of every provider."""
    routes: list[InboundRoute] = []
    for cls in PROVIDERS.values():
        routes += cls(settings).routes()
    return routes
