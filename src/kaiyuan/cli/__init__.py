"""The `kaiyuan` command line."""
