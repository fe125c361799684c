"""Confirmation ingest: signed Twilio reply webhooks ("1") from residents of the citywide warning,
into one ``broadcast serve`` process, with the load from another process on loopback.

Each request is what Twilio posts when a resident texts back: the form, signed with
X-Twilio-Signature over our public URL. The web app checks the signature, finds the resident by
phone and their ordinal in the alert's roster, and records the confirmation before answering.

Two runs: a fixed rate of 5,000 a second (open loop: latency counts from when a request was due,
so falling behind shows), and as fast as the server answers (closed loop), for the ceiling.
Targets: 5,000 a second sustained with p99 at most 50 ms; every answered confirmation stored.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import secrets
import sys
from typing import Any
from urllib.parse import urlencode

from audiences.residents import load_residents
from broadcast.core.context import Context
from broadcast.core.keys import as_text
from broadcast.delivering.deliver import read_rids
from broadcast.running.benchmarks.citywide import fill_citywide
from broadcast.running.benchmarks.common import Figure, result
from broadcast.running.benchmarks.environment import BENCH_SIMULATOR_TOKEN, BenchEnvironment, environment
from broadcast.running.benchmarks.load import write_requests
from channels.twilio.account import SIGNATURE_HEADER, SIMULATOR_ACCOUNT_SID, sign
from channels.twilio.sms import INBOUND_PATH

TARGET_RATE = 5_000.0
TARGET_P99_MS = 50.0
SECONDS = 10.0
WARM_UP = 2_000
CONNECTIONS = 256


def run(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    from broadcast.running.benchmarks.seed import seed

    env = environment(ctx)
    seed(env, args.residents)
    facts = fill_citywide(env)
    bctx = env.context()
    needed = WARM_UP + int(TARGET_RATE * SECONDS) + int(TARGET_RATE * SECONDS * 2)
    forms = replies(bctx, facts["alert"], min(needed, facts["targeted"]))
    before = _counts(bctx, facts["alert"])
    server = env.start("web", [sys.executable, "-m", "broadcast", "serve"], env.env(sms_rate_per_second=0))
    try:
        server.ready_line("broadcast serving at ")
        port = env.web_port
        requests = [raw_request(bctx.settings.public_url, port, form) for form in forms]
        warm = _load(env, port, requests[:WARM_UP], rate=1000, seconds=WARM_UP / 1000)
        start = WARM_UP
        fixed_n = int(TARGET_RATE * SECONDS)
        fixed = _load(env, port, requests[start : start + fixed_n], rate=TARGET_RATE, seconds=SECONDS)
        start += fixed_n
        ceiling = _load(env, port, requests[start:], rate=0, seconds=SECONDS)
    finally:
        server.stop()
    after = _counts(bctx, facts["alert"])
    answered_ok = sum(run["statuses"].get("200", 0) for run in (warm, fixed, ceiling))
    stored = after["acknowledged"] + after["needs_help"] - before["acknowledged"] - before["needs_help"]
    p99 = fixed["latency_ms"]["p99"]
    figures = {
        "replies_per_second_at_5000": Figure(
            fixed["rate"],
            "requests/s",
            f">= {TARGET_RATE:.0f}/s answered at an offered {TARGET_RATE:.0f}/s",
            fixed["rate"] >= TARGET_RATE * 0.99 and fixed["statuses"].get("200", 0) == fixed["sent"],
        ),
        "p99_ms_at_5000": Figure(p99, "ms", f"<= {TARGET_P99_MS:.0f} ms", p99 <= TARGET_P99_MS),
        "ceiling_replies_per_second": Figure(
            ceiling["rate"], "requests/s", f"reported (closed loop, {CONNECTIONS} connections)", True
        ),
        "confirmations_stored": Figure(
            stored, "confirmations", "every reply answered 200 is stored", stored == answered_ok
        ),
    }
    return result(
        "ingest",
        "broadcast bench ingest",
        figures,
        runs={"warm_up": warm, "fixed_rate": fixed, "ceiling": ceiling},
        unmatched=after["unmatched"] - before["unmatched"],
    )


def replies(ctx: Context, alert_id: str, count: int) -> list[dict[str, str]]:
    """The reply form of ``count`` different residents of the alert, in random order."""
    size = int(json.loads(ctx.redis.get(ctx.keys.roster_communities(alert_id)) or b"{}")["size"])
    ordinals = sorted(random.Random(5).sample(range(size), count))

    async def phones() -> list[str]:
        client = ctx.async_redis()
        try:
            rids = await read_rids(client, ctx.keys, alert_id, ordinals)
            records = await load_residents(client, ctx.keys, rids)
            return [p for r in rids if (p := records[r].phone)]
        finally:
            await client.aclose()

    found = asyncio.run(phones())
    random.Random(6).shuffle(found)
    forms = []
    for phone in found:
        sid = "SM" + secrets.token_hex(16)
        forms.append(
            {
                "AccountSid": SIMULATOR_ACCOUNT_SID,
                "MessageSid": sid,
                "SmsSid": sid,
                "SmsMessageSid": sid,
                "From": phone,
                "To": "+8610691234",
                "Body": "1",
                "NumMedia": "0",
                "NumSegments": "1",
                "SmsStatus": "received",
                "ApiVersion": "2010-04-01",
            }
        )
    return forms


def raw_request(public_url: str, port: int, form: dict[str, str]) -> bytes:
    """The HTTP/1.1 request Twilio sends for one reply, signed for our public URL."""
    body = urlencode(form).encode()
    signature = sign(BENCH_SIMULATOR_TOKEN, public_url + INBOUND_PATH, form)
    head = (
        f"POST {INBOUND_PATH} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"{SIGNATURE_HEADER}: {signature}\r\n"
        "User-Agent: TwilioProxy/1.1\r\n"
        "\r\n"
    )
    return head.encode() + body


def _load(env: BenchEnvironment, port: int, requests: list[bytes], rate: float, seconds: float) -> dict[str, Any]:
    path = env.workdir / "requests.bin"
    write_requests(path, requests)
    argv = [sys.executable, "-m", "broadcast.running.benchmarks.load", "--port", str(port), "--requests", str(path)]
    argv += ["--rate", str(rate), "--seconds", str(seconds), "--connections", str(CONNECTIONS)]
    process = env.start("load", argv)
    try:
        line = process.ready_line("{", timeout=seconds + 60)
        process.wait(30)
    finally:
        process.stop()
    data: dict[str, Any] = json.loads("{" + line)
    return data


def _counts(ctx: Context, alert_id: str) -> dict[str, int]:
    counts = {as_text(k): int(v) for k, v in ctx.redis.hgetall(ctx.keys.counts(alert_id)).items()}
    stats = {as_text(k): int(v) for k, v in ctx.redis.hgetall(ctx.keys.stats).items()}
    return {
        "acknowledged": counts.get("acknowledged", 0),
        "needs_help": counts.get("needs_help", 0),
        "unmatched": stats.get("unmatched_replies", 0) + stats.get("replies_without_alert", 0),
    }
