"""The embedded MQTT broker (amqtt), run as a daemon under the data directory.

Used when no ``MQTT_URL`` is set, so building screens work on a machine with no broker. Every
``broadcast`` process on the machine shares it through the address in ``{data_dir}/mqtt/url``.
``python -m broadcast.core.embedded_mqtt PORT`` is the daemon itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from broadcast.core.daemons import daemon_directory, free_port
from broadcast.core.settings import Settings

START_TIMEOUT_SECONDS = 15.0


class EmbeddedMQTTError(RuntimeError):
    """The embedded broker could not be started or reached."""


def _reachable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def ensure_embedded_mqtt(data_dir: Path) -> str:
    """The URL of the embedded broker under ``data_dir``, starting it if nobody has."""
    with daemon_directory(data_dir, "mqtt") as (directory, known):
        if known and _reachable(int(known.rsplit(":", 1)[1])):
            return known
        port = free_port()
        with open(directory / "broker.log", "a") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "broadcast.core.embedded_mqtt", str(port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        (directory / "broker.pid").write_text(str(process.pid))
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not _reachable(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise EmbeddedMQTTError(f"the embedded MQTT broker did not start; see {directory / 'broker.log'}")
            time.sleep(0.05)
        url = f"mqtt://127.0.0.1:{port}"
        (directory / "url").write_text(url)
        return url


def broker_url(settings: Settings) -> str:
    """``MQTT_URL``, or the embedded broker's address (started if needed)."""
    return settings.mqtt_url or ensure_embedded_mqtt(settings.data_dir)


def stop_embedded_mqtt(data_dir: Path) -> bool:
    """Stop the embedded broker under ``data_dir``; False if none was running."""
    directory = (data_dir / "mqtt").resolve()
    pid_file = directory / "broker.pid"
    if not pid_file.exists():
        return False
    try:
        os.kill(int(pid_file.read_text()), signal.SIGTERM)
    except (ValueError, ProcessLookupError):
        return False
    finally:
        pid_file.unlink(missing_ok=True)
        (directory / "url").unlink(missing_ok=True)
    return True


async def _serve(port: int) -> None:
    from amqtt.broker import Broker

    broker = Broker(
        {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
    )
    await broker.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    with contextlib.suppress(Exception):
        await broker.shutdown()


if __name__ == "__main__":
    asyncio.run(_serve(int(sys.argv[1])))
