"""Gate probes for the coordinator, as the core's ProbeResult events.

The health check itself is the hook's (startgate.hooks.probe: stdlib, bounded by a deadline), so
the hook and the coordinator judge a gate the same way:
- linstor: `GET <url>/health` answers 200 on any url, tried in order (LINBIT/linstor-server
  controller/.../api/rest/Health.java);
- http: 2xx (or `expect_status`) from the url; tcp: a connect completes.
A linstor gate with `node_ready` also reads `GET <url>/v1/nodes` from the controller that
answered: a node is ready when its satellite is `ONLINE` (set only after the full sync,
CtrlFullSyncResponseApiCallHandler); `Controller`-type nodes are ignored (the controller VM is
listed as one and shown OFFLINE, which is fine). With LINSTOR token auth every /v1 call needs
`Authorization: Bearer` (AuthenticationFilter.java), read from `token_file`.
"""

from __future__ import annotations

import json
import logging
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from startgate.config import Gate, HttpCheck, LinstorCheck, TcpCheck
from startgate.core.events import ProbeResult
from startgate.deadline import Deadline
from startgate.hooks import probe as hook_probe
from startgate.hooks.settings import CheckSpec

log = logging.getLogger(__name__)

_CONTROLLER_TYPES = frozenset({"CONTROLLER"})
_MAX_BODY = 4 * 1024 * 1024


def check_spec(gate: Gate) -> CheckSpec:
    """The hook's CheckSpec for a configured gate."""
    c = gate.check
    if isinstance(c, LinstorCheck):
        return CheckSpec(
            "linstor",
            urls=tuple(c.urls),
            timeout_s=c.timeout_s,
            verify_tls=c.verify_tls,
            node_ready=c.node_ready,
        )
    if isinstance(c, HttpCheck):
        return CheckSpec(
            "http",
            urls=(c.url,),
            timeout_s=c.timeout_s,
            verify_tls=c.verify_tls,
            expect_status=c.expect_status,
        )
    if isinstance(c, TcpCheck):
        return CheckSpec("tcp", timeout_s=c.timeout_s, host=c.host, port=c.port)
    raise TypeError(f"gate {gate.name}: unknown check kind")


def online_satellites(nodes: Any) -> frozenset[str]:
    """The names of `ONLINE` satellites in a `/v1/nodes` answer (Controller-type nodes left out)."""
    if not isinstance(nodes, list):
        raise ValueError("/v1/nodes did not answer a list")  # noqa: TRY004 - bad input, caught with the JSON errors
    out = set()
    for n in nodes:
        if not isinstance(n, dict) or not isinstance(n.get("name"), str):
            continue
        if str(n.get("type", "")).upper() in _CONTROLLER_TYPES:
            continue
        if n.get("connection_status") == "ONLINE":
            out.add(n["name"])
    return frozenset(out)


def _context(verify: bool) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class GateProbe:
    """Runs one gate's check (and, for linstor with node_ready, its /v1/nodes)."""

    def __init__(self, gate: Gate, *, mono: Callable[[], float] = time.monotonic) -> None:
        self.name = gate.name
        self.spec = check_spec(gate)
        check = gate.check
        self.token_file: Path | None = check.token_file if isinstance(check, LinstorCheck) else None
        self._mono = mono

    def _bearer(self) -> str | None:
        if self.token_file is None:
            return None
        try:
            return self.token_file.read_text(encoding="utf-8").strip() or None
        except OSError as exc:
            log.warning("gate %s: cannot read token_file %s: %s", self.name, self.token_file, exc.strerror)
            return None

    def nodes_online(self, url: str, deadline: Deadline) -> frozenset[str] | None:
        """The ONLINE satellites per `url`/v1/nodes, or None when that cannot be read."""
        headers = {"Accept": "application/json"}
        token = self._bearer()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        req = urllib.request.Request(url.rstrip("/") + "/v1/nodes", headers=headers)  # noqa: S310 - http(s) url from the config
        ctx = _context(self.spec.verify_tls) if url.startswith("https:") else None
        try:
            timeout = max(0.05, min(self.spec.timeout_s, deadline.remaining()))
            with urllib.request.urlopen(req, timeout=timeout, context=ctx) as resp:  # noqa: S310 - same
                body = resp.read(_MAX_BODY)
            return online_satellites(json.loads(body))
        except urllib.error.HTTPError as exc:
            log.info("gate %s: %s/v1/nodes answered HTTP %s", self.name, url, exc.code)
        except (OSError, ValueError) as exc:
            log.info("gate %s: cannot read %s/v1/nodes: %s", self.name, url, exc)
        return None

    def probe(self) -> ProbeResult:
        """One check, bounded by the check's timeout per url; never raises for a service that is down."""
        t0 = self._mono()
        urls = self.spec.urls if self.spec.kind == "linstor" else ()
        budget = self.spec.timeout_s * max(1, len(urls)) + (
            self.spec.timeout_s if self.spec.node_ready else 0
        )
        deadline = Deadline(budget, self._mono)
        target = ", ".join(urls) if urls else ""
        if self.spec.kind != "linstor":
            r = hook_probe.probe(self.spec, deadline)
            return ProbeResult(self.name, r.healthy, (self._mono() - t0) * 1000, r.detail, target)
        problems = []
        for url in urls:
            one = self.spec._replace(urls=(url,))
            r = hook_probe.probe(one, deadline.within(self.spec.timeout_s))
            if not r.healthy:
                problems.append(r.detail)
                continue
            latency = (self._mono() - t0) * 1000
            nodes = self.nodes_online(url, deadline) if self.spec.node_ready else None
            return ProbeResult(self.name, True, latency, r.detail, url + "/health", nodes)
        latency = (self._mono() - t0) * 1000
        return ProbeResult(self.name, False, latency, "; ".join(problems) or "no url to check", target)
