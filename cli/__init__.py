"""The ``declip`` console script; one module per command family, registered in :mod:`declip.cli.app`."""
from declip.cli.app import main

__all__ = ["main"]
