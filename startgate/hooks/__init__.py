"""What runs on every node: the hookscript entry and the node agent."""
