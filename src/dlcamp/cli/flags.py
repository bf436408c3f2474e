"""`dlcamp train`'s setting flags, generated from the config dataclasses.

Every field of TrainConfig and RunConfig declared with `option(...)` (dlcamp.core.config)
becomes one flag: `batch_size` -> `--batch-size`, with the field's help and choices, a bool
as `--compile/--no-compile`, an int as `whole(low, high)` and a float as
`number(low, above, high)` (dlcamp.cli.argtypes), so a value out of the field's range is
refused in one line before anything runs. Every flag defaults to None: "not given" means
"the model's recipe decides", and `overrides` turns the parsed flags back into
`make_config` keyword arguments.

A new setting therefore needs one line, in the dataclass; tests/test_config.py checks that
every flag field has a flag and every generated flag a field.
"""

from __future__ import annotations

import argparse
from dataclasses import Field
from typing import Any

from dlcamp.cli.argtypes import number, whole
from dlcamp.core.config import field_type, flag_fields

# --help groups the flags by the `group` each field names.
GROUPS = {
    "training": "training settings (default: the model's recipe; see `dlcamp models`)",
    "speed": "device and speed settings (`dlcamp doctor` shows what auto picks here)",
    "text": "text settings (language models on a text corpus)",
}


def flag_name(f: Field[Any]) -> str:
    """`--batch-size` for the field `batch_size`."""
    return "--" + f.name.replace("_", "-")


def flag_arguments(f: Field[Any]) -> dict[str, Any]:
    """The keyword arguments of `add_argument` for one field's flag."""
    meta, kind = f.metadata, field_type(f)
    kwargs: dict[str, Any] = {"dest": f.name, "default": None, "help": meta["help"]}
    low = meta["low"] if meta["low"] is not None else 0
    if kind is bool:
        kwargs["action"] = argparse.BooleanOptionalAction
    elif meta["choices"]:
        kwargs["choices"] = list(meta["choices"])
    elif kind is int:
        kwargs["type"] = whole(int(low), meta["high"])
    elif kind is float:
        kwargs["type"] = number(low, above=meta["above"], high=meta["high"])
    elif kind is not str:
        raise TypeError(f"no flag for {f.name}: a {kind} field; declare it with setting()")
    return kwargs


def add_setting_flags(parser: argparse.ArgumentParser) -> None:
    """Add a flag for every `option(...)` field of TrainConfig and RunConfig, by group."""
    groups = {key: parser.add_argument_group(title) for key, title in GROUPS.items()}
    for f in flag_fields():
        groups[f.metadata["group"]].add_argument(flag_name(f), **flag_arguments(f))


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The setting flags given on the command line, as `make_config` overrides (flags left
    out are None, which make_config ignores: the recipe's value stays)."""
    return {f.name: getattr(args, f.name) for f in flag_fields()
            if getattr(args, f.name, None) is not None}
