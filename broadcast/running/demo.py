"""``broadcast demo``: a typhoon-orange drill to one street of 浦东新区, end to end, on this machine.

Loads the Shanghai areas, generates a small population, starts the web app, an in-process
worker and the Twilio simulator, issues the drill (composed by one officer, approved by a second),
shows progress until the simulated residents' replies settle, and prints a summary.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from audiences.areas import AreaTree, read_divisions, store_areas
from audiences.population import generate, store_population
from audiences.volunteers import VolunteerRole, community_volunteers
from broadcast import lifecycle
from broadcast.composing.compose import confirmation_link, render, with_link
from broadcast.composing.facts import area_facts
from broadcast.composing.preview import first_committee
from broadcast.core.context import Context
from broadcast.core.models import Alert, AlertDraft, AlertStatus, ChannelKind, EventType, Level, Target
from broadcast.core.tokens import link_token, volunteer_token
from broadcast.following.progress import alert_progress
from broadcast.issuing.alerts import load_alert_async
from broadcast.running.services import start_services
from broadcast.running.worker import BackgroundWorker
from channels.simulators.twilio import TwilioBehaviour

DEMO_STREET = "310115005000"  # 浦东新区 陆家嘴街道
DEMO_PARAMS = {  # the catalogue's typhoon parameters, in both languages the residents read
    "typhoon_number": "6",
    "typhoon_name": "烟花",
    "typhoon_name_en": "In-fa",
    "eta": "今天夜间到明天上午",
    "eta_en": "tonight to tomorrow morning",
    "landfall": "浙江舟山",
    "landfall_en": "Zhoushan, Zhejiang",
    "wind_force": "10-12",
}
SETTLE_TIMEOUT_SECONDS = 180


def prepare(ctx: Context, area: str, residents: int, seed: int) -> dict[str, int]:
    """Load the areas (once) and the demo population (upserted, so reruns change nothing)."""
    if not ctx.redis.exists(ctx.keys.areas):
        store_areas(ctx.redis, ctx.keys, read_divisions())
    tree = AreaTree.load(ctx.redis, ctx.keys)
    return store_population(ctx.redis, ctx.keys, generate(tree, area, residents, seed))


def demo_behaviour(seed: int) -> TwilioBehaviour:
    return TwilioBehaviour(
        reply_share=0.72, help_share=0.03, reply_delay=(0.5, 4.0), undeliverable_share=0.01, seed=seed
    )


def drill_draft(area: str) -> AlertDraft:
    return AlertDraft(
        event=EventType.typhoon,
        level=Level.orange,
        target=Target(areas=[area]),
        channels=[ChannelKind.sms],
        params=DEMO_PARAMS,
        exercise=True,
        composed_by="demo-officer",
    )


async def _run(ctx: Context, area: str, once: bool, as_json: bool, seed: int, console: Console) -> dict[str, Any]:
    services = await start_services(ctx, demo_behaviour(seed))
    worker = BackgroundWorker(ctx).start()
    client = ctx.async_redis()
    try:
        alert = await asyncio.to_thread(lifecycle.compose, ctx, drill_draft(area))
        if alert.status is AlertStatus.pending_approval:
            alert = await asyncio.to_thread(lifecycle.approve, ctx, alert.id, "demo-approver")
        console.print(
            f"[bold]Drill {alert.id}[/]: typhoon {alert.level.value} to {area}, "
            f"composed by {alert.composed_by}, approved by {alert.approved_by}; web app at {services.url}"
        )
        await _show_message(ctx, client, alert, console)
        progress = await _watch(ctx, client, alert.id, services, console)
        summary = _summary(progress)
        if not as_json:
            _print_summary(console, progress)
        if once:
            return summary
        for line in await _follow_up_links(ctx, client, alert.id, progress, services.url):
            console.print(line)
        console.print(
            f"Serving at {services.url}. Console: {services.url}/console/alerts/{alert.id} "
            "(sign in as demo-officer or demo-approver, passwords above). Ctrl-C stops."
        )
        while True:
            await asyncio.sleep(3600)
    finally:
        worker.stop()
        await client.aclose()
        await services.stop()


async def _follow_up_links(ctx: Context, client: Any, alert_id: str, progress: dict[str, Any], url: str) -> list[str]:
    """Where the first committee's grid volunteer and community worker would follow up, to open by hand."""
    rows = progress["areas"]["community"]
    if not rows:
        return []
    lines: list[str] = []
    for volunteer in await community_volunteers(client, ctx.keys, rows[0]["code"]):
        token = volunteer_token(ctx.secret, volunteer.id, alert_id)
        if volunteer.role is VolunteerRole.grid_worker and not any("/v/" in line for line in lines):
            lines.append(f"{volunteer.role.value} {volunteer.name}'s door-to-door list: {url}/v/{token}")
        if volunteer.role is VolunteerRole.community_worker:
            lines.append(f"{volunteer.role.value} {volunteer.name}'s roll-up of {rows[0]['name']}: {url}/w/{token}")
    return lines


async def _watch(ctx: Context, client: Any, alert_id: str, services: Any, console: Console) -> dict[str, Any]:
    columns = (TextColumn("{task.description:<10}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as bar:
        tasks = {name: bar.add_task(name, total=None) for name in ("queued", "sent", "delivered", "confirmed")}
        deadline = time.monotonic() + SETTLE_TIMEOUT_SECONDS
        stable_since: float | None = None
        last: tuple[int, ...] = ()
        while True:
            alert = await load_alert_async(client, ctx.keys, alert_id)
            assert alert is not None
            progress = await alert_progress(client, ctx.keys, alert)
            t = progress["totals"]
            for name, value in (
                ("queued", t["targeted"]),
                ("sent", t["sent"]),
                ("delivered", t["delivered"]),
                ("confirmed", t["confirmed"]),
            ):
                bar.update(tasks[name], completed=value, total=t["targeted"] or None)
            figures = (t["sent"], t["delivered"], t["failed"], t["confirmed"], t["needs_help"])
            done_sending = alert.status is AlertStatus.sending and t["done_sending"]
            quiet = services.pending == 0
            if done_sending and quiet and figures == last:
                stable_since = stable_since or time.monotonic()
                if time.monotonic() - stable_since > 1.0:
                    return progress
            else:
                stable_since = None
            last = figures
            if time.monotonic() > deadline:
                console.print("[red]The drill did not settle in time; showing what arrived.[/]")
                return progress
            await asyncio.sleep(0.25)


async def _show_message(ctx: Context, client: Any, alert: Alert, console: Console) -> None:
    """What the first committee's residents read, from the catalogue, with its SMS cost."""
    tree = await asyncio.to_thread(AreaTree.load, ctx.redis, ctx.keys)
    committee = first_committee(tree, alert.target.areas[0])
    if committee is None:
        return
    facts = (await area_facts(client, ctx.keys, [committee], ctx.settings.hotline))[committee]
    link = confirmation_link(ctx.settings, link_token(ctx.secret, alert.id, 0))
    for language in alert.languages:
        sms = with_link(render(alert, language, ChannelKind.sms, facts, ctx.settings), link)
        console.print(f"[dim]{facts.community}, {language.value}, {sms.parts} SMS part(s):[/] {sms.text}")


def _summary(progress: dict[str, Any]) -> dict[str, Any]:
    t = progress["totals"]
    return {
        "alert": progress["alert"]["id"],
        "targeted": t["targeted"],
        "sent": t["sent"],
        "delivered": t["delivered"],
        "failed": t["failed"],
        "confirmed": t["confirmed"],
        "needs_help": t["needs_help"],
        "possible_duplicates": t["possible_duplicates"],
        "communities": [
            {
                k: row[k]
                for k in ("code", "name", "targeted", "sent", "delivered", "failed", "acknowledged", "needs_help")
            }
            for row in progress["areas"]["community"]
        ],
    }


def _print_summary(console: Console, progress: dict[str, Any]) -> None:
    table = Table(title="Drill summary by committee")
    for column in ("committee", "targeted", "sent", "delivered", "failed", "confirmed", "needs help", "rate"):
        table.add_column(column, justify="left" if column == "committee" else "right")
    rows = progress["areas"]["community"]
    for row in rows:
        rate = f"{row['acknowledged'] / row['targeted']:.0%}" if row["targeted"] else "-"
        table.add_row(
            row["name"],
            *(str(row[k]) for k in ("targeted", "sent", "delivered", "failed", "acknowledged", "needs_help")),
            rate,
        )
    t = progress["totals"]
    rate = f"{t['confirmed'] / t['targeted']:.0%}" if t["targeted"] else "-"
    table.add_row(
        "[bold]total[/]",
        *(f"[bold]{t[k]}[/]" for k in ("targeted", "sent", "delivered", "failed", "confirmed", "needs_help")),
        f"[bold]{rate}[/]",
    )
    console.print(table)


def run_demo(
    ctx: Context, *, once: bool, as_json: bool, area: str = DEMO_STREET, residents: int = 2000, seed: int = 1
) -> int:
    """Run the demo; returns the process exit code."""
    stream = sys.stderr if as_json else sys.stdout
    # Piped output (a log, CI) gets a width that fits committee names, not the 80 columns of a dumb terminal.
    console = Console(stderr=as_json, width=None if stream.isatty() else 110)
    console.print(f"Redis: {'embedded, data under ' + str(ctx.settings.data_dir) if ctx.embedded else ctx.redis_url}")
    loaded = prepare(ctx, area, residents, seed)
    from broadcast.web.console.demo_accounts import create_demo_accounts

    accounts = create_demo_accounts(ctx)
    console.print(
        f"Registry: {residents} residents in {area} ({loaded['created']} new), "
        f"{loaded['volunteers']} volunteers, {loaded['areas']} grids and buildings"
    )
    signins = ", ".join(f"{name} / {password}" for name, password in accounts.items())
    console.print(f"Console: {ctx.settings.public_url}/console (sign in as {signins})")
    try:
        summary = asyncio.run(_run(ctx, area, once, as_json, seed, console))
    except KeyboardInterrupt:
        return 0
    if as_json:
        sys.stdout.write(json.dumps(summary, ensure_ascii=False) + "\n")
    return 0
