"""The package's layers (docs/architecture.md): every import in src/dlcamp points down.

Each subpackage has a layer; a module may import its own subpackage and any lower layer, never
a higher one or another subpackage of its own layer. Imports inside functions count as well
(a lazy import cannot dodge a cycle), and the modules' import graph has no cycle.
"""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

import pytest

from dlcamp.core.moved import MOVED, MovedModuleFinder

SRC = Path(__file__).resolve().parents[1] / "src" / "dlcamp"

# Bottom to top. Keep in step with the table in docs/architecture.md.
LAYERS = {
    "core": 0,
    "data": 1, "engine": 1,
    "text": 2, "vision": 2,
    "models": 3,
    "train": 4,
    "serve": 5, "course": 5, "camp": 5,
    "cli": 6,
}
TOP = {"__init__": -1, "__main__": 7}  # dlcamp/__init__ (version, core.moved): under all


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> list[tuple[str, int]]:
    """(imported dlcamp module, line) for every import statement in the file."""
    tree = ast.parse(path.read_text(), str(path))
    package = module_name(path)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names if a.name.split(".")[0] == "dlcamp"]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            if base.split(".")[0] != "dlcamp":
                continue
            for alias in node.names:  # `from dlcamp.text import vocab` imports a module
                sub = f"{base}.{alias.name}"
                found.append((sub if module_path(sub) else base, node.lineno))
    return found


def module_path(name: str) -> Path | None:
    rel = Path(*name.split(".")[1:])
    for candidate in (SRC / rel.with_suffix(".py"), SRC / rel / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def layer(name: str) -> tuple[str, int]:
    """(subpackage, layer) of a dotted dlcamp module name."""
    parts = name.split(".")
    if len(parts) == 1:
        return "dlcamp", TOP["__init__"]
    if parts[1] in LAYERS:
        return parts[1], LAYERS[parts[1]]
    if parts[1] in TOP:
        return parts[1], TOP[parts[1]]
    raise KeyError(f"{name}: not in a known layer; add its folder to LAYERS here and to "
                   "docs/architecture.md")


def all_modules() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def test_every_module_is_in_a_layer_and_the_top_level_is_empty():
    assert {t for t, _ in imports_of(SRC / "__init__.py")} <= {"dlcamp.core.moved"}
    loose = [p.name for p in SRC.glob("*.py") if p.stem not in TOP]
    assert not loose, f"modules loose in dlcamp/: {loose}; give each a folder"
    for path in all_modules():
        layer(module_name(path))


def upward_imports() -> list[str]:
    bad = []
    for path in all_modules():
        me = module_name(path)
        my_pkg, my_layer = layer(me)
        for target, line in imports_of(path):
            pkg, lay = layer(target)
            if pkg == my_pkg or me == "dlcamp":
                continue
            if lay >= my_layer:
                bad.append(f"{path.relative_to(SRC)}:{line} ({my_pkg}, layer {my_layer}) "
                           f"imports {target} ({pkg}, layer {lay})")
    return bad


def test_imports_point_down():
    assert upward_imports() == []


def test_no_import_cycles():
    graph = {module_name(p): {t for t, _ in imports_of(p)} for p in all_modules()}
    # a package's __init__ re-exports its modules: an edge into a package means its __init__
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if nxt == node or nxt not in graph or node.startswith(nxt + "."):
                continue  # a module importing its own package's __init__ is Python's norm
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == []


def test_the_check_catches_an_upward_import(tmp_path, monkeypatch):
    """A models/ module importing train/ (the old RNNLM.task) is reported."""
    fake = tmp_path / "dlcamp"
    for pkg in ("models", "train"):
        (fake / pkg).mkdir(parents=True)
        (fake / pkg / "__init__.py").write_text("")
    (fake / "__init__.py").write_text("")
    (fake / "train" / "task.py").write_text("X = 1\n")
    (fake / "models" / "rnn.py").write_text("def f():\n    from dlcamp.train.task import X\n")
    monkeypatch.setattr(sys.modules[__name__], "SRC", fake)
    assert [b.split(" ")[0] for b in upward_imports()] == ["models/rnn.py:2"]


def test_modules_stay_readable():
    """≈100-350 lines a module (docs/architecture.md); this catches the ones far past it."""
    big = {str(p.relative_to(SRC)): n for p in all_modules()
           if (n := len(p.read_text().splitlines())) > 450}
    assert big == {}


@pytest.mark.parametrize("old", sorted(MOVED))
def test_old_module_paths_import_with_a_warning(old):
    """Code written against the old layout keeps working and is told the new path."""
    for name in [n for n in sys.modules if n == old or n.startswith(old + ".")]:
        del sys.modules[name]
    homes = (MOVED[old],) if isinstance(MOVED[old], str) else MOVED[old]
    with pytest.warns(FutureWarning, match=f"{old} moved to {' and '.join(homes)}"):
        module = importlib.import_module(old)
    for home in homes:
        new = importlib.import_module(home)
        public = [k for k in vars(new) if not k.startswith("_")]
        assert public and all(hasattr(module, k) for k in public)
        assert module_path(home) is not None
    assert module_path(old) is None


# Public names of moved modules that code written before the move imported (a frozen list).
OLD_NAMES = {
    "dlcamp.scratch.train": ["ScratchTrainer", "create_scratch_model"],
    "dlcamp.scratch.nn": ["MODELS", "Linear", "Sequential", "manual_seed"],
    "dlcamp.generate": ["generate", "generate_poem", "load_language_model"],
    "dlcamp.data.text": ["load_corpus", "list_corpora", "corpus_text", "CORPORA"],
    "dlcamp.compare": ["compare_models", "lesson_run", "shape_table", "count_flops"],
}


@pytest.mark.parametrize("old", sorted(OLD_NAMES))
def test_old_paths_keep_their_names(old):
    for name in [n for n in sys.modules if n == old or n.startswith(old + ".")]:
        del sys.modules[name]
    with pytest.warns(FutureWarning):
        module = importlib.import_module(old)
    assert [n for n in OLD_NAMES[old] if not hasattr(module, n)] == []


def test_moved_names_are_not_found_by_the_finder_otherwise():
    assert MovedModuleFinder().find_spec("dlcamp.course.compare") is None
