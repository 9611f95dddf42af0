"""The launcher's PostgreSQL: Debian's server on a free loopback port, a temporary cluster,
an unprivileged account when run as root, a clean stop, and a crash it recovers from."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import psycopg
import pytest

from deploy.launcher import ServiceError
from deploy.postgres import Postgres, find_pg_binary

pytestmark = pytest.mark.integration


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def _uid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for pid {pid}")


def _conninfo(server: Postgres) -> str:
    return f"host=127.0.0.1 port={server.port} user=coldchain dbname=coldchain"


def test_postgres_starts_unprivileged_answers_and_stops_cleanly(tmp_path: Path) -> None:
    server = Postgres(tmp_path / "pg")
    try:
        server.start()
        assert server.proc is not None
        assert server.url == f"postgresql+psycopg://coldchain@127.0.0.1:{server.port}/coldchain"
        with psycopg.connect(_conninfo(server)) as conn:
            row = conn.execute("SELECT current_setting('listen_addresses'), version()").fetchone()
        assert row is not None and row[0] == "127.0.0.1" and "PostgreSQL" in row[1]
        # PostgreSQL refuses to run as root; the launcher runs it as another account then.
        assert _uid(server.proc.pid) != 0
        if os.geteuid() != 0:
            assert _uid(server.proc.pid) == os.geteuid()
        assert (server.socket_dir / f".s.PGSQL.{server.port}").exists()
        port, cluster = server.port, server.cluster_dir
        server.stop()
        assert not _listening(port)
        assert not (cluster / "postmaster.pid").exists()  # a clean shutdown removes it
    finally:
        server.cleanup()
    if os.geteuid() == 0:
        assert not cluster.exists()  # the cluster's own temporary directory is removed


def test_postgres_keeps_committed_data_across_a_crash(tmp_path: Path) -> None:
    server = Postgres(tmp_path / "pg")
    try:
        server.start()
        with psycopg.connect(_conninfo(server), autocommit=True) as conn:
            conn.execute("CREATE TABLE t (n int)")
            conn.execute("INSERT INTO t SELECT generate_series(1, 1000)")
        server.kill()  # SIGKILL: recovery from the WAL on the next start
        assert not _listening(server.port)
        server.start()
        with psycopg.connect(_conninfo(server)) as conn:
            assert conn.execute("SELECT count(*) FROM t").fetchone() == (1000,)
    finally:
        server.cleanup()


def test_databases_are_created_from_a_template_and_dropped(postgres: Postgres) -> None:
    with psycopg.connect(_conninfo(postgres), autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS seeded")
        conn.execute("CREATE TABLE seeded AS SELECT 42 AS answer")
    try:
        url = postgres.create_database("launcher_copy", template="coldchain")
        assert url.endswith(f":{postgres.port}/launcher_copy")
        info = _conninfo(postgres).replace("dbname=coldchain", "dbname=launcher_copy")
        with psycopg.connect(info) as conn:
            assert conn.execute("SELECT answer FROM seeded").fetchone() == (42,)
        with pytest.raises(psycopg.errors.DuplicateDatabase):
            postgres.create_database("launcher_copy")
        postgres.drop_database("launcher_copy")
        with pytest.raises(psycopg.OperationalError, match="launcher_copy"):
            psycopg.connect(info)
    finally:
        postgres.drop_database("launcher_copy")
        with psycopg.connect(_conninfo(postgres), autocommit=True) as conn:
            conn.execute("DROP TABLE seeded")


def test_binaries_are_found_off_path_where_debian_puts_them(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on PATH
    found = find_pg_binary("initdb")
    assert found.startswith("/usr/lib/postgresql/") and found.endswith("/bin/initdb")
    with pytest.raises(ServiceError, match=r"scripts/bootstrap\.sh"):
        find_pg_binary("no-such-postgres-tool")


def test_a_registry_carries_on_after_its_server_crashed(tmp_path: Path) -> None:
    """Pooled connections die with the server; the next call after the restart works."""
    from registry import open_registry, upgrade

    server = Postgres(tmp_path / "pg")
    try:
        server.start()
        upgrade(server.url)
        with open_registry(server.url) as reg:
            reg.create_shipment("S1", profile="chilled", actor="api")
            server.kill()
            server.start()
            reg.create_shipment("S2", profile="chilled", actor="api")
            assert [s.id for s in reg.list_shipments()] == ["S1", "S2"]
            assert reg.trail.verify().ok
    finally:
        server.cleanup()
