"""The selection pass: one walk over the targeted committees' members indexes, storing nothing.

Both the target preview (counts) and the roster freeze (ordinals) are built on it, so what an
officer previews is what the roster will hold. It reads only members indexes and place lists,
a committee at a time, in roster order.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import redis

from audiences.areas import AreaTree
from audiences.groups import Audience, audience
from audiences.residents import MEMBER, channel_order
from audiences.targeting import CommunitySelection, resolve
from broadcast.core.keys import Keys
from broadcast.core.models import ChannelKind, Level, Target

NO_CHANNEL = "none"  # members none of whose channels the alert uses
_READ_CHUNK = 400  # committees fetched per round trip


class ChannelChooser:
    """Each profile's first channel among those the alert uses; computed once per profile value."""

    def __init__(self, channels: Sequence[ChannelKind]) -> None:
        self.personal = [c for c in channels if c is not ChannelKind.screen]
        self._cache: dict[int, str] = {}

    def __call__(self, profile: int) -> str:
        channel = self._cache.get(profile)
        if channel is None:
            channel = next((c.value for c in channel_order(profile) if c in self.personal), NO_CHANNEL)
            self._cache[profile] = channel
        return channel


@dataclass
class CommitteeMembers:
    """The selected members of one committee, in roster order, and the places they are numbered by."""

    community: str
    places: list[str]
    members: list[tuple[int, int, int]]  # (rid, place number, profile)


@dataclass
class Selection:
    """A resolved target: the committees it covers and the rule for the people in them."""

    communities: list[CommunitySelection]
    audience: Audience

    def members(self, client: redis.Redis, keys: Keys) -> Iterator[CommitteeMembers]:
        """Each covered committee's selected members, committee by committee in roster order."""
        for start in range(0, len(self.communities), _READ_CHUNK):
            chunk = self.communities[start : start + _READ_CHUNK]
            with client.pipeline(transaction=False) as pipe:
                for sel in chunk:
                    pipe.get(keys.members(sel.community))
                    pipe.get(keys.places(sel.community))
                raw = pipe.execute()
            for i, sel in enumerate(chunk):
                packed, places_raw = raw[2 * i], raw[2 * i + 1]
                if not packed:
                    continue
                places: list[str] = json.loads(places_raw)
                covered = [sel.covers(p) for p in places]
                kept = self.audience.admitted(MEMBER.iter_unpack(packed), covered)
                if kept:
                    yield CommitteeMembers(sel.community, places, kept)


def select(
    client: redis.Redis,
    keys: Keys,
    tree: AreaTree,
    target: Target,
    level: Level | None,
    override_levels: Sequence[Level],
) -> Selection:
    """Resolve a target; a TargetError names unknown areas or groups before anything is read."""
    communities = resolve(tree, target)
    return Selection(communities, audience(client, keys, target.groups, level, override_levels))
