"""compose.yaml is valid Compose and wires the app to PostgreSQL 16 and Mailpit.

No Docker engine runs in CI, so the file is checked against the Compose
specification's JSON schema (bundled with check-jsonschema, offline) and
read for the services, ports and variables the README promises.
"""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict:
    return YAML(typ="safe").load((ROOT / "compose.yaml").read_text())


def test_compose_matches_specification():
    executable = shutil.which("check-jsonschema") or str(Path(sys.executable).parent / "check-jsonschema")
    result = subprocess.run(
        [executable, "--builtin-schema", "vendor.compose-spec", str(ROOT / "compose.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_runs_postgres_16(compose):
    assert compose["services"]["postgres"]["image"] == "postgres:16"


def test_compose_publishes_mailpit_ui_on_1080(compose):
    assert "1080:8025" in compose["services"]["mailpit"]["ports"]


def test_compose_app_uses_postgres_and_mailpit(compose):
    environment = compose["services"]["app"]["environment"]
    assert "@postgres:5432/" in environment["TICKETS_DATABASE_URL"]
    assert environment["TICKETS_MAIL_URL"] == "smtp://mailpit:1025"


def test_compose_app_builds_from_dockerfile(compose):
    assert compose["services"]["app"]["build"] == "."
    dockerfile = (ROOT / "Dockerfile").read_text()
    for package in ("engine", "api", "persistence", "notify"):
        assert f"COPY {package} {package}" in dockerfile


def test_compose_scale_profile_runs_two_replicas(compose):
    services = compose["services"]
    for name in ("app-1", "app-2", "lb"):
        assert services[name]["profiles"] == ["scale"]
    assert "profiles" not in services["app"]
    for name in ("app-1", "app-2"):
        environment = services[name]["environment"]
        assert environment["TICKETS_DATABASE_URL"] == services["app"]["environment"]["TICKETS_DATABASE_URL"]
        assert environment["TICKETS_INTERNAL_ADVERTISE_HOST"] == name
        assert environment["TICKETS_INTERNAL_PORT"] == "9000"
        assert services[name]["command"] == ["tickets", "serve", "--demo"]


def test_compose_load_balancer_reaches_both_replicas(compose):
    balancer = compose["services"]["lb"]
    assert balancer["image"].startswith("nginx:")
    assert "8080:80" in balancer["ports"]
    (mount,) = balancer["configs"]
    config = compose["configs"][mount["source"]]["content"]
    assert "server app-1:8000;" in config
    assert "server app-2:8000;" in config


def test_readme_names_mailpit_address():
    for readme in ("README.md", "README.ru.md"):
        assert "http://localhost:1080" in (ROOT / readme).read_text(encoding="utf-8")
