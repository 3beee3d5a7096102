"""Faults around the real startgate processes on the simulated cluster: broker down, a dying service."""

from __future__ import annotations

from startgate.bus.broker import port_accepts
from startgate.sim.play import play
from startgate.sim.startgate_side import StartgateSide
from tests.sim.conftest import SimFactory, scenario


def test_held_start_is_spooled_while_the_broker_is_down_and_forwarded_after() -> None:
    """With the broker down at boot the hook holds and spools; the node's agent forwards it later."""
    scen = scenario(
        extra_guests=[{"vmid": 101, "node": "pve2", "disks": ["drbdstorage:vm-101-disk-0"], "onboot": True}],
        faults=[{"kind": "broker_down", "from_s": 0, "until_s": 40}],
        quiet_s=60,
    )
    side = StartgateSide(coordinator=False)  # its own broker child: only that one can be stopped
    result = play(scen, with_startgate=True, scale=0.03, side=side)
    held = [e for e in result.events if e.kind == "held" and e.vmid == 101]
    assert held
    assert held[0].t < 40
    assert held[0].detail.endswith("(recorded locally: no broker answered)")
    faults = [e.detail for e in result.events if e.kind == "fault"]
    assert faults[:2] == ["broker down", "broker back"]
    assert result.bus is not None
    assert 101 in result.bus.held()
    assert [e.decision for e in result.bus.guest_events(101)] == ["hold"]
    assert not result.invariants.by_rule("gated")
    port = int(side.broker_url.rsplit(":", 1)[1])
    assert not port_accepts("127.0.0.1", port)  # the fault thread did not start it again after the run


def test_a_coordinator_that_dies_is_reported_not_claimed(make_sim: SimFactory) -> None:
    """When the coordinator is said to exist but its process dies, the side names the death."""
    sim = make_sim(scenario())
    side = StartgateSide(has_command=lambda name: True, coordinator_args=("no-such-command",))
    assert side.missing() == []
    assert [s.name for s in side.service_list()] == ["agent", "coordinator"]
    side.start(sim)
    try:
        sim.boot.boot("pve1", delay_s=0)
        services = side.services
        assert services is not None

        def coordinator_ended() -> bool:
            # Booting spawned it; once it has ended, a later look finds it gone.
            return services.spawned == 2 and services.running("pve1", "coordinator") is None

        assert sim.clock.wait_for(coordinator_ended, sim.clock.sim(60.0), poll=sim.clock.sim(0.1))
        assert services.running("pve1", "agent") is not None
    finally:
        side.stop()
    problems = side.problems()
    assert len(problems) == 1
    assert problems[0].startswith("coordinator on pve1 exited with 2 while its node was up")
