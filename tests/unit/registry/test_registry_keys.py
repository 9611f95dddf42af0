"""API keys as registry records: tokens, what is stored, lookup, status, scope, audit."""

from __future__ import annotations

import hashlib
import json
import re

import pytest

from coldchain.exceptions import RecordRejected
from registry import KeyScope, Registry
from registry.keys import parse_token, secret_digest
from tests.unit.registry import rawdb

TOKEN = re.compile(r"cck_[0-9a-f]{12}_[A-Za-z0-9_-]{43}")


def test_a_token_is_a_prefix_a_public_id_and_256_random_bits(reg: Registry) -> None:
    tokens = {reg.keys.create("admin", created_by="root")[1] for _ in range(20)}
    assert len(tokens) == 20
    for token in tokens:
        assert TOKEN.fullmatch(token), token
        secret = token.split("_", 2)[2]
        assert len(secret) == 43  # base64url of 32 bytes, unpadded
        assert parse_token(token) == token[4:16]


def test_only_the_sha256_of_the_token_is_stored(reg: Registry, migrated_url: str) -> None:
    key, token = reg.keys.create("operator", created_by="root", name="night shift")
    rows = [tuple(r.values()) for r in rawdb.query(migrated_url, "SELECT * FROM api_keys")]
    assert len(rows) == 1
    assert token not in repr(rows) and token.split("_", 2)[2] not in repr(rows)
    assert secret_digest(token) == hashlib.sha256(token.encode()).hexdigest()
    assert secret_digest(token) in repr(rows)
    assert (key.role, key.name, key.created_by, key.scope) == (
        "operator",
        "night shift",
        "root",
        None,
    )


def test_lookup_finds_the_key_only_with_its_exact_secret(reg: Registry) -> None:
    key, token = reg.keys.create("integrator", created_by="root")
    other, other_token = reg.keys.create("integrator", created_by="root")
    assert reg.keys.lookup(token) == key
    assert reg.keys.lookup(other_token) == other
    last = token[-1]
    wrong_secret = token[:-1] + ("A" if last != "A" else "B")
    swapped = token[:17] + other_token[17:]  # this key's id, the other key's secret
    for bad in (
        wrong_secret,
        swapped,
        token[:-1],
        token + "x",
        "cck_",
        "",
        "admin",
        token.upper(),
        f"cck_{'0' * 12}_{token[17:]}",
    ):
        assert reg.keys.lookup(bad) is None, bad


def test_status_follows_expiry_and_revocation(reg: Registry) -> None:
    key, token = reg.keys.create("regulator", created_by="root", expires_ms=2_000_000)
    assert key.expires_ms == 2_000_000
    assert key.status(1_999_999) == "active"
    assert key.status(2_000_000) == "expired"
    revoked, changed = reg.keys.revoke(key.key_id, by="root", reason="left the agency")
    assert changed and revoked.revoked_by == "root" and revoked.revoked_ms is not None
    assert revoked.status(revoked.revoked_ms) == "revoked"
    assert revoked.status(0) == "revoked"  # whatever a clock says: revoked is revoked
    again, changed = reg.keys.revoke(key.key_id, by="someone else")
    assert not changed and again == revoked
    assert reg.keys.lookup(token) == revoked  # still found: the API says why it is refused


def test_list_shows_every_key_oldest_first_and_any_counts_revoked_ones(reg: Registry) -> None:
    assert reg.keys.list() == [] and not reg.keys.any()
    a, _ = reg.keys.create("admin", created_by="root")
    b, _ = reg.keys.create("regulator", created_by="root")
    reg.keys.revoke(a.key_id, by="root")
    reg.keys.revoke(b.key_id, by="root")
    assert [k.key_id for k in reg.keys.list()] == [a.key_id, b.key_id]
    assert reg.keys.any()  # revoking every key must not open the API


def test_a_regulator_scope_is_stored_sorted_and_deduplicated(reg: Registry) -> None:
    key, _ = reg.keys.create(
        "regulator",
        created_by="root",
        shippers=["ACME Foods", "Bright Dairy", "ACME Foods"],
        shipments=["PO-2026/0042", "(00)340123450000000017"],
    )
    assert key.scope == KeyScope(
        ("ACME Foods", "Bright Dairy"), ("(00)340123450000000017", "PO-2026/0042")
    )
    assert reg.keys.get(key.key_id) == key
    only_ids, _ = reg.keys.create("regulator", created_by="root", shipments=["S1"])
    assert only_ids.scope == KeyScope((), ("S1",))
    nothing, _ = reg.keys.create("regulator", created_by="root", shipments=[])
    assert nothing.scope == KeyScope((), ())  # a scope that admits nothing, not "all"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"role": "root"}, "role 'root' is not one of admin, operator, integrator, regulator"),
        ({"role": "operator", "shippers": ["ACME"]}, "only regulator keys have a scope"),
        ({"role": "regulator", "shipments": ["SHP 1"]}, "shipment id 'SHP 1' contains U+0020"),
        ({"role": "regulator", "shippers": ["ACME\n"]}, "shipper 'ACME\\n' contains U+000A"),
        ({"role": "admin", "expires_ms": 1}, "expiry 1 is not after now"),
        ({"role": "admin", "created_by": ""}, "created_by '' is empty or blank"),
        ({"role": "admin", "name": "a\tb"}, "name 'a\\tb' contains U+0009"),
    ],
)
def test_bad_keys_are_refused_naming_why(
    reg: Registry, kwargs: dict[str, object], message: str
) -> None:
    args = {"created_by": "root"} | kwargs
    role = args.pop("role")
    with pytest.raises(RecordRejected) as err:
        reg.keys.create(role, **args)  # type: ignore[arg-type]
    assert message in str(err.value)
    assert reg.keys.list() == []
    assert reg.audit_entries() == []


def test_revoking_an_unknown_key_is_refused(reg: Registry) -> None:
    with pytest.raises(RecordRejected, match="no API key with id 'nope'"):
        reg.keys.revoke("nope", by="root")


def test_key_changes_are_audited_with_the_key_id(reg: Registry) -> None:
    key, _ = reg.keys.create(
        "regulator", created_by="root", name="inspector", expires_ms=9_000_000, shippers=["A"]
    )
    reg.keys.revoke(key.key_id, by="ops", reason="rotated")
    create, revoke = reg.audit_entries()
    assert (create.action, create.actor, create.entity, create.entity_id) == (
        "key.create",
        "root",
        "api_key",
        key.key_id,
    )
    body = json.loads(create.payload)
    assert body["scope"] == {"shippers": ["A"], "shipments": []}
    assert (body["role"], body["name"], body["expires_ms"]) == ("regulator", "inspector", 9_000_000)
    assert not {"secret", "secret_sha256", "token"} & set(body)
    assert (revoke.action, revoke.actor) == ("key.revoke", "ops")
    assert json.loads(revoke.payload)["reason"] == "rotated"
    assert reg.trail.verify().ok
