"""Licences: the catalog, the compliance checks on every push, policies, openness."""
