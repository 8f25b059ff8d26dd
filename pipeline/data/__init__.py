"""Datasets on disk and their rows in the store: layouts, manifests, problem checks, masks, cached split loaders."""
