"""Who performs a write, as the service layer records it.

The HTTP API builds one from the authenticated API key (api/identity.py, the one place that
knows what ``api.auth.authenticate`` returns); the CLI from ``--by`` or the operating-system
user. ``actor`` is what the audit log and the acknowledgement history name: an API key's id,
never its secret.
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass

__all__ = ["Principal", "cli_principal"]


@dataclass(frozen=True, slots=True)
class Principal:
    """``actor``: who, as recorded (``key:<key id>``, ``cli:<user>``, ``open-api``);
    ``role``: admin, operator, integrator or regulator; ``key_id``: the API key's id (a
    fingerprint, safe to store), None without a key."""

    actor: str
    role: str
    key_id: str | None = None


def cli_principal(by: str | None = None) -> Principal:
    """The command line's principal: ``by`` if given, else ``cli:<operating-system user>``.
    Whoever can run the CLI can open the registry database: the CLI acts as admin."""
    if by is None:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):  # no user name in a bare container
            user = "unknown"
        by = f"cli:{user}"
    return Principal(actor=by, role="admin", key_id=None)
