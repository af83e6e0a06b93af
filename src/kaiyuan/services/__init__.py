"""Use cases. Services take ports and plain values; they know nothing of HTTP or SQL."""
