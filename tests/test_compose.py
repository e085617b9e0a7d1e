"""The production-shaped stack, checked without Docker.

``docker-compose.yml`` and the Grafana provisioning files cannot be run here,
so this module checks what would break ``docker compose up`` or silently mis-wire the stack:
the YAML parses, the services exist and are pinned, health checks and start-up order are
declared, the worker can be scaled, every ``command:`` is a real ``modelmon`` subcommand and
every ``MODELMON_*`` variable is a field of :class:`modelmon.settings.Settings` whose compose
value validates. The image itself is checked by ``tests/test_dockerfile.py``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from click.testing import CliRunner

from modelmon.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DATASOURCE = ROOT / "dashboards" / "provisioning" / "datasources" / "clickhouse.yaml"
DASHBOARD_PROVIDER = ROOT / "dashboards" / "provisioning" / "dashboards" / "modelmon.yaml"
DASHBOARD_JSON = ROOT / "dashboards" / "json"
DEPLOY_DOC = ROOT / "docs" / "deploy.md"

REQUIRED_SERVICES = ("kafka", "clickhouse", "grafana", "migrate", "worker", "sink")
MODELMON_SERVICES = ("migrate", "worker", "sink", "producer")
HEALTHCHECKED = {
    "kafka": ("kafka-broker-api-versions", "kafka-topics"),
    "clickhouse": ("/ping", "clickhouse-client"),
    "grafana": ("/api/health",),
}
DATASOURCE_UID = "modelmon-clickhouse"
DATASOURCE_TYPE = "grafana-clickhouse-datasource"

# --------------------------------------------------------------------------------------------
# Compose variable interpolation (the subset of the compose spec this repo may use).
# --------------------------------------------------------------------------------------------
_REFERENCE = re.compile(r"\$(?:(?P<escaped>\$)|\{(?P<braced>[^}]*)\}|(?P<named>[A-Za-z_][A-Za-z0-9_]*))")
_BRACED = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>.*))?$", re.DOTALL)


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Resolve ``$NAME``, ``${NAME}``, ``${NAME:-default}``, ``${NAME-default}``, ``${NAME:?err}``,
    ``${NAME:+alt}`` and ``$$`` the way ``docker compose`` does.

    >>> interpolate("kafka:${PORT:-9092} $$HOME ${UNSET}", {})
    'kafka:9092 $HOME '
    >>> interpolate("${A:+on}${B-x}", {"A": "1", "B": ""})
    'on'
    """

    def resolve(match: re.Match[str]) -> str:
        if match.group("escaped"):
            return "$"
        if match.group("named"):
            return env.get(match.group("named"), "")
        braced = _BRACED.match(match.group("braced"))
        if braced is None:
            raise ValueError(f"unsupported interpolation {match.group(0)!r} (nested or malformed)")
        name, op, arg = braced.group("name"), braced.group("op"), braced.group("arg") or ""
        value = env.get(name)
        if op is None:
            return value or ""
        if op == ":-":
            return value or arg
        if op == "-":
            return arg if value is None else value
        if op in (":?", "?"):
            if value is None or (op == ":?" and not value):
                raise ValueError(f"${{{name}}} is required: {arg}")
            return value
        if op == ":+":
            return arg if value else ""
        return "" if value is None else arg  # op == "+"

    return _REFERENCE.sub(resolve, text)


def referenced_variables(text: str) -> set[str]:
    """Names of the variables a compose file interpolates."""
    names = set()
    for match in _REFERENCE.finditer(text):
        if match.group("named"):
            names.add(match.group("named"))
        elif match.group("braced"):
            braced = _BRACED.match(match.group("braced"))
            if braced:
                names.add(braced.group("name"))
    return names


def _resolve(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [_resolve(item, env) for item in node]
    if isinstance(node, dict):
        return {key: _resolve(value, env) for key, value in node.items()}
    return node


def _environment(service: Mapping[str, Any]) -> dict[str, str | None]:
    """A service's ``environment`` as a dict, from either the mapping or the list form."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.split("=", 1) if "=" in item else (item, None) for item in env)
        return {key: value for key, value in pairs}
    return {key: None if value is None else str(value) for key, value in env.items()}


def _command(service: Mapping[str, Any]) -> list[str]:
    command = service.get("command")
    assert command, "a modelmon service must say its command explicitly"
    return command.split() if isinstance(command, str) else [str(part) for part in command]


def _volumes(service: Mapping[str, Any]) -> Iterator[tuple[str, str, bool]]:
    """(source, target, read_only) of a service's short-form and long-form volumes."""
    for volume in service.get("volumes") or []:
        if isinstance(volume, str):
            parts = volume.split(":")
            yield parts[0], parts[1], len(parts) > 2 and "ro" in parts[2].split(",")
        else:
            yield volume.get("source", ""), volume["target"], bool(volume.get("read_only"))


@pytest.fixture(scope="module")
def compose_text() -> str:
    return COMPOSE.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def compose(compose_text: str) -> dict[str, Any]:
    """docker-compose.yml as compose sees it with no variable set: YAML merged, defaults applied."""
    document = yaml.safe_load(compose_text)
    assert isinstance(document, dict)
    return _resolve(document, {})


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


# --------------------------------------------------------------------------------------------
# docker-compose.yml
# --------------------------------------------------------------------------------------------
def test_required_services_exist_with_an_image_or_a_build(services: dict[str, dict[str, Any]]) -> None:
    missing = [name for name in REQUIRED_SERVICES if name not in services]
    assert not missing, f"services missing from docker-compose.yml: {missing}"
    for name, service in services.items():
        assert service.get("image") or service.get("build"), f"{name} has neither image nor build"


def test_images_are_pinned(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        image = service.get("image")
        if not image:
            continue
        if "@sha256:" in image:
            continue
        last_segment = image.rsplit("/", 1)[-1]
        assert ":" in last_segment, f"{name}: image {image!r} has no tag"
        tag = last_segment.split(":", 1)[1]
        assert tag and tag != "latest", f"{name}: image {image!r} is not pinned"


def test_third_party_images(services: dict[str, dict[str, Any]]) -> None:
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["clickhouse"]["image"].startswith("clickhouse/clickhouse-server:")
    assert services["grafana"]["image"].startswith("grafana/grafana:")
    assert not any("zookeeper" in name for name in services), "Kafka runs in KRaft mode"
    kafka = _environment(services["kafka"])
    assert "controller" in (kafka.get("KAFKA_PROCESS_ROLES") or "")
    assert "PLAINTEXT://kafka:9092" in (kafka.get("KAFKA_ADVERTISED_LISTENERS") or "")


@pytest.mark.parametrize("name", sorted(HEALTHCHECKED))
def test_infrastructure_has_healthchecks(services: dict[str, dict[str, Any]], name: str) -> None:
    healthcheck = services[name].get("healthcheck")
    assert healthcheck and not healthcheck.get("disable"), f"{name} needs a healthcheck"
    test = healthcheck["test"]
    command = " ".join(test) if isinstance(test, list) else test
    assert any(probe in command for probe in HEALTHCHECKED[name]), f"{name}: unexpected probe {command!r}"


def test_worker_is_scalable(services: dict[str, dict[str, Any]]) -> None:
    worker = services["worker"]
    for key in ("container_name", "hostname", "ports"):
        assert key not in worker, f"worker sets {key}: `docker compose up --scale worker=4` would clash"
    env = _environment(worker)
    assert env.get("MODELMON_TABLE_STORE") == "rocksdb://"
    assert "MODELMON_CLICKHOUSE_DSN" not in env, "workers hold no database connection"
    for source, _target, _ro in _volumes(worker):
        assert not source, "a volume shared by all worker replicas would share one RocksDB directory"


def test_modelmon_services_run_the_repo_image(services: dict[str, dict[str, Any]]) -> None:
    images = set()
    for name in MODELMON_SERVICES:
        service = services[name]
        build = service.get("build")
        assert build, f"{name} must be built from the repo"
        context = build if isinstance(build, str) else build.get("context", ".")
        dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
        assert (ROOT / context / dockerfile).resolve() == DOCKERFILE
        images.add(service.get("image"))
    assert len(images) == 1, f"the modelmon services should share one image, got {images}"


def test_auto_created_topics_get_modelmon_partition_count(services: dict[str, dict[str, Any]]) -> None:
    """Whoever touches ``predictions``/``ground-truth`` first, both get the same partition count."""
    broker = _environment(services["kafka"]).get("KAFKA_NUM_PARTITIONS")
    for name in MODELMON_SERVICES:
        assert _environment(services[name]).get("MODELMON_TOPIC_PARTITIONS") == broker, name


def test_kafka_clients_use_the_internal_listener(services: dict[str, dict[str, Any]]) -> None:
    for name in MODELMON_SERVICES:
        assert _environment(services[name]).get("MODELMON_KAFKA_BOOTSTRAP") == "kafka:9092", name


def test_start_up_order(services: dict[str, dict[str, Any]]) -> None:
    def conditions(name: str) -> dict[str, str]:
        depends_on = services[name].get("depends_on") or {}
        assert isinstance(depends_on, dict), f"{name}: depends_on needs the long form with conditions"
        return {dependency: spec.get("condition", "") for dependency, spec in depends_on.items()}

    assert conditions("migrate").get("clickhouse") == "service_healthy"
    assert conditions("worker").get("kafka") == "service_healthy"
    sink = conditions("sink")
    assert sink.get("kafka") == "service_healthy"
    assert sink.get("migrate") == "service_completed_successfully"
    assert conditions("producer").get("kafka") == "service_healthy"
    assert services["migrate"].get("restart", "no") == "no", "migrate is one-shot"


def test_producer_is_an_optional_demo_profile(services: dict[str, dict[str, Any]]) -> None:
    assert services["producer"].get("profiles") == ["demo"]
    for name in REQUIRED_SERVICES:
        assert not services[name].get("profiles"), f"{name} must start with a plain `docker compose up`"


def test_named_volumes_are_declared(compose: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    for name, service in compose["services"].items():
        for source, _target, _ro in _volumes(service):
            if source and not source.startswith((".", "/", "~")):
                assert source in declared, f"{name} uses undeclared volume {source!r}"


def test_commands_are_modelmon_subcommands(services: dict[str, dict[str, Any]]) -> None:
    """Each ``command:`` must parse as ``modelmon <command>``; ``--help`` keeps it from running."""
    from modelmon.app.cli import cli  # the console script's group: modelmon.app.cli:main calls it

    runner = CliRunner()
    for name in MODELMON_SERVICES:
        command = _command(services[name])
        assert cli.get_command(click.Context(cli), command[0]) is not None, (
            f"{name}: `modelmon {command[0]}` is not a subcommand; have {sorted(cli.commands)}"
        )
        result = runner.invoke(cli, [*command, "--help"])
        assert result.exit_code == 0, f"{name}: `modelmon {' '.join(command)}` failed: {result.output}"


def test_modelmon_variables_are_settings_fields(compose_text: str, compose: dict[str, Any]) -> None:
    names = {name for name in referenced_variables(compose_text) if name.startswith("MODELMON_")}
    for service in compose["services"].values():
        names |= {name for name in _environment(service) if name.startswith("MODELMON_")}
    for block in (value for key, value in compose.items() if key.startswith("x-")):
        if isinstance(block, dict):
            names |= {name for name in block if name.startswith("MODELMON_")}
    assert names, "docker-compose.yml configures modelmon through MODELMON_* variables"
    fields = set(Settings.model_fields)
    unknown = sorted(name for name in names if name.removeprefix("MODELMON_").lower() not in fields)
    assert not unknown, f"not fields of modelmon.settings.Settings: {unknown}"


@pytest.mark.parametrize("name", MODELMON_SERVICES)
def test_compose_environment_validates_as_settings(
    services: dict[str, dict[str, Any]], name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in list(os.environ):
        if key.startswith("MODELMON_"):
            monkeypatch.delenv(key)
    for key, value in _environment(services[name]).items():
        if value is not None:  # no value = passed through from the host only when set there
            monkeypatch.setenv(key, value)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.kafka_bootstrap == "kafka:9092"
    assert settings.models_path == Path("/app/models")
    if name in ("migrate", "sink"):
        assert settings.clickhouse_dsn.startswith("http://")
        assert "@clickhouse:8123" in settings.clickhouse_dsn


def test_kafka_config_json_passes_through(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """SASL/TLS settings reach every modelmon process unchanged when set on the host."""
    for name in MODELMON_SERVICES:
        env = _environment(services[name])
        assert "MODELMON_KAFKA_CONFIG" in env, f"{name} does not pass MODELMON_KAFKA_CONFIG through"
        assert env["MODELMON_KAFKA_CONFIG"] is None, f"{name}: leave it empty so the host's value is used"
    config = {"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "mm"}
    monkeypatch.setenv("MODELMON_KAFKA_CONFIG", json.dumps(config))
    monkeypatch.setenv("MODELMON_KAFKA_BOOTSTRAP", "kafka:9092")
    common = Settings(_env_file=None).kafka_common()  # type: ignore[call-arg]
    assert common == {"bootstrap.servers": "kafka:9092", **config}


# --------------------------------------------------------------------------------------------
# Grafana provisioning
# --------------------------------------------------------------------------------------------
def test_clickhouse_datasource_is_provisioned(services: dict[str, dict[str, Any]]) -> None:
    provisioning = yaml.safe_load(DATASOURCE.read_text(encoding="utf-8"))
    sources = [source for source in provisioning["datasources"] if source.get("uid") == DATASOURCE_UID]
    assert len(sources) == 1, f"exactly one datasource with uid {DATASOURCE_UID!r}"
    source = sources[0]
    assert source["type"] == DATASOURCE_TYPE
    assert source["jsonData"]["host"] in services, "the datasource host must be a compose service"
    assert int(source["jsonData"]["port"]) == 8123
    grafana_env = _environment(services["grafana"])
    assert DATASOURCE_TYPE in (grafana_env.get("GF_INSTALL_PLUGINS") or "")
    # $NAME / ${NAME} in provisioning files are read from Grafana's own environment.
    for variable in referenced_variables(DATASOURCE.read_text(encoding="utf-8")):
        assert variable in grafana_env, f"grafana has no {variable} for the datasource provisioning"
    assert grafana_env.get("GF_SECURITY_ADMIN_PASSWORD"), "admin password comes from the environment"


def test_dashboards_are_provisioned_from_the_repo(services: dict[str, dict[str, Any]]) -> None:
    mounts = {source: (target, read_only) for source, target, read_only in _volumes(services["grafana"])}
    provider = yaml.safe_load(DASHBOARD_PROVIDER.read_text(encoding="utf-8"))["providers"][0]
    assert provider["type"] == "file"
    assert DASHBOARD_JSON.is_dir()
    json_mount = mounts.get("./dashboards/json")
    assert json_mount, "grafana must mount ./dashboards/json"
    assert json_mount == (provider["options"]["path"], True), "provider path = read-only mount target"
    for sub in ("datasources", "dashboards"):
        target = mounts.get(f"./dashboards/provisioning/{sub}")
        assert target == (f"/etc/grafana/provisioning/{sub}", True), f"mount provisioning/{sub} read-only"
    for source in mounts:
        if source.startswith("./"):
            assert (ROOT / source).exists(), f"grafana mounts missing {source}"


# --------------------------------------------------------------------------------------------
# docs/deploy.md
# --------------------------------------------------------------------------------------------
def test_deploy_doc_lists_every_setting() -> None:
    text = DEPLOY_DOC.read_text(encoding="utf-8")
    missing = [f"MODELMON_{field.upper()}" for field in Settings.model_fields]
    missing = [name for name in missing if name not in text]
    assert not missing, f"docs/deploy.md does not document {missing}"
