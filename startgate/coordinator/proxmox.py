"""The Proxmox VE API adapter: proxmoxer over requests, and the only module that imports either.

`client_from_config` is the one place a client is built (prometheus-pve-exporter style: built
once from config, injected into whoever calls the API). Every outside error becomes a
`startgate.errors.ProxmoxError` whose `status` is the HTTP status, or 0 when no answer arrived
(refused, timed out, TLS failure): a start call that got no answer may still have happened.

TLS: `verify` is passed with every request. requests lets `$REQUESTS_CA_BUNDLE` override a
Session-level verify path (psf/requests#3829), so a session-level setting would silently verify
against the wrong CA on any host that sets the variable; proxmoxer's session passes its
`verify_ssl` per request, which requests keeps. One proxmoxer instance per thread: a
requests.Session is not documented as thread-safe, and the service calls from a worker pool.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import requests
from proxmoxer import ProxmoxAPI
from proxmoxer.core import ResourceException

from startgate.config import Proxmox, read_secret
from startgate.errors import ProxmoxError

log = logging.getLogger(__name__)
_DETAIL = 300  # characters of an error body that reach a message


class ApiClient(Protocol):
    """The generic calls the rest of the coordinator makes (paths below /api2/json)."""

    def get(self, path: str, **params: Any) -> Any:
        """GET `path`; the answer's `data`."""

    def post(self, path: str, **data: Any) -> Any:
        """POST `path`; the answer's `data`."""

    def put(self, path: str, **data: Any) -> Any:
        """PUT `path`; the answer's `data`."""


def upid_path(upid: str) -> str:
    """A UPID as one URL path segment (it holds colons; the trailing one is part of it)."""
    return quote(upid, safe="")


class ProxmoxClient:
    """Token-authenticated API calls with a timeout, TLS verification per request, errors translated."""

    def __init__(
        self, url: str, token_id: str, secret: str, *, verify: bool | str = True, timeout_s: float = 10.0
    ) -> None:
        user, sep, token_name = token_id.rpartition("!")
        if not sep or not user or not token_name:
            raise ValueError(f"token id {token_id!r} is not USER@REALM!TOKENID")
        self.url = url.rstrip("/").removesuffix("/api2/json")
        self.token_id = token_id
        self._user = user
        self._token_name = token_name
        self._secret = secret
        self.verify = verify
        self.timeout_s = timeout_s
        self._local = threading.local()

    def _api(self) -> Any:
        api = getattr(self._local, "api", None)
        if api is None:
            host = self.url.split("://", 1)[1].split("/", 1)[0]
            api = ProxmoxAPI(
                host,
                user=self._user,
                token_name=self._token_name,
                token_value=self._secret,
                verify_ssl=self.verify,
                timeout=self.timeout_s,
            )
            # proxmoxer always builds https://host:port/api2/json; the configured URL is the truth
            # (plain http in a lab, a reverse proxy's path prefix).
            api._store["base_url"] = self.url + "/api2/json"  # the one knob proxmoxer lacks
            self._local.api = api
        return api

    def _call(self, method: str, path: str, params: dict[str, Any]) -> Any:
        what = f"{method} {path}"
        clean = {k: _wire(v) for k, v in params.items() if v is not None}
        try:
            resource = self._api()(path.strip("/"))
            if method == "GET":
                return resource.get(**clean)
            if method == "POST":
                return resource.post(**clean)
            return resource.put(**clean)
        except ResourceException as exc:
            status = int(exc.status_code)
            raise ProxmoxError(f"{what}: HTTP {status} {_reason(exc)}", status) from None
        except requests.exceptions.Timeout:
            raise ProxmoxError(f"{what}: no answer within {self.timeout_s:g}s", 0) from None
        except requests.exceptions.SSLError as exc:
            raise ProxmoxError(f"{what}: TLS failure ({_short(exc)}); check proxmox.verify_tls", 0) from None
        except requests.exceptions.RequestException as exc:
            raise ProxmoxError(f"{what}: {_short(exc)}", 0) from None
        except OSError as exc:  # requests raises a bare OSError for a CA bundle path that is gone
            raise ProxmoxError(f"{what}: {_short(exc)}", 0) from None
        except ValueError as exc:  # a body that is not JSON
            raise ProxmoxError(f"{what}: not a Proxmox API answer ({_short(exc)})", 200) from None

    def get(self, path: str, **params: Any) -> Any:
        """GET `path` with query parameters."""
        return self._call("GET", path, params)

    def post(self, path: str, **data: Any) -> Any:
        """POST `path` with form data."""
        return self._call("POST", path, data)

    def put(self, path: str, **data: Any) -> Any:
        """PUT `path` with form data."""
        return self._call("PUT", path, data)


def _wire(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    return value


def _short(exc: BaseException) -> str:
    return str(exc).replace("\n", " ")[:_DETAIL] or type(exc).__name__


def _reason(exc: ResourceException) -> str:
    # proxmoxer puts the HTTP reason (PVE's message) in `content` and the parameter errors apart.
    text = str(exc.content or exc.status_message or "").strip()
    if exc.errors:
        text += f" ({exc.errors})"
    return text.replace("\n", " ")[:_DETAIL]


def verify_setting(value: bool | Path) -> bool | str:
    """`proxmox.verify_tls` as requests takes it: True, False, or a CA bundle path."""
    return str(value) if isinstance(value, Path) else value


def client_from_config(cfg: Proxmox) -> ProxmoxClient:
    """The one place the API client is built from the `[proxmox]` config section."""
    secret = read_secret(cfg.token_secret_file, "proxmox.token_secret_file")
    if not isinstance(cfg.verify_tls, bool) and not cfg.verify_tls.is_file():
        raise ProxmoxError(f"proxmox.verify_tls: CA bundle {cfg.verify_tls} does not exist")
    return ProxmoxClient(
        cfg.url, cfg.token_id, secret, verify=verify_setting(cfg.verify_tls), timeout_s=cfg.timeout_s
    )
