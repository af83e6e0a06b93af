"""Domain vocabulary: ids, digests, records, errors and ports. Standard library only."""
