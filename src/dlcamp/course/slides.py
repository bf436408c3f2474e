"""A lesson as reveal.js slides: one self-contained HTML file that opens offline.

Everything the page needs is inside the file: reveal.js itself (vendored under
dlcamp/course/assets/reveal, MIT), the styles, the code highlighted by Pygments on export, formulas
turned into MathML on export (browsers draw MathML natively, so no MathJax download), and, for
an executed lesson, its outputs with figures as data: URIs. Nothing is fetched from the network.

Slide boundaries come from each cell's `slideshow.slide_type`, as in Jupyter/RISE:
  slide     starts a new slide (left/right)
  subslide  starts a new slide below the current one (up/down)
  fragment  appears on the next key press, inside the current slide
  notes     speaker notes (press S for the speaker view)
  skip      left out
  - or none continues the current slide
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from dlcamp.core.errors import BadArgument

ASSET_DIR = "course/assets/reveal"
MAX_OUTPUT_LINES = 24
UNKNOWN_TEX = re.compile(r">(\\[A-Za-z]+)<")  # latex2mathml keeps unknown commands as text
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
REVEAL_CONFIG = {"hash": True, "width": 1280, "height": 800, "margin": 0.04, "center": False,
                 "slideNumber": "c/t", "transition": "fade", "controlsTutorial": False}

THEME_CSS = """
html, body { background: #fff; }
.reveal { font-family: system-ui, "Noto Sans CJK SC", "WenQuanYi Micro Hei", "PingFang SC",
  "Microsoft YaHei", sans-serif; font-size: 30px; color: #222; line-height: 1.45; }
.reveal .slides { text-align: left; }
.reveal .slides section:not(.stack) { height: 100%; overflow-y: auto; padding-right: 0.5em;
  box-sizing: border-box; }
.reveal h1, .reveal h2, .reveal h3 { color: #1f3b73; line-height: 1.2; margin: 0 0 0.5em; }
.reveal h1 { font-size: 1.9em; } .reveal h2 { font-size: 1.45em; } .reveal h3 { font-size: 1.15em; }
.reveal p, .reveal ul, .reveal ol { margin: 0 0 0.6em; }
.reveal li { margin: 0.15em 0; }
.reveal code { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace;
  font-size: 0.85em; background: #f2f4f8; padding: 0 0.2em; border-radius: 3px; }
.reveal pre { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace;
  font-size: 0.6em; line-height: 1.4; margin: 0.4em 0 0.8em; padding: 0.6em 0.8em;
  background: #f7f8fa; border: 1px solid #e3e6ec; border-radius: 6px; overflow-x: auto;
  white-space: pre; }
.reveal pre code { background: none; padding: 0; font-size: 1em; }
.reveal .highlight pre { background: #f7f8fa; }
.reveal .output pre, .reveal pre.output { background: #fff; border-style: dashed; }
.reveal pre.error { color: #a40000; background: #fff5f5; border-color: #f3c0c0; }
.reveal .output img { max-width: 100%; max-height: 520px; display: block; margin: 0.3em 0; }
.reveal table { border-collapse: collapse; font-size: 0.75em; margin: 0.4em 0 0.8em; }
.reveal th, .reveal td { border-bottom: 1px solid #d8dce4; padding: 0.2em 0.6em; }
.reveal math[display="block"] { margin: 0.5em 0; font-size: 1.1em; }
.lesson-tag { position: fixed; left: 1em; bottom: 0.7em; font: 13px system-ui, sans-serif;
  color: #8a93a6; z-index: 30; }
"""


@dataclass
class Slide:
    """One screen: rendered blocks in order, plus speaker notes."""
    blocks: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def html(self) -> str:
        notes = f'<aside class="notes">{"".join(self.notes)}</aside>' if self.notes else ""
        return f"<section>{''.join(self.blocks)}{notes}</section>"


def slide_type(cell: Any) -> str:
    return cell.get("metadata", {}).get("slideshow", {}).get("slide_type", "-") or "-"


def group_slides(cells: list[Any]) -> list[list[tuple[Any, str]]]:
    """Cells -> slides (left/right) -> subslides (up/down) -> [(cell, 'fragment'|'notes'|'')].

    The result is a list of horizontal slides, each a list of vertical subslides, each a list of
    (cell, role) pairs.
    """
    stacks: list[list[list[tuple[Any, str]]]] = []
    for cell in cells:
        kind = slide_type(cell)
        if kind == "skip":
            continue
        if kind == "slide" or not stacks:
            stacks.append([[]])
        elif kind == "subslide":
            stacks[-1].append([])
        role = kind if kind in ("fragment", "notes") else ""
        stacks[-1][-1].append((cell, role))
    return stacks


def _math(tex: str, options: dict[str, Any]) -> str:
    from latex2mathml.converter import convert

    try:
        mathml = convert(tex, display="block" if options.get("display_mode") else "inline")
    except Exception as e:  # latex2mathml raises its own exception types for bad TeX
        raise BadArgument(f"cannot turn the formula ${tex}$ into MathML "
                          f"({type(e).__name__} {e})".replace(" )", ")")) from e
    unknown = UNKNOWN_TEX.search(mathml)
    if unknown:
        raise BadArgument(f"the formula ${tex}$ uses {unknown.group(1)}, which has no MathML "
                          "form; write it another way")
    return mathml


def highlight_python(source: str, lang: str = "python") -> str:
    from pygments import highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import get_lexer_by_name
    from pygments.util import ClassNotFound

    try:
        lexer = get_lexer_by_name(lang or "text")
    except ClassNotFound:
        lexer = get_lexer_by_name("text")
    body = highlight(source, lexer, HtmlFormatter(nowrap=True))
    return f'<pre class="highlight"><code>{body}</code></pre>\n'



def markdown_renderer():
    """CommonMark + tables + $math$; raw HTML in the markdown is shown as text, not run."""
    from markdown_it import MarkdownIt
    from mdit_py_plugins.dollarmath import dollarmath_plugin

    md = MarkdownIt("commonmark", {"html": False, "highlight":
                                   lambda code, lang, _attrs: highlight_python(code, lang)})
    return md.enable("table").use(dollarmath_plugin, double_inline=True, renderer=_math)


def _clip(text: str) -> str:
    """At most MAX_OUTPUT_LINES lines: the head and the tail with a marker between."""
    lines = ANSI.sub("", text).rstrip("\n").split("\n")
    if len(lines) > MAX_OUTPUT_LINES:
        half = MAX_OUTPUT_LINES // 2
        lines = lines[:half] + [f"… ({len(lines) - 2 * half} lines left out) …"] + lines[-half:]
    return "\n".join(lines)


def render_output(output: Any) -> str:
    kind = output.get("output_type")
    if kind == "stream":
        return f'<pre class="output">{html.escape(_clip(output.get("text", "")))}</pre>'
    if kind == "error":
        text = f"{output.get('ename')}: {output.get('evalue')}"
        return f'<pre class="error">{html.escape(_clip(text))}</pre>'
    data = output.get("data", {})
    if "image/png" in data:
        png = "".join(data["image/png"]).replace("\n", "")
        return f'<div class="output"><img alt="figure" src="data:image/png;base64,{png}"></div>'
    if "image/svg+xml" in data:
        return f'<div class="output">{"".join(data["image/svg+xml"])}</div>'
    if "text/html" in data:
        return f'<div class="output">{"".join(data["text/html"])}</div>'
    if "text/plain" in data:
        text = "".join(data["text/plain"])
        return f'<pre class="output">{html.escape(_clip(text))}</pre>'
    return ""


def render_cell(cell: Any, md) -> str:
    source = cell.get("source", "")
    if cell.get("cell_type") == "markdown":
        return md.render(source)
    if cell.get("cell_type") != "code":
        return f"<pre>{html.escape(source)}</pre>"
    parts = [highlight_python(source)] if source.strip() else []
    parts += [render_output(o) for o in cell.get("outputs", [])]
    return "".join(parts)


def render_slides(cells: list[Any]) -> str:
    """The <section> elements for reveal.js."""
    md = markdown_renderer()
    sections = []
    for stack in group_slides(cells):
        screens = []
        for sub in stack:
            slide = Slide()
            for cell, role in sub:
                body = render_cell(cell, md)
                if role == "notes":
                    slide.notes.append(body)
                elif role == "fragment":
                    slide.blocks.append(f'<div class="fragment">{body}</div>')
                elif body:
                    slide.blocks.append(body)
            screens.append(slide.html())
        sections.append(screens[0] if len(screens) == 1 else
                        f"<section>{''.join(screens)}</section>")
    return "\n".join(sections)


def asset(name: str) -> str:
    return (resources.files("dlcamp") / ASSET_DIR / name).read_text(encoding="utf-8")


def _inline_script(js: str) -> str:
    return "<script>" + js.replace("</script", "<\\/script") + "</script>"


def slides_html(cells: list[Any], title: str, tag: str = "") -> str:
    """A complete, self-contained reveal.js page for these notebook cells."""
    from pygments.formatters import HtmlFormatter

    styles = "\n".join([asset("reset.css"), asset("reveal.css"), THEME_CSS,
                        HtmlFormatter().get_style_defs(".highlight")])
    config = json.dumps(REVEAL_CONFIG)
    tag_html = f'<div class="lesson-tag">{html.escape(tag)}</div>' if tag else ""
    return "\n".join([
        "<!doctype html>",
        '<html lang="zh-CN"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{styles}</style></head><body>",
        f'<div class="reveal"><div class="slides">{render_slides(cells)}</div></div>{tag_html}',
        _inline_script(asset("reveal.js")),
        _inline_script(asset("notes.js")),
        _inline_script(f"Reveal.initialize(Object.assign({config}, {{plugins: [RevealNotes]}}));"),
        "</body></html>",
    ])


def index_html(entries: list[tuple[str, str]], title: str = "dlcamp lessons") -> str:
    """A plain page linking exported slides: entries are (relative href, label)."""
    items = "\n".join(f'<li><a href="{html.escape(href)}">{html.escape(label)}</a></li>'
                      for href, label in entries)
    return (f'<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
            f"<title>{html.escape(title)}</title><style>body{{font-family:system-ui,sans-serif;"
            f"max-width:48em;margin:2em auto;line-height:1.6}}</style></head><body>"
            f"<h1>{html.escape(title)}</h1><ul>{items}</ul></body></html>")
