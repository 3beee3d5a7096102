"""Properties of the core over random clusters (startgate.core.testing.World drives it).

Whatever the guests, their order/up/HA/container mix, the startall mode, the gates' flapping and
the start failures: no guest is started twice, nothing is released while its gate is unhealthy
(unless by ticket), order levels and the in-flight limit hold per node, and once the gates stay
healthy every guest ends running (nothing deadlocks).
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from startgate.core.model import GateSpec, Settings
from startgate.core.testing import Guest, World

NODES = ("pve1", "pve2", "pve3")
GATES = ("linstor", "db")


@st.composite
def guests(draw: st.DrawFn) -> dict[int, Guest]:
    """1-12 guests on up to three nodes."""
    n = draw(st.integers(1, 12))
    out: dict[int, Guest] = {}
    for i in range(n):
        vmid = 101 + i
        ha = draw(st.booleans()) and draw(st.booleans())
        type_ = "qemu" if ha else draw(st.sampled_from(["qemu", "qemu", "lxc"]))
        out[vmid] = Guest(
            vmid=vmid,
            node=draw(st.sampled_from(NODES)),
            type=type_,  # type: ignore[arg-type]  # sampled from the literal's values
            gates=tuple(sorted(draw(st.sets(st.sampled_from(GATES), min_size=1)))),
            order=draw(st.none() | st.integers(0, 3)),
            up=draw(st.none() | st.sampled_from([0.0, 2.0, 5.0])),
            ha=ha,
            start_s=draw(st.sampled_from([0.5, 1.0, 3.0])),
            failures=draw(st.integers(0, 2)),
            api_errors=draw(st.integers(0, 1)),
            lost_answer=draw(st.booleans()),
        )
    return out


@st.composite
def flips(draw: st.DrawFn) -> list[float]:
    """A gate's flip times: unhealthy at first, healthy for good after the last (odd count)."""
    times = sorted(draw(st.sets(st.integers(1, 120), min_size=1, max_size=9)))
    if len(times) % 2 == 0:
        times = times[:-1]
    return [float(t) for t in times]


def core_settings(limit: int) -> Settings:
    """Two gates with node readiness on linstor; two retries so every injected failure is survived."""
    return Settings(
        node="pve1",
        gates=(
            GateSpec("linstor", healthy_after=3, node_ready=True),
            GateSpec("db", interval_s=1.0, healthy_after=2),
        ),
        max_parallel_starts=limit,
        start_retries=4,
        retry_backoff_s=2.0,
        reconcile_interval_s=15.0,
        release_timeout_s=60.0,
    )


@settings(max_examples=40)
@given(
    guests=guests(),
    linstor=flips(),
    db=flips(),
    parallel=st.booleans(),
    limit=st.integers(1, 4),
)
def test_no_double_start_no_early_release_order_and_limits_hold_and_everything_ends_running(
    guests: dict[int, Guest], linstor: list[float], db: list[float], parallel: bool, limit: int
) -> None:
    """The core's promises hold for random clusters, in both startall modes."""
    world = World(core_settings(limit), guests, {"linstor": linstor, "db": db}, parallel_startall=parallel)
    world.boot()
    world.run(until=world.healthy_from() + 240.0)
    assert world.finish_check() == []
    assert all(world.starts[v] == 1 for v in guests)


@settings(max_examples=20)
@given(guests=guests(), limit=st.integers(1, 4))
def test_a_gate_that_never_comes_back_releases_nothing(guests: dict[int, Guest], limit: int) -> None:
    """With the gates down for good, no held guest is released and none starts."""
    world = World(core_settings(limit), guests, {"linstor": [], "db": []})
    world.boot()
    world.run(until=300.0)
    assert world.violations == []
    assert world.released_at == {}
    assert sum(world.starts.values()) == 0


@settings(max_examples=25)
@given(
    guests=guests(),
    linstor=flips(),
    db=flips(),
    restart_at=st.floats(0.0, 150.0),
    limit=st.integers(1, 4),
)
def test_a_coordinator_killed_at_any_moment_loses_nothing_and_starts_nothing_twice(
    guests: dict[int, Guest], linstor: list[float], db: list[float], restart_at: float, limit: int
) -> None:
    """SIGKILL and restart from the state file at a random moment: the same promises hold."""
    world = World(core_settings(limit), guests, {"linstor": linstor, "db": db}, restart_at=restart_at)
    world.boot()
    world.run(until=max(world.healthy_from(), restart_at) + 240.0)
    assert world.finish_check() == []
    assert all(world.starts[v] == 1 for v in guests)


@settings(max_examples=25)
@given(
    guests=guests(),
    linstor=flips(),
    db=flips(),
    failover_at=st.floats(0.0, 150.0),
    limit=st.integers(1, 4),
)
def test_a_new_leader_rebuilding_from_the_bus_loses_nothing_and_starts_nothing_twice(
    guests: dict[int, Guest], linstor: list[float], db: list[float], failover_at: float, limit: int
) -> None:
    """The leader dies at a random moment; a follower that saw only retained messages takes over."""
    world = World(core_settings(limit), guests, {"linstor": linstor, "db": db}, failover_at=failover_at)
    world.boot()
    world.run(until=max(world.healthy_from(), failover_at) + 240.0)
    assert world.finish_check() == []
    assert all(world.starts[v] == 1 for v in guests)
