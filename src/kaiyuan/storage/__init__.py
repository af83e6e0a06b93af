"""Storage adapters: implementations of the ports in `kaiyuan.core.ports`."""
