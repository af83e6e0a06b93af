"""Kaiyuan's own JSON API (beyond the HF wire protocol), under `/api/storage` and friends."""
