"""Datasets on disk: layout adapters, manifests, problem checks, mask conventions, the embedded demo data."""
