"""`declip data` (not wired yet)."""
import argparse


def register(sub: argparse._SubParsersAction) -> None:
    pass
