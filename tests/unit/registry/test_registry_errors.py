"""At the adapter boundary every SQLAlchemy error becomes StoreError (or RecordRejected)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.exc import SQLAlchemyError

from coldchain.exceptions import ColdchainError, RecordRejected, StoreError
from coldchain.rules.excursion import Excursion
from registry import Registry, make_engine, open_registry, upgrade


@pytest.mark.parametrize("url", ["not a url", "://nothing", ""])
def test_malformed_url_is_a_clear_store_error(url: str) -> None:
    with pytest.raises(StoreError, match=r"is not a database URL .*sqlite:///"):
        make_engine(url)


def test_unknown_dialect_is_a_store_error() -> None:
    with pytest.raises(StoreError, match="driver not available"):
        make_engine("nosuchdb://host/x")


def test_missing_driver_message_hides_the_password() -> None:
    with pytest.raises(StoreError) as info:
        open_registry("postgresql+psycopg://app:s3cret@127.0.0.1:1/registry")
    assert "s3cret" not in str(info.value)
    assert "***" in str(info.value)


def test_unopenable_database_file_is_a_store_error(tmp_path: Path) -> None:
    directory = tmp_path / "is-a-directory"
    directory.mkdir()
    with pytest.raises(StoreError, match="unable to open database file") as info:
        upgrade(f"sqlite:///{directory}")
    assert isinstance(info.value.__cause__, SQLAlchemyError)
    assert not isinstance(info.value, RecordRejected)  # may be transient: retry is sensible


def test_using_an_unmigrated_database_is_a_store_error(registry_url: str) -> None:
    exc = Excursion("t", "c", "range", "range", "warning", "open", 0, None, 0)
    with open_registry(registry_url, check_schema=False) as reg:
        with pytest.raises(StoreError, match=r"no such table|does not exist") as info:
            reg.upsert_excursion(exc)
        assert not isinstance(info.value, RecordRejected)
        with pytest.raises(StoreError):
            reg.load_checkpoint("k")


def test_constraint_violations_are_record_rejected(reg: Registry) -> None:
    bad = Excursion("t", "c", "range", "range", "fatal", "open", 0, None, 0)  # type: ignore[arg-type]
    with pytest.raises(RecordRejected, match="constraint violated") as info:
        reg.upsert_excursion(bad)
    assert isinstance(info.value, StoreError) and isinstance(info.value, ColdchainError)
