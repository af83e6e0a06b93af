"""A typed client for the hub's native API (what the `kaiyuan` commands that talk to a hub use)."""
