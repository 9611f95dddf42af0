"""deploy/compose.yaml and deploy/Dockerfile, checked for structure (no container engine runs
here): every service, volume, mounted file and variable they need exists (after the documented
step, deploy/prepare.sh), images are pinned, only the devices' TLS port is public, and the image
holds every package the entry point imports."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from cli.main import build_parser
from coldchain.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
PUBLIC_PORTS = {"8883:8883"}  # devices, MQTT over TLS


def _ports(service: dict[str, Any]) -> list[str]:
    return [str(p) for p in service.get("ports", [])]


def _mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(source, target) of each volume entry."""
    out = []
    for v in service.get("volumes", []):
        source, target = str(v).split(":")[:2]
        out.append((source, target))
    return out


def _env(service: dict[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in (service.get("environment") or {}).items()}


def test_every_service_of_the_deployment_is_there() -> None:
    assert set(SERVICES) == {"mosquitto", "influxdb", "grafana", "init", "ingest", "api"}


def test_images_are_pinned_and_ours_are_built() -> None:
    for name, service in SERVICES.items():
        image = service["image"]
        if "build" in service:
            assert image == "coldchain:local" and service["build"]["dockerfile"] == (
                "deploy/Dockerfile"
            ), name
            continue
        # A full version tag (not "2", not "latest") or a digest.
        assert re.search(r":\d+\.\d+(\.\d+)?$|@sha256:[0-9a-f]{64}$", image), (name, image)


def test_only_the_devices_tls_port_is_public() -> None:
    published = {p for s in SERVICES.values() for p in _ports(s)}
    assert published >= PUBLIC_PORTS
    for port in published - PUBLIC_PORTS:
        assert port.startswith("127.0.0.1:"), f"{port} is published on every interface"
    # Grafana, the API and the plain MQTT listener in particular.
    assert _ports(SERVICES["grafana"]) == ["127.0.0.1:3000:3000"]
    assert all(p.startswith("127.0.0.1:") for p in _ports(SERVICES["api"]))
    assert "127.0.0.1:1883:1883" in _ports(SERVICES["mosquitto"])
    assert "ports" not in SERVICES["influxdb"]


def test_named_volumes_are_declared_and_used() -> None:
    declared = set(COMPOSE["volumes"])
    used = {src for s in SERVICES.values() for src, _ in _mounts(s) if not src.startswith(".")}
    assert used == declared
    # The spool and the registry outlive containers; ingest and api share the registry.
    assert ("ingest-data", "/data") in _mounts(SERVICES["ingest"])
    for name in ("init", "ingest", "api"):
        assert ("registry-data", "/registry") in _mounts(SERVICES[name]), name


def test_commands_are_coldchain_subcommands() -> None:
    parser = build_parser()
    choices = next(a for a in parser._actions if a.dest == "command").choices
    assert choices is not None
    for name in ("init", "ingest", "api"):
        command = SERVICES[name]["command"]
        assert command[0] == "coldchain" and command[1] in choices, name


def _settings_field(path: list[str]) -> bool:
    """Is COLDCHAIN_<A>__<B> a setting: each part a field, every part but the last a section."""
    model: type[BaseModel] = Settings
    for part in path[:-1]:
        field = model.model_fields.get(part)
        annotation = field.annotation if field else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return False
        model = annotation
    return path[-1] in model.model_fields


def test_every_coldchain_variable_is_a_setting_and_validates() -> None:
    assert not _settings_field(["mqtt", "pasword"]) and not _settings_field(["mqt", "host"])
    for name in ("init", "ingest", "api"):
        env = _env(SERVICES[name])
        for var in env:
            if var.startswith("COLDCHAIN_"):
                path = var.removeprefix("COLDCHAIN_").lower().split("__")
                assert _settings_field(path), f"{name}: {var} is not a setting"
    # The values themselves, with the secrets compose takes from .env filled in.
    for name in ("ingest", "api"):
        env = _env(SERVICES[name])
        filled = {
            k: ('{"k": "admin"}' if "KEYS" in k else "pw") if v.startswith("${") else v
            for k, v in env.items()
        }
        values: dict[str, Any] = {}
        for var, value in filled.items():
            *parents, leaf = var.removeprefix("COLDCHAIN_").lower().split("__")
            node = values
            for p in parents:
                node = node.setdefault(p, {})
            node[leaf] = yaml.safe_load(value) if leaf == "keys" else value
        Settings(**values)


def test_mounted_paths_are_what_the_services_read() -> None:
    for name in ("ingest", "api"):
        targets = {t for _, t in _mounts(SERVICES[name])}
        env = _env(SERVICES[name])
        assert env["COLDCHAIN_FLEET_PATH"] in targets, name
        db = env["COLDCHAIN_REGISTRY_URL"].removeprefix("sqlite:///")
        assert any(db.startswith(t + "/") for t in targets), name
    ingest = _env(SERVICES["ingest"])
    assert ingest["COLDCHAIN_MQTT__USERNAME"] == ingest["COLDCHAIN_MQTT__CLIENT_ID"]
    assert f":{ingest['COLDCHAIN_METRICS_PORT']}/healthz" in str(
        SERVICES["ingest"]["healthcheck"]["test"]
    )


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of deploy/ (and fleet/) after the documented step, deploy/prepare.sh."""
    repo = tmp_path_factory.mktemp("repo")
    ignore = shutil.ignore_patterns(".env", "passwd", "secrets.yaml", "certs", "fleet.yaml")
    shutil.copytree(DEPLOY, repo / "deploy", ignore=ignore)
    shutil.copytree(ROOT / "fleet", repo / "fleet")
    coldchain = Path(sys.executable).parent / "coldchain"
    env = {"PATH": "/usr/bin:/bin:/usr/sbin", "COLDCHAIN": str(coldchain)}
    for _ in range(2):  # idempotent: a second run keeps every file
        subprocess.run(
            ["bash", str(repo / "deploy" / "prepare.sh"), "broker.example.com"],
            check=True,
            capture_output=True,
            env=env,
        )
    return repo / "deploy"


def test_every_mounted_file_exists_after_the_documented_step(prepared: Path) -> None:
    for name, service in SERVICES.items():
        for source, _ in _mounts(service):
            if source.startswith("."):
                assert (prepared / source).exists(), f"{name}: {source} missing"
    for cert in ("ca.crt", "server.crt", "server.key"):
        assert (prepared / "mosquitto" / "certs" / cert).is_file()


def test_every_variable_compose_needs_is_in_the_env_file(prepared: Path) -> None:
    text = (DEPLOY / "compose.yaml").read_text()
    needed = set(re.findall(r"\$\{([A-Z_]+):\?", text))
    assert needed == {"COLDCHAIN_MQTT_PASSWORD", "COLDCHAIN_API_KEYS"}
    env = dict(ln.split("=", 1) for ln in (prepared / ".env").read_text().splitlines())
    assert set(env) == needed and all(env.values())
    assert (prepared / ".env").stat().st_mode & 0o077 == 0
    # The ingest's broker password is the ingest user's secret.
    secrets = yaml.safe_load((prepared / "mosquitto" / "secrets.yaml").read_text())
    assert env["COLDCHAIN_MQTT_PASSWORD"] == secrets["coldchain-ingest-1"]


def _copied_dirs() -> set[str]:
    text = (DEPLOY / "Dockerfile").read_text()
    return {m.group(1) for m in re.finditer(r"^COPY (\S+) \1$", text, re.M)}


def _first_party_imports(package: str, first_party: set[str]) -> set[str]:
    found: set[str] = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            found |= {n.split(".")[0] for n in names if n.split(".")[0] in first_party}
    return found


def test_the_image_holds_every_package_the_entry_point_needs() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = set(pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"])
    copied = _copied_dirs()
    assert packages <= copied, f"not copied: {sorted(packages - copied)}"
    # What cli imports, and what those import, transitively.
    first_party = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()}
    needed, todo = set(), {"cli"}
    while todo:
        pkg = todo.pop()
        needed.add(pkg)
        todo |= _first_party_imports(pkg, first_party) - needed
    assert "tests" not in needed and needed <= copied, f"not copied: {sorted(needed - copied)}"
    assert {"api", "dashboards", "reports", "services"} <= needed


def test_secrets_stay_out_of_the_image() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    for secret in ("deploy/.env", "deploy/mosquitto/passwd", "deploy/mosquitto/secrets.yaml"):
        assert secret in ignored
    assert "deploy/mosquitto/certs" in ignored
