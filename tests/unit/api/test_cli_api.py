"""``coldchain api`` without serving: what it hands uvicorn, and its one-line failures.

cli/main.py does not list the subcommand yet, so the tests build its parser here.
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

import cli.api
from coldchain.exceptions import ColdchainError, ConfigError
from coldchain.fleet import Fleet
from registry import open_registry


@pytest.fixture(autouse=True)
def env(monkeypatch: pytest.MonkeyPatch, migrated_db: Path, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("COLDCHAIN_"):
            monkeypatch.delenv(name)
    (tmp_path / "fleet.yaml").write_text(Fleet([]).to_yaml())
    monkeypatch.setenv("COLDCHAIN_FLEET_PATH", str(tmp_path / "fleet.yaml"))
    monkeypatch.setenv("COLDCHAIN_REGISTRY_URL", f"sqlite:///{migrated_db}")


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.api.register(parser.add_subparsers())
    return parser.parse_args(["api", *argv])


def test_serves_the_app_on_the_configured_address(monkeypatch: pytest.MonkeyPatch) -> None:
    served: dict[str, Any] = {}
    monkeypatch.setattr("uvicorn.run", lambda app, **kw: served.update(app=app, **kw))
    monkeypatch.setenv("COLDCHAIN_API__PORT", "9001")
    args = _args()
    assert args.func(args) == 0
    assert isinstance(served["app"], FastAPI)
    assert (served["host"], served["port"]) == ("127.0.0.1", 9001)
    # Off loopback only with a key (here a development key from the variable).
    monkeypatch.setenv("COLDCHAIN_API__KEYS", '{"dev-key": "admin"}')
    args = _args("--host", "0.0.0.0", "--port", "9002")
    assert args.func(args) == 0
    assert (served["host"], served["port"]) == ("0.0.0.0", 9002)


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.7", "::", "api.example", ""])
def test_without_any_key_it_refuses_to_serve_off_loopback(
    monkeypatch: pytest.MonkeyPatch, host: str
) -> None:
    monkeypatch.setattr("uvicorn.run", lambda *a, **kw: pytest.fail("served"))
    monkeypatch.setenv("COLDCHAIN_API__HOST", host)
    args = _args()
    with pytest.raises(ConfigError) as err:
        args.func(args)
    assert err.value.option == "COLDCHAIN_API__HOST"
    assert "serves open only on a loopback address" in str(err.value)
    assert "coldchain keys create" in str(err.value)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "localhost"])
def test_without_any_key_it_serves_open_on_loopback(
    monkeypatch: pytest.MonkeyPatch, host: str
) -> None:
    served: dict[str, Any] = {}
    monkeypatch.setattr("uvicorn.run", lambda app, **kw: served.update(app=app, **kw))
    args = _args("--host", host)
    assert args.func(args) == 0
    assert served["host"] == host


def test_a_registry_key_allows_serving_off_loopback(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, migrated_db: Path
) -> None:
    db = tmp_path / "keys.sqlite3"
    shutil.copyfile(migrated_db, db)
    monkeypatch.setenv("COLDCHAIN_REGISTRY_URL", f"sqlite:///{db}")
    with open_registry(f"sqlite:///{db}") as registry:
        key, _token = registry.keys.create("regulator", created_by="test")
        registry.keys.revoke(key.key_id, by="test")  # revoked still counts: never open again
    served: dict[str, Any] = {}
    monkeypatch.setattr("uvicorn.run", lambda app, **kw: served.update(app=app, **kw))
    args = _args("--host", "0.0.0.0")
    assert args.func(args) == 0
    assert served["host"] == "0.0.0.0"


def test_an_unmigrated_registry_fails_before_serving(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr("uvicorn.run", lambda *a, **kw: pytest.fail("served"))
    monkeypatch.setenv("COLDCHAIN_REGISTRY_URL", f"sqlite:///{tmp_path / 'empty.sqlite3'}")
    args = _args()
    with pytest.raises(ColdchainError, match="run `coldchain init`"):
        args.func(args)
