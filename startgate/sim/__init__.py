"""A simulated Proxmox VE cluster with LINSTOR controllers, for tests, benchmarks and `startgate demo`."""
