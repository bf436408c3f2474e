"""The settings of a training run, as data: one place per setting.

`TrainConfig` (the training loop) and `RunConfig` (data, model, early stopping; it holds a
`TrainConfig`) are plain dataclasses. Each field says, once, everything the rest of the
package needs to know about it:

    lr: float = option(0.1, "learning rate ...", low=0, above=True)

  option(...)   a setting a recipe may set that also gets a `dlcamp train` flag: `--lr`, with
                this help, these choices and this range (dlcamp.cli.flags builds the flag)
  setting(...)  a setting a recipe may set, with no flag (momentum, warm-up, ...)
  per_run(...)  chosen for each run by make_config's own arguments (model, dataset, engine,
                quick), never by a recipe

A `Recipe` is a model's preferred settings: overrides of these fields, checked against them
when the recipe is made, so a misspelt key or an impossible value in a model's recipe raises
when dlcamp.models is imported, not when somebody trains that model.

Why here, at the bottom layer (core)? Recipes belong to the models (layer 3), which must not
import the training code (layer 4); the flags belong to the command line (layer 6). Both
read the same field declarations, so these have to sit below both. They are plain data
(no torch), so nothing is lost by keeping them here; dlcamp.train re-exports both classes.
"""

from __future__ import annotations

import copy
import difflib
import math
import typing
from collections.abc import Iterator, Mapping
from dataclasses import MISSING, Field, asdict, dataclass, field, fields
from typing import Any

from dlcamp.core.errors import BadArgument

SEED_MAX = 2**32 - 1  # NumPy's legacy seeding and the loaders' (seed, epoch) mixing fit in int64
FLAG, SETTING, PER_RUN = "flag", "setting", "per_run"  # a field's role (metadata["role"])
ENGINES = ("torch", "numpy")
RENAMED_ENGINES = {"scratch": "numpy"}  # `--engine scratch` before the engine/ folder (issue 13)


def engine_name(name: str) -> str:
    """The engine's current name: an old name gives its new one, anything else BadArgument."""
    name = RENAMED_ENGINES.get(name, name)
    if name not in ENGINES:
        raise BadArgument(f"unknown engine {name!r}; choose {' or '.join(ENGINES)}")
    return name


def _field(role: str, default: Any, help: str, default_factory: Any = MISSING,
           choices: tuple[str, ...] = (), low: float | None = None, high: float | None = None,
           above: bool = False, group: str = "training") -> Any:
    metadata = {"role": role, "help": help, "choices": tuple(choices), "low": low,
                "high": high, "above": above, "group": group}
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def option(default: Any = MISSING, help: str = "", *, default_factory: Any = MISSING,
           choices: tuple[str, ...] = (), low: float | None = None, high: float | None = None,
           above: bool = False, group: str = "training") -> Any:
    """A recipe setting with a `dlcamp train` flag: `help` is the flag's help, `choices` its
    allowed values; numbers lie in [low, high] (low excluded when `above`). `group` places
    the flag in --help: training | speed | text."""
    return _field(FLAG, default, help, default_factory, choices, low, high, above, group)


def setting(default: Any = MISSING, help: str = "", *, default_factory: Any = MISSING,
            choices: tuple[str, ...] = (), low: float | None = None, high: float | None = None,
            above: bool = False) -> Any:
    """A recipe setting without a flag (checked like an option's value)."""
    return _field(SETTING, default, help, default_factory, choices, low, high, above)


def per_run(default: Any = MISSING, help: str = "", *, default_factory: Any = MISSING,
            choices: tuple[str, ...] = ()) -> Any:
    """Set for each run by make_config's own arguments; not a recipe setting."""
    return _field(PER_RUN, default, help, default_factory, choices)


@dataclass
class TrainConfig:
    """How the training loop trains (dlcamp.train.trainer.Trainer)."""

    epochs: int = option(10, "passes over the training data", low=1)
    lr: float = option(0.1, "learning rate (the peak of the schedule)", low=0, above=True)
    optimizer: str = option("sgd", "sgd (with the recipe's momentum), adam or adamw",
                            choices=("sgd", "adam", "adamw"))
    momentum: float = setting(0.9, "SGD momentum (0: plain SGD)", low=0)
    nesterov: bool = setting(False, "SGD: Nesterov momentum")
    weight_decay: float = option(0.0, "weight decay (0: off)", low=0)
    schedule: str = option("constant", "learning rate over the run: constant, onecycle "
                           "(warm-up, then linear decay) or cosine",
                           choices=("constant", "onecycle", "cosine"))
    warmup: float = setting(0.2, "onecycle: fraction of all steps spent warming up", low=0,
                            high=1)
    label_smoothing: float = setting(0.0, "used when the Trainer builds the default "
                                     "Classification task", low=0, high=1)
    # Speed switches (dlcamp.train.speed): "auto" decides by what the machine can do.
    precision: str = option(
        "auto", "auto (default): bf16 autocast only where it is native (AVX512_BF16/AMX CPUs, "
        "recent GPUs), else fp32; `dlcamp doctor` shows the choice",
        choices=("auto", "fp32", "bf16"), group="speed")
    channels_last: str = option("auto", "NHWC memory layout for conv nets (auto: where it pays)",
                                choices=("auto", "on", "off"), group="speed")
    threads: str = option("auto", "CPU threads: auto (default: the idle cores) or a number",
                          group="speed")
    compile: bool = option(False, "torch.compile the model: a one-off compile (seconds to a "
                           "minute), then faster steps", group="speed")
    grad_clip: float = option(0.0, "clip the gradient norm to this (0: off)", low=0)
    seed: int = option(0, "for a repeatable run: initial weights, data order, augmentation",
                       low=0, high=SEED_MAX)
    device: str = option("auto", "auto (default) | cpu | cuda | cuda:1 | mps", group="speed")
    max_seconds: float = option(0.0, "stop after this much training time (0: no limit)", low=0)
    max_steps: int = option(0, "stop after this many steps (the schedule too; 0: no limit)",
                            low=0)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """From config.json; runs written before `precision` existed said `bf16: true|false`."""
        d = dict(d)
        if "bf16" in d and "precision" not in d:
            d["precision"] = "bf16" if d["bf16"] else "fp32"
        if isinstance(d.get("channels_last"), bool):
            d["channels_last"] = "on" if d["channels_last"] else "off"
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RunConfig:
    """A whole run: which model on which data, the data settings, and the training loop's."""

    model: str = per_run("cnn", "a name from `dlcamp models`")
    dataset: str = per_run("fashion-mnist", "an image dataset or a text corpus")
    engine: str = per_run("torch", "torch, or numpy: dlcamp.engine (NumPy, CPU, a few models)",
                          choices=ENGINES)
    model_kwargs: dict[str, Any] = setting(
        default_factory=dict, help="arguments for the model's constructor (create_model)")
    batch_size: int = option(256, "examples per training step", low=1)
    augment: str = option("none", "none | flip | shift | flip+shift (default: the recipe's; "
                          "don't flip digits)")
    patience: int = option(0, "early stopping after N epochs without progress (0: off)", low=0)
    resize: int = setting(0, "upsample batches to resize x resize on the device (0: off)", low=0)
    num_steps: int = option(35, "text: tokens per subsequence (BPTT length)", low=1,
                            group="text")
    token: str = option("char", "text: tokenisation (default char)", choices=("char", "word"),
                        group="text")
    sampling: str = option("sequential", "text: minibatch sampling (default sequential, state "
                           "carried over)", choices=("sequential", "random"), group="text")
    quick: bool = per_run(False, "small subsets and at most 2 epochs")
    train: TrainConfig = per_run(default_factory=TrainConfig, help="the training loop's settings")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        """From config.json (keys it does not know, such as "speed", are skipped)."""
        d = dict(d)
        train = TrainConfig.from_dict(d.pop("train", {}))
        if d.get("engine") in RENAMED_ENGINES:  # written before the engine was renamed
            d["engine"] = RENAMED_ENGINES[d["engine"]]
        names = {f.name for f in fields(cls)} - {"train"}
        return cls(**{k: v for k, v in d.items() if k in names}, train=train)


# -- the fields, by role ------------------------------------------------------------------------
def setting_fields() -> dict[str, Field[Any]]:
    """Every field a recipe or make_config's overrides may set, TrainConfig's first."""
    return {f.name: f for cls in (TrainConfig, RunConfig) for f in fields(cls)
            if f.metadata.get("role") in (FLAG, SETTING)}


def flag_fields() -> list[Field[Any]]:
    """The fields that are `dlcamp train` flags, in declaration order (TrainConfig's first)."""
    return [f for f in setting_fields().values() if f.metadata["role"] == FLAG]


def field_type(f: Field[Any]) -> Any:
    """The field's annotation as a type (int, float, str, bool, dict[str, Any])."""
    owner = RunConfig if f.name in RunConfig.__dataclass_fields__ else TrainConfig
    return typing.get_type_hints(owner)[f.name]


def split_settings(settings: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(RunConfig's, TrainConfig's) part of `settings`, routed by the dataclasses' fields."""
    run = {k: v for k, v in settings.items() if k in RunConfig.__dataclass_fields__}
    return run, {k: v for k, v in settings.items() if k not in run}


def check_name(name: str, what: str = "setting") -> Field[Any]:
    """The field called `name`; an unknown name raises BadArgument with the closest ones."""
    known = setting_fields()
    if name not in known:
        close = difflib.get_close_matches(name, known, n=2)
        hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
        raise BadArgument(f"unknown {what} {name!r}.{hint} Settings are the fields of "
                          f"TrainConfig and RunConfig: {', '.join(sorted(known))}")
    return known[name]


def check_setting(name: str, value: Any) -> None:
    """Raise BadArgument unless `value` has the field's type, is one of its choices and lies
    in its range (finite, for a float)."""
    f = check_name(name)
    hint, meta = field_type(f), f.metadata
    kind = typing.get_origin(hint) or hint
    if kind is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, kind)
    if not ok:
        raise BadArgument(f"setting {name} takes a value of type "
                          f"{getattr(kind, '__name__', kind)}, got {value!r}")
    if meta["choices"] and value not in meta["choices"]:
        raise BadArgument(f"setting {name} must be one of {', '.join(meta['choices'])}, "
                          f"got {value!r}")
    low, high = meta["low"], meta["high"]
    if (low is not None and (value <= low if meta["above"] else value < low)) or (
            high is not None and value > high):
        raise BadArgument(f"setting {name} is out of range: {value!r}")


class Recipe(Mapping[str, Any]):
    """The settings that suit one model: overrides of TrainConfig and RunConfig fields.

        BN_RECIPE = Recipe(optimizer="sgd", lr=0.2, nesterov=True, augment="flip")
        recipe = BN_RECIPE.replace(epochs=6, model_kwargs={"width": 0.25})

    Every name and value is checked (`check_setting`) when the recipe is made. A recipe is
    read-only; reading gives copies, so nobody can change a registered recipe by accident.
    """

    def __init__(self, **settings: Any) -> None:
        for name, value in settings.items():
            check_setting(name, value)
        self._settings = copy.deepcopy(settings)

    def replace(self, **changes: Any) -> Recipe:
        """A new recipe: these settings changed or added (checked), the rest kept."""
        return Recipe(**{**self._settings, **changes})

    def __getitem__(self, name: str) -> Any:
        return copy.deepcopy(self._settings[name])

    def __iter__(self) -> Iterator[str]:
        return iter(self._settings)

    def __len__(self) -> int:
        return len(self._settings)

    def __repr__(self) -> str:
        return f"Recipe({', '.join(f'{k}={v!r}' for k, v in self._settings.items())})"
