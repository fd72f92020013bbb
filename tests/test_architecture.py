"""The package layering the connector contract relies on, read from the source tree, so a
new connector package is covered without an edit here:

- `connectors.core` (model, records, directory, contract) imports nothing of the hub and no
  other part of `connectors`;
- every connector imports no `hub` module;
- the hub's runtime imports only `connectors.core` of the connectors; only the composition
  root (the CLI, `hub.runtime.app`, the demo, `rshub peer`) may import the registry and
  connector packages.
So there is no package-level cycle: core <- connectors <- hub runtime <- composition root.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The whole CLI (each command group builds what it runs from the registry) and the runtime's app.
COMPOSITION_ROOT = ("hub.cli", "hub.runtime.app")
LAYERS = ("domain", "kafka", "runtime", "ops", "cli")
# What each layer of hub/ may import of the others (issue 25): the domain is pure, Kafka knows
# no loans, the runtime composes both, ops (CLI and console alike) sit on the runtime, and
# only the CLI sits on ops.
MAY_IMPORT = {
    "domain": {"domain"},
    "kafka": {"kafka"},
    "runtime": {"domain", "kafka", "runtime"},
    "ops": {"domain", "kafka", "runtime", "ops"},
    "cli": set(LAYERS),
}
# The load follower fills the domain's LoadBook (a plain data structure) in place; the item
# index reads ill.items by the keys the domain writes there (hub.domain.addressing).
ALLOWED = {
    ("hub.kafka.followers", "hub.domain.load"),
    ("hub.kafka.followers", "hub.domain.addressing"),
}
LIBRARIES = ("faust", "aiokafka", "aiohttp", "mode")


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
        if any(inside(module, root) for root in COMPOSITION_ROOT):
            continue
        wrong = {
            name
            for name in imported
            if inside(name, "connectors") and not inside(name, "connectors.core")
        }
        assert not wrong, f"{module} imports {sorted(wrong)}"


def layer(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if len(parts) > 2 and parts[0] == "hub" and parts[1] in LAYERS else None


def test_every_hub_module_is_in_a_layer() -> None:
    loose = [m for m in modules("hub") if m != "hub" and layer(m + ".x") is None]
    assert not loose, f"modules outside hub's layers: {loose}"


def test_each_layer_imports_only_the_layers_below_it() -> None:
    for module, imported in modules("hub").items():
        own = layer(module + ".x")
        if own is None:
            continue
        wrong = {
            name
            for name in imported
            if (other := layer(name)) is not None
            and other not in MAY_IMPORT[own]
            and (module, name.rsplit(".", 1)[0] if name.count(".") > 2 else name) not in ALLOWED
            and (module, name) not in ALLOWED
        }
        assert not wrong, f"{module} ({own}) imports {sorted(wrong)}"


def test_the_domain_imports_no_kafka_faust_or_http_library() -> None:
    for module, imported in modules("hub").items():
        if layer(module + ".x") != "domain":
            continue
        wrong = {name for name in imported if name.split(".")[0] in LIBRARIES}
        assert not wrong, f"{module} imports {sorted(wrong)}"


def test_the_layering_test_sees_every_package() -> None:
    """The checks above read real modules (a wrong root would make them pass vacuously)."""
    hub, connectors = modules("hub"), modules("connectors")
    assert "hub.runtime.gateway" in hub and "connectors.core.contract" in connectors
    assert (
        "connectors.core.model"
        in hub["hub.runtime.gateway"] | hub["hub.runtime.agents"] | hub["hub.domain.addressing"]
    )


# Secrets come through one door, `connectors.core.secret` (`Secret`, read at each use from an
# environment variable or a file). Settings are not secrets, but connectors need no door for
# them either: the hub reads `RSHUB_<NAME>_<FIELD>` and hands them to a connector as a mapping
# (`Connector.load_settings(environ)`). So the rule is simple: under connectors/, only the
# door reads the environment.
SECRET_DOOR = "connectors.core.secret"
# Being rewritten by another change, which moves its secret to `Secret`; then drop it here.
NOT_YET_THROUGH_THE_DOOR: set[str] = set()
ENVIRONMENT = {"environ", "environb", "getenv", "getenvb"}


def environment_reads(package: str) -> dict[str, list[int]]:
    """Every module of `package` naming `os.environ`/`os.getenv` (or importing them), with
    the lines it does so on."""
    found: dict[str, list[int]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        lines = [
            node.lineno
            for node in ast.walk(ast.parse(path.read_text()))
            if (
                isinstance(node, ast.Attribute)
                and node.attr in ENVIRONMENT
                and isinstance(node.value, ast.Name)
                and node.value.id == "os"
            )
            or (
                isinstance(node, ast.ImportFrom)
                and node.module == "os"
                and any(alias.name in ENVIRONMENT for alias in node.names)
            )
        ]
        if lines:
            found[name] = lines
    return found


def test_only_the_secret_door_reads_the_environment_under_connectors() -> None:
    reads = environment_reads("connectors")
    assert SECRET_DOOR in reads  # the check sees real reads (a wrong root would pass vacuously)
    wrong = {
        m: lines for m, lines in reads.items() if m not in {SECRET_DOOR, *NOT_YET_THROUGH_THE_DOOR}
    }
    assert not wrong, f"read the environment outside {SECRET_DOOR}: {wrong}"


# Private names of the standard library the hub may use (a type for argparse's sub-parsers,
# the exit that skips clean-up on a fatal broker refusal).
STANDARD_PRIVATE = {"argparse._SubParsersAction", "os._exit"}


def test_private_internals_of_dependencies_are_used_in_one_module_only() -> None:
    # hub/kafka/internals.py names the versions it was written for; everywhere else reaches
    # a private attribute only on its own object (self, cls, super()).
    found = []
    for path in sorted((ROOT / "hub").rglob("*.py")):
        if path.name == "internals.py" and path.parent.name == "kafka":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Attribute) or not node.attr.startswith("_"):
                continue
            if node.attr.startswith("__"):
                continue
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
                continue
            if isinstance(owner, ast.Call) and ast.unparse(owner.func) == "super":
                continue
            if ast.unparse(node) in STANDARD_PRIVATE:
                continue
            found.append(f"{path.relative_to(ROOT)}:{node.lineno} {ast.unparse(node)}")
    assert not found, found
