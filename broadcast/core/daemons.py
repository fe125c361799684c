"""What the embedded servers (Redis, the MQTT broker) share: a directory each under the data
directory, one process at a time starting them, and a free loopback port."""

from __future__ import annotations

import fcntl
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def daemon_directory(data_dir: Path, name: str) -> Iterator[tuple[Path, str | None]]:
    """Hold the start lock of ``{data_dir}/{name}``; yields the directory and the address last written."""
    directory = (data_dir / name).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    url_file = directory / "url"
    with open(directory / "start.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield directory, url_file.read_text().strip() if url_file.exists() else None
