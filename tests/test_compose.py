"""docker-compose.yml is a valid Compose file (the Compose specification's JSON schema, as
shipped by Debian's docker-compose package, and `docker-compose config` itself: no network,
no daemon, nothing built) and holds what production relies on."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from connectors.core import directory as directory_module
from hub.cli.serve import scaling_problems
from hub.kafka import topics
from hub.ops import index as index_module
from hub.runtime import app as assembly
from hub.runtime.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
# Three KRaft brokers, replication factor 3 (docs/production.md: Scaling out).
KAFKA3 = ROOT / "examples" / "production" / "docker-compose.kafka3.yml"
SHIPPED = [COMPOSE, KAFKA3]
# Debian's docker-compose (installed by .ci/run) ships the specification's schema.
SCHEMA = Path("/usr/lib/python3/dist-packages/compose/config/compose_spec.json")
# A loan with its renewals can stay open about a year; a month's margin.
LONGEST_LOAN_HOURS = 400 * 24


def compose(path: Path = COMPOSE) -> dict[str, Any]:
    return dict(yaml.safe_load(path.read_text()))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_compose_file_follows_the_compose_specification(path: Path) -> None:
    assert SCHEMA.is_file(), "install Debian's docker-compose (apt-get install docker-compose)"
    schema = json.loads(SCHEMA.read_text())
    # The file says draft 2019-09 with a URI jsonschema does not recognise: say it plainly.
    assert "2019-09" in schema["$schema"]
    validator = jsonschema.Draft201909Validator(schema)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(compose(path))]
    assert errors == []


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_docker_compose_reads_it(tmp_path: Path, path: Path) -> None:
    env_file = tmp_path / "rshub.env"
    env_file.write_text((ROOT / "rshub.env.example").read_text())
    done = subprocess.run(
        ["docker-compose", "-f", str(path), "config", "-q"],
        cwd=ROOT,
        env={**os.environ, "RSHUB_ENV_FILE": str(env_file)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


def test_the_hub_runs_as_production_needs() -> None:
    services = compose()["services"]
    hub = services["hub"]
    user = str(hub["user"]).split(":")
    assert user[0] not in ("0", "root") and user[0].isdigit()
    assert hub["restart"] == "unless-stopped" and services["kafka"]["restart"] == "unless-stopped"
    assert "/health" in " ".join(hub["healthcheck"]["test"])
    for name, service in services.items():  # logs rotate
        assert service["logging"]["options"]["max-size"], name
    environment = hub["environment"]
    assert environment["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    # SOURCE:TARGET[:ro]; the source may hold ${VAR:-default}, colon included.
    mounts = {v.removesuffix(":ro").rsplit(":", 1)[-1]: v for v in hub["volumes"]}
    assert mounts[environment["RSHUB_DIRECTORY"]].endswith(":ro")
    assert environment["RSHUB_DATA_DIR"] in mounts
    # Every partner's secret reaches the hub from the env file or the secrets folder, none
    # is a fixed name here.
    assert hub["env_file"] and "/run/secrets/rshub" in mounts
    assert not [key for key in environment if key.startswith("RSHUB_SECRET_")]


def test_every_listening_port_is_published() -> None:
    hub = compose()["services"]["hub"]
    published = {int(str(p).rsplit(":", 1)[-1]) for p in hub["ports"]}
    settings = Settings()
    wanted = {settings.http_port}
    for connector in assembly.connectors(settings):
        if "port" in connector.settings.model_fields:
            port = connector.settings.model_fields["port"].default
            assert hub["environment"][f"{connector.env_prefix()}PORT"] == port
            wanted.add(port)
    assert wanted <= published


def test_env_example_names_every_secret_of_the_example_directory() -> None:
    registry = assembly.connectors(Settings())
    directory = directory_module.load(ROOT / "examples" / "consortium.yaml", registry.names)
    example = (ROOT / "rshub.env.example").read_text()
    named = set(re.findall(r"^([A-Z0-9_]+)=", example, re.M))
    wanted = {c.secret_env for _, _, c in directory.credentials() if c.secret_env}
    assert wanted and wanted | {"RSHUB_ID_SECRET"} <= named


def test_topics_the_operators_history_comes_from_outlive_a_loan() -> None:
    """`show` rebuilds a transaction's story from these topics when the index is new (a new
    worker, a lost data volume): they must keep it as long as a loan can stay open."""
    specs = {spec.name: spec for spec in topics.load()}
    history = [
        name for name in specs if name in index_module.TOPICS or name.startswith("ill.outbound.")
    ]
    assert "ill.audit" in history and "ill.outbound.ncip" in history
    for name in history:
        spec = specs[name]
        if spec.cleanup == "compact":
            continue  # the latest record per key is kept for ever
        assert spec.retention_hours is not None and spec.retention_hours >= LONGEST_LOAN_HOURS, name


def env_file(path: Path) -> dict[str, str]:
    """KEY=value lines, as compose's env_file reads them."""
    lines = [line.split("=", 1) for line in path.read_text().splitlines()]
    return {key.strip(): value for key, value in (x for x in lines if len(x) == 2)}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_the_example_hub_passes_the_id_secret_check(path: Path) -> None:
    """The hub of each compose file, given rshub.env.example, is on Kafka with an id secret:
    `serve` starts (and warns about the placeholder until it is replaced)."""
    hub = compose(path)["services"]["hub"]
    environ = {**env_file(ROOT / "rshub.env.example")}
    environ.update({k: str(v) for k, v in hub["environment"].items() if "${" not in str(v)})
    settings = Settings.from_env(environ)
    assert settings.bootstrap_servers and not settings.single_worker
    assert environ["RSHUB_ID_SECRET"].startswith("replace-me")
    assert scaling_problems(settings, environ) == []


def test_workers_on_kafka_need_the_id_secret() -> None:
    on_kafka = {"KAFKA_BOOTSTRAP_SERVERS": "kafka:9092"}
    (problem,) = scaling_problems(Settings.from_env(on_kafka), on_kafka)
    assert "RSHUB_ID_SECRET" in problem and "RSHUB_SINGLE_WORKER=true" in problem
    alone = {**on_kafka, "RSHUB_SINGLE_WORKER": "true"}
    assert scaling_problems(Settings.from_env(alone), alone) == []
    shared = {**on_kafka, "RSHUB_ID_SECRET": "s3cret-shared-by-every-worker"}
    assert scaling_problems(Settings.from_env(shared), shared) == []
    # The embedded broker serves one data folder: its id-secret file is the deployment's.
    assert scaling_problems(Settings.from_env({}), {}) == []
    # Empty is unset, as docker compose passes ${VAR:-}.
    empty = {**on_kafka, "RSHUB_ID_SECRET": ""}
    assert scaling_problems(Settings.from_env(empty), empty)


def test_serve_refuses_to_start_without_it(tmp_path: Path) -> None:
    environ = {k: v for k, v in os.environ.items() if k != "RSHUB_ID_SECRET"}
    done = subprocess.run(
        [sys.executable, "-m", "hub.cli", "serve"],
        cwd=ROOT,
        env={**environ, "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9", "RSHUB_DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("rshub: KAFKA_BOOTSTRAP_SERVERS is set and RSHUB_ID_SECRET is not")
    assert not (tmp_path / "id-secret").exists()


def test_three_brokers_keep_three_copies_and_write_two() -> None:
    services = compose(KAFKA3)["services"]
    brokers = {name: s["environment"] for name, s in services.items() if name.startswith("kafka")}
    assert len(brokers) == 3
    ids = {str(env["KAFKA_NODE_ID"]) for env in brokers.values()}
    assert len(ids) == 3
    voters = {env["KAFKA_CONTROLLER_QUORUM_VOTERS"] for env in brokers.values()}
    assert voters == {",".join(f"{i}@kafka-{i}:9093" for i in sorted(ids))}
    assert len({env["CLUSTER_ID"] for env in brokers.values()}) == 1
    for name, env in brokers.items():
        assert env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{name}:9092"
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
        assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == 3
        assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == 3
        assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == 3
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == 2
        assert env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == 2
        assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
        volume = services[name]["volumes"][0].split(":")
        assert volume[0] == f"{name}-data" and volume[1] == env["KAFKA_LOG_DIRS"]
    hub = services["hub"]
    environment = hub["environment"]
    assert environment["KAFKA_BOOTSTRAP_SERVERS"] == ",".join(
        f"{name}:9092" for name in sorted(brokers)
    )
    assert environment["RSHUB_REPLICATION_FACTOR"] == 3
    assert set(hub["depends_on"]) >= set(brokers)
    # The hub otherwise as in docker-compose.yml: the same ports, user, mounts.
    single = compose()["services"]["hub"]
    assert hub["ports"] == single["ports"]
    assert hub["user"] == single["user"]
    targets = [v.removesuffix(":ro").rsplit(":", 1)[-1] for v in hub["volumes"]]
    assert targets == [v.removesuffix(":ro").rsplit(":", 1)[-1] for v in single["volumes"]]


def test_console_users_are_added_inside_the_container_as_documented(tmp_path: Path) -> None:
    """docs/production.md's `docker compose exec hub rshub console-user ...` commands: the file
    they write is on the hub's data volume (writable, where the running console reads it), and
    the commands work as written (run here with the data folder in tmp_path)."""
    hub = compose()["services"]["hub"]
    environment = hub["environment"]
    assert "RSHUB_CONSOLE_USERS_FILE" not in environment  # <RSHUB_DATA_DIR>/console-users
    data = [v for v in hub["volumes"] if v.split(":")[1] == environment["RSHUB_DATA_DIR"]]
    assert data and not data[0].endswith(":ro")
    text = (ROOT / "docs" / "production.md").read_text()
    commands = re.findall(r"docker compose exec (?:-T )?hub (rshub console-user [^\n]+)", text)
    assert any("--password-stdin" in c for c in commands) and any(" add " in c for c in commands)
    environ = {k: v for k, v in os.environ.items() if not k.startswith("RSHUB_")}
    environ["RSHUB_DATA_DIR"] = str(tmp_path)
    for command in commands:
        if "--password-stdin" not in command:
            continue  # asks on the terminal
        args = command.split()[1:]
        done = subprocess.run(
            [sys.executable, "-m", "hub.cli", *args],
            cwd=ROOT,
            env=environ,
            input="a-long-enough-password\n",
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
    listed = subprocess.run(
        [sys.executable, "-m", "hub.cli", "console-user", "list"],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "bob" in listed.stdout and (tmp_path / "console-users").is_file()
