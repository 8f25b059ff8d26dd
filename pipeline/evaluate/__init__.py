"""Evaluation on cached features: per-image and pooled metrics, validation passes, the feature-free baselines."""
