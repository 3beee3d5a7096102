"""`startgate doctor`: checks of a node's setup, each ok / warn / fail with a one-line fix.

The checks read the node's real files (paths below a configurable root, so tests run them on
fixture trees), the Proxmox API (the token's privileges) and the bus (brokers, node agents).
"""
