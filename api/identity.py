"""Who is calling, for the write services: the one place that knows what
``api.auth.authenticate`` returns and turns it into a ``services.Principal``.

``authenticate`` gives an ``api.auth.Principal``: ``role`` and ``key_id`` (the registry key
record's id, ``env-<8 hex>`` for a development key, None when the API runs open). Only
``principal_of`` changes if that shape does. Regulators never write: no write route admits
them (``acting``).
"""

# No "from __future__ import annotations": FastAPI must see the dependency's annotation, which
# names a local variable, as an object (a string could not be resolved later).
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends

from api.auth import require_role
from coldchain.settings import ApiRole
from services.principal import Principal

__all__ = ["OPEN_ACTOR", "acting", "principal_of"]

# Who acted when the API runs without keys (local use only): no key, so no key id.
OPEN_ACTOR = "open-api"


def principal_of(caller: Any) -> Principal:
    """The principal of an authenticated caller: actor ``key:<key id>`` (never the key)."""
    role = str(caller.role)
    key_id = getattr(caller, "key_id", None)
    actor = f"key:{key_id}" if key_id else OPEN_ACTOR
    return Principal(actor=actor, role=role, key_id=key_id or None)


def acting(*roles: ApiRole) -> Callable[..., Principal]:
    """A dependency admitting only ``roles`` (403 for the others, api.auth.require_role) and
    giving the caller as a Principal."""
    check = require_role(*roles)

    def dependency(caller: Annotated[Any, Depends(check)]) -> Principal:
        return principal_of(caller)

    return dependency
