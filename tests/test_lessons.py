"""Every lesson runs once in quick mode, as a notebook through a real Jupyter kernel.

The kernel executes the same cells top to bottom that `python lessons/.../NN-slug.py` runs,
so a lesson that passes here also runs as a script; `dlcamp lessons run` is tested once below.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from dlcamp.core.errors import UnknownName
from dlcamp.course.lessons import execute_notebook, export_lesson, find_lesson, list_lessons

LESSONS = list_lessons()
QUICK_ENV = {**os.environ, "DLCAMP_QUICK": "1", "MPLBACKEND": "Agg", "DLCAMP_QUIET": "1"}


def test_lessons_are_found_in_order_with_metadata():
    assert LESSONS, "no lessons found under lessons/"
    ids = [lesson.id for lesson in LESSONS]
    order = [tuple(map(int, i.split("."))) for i in ids]  # numeric: lesson 10.01 after 4.10
    assert order == sorted(order) and ids[0] == "1.01" and len(set(ids)) == len(ids)
    for lesson in LESSONS:
        assert lesson.title != lesson.slug and lesson.title_en, f"{lesson.path}: no title"
        assert 0 < lesson.minutes_quick <= lesson.minutes_full


def test_find_lesson_by_id_slug_and_name():
    first = LESSONS[0]
    for key in ("1.01", "1.1", first.slug, first.path.name):
        assert find_lesson(key) == first
    with pytest.raises(UnknownName, match="dlcamp lessons list"):
        find_lesson("9.99")


@pytest.mark.parametrize("lesson", LESSONS, ids=[lesson.id for lesson in LESSONS])
def test_lesson_runs_as_a_notebook(lesson, tmp_path):
    """Exported to .ipynb and run through a real kernel, with figures inline as in JupyterLab."""
    import nbformat

    path = export_lesson(lesson, tmp_path)
    notebook = execute_notebook(nbformat.read(path, as_version=4), lesson.path.parent, quick=True)
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]


def test_cli_lists_and_runs_a_lesson():
    out = subprocess.run([sys.executable, "-m", "dlcamp", "lessons", "list"], capture_output=True,
                         text=True, env=QUICK_ENV, check=True).stdout
    assert "1.01" in out and "张量" in out
    result = subprocess.run([sys.executable, "-m", "dlcamp", "lessons", "run", "1.01", "--quick"],
                            capture_output=True, text=True, env=QUICK_ENV)
    assert result.returncode == 0 and "lesson 1.01 done" in result.stdout
