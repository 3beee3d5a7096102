"""startgate: hold Proxmox VE guest starts until their gates are healthy, then start them."""

__version__ = "0.1.0"
