"""Files only their owner may read (the console's users, the API's tokens): read whole, or
written atomically with mode 0600."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

T = TypeVar("T")


def read(path: Path) -> str | None:
    """The file's text; None if there is no file. OSError for any other failure."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


def write(path: Path, text: str) -> None:
    """Atomically (a reader sees the old file or the new, never half), owner-only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    os.replace(temporary, path)


class Watched(Generic[T]):
    """A file's parsed content, read again only when its modification time or size changes
    (a running console or API sees users and tokens added or removed at once)."""

    def __init__(self, path: Path, load: Callable[[Path], dict[str, T]]) -> None:
        self.path, self._load = path, load
        self._seen: tuple[int, int] | None = None
        self._found: dict[str, T] = {}

    def current(self) -> dict[str, T]:
        try:
            stat = self.path.stat()
            seen: tuple[int, int] | None = (stat.st_mtime_ns, stat.st_size)
        except FileNotFoundError:
            seen = None
        if seen != self._seen:
            self._found = self._load(self.path) if seen else {}
            self._seen = seen
        return self._found
