"""startgate's own exception tree.

Errors from outside libraries (paho, proxmoxer, requests, sockets, pydantic) are translated into
these at the adapter boundary, so callers handle one family and messages name what went wrong.
"""

from __future__ import annotations


class StartgateError(Exception):
    """Base of every error startgate raises on purpose."""


class ConfigError(StartgateError):
    """The startgate configuration is missing, unreadable or invalid.

    `problems` lists one line per culprit, each naming the file and the key path.
    """

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"{path}: invalid startgate config\n{lines}")


class SecretFileError(ConfigError):
    """A secret file is missing, unreadable or readable by group or others."""


class TopicError(StartgateError, ValueError):
    """A topic part (VMID, node, gate name) would inject MQTT syntax, or a topic does not parse."""


class MessageError(StartgateError, ValueError):
    """A bus payload is not a valid startgate message."""


class BusError(StartgateError):
    """The MQTT bus could not do what was asked."""


class BrokerUnavailableError(BusError):
    """No broker in the list answered (refused, unreachable, TLS or protocol failure)."""


class NotAuthorizedError(BusError):
    """The broker refused the credentials or the ACL denied the publish/subscribe."""


class PublishTimeoutError(BusError):
    """A publish was not acknowledged within its deadline."""


class BrokerProcessError(BusError):
    """A local mosquitto child (demo, simulator, tests) could not be found, started or configured."""


class GuestConfigError(StartgateError):
    """A Proxmox guest config file is missing or cannot be parsed."""


class ProxmoxError(StartgateError):
    """The Proxmox API refused or failed a request.

    `status` is the HTTP status (0 when no answer arrived).
    """

    def __init__(self, message: str, status: int = 0) -> None:
        self.status = status
        super().__init__(message)


class SpoolError(StartgateError):
    """The durable spool directory could not be written or read."""


class ScenarioError(ConfigError):
    """A simulation scenario file is missing, unreadable or invalid (each problem names the key)."""

    def __init__(self, path: str, problems: list[str]) -> None:
        super().__init__(path, problems)
        lines = "\n".join(f"  {p}" for p in problems)
        self.args = (f"{path}: invalid scenario\n{lines}",)


class SimError(StartgateError):
    """The simulated cluster could not be set up or run (ports, certificates, a missing broker)."""
