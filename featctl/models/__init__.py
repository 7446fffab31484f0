"""Trainers that read only the store: data and splits, feature alignment, LightGCN, baselines, evaluation."""
