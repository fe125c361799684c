"""Channels and the registry that maps each kind of channel to the provider that serves it."""

from __future__ import annotations

from collections.abc import Iterable

from broadcast.models import ChannelKind
from broadcast.settings import Settings
from channels.base import Channel, InboundRoute
from channels.twilio.sms import TwilioSMS

# One provider per channel kind; a kind missing here cannot be used in an alert.
REGISTRY: dict[ChannelKind, type[Channel]] = {
    ChannelKind.sms: TwilioSMS,
}


def channel_class(kind: ChannelKind) -> type[Channel]:
    """The provider class serving ``kind``; KeyError naming the kind if none does."""
    try:
        return REGISTRY[kind]
    except KeyError:
        raise KeyError(f"no provider serves the {kind.value} channel") from None


def check_configured(settings: Settings, kinds: Iterable[ChannelKind]) -> list[str]:
    """Every reason the given channels could not send with these settings (empty: all fine)."""
    problems: list[str] = []
    for kind in kinds:
        cls = REGISTRY.get(kind)
        if cls is None:
            problems.append(f"the {kind.value} channel is not available")
        else:
            problems += [f"{kind.value}: {p}" for p in cls.configuration_problems(settings)]
    return problems


def inbound_routes(settings: Settings) -> list[InboundRoute]:
    """Every inbound route of every registered channel."""
    routes: list[InboundRoute] = []
    for cls in REGISTRY.values():
        routes += cls(settings).routes()
    return routes
