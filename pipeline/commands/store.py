"""`declip store` (not wired yet)."""
import argparse


def register(sub: argparse._SubParsersAction) -> None:
    pass
