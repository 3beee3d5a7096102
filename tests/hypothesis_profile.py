"""Hypothesis settings for this suite, loaded as a pytest plugin (see pyproject addopts).

The machines that run the suite have 2 cores shared with brokers and simulated clusters, so
per-example deadlines and the too-slow health check would report load, not bugs.
"""

from hypothesis import HealthCheck, settings

settings.register_profile(
    "startgate",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    max_examples=100,
)
settings.load_profile("startgate")
