"""The message bus: topic scheme, versioned message models and the MQTT adapter."""
