"""Metrics: the named registry, pixel and image metrics, and DeCLIP's native-size resize."""
