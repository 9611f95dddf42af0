"""``coldchain api`` without serving: what it hands uvicorn, and its one-line failures.

cli/main.py does not list the subcommand yet, so the tests build its parser here.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

import cli.api
from coldchain.exceptions import ColdchainError
from coldchain.fleet import Fleet


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
    args = _args("--host", "0.0.0.0", "--port", "9002")
    assert args.func(args) == 0
    assert (served["host"], served["port"]) == ("0.0.0.0", 9002)


def test_an_unmigrated_registry_fails_before_serving(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr("uvicorn.run", lambda *a, **kw: pytest.fail("served"))
    monkeypatch.setenv("COLDCHAIN_REGISTRY_URL", f"sqlite:///{tmp_path / 'empty.sqlite3'}")
    args = _args()
    with pytest.raises(ColdchainError, match="run `coldchain init`"):
        args.func(args)
