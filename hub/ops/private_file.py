"""Files only their owner may read (the console's users, the API's tokens): read whole, or
written atomically with mode 0600."""

from __future__ import annotations

import os
from pathlib import Path


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
