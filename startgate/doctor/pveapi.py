"""What doctor asks the Proxmox API: the token's effective privileges (stdlib HTTP, one GET).

`GET /api2/json/access/permissions` answers, for the authenticated user or token, a map of ACL
path to {privilege: propagate (0/1)} (proxmox/pve-access-control src/PVE/API2/AccessControl.pm
`permissions`: "Map of "path" => (Map of "privilege" => "propagate boolean")"; every user or
token may read its own). Token auth is the `Authorization: PVEAPIToken=USER@REALM!TOKENID=SECRET`
header; a bad token is answered 401 (after a 3 s delay on real PVE).

Errors are startgate's ProxmoxError (status 0 when no HTTP answer arrived).
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from startgate.errors import ProxmoxError

Permissions = dict[str, dict[str, bool]]  # ACL path -> privilege -> propagates


@dataclass(frozen=True)
class ApiAccess:
    """How to reach the API: base URL (…:8006), token id and secret, TLS verification, timeout."""

    url: str
    token_id: str
    secret: str
    verify_tls: bool | Path = True
    timeout_s: float = 10.0


def _context(verify: bool | Path) -> ssl.SSLContext:
    if verify is False:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    if isinstance(verify, Path):
        return ssl.create_default_context(cafile=str(verify))
    return ssl.create_default_context()


def _get(access: ApiAccess, path: str) -> Any:
    url = access.url.rstrip("/")
    if not url.endswith("/api2/json"):
        url += "/api2/json"
    req = urllib.request.Request(  # noqa: S310 - the URL is validated as http(s) by the config model
        url + path,
        headers={
            "Authorization": f"PVEAPIToken={access.token_id}={access.secret}",
            "Accept": "application/json",
        },
    )
    ctx = _context(access.verify_tls) if url.startswith("https:") else None
    try:
        with urllib.request.urlopen(req, timeout=access.timeout_s, context=ctx) as resp:  # noqa: S310 - same
            body = resp.read()
    except urllib.error.HTTPError as exc:
        reason = exc.reason if isinstance(exc.reason, str) else str(exc.reason)
        raise ProxmoxError(f"GET {path}: HTTP {exc.code} {reason}", exc.code) from None
    except (urllib.error.URLError, OSError, ssl.SSLError) as exc:
        why = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        raise ProxmoxError(f"GET {url + path}: {why}") from None
    try:
        return json.loads(body)["data"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ProxmoxError(f"GET {path}: not a Proxmox API answer ({exc})", 200) from None


def permissions(access: ApiAccess) -> Permissions:
    """The token's effective privileges on every ACL path it has any on."""
    data = _get(access, "/access/permissions")
    if not isinstance(data, dict):
        raise ProxmoxError("GET /access/permissions: expected an object of paths", 200)
    out: Permissions = {}
    for path, privs in data.items():
        if isinstance(path, str) and isinstance(privs, dict):
            out[path] = {str(p): bool(v) for p, v in privs.items()}
    return out
