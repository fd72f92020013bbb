"""The package layering the connector contract relies on, read from the source tree, so a
new connector package is covered without an edit here:

- `connectors.core` (model, records, directory, contract) imports nothing of the hub and no
  other part of `connectors`;
- every connector imports no `hub` module;
- the hub's runtime imports only `connectors.core` of the connectors; only the composition
  root (the CLI, `hub.assembly`, the demo) may import the registry and connector packages.
So there is no package-level cycle: core <- connectors <- hub runtime <- composition root.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMPOSITION_ROOT = {"hub.cli", "hub.assembly", "hub.demo"}


def modules(package: str) -> dict[str, set[str]]:
    """Every module of `package` with the absolute names it imports (lazy imports too)."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        imported: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add(node.module)
                imported.update(f"{node.module}.{alias.name}" for alias in node.names)
        found[name] = imported
    return found


def inside(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_the_core_imports_neither_the_hub_nor_any_connector() -> None:
    for module, imported in modules("connectors").items():
        if not inside(module, "connectors.core"):
            continue
        wrong = {
            name
            for name in imported
            if inside(name, "hub")
            or (inside(name, "connectors") and not inside(name, "connectors.core"))
        }
        assert not wrong, f"{module} imports {sorted(wrong)}"


def test_connectors_never_import_the_hub() -> None:
    for module, imported in modules("connectors").items():
        wrong = {name for name in imported if inside(name, "hub")}
        assert not wrong, f"{module} imports {sorted(wrong)}"


def test_the_hub_runtime_knows_connectors_only_through_the_core() -> None:
    for module, imported in modules("hub").items():
        if module in COMPOSITION_ROOT:
            continue
        wrong = {
            name
            for name in imported
            if inside(name, "connectors") and not inside(name, "connectors.core")
        }
        assert not wrong, f"{module} imports {sorted(wrong)}"


def test_the_layering_test_sees_every_package() -> None:
    """The checks above read real modules (a wrong root would make them pass vacuously)."""
    hub, connectors = modules("hub"), modules("connectors")
    assert "hub.gateway" in hub and "connectors.core.contract" in connectors
    assert "connectors.core.model" in hub["hub.gateway"] | hub["hub.agents"] | hub["hub.addressing"]
