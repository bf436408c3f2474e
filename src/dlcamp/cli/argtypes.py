"""Types for the command line's numeric flags: a bad value is refused where it enters.

argparse calls these on the text of a flag; a value out of range raises ArgumentTypeError,
which `dlcamp` prints as one line that names the flag, e.g.

    error: argument --temperature: must be a finite number > 0, got 'nan'; use --greedy ...

so that nan, inf, a negative count or a seed too large for the generators never reaches
the library as a traceback (or, worse, as a run that trains on nan).

    p.add_argument("--epochs", type=whole(1))
    p.add_argument("--lr", type=number(0, above=True))
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import NoReturn

from dlcamp.core.config import SEED_MAX

__all__ = ["SEED_MAX", "OneLineParser", "number", "seed", "whole"]


def whole(low: int = 0, high: int | None = None, note: str = "") -> Callable[[str], int]:
    """An argparse type: a whole number from `low` to `high` (inclusive; None: no limit).

    Anything else (a fraction, "1e3", a number out of range) raises ArgumentTypeError with
    the range and `note` (what the value means, or what to use instead).
    """
    wanted = f"a whole number >= {low}" if high is None else f"a whole number from {low} to {high}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {wanted}, got {text!r}{note}")
        return value

    return parse


def number(low: float = 0.0, above: bool = False, high: float | None = None,
           note: str = "") -> Callable[[str], float]:
    """An argparse type: a finite float >= `low` (> `low` when `above`), <= `high` if given.

    nan and +-inf are always refused (float() accepts them, and they would spread through
    training or sampling silently); so are values out of range. Raises ArgumentTypeError.
    """
    wanted = f"a finite number {'>' if above else '>='} {low:g}"
    if high is not None:
        wanted += f" and <= {high:g}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        in_range = value > low if above else value >= low
        if not (math.isfinite(value) and in_range and (high is None or value <= high)):
            raise argparse.ArgumentTypeError(f"must be {wanted}, got {text!r}{note}")
        return value

    return parse


def seed() -> Callable[[str], int]:
    """An argparse type for --seed: a whole number from 0 to 2**32 - 1."""
    return whole(0, SEED_MAX)


class OneLineParser(argparse.ArgumentParser):
    """argparse, with dlcamp's errors: one `error:` line on stderr and exit code 2.

    argparse prints its whole usage before the error; here the line names the flag and
    points at --help instead. Subcommand parsers inherit this class.
    """

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")
