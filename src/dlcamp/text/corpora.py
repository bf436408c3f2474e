"""Text corpora that work offline: Chinese poems and sayings, English quotations.

They come from Debian's fortune-cookie packages, which install plain-text files into
/usr/share/games/fortunes. A file holds records separated by lines holding only `%`.

| name       | source file(s)                  | Debian package | what                        |
|------------|---------------------------------|----------------|-----------------------------|
| tang300    | tang300                         | fortunes-zh    | 313 poems of 唐诗三百首       |
| song100    | song100                         | fortunes-zh    | 96 Song-dynasty poems         |
| sayings-zh | chinese                         | fortunes-zh    | Chinese sayings, verse, quotes |
| quotes-en  | 42 English files (art ... zippy) | fortunes       | English quotations and jokes  |

One more corpus, "tang" (57,607 poems of 全唐诗 in simplified script), comes from the npm
package chinese-poetry 2.0.1, not from a fortune file: `dlcamp.text.poetry` finds, verifies,
cleans and converts it; duplicates and the split are handled here, as for the others.

Cleaning, so that a language model sees text and not markup:
- ANSI colour codes (`\\x1b[32m ... \\x1b[m`, used by fortunes-zh) and control characters
  (bells, backspaces) are removed; runs of whitespace inside a line become one space.
- Titles (`《静夜思》`, `题目:《...》`) and authors (`作者：李白`) go to `title` / `author`;
  attributions (`\\t\\t-- Mark Twain`, `    -- 罗隐《西施》`) go to `author` (and `title`).
- `sayings-zh` keeps the records that are mostly Chinese text: the `chinese` file also holds
  sections of the Debian reference manual, command tables and code, which are dropped.
- Exact duplicate bodies are kept once, so the same quote is never in both train and val.

Splits: 10% of the records (at least one) are `val`, the rest `train`. A record's split is
decided by a hash of its text, not by a random generator, so it is the same on every machine,
with every library version, and stays put when a package update adds or removes records.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dlcamp.core.errors import DatasetCorrupt, DatasetNotFound, UnknownName
from dlcamp.core.registry import Registry
from dlcamp.data import files
from dlcamp.text.poetry import TANG_FILES, how_to_get_tang, locate_tang, read_tang

FORTUNE_SYSTEM_DIR = Path("/usr/share/games/fortunes")  # where Debian installs fortune files
SPLITS = ("train", "val", "all")
VAL_FRACTION = 0.1

# The English files of Debian's `fortunes` (and `fortunes-min`, which it depends on).
# `ascii-art` is left out: its records are drawings, not sentences.
ENGLISH_FILES = (
    "art", "computers", "cookie", "debian", "definitions", "disclaimer", "drugs",
    "education", "ethnic", "food", "fortunes", "goedel", "humorists", "kids", "knghtbrd",
    "law", "linux", "linuxcookie", "literature", "love", "magic", "medicine", "men-women",
    "miscellaneous", "news", "paradoxum", "people", "perl", "pets", "platitudes", "politics",
    "pratchett", "riddles", "science", "songs-poems", "sports", "startrek", "tao",
    "translate-me", "wisdom", "work", "zippy",
)


@dataclass(frozen=True)
class TextRecord:
    """One record of a corpus: a poem, a saying or a quotation, cleaned."""

    title: str
    author: str
    lines: tuple[str, ...]  # the body: stripped, non-empty, no markup, no attribution

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


# --- cleaning and splitting a fortune file ------------------------------------------------

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")  # terminal colour codes: ESC [ 32 m
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # control characters except \t and \n
SEPARATOR = re.compile(r"^%[ \t]*$", re.MULTILINE)  # song100 has one "%    "


def clean_line(line: str) -> str:
    """One space between words, none around: also turns \\xa0 and the ideographic space \\u3000
    (both Unicode whitespace) into plain spaces."""
    return " ".join(line.split())


def split_records(text: str, source: str, fix: str = "") -> list[str]:
    """The raw records of a fortune file (colour codes and control characters removed)."""
    text = text.replace("\r\n", "\n")
    if not SEPARATOR.search(text):
        raise DatasetCorrupt(f"{source} is not a fortune file: no line holds only '%' to "
                             f"separate its records. {fix}".rstrip())
    text = CONTROL.sub("", ANSI.sub("", text))
    return [r for r in SEPARATOR.split(text) if r.strip()]


# --- parsers: raw record -> TextRecord (or None to drop it) ------------------------------

ZH_TITLE = re.compile(r"^(?:题目[:：])?《(.*?)》(.*)$")  # 《静夜思》 or 题目:《春居杂兴》二首
ZH_AUTHOR = re.compile(r"^作者[:：](.*)$")  # 作者：李白 or 作者:苏轼（１０３６－１１０１）
ZH_PART = re.compile(r"^其[一二三四五六七八九十]+$")  # 其一, 其二: parts of a group of poems
DASH = re.compile(r"^\s*--\s*(\S.*)$")  # an attribution line: "\t\t-- Mark Twain"


def parse_poem(raw: str, source: str) -> TextRecord | None:
    """tang300 / song100: a title line, an author line, then the poem."""
    lines = [clean_line(x) for x in raw.split("\n")]
    lines = [x for x in lines if x]
    title = author = ""
    if lines and (m := ZH_TITLE.match(lines[0])):
        title = (m.group(1) + m.group(2)).strip()
        lines = lines[1:]
    if lines and (m := ZH_AUTHOR.match(lines[0])):
        # Drop the life dates in full-width brackets: 苏轼（１０３６－１１０１） -> 苏轼
        author = re.sub(r"（.*）$", "", m.group(1)).strip()
        lines = lines[1:]
    body = tuple(x for x in lines if not ZH_PART.match(x))
    return TextRecord(title, author, body) if body else None


def _attribution(source_line: str) -> tuple[str, str]:
    """'罗隐《西施》' -> (title '西施', author '罗隐'); '《道德经》' -> ('道德经', '')."""
    m = re.search(r"《(.*?)》(.*)$", source_line)
    if m is None:
        return "", source_line
    return (m.group(1) + m.group(2)).strip(), source_line[: m.start()].strip()


def _is_saying(lines: list[str]) -> bool:
    """Mostly Chinese text, no box-drawing table, not a numbered manual section ("9.6. ...")."""
    chars = "".join(lines).replace(" ", "")
    cjk = sum("\u4e00" <= c <= "\u9fff" for c in chars)
    return (cjk >= 0.5 * len(chars) and not re.search(r"[\u2500-\u257f]", chars)
            and not re.match(r"\d+(\.\d+)*\.?\s", lines[0]))


def parse_saying(raw: str, source: str) -> TextRecord | None:
    """chinese: free text, usually ending with an attribution line `    -- 作者《出处》`."""
    lines = raw.split("\n")
    cut = next((i for i, x in enumerate(lines) if DASH.match(x)), len(lines))
    title = author = ""
    if cut < len(lines):  # the attribution may continue on the following lines
        source_line = clean_line(" ".join([DASH.match(lines[cut]).group(1)] + lines[cut + 1:]))
        title, author = _attribution(source_line)
    body = [x for x in (clean_line(y) for y in lines[:cut]) if x]
    return TextRecord(title, author, tuple(body)) if body and _is_saying(body) else None


def _attribution_end(lines: list[str], i: int) -> int | None:
    """If line i starts an attribution, the index of the first line after it; else None.

    Two styles: `\t\t-- Author` (indented), continued on the indented lines below it; and,
    in the `cookie` file, `-- Author` at the start of a line, closing a paragraph of text and
    continued on at most two more lines. Lines starting with `--` are text otherwise:
    "-- he hates all critics" goes on a sentence, `-- item` lines make a list, and zippy's
    `-- I have seen the FUN --` is a whole record.
    """
    line = lines[i]
    m = DASH.match(line)
    if m is None or line.rstrip().endswith("--"):
        return None
    j = i + 1
    if line[:1] in " \t":
        while j < len(lines) and lines[j][:1] in " \t" and lines[j].strip() \
                and not DASH.match(lines[j]):
            j += 1
        return j
    while j < len(lines) and lines[j].strip():  # the rest of the paragraph
        j += 1
    previous = lines[i - 1] if i else ""
    closes_text = bool(previous.strip()) and not DASH.match(previous)
    looks_like_name = m.group(1)[0].isupper() or m.group(1)[0] in "\"'"
    short = j - i <= 3 and not any(DASH.match(x) for x in lines[i + 1 : j])
    return j if closes_text and looks_like_name and short else None


def parse_quote(raw: str, source: str) -> TextRecord | None:
    """English fortunes: text, then (possibly several) `-- Author` attributions.

    The title is the name of the file the quote comes from (its topic: art, computers, ...);
    the author is the attribution(s), joined with "; ".
    """
    lines = raw.strip("\n").split("\n")
    body, authors, i = [], [], 0
    while i < len(lines):
        end = _attribution_end(lines, i)
        if end is None:
            body.append(clean_line(lines[i]))
            i += 1
        else:
            first = DASH.match(lines[i]).group(1)
            authors.append(clean_line(" ".join([first, *lines[i + 1 : end]])))
            i = end
    body = [x for x in body if x]
    return TextRecord(Path(source).name, "; ".join(authors), tuple(body)) if body else None


# --- the registry ------------------------------------------------------------------------

Parser = Callable[[str, str], "TextRecord | None"]
Reader = Callable[[list[Path]], list[tuple[str, str, tuple[str, ...]]]]


@dataclass(frozen=True)
class CorpusSpec:
    name: str
    description: str
    package: str  # the Debian package that installs the files
    files: tuple[str, ...]
    parse: Parser | None
    joiner: str  # how corpus_text joins a record's lines: "" for Chinese, " " for English
    # A corpus not made of fortune files: its own finder, reader (-> (title, author, lines))
    # and fix; `parse` is then None.
    locate: Callable[[], list[Path]] | None = None
    read: Reader | None = None
    fix: Callable[[], str] | None = None

    @property
    def how_to_get(self) -> str:
        if self.fix is not None:
            return self.fix()
        return (f"Fix: `sudo apt-get install {self.package}` (Debian/Ubuntu), or set "
                "DLCAMP_DATA to a folder holding the file(s) (directly or in `fortunes/`).")


CORPORA: Registry[CorpusSpec] = Registry("text corpus", [(spec.name, spec) for spec in (
    CorpusSpec("tang300", "300 Tang poems (唐诗三百首), one poem per record",
               "fortunes-zh", ("tang300",), parse_poem, ""),
    CorpusSpec("song100", "Song-dynasty poems (宋诗), one poem per record",
               "fortunes-zh", ("song100",), parse_poem, ""),
    CorpusSpec("sayings-zh", "Chinese sayings, proverbs, verse and quotations",
               "fortunes-zh", ("chinese",), parse_saying, ""),
    CorpusSpec("quotes-en", "English quotations, jokes and definitions",
               "fortunes", ENGLISH_FILES, parse_quote, " "),
    CorpusSpec("tang", "全唐诗: 56,437 distinct Tang poems, simplified script, one per record",
               "npm chinese-poetry 2.0.1", tuple(TANG_FILES), None, "",
               locate=locate_tang, read=read_tang, fix=how_to_get_tang),
)])


def list_corpora() -> list[str]:
    """The names of all text corpora, sorted."""
    return CORPORA.names()


def get_corpus_spec(name: str) -> CorpusSpec:
    """The spec of text corpus `name`; UnknownName (suggesting close names) otherwise."""
    return CORPORA.get(name)


# --- locating, parsing, splitting --------------------------------------------------------

def fortune_dirs() -> list[Path]:
    """Where fortune files are looked for, in order: $DLCAMP_DATA/fortunes, $DLCAMP_DATA,
    dlcamp's cache, then the system folder ($DLCAMP_SYSTEM_DATA/fortunes when that variable
    is set, as in the tests; else Debian's /usr/share/games/fortunes)."""
    dirs = []
    if os.environ.get("DLCAMP_DATA"):
        root = Path(os.environ["DLCAMP_DATA"])
        dirs += [root / "fortunes", root]
    dirs.append(files.cache_dir() / "fortunes")
    system = os.environ.get("DLCAMP_SYSTEM_DATA")
    dirs.append(Path(system) / "fortunes" if system else FORTUNE_SYSTEM_DIR)
    return dirs


def locate_corpus(name: str) -> list[Path]:
    """The files of corpus `name` (each `stem` or `stem.gz`), or DatasetNotFound naming the fix."""
    spec = get_corpus_spec(name)
    if spec.locate is not None:
        return spec.locate()
    dirs = fortune_dirs()
    found = {stem: files.find_file(dirs, stem) for stem in spec.files}
    missing = [stem for stem, path in found.items() if path is None]
    if missing:
        what = ", ".join(missing[:5])
        if len(missing) > 5:
            what += f" and {len(missing) - 5} more"
        searched = ", ".join(str(d) for d in dirs)
        raise DatasetNotFound(f"text corpus {name!r}: fortune file {what} not found "
                              f"(searched {searched}). {spec.how_to_get}")
    return list(found.values())


def _val_order(record: TextRecord) -> bytes:
    return hashlib.blake2b(record.text.encode("utf-8"), digest_size=8).digest()


def _parse_fortunes(name: str, spec: CorpusSpec, paths: list[Path]) -> list[TextRecord]:
    fix = f"Fix: `sudo apt-get install --reinstall {spec.package}`, or replace the file."
    records = []
    for path in paths:
        try:
            text = files.read_bytes(path).decode("utf-8")
        except UnicodeDecodeError as e:
            raise DatasetCorrupt(f"{path} is not UTF-8 text ({e}). {fix}") from e
        parsed = [spec.parse(raw, path.name.removesuffix(".gz"))
                  for raw in split_records(text, str(path), fix)]
        parsed = [r for r in parsed if r is not None]
        if not parsed:
            raise DatasetCorrupt(f"{path} holds no usable {name} record. {fix}")
        records += parsed
    return records


@functools.lru_cache(maxsize=8)
def _load_cached(name: str, stamps: tuple[tuple[str, int, int], ...]
                 ) -> dict[str, tuple[TextRecord, ...]]:
    """Parse and split a corpus. Keyed by (path, mtime, size) of its files, so an edited or a
    different file (another $DLCAMP_DATA) is parsed again, never served stale."""
    spec = get_corpus_spec(name)
    paths = [Path(p) for p, _, _ in stamps]
    if spec.read is not None:
        parsed = [TextRecord(title, author, lines) for title, author, lines in spec.read(paths)]
    else:
        parsed = _parse_fortunes(name, spec, paths)
    records: dict[str, TextRecord] = {}  # body text -> first record with it (drops duplicates)
    for r in parsed:
        records.setdefault(r.text, r)
    everything = list(records.values())
    if len(everything) < 2:
        raise DatasetCorrupt(f"text corpus {name!r} has {len(everything)} record(s); a train "
                             "and a val split need at least 2.")
    n_val = max(1, round(VAL_FRACTION * len(everything)))
    order = sorted(range(len(everything)), key=lambda i: (_val_order(everything[i]), i))
    val = set(order[:n_val])
    return {
        "all": tuple(everything),
        "train": tuple(r for i, r in enumerate(everything) if i not in val),  # file order
        "val": tuple(r for i, r in enumerate(everything) if i in val),
    }


def load_corpus(name: str, split: str = "train") -> list[TextRecord]:
    """The records of one split ('train', 'val' or 'all') of a text corpus, in file order."""
    if split not in SPLITS:
        raise UnknownName(f"text corpus {name!r} has no split {split!r}; choose from "
                          f"{', '.join(SPLITS)}")
    stamps = tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in locate_corpus(name))
    return list(_load_cached(name, stamps)[split])


def corpus_text(name: str, split: str = "train") -> str:
    """The text a language model trains on: one record per line, each line ending with "\\n".

    A record's body lines are joined without a separator for Chinese (a Tang poem becomes
    one line: "兰叶春葳蕤，桂华秋皎洁。欣欣此生意，…") and with one space for English.
    Titles and authors are left out.
    """
    joiner = get_corpus_spec(name).joiner
    return "".join(joiner.join(r.lines) + "\n" for r in load_corpus(name, split))
