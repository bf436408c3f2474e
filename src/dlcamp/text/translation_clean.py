"""Cleaning one catalog message into a training pair (the rules of dlcamp.text.translation).

Interface strings are not sentences: they carry keyboard accelerators, format placeholders
filled in at run time, and odd spacing. `clean_pair` applies, in this order:

1. placeholders -- `%s %d %1 %1$s %qs %<...%> %(name)s {0} {name} $(ARG1) %PRODUCTNAME` --
   become `<ph1>`, `<ph2>`, ... numbered in the English's order; the translation gets the same
   token for the same placeholder (the k-th `%s` of the translation is the k-th `%s` of the
   English). A pair whose two sides hold different placeholders is dropped. `%%` is a `%`
   and gcc's `%'` an apostrophe;
2. accelerators: the package's marker before a letter goes (`_File`, `&File`, `~File` ->
   `File`; a doubled marker is the character itself), and so does the Chinese form
   `文件(_F)` / `(&F)` / `(~F)`;
3. whitespace (non-breaking spaces included) collapses to single spaces.

A pair is then kept only if: the English has 1..16 words and a Latin letter outside the
placeholders; the translation is not empty and differs from the English (ignoring case:
iso-codes' French language names are mostly the English lowercased); a "char" (Chinese)
target has at most 48 characters (a placeholder counts as one) and at least one CJK
character, a word target at most 24 words; at most 9 placeholders.
"""

from __future__ import annotations

import collections
import functools
import re

MAX_SRC_WORDS = 16
MAX_TGT_CHARS = 48  # Chinese targets (translation-zh)
MAX_TGT_WORDS = 24  # French targets (translation-fr)
MAX_PLACEHOLDERS = 9  # the codecs reserve <ph1> .. <ph9>
PLACEHOLDER_TOKENS = tuple(f"<ph{i}>" for i in range(1, MAX_PLACEHOLDERS + 1))

PLACEHOLDER = re.compile(r"""
      %[%']                                            # literal "%" and gcc's apostrophe
    | %[A-Z][A-Z0-9_]{2,}                              # LibreOffice: %PRODUCTNAME
    | %\(\w+\)[-+\#0]*\d*(?:\.\d+)?[sdifrxXeEgGc]      # Python: %(name)s
    | %(?:\d+\$)?[-+\#0q]*(?:\*|\d+)?(?:\.(?:\*|\d+))?
      (?:hh|ll|[hlLjztw])*[diouxXeEfFgGaAcCspSnmDETVLHI]  # printf; gcc's %qs %q+D %C
    | %[<>]                                            # gcc's quotes %< and %>
    | %\d+                                             # Qt, LibreOffice: %1
    | \$\(\w+\) | \$\{\w+\}                            # LibreOffice $(ARG1), shell ${name}
    | \{\w*\}                                          # {0} {name} {}
""", re.VERBOSE)
LITERAL = {"%%": "%", "%'": "'"}
PH_TOKEN = re.compile(r"<ph(\d+)>")
CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
LATIN = re.compile(r"[A-Za-z]")


class Mismatch(ValueError):
    """The translation's placeholders are not those of the English."""


def mask_placeholders(text: str) -> tuple[str, list[str]]:
    """("Open <ph1> in <ph2>", ["%s", "%d"]) for "Open %s in %d": the slots, in order."""
    found: list[str] = []

    def sub(m: re.Match) -> str:
        if m.group() in LITERAL:
            return LITERAL[m.group()]
        found.append(m.group())
        return f"<ph{len(found)}>"

    return PLACEHOLDER.sub(sub, text), found


def mask_like(text: str, originals: list[str]) -> str:
    """Mask a translation with the numbering of its English's slots `originals`.

    Raises Mismatch when a placeholder is not in the English or one of the English's is
    missing.
    """
    slots: dict[str, collections.deque[int]] = collections.defaultdict(collections.deque)
    for i, ph in enumerate(originals, 1):
        slots[ph].append(i)

    def sub(m: re.Match) -> str:
        if m.group() in LITERAL:
            return LITERAL[m.group()]
        if not slots[m.group()]:
            raise Mismatch(m.group())
        return f"<ph{slots[m.group()].popleft()}>"

    masked = PLACEHOLDER.sub(sub, text)
    if any(slots.values()):
        raise Mismatch("missing placeholder")
    return masked


def unmask(text: str, originals: list[str]) -> str:
    """Put the original placeholders back: "<ph1> fichiers" -> "%d fichiers". A token with
    no original (a model can invent one) is left as it is."""
    def sub(m: re.Match) -> str:
        i = int(m.group(1))
        return originals[i - 1] if 1 <= i <= len(originals) else m.group()

    return PH_TOKEN.sub(sub, text)


@functools.cache
def _accelerator_patterns(m: str) -> tuple[re.Pattern, re.Pattern]:
    e = re.escape(m)
    return (re.compile(rf"\s*[(（]{e}[A-Za-z0-9][)）]"),  # 打开(_O)
            re.compile(rf"(?<!{e}){e}(?=[^\s{e}])"))  # _Open, Pa_ragraph


def strip_accelerators(text: str, markers: str) -> str:
    """Remove keyboard accelerators marked by any character of `markers`.

    "_Open" / "Pa_ragraph" -> "Open" / "Paragraph"; "打开(_O)..." -> "打开..."; "R&&D" -> "R&D".
    A string has one accelerator at most: with two or more single markers it is a name such
    as gimp_image_new, and its markers stay; so do they after a "(_O)".
    """
    for m in markers:
        if m in text:
            chinese, latin = _accelerator_patterns(m)
            text, n = chinese.subn("", text)
            if n == 0 and len(latin.findall(text)) == 1:  # "打开(_O)" already had its one
                text = latin.sub("", text)
            text = text.replace(m + m, m)
    return text


def squeeze(text: str) -> str:
    """Runs of whitespace (tabs, newlines, non-breaking spaces) -> one space; ends trimmed."""
    return re.sub(r"\s+", " ", text).strip()


def target_length(tgt: str, target: str) -> int:
    """Characters of a "char" target (a placeholder is one), words of any other."""
    return len(PH_TOKEN.sub("#", tgt)) if target == "char" else len(tgt.split())


def prepare_source(text: str) -> tuple[str, list[str]]:
    """A user's English sentence cleaned like the corpus's: placeholders masked, spaces
    squeezed. Returns the text and its placeholders, for `restore_placeholders`."""
    masked, originals = mask_placeholders(text)
    return squeeze(masked), originals


restore_placeholders = unmask


def clean_pair(msgid: str, msgstr: str, accelerators: str = "", target: str = "char",
               max_tgt: int | None = None) -> tuple[str, str] | None:
    """The cleaned (English, translation) of one catalog message, or None if it is dropped.

    `accelerators`: the markers this catalog uses ("_", "&", "~_" or ""); `target`: "char"
    for Chinese (length in characters, must hold a CJK character), anything else for a
    word-counted language; `max_tgt` defaults to 48 characters or 24 words.
    """
    if len(msgid.split()) > 2 * MAX_SRC_WORDS:  # cheap early exit; cleaning only shortens
        return None
    src, originals = mask_placeholders(msgid)
    if len(originals) > MAX_PLACEHOLDERS:
        return None
    try:
        tgt = mask_like(msgstr, originals)
    except Mismatch:
        return None
    src = squeeze(strip_accelerators(src, accelerators))
    tgt = squeeze(strip_accelerators(tgt, accelerators))
    if not src or not tgt or src.casefold() == tgt.casefold():
        return None
    if not 1 <= len(src.split()) <= MAX_SRC_WORDS or not LATIN.search(PH_TOKEN.sub("", src)):
        return None
    if max_tgt is None:
        max_tgt = MAX_TGT_CHARS if target == "char" else MAX_TGT_WORDS
    if target_length(tgt, target) > max_tgt:
        return None
    if target == "char" and not CJK.search(tgt):
        return None
    return src, tgt
