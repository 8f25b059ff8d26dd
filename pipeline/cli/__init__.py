"""The ``declip`` console script; one module per command family, registered in :mod:`pipeline.cli.app`."""
from pipeline.cli.app import main

__all__ = ["main"]
