"""Old import paths of modules that moved, kept working for a while with a warning.

The layout of issue 13 (docs/architecture.md) moved the modules below into folders. Code
written against the old paths (`from dlcamp.compare import compare_models` in a learner's
notebook) keeps running: importing an old path loads the module from its new home and warns
once, with a FutureWarning (shown by default, unlike DeprecationWarning), naming the new path.

    MOVED["dlcamp.compare"] == "dlcamp.course.compare"

The finder sits on `sys.meta_path` once `dlcamp` is imported. It only answers for the names in
MOVED, so every other import goes through Python's normal machinery.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from types import ModuleType

# old path -> new module, or several when the old module's names were split between them
MOVED: dict[str, str | tuple[str, ...]] = {
    "dlcamp.argtypes": "dlcamp.cli.argtypes",
    "dlcamp.basics": "dlcamp.course.basics",
    "dlcamp.compare": "dlcamp.course.compare",
    "dlcamp.convolution": "dlcamp.course.convolution",
    "dlcamp.data.text": "dlcamp.text.corpora",
    "dlcamp.doctor": "dlcamp.cli.doctor",
    "dlcamp.errors": "dlcamp.core.errors",
    "dlcamp.evaluate": "dlcamp.train.evaluate",
    "dlcamp.generate": ("dlcamp.text.generate", "dlcamp.train.checkpoint"),
    "dlcamp.lessons": "dlcamp.course.lessons",
    "dlcamp.lm": "dlcamp.course.lm",
    "dlcamp.plot": "dlcamp.course.plot",
    "dlcamp.scratch": "dlcamp.engine",
    "dlcamp.scratch.conv": "dlcamp.engine.conv",
    "dlcamp.scratch.nn": ("dlcamp.engine.nn", "dlcamp.engine.models"),
    "dlcamp.scratch.optim": "dlcamp.engine.optim",
    "dlcamp.scratch.tensor": "dlcamp.engine.tensor",
    "dlcamp.scratch.train": ("dlcamp.train.engine", "dlcamp.engine.models"),
    "dlcamp.slides": "dlcamp.course.slides",
    "dlcamp.utils": "dlcamp.core.utils",
}


class _Alias(importlib.abc.Loader):
    """Loads an old name as a module object whose attributes are those of the new module."""

    def __init__(self, new: str | tuple[str, ...]) -> None:
        self.new = (new,) if isinstance(new, str) else new

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return ModuleType(spec.name)

    def exec_module(self, module: ModuleType) -> None:
        warnings.warn(f"{module.__name__} moved to {' and '.join(self.new)}: import it from "
                      "there (the old name will be removed in a later release)", FutureWarning,
                      stacklevel=2)
        for new in reversed(self.new):  # the first home wins a name both have
            target = importlib.import_module(new)
            module.__dict__.update({k: v for k, v in vars(target).items()
                                    if not k.startswith("__") or k in ("__all__", "__doc__")})
            if hasattr(target, "__path__"):  # a package: `import dlcamp.scratch.nn` works too
                module.__path__ = []


class MovedModuleFinder(importlib.abc.MetaPathFinder):
    """Finds the old names in MOVED, and nothing else."""

    def find_spec(self, fullname: str, path: object = None,
                  target: object = None) -> importlib.machinery.ModuleSpec | None:
        new = MOVED.get(fullname)
        if new is None:
            return None
        package = any(old.startswith(fullname + ".") for old in MOVED)
        return importlib.util.spec_from_loader(fullname, _Alias(new), is_package=package)


def install() -> None:
    """Put the finder on sys.meta_path (once)."""
    if not any(isinstance(f, MovedModuleFinder) for f in sys.meta_path):
        sys.meta_path.append(MovedModuleFinder())
