"""The coordinator service: adapters (Proxmox, probes, leader lock, systemd) and the service loop."""
