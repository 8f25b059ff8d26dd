"""Extraction: manifest → reader → encode → block writer into the feature store, resumable per block."""
