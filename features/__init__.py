"""Frozen backbones and what they yield: feature families, layer taps, preprocessing recipes, views, the one encode path."""
