"""The Dockerfile builds a reproducible image (read as text: no Docker engine here): an exact
base, the tested dependency versions as constraints, a non-editable install, every port the
hub listens on exposed, and never root."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from hub.runtime import app as assembly
from hub.runtime.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
CONSTRAINTS = ROOT / "examples" / "production" / "constraints.txt"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments), continuation lines joined, comments left out."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def pins() -> dict[str, str]:
    found = {}
    for line in CONSTRAINTS.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            found[canonicalize_name(name)] = version.strip()
    return found


def test_the_base_image_is_pinned() -> None:
    (base,) = [rest for keyword, rest in instructions() if keyword == "FROM"]
    image, _, digest = base.partition("@")
    name, _, tag = image.partition(":")
    assert name == "python"
    # An exact Python release on a named Debian release, not 3.11 or latest.
    assert re.fullmatch(r"3\.11\.\d+-slim-bookworm", tag), tag
    assert not digest or re.fullmatch(r"sha256:[0-9a-f]{64}", digest)


def test_rshub_is_installed_from_the_constraints_not_editable() -> None:
    runs = " ".join(rest for keyword, rest in instructions() if keyword == "RUN")
    copies = [rest for keyword, rest in instructions() if keyword == "COPY"]
    assert "examples/production/constraints.txt constraints.txt" in copies
    assert re.search(r"pip install [^&]*-c constraints\.txt \.(\s|$)", runs), runs
    assert " -e " not in f" {runs} " and "--editable" not in runs


def test_the_build_tools_are_pinned() -> None:
    # pip builds the package with these in an isolated environment the constraints do not
    # reach: an unpinned setuptools would make two builds of one commit differ.
    build = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]
    for line in build["requires"]:
        assert str(Requirement(line).specifier).startswith("=="), line


def test_the_constraints_pin_every_runtime_dependency_within_pyproject() -> None:
    pinned = pins()
    assert pinned and all(re.fullmatch(r"[0-9][0-9A-Za-z.+!-]*", v) for v in pinned.values())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for line in project["dependencies"]:
        requirement = Requirement(line)
        version = pinned.get(canonicalize_name(requirement.name))
        assert version, f"{requirement.name} is not pinned in {CONSTRAINTS.name}"
        assert requirement.specifier.contains(version), f"{requirement.name}=={version}: {line}"
    # Test tools stay out of the image.
    assert not {"pytest", "ruff", "mypy", "selenium"} & set(pinned)


def test_every_listening_port_is_exposed() -> None:
    exposed = {
        int(port.split("/")[0])
        for keyword, rest in instructions()
        if keyword == "EXPOSE"
        for port in rest.split()
    }
    settings = Settings()
    wanted = {settings.http_port, settings.console_port}
    for connector in assembly.connectors(settings):
        if "port" in connector.settings.model_fields:
            wanted.add(connector.settings.model_fields["port"].default)
    assert wanted == exposed
    assert {8000, 8001, 1611, 9001} <= wanted


def test_the_hub_runs_as_a_user_and_listens_beyond_the_loopback() -> None:
    users = [rest for keyword, rest in instructions() if keyword == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    env = " ".join(rest for keyword, rest in instructions() if keyword == "ENV")
    assert "RSHUB_HTTP_HOST=0.0.0.0" in env and "RSHUB_CONSOLE_HOST=0.0.0.0" in env
    assert instructions()[-1] == ("CMD", '["rshub", "serve"]')
