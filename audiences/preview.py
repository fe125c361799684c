"""Target preview: how many people a target reaches, where, and on which channel, before issuing.

Counts come from the same selection pass the roster freeze uses, and the screens from the same
rule the screen channel uses; nothing is stored.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import redis

from audiences.areas import AreaTree
from audiences.residents import PERSONAL_CHANNELS, VULNERABLE
from audiences.screens import target_screen_buildings
from audiences.selection import NO_CHANNEL, ChannelChooser, select
from broadcast.core.keys import Keys
from broadcast.core.models import ChannelKind, Level, Target


def preview(
    client: redis.Redis,
    keys: Keys,
    tree: AreaTree,
    target: Target,
    channels: Sequence[ChannelKind] = PERSONAL_CHANNELS,
    level: Level | None = None,
    override_levels: Sequence[Level] = (),
) -> dict[str, Any]:
    """Counts per committee (rolled up to streets and districts) and per first channel."""
    selection = select(client, keys, tree, target, level, override_levels)
    choose = ChannelChooser(channels)
    by_channel: Counter[str] = Counter()
    vulnerable = 0
    communities: list[dict[str, Any]] = []
    for committee in selection.members(client, keys):
        profiles = Counter(profile for _, _, profile in committee.members)
        for profile, n in profiles.items():
            by_channel[choose(profile)] += n
            if profile & VULNERABLE:
                vulnerable += n
        communities.append(_row(tree, committee.community, len(committee.members)))
    screens = len(target_screen_buildings(client, keys, selection.communities, target))
    used = [c.value for c in channels if c is not ChannelKind.screen]
    return {
        "targeted": sum(row["targeted"] for row in communities),
        "vulnerable": vulnerable,
        "channels": {name: by_channel.get(name, 0) for name in [*used, NO_CHANNEL]},
        "screens": screens,
        "areas": {
            "district": _roll_up(tree, communities, 6),
            "street": _roll_up(tree, communities, 9),
            "community": communities,
        },
    }


def _row(tree: AreaTree, code: str, targeted: int) -> dict[str, Any]:
    area = tree.areas.get(code)
    return {"code": code, "name": area.name if area else code, "targeted": targeted}


def _roll_up(tree: AreaTree, rows: list[dict[str, Any]], digits: int) -> list[dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        code = row["code"][:digits].ljust(12, "0")
        out.setdefault(code, _row(tree, code, 0))["targeted"] += row["targeted"]
    return list(out.values())
