"""The `dlcamp` command line (the top layer)."""

from dlcamp.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
