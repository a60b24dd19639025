"""docker-compose.yml and the Dockerfile, checked without Docker: the file parses, every
service the stack needs is there with a healthcheck, the DOCQA_* variables are real
settings that load, hosts and ports point at the services that serve them, volumes are
declared and shared where the code needs them shared, and no secret is written down."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml
from pydantic import BaseModel

from docqa.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
COMPOSE_TEXT = yaml.safe_dump(COMPOSE)  # the values, without the comments
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
AIRFLOW = ["airflow-api-server", "airflow-scheduler", "airflow-dag-processor", "airflow-worker"]
TASK_RUNNERS = ["airflow-scheduler", "airflow-worker"]  # LocalExecutor / CeleryExecutor
INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|API_KEY|FERNET")


def interpolate(value: Any) -> str:
    """Compose's variable substitution with nothing set: defaults where given, a
    placeholder where the variable is required."""

    def one(match: re.Match[str]) -> str:
        _, op, default = match.groups()
        if op and op.endswith("-"):
            return default
        return "test-value"

    return INTERPOLATION.sub(one, str(value)).replace("$$", "$")


def environment(service: str) -> dict[str, str]:
    env = SERVICES[service].get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: interpolate(v) for k, v in env.items()}


def raw_environment(service: str) -> dict[str, str]:
    return {k: str(v) for k, v in SERVICES[service].get("environment", {}).items()}


def is_setting(name: str) -> bool:
    """Whether DOCQA_<name> names a field of the settings tree (nested with __)."""
    model: type[BaseModel] = Settings
    parts = name.removeprefix("DOCQA_").lower().split("__")
    for n, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            return False
        annotation = field.annotation
        if n < len(parts) - 1:
            if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
                return False
            model = annotation
    return True


def settings_of(service: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for key in [k for k in os.environ if k.startswith("DOCQA_")]:
        monkeypatch.delenv(key)
    for key, value in environment(service).items():
        if key.startswith("DOCQA_"):
            monkeypatch.setenv(key, value)
    return load_settings()


def container_port(service: str) -> int:
    """The port a service listens on inside the network, from its command or ports."""
    spec = SERVICES[service]
    command = [str(c) for c in spec.get("command", [])]
    if "--port" in command:
        return int(interpolate(command[command.index("--port") + 1]))
    ports = spec.get("ports") or []
    if ports:
        return int(interpolate(ports[0]).rsplit(":", 1)[1])
    return {"chroma": 8000, "postgres": 5432, "redis": 6379}[service]


def healthcheck_text(service: str) -> str:
    return " ".join(str(t) for t in SERVICES[service]["healthcheck"]["test"])


def test_the_stack_has_every_service_with_a_healthcheck():
    expected = {"api", "postgres", "redis", "chroma", "vllm", "airflow-init", *AIRFLOW}
    assert expected <= set(SERVICES)
    for name, spec in SERVICES.items():
        if name == "airflow-init":  # one-shot: the others wait for it to complete
            continue
        assert spec.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"


def test_api_and_airflow_run_one_image_built_from_the_dockerfile():
    image = SERVICES["api"]["image"]
    assert SERVICES["api"]["build"] == "."
    for name in ["airflow-init", *AIRFLOW]:
        assert SERVICES[name]["image"] == image, name
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "COPY dags" in dockerfile and ".[airflow,s3]" in dockerfile
    assert "torch==2.13.0" in dockerfile  # the CPU build, not a multi-GB CUDA one
    assert "celery" in dockerfile  # the CeleryExecutor switch works with this image
    commands = {n: " ".join(map(str, SERVICES[n]["command"])) for n in AIRFLOW}
    assert commands["airflow-api-server"].startswith("airflow api-server")
    assert commands["airflow-scheduler"] == "airflow scheduler"
    assert commands["airflow-dag-processor"] == "airflow dag-processor"
    assert commands["airflow-worker"] == "airflow celery worker"


def test_the_image_holds_every_package_the_project_installs():
    """A package left out of the Dockerfile's COPY lines installs as nothing: the image
    would start and fail at its first import."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = [p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]]
    dockerfile = (ROOT / "Dockerfile").read_text()
    missing = [p for p in packages if f"COPY {p} ./{p}" not in dockerfile]
    assert missing == []


def test_every_docqa_variable_is_a_real_setting():
    used = set()
    for name in SERVICES:
        used |= {k for k in raw_environment(name) if k.startswith("DOCQA_")}
    interpolated = {m.group(1) for m in INTERPOLATION.finditer(COMPOSE_TEXT)}
    # DOCQA_PORT, DOCQA_VERSION and DOCQA_SOURCES_DIR are compose's own knobs (host port,
    # image tag, host folder), never read by docqa; everything else must be a setting.
    compose_only = {"DOCQA_PORT", "DOCQA_VERSION", "DOCQA_SOURCES_DIR"}
    used |= {v for v in interpolated if v.startswith("DOCQA_")} - compose_only
    assert used, "no DOCQA_* variables found"
    unknown = sorted(v for v in used if not is_setting(v))
    assert unknown == [], f"not docqa settings: {unknown}"
    assert not is_setting("DOCQA_PORT") and not is_setting("DOCQA_SYNC__NOPE")  # the check bites


@pytest.mark.parametrize("service", ["api", *AIRFLOW])
def test_the_settings_each_service_gets_load(service, monkeypatch):
    settings = settings_of(service, monkeypatch)
    assert settings.chroma_url and settings.database_url and settings.redis_url
    assert settings.data_dir == Path("/data")


def test_urls_point_at_the_services_that_serve_them(monkeypatch):
    settings = settings_of("api", monkeypatch)
    targets = {
        "chroma": settings.chroma_url,
        "redis": settings.redis_url,
        "postgres": settings.database_url,
        "airflow-api-server": settings.airflow.url,
        "vllm": settings.vllm.urls[0],
    }
    for service, url in targets.items():
        parsed = urlparse(url)
        assert parsed.hostname == service, url
        assert parsed.port == container_port(service), f"{url} vs {service}"
    assert urlparse(settings.database_url).path == "/" + environment("postgres")["POSTGRES_DB"]
    assert settings.vllm.model == "docqa-llm" == interpolate(SERVICES["vllm"]["command"][3])
    assert settings.api.host == "0.0.0.0" and settings.api.api_key  # never open on a network
    assert container_port("api") == settings.api.port
    assert f":{settings.api.port}/readyz" in healthcheck_text("api")
    airflow_port = container_port("airflow-api-server")
    assert f":{airflow_port}/api/v2/monitor/health" in healthcheck_text("airflow-api-server")
    assert "/api/v2/heartbeat" in healthcheck_text("chroma")


def test_airflow_metadata_db_is_created_and_shared(monkeypatch):
    init_sql = (ROOT / "deploy" / "postgres-init.sql").read_text()
    mounts = SERVICES["postgres"]["volumes"]
    assert any(
        m.startswith("./deploy/postgres-init.sql:/docker-entrypoint-initdb.d/") for m in mounts
    )
    db = re.search(r"CREATE DATABASE (\w+)", init_sql).group(1)
    for name in ["airflow-init", *AIRFLOW]:
        env = environment(name)
        conn = urlparse(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
        assert (conn.hostname, conn.path) == ("postgres", f"/{db}"), name
        assert urlparse(env["AIRFLOW__CELERY__BROKER_URL"]).hostname == "redis"
        assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"  # the default; Celery opt-in
        server = urlparse(env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
        assert server.hostname == "airflow-api-server"
        assert server.port == container_port("airflow-api-server")
    assert SERVICES["airflow-worker"]["profiles"] == ["celery"]
    assert SERVICES["vllm"]["profiles"] == ["gpu"]


def test_volumes_are_declared_and_shared_where_the_code_needs_it(monkeypatch):
    declared = set(COMPOSE["volumes"])
    used: dict[str, dict[str, str]] = {}
    for name, spec in SERVICES.items():
        for mount in spec.get("volumes", []):
            source, target = interpolate(mount).split(":")[:2]
            if not source.startswith((".", "/")):
                used.setdefault(source, {})[name] = target
    assert set(used) == declared, "every named volume is declared and used"
    data_dir = str(settings_of("api", monkeypatch).data_dir)
    # Uploads are saved by the API and read by whichever container runs the ingest task.
    for name in ["api", *TASK_RUNNERS]:
        assert used["docqa-data"].get(name) == data_dir, name
    # The API user's password file, written by airflow-init, is read by the api-server.
    assert used["airflow-home"]["airflow-init"] == used["airflow-home"]["airflow-api-server"]
    password_file = environment("airflow-api-server")[
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"
    ]
    assert password_file.startswith(used["airflow-home"]["airflow-api-server"] + "/")
    sources = settings_of("airflow-scheduler", monkeypatch).sync.sources
    mounted = {t.split(":")[0] for t in map(interpolate, SERVICES["airflow-scheduler"]["volumes"])}
    targets = {interpolate(m).split(":")[1] for m in SERVICES["airflow-scheduler"]["volumes"]}
    assert mounted and all(s in targets for s in sources), (sources, targets)
    assert used["chroma-data"]["chroma"] == environment("chroma")["PERSIST_DIRECTORY"]


def test_dependencies_wait_for_health():
    for name, spec in SERVICES.items():
        for dep, cond in (spec.get("depends_on") or {}).items():
            condition = cond["condition"]
            assert dep in SERVICES, f"{name} depends on unknown {dep}"
            if condition == "service_healthy":
                assert SERVICES[dep].get("healthcheck"), f"{dep} has no healthcheck"
            else:
                assert (dep, condition) == ("airflow-init", "service_completed_successfully")


def test_no_secret_is_written_down():
    for name in SERVICES:
        for key, value in raw_environment(name).items():
            if SECRET_NAME.search(key) and not key.endswith("_FILE"):
                stripped = INTERPOLATION.sub("", value)
                assert stripped == "", f"{name}: {key} holds a literal {stripped!r}"
            if key.endswith(("DATABASE_URL", "SQL_ALCHEMY_CONN", "RESULT_BACKEND")):
                assert "${POSTGRES_PASSWORD" in value, f"{name}: {key}"
                assert not urlparse(INTERPOLATION.sub("", value)).password, f"{name}: {key}"
    required = {
        m.group(1)
        for m in INTERPOLATION.finditer(COMPOSE_TEXT)
        if m.group(2) and m.group(2).endswith("?")
    }
    example = (ROOT / ".env.example").read_text()
    documented = set(re.findall(r"^#?\s*([A-Z_][A-Z0-9_]*)=", example, re.M))
    assert required - {"VLLM_MODEL"} <= documented
    assert "VLLM_MODEL" in documented
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert not re.search(r"^\s*(ENV|ARG)\b.*(PASSWORD|SECRET|API_KEY|TOKEN)", dockerfile, re.M)
    assert ".env" in (ROOT / ".dockerignore").read_text().split()


def test_monitoring_profile_scrapes_the_api_and_shows_docqas_metrics():
    for name in ("prometheus", "grafana"):
        assert SERVICES[name]["profiles"] == ["monitoring"]
        assert all(str(p).startswith("127.0.0.1:") for p in SERVICES[name]["ports"])
    prometheus = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    [job] = prometheus["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"][0]["targets"] == [f"api:{container_port('api')}"]
    mounted = " ".join(map(str, SERVICES["grafana"]["volumes"]))
    assert "./deploy/grafana/provisioning" in mounted and "./deploy/grafana/dashboards" in mounted

    # Every series the dashboard plots is one docqa exports.
    import json

    from docqa import metrics as docqa_metrics

    dashboard = json.loads((ROOT / "deploy/grafana/dashboards/docqa.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = set(re.findall(r"\b(docqa_[a-z_]+?)(?:_bucket|_total|_info)?\b", " ".join(exprs)))
    exported = {m._name for m in vars(docqa_metrics).values() if hasattr(m, "_name")} | {
        "docqa_http_requests",
        "docqa_http_request_duration_seconds",
    }
    assert used and used <= exported, used - exported


MINIMAL = yaml.safe_load((ROOT / "deploy/compose.minimal.yml").read_text())


def test_the_minimal_stack_needs_nothing_filled_in_and_stays_on_loopback():
    text = (ROOT / "deploy/compose.minimal.yml").read_text()
    required = [m for m in INTERPOLATION.finditer(text) if m.group(2) and "?" in m.group(2)]
    assert required == []
    assert set(MINIMAL["services"]) == {"api", "chroma"}
    api = MINIMAL["services"]["api"]
    assert api["build"] == ".." and all(str(p).startswith("127.0.0.1:") for p in api["ports"])
    env = {k: interpolate(v) for k, v in api["environment"].items()}
    settings = load_settings(**_as_overrides(env))
    assert settings.api.allow_unauthenticated and not settings.api.api_key
    assert urlparse(settings.chroma_url).hostname == "chroma"
    assert "/readyz" in " ".join(map(str, api["healthcheck"]["test"]))


def _as_overrides(env: dict[str, str]) -> dict[str, Any]:
    """DOCQA_* variables as load_settings keyword overrides."""
    out: dict[str, Any] = {}
    for key, value in env.items():
        parts = key.removeprefix("DOCQA_").lower().split("__")
        target = out
        for part in parts[:-1]:
            target = target.setdefault(part, {})
        target[parts[-1]] = value
    return out
