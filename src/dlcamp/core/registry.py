"""Named things (models, datasets, corpora, NumPy-engine networks) and one way to say "unknown".

Every registry in dlcamp is a `Registry`, so a mistyped name reads the same everywhere:

    MODELS: Registry[Callable[..., nn.Module]] = Registry("model")
    MODELS.register("lenet", lenet)
    MODELS.get("lenett")
    # UnknownName: unknown model 'lenett'; did you mean 'lenet'? Choose from: lenet

The suggestions come from `difflib.get_close_matches` (the standard library's similarity
ratio, at least 0.6), so a typo or a missing dash finds the name, and an unrelated word
suggests nothing and just lists the choices.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator
from typing import Generic, TypeVar

from dlcamp.core.errors import UnknownName

T = TypeVar("T")


def unknown_name(kind: str, name: str, choices: Iterable[str], hint: str = "") -> UnknownName:
    """The error for `name` not among `choices`: names the kind, suggests, lists the choices.

    `kind` is what the user asked for ("model", "dataset", ...); `hint` is an optional last
    sentence (e.g. where the other names live).
    """
    choices = sorted(choices)
    close = difflib.get_close_matches(str(name), choices, n=3)
    message = f"unknown {kind} {name!r}; "
    if close:
        message += f"did you mean {' or '.join(map(repr, close))}? Choose from: "
    else:
        message += "choose from: "
    message += ", ".join(choices) if choices else "(none registered)"
    return UnknownName(f"{message}. {hint}" if hint else message)


class Registry(Generic[T]):
    """Items of one kind by name: `register` adds one, `get` (or `[]`) finds it.

    Iteration, `items()` and `values()` follow the order of registration; `names()` is
    sorted, for listings and messages. `get` of an unknown name raises UnknownName (a
    KeyError) with the kind, close names and all choices; registering a name twice is a
    programming error (ValueError).
    """

    def __init__(self, kind: str, items: Iterable[tuple[str, T]] = (), hint: str = "") -> None:
        """`kind` names the things in messages; `items` are registered first, in order;
        `hint` ends every "unknown" message (e.g. where the other names live)."""
        self.kind = kind
        self.hint = hint
        self._items: dict[str, T] = {}
        for name, item in items:
            self.register(name, item)

    def register(self, name: str, item: T) -> T:
        """Add `item` under `name` and return it (so it also works inside a decorator)."""
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._items[name] = item
        return item

    def get(self, name: str) -> T:
        """The item called `name`, or UnknownName suggesting the closest names."""
        try:
            return self._items[name]
        except KeyError:
            raise unknown_name(self.kind, name, self._items, self.hint) from None

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def names(self) -> list[str]:
        """All names, sorted."""
        return sorted(self._items)

    def items(self) -> list[tuple[str, T]]:
        """(name, item) pairs in the order of registration."""
        return list(self._items.items())

    def values(self) -> list[T]:
        return list(self._items.values())

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._items)})"
