"""Pure decisions: membership, health hysteresis, the held queue's transitions, release order.

Nothing here performs I/O, reads a clock or sleeps (enforced by startgate/core/ruff.toml and
tests/test_purity.py); every function takes `now` and returns data.

The coordinator's core (imported by module, so the hook's hot path never loads it):
- `machine.step(state, event, now) -> (state, actions)`: the one entry point.
- `model`: `Settings`/`GateSpec` (built by startgate.coordinator.settings), `State` and its parts,
  `initial_state(settings, instance)`.
- `events`: what `step` takes besides the decoded bus messages; `actions`: what it returns.
- `persist.to_dict`/`from_dict`: the state file's content.
- `testing.World`: a small simulated cluster driving the core; `promises.check_step`: its checks.
"""
