"""Files kept outside Redis (photos of field reports): one small interface, and a directory behind it.

Redis holds the record that names a file; the bytes live here. ``FileStore`` is all the service asks
of a store, so an object store (S3, OSS, MinIO) can take the directory's place by implementing the
same three calls. Names are the service's own (``photos/12/r7-1a2b3c.jpg``), never a client's.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Protocol

from broadcast.core.settings import Settings

_NAME = re.compile(r"^[a-z0-9_-]+(/[A-Za-z0-9_.-]+)+$")


class FileStore(Protocol):
    """Where the service keeps files it does not put in Redis."""

    def put(self, name: str, data: bytes) -> None:
        """Store ``data`` under ``name`` (whole or not at all)."""
        ...

    def get(self, name: str) -> bytes | None:
        """The bytes stored under ``name``, or None."""
        ...

    def delete(self, name: str) -> None:
        """Forget ``name`` (nothing happens when it is not there)."""
        ...


def check_name(name: str) -> str:
    """A store name made of safe path parts: no "..", no absolute paths, no client text."""
    if not _NAME.match(name) or ".." in name:
        raise ValueError(f"not a file name the store accepts: {name!r}")
    return name


class DirectoryStore:
    """Files under one directory: written to a temporary name and renamed, so a reader never sees half."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, name: str) -> Path:
        return self.root / check_name(name)

    def put(self, name: str, data: bytes) -> None:
        path = self._path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".part-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def get(self, name: str) -> bytes | None:
        try:
            return self._path(name).read_bytes()
        except FileNotFoundError:
            return None

    def delete(self, name: str) -> None:
        self._path(name).unlink(missing_ok=True)


def file_store(settings: Settings) -> FileStore:
    """The deployment's store: a directory under the data directory (``BROADCAST_FILES_DIR``)."""
    return DirectoryStore(settings.files_root)
