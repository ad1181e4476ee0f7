"""Nodes as one cluster: membership (heartbeats, the dead and who reaps them) and the bus between nodes."""
