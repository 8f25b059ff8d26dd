"""Ablation grids: config, cell planning, disk budget, cost plan, run names and index, results table, the demo."""
