"""Pure decisions: membership, health hysteresis, the held queue's transitions, release order.

Nothing here performs I/O, reads a clock or sleeps (enforced by startgate/core/ruff.toml and
tests/test_purity.py); every function takes `now` and returns data.
"""
