"""The escalation ladder: what happens to residents who have not confirmed, and when.

Each level has its steps (minutes after issue → action). Steps are RQ jobs scheduled at issue time
with ``enqueue_at``, so they survive restarts of every process, and are retried until done; each
step does nothing for a cancelled or expired alert, and acts only on residents who have not
confirmed when it first runs. A step is done when its effects are: its first run freezes its work
(who is called, which volunteer is texted what), each notice is recorded as sent once the provider
accepted it, and the done-mark is set only when every notice is sent; a run killed at any point is
finished by the next, which sends only what is not recorded as sent.

    voice_vulnerable   call unconfirmed vulnerable residents (elderly alone, disabled, no smartphone)
    volunteer_lists    send each grid volunteer a signed link to their unconfirmed residents
    community_rollup   send each community worker a signed link to the committee's roll-up

A resident asking for help skips the ladder: their grid volunteers and community workers get an
SMS at once (``help_case``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

import redis.asyncio

from audiences.residents import load_residents
from audiences.volunteers import Volunteer, VolunteerRole, community_volunteers, volunteers_for, volunteers_for_grid
from broadcast.composing.catalogue import load_catalogue
from broadcast.composing.compose import templates_dir
from broadcast.core.context import FOLLOWUP_QUEUE, Context, current
from broadcast.core.jobs import LADDER_STEP_JOB, enqueue_once, until_done
from broadcast.core.keys import ALERT_RETENTION_SECONDS, Keys, as_bytes, as_text
from broadcast.core.lease import Lease
from broadcast.core.models import Alert, AlertStatus, ChannelKind, Language, Level
from broadcast.core.tokens import volunteer_token
from broadcast.delivering.deliver import read_rids, schedule_batches
from broadcast.delivering.ledger import roster_index
from broadcast.issuing.alerts import load_alert_async
from broadcast.issuing.plan import expand, to_ranges
from channels.base import OutboundMessage, Outcome
from channels.twilio.sms import TwilioSMS


def event_name(ctx: Context, alert: Alert) -> str:
    """The event's Chinese name as messages use it: 台风, 暴雨 …"""
    wording = load_catalogue(templates_dir(ctx.settings)).entry(alert.event).wording(Language.zh)
    return wording.name if wording else alert.event.value


async def area_names(client: redis.asyncio.Redis, keys: Keys, codes: Sequence[str]) -> dict[str, str]:
    """Names of areas by code (buildings, grids, committees)."""
    raw = await client.hmget(keys.areas, list(codes)) if codes else []
    return {code: json.loads(r)["name"] for code, r in zip(codes, raw, strict=True) if r}


class Action(str, Enum):
    voice_vulnerable = "voice_vulnerable"
    volunteer_lists = "volunteer_lists"
    community_rollup = "community_rollup"


@dataclass(frozen=True)
class Step:
    after_minutes: int
    action: Action


CALL, LISTS, ROLLUP = Action.voice_vulnerable, Action.volunteer_lists, Action.community_rollup
LADDERS: dict[Level, tuple[Step, ...]] = {
    Level.red: (Step(10, CALL), Step(15, LISTS), Step(30, ROLLUP)),
    Level.orange: (Step(20, CALL), Step(30, LISTS), Step(60, ROLLUP)),
    Level.yellow: (Step(30, CALL), Step(90, ROLLUP)),  # door to door only when the officer asks
    Level.blue: (Step(120, ROLLUP),),
}


def ladder(alert: Alert) -> tuple[Step, ...]:
    """The steps for this alert: its level's, with door-to-door lists added when the officer asked."""
    steps = LADDERS[alert.level]
    if alert.door_to_door and all(s.action is not Action.volunteer_lists for s in steps):
        last = max(s.after_minutes for s in steps)
        steps = tuple(sorted((*steps, Step(last + 15, Action.volunteer_lists)), key=lambda s: s.after_minutes))
    return steps


def step_job_id(keys: Keys, alert_id: str, index: int) -> str:
    return f"{keys.ns}-{alert_id}-e{index}"


def schedule_ladder(ctx: Context, alert: Alert) -> list[datetime]:
    """Queue each step of the alert's ladder on the scheduler (once each); returns when each will run."""
    issued_at = alert.issued_at or alert.created_at
    queue = ctx.queue(FOLLOWUP_QUEUE)
    times = []
    for index, step in enumerate(ladder(alert)):
        at = issued_at + timedelta(minutes=step.after_minutes)
        enqueue_once(
            queue,
            LADDER_STEP_JOB,
            alert.id,
            index,
            job_id=step_job_id(ctx.keys, alert.id, index),
            at=at,
            retry=until_done(),
            result_ttl=ALERT_RETENTION_SECONDS,
        )
        times.append(at)
    return times


def step_job(alert_id: str, index: int) -> dict[str, Any]:
    """RQ entry point: run one step of an alert's ladder."""
    return asyncio.run(run_step(current(), alert_id, index))


async def run_step(ctx: Context, alert_id: str, index: int) -> dict[str, Any]:
    """Run step ``index`` of the alert's ladder to its end, once, for the residents unconfirmed when it
    first ran. A run that died part way is finished by the next: the step's work (who is called, who
    is texted what) is frozen by its first run, each notice is recorded as sent once the provider
    accepted it, and the step is marked done only when everything it owed is sent."""
    client = ctx.async_redis()
    try:
        alert = await load_alert_async(client, ctx.keys, alert_id)
        if alert is None or alert.status is AlertStatus.cancelled or not alert.is_active(ctx.clock.now()):
            return {"skipped": "the alert has ended"}
        steps = ladder(alert)
        if not 0 <= index < len(steps):
            return {"skipped": f"no step {index}"}
        done_key = ctx.keys.alert_steps(alert_id)
        if await client.hexists(done_key, str(index)):
            return {"skipped": "already done"}
        async with Lease(client, ctx.keys.lease(f"{alert_id}-e{index}")) as lease:
            if await client.hexists(done_key, str(index)):
                return {"skipped": "already done"}
            action = steps[index].action
            work = ctx.keys.alert_work(alert_id, f"e{index}")
            result: dict[str, Any]
            if action is Action.voice_vulnerable:
                result = await _call_vulnerable(ctx, client, alert, work)
            elif action is Action.volunteer_lists:
                notices = await frozen(client, work, lambda: _volunteer_notices(ctx, client, alert))
                result = {"volunteers": await send_notices(ctx, client, alert, notices, lease, "list")}
            else:
                notices = await frozen(client, work, lambda: _worker_notices(ctx, client, alert))
                result = {"workers": await send_notices(ctx, client, alert, notices, lease, "rollup")}
            async with client.pipeline(transaction=True) as pipe:
                pipe.hsetnx(done_key, str(index), ctx.clock.now().isoformat())
                pipe.expire(done_key, ALERT_RETENTION_SECONDS)
                await pipe.execute()
            return result
    finally:
        await client.aclose()


FROZEN = "~"  # the field that marks a work list as frozen (so that an empty list is one too)


async def frozen(
    client: redis.asyncio.Redis, key: str, build: Callable[[], Awaitable[dict[str, str]]]
) -> dict[str, Any]:
    """A work list as its first run made it: built and stored (at once) if it is not stored yet.
    The caller holds the work's lease, so nobody else builds it meanwhile."""
    raw = await client.hgetall(key)
    if not raw:
        items = await build()
        async with client.pipeline(transaction=True) as pipe:
            mapping: dict[Any, Any] = {FROZEN: "1", **items}
            pipe.hset(key, mapping=mapping)
            pipe.expire(key, ALERT_RETENTION_SECONDS)
            await pipe.execute()
        raw = await client.hgetall(key)
    return {as_text(k): json.loads(v) for k, v in raw.items() if as_text(k) != FROZEN}


async def settled(client: redis.asyncio.Redis, keys: Keys, alert_id: str, size: int) -> bytes:
    """A bitmap of everyone who needs no more chasing: confirmed, asked for help (a case already), or
    settled in person. Fetched whole (3 MB for 25 million) so steps count per area without round trips."""
    async with client.pipeline(transaction=False) as pipe:
        for state in ("acknowledged", "needs_help", "closed"):
            pipe.get(keys.bits(alert_id, state))
        maps = [as_bytes(m or b"") for m in await pipe.execute()]
    width = (size + 7) // 8
    done = 0
    for bitmap in maps:
        done |= int.from_bytes(bitmap[:width].ljust(width, b"\0"), "big")
    return done.to_bytes(width, "big")


def count_set(bitmap: bytes, start: int, end: int) -> int:
    """How many bits of [start, end) are set (whole bytes counted in C, the edges bit by bit)."""
    if end <= start:
        return 0
    first, last = (start + 7) // 8, end // 8
    if first >= last:
        return sum(1 for o in range(start, end) if bitmap[o >> 3] & (0x80 >> (o & 7)))
    edges = sum(1 for o in (*range(start, first * 8), *range(last * 8, end)) if bitmap[o >> 3] & (0x80 >> (o & 7)))
    return edges + int.from_bytes(bitmap[first:last], "big").bit_count()


def unset_among(bitmap: bytes, among: bytes) -> list[int]:
    """Ordinals set in ``among`` but not in ``bitmap``, byte by byte."""
    out = []
    for i, (done, wanted) in enumerate(zip(bitmap, among, strict=False)):
        byte = wanted & ~done
        while byte:
            top = byte.bit_length() - 1
            out.append(i * 8 + 7 - top)
            byte &= ~(1 << top)
    return sorted(out)


async def _call_vulnerable(ctx: Context, client: redis.asyncio.Redis, alert: Alert, work: str) -> dict[str, Any]:
    """Call every unconfirmed vulnerable resident (round 1 on voice): who is frozen by the first run, and
    their batches are queued once each (a batch that ran skips who was called already)."""

    async def choose() -> dict[str, str]:
        index = await roster_index(client, ctx.keys, alert.id)
        if index is None:
            return {"ranges": "[]"}
        done = await settled(client, ctx.keys, alert.id, index.size)
        vulnerable = as_bytes(await client.get(ctx.keys.bits(alert.id, "vulnerable")) or b"")
        chosen = unset_among(done, vulnerable)
        rids = await read_rids(client, ctx.keys, alert.id, chosen)
        residents = await load_residents(client, ctx.keys, rids)
        callable_ = [o for o, rid in zip(chosen, rids, strict=True) if (r := residents.get(rid)) and r.phone]
        return {"ranges": json.dumps(to_ranges(callable_))}

    ordinals = expand((await frozen(client, work, choose))["ranges"])
    schedule_batches(ctx, alert, ChannelKind.voice, ordinals, round_=1)
    return {"called": len(ordinals)}


async def _ranges_of(client: redis.asyncio.Redis, keys: Keys, alert_id: str, digits: int) -> dict[str, tuple[int, int]]:
    """Ordinal ranges of every area of one code length (14: grids, 12: committees) in the roster."""
    out: dict[str, tuple[int, int]] = {}
    async for raw_code, raw_span in client.hscan_iter(keys.ranges(alert_id), count=2000):
        code = as_text(raw_code)
        if len(code) == digits and (digits != 12 or not code.endswith("000")):
            start, end = as_text(raw_span).split(":")
            out[code] = (int(start), int(end))
    return out


async def _waiting_by_area(
    client: redis.asyncio.Redis, keys: Keys, alert_id: str, digits: int
) -> list[tuple[str, int]]:
    """(area, how many still to chase) for every area of one code length in the roster."""
    index = await roster_index(client, keys, alert_id)
    if index is None:
        return []
    done = await settled(client, keys, alert_id, index.size)
    spans = sorted((await _ranges_of(client, keys, alert_id, digits)).items())
    return [(code, (end - start) - count_set(done, start, end)) for code, (start, end) in spans]


async def _volunteer_notices(ctx: Context, client: redis.asyncio.Redis, alert: Alert) -> dict[str, str]:
    """Each grid volunteer's notice: a link to their grid's residents still to be reached."""
    notices: list[tuple[Volunteer, int]] = []
    for grid, waiting in await _waiting_by_area(client, ctx.keys, alert.id, 14):
        if waiting:
            notices += [(v, waiting) for v in await volunteers_for_grid(client, ctx.keys, grid)]
    return compose_notices(ctx, alert, notices, "list")


async def _worker_notices(ctx: Context, client: redis.asyncio.Redis, alert: Alert) -> dict[str, str]:
    """Each community worker's notice: a link to the committee's roll-up."""
    notices: list[tuple[Volunteer, int]] = []
    for community, waiting in await _waiting_by_area(client, ctx.keys, alert.id, 12):
        if waiting:
            workers = await community_volunteers(client, ctx.keys, community)
            notices += [(w, waiting) for w in workers if w.role is VolunteerRole.community_worker]
    return compose_notices(ctx, alert, notices, "rollup")


NOTICE = {
    "list": (
        "{sig}{drill}{role}{name}：{level}预警已发出，您负责的网格有{n}人未确认收到，请查看名单并电话或上门确认：{link}"
    ),
    "rollup": "{sig}{drill}{role}{name}：{level}预警已发出，本社区仍有{n}人未确认，请查看汇总：{link}",
    "help": "{sig}{drill}求助：{place}{who}需要帮助，请尽快联系或上门。名单：{link}",
}


def compose_notices(
    ctx: Context,
    alert: Alert,
    notices: Sequence[tuple[Volunteer, int]],
    kind: str,
    place: str = "",
    who: str = "",
    case: str = "",
) -> dict[str, str]:
    """The text of each volunteer's notice with their signed link, by notice id (one per volunteer)."""
    out: dict[str, str] = {}
    for volunteer, waiting in notices:
        path = "/w/" if kind == "rollup" else "/v/"
        link = f"{ctx.settings.public_url}{path}{volunteer_token(ctx.secret, volunteer.id, alert.id)}"
        text = NOTICE[kind].format(
            sig=ctx.settings.sms_signature,
            drill="【演练】" if alert.exercise else "",
            role=volunteer.role.value,
            name=volunteer.name,
            level=f"{event_name(ctx, alert)}{alert.level.zh}",
            n=waiting,
            link=link,
            place=place,
            who=who,
        )
        notice_id = f"{kind}:{case}:{volunteer.id}" if case else f"{kind}:{volunteer.id}"
        out.setdefault(notice_id, json.dumps({"phone": volunteer.phone, "text": text}, ensure_ascii=False))
    return out


class NoticesPending(RuntimeError):
    """Some notices were not accepted by the provider yet (it failed or throttled): the job is retried."""


class _NoticeGate:
    """Records each notice as handed to the provider before it goes (what was in flight when a run died)."""

    def __init__(self, client: redis.asyncio.Redis, key: str, ids: dict[int, str], lease: Lease, at: str) -> None:
        self.client, self.key, self.ids, self.lease, self.at = client, key, ids, lease, at

    async def admit(self, messages: Sequence[OutboundMessage], cost: float) -> None:
        self.lease.check()
        await self.client.hset(self.key, mapping={self.ids[m.ordinal]: self.at for m in messages})

    def slow_down(self) -> None:
        return None

    async def retry_throttled(self, message: OutboundMessage, tries: int) -> bool:
        if tries >= 3:
            return False
        await asyncio.sleep(0.5 * (tries + 1))
        return True


async def send_notices(
    ctx: Context,
    client: redis.asyncio.Redis,
    alert: Alert,
    notices: dict[str, dict[str, Any]],
    lease: Lease,
    kind: str,
) -> int:
    """Text every notice of a frozen work list that is not recorded as sent; returns how many of the
    list are sent. A notice is recorded as sent once the provider accepted it; one the provider
    refuses for good (an invalid number) is recorded as failed; any other leaves the job to be retried."""
    sent_key, attempts_key = ctx.keys.alert_notices(alert.id), ctx.keys.alert_notice_attempts(alert.id)
    ids = list(notices)
    done = await client.hmget(sent_key, ids) if ids else []
    todo = [nid for nid, state in zip(ids, done, strict=True) if state is None]
    if todo:
        tried = await client.hmget(attempts_key, todo)
        suspect = sum(t is not None for t in tried)  # handed over by a run that died before it heard back
        by_ordinal = {-1 - i: nid for i, nid in enumerate(todo)}
        messages = [
            OutboundMessage(alert.id, o, notices[nid]["phone"], notices[nid]["text"]) for o, nid in by_ordinal.items()
        ]
        async with client.pipeline(transaction=False) as pipe:
            pipe.expire(sent_key, ALERT_RETENTION_SECONDS)
            pipe.expire(attempts_key, ALERT_RETENTION_SECONDS)
            if suspect:
                pipe.hincrby(ctx.keys.counts(alert.id), "notices:possible_duplicates", suspect)
            await pipe.execute()
        gate = _NoticeGate(client, attempts_key, by_ordinal, lease, ctx.clock.now().isoformat())
        pending = 0
        async with TwilioSMS(ctx.settings) as channel:
            async for result in channel.send(messages, gate):
                nid = by_ordinal[result.ordinal]
                if result.outcome is Outcome.accepted:
                    async with client.pipeline(transaction=False) as pipe:
                        pipe.hsetnx(sent_key, nid, ctx.clock.now().isoformat())
                        pipe.hincrby(ctx.keys.counts(alert.id), f"notices:{kind}", 1)
                        await pipe.execute()
                elif result.outcome in (Outcome.permanent, Outcome.opted_out):
                    await client.hsetnx(sent_key, nid, f"failed:{result.error_code or 0}")
                    await client.hincrby(ctx.keys.counts(alert.id), "notices:failed", 1)
                else:
                    pending += 1
        if pending:
            raise NoticesPending(f"{pending} of {len(todo)} {kind} notices were not accepted yet; trying again")
    states = await client.hmget(sent_key, ids) if ids else []
    return sum(1 for state in states if state is not None and not as_text(state).startswith("failed"))


def help_case_job(alert_id: str, ordinal: int) -> dict[str, Any]:
    """RQ entry point: someone asked for help; tell their volunteers and community workers now."""
    return asyncio.run(help_case(current(), alert_id, ordinal))


async def help_case(ctx: Context, alert_id: str, ordinal: int) -> dict[str, Any]:
    """Text the resident's building and grid volunteers and community workers, each once (a run that
    died part way is finished by the next)."""
    client = ctx.async_redis()
    try:
        alert = await load_alert_async(client, ctx.keys, alert_id)
        if alert is None:
            return {"notified": 0}

        async def build() -> dict[str, str]:
            (rid,) = await read_rids(client, ctx.keys, alert_id, [ordinal])
            resident = (await load_residents(client, ctx.keys, [rid])).get(rid)
            if resident is None:
                return {}
            helpers: list[Volunteer] = await volunteers_for(client, ctx.keys, resident)
            helpers += [
                w
                for w in await community_volunteers(client, ctx.keys, resident.community)
                if w.role is VolunteerRole.community_worker and w.id not in {h.id for h in helpers}
            ]
            names = await area_names(client, ctx.keys, [resident.place])
            place = names.get(resident.place, "") + (f" {resident.room}" if resident.room else "")
            return compose_notices(
                ctx, alert, [(h, 1) for h in helpers], "help", place=place, who=resident.name, case=str(ordinal)
            )

        async with Lease(client, ctx.keys.lease(f"{alert_id}-h{ordinal}")) as lease:
            notices = await frozen(client, ctx.keys.alert_work(alert_id, f"h{ordinal}"), build)
            return {"notified": await send_notices(ctx, client, alert, notices, lease, "help")}
    finally:
        await client.aclose()


def cancel_ladder(ctx: Context, alert_id: str) -> int:
    """Remove the scheduled steps of a cancelled alert (the steps would skip it anyway)."""
    from rq.job import Job
    from rq.registry import ScheduledJobRegistry

    registry = ScheduledJobRegistry(queue=ctx.queue(FOLLOWUP_QUEUE))
    removed = 0
    for index in range(len(LADDERS[Level.red]) + 1):
        job_id = step_job_id(ctx.keys, alert_id, index)
        if Job.exists(job_id, connection=ctx.redis):
            registry.remove(job_id, delete_job=True)
            removed += 1
    return removed
