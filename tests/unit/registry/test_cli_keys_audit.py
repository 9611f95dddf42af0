"""``coldchain keys create|list|revoke`` and ``coldchain audit verify|head``, through main()."""

from __future__ import annotations

import json
import re

import pytest

from cli.keys import parse_duration_s, parse_rfc3339_ms
from cli.main import main
from registry import open_registry
from tests.unit.registry import rawdb

Capture = pytest.CaptureFixture[str]


def _run(capsys: Capture, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_create_prints_the_secret_once_and_list_never(migrated_url: str, capsys: Capture) -> None:
    code, out, _ = _run(
        capsys,
        "keys",
        "create",
        "--registry-url",
        migrated_url,
        "--role",
        "regulator",
        "--name",
        "FDA inspector",
        "--shipper",
        "ACME",
        "--shipment",
        "PO-2026/0042",
        "--expires",
        "2030-01-01T08:00:00+08:00",
        "--by",
        "alice",
    )
    assert code == 0, out
    token = re.search(r"^cck_\S+$", out, re.MULTILINE)
    assert token is not None
    key_id = re.search(r"^key id\s+(\S+)$", out, re.MULTILINE)
    assert key_id is not None and token.group(0)[4:16] == key_id.group(1)
    assert "expires  2030-01-01T00:00:00Z" in out
    assert "scope    shippers ACME; shipments PO-2026/0042" in out
    code, listed, _ = _run(capsys, "keys", "list", "--registry-url", migrated_url)
    assert code == 0
    assert key_id.group(1) in listed and "FDA inspector" in listed and "active" in listed
    assert token.group(0) not in listed and token.group(0)[17:] not in listed
    with open_registry(migrated_url) as reg:
        assert reg.keys.lookup(token.group(0)) is not None
        (entry,) = reg.audit_entries()
        assert (entry.action, entry.actor) == ("key.create", "alice")


def test_create_json_list_json_and_revoke(migrated_url: str, capsys: Capture) -> None:
    code, out, _ = _run(
        capsys,
        "keys",
        "create",
        "--registry-url",
        migrated_url,
        "--role",
        "admin",
        "--json",
        "--expires-in",
        "1d12h",
        "--by",
        "root",
    )
    assert code == 0
    made = json.loads(out)
    assert made["role"] == "admin" and made["status"] == "active" and made["secret"]
    code, out, _ = _run(
        capsys, "keys", "revoke", made["key_id"], "--registry-url", migrated_url, "--by", "bob"
    )
    assert (code, out.split(" revoked at ")[0]) == (0, f"key {made['key_id']} (admin)")
    code, out, _ = _run(capsys, "keys", "revoke", made["key_id"], "--registry-url", migrated_url)
    assert code == 0 and "was already revoked" in out
    code, out, _ = _run(capsys, "keys", "list", "--json", "--registry-url", migrated_url)
    (listed,) = json.loads(out)
    assert (listed["key_id"], listed["status"], listed["revoked_by"]) == (
        made["key_id"],
        "revoked",
        "bob",
    )
    assert "secret" not in listed


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--role", "operator", "--shipper", "ACME"], "only regulator keys have a scope"),
        (["--role", "admin", "--expires", "2030-01-01T00:00:00"], "has no UTC offset"),
        (["--role", "admin", "--expires", "2001-01-01T00:00:00Z"], "is not after now"),
        (["--role", "admin", "--expires-in", "3 weeks"], "is not a duration like 90d"),
    ],
)
def test_create_refusals_exit_2_with_the_reason(
    migrated_url: str, capsys: Capture, argv: list[str], message: str
) -> None:
    code, out, err = _run(capsys, "keys", "create", "--registry-url", migrated_url, *argv)
    assert code == 2 and message in err and "cck_" not in out
    with open_registry(migrated_url) as reg:
        assert reg.keys.list() == []


def test_revoking_an_unknown_key_exits_2(migrated_url: str, capsys: Capture) -> None:
    code, _, err = _run(capsys, "keys", "revoke", "0123456789ab", "--registry-url", migrated_url)
    assert code == 2 and "no API key with id '0123456789ab'" in err


def test_durations_and_times() -> None:
    assert parse_duration_s("90d") == 90 * 86_400
    assert parse_duration_s("1d12h30m5s") == 86_400 + 12 * 3_600 + 30 * 60 + 5
    assert parse_rfc3339_ms("1970-01-01T00:00:01.5Z") == 1_500
    assert parse_rfc3339_ms("2026-03-01T13:00:00+01:00") == 1_772_366_400_000
    for bad in ("", "d", "1x", "1.5d"):
        with pytest.raises(ValueError):
            parse_duration_s(bad)


# -- audit ----------------------------------------------------------------------------------


def _populate(url: str) -> None:
    with open_registry(url) as reg:
        reg.create_shipment("S1", profile="chilled", actor="api")
        for i in range(4):
            reg.record_custody_event("S1", "handover", f"truck-{i}", None, ts_ms=i, actor="d")
        reg.trail.record_read(
            actor="k", action="read.trace", entity="shipment", entity_id="S1", payload={}
        )


def test_head_prints_anchors_that_verify_accepts(migrated_url: str, capsys: Capture) -> None:
    _populate(migrated_url)
    code, out, _ = _run(capsys, "audit", "head", "--registry-url", migrated_url)
    assert code == 0
    heads = dict(line.split(" ") for line in out.splitlines())
    assert heads["writes"].startswith("5:") and heads["reads"].startswith("1:")
    code, out, _ = _run(
        capsys,
        "audit",
        "verify",
        "--registry-url",
        migrated_url,
        "--anchor",
        heads["writes"],
        "--reads-anchor",
        heads["reads"],
    )
    assert code == 0, out
    assert out.splitlines()[-1] == "audit intact"
    code, out, _ = _run(capsys, "audit", "head", "--json", "--registry-url", migrated_url)
    as_json = json.loads(out)
    assert f"{as_json['writes']['seq']}:{as_json['writes']['hash']}" == heads["writes"]


def _tamper(url: str, *sql: str) -> None:
    rawdb.execute(url, *sql, drop_guards=True)


@pytest.mark.parametrize(
    ("sql", "first"),
    [
        (["UPDATE audit_log SET actor = 'm' WHERE seq = 3"], "writes chain, seq 3: content"),
        (["DELETE FROM audit_log WHERE seq = 2"], "writes chain, seq 2: entries 2..2 are missing"),
        (
            [
                "UPDATE audit_log SET seq = -1 WHERE seq = 3",
                "UPDATE audit_log SET seq = 3 WHERE seq = 4",
                "UPDATE audit_log SET seq = 4 WHERE seq = -1",
            ],
            "writes chain, seq 3: prev_hash does not match",
        ),
        (["DELETE FROM audit_log WHERE seq >= 4"], "writes chain, seq 4: the head says seq 5"),
        (["UPDATE shipments SET profile = 'frozen'"], "shipments row 'S1': differs"),
    ],
)
def test_verify_exits_1_naming_the_first_bad_row(
    migrated_url: str, capsys: Capture, sql: list[str], first: str
) -> None:
    _populate(migrated_url)
    _tamper(migrated_url, *sql)
    code, out, err = _run(capsys, "audit", "verify", "--registry-url", migrated_url)
    assert code == 1
    assert err.startswith(f"coldchain audit verify: {first}"), err
    assert "audit NOT intact" in out


def test_verify_with_an_anchor_catches_a_cut_tail_with_the_head_moved(
    migrated_url: str, capsys: Capture
) -> None:
    _populate(migrated_url)
    _, out, _ = _run(capsys, "audit", "head", "--registry-url", migrated_url)
    anchor = out.split()[1]
    with open_registry(migrated_url) as reg:
        e4 = reg.audit_entries()[3]
    _tamper(
        migrated_url,
        "DELETE FROM audit_log WHERE seq = 5",
        "DELETE FROM custody_events WHERE asset_id = 'truck-3'",
        f"UPDATE audit_head SET seq = 4, hash = '{e4.hash}'",
    )
    _run(capsys, "init", "--registry-url", migrated_url)  # the triggers back: only the cut is left
    code, _, _ = _run(capsys, "audit", "verify", "--registry-url", migrated_url)
    assert code == 0  # the tables were cut to match: only the published head knows
    code, _, err = _run(
        capsys, "audit", "verify", "--registry-url", migrated_url, "--anchor", anchor
    )
    assert code == 1
    assert "writes chain, seq 5: the anchored entry 5 is not in the log, which ends at 4" in err


def test_verify_refuses_a_malformed_anchor(migrated_url: str, capsys: Capture) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["audit", "verify", "--registry-url", migrated_url, "--anchor", "5:abc"])
    assert exit_.value.code == 2
    assert "is not an anchor SEQ:HASH" in capsys.readouterr().err


def test_init_restores_a_dropped_trigger_and_verify_notices_it_gone(
    migrated_url: str, backend: str, capsys: Capture
) -> None:
    _populate(migrated_url)
    trigger = "audit_log_no_delete" if backend == "sqlite" else "audit_log_no_change"
    on = " ON audit_log" if backend == "postgresql" else ""
    rawdb.execute(migrated_url, f"DROP TRIGGER {trigger}{on}")
    code, _, err = _run(capsys, "audit", "verify", "--registry-url", migrated_url)
    assert code == 1
    assert f"trigger {trigger} on audit_log is missing (dropped)" in err
    code, out, _ = _run(capsys, "init", "--verify-audit", "--registry-url", migrated_url)
    assert code == 0
    assert f"restored audit guard trigger {trigger}" in out
    assert out.splitlines()[-1] == "audit intact"
    code, out, _ = _run(capsys, "init", "--registry-url", migrated_url)
    assert code == 0 and "restored" not in out
