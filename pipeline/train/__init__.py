"""Decoder training on the cache: DeCLIP's recipe, the plateau schedule, precision settings, multi-head runs."""
