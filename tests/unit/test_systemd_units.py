"""deploy/systemd/: the units of a Debian install without containers, checked by systemd's own
``systemd-analyze verify`` against the installed ``coldchain`` entry point (this environment's),
and their environment file against the settings."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from cli.main import build_parser
from tests.unit.test_deploy_compose import _settings_field

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "deploy" / "systemd"
INSTALLED = "/opt/coldchain/.venv/bin/coldchain"  # where docs/operations.md installs it
ENTRY_POINT = Path(sys.executable).parent / "coldchain"


def _verify(units: list[Path]) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("systemd-analyze")
    assert tool, "systemd-analyze is missing: scripts/bootstrap.sh installs systemd"
    return subprocess.run(
        [tool, "verify", *map(str, units)], capture_output=True, text=True, check=False
    )


def _installed_copies(tmp_path: Path, entry_point: Path) -> list[Path]:
    out = []
    for unit in sorted(UNITS.glob("*.service")):
        copy = tmp_path / unit.name
        copy.write_text(unit.read_text().replace(INSTALLED, str(entry_point)))
        out.append(copy)
    return out


def test_units_verify_against_the_installed_entry_point(tmp_path: Path) -> None:
    assert ENTRY_POINT.is_file()
    units = _installed_copies(tmp_path, ENTRY_POINT)
    assert [u.name for u in units] == [
        "coldchain-api.service",
        "coldchain-ingest.service",
        "coldchain-init.service",
        "coldchain-rules@.service",
    ]
    # The rules worker is a template: verify an instance the way operations.md enables it.
    instance = tmp_path / "coldchain-rules@0-3.service"
    instance.write_text(units[-1].read_text())
    done = _verify([*units, instance])
    # verify exits 0 on unknown keys and bad values too, but says so on stderr.
    assert done.returncode == 0 and done.stderr == "", done.stderr


def test_verify_catches_a_missing_entry_point_and_a_misspelt_key(tmp_path: Path) -> None:
    units = _installed_copies(tmp_path, tmp_path / "missing" / "coldchain")
    done = _verify(units)
    assert done.returncode != 0 and "is not executable" in done.stderr
    bad = tmp_path / "bad"
    bad.mkdir()
    good = _installed_copies(bad, ENTRY_POINT)
    good[1].write_text(good[1].read_text().replace("Restart=always", "Restrat=always"))
    assert "Unknown key 'Restrat'" in _verify(good).stderr


def test_units_run_coldchain_subcommands_as_an_unprivileged_user() -> None:
    choices = next(a for a in build_parser()._actions if a.dest == "command").choices
    assert choices is not None
    for unit in UNITS.glob("*.service"):
        lines = unit.read_text().splitlines()
        starts = [ln.split("=", 1)[1].split() for ln in lines if ln.startswith("ExecStart=")]
        assert len(starts) == 1 and starts[0][0] == INSTALLED and starts[0][1] in choices
        assert "User=coldchain" in lines and "NoNewPrivileges=yes" in lines, unit.name


def test_the_environment_file_names_only_settings() -> None:
    lines = (UNITS / "coldchain.env.example").read_text().splitlines()
    names = [ln.split("=", 1)[0] for ln in lines if ln and not ln.startswith("#")]
    assert "COLDCHAIN_REGISTRY_URL" in names and "COLDCHAIN_MQTT__PASSWORD" in names
    for var in names:
        path = var.removeprefix("COLDCHAIN_").lower().split("__")
        assert var.startswith("COLDCHAIN_") and _settings_field(path), var


def test_the_rules_template_instance_is_a_partition_range_the_command_takes() -> None:
    from coldchain.rules import parse_partitions

    unit = (UNITS / "coldchain-rules@.service").read_text()
    start = next(ln for ln in unit.splitlines() if ln.startswith("ExecStart="))
    assert start.endswith(" rules --partitions %i")
    # systemd instance names allow [A-Za-z0-9:_.-]: a range, not a comma list.
    assert parse_partitions("0-3", 8) == [0, 1, 2, 3]
    assert parse_partitions("4-7", 8) == [4, 5, 6, 7]
