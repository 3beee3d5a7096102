"""Fixtures shared by the coordinator's tests: the simulator's cluster factory."""

from __future__ import annotations

from tests.sim.conftest import make_sim

__all__ = ["make_sim"]
