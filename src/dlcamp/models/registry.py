"""One registry for every model: the CLI, the server, the lessons and the tests all use it.

    @register_model("mlp")
    def mlp(num_classes=10, in_channels=1, image_size=28, hidden=(256,)): ...

    model = create_model("mlp", hidden=(512,))

A model may carry a training recipe, `register_model("cnn", recipe=Recipe(epochs=2, ...))`:
a `dlcamp.core.config.Recipe`, overrides of TrainConfig/RunConfig fields that are checked
against those dataclasses when the recipe is made, so a misspelt setting fails on import.
(The config dataclasses live in core, below this layer, for this reason: models may not
import dlcamp.train.)
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from typing import Any

from torch import nn

from dlcamp.core.config import Recipe
from dlcamp.core.errors import BadArgument, UnknownName
from dlcamp.core.registry import Registry

_MODELS: Registry[Callable[..., nn.Module]] = Registry("model")
_RECIPES: dict[str, Recipe] = {}


def register_model(name: str, recipe: Recipe | None = None
                   ) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: make a model constructor available as `create_model(name, ...)`.

    `recipe` holds the training settings that work well for this model (a Recipe: fields of
    TrainConfig and RunConfig); `dlcamp train` starts from it and command-line flags override.
    """
    if recipe is not None and not isinstance(recipe, Recipe):
        raise TypeError(f"the recipe of model {name!r} must be a dlcamp.core.config.Recipe, "
                        f"got {type(recipe).__name__}")

    def add(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _MODELS.register(name, fn)  # a name registered twice is a ValueError
        _RECIPES[name] = recipe or Recipe()
        return fn

    return add


def list_models() -> list[str]:
    return _MODELS.names()


def model_entry(name: str) -> Callable[..., nn.Module]:
    """The constructor registered as `name`; UnknownName (with close names) otherwise."""
    return _MODELS.get(name)


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered model; the model remembers how it was built (for checkpoints)."""
    fn = model_entry(name)
    params = inspect.signature(fn).parameters
    unknown = [k for k in kwargs if k not in params]
    if unknown:
        raise UnknownName(f"model {name!r} takes no argument(s) {', '.join(unknown)}; "
                          f"it takes: {', '.join(params)}")
    try:
        model = fn(**kwargs)
    except (ValueError, TypeError) as e:
        raise BadArgument(f"cannot build model {name!r} with {kwargs}: {e}") from e
    # JSON round trip: tuples become lists, so the spec compares equal after config.json
    model.dlcamp_spec = {"name": name, "kwargs": json.loads(json.dumps(kwargs))}
    return model


def model_recipe(name: str) -> Recipe:
    """The registered training recipe of a model (read-only; reading gives copies)."""
    model_entry(name)
    return _RECIPES[name]


def model_accepts(name: str, argument: str) -> bool:
    return argument in inspect.signature(model_entry(name)).parameters


def model_summary(name: str) -> str:
    """First line of the constructor's docstring."""
    doc = inspect.getdoc(model_entry(name)) or ""
    return doc.splitlines()[0] if doc else ""


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
