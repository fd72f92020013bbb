"""The command line: argparse and printing, one module per command group."""

from hub.cli.commands import main

__all__ = ["main"]
