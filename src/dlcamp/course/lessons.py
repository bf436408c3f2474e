"""The lessons: jupytext percent-format scripts under lessons/<part>/NN-slug.py.

Each lesson file is the source of truth. Its header carries dlcamp metadata:

    # ---
    # jupyter:
    #   dlcamp:
    #     title: 张量（tensor）
    #     title_en: Tensors
    #     minutes: {quick: 0.1, full: 1}
    # ---

`dlcamp lessons list|run|export` find, run (as scripts, quick mode with --quick) and export
them (to .ipynb for Jupyter, or to reveal.js slides that open offline: dlcamp.course.slides). Slide
boundaries are cell metadata (slideshow.slide_type).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from dlcamp.core.errors import BadArgument, UnknownName
from dlcamp.core.io import atomic_write_bytes
from dlcamp.core.registry import unknown_name

LESSON_FILE = re.compile(r"^(\d\d)-([a-z0-9-]+)\.py$")
PART_DIR = re.compile(r"^part(\d+)$")


def lessons_root() -> Path:
    """$DLCAMP_LESSONS, else the lessons/ folder of the source checkout."""
    if os.environ.get("DLCAMP_LESSONS"):
        return Path(os.environ["DLCAMP_LESSONS"])
    return Path(__file__).resolve().parents[3] / "lessons"  # src/dlcamp/course/ -> the checkout


@dataclass(frozen=True)
class Lesson:
    part: int
    number: int
    slug: str
    path: Path
    title: str
    title_en: str
    minutes_quick: float
    minutes_full: float

    @property
    def id(self) -> str:
        return f"{self.part}.{self.number:02d}"


def read_metadata(path: Path) -> dict:
    import jupytext

    return jupytext.read(path).metadata.get("dlcamp", {})


def list_lessons(root: Path | None = None) -> list[Lesson]:
    root = root or lessons_root()
    found = []
    for part_dir in sorted(root.glob("part*")):
        part = PART_DIR.match(part_dir.name)
        if not part:
            continue
        for path in sorted(part_dir.glob("*.py")):
            m = LESSON_FILE.match(path.name)
            if not m:
                continue
            meta = read_metadata(path)
            minutes = meta.get("minutes", {})
            found.append(Lesson(int(part.group(1)), int(m.group(1)), m.group(2), path,
                                meta.get("title", m.group(2)), meta.get("title_en", m.group(2)),
                                float(minutes.get("quick", 0)), float(minutes.get("full", 0))))
    return sorted(found, key=lambda lesson: (lesson.part, lesson.number))


def find_lesson(key: str, root: Path | None = None) -> Lesson:
    """By id ('1.01' or '1.1'), by slug ('tensors') or by file name."""
    lessons = list_lessons(root)
    for lesson in lessons:
        part, _, number = key.partition(".")
        if number.isdigit() and part.isdigit() and \
                (int(part), int(number)) == (lesson.part, lesson.number):
            return lesson
        if key in (lesson.slug, lesson.path.name, lesson.path.stem):
            return lesson
    raise unknown_name("lesson", key, [lesson.slug for lesson in lessons],
                       "Ids (1.01) and file names work too; `dlcamp lessons list` shows them.")


def run_lesson(lesson: Lesson, quick: bool = True, timeout: float | None = None
               ) -> subprocess.CompletedProcess:
    """Run a lesson as a plain script, headless, in its own folder; output goes to the terminal."""
    env = {**os.environ, "MPLBACKEND": "Agg", "DLCAMP_QUIET": os.environ.get("DLCAMP_QUIET", "1")}
    if quick:
        env["DLCAMP_QUICK"] = "1"
    return subprocess.run([sys.executable, str(lesson.path)], env=env, cwd=lesson.path.parent,
                          timeout=timeout)


EXPORT_FORMATS = ("ipynb", "slides")


def read_notebook(lesson: Lesson):
    """The lesson as a standalone nbformat notebook (outputs empty), python3 kernelspec."""
    import jupytext

    notebook = jupytext.read(lesson.path)
    # The export is a standalone copy: jupytext's pairing ("formats: py:percent") would make
    # JupyterLab's jupytext extension refuse to open the .ipynb (a 500 on /api/contents).
    notebook.metadata.pop("jupytext", None)
    notebook.metadata.setdefault("kernelspec", {"name": "python3", "display_name": "Python 3",
                                                "language": "python"})
    return notebook


def execute_notebook(notebook, cwd: Path, quick: bool = True, timeout: float = 300,
                     env: dict[str, str] | None = None):
    """Run every cell through a real Jupyter kernel (in `cwd`), in place; returns the notebook.

    The kernel gets DLCAMP_QUICK=1 in quick mode and no progress bars; figures come back
    inline as they do in JupyterLab. A failing cell raises nbclient's CellExecutionError.
    """
    import nbclient

    kernel_env = {**os.environ, "DLCAMP_QUIET": "1", **(env or {})}
    kernel_env.pop("MPLBACKEND", None)
    if quick:
        kernel_env["DLCAMP_QUICK"] = "1"
    else:
        kernel_env.pop("DLCAMP_QUICK", None)
    client = nbclient.NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                                     resources={"metadata": {"path": str(cwd)}})
    client.execute(env=kernel_env)
    return notebook


def export_lesson(lesson: Lesson, out_dir: Path, to: str = "ipynb", execute: bool = False,
                  quick: bool = True) -> Path:
    """Write the lesson into out_dir/part<N>/: a notebook (.ipynb) or slides (.slides.html).

    With `execute`, the cells run first (quick mode unless quick=False), so the notebook or the
    slides carry their outputs and figures.
    """
    if to not in EXPORT_FORMATS:
        raise UnknownName(f"cannot export to {to!r}; choose {' or '.join(EXPORT_FORMATS)}")
    notebook = read_notebook(lesson)
    if execute:
        execute_notebook(notebook, lesson.path.parent, quick=quick)
    suffix = ".ipynb" if to == "ipynb" else ".slides.html"
    target = out_dir / f"part{lesson.part}" / f"{lesson.path.stem}{suffix}"
    target.parent.mkdir(parents=True, exist_ok=True)
    if to == "ipynb":
        import nbformat

        data = nbformat.writes(notebook).encode("utf-8")
    else:
        from dlcamp.course.slides import slides_html

        tag = f"dlcamp {lesson.id} · {lesson.title_en}"
        try:
            page = slides_html(notebook.cells, f"{lesson.id} {lesson.title}", tag)
        except BadArgument as e:
            raise BadArgument(f"{lesson.path.name}: {e}") from e
        data = page.encode("utf-8")
    atomic_write_bytes(target, data)
    return target


def write_slides_index(out_dir: Path) -> Path:
    """out_dir/index.html linking every slide deck exported there so far, in lesson order."""
    from dlcamp.course.slides import index_html

    entries = []
    for lesson in list_lessons():
        path = out_dir / f"part{lesson.part}" / f"{lesson.path.stem}.slides.html"
        if path.exists():
            entries.append((path.relative_to(out_dir).as_posix(), f"{lesson.id}  {lesson.title}"))
    target = out_dir / "index.html"
    atomic_write_bytes(target, index_html(entries).encode("utf-8"))
    return target
