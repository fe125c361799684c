"""Contract: the requests our Twilio code makes are valid against Twilio's official OpenAPI description.

Prism (``@stoplight/prism-cli``) serves tests/contracts/twilio_api_v2010.json as a mock that
answers 201 only to requests the description allows, and 422 naming the fault otherwise.

One translation sits in front of it. Twilio takes an array form field as the same key repeated
(``StatusCallbackEvent=initiated&StatusCallbackEvent=ringing``), which is how its own libraries send
it; Prism reads form arrays only as ``key[]``. A small proxy renames the fields the description
types as arrays, and changes nothing else, so every value is still checked against the schema.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import aiohttp
import pytest
from aiohttp import web

from broadcast.core.settings import Settings
from channels.base import Channel, OpenGate, OutboundMessage, Outcome
from channels.twilio.sms import TwilioSMS
from channels.twilio.voice import TwilioVoice
from tests.conftest import ROOT, LoopThread, free_port

SPEC = ROOT / "tests" / "contracts" / "twilio_api_v2010.json"
PRISM_DIR = ROOT / ".tools" / "prism"
PRISM = PRISM_DIR / "node_modules" / ".bin" / "prism"
SID = "AC" + "ab" * 16


def _install_prism() -> None:
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("the contract tests need Node.js and npm to install @stoplight/prism-cli")
    subprocess.run(
        [
            npm,
            "install",
            "--prefix",
            str(PRISM_DIR),
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
            "@stoplight/prism-cli@5",
        ],
        check=True,
        timeout=300,
    )


def _array_fields(spec: dict[str, Any]) -> dict[str, set[str]]:
    """For each form-posting path pattern of the description, the fields typed as arrays."""
    out: dict[str, set[str]] = {}
    for path, methods in spec["paths"].items():
        body = methods.get("post", {}).get("requestBody", {}).get("content", {})
        schema = body.get("application/x-www-form-urlencoded", {}).get("schema", {})
        arrays = {name for name, prop in schema.get("properties", {}).items() if prop.get("type") == "array"}
        if arrays:
            out[re.sub(r"\{[^}]+\}", "[^/]+", path) + "$"] = arrays
    return out


async def _start_proxy(target: str, arrays: dict[str, set[str]]) -> tuple[web.AppRunner, str]:
    session = aiohttp.ClientSession()

    async def forward(request: web.Request) -> web.Response:
        fields = next((f for pattern, f in arrays.items() if re.match(pattern, request.path)), set())
        body = await request.read()
        if fields and request.content_type == "application/x-www-form-urlencoded":
            pairs = parse_qsl(body.decode(), keep_blank_values=True)
            body = urlencode([(f"{k}[]" if k in fields else k, v) for k, v in pairs]).encode()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        async with session.request(request.method, target + str(request.rel_url), data=body, headers=headers) as r:
            return web.Response(status=r.status, body=await r.read(), content_type=r.content_type)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward)
    app.on_cleanup.append(lambda _: session.close())
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def prism(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not PRISM.exists():
        _install_prism()
    port = free_port()
    log_path = tmp_path_factory.mktemp("prism") / "prism.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [str(PRISM), "mock", str(SPEC), "-h", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT
        )
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/2010-04-01/Accounts.json", timeout=1)
                break
            except urllib.error.HTTPError:
                break  # it answers: up
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    process.kill()
                    pytest.fail(f"Prism did not start; see {log_path}")
                time.sleep(0.2)
        loop = LoopThread()
        runner, proxy = loop.run(_start_proxy(url, _array_fields(json.loads(SPEC.read_text()))))
        yield proxy
        loop.run(runner.cleanup())
        loop.stop()
        process.terminate()
        process.wait(10)


def _settings(prism: str, tmp_path: Path, **extra: object) -> Settings:
    values: dict[str, object] = {
        "twilio_account_sid": SID,
        "twilio_auth_token": "contract-test-token",
        "twilio_from": "+8610691234",
        "twilio_api_base": prism,
        "public_url": "https://warn.example.org",
        "data_dir": tmp_path,
    }
    values.update(extra)
    return Settings(**values)  # type: ignore[arg-type]


def _send(channel: Channel, messages: list[OutboundMessage]) -> list[tuple[Outcome, str]]:
    async def run() -> list[tuple[Outcome, str]]:
        async with channel:
            return [(r.outcome, r.detail) async for r in channel.send(messages, OpenGate())]

    return asyncio.run(run())


SMS = [
    OutboundMessage(
        "7",
        0,
        "+8613900000001",
        "【上海应急】台风橙色预警：请关紧门窗。回复1确认收到。",
        parts=1,
        validity_seconds=3600,
    ),
    OutboundMessage(
        "7", 1, "+8613900000002", "Typhoon ORANGE warning. Reply 1 to confirm.", "en", validity_seconds=90000
    ),
]


@pytest.mark.parametrize("sender", [{}, {"twilio_messaging_service_sid": "MG" + "cd" * 16}])
def test_sms_requests_match_twilios_description(prism: str, tmp_path: Path, sender: dict[str, str]) -> None:
    results = _send(TwilioSMS(_settings(prism, tmp_path, **sender)), SMS)
    assert [outcome for outcome, _ in results] == [Outcome.accepted, Outcome.accepted], results


def test_call_requests_match_twilios_description(prism: str, tmp_path: Path) -> None:
    calls = [OutboundMessage("7", 3, "+8613900000003", "台风橙色预警。收到请按1。", extra={"language": "zh-CN"})]
    results = _send(TwilioVoice(_settings(prism, tmp_path)), calls)
    assert [outcome for outcome, _ in results] == [Outcome.accepted], results


def test_prism_refuses_what_the_description_does_not_allow(prism: str) -> None:
    """The control: without it, an always-201 server would pass the tests above."""
    request = urllib.request.Request(
        f"{prism}/2010-04-01/Accounts/{SID}/Messages.json", data=b"Body=hi&ValidityPeriod=soon", method="POST"
    )
    request.add_header("Authorization", "Basic " + __import__("base64").b64encode(f"{SID}:t".encode()).decode())
    request.add_header("Content-Type", "application/x-www-form-urlencoded")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 422
    problems = {tuple(v["location"]) for v in json.loads(refused.value.read())["validation"]}
    assert ("body",) in problems and ("body", "ValidityPeriod") in problems
