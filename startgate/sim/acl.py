"""API tokens, privileges and the API's error type for the simulated Proxmox API.

Tokens authenticate with `Authorization: PVEAPIToken=USER@REALM!TOKENID=SECRET` (pve-docs pveum.adoc
"API Tokens"; proxmox/pve-access-control src/PVE/AccessControl.pm `verify_token` splits at the last
`=`). A failure is answered 401 "Authentication failed!" after a 3 s delay (proxmox/pve-manager
PVE/HTTPServer.pm `auth_handler`; proxmox/pve-http-server src/PVE/APIServer/AnyEvent.pm "always delay
unauthorized calls by 3 seconds"). A missing privilege is 403 "Permission check failed (<path>,
<priv>)" (pve-common src/PVE/Exception.pm `raise_perm_exc`). Privileges here are granted on `/`
and propagate, which is how the coordinator's role is meant to be set up.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass

COORDINATOR_PRIVS = frozenset({"VM.Audit", "VM.PowerMgmt", "Sys.Audit", "Sys.Console"})
AUDIT_PRIVS = frozenset({"VM.Audit", "Sys.Audit"})


class ApiError(Exception):
    """An API failure: HTTP status, message, optional per-parameter errors (400s)."""

    def __init__(self, status: int, message: str, errors: dict[str, str] | None = None) -> None:
        self.status = status
        self.message = message
        self.errors = errors or {}
        super().__init__(f"{status} {message}")


def param_error(name: str, message: str) -> ApiError:
    """A parameter verification failure (pve-common JSONSchema `raise_param_exc`): 400."""
    return ApiError(400, "Parameter verification failed.", {name: message})


@dataclass(frozen=True)
class ApiToken:
    """An API token: its id (`user@realm!name`), secret and the privileges it holds on `/`."""

    token_id: str
    secret: str
    privileges: frozenset[str]

    @property
    def header(self) -> str:
        """The Authorization header value for this token."""
        return f"PVEAPIToken={self.token_id}={self.secret}"


def new_token(token_id: str, privileges: frozenset[str]) -> ApiToken:
    """A token with a fresh UUID secret, like `pveum user token add` makes."""
    return ApiToken(token_id, str(uuid.uuid4()), privileges)


class Acl:
    """The known tokens and their privileges."""

    def __init__(self, tokens: list[ApiToken]) -> None:
        self._tokens = {t.token_id: t for t in tokens}

    def authenticate(self, header: str | None) -> ApiToken | None:
        """The token an Authorization header proves, or None."""
        if not header:
            return None
        scheme, _, value = header.strip().partition("=")
        if scheme != "PVEAPIToken" or "=" not in value:
            return None
        token_id, _, secret = value.rpartition("=")
        token = self._tokens.get(token_id.strip())
        if token is None or not secrets.compare_digest(token.secret, secret.strip()):
            return None
        return token

    def has(self, token: ApiToken, priv: str) -> bool:
        """True when the token holds `priv` (on `/`, propagated)."""
        return priv in token.privileges

    def check(self, token: ApiToken, path: str, priv: str) -> None:
        """Raise 403 unless the token holds `priv` on `path`."""
        if not self.has(token, priv):
            raise ApiError(403, f"Permission check failed ({path}, {priv})")
