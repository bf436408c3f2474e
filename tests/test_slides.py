"""Lessons as reveal.js slides: structure from cell metadata, self-contained, offline."""

from __future__ import annotations

import re
import subprocess
import sys
from html.parser import HTMLParser

import nbformat
import pytest

from dlcamp.core.errors import BadArgument
from dlcamp.course.lessons import export_lesson, find_lesson, list_lessons, read_notebook
from dlcamp.course.slides import MAX_OUTPUT_LINES, group_slides, render_output, slides_html

# Anything a page would fetch from the network: src/href to http(s) or //host, CSS imports/urls.
REMOTE = re.compile(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//"""
                    r"""|@import|url\(\s*["']?(?:https?:)?//""", re.IGNORECASE)


class SectionCounter(HTMLParser):
    """Counts <section> elements by nesting depth (1: left/right slides, 2: up/down)."""

    def __init__(self):
        super().__init__()
        self.depth, self.counts, self.scripts = 0, {}, 0

    def handle_starttag(self, tag, attrs):
        if tag == "section":
            self.depth += 1
            self.counts[self.depth] = self.counts.get(self.depth, 0) + 1
        self.scripts += tag == "script"

    def handle_endtag(self, tag):
        self.depth -= tag == "section"


def sections(page: str) -> SectionCounter:
    parser = SectionCounter()
    parser.feed(page)
    return parser


def cell(kind: str, source: str, slide_type: str | None = None):
    make = nbformat.v4.new_markdown_cell if kind == "md" else nbformat.v4.new_code_cell
    c = make(source)
    if slide_type:
        c.metadata["slideshow"] = {"slide_type": slide_type}
    return c


def test_cells_group_into_slides_subslides_fragments_notes():
    cells = [cell("md", "# A", "slide"), cell("code", "x = 1"), cell("md", "more", "fragment"),
             cell("md", "## A.1", "subslide"), cell("md", "zzskippedzz", "skip"),
             cell("md", "say this", "notes"), cell("md", "# B", "slide")]
    stacks = group_slides(cells)
    assert [[len(sub) for sub in stack] for stack in stacks] == [[3, 2], [1]]
    assert [role for _, role in stacks[0][0]] == ["", "", "fragment"]
    assert stacks[0][1][1][1] == "notes"
    page = slides_html(cells, "t")
    counts = sections(page).counts
    assert counts == {1: 2, 2: 2}  # two slides; the first holds two subslides
    assert 'class="fragment"' in page and '<aside class="notes"><p>say this</p>' in page
    assert "zzskippedzz" not in page


def test_markdown_math_code_and_raw_html():
    cells = [cell("md", "# 标题\n\n$y = \\mathbf{x}^\\top \\mathbf{w}$ and\n\n$$\\frac{a}{b}$$\n\n"
                        "<script>alert(1)</script>\n\n| a | b |\n|---|---|\n| 1 | 2 |", "slide"),
             cell("code", "def f(x):\n    return x  # note")]
    page = slides_html(cells, "t")
    assert page.count("<math") == 2 and 'display="block"' in page
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;" in page
    assert "<table>" in page
    assert '<pre class="highlight">' in page and '<span class="k">def</span>' in page


def test_bad_formula_is_a_clear_error():
    for tex in ("\\frac{1}{", "\\notacommand x"):
        with pytest.raises(BadArgument, match="formula"):
            slides_html([cell("md", f"${tex}$", "slide")], "t")


def test_long_outputs_are_clipped_and_images_inlined():
    text = "".join(f"line {i}\n" for i in range(100))
    out = render_output(nbformat.v4.new_output("stream", name="stdout", text=text))
    assert "line 0" in out and "line 99" in out and "line 50" not in out
    assert out.count("\n") <= MAX_OUTPUT_LINES + 1 and "left out" in out
    png = nbformat.v4.new_output("display_data", data={"image/png": "iVBORw0KGgo=\n"})
    assert 'src="data:image/png;base64,iVBORw0KGgo="' in render_output(png)
    err = render_output(nbformat.v4.new_output("error", ename="ValueError", evalue="bad",
                                               traceback=[]))
    assert 'class="error"' in err and "ValueError: bad" in err


@pytest.mark.parametrize("lesson", list_lessons(), ids=lambda lesson: lesson.id)
def test_every_lesson_exports_to_offline_slides(lesson, tmp_path):
    path = export_lesson(lesson, tmp_path, to="slides")
    page = path.read_text(encoding="utf-8")
    assert path.name.endswith(".slides.html") and page.startswith("<!doctype html>")
    assert not REMOTE.search(page), REMOTE.search(page)
    assert "Reveal.initialize(" in page and "RevealNotes" in page
    counter = sections(page)
    slide_cells = [c for c in read_notebook(lesson).cells
                   if c.metadata.get("slideshow", {}).get("slide_type") == "slide"]
    assert counter.counts.get(1) == len(slide_cells) > 1
    assert counter.depth == 0 and counter.scripts == 3  # reveal, notes plugin, initialise
    body = page[page.index('<div class="slides">'):page.index("<script>")]
    prose = re.sub(r"<pre.*?</pre>|<code>.*?</code>|<math.*?</math>", "", body, flags=re.S)
    assert "$" not in prose, "a formula was left as raw TeX"


def test_executed_slides_carry_outputs_and_figures(tmp_path, monkeypatch):
    monkeypatch.setenv("DLCAMP_QUIET", "1")
    page = export_lesson(find_lesson("1.05"), tmp_path, to="slides", execute=True).read_text()
    assert 'src="data:image/png;base64,' in page  # the grid of labelled images
    assert '<pre class="output">' in page and not REMOTE.search(page)


def test_cli_exports_slides_with_an_index(tmp_path):
    out = tmp_path / "slides"
    result = subprocess.run([sys.executable, "-m", "dlcamp", "lessons", "export", "1.02",
                             "--to", "slides", "--out", str(out)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    index = (out / "index.html").read_text()
    assert 'href="part1/02-autograd.slides.html"' in index and "1.02" in index
    assert (out / "part1" / "02-autograd.slides.html").stat().st_mode & 0o044  # readable by all
    bad = subprocess.run([sys.executable, "-m", "dlcamp", "lessons", "export", "--to", "pdf"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "slides" in bad.stderr
