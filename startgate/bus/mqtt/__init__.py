"""The paho-mqtt adapter: bytes in, bytes out; it knows nothing of startgate's message models.

- `Publisher`: QoS 1 to the first broker in the list that answers, each publish waiting for
  its PUBACK within a deadline (services that only send).
- `Subscriber`: one broker, persistent session, QoS 1 subscriptions, Last Will, reconnects;
  messages arrive through a thread-safe queue (services that listen).
- `SubscriberGroup`: one Subscriber per broker sharing one queue (the coordinator).
- `publisher_from_config` / `subscribers_from_config`: the one place clients are built from
  `startgate.config.Bus`; services get them injected.

MQTT v5 by default; with protocol "auto", a broker that refuses v5 is spoken to in 3.1.1 (where
an ACL-denied publish is silently acknowledged; v5 reports it, as NotAuthorizedError). paho's
exceptions and reason codes never leave this package: callers see startgate.errors only.
"""

from startgate.bus.mqtt.group import (
    PublishReport,
    SubscriberGroup,
    publisher_from_config,
    subscribers_from_config,
)
from startgate.bus.mqtt.publisher import Publisher
from startgate.bus.mqtt.subscriber import Subscriber
from startgate.bus.values import (
    BrokerAddress,
    BusCounters,
    ClientSettings,
    Counters,
    Inbound,
    LinkUp,
    Message,
    Will,
)

__all__ = [
    "BrokerAddress",
    "BusCounters",
    "ClientSettings",
    "Counters",
    "Inbound",
    "LinkUp",
    "Message",
    "PublishReport",
    "Publisher",
    "Subscriber",
    "SubscriberGroup",
    "Will",
    "publisher_from_config",
    "subscribers_from_config",
]
