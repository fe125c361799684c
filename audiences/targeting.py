"""Targeting: from area codes and exclusions to the committees, and the places in them, a roster covers.

Which people inside those places are in (groups, opt-outs) is the audience's rule (``groups``);
the selection pass (``selection``) applies both.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from audiences.areas import LEVEL_ORDER, AreaLevel, AreaTree
from broadcast.core.models import Target


class TargetError(ValueError):
    """A target that names unknown areas or groups; ``field`` says which part."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass
class CommunitySelection:
    """Which part of one committee a target covers: all of it, or some grids/buildings, minus exclusions."""

    community: str
    include_prefixes: list[str] = field(default_factory=list)  # empty: the whole committee
    exclude_prefixes: list[str] = field(default_factory=list)

    def covers(self, place: str) -> bool:
        """Whether a place of the committee (building, grid or the committee itself) is in."""
        if self.include_prefixes and not place.startswith(tuple(self.include_prefixes)):
            return False
        return not place.startswith(tuple(self.exclude_prefixes)) if self.exclude_prefixes else True


def resolve(tree: AreaTree, target: Target) -> list[CommunitySelection]:
    """The committees a target reaches, in roster (code) order, each with its building filter."""
    unknown, unknown_excluded = tree.unknown(target.areas), tree.unknown(target.exclude)
    if unknown or unknown_excluded:
        named = [f"unknown area code(s): {', '.join(unknown)}"] if unknown else []
        named += [f"unknown area code(s) to exclude: {', '.join(unknown_excluded)}"] if unknown_excluded else []
        raise TargetError("; ".join(named), "target.areas" if unknown else "target.exclude")
    community_rank = LEVEL_ORDER.index(AreaLevel.community)
    selections: dict[str, CommunitySelection] = {}
    whole: set[str] = set()
    for code in target.areas:
        area = tree.get(code)
        if LEVEL_ORDER.index(area.level) <= community_rank:
            for c in tree.descendants(code, AreaLevel.community):
                if not c.placeholder:
                    selections[c.code] = CommunitySelection(c.code)
                    whole.add(c.code)
        else:
            community = tree.at_level(code, AreaLevel.community)
            assert community is not None
            sel = selections.setdefault(community.code, CommunitySelection(community.code))
            if community.code not in whole:
                sel.include_prefixes.append(code)
    for code in target.exclude:
        area = tree.get(code)
        if LEVEL_ORDER.index(area.level) <= community_rank:
            for c in tree.descendants(code, AreaLevel.community):
                selections.pop(c.code, None)
        else:
            community = tree.at_level(code, AreaLevel.community)
            if community is not None and community.code in selections:
                selections[community.code].exclude_prefixes.append(code)
    return [selections[c] for c in sorted(selections)]
