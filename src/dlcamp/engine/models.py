"""The NumPy engine's networks by their dlcamp names, built the way `create_model` builds
PyTorch ones:

    net = create_scratch_model("lenet-modern", image_size=28)
    net.dlcamp_spec            # {"name": "lenet-modern", "kwargs": {"image_size": 28}}

Each network (in nn.py) is laid out exactly like the PyTorch model of the same name in
dlcamp.models, so `state_dict()` moves between the two; `dlcamp train --engine numpy`
trains the ones listed here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from dlcamp.core.errors import BadArgument
from dlcamp.core.registry import Registry
from dlcamp.engine import nn

MODELS: Registry[Callable[..., nn.Module]] = Registry(
    "NumPy engine model",
    [("softmax", nn.softmax_regression), ("mlp", nn.mlp), ("lenet", nn.lenet),
     ("lenet-modern", nn.lenet_modern)],
    hint="Use --engine torch for the other models.")


def list_scratch_models() -> list[str]:
    """The names the NumPy engine can build, sorted."""
    return MODELS.names()


def create_scratch_model(name: str, **kwargs: Any) -> nn.Module:
    """A NumPy-engine network by its dlcamp model name; it remembers how it was built.

    Raises UnknownName for a name the engine does not build, BadArgument for arguments the
    network does not take.
    """
    build = MODELS.get(name)
    try:
        model = build(**kwargs)
    except TypeError as e:
        raise BadArgument(f"cannot build NumPy-engine model {name!r} with {kwargs}: {e}") from e
    # JSON round trip, as the registry does: tuples become lists, equal after config.json
    model.dlcamp_spec = {"name": name, "kwargs": json.loads(json.dumps(kwargs))}
    return model
