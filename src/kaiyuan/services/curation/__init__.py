"""Dataset co-building: contributions, the curation pipeline and its stages, engines."""
