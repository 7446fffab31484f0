"""Persistence: the feature store (manifest + Parquet parts + lock)."""
