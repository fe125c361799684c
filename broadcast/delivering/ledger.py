"""Per-recipient state of one alert: bitmaps by ordinal, counters by committee, and time slots.

Marking is idempotent: a bit that is already set changes no counter, so a repeated callback or a
retried batch never counts twice. Each recipient has a 16-byte slot:

    bytes 0-3   first sent          u32 seconds after the alert was issued, plus one (0 = never)
    bytes 4-7   first delivered     "
    bytes 8-11  first acknowledged  "
    byte  12    channel that delivered first
    byte  13    how they confirmed (AckMethod)
    bytes 14-15 last error code     u16

Each recipient is also in exactly one *stage* of their sending (u4 by ordinal): queued, sent
(accepted by a provider, no report yet), rerouted (a channel failed; the next one is on its way),
delivered, or failed (no channel left). A stage moves only forward (delivered is final; a late
delivery report still turns failed into delivered), in the same call that sets the bit causing it,
and its counters ("stage:{name}") are kept with it: at every moment the stages add up to the roster.
"""

from __future__ import annotations

import bisect
import json
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum

import redis.asyncio

from broadcast.core.keys import Keys, as_bytes, as_text
from broadcast.core.models import AckMethod, ChannelKind, EventKind

SLOT_SIZE = 16
SLOT_OFFSET = {EventKind.sent: 0, EventKind.delivered: 4, EventKind.acknowledged: 8}
CHANNEL_CODE = {kind: i + 1 for i, kind in enumerate(ChannelKind)}
CHANNEL_BY_CODE = {v: k for k, v in CHANNEL_CODE.items()}
METHOD_CODE = {m: i + 1 for i, m in enumerate(AckMethod)}
METHOD_BY_CODE = {v: k for k, v in METHOD_CODE.items()}


class Stage(IntEnum):
    """Where one recipient's sending is; each stage lists the stages it may follow."""

    queued = 0
    sent = 1
    rerouted = 2
    delivered = 3
    failed = 4

    @property
    def follows(self) -> int:
        """A bit mask of the stages a recipient may move to this one from."""
        allowed = {
            Stage.queued: (),
            Stage.sent: (Stage.queued, Stage.rerouted),
            Stage.rerouted: (Stage.queued, Stage.sent),
            Stage.delivered: (Stage.queued, Stage.sent, Stage.rerouted, Stage.failed),
            Stage.failed: (Stage.queued, Stage.sent, Stage.rerouted),
        }[self]
        return sum(1 << s for s in allowed)


STAGE_NAMES = {s.value: s.name for s in Stage}

# Moves ordinals to stage `to` where their stage is in `mask` (two BITFIELD calls a thousand), keeping
# the "stage:{name}" counters. KEYS[3] counts, KEYS[5] stages.
_MOVE = """
local stage_names = {[0] = 'queued', 'sent', 'rerouted', 'delivered', 'failed'}
local function move_all(ords, to, mask)
  local moved = {[0] = 0, 0, 0, 0, 0}
  for first = 1, #ords, 1000 do
    local gets, chunk = {}, {}
    for i = first, math.min(#ords, first + 999) do
      chunk[#chunk + 1] = ords[i]
      gets[#gets + 1] = 'GET'; gets[#gets + 1] = 'u4'; gets[#gets + 1] = '#' .. ords[i]
    end
    local olds = redis.call('BITFIELD', KEYS[5], unpack(gets))
    local sets = {}
    for i, ord in ipairs(chunk) do
      local old = olds[i]
      if old ~= to and math.floor(mask / (2 ^ old)) % 2 == 1 then
        sets[#sets + 1] = 'SET'; sets[#sets + 1] = 'u4'; sets[#sets + 1] = '#' .. ord; sets[#sets + 1] = to
        moved[old] = moved[old] - 1
        moved[to] = moved[to] + 1
      end
    end
    if #sets > 0 then redis.call('BITFIELD', KEYS[5], unpack(sets)) end
  end
  for stage = 1, 4 do
    if moved[stage] ~= 0 then redis.call('HINCRBY', KEYS[3], 'stage:' .. stage_names[stage], moved[stage]) end
  end
end
"""

# KEYS: channel bitmap ("" to skip), recipient bitmap ("" to skip), counts, slots, stages
# ARGV: event, channel, slot offset (-1: none), slot bytes, extra offset (-1: none), extra bytes,
#       then the (ordinal, committee index) pairs in one argument, "ordinal committee;" each (one
#       argument rather than two a pair: packing arguments is most of what a call costs the client),
#       then the stage a fresh mark moves the recipient to (-1: none) and the mask of stages it may leave
_MARK = (
    _MOVE
    + """
local event, channel = ARGV[1], ARGV[2]
local slot_off, slot_val = tonumber(ARGV[3]), ARGV[4]
local extra_off, extra_val = tonumber(ARGV[5]), ARGV[6]
local stage_to, stage_mask = tonumber(ARGV[8]), tonumber(ARGV[9])
local by_channel, by_recipient = 0, 0
local fresh_ordinals = {}
for o, committee in string.gmatch(ARGV[7], "(%d+) (%d+);") do
  local ord = tonumber(o)
  local fresh = true
  if KEYS[1] ~= "" then
    fresh = redis.call('SETBIT', KEYS[1], ord, 1) == 0
    if fresh then by_channel = by_channel + 1 end
  end
  if fresh then fresh_ordinals[#fresh_ordinals + 1] = ord end
  if fresh and KEYS[2] ~= "" and redis.call('SETBIT', KEYS[2], ord, 1) == 0 then
    by_recipient = by_recipient + 1
    redis.call('HINCRBY', KEYS[3], event .. '@' .. committee, 1)
    if slot_off >= 0 then redis.call('SETRANGE', KEYS[4], ord * 16 + slot_off, slot_val) end
  end
  if fresh and extra_off >= 0 then redis.call('SETRANGE', KEYS[4], ord * 16 + extra_off, extra_val) end
end
if by_channel > 0 then redis.call('HINCRBY', KEYS[3], event .. ':' .. channel, by_channel) end
if by_recipient > 0 then redis.call('HINCRBY', KEYS[3], event, by_recipient) end
if stage_to >= 0 then move_all(fresh_ordinals, stage_to, stage_mask) end
return {by_recipient, fresh_ordinals}
"""
)

# KEYS: -, -, counts, -, stages. ARGV: stage, mask, then ordinals "o;o;…"
_STAGE = (
    _MOVE
    + """
local ords = {}
for o in string.gmatch(ARGV[3], "(%d+);") do ords[#ords + 1] = tonumber(o) end
move_all(ords, tonumber(ARGV[1]), tonumber(ARGV[2]))
return 1
"""
)


@dataclass(frozen=True)
class RosterIndex:
    """Which committee each ordinal belongs to: committees in roster order with their first ordinal."""

    communities: list[str]
    starts: list[int]
    size: int

    def community_index(self, ordinal: int) -> int:
        if not 0 <= ordinal < self.size:
            raise ValueError(f"ordinal {ordinal} is outside the roster (0..{self.size - 1})")
        return bisect.bisect_right(self.starts, ordinal) - 1

    def community_of(self, ordinal: int) -> str:
        return self.communities[self.community_index(ordinal)]


_index_cache: dict[tuple[str, str], RosterIndex] = {}


async def roster_index(client: redis.asyncio.Redis, keys: Keys, alert_id: str) -> RosterIndex | None:
    """The frozen roster's committee index (cached: a frozen roster never changes)."""
    cache_key = (keys.ns, alert_id)
    if cache_key in _index_cache:
        return _index_cache[cache_key]
    raw = await client.get(keys.roster_communities(alert_id))
    if raw is None:
        return None
    data = json.loads(raw)
    index = RosterIndex([c for c, _ in data["communities"]], [s for _, s in data["communities"]], data["size"])
    if len(_index_cache) > 256:
        _index_cache.clear()
    _index_cache[cache_key] = index
    return index


def slot_time(issued_at: datetime, at: datetime) -> bytes:
    """A slot timestamp: whole seconds after issue, plus one so that zero means 'never'."""
    return struct.pack(">I", max(0, int((at - issued_at).total_seconds())) + 1)


class Ledger:
    """Reads and marks the per-recipient state of one alert."""

    def __init__(self, client: redis.asyncio.Redis, keys: Keys, alert_id: str) -> None:
        self.client = client
        self.keys = keys
        self.alert_id = alert_id

    def bitmap(self, state: str) -> str:
        return self.keys.bits(self.alert_id, state)

    async def mark(
        self,
        event: EventKind,
        channel: ChannelKind | None,
        ordinals: Sequence[tuple[int, int]],
        *,
        issued_at: datetime,
        at: datetime,
        recipient_level: bool = True,
        method: AckMethod | None = None,
        error_code: int | None = None,
        label: str | None = None,
        stage: Stage | None = None,
    ) -> tuple[int, list[int]]:
        """Record ``event`` for (ordinal, committee index) pairs.

        Returns how many recipients are new to the event, and the ordinals new to it on this channel.

        ``recipient_level`` False records a channel-level fact only (a failure that another
        channel may still make good); ``channel`` None records the recipient level only. ``stage``:
        where the mark moves the recipients it is new for (if their stage may move there).
        """
        if not ordinals:
            return (0, [])
        name = label or (channel.value if channel is not None else "")
        channel_key = self.bitmap(f"{event.value}:{name}") if channel is not None else ""
        if event in (EventKind.acknowledged, EventKind.needs_help):
            channel_key = ""  # one confirmation per person, whichever way it came
        recipient_key = self.bitmap(event.value) if recipient_level else ""
        slot_off = SLOT_OFFSET.get(event, -1)
        slot_val = slot_time(issued_at, at) if slot_off >= 0 else b""
        extra_off, extra_val = -1, b""
        if event is EventKind.delivered and channel is not None:
            extra_off, extra_val = 12, bytes([CHANNEL_CODE[channel]])
        elif event is EventKind.acknowledged and method is not None:
            extra_off, extra_val = 13, bytes([METHOD_CODE[method]])
        elif event is EventKind.failed and error_code is not None:
            extra_off, extra_val = 14, struct.pack(">H", min(error_code, 0xFFFF))
        pairs = "".join(f"{ordinal} {cidx};" for ordinal, cidx in ordinals)
        args: list[str | int | bytes] = [event.value, name, slot_off, slot_val, extra_off, extra_val, pairs]
        args += [stage.value, stage.follows] if stage is not None else [-1, 0]
        keys = [
            channel_key,
            recipient_key,
            self.keys.counts(self.alert_id),
            self.keys.slots(self.alert_id),
            self.keys.alert_stage(self.alert_id),
        ]
        result = await self.client.eval(_MARK, len(keys), *keys, *args)
        return int(result[0]), [int(o) for o in result[1]]

    async def move(self, stage: Stage, ordinals: Iterable[int]) -> None:
        """Move recipients to ``stage`` (where their present stage allows it), keeping the counters."""
        packed = "".join(f"{o};" for o in ordinals)
        if packed:
            stages = self.keys.alert_stage(self.alert_id)
            keys = ["", "", self.keys.counts(self.alert_id), "", stages]
            await self.client.eval(_STAGE, len(keys), *keys, stage.value, stage.follows, packed)

    async def stages(self, ordinals: Sequence[int]) -> list[Stage]:
        """The present stage of each ordinal."""
        if not ordinals:
            return []
        args: list[str] = []
        for o in ordinals:
            args += ("GET", "u4", f"#{o}")
        raw = await self.client.execute_command("BITFIELD", self.keys.alert_stage(self.alert_id), *args)
        return [Stage(int(v)) for v in raw]

    async def bits(self, state: str, ordinals: Sequence[int]) -> list[bool]:
        """Whether each ordinal has ``state`` set."""
        if not ordinals:
            return []
        key = self.bitmap(state)
        lo, hi = min(ordinals), max(ordinals)
        raw = as_bytes(await self.client.getrange(key, lo // 8, hi // 8))
        out = []
        for o in ordinals:
            i = o // 8 - lo // 8
            out.append(i < len(raw) and bool(raw[i] & (0x80 >> (o % 8))))
        return out

    async def set_bits(self, state: str, ordinals: Iterable[int], value: int = 1) -> None:
        """Set (or clear) a bitmap's bits without counting (bookkeeping such as 'attempted')."""
        # One BITFIELD command per thousand bits, not a SETBIT per bit: same bits, a fraction of
        # the client's work.
        key = self.bitmap(state)
        args: list[str | int] = []
        for o in ordinals:
            args += ("SET", "u1", o, value)
            if len(args) >= 4000:
                await self.client.execute_command("BITFIELD", key, *args)
                args = []
        if args:
            await self.client.execute_command("BITFIELD", key, *args)

    async def count(self, field: str, amount: int = 1) -> None:
        """Add to a plain counter of this alert (duplicates, retries …)."""
        if amount:
            await self.client.hincrby(self.keys.counts(self.alert_id), field, amount)

    async def counts(self) -> dict[str, int]:
        raw = await self.client.hgetall(self.keys.counts(self.alert_id))
        return {as_text(k): int(v) for k, v in raw.items()}

    async def slot(self, ordinal: int) -> bytes:
        raw = as_bytes(
            await self.client.getrange(
                self.keys.slots(self.alert_id), ordinal * SLOT_SIZE, ordinal * SLOT_SIZE + SLOT_SIZE - 1
            )
        )
        return raw.ljust(SLOT_SIZE, b"\0")
