"""Writes examples/production/constraints.txt: the versions installed in this environment of
rshub's runtime dependencies (pyproject.toml's `dependencies` and theirs, for CPython 3.11 on
Linux, no extras), which the Dockerfile installs with `pip install -c constraints.txt .`.

Run it with the environment the tests passed in, after changing a dependency:

    .venv/bin/python examples/production/freeze_constraints.py
"""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(__file__).resolve().parent / "constraints.txt"
# The image's platform (python:3.11-slim-bookworm), for the dependencies' markers.
PLATFORM = {
    "extra": "",
    "python_version": "3.11",
    "python_full_version": "3.11.14",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "os_name": "posix",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "platform_machine": "x86_64",
}


def resolved() -> dict[str, str]:
    """name -> installed version, for every runtime dependency, direct or not."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    todo = [Requirement(line) for line in project["dependencies"]]
    found: dict[str, str] = {}
    while todo:
        requirement = todo.pop()
        if requirement.marker and not requirement.marker.evaluate(PLATFORM):
            continue
        name = canonicalize_name(requirement.name)
        if name in found:
            continue
        distribution = metadata.distribution(requirement.name)
        found[name] = distribution.version
        todo += [Requirement(line) for line in distribution.requires or []]
    return found


def main() -> None:
    pins = resolved()
    lines = [f"{name}=={pins[name]}" for name in sorted(pins)]
    header = "# rshub's runtime dependencies as tested; written by freeze_constraints.py\n"
    OUT.write_text(header + "\n".join(lines) + "\n")
    print(f"wrote {OUT} ({len(lines)} pins)")


if __name__ == "__main__":
    main()
