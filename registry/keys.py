"""API keys as registry records: created, listed, revoked, looked up; the secret is never stored.

**The token** a client sends in ``X-API-Key`` is ``cck_<key id>_<secret>``: ``cck_`` marks it
as a coldchain key (so a leaked one is recognisable), the key id is 12 random hex digits (public:
logs, the audit log and ``coldchain keys list`` name keys by it), the secret is 32 bytes from
the operating system's CSPRNG (``secrets.token_urlsafe(32)``, 256 bits).

**Stored** is ``secret_sha256 = sha256_hex(token)``, never the token. A slow password hash
(argon2, bcrypt, scrypt) exists to make guessing a *low-entropy* password expensive; a 256-bit
random secret cannot be guessed at any cost, so a slow hash would add nothing but latency to
every request. A plain SHA-256 (preimage resistance) is enough, and keeps authentication to one
indexed lookup and one hash. Lookup is by key id; the digest is compared in constant time.

**Rules**: a key has one role (``admin``, ``operator``, ``integrator``, ``regulator``), an
optional expiry (``expires_ms``; from then on it is refused) and, for a regulator only, an
optional scope: shippers and/or an explicit list of shipment ids (a shipment is in scope if its
shipper is listed or its id is). A revoked key stays in the table (the audit trail needs it) and
is refused from then on. Creating and revoking are audited on the writes chain
(``key.create``, ``key.revoke``: id, role, name, expiry, scope; never the secret or its digest).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal, cast, get_args

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from coldchain.exceptions import RecordRejected
from coldchain.settings import ApiRole
from registry import audit
from registry.db import translate_errors
from registry.ids import require_actor, require_shipment_id
from registry.models import ApiKeyRow

__all__ = [
    "KEY_PREFIX",
    "ApiKey",
    "ApiKeyStore",
    "KeyScope",
    "KeyStatus",
    "parse_token",
    "secret_digest",
]

KEY_PREFIX = "cck_"
ROLES: tuple[str, ...] = get_args(ApiRole)
KeyStatus = Literal["active", "expired", "revoked"]
_TOKEN = re.compile(r"cck_(?P<key_id>[0-9a-f]{12})_(?P<secret>[A-Za-z0-9_-]{43})")
_DUMMY_DIGEST = "0" * 64


@dataclass(frozen=True, slots=True)
class KeyScope:
    """What a regulator key may see: shipments of these shippers, and these shipments."""

    shippers: tuple[str, ...] = ()
    shipments: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A stored key (without its secret). ``scope`` None: no restriction."""

    key_id: str
    role: ApiRole
    name: str
    created_ms: int
    created_by: str
    expires_ms: int | None = None
    revoked_ms: int | None = None
    revoked_by: str | None = None
    scope: KeyScope | None = None

    def status(self, now_ms: int) -> KeyStatus:
        """``revoked`` once revoked (whatever the clock says), ``expired`` from ``expires_ms``
        on, else ``active``."""
        if self.revoked_ms is not None:
            return "revoked"
        if self.expires_ms is not None and self.expires_ms <= now_ms:
            return "expired"
        return "active"


def parse_token(token: str) -> str | None:
    """The key id of a well-formed token, else None."""
    match = _TOKEN.fullmatch(token)
    return None if match is None else match.group("key_id")


def secret_digest(token: str) -> str:
    """What is stored for a token: SHA-256 hex of its UTF-8 bytes (module doc: why not slow)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _scope_of(row: ApiKeyRow) -> KeyScope | None:
    if row.scope_shippers is None and row.scope_shipments is None:
        return None
    shippers = json.loads(row.scope_shippers) if row.scope_shippers is not None else []
    shipments = json.loads(row.scope_shipments) if row.scope_shipments is not None else []
    return KeyScope(tuple(shippers), tuple(shipments))


def _to_record(row: ApiKeyRow) -> ApiKey:
    return ApiKey(
        key_id=row.key_id,
        role=cast(ApiRole, row.role),
        name=row.name,
        created_ms=row.created_ms,
        created_by=row.created_by,
        expires_ms=row.expires_ms,
        revoked_ms=row.revoked_ms,
        revoked_by=row.revoked_by,
        scope=_scope_of(row),
    )


def _payload(key: ApiKey) -> dict[str, object]:
    # Never the secret or its digest: the audit log is read by people the key is not for.
    return {
        "key_id": key.key_id,
        "role": key.role,
        "name": key.name,
        "created_ms": key.created_ms,
        "created_by": key.created_by,
        "expires_ms": key.expires_ms,
        "revoked_ms": key.revoked_ms,
        "revoked_by": key.revoked_by,
        "scope": None
        if key.scope is None
        else {"shippers": list(key.scope.shippers), "shipments": list(key.scope.shipments)},
    }


def _clean_list(values: Iterable[str], what: str, check: Callable[[str], None]) -> list[str]:
    out = sorted(set(values))
    for value in out:
        check(value)
    if len(out) > 10_000:
        raise RecordRejected(f"a key's scope may list at most 10000 {what}, got {len(out)}")
    return out


def _require_shipper(value: str) -> None:
    # A shipper names a party, like an actor: 1-128 characters, no control characters.
    require_actor(value, "shipper")


class ApiKeyStore:
    """The ``api_keys`` table. Every method is one transaction; writes take the writers' head
    first and are audited in the same transaction (as every Registry write)."""

    def __init__(
        self, engine: Engine, sessions: sessionmaker[Session], clock: Callable[[], int]
    ) -> None:
        self._engine = engine
        self._sessions = sessions
        self._clock = clock

    def create(
        self,
        role: str,
        *,
        created_by: str,
        name: str = "",
        expires_ms: int | None = None,
        shippers: Iterable[str] | None = None,
        shipments: Iterable[str] | None = None,
    ) -> tuple[ApiKey, str]:
        """Create a key; returns (key, token). The token is shown to its owner once and never
        stored. Scope (``shippers``, ``shipments``) only for regulators; an expiry in the past,
        an unknown role or a malformed id is RecordRejected."""
        if role not in ROLES:
            raise RecordRejected(f"role {role!r} is not one of {', '.join(ROLES)}")
        require_actor(created_by, "created_by")
        if name:
            require_actor(name, "name")  # who or what the key is for; 1-128 characters
        scoped = shippers is not None or shipments is not None
        if scoped and role != "regulator":
            raise RecordRejected(f"only regulator keys have a scope; this one is {role!r}")
        shipper_list = (
            None if shippers is None else _clean_list(shippers, "shippers", _require_shipper)
        )
        shipment_list = (
            None if shipments is None else _clean_list(shipments, "shipments", require_shipment_id)
        )
        with (
            translate_errors("creating an API key", self._engine.url),
            self._sessions() as session,
            session.begin(),
        ):
            head = audit.lock_head(session)
            now = self._clock()
            if expires_ms is not None and expires_ms <= now:
                raise RecordRejected(f"expiry {expires_ms} is not after now ({now})")
            while True:
                key_id = secrets.token_hex(6)
                if session.get(ApiKeyRow, key_id) is None:
                    break
            token = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
            row = ApiKeyRow(
                key_id=key_id,
                secret_sha256=secret_digest(token),
                role=role,
                name=name,
                created_ms=now,
                created_by=created_by,
                expires_ms=expires_ms,
                revoked_ms=None,
                revoked_by=None,
                scope_shippers=None if shipper_list is None else audit.canonical_json(shipper_list),
                scope_shipments=None
                if shipment_list is None
                else audit.canonical_json(shipment_list),
            )
            session.add(row)
            session.flush()
            key = _to_record(row)
            audit.append(
                session,
                head,
                ts_ms=now,
                actor=created_by,
                action="key.create",
                entity="api_key",
                entity_id=key_id,
                payload=_payload(key),
            )
            return key, token

    def revoke(self, key_id: str, *, by: str, reason: str = "") -> tuple[ApiKey, bool]:
        """Revoke a key from now on; (key, changed). Revoking a revoked key changes nothing;
        an unknown id is RecordRejected."""
        require_actor(by, "revoked_by")
        with (
            translate_errors("revoking an API key", self._engine.url),
            self._sessions() as session,
            session.begin(),
        ):
            head = audit.lock_head(session)
            now = self._clock()
            row = session.get(ApiKeyRow, key_id)
            if row is None:
                raise RecordRejected(f"no API key with id {key_id!r}")
            if row.revoked_ms is not None:
                return _to_record(row), False
            row.revoked_ms = now
            row.revoked_by = by
            session.flush()
            key = _to_record(row)
            audit.append(
                session,
                head,
                ts_ms=now,
                actor=by,
                action="key.revoke",
                entity="api_key",
                entity_id=key_id,
                payload=_payload(key) | {"reason": reason},
            )
            return key, True

    def get(self, key_id: str) -> ApiKey | None:
        with translate_errors("reading an API key", self._engine.url), self._sessions() as s:
            row = s.get(ApiKeyRow, key_id)
            return None if row is None else _to_record(row)

    def list(self) -> list[ApiKey]:
        """Every key ever created (revoked and expired ones too), oldest first."""
        with translate_errors("listing API keys", self._engine.url), self._sessions() as s:
            rows = s.execute(select(ApiKeyRow).order_by(ApiKeyRow.created_ms, ApiKeyRow.key_id))
            return [_to_record(r) for r in rows.scalars()]

    def any(self) -> bool:
        """Whether any key was ever created. Revoked keys count: revoking the last key must not
        open the API to everyone."""
        with translate_errors("reading API keys", self._engine.url), self._sessions() as s:
            return s.execute(select(ApiKeyRow.key_id).limit(1)).first() is not None

    def lookup(self, token: str) -> ApiKey | None:
        """The key whose secret ``token`` is (whatever its status), else None. Constant-time
        digest comparison; a malformed token or unknown id costs the same hash."""
        key_id = parse_token(token)
        digest = secret_digest(token)
        record, stored = None, _DUMMY_DIGEST
        if key_id is not None:
            with translate_errors("looking up an API key", self._engine.url), self._sessions() as s:
                row = s.get(ApiKeyRow, key_id)
                if row is not None:
                    record, stored = _to_record(row), row.secret_sha256
        return record if hmac.compare_digest(digest, stored) else None
