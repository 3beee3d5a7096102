"""A simulated Proxmox VE cluster with LINSTOR controllers, for tests, benchmarks and `startgate demo`.

Entry points: `startgate.sim.cluster.SimCluster` (the Python API, documented there),
`startgate.sim.runner.run_outage` (play and judge a total outage), `startgate.sim.play.play`
(what `startgate simulate` / `startgate demo` run), `startgate.sim.scenario` (the TOML format).
One module per concern: clock, api/api_routes/api_ha/acl (the Proxmox API), tasks (UPIDs),
guests/hooks/storage (starts as qemu-server and pve-container run them), nodes (boot, startall),
ha (CRM/LRM), linstor (controllers), invariants, report, startgate_side/services/bustap (the seam to the
real startgate processes), naive_hook (the blocking hook that deadlocks).
"""
