"""docker-compose.yml, deploy/ and dagster.yaml agree with each other and with the code.

Nothing here starts a container: the files are parsed and cross-checked, and the Dagster instance
configs go through Dagster's own validation. test_postgres_instance.py runs the same instance
config against the real PostgreSQL.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
INSTANCE_YAML = ROOT / "dagster.yaml"
PG_INSTANCE_YAML = ROOT / "deploy" / "dagster.postgres.yaml"
DOCKER_WORKSPACE = ROOT / "deploy" / "workspace.docker.yaml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
SETTINGS_SOURCE = ROOT / "learning_pipeline" / "settings.py"

DAGSTER_SERVICES = ("user_code", "webserver", "daemon")
ALL_SERVICES = ("postgres", "qdrant", *DAGSTER_SERVICES, "llm")

# LEARNING_PIPELINE_* variables the compose file may set.
# Read by learning_pipeline/settings.py today (each must appear there as a string literal):
SETTINGS_ENV_NOW = {
    "LEARNING_PIPELINE_DATA_DIR",
    "LEARNING_PIPELINE_TELEMETRY_DIR",
    "LEARNING_PIPELINE_CONFIG",
}
# LATER: read by settings that a later change adds (Qdrant server, LLM endpoint). Only their
# presence is checked; move a name to SETTINGS_ENV_NOW once settings.py reads it.
SETTINGS_ENV_LATER = {
    "LEARNING_PIPELINE_QDRANT_URL",
    "LEARNING_PIPELINE_LLM_BASE_URL",
}

# Two environments to resolve ${VAR:-default} with: the defaults, and a user's overrides.
ENV_DEFAULTS: dict[str, str] = {}
ENV_OVERRIDDEN = {
    "DAGSTER_PG_USERNAME": "pipeline",
    "DAGSTER_PG_PASSWORD": "not-the-default",
    "DAGSTER_PG_DB": "learning",
    "TELEMETRY_DIR": "/srv/ai-stack/telemetry",
    "LEARNING_PIPELINE_LLM_BASE_URL": "http://llm:8080/v1",
}

_INTERPOLATION = re.compile(r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?-)(?P<default>[^}]*))?\}")


def interpolate(value: Any, env: dict[str, str]) -> str:
    """Compose's `${VAR}`, `${VAR:-default}`, `${VAR-default}` and `$$`, for the forms used here."""

    def sub(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, default = match.group("name", "op", "default")
        if op == ":-":
            return env.get(name) or default
        if op == "-":
            return env.get(name, default)
        return env.get(name, "")

    return _INTERPOLATION.sub(sub, str(value))


def split_volume(spec: str) -> tuple[str, str, str]:
    """A short-syntax volume `source:target[:mode]` whose source may contain `${X:-a:b}`."""
    parts, depth, current = [], 0, ""
    for char in spec:
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
        if char == ":" and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    assert len(parts) in (2, 3), f"unexpected volume spec {spec!r}"
    return parts[0], parts[1], parts[2] if len(parts) == 3 else "rw"


def load_yaml(path: Path) -> Any:
    with path.open(encoding="utf-8") as fh:
        return yaml.safe_load(fh)


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_yaml(COMPOSE_FILE)


@pytest.fixture(scope="module")
def services(compose: dict) -> dict:
    return compose["services"]


def environment_of(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # the KEY=VALUE list form
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def volumes_of(service: dict) -> list[tuple[str, str, str]]:
    return [split_volume(v) for v in service.get("volumes") or []]


def mount_at(service: dict, target: str) -> tuple[str, str, str]:
    matches = [v for v in volumes_of(service) if v[1] == target]
    assert len(matches) == 1, f"expected one mount at {target}, got {matches}"
    return matches[0]


def published_ports(service: dict) -> set[int]:
    return {int(str(p).rsplit(":", 1)[-1].split("/")[0]) for p in service.get("ports") or []}


def command_option(command: list[str], *flags: str) -> str:
    for i, arg in enumerate(command):
        if arg in flags:
            return command[i + 1]
    raise AssertionError(f"none of {flags} in {command}")


def env_refs(node: Any) -> set[str]:
    """Every `{env: NAME}` in a Dagster config tree."""
    if isinstance(node, dict):
        if set(node) == {"env"}:
            return {node["env"]}
        return set().union(*(env_refs(v) for v in node.values())) if node else set()
    if isinstance(node, list):
        return set().union(*(env_refs(v) for v in node)) if node else set()
    return set()


# --- docker-compose.yml -------------------------------------------------------------------------


def test_services_exist(services):
    assert set(ALL_SERVICES) <= set(services), sorted(services)
    assert services["llm"].get("profiles") == ["llm"], "the LLM is optional: profile llm only"
    for name in ALL_SERVICES:
        if name != "llm":
            assert not services[name].get("profiles"), f"{name} must start with a plain `up`"
    assert services["postgres"]["image"].startswith("postgres:15")
    assert services["qdrant"]["image"].startswith("qdrant/qdrant")
    assert services["llm"]["image"].startswith("ghcr.io/ggml-org/llama.cpp:server")


def test_dagster_services_share_the_project_image(services):
    for name in DAGSTER_SERVICES:
        build = services[name]["build"]
        assert (ROOT / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE
    assert len({services[name]["image"] for name in DAGSTER_SERVICES}) == 1


def test_ports(services):
    assert {6333, 6334} <= published_ports(services["qdrant"])
    assert 3000 in published_ports(services["webserver"])
    assert 8080 in published_ports(services["llm"])
    webserver_cmd = services["webserver"]["command"]
    assert command_option(webserver_cmd, "-p", "--port") == "3000"
    assert command_option(webserver_cmd, "-h", "--host") == "0.0.0.0"
    llm_cmd = services["llm"]["command"]
    assert command_option(llm_cmd, "--port") == "8080"
    assert command_option(llm_cmd, "--host") == "0.0.0.0"


def test_volumes(compose, services):
    named = set(compose["volumes"])
    assert {"postgres-data", "qdrant-storage", "pipeline-data"} <= named
    assert mount_at(services["postgres"], "/var/lib/postgresql/data")[0] == "postgres-data"
    assert mount_at(services["qdrant"], "/qdrant/storage")[0] == "qdrant-storage"
    assert mount_at(services["llm"], "/models")[2] == "ro"
    for name in DAGSTER_SERVICES:
        service = services[name]
        assert mount_at(service, "/data")[:2] == ("pipeline-data", "/data")
        source, _, mode = mount_at(service, "/telemetry")
        assert mode == "ro", f"{name}: telemetry is read, never written"
        assert interpolate(source, ENV_DEFAULTS) == "./data/telemetry/inbox"
        assert interpolate(source, ENV_OVERRIDDEN) == ENV_OVERRIDDEN["TELEMETRY_DIR"]
        for source, _, _ in volumes_of(service):
            if source.startswith("./deploy/"):
                assert (ROOT / source).is_file(), f"{name} mounts missing file {source}"
    for service in services.values():  # every named volume used is declared
        for source, _, _ in volumes_of(service):
            if not source.startswith(("/", ".", "$", "~")):
                assert source in named, f"volume {source} is not declared"


def test_every_dagster_service_mounts_the_postgres_instance_yaml(services):
    for name in DAGSTER_SERVICES:
        env = environment_of(services[name])
        home = env["DAGSTER_HOME"]
        source, _, mode = mount_at(services[name], f"{home.rstrip('/')}/dagster.yaml")
        assert (ROOT / source).resolve() == PG_INSTANCE_YAML, name
        assert mode == "ro"


def test_postgres_env_agrees_with_the_postgres_service(services):
    referenced = env_refs(load_yaml(PG_INSTANCE_YAML))
    assert referenced == {
        "DAGSTER_PG_USERNAME",
        "DAGSTER_PG_PASSWORD",
        "DAGSTER_PG_HOST",
        "DAGSTER_PG_DB",
        "DAGSTER_PG_PORT",
    }
    pg_env = environment_of(services["postgres"])
    for env in (ENV_DEFAULTS, ENV_OVERRIDDEN):
        pg = {k: interpolate(v, env) for k, v in pg_env.items()}
        for name in DAGSTER_SERVICES:
            dagster_env = environment_of(services[name])
            missing = referenced - set(dagster_env)
            assert not missing, f"{name} lacks {sorted(missing)} that dagster.postgres.yaml reads"
            resolved = {k: interpolate(v, env) for k, v in dagster_env.items()}
            assert resolved["DAGSTER_PG_USERNAME"] == pg["POSTGRES_USER"]
            assert resolved["DAGSTER_PG_PASSWORD"] == pg["POSTGRES_PASSWORD"]
            assert resolved["DAGSTER_PG_DB"] == pg["POSTGRES_DB"]
            assert resolved["DAGSTER_PG_HOST"] == "postgres" and "postgres" in services
            assert resolved["DAGSTER_PG_PORT"] == pg.get("PGPORT", "5432")
            assert resolved["DAGSTER_PG_USERNAME"] and resolved["DAGSTER_PG_DB"]
        assert pg["POSTGRES_USER"] == env.get("DAGSTER_PG_USERNAME", pg["POSTGRES_USER"])


def test_dagster_services_depend_on_healthy_postgres(services):
    for name in DAGSTER_SERVICES:
        depends = services[name]["depends_on"]
        assert depends["postgres"]["condition"] == "service_healthy", name
        assert "healthcheck" in services[name], name
    for name in ("webserver", "daemon"):
        assert services[name]["depends_on"]["user_code"]["condition"] == "service_healthy"
    for name in ("postgres", "qdrant", "llm"):
        assert "healthcheck" in services[name], name


def test_learning_pipeline_env_names_are_read_by_settings(services):
    import learning_pipeline.settings as settings_module

    source = SETTINGS_SOURCE.read_text(encoding="utf-8")
    for known in SETTINGS_ENV_NOW:
        assert f'"{known}"' in source, f"{known} is listed as read by settings.py but is not there"
    assert settings_module.ENV_DATA_DIR == "LEARNING_PIPELINE_DATA_DIR"
    assert settings_module.ENV_TELEMETRY_DIR == "LEARNING_PIPELINE_TELEMETRY_DIR"
    for name in DAGSTER_SERVICES:
        env = environment_of(services[name])
        used = {k for k in env if k.startswith("LEARNING_PIPELINE_")}
        unknown = used - SETTINGS_ENV_NOW - SETTINGS_ENV_LATER
        assert not unknown, f"{name} sets {sorted(unknown)}, which nothing reads"
        assert env["LEARNING_PIPELINE_DATA_DIR"] == "/data"
        assert env["LEARNING_PIPELINE_TELEMETRY_DIR"] == "/telemetry"
        # LATER settings: present, and pointing at the services of this file.
        assert env["LEARNING_PIPELINE_QDRANT_URL"] == "http://qdrant:6333"
        assert "LEARNING_PIPELINE_LLM_BASE_URL" in env
        assert interpolate(env["LEARNING_PIPELINE_LLM_BASE_URL"], ENV_DEFAULTS) == ""
        assert interpolate(env["LEARNING_PIPELINE_LLM_BASE_URL"], ENV_OVERRIDDEN) == "http://llm:8080/v1"


def test_workspace_points_at_the_user_code_server(services):
    workspace = load_yaml(DOCKER_WORKSPACE)
    (entry,) = workspace["load_from"]
    grpc = entry["grpc_server"]
    user_code_cmd = services["user_code"]["command"]
    assert user_code_cmd[:3] == ["dagster", "code-server", "start"]
    assert grpc["host"] == "user_code" and grpc["host"] in services
    assert str(grpc["port"]) == command_option(user_code_cmd, "-p", "--port")
    assert command_option(user_code_cmd, "-h", "--host") == "0.0.0.0"
    assert str(grpc["port"]) in [str(p) for p in services["user_code"].get("expose", [])]

    # Same code and location name as the local workspace.yaml / pyproject.
    local = load_yaml(ROOT / "workspace.yaml")
    local_module = local["load_from"][0]["python_module"]["module_name"]
    assert command_option(user_code_cmd, "-m", "--module-name") == local_module
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert grpc["location_name"] == pyproject["tool"]["dg"]["project"]["code_location_name"]

    # webserver and daemon read this workspace file.
    for name in ("webserver", "daemon"):
        path = command_option(services[name]["command"], "-w", "--workspace")
        source, _, _ = mount_at(services[name], path)
        assert (ROOT / source).resolve() == DOCKER_WORKSPACE, name


# --- Dagster instance configs -------------------------------------------------------------------


def test_postgres_instance_yaml_is_dagster_yaml_plus_storage():
    base = load_yaml(INSTANCE_YAML)
    production = load_yaml(PG_INSTANCE_YAML)
    assert set(production) - set(base) == {"storage"}
    assert {k: v for k, v in production.items() if k != "storage"} == base
    storage = production["storage"]
    assert list(storage) == ["postgres"]
    db = storage["postgres"]["postgres_db"]
    # SQLAlchemy 2.1 maps a bare `postgresql` URL to psycopg 3; dagster-postgres ships psycopg2.
    assert db["scheme"] == "postgresql+psycopg2"
    for key in ("username", "password", "hostname", "db_name", "port"):
        assert set(db[key]) == {"env"}, f"postgres_db.{key} must come from the environment"


@pytest.fixture
def pg_env(monkeypatch):
    values = {
        "DAGSTER_PG_USERNAME": "dagster",
        "DAGSTER_PG_PASSWORD": "dagster",
        "DAGSTER_PG_HOST": "postgres",
        "DAGSTER_PG_DB": "dagster",
        "DAGSTER_PG_PORT": "5432",
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return values


@pytest.mark.parametrize("path", [INSTANCE_YAML, PG_INSTANCE_YAML], ids=lambda p: p.name)
def test_instance_config_passes_dagster_validation(path: Path, pg_env):
    from dagster._core.instance.config import dagster_instance_config

    config, custom_class = dagster_instance_config(str(path.parent), path.name)
    assert custom_class is None
    assert config["telemetry"]["enabled"] is False


def test_postgres_storage_resolves_to_a_psycopg2_url(pg_env):
    """The env-sourced values resolve, and SQLAlchemy finds the driver the URL names."""
    import sqlalchemy
    from dagster._config import process_config
    from dagster._core.storage.config import pg_config
    from dagster_postgres.utils import pg_url_from_config

    raw = load_yaml(PG_INSTANCE_YAML)["storage"]["postgres"]
    resolved = process_config(pg_config(), raw)
    assert resolved.success, resolved.errors
    url = pg_url_from_config(resolved.value)
    assert url == "postgresql+psycopg2://dagster:dagster@postgres:5432/dagster"
    engine = sqlalchemy.create_engine(url)  # imports the DBAPI module; does not connect
    assert engine.dialect.driver == "psycopg2"
    engine.dispose()

