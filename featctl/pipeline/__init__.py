"""Offline stages: sources, text templates, the embed runner (diff → batch → encode → write), compaction."""
