"""Blob stores: content-addressed bytes keyed by sha256."""
