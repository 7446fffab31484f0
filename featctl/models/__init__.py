"""Downstream trainers that read only the store (LightGCN, multimodal GNN, MoE) arrive with their issues."""
