"""Kaiyuan: a self-hosted hub for open large-model files and datasets."""

__version__ = "0.1.0"
