"""English -> Chinese and English -> French sentence pairs from gettext message catalogs.

(The public names are re-exported by `dlcamp.text.translation`, with the loaders.)

Every Linux desktop carries translations of its interface: a `.mo` catalog maps each English
message ("Open File...") to its translation ("打开文件..."). A translation set is a *pinned*
list of catalogs from named Debian packages, so it is the same data on every machine whatever
else is installed there:

| package                      | domains (catalog files)                          | accelerators |
|------------------------------|--------------------------------------------------|--------------|
| iso-codes                    | language, country, currency, script names        | -            |
| libc-l10n                    | libc (C library messages)                        | -            |
| git                          | git                                              | -            |
| gimp-data                    | gimp20, gimp20-python, -script-fu, -std-plug-ins | `_`          |
| vlc-l10n                     | vlc                                              | `&`          |
| gcc-12-locales               | gcc-12, cpplib-12                                | -            |
| libreoffice-l10n-zh-cn / -fr | the 33 catalogs of LibreOffice's interface       | `~` and `_`  |

(`TRANSLATION_SETS` below holds the exact lists.) A catalog is searched, in order, under
`$DLCAMP_DATA`, dlcamp's cache `<cache>/debian` (where `scripts/install-data.sh` unpacks
packages with `apt-get download` + `dpkg -x` when it cannot install them) and the system root
(`$DLCAMP_SYSTEM_ROOT`, default `/`), each taken as a file-system root: for example
`<root>/usr/share/locale/zh_CN/LC_MESSAGES/vlc.mo`. If a pinned package is missing, one
DatasetNotFound names every missing package and the fix. The cleaning rules are in
`dlcamp.text.translation_clean`; the split is by the SHA-256 of the cleaned English: 5% test,
5% val, 90% train, identical on every machine (and the same English sentence lands in the same
split of both sets).
"""

from __future__ import annotations

import collections
import functools
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from dlcamp.core.errors import BadArgument, DatasetNotFound
from dlcamp.core.io import atomic_write_bytes
from dlcamp.core.registry import Registry
from dlcamp.data.files import cache_dir
from dlcamp.text import translation_clean
from dlcamp.text.translation_clean import clean_pair

SPLITS = ("train", "val", "test", "all")
TEST_PERCENT, VAL_PERCENT = 5, 5  # the rest (90%) is train
CLEAN_VERSION = 2  # bump when the reading changes (the cleaning rules' source is in the key)

LOCALE = "usr/share/locale/{lang}/LC_MESSAGES"
LIBREOFFICE = "usr/lib/libreoffice/program/resource/{lang}/LC_MESSAGES"
LIBREOFFICE_DOMAINS = (
    "acc", "avmedia", "basctl", "chart", "cnr", "cui", "dba", "dkt", "editeng", "flt", "for",
    "fps", "frm", "fwk", "oox", "pcr", "rpt", "sb", "sc", "sca", "scc", "sd", "sfx", "sm",
    "svl", "svt", "svx", "sw", "uui", "vcl", "wiz", "wpt", "xsc")
# iso-codes also installs the same catalogs under legacy names (iso_639, iso_3166, ...): only
# the current names are pinned. iso_639-5 has no zh_CN catalog in Debian 12.
ISO_CODES = ("iso_15924", "iso_3166-1", "iso_3166-2", "iso_3166-3", "iso_4217", "iso_639-2",
             "iso_639-3")


@dataclass(frozen=True)
class Catalogs:
    """Catalogs of one Debian package: `folder` (under a root, `{lang}` filled in) holds
    `<domain>.mo` for each domain; `accelerators` are the characters marking a keyboard
    shortcut in its messages ("_" in "_File", "&" in "&File", "~" in "~File")."""

    package: str
    domains: tuple[str, ...]
    folder: str = LOCALE
    accelerators: str = ""


def _common(extra_iso: tuple[str, ...] = ()) -> tuple[Catalogs, ...]:
    return (
        Catalogs("iso-codes", ISO_CODES + extra_iso),
        Catalogs("libc-l10n", ("libc",)),
        Catalogs("git", ("git",)),
        Catalogs("gimp-data", ("gimp20", "gimp20-python", "gimp20-script-fu",
                               "gimp20-std-plug-ins"), accelerators="_"),
        Catalogs("vlc-l10n", ("vlc",), accelerators="&"),
        Catalogs("gcc-12-locales", ("gcc-12", "cpplib-12")),
    )


@dataclass(frozen=True)
class TranslationSet:
    """A named English -> `lang` set: its catalogs and the target side's length limit
    (`max_tgt` characters for a "char" target, words for a "word"/"bpe" one)."""

    name: str
    lang: str  # the locale folder name, e.g. "zh_CN"
    catalogs: tuple[Catalogs, ...]
    target: str  # how the target is tokenised: "char" or "bpe" (see text/codecs.py)
    max_tgt: int
    description: str


TRANSLATION_SETS: Registry[TranslationSet] = Registry("translation set", (
    ("translation-zh", TranslationSet(
        "translation-zh", "zh_CN",
        _common() + (Catalogs("libreoffice-l10n-zh-cn", LIBREOFFICE_DOMAINS, LIBREOFFICE,
                              "~_"),),
        target="char", max_tgt=48, description="English -> simplified Chinese (zh_CN)")),
    ("translation-fr", TranslationSet(
        "translation-fr", "fr",
        _common(("iso_639-5",)) + (Catalogs("libreoffice-l10n-fr", LIBREOFFICE_DOMAINS,
                                            LIBREOFFICE, "~_"),),
        target="bpe", max_tgt=24, description="English -> French (fr)")),
))


@dataclass(frozen=True)
class Pair:
    """One cleaned sentence pair; `source` is the catalog domain it came from (e.g. "vlc")."""

    src: str
    tgt: str
    source: str


def list_translation_sets() -> list[str]:
    """The names of the translation sets, sorted."""
    return TRANSLATION_SETS.names()


def search_roots() -> list[Path]:
    """File-system roots searched for catalogs, most specific first."""
    roots = [Path(os.environ["DLCAMP_DATA"])] if os.environ.get("DLCAMP_DATA") else []
    return roots + [cache_dir() / "debian", Path(os.environ.get("DLCAMP_SYSTEM_ROOT") or "/")]


def _install_hint(packages: list[str]) -> str:
    names = " ".join(packages)
    return (f"Fix: run scripts/install-data.sh (it installs them, or without root unpacks them "
            f"into {cache_dir() / 'debian'}), or `sudo apt-get install {names}`, or on any "
            f"Debian machine `apt-get download {names}` and `dpkg -x` each .deb into "
            f"{cache_dir() / 'debian'}")


def find_catalogs(name: str) -> list[tuple[Catalogs, str, Path]]:
    """(package entry, domain, file) for every pinned catalog of set `name`, in table order.

    Raises UnknownName for an unknown set and one DatasetNotFound naming all the Debian
    packages that have a catalog missing from every search root.
    """
    spec = TRANSLATION_SETS.get(name)
    roots, found, missing = search_roots(), [], []
    for cat in spec.catalogs:
        folder = cat.folder.format(lang=spec.lang)
        for domain in cat.domains:
            path = next((p for root in roots if (p := root / folder / f"{domain}.mo").is_file()),
                        None)
            if path is None and cat.package not in missing:
                missing.append(cat.package)
            elif path is not None:
                found.append((cat, domain, path))
    if missing:
        raise DatasetNotFound(
            f"{name}: the message catalogs of {len(missing)} Debian package(s) are missing: "
            f"{', '.join(missing)} (searched {', '.join(str(r) for r in roots)}). "
            f"{_install_hint(missing)}.")
    return found


def split_key(src: str) -> str:
    """What decides a sentence's split: its letters and digits, case-folded, so that "Open
    File", "Open file" and "Open File..." land in the same split (no near-copies of a
    training sentence in test)."""
    return re.sub(r"[\W_]+", "", src.casefold()) or src


def split_of(src: str) -> str:
    """"test", "val" or "train", from the SHA-256 of the sentence's `split_key`."""
    key = split_key(src).encode("utf-8")
    bucket = int.from_bytes(hashlib.sha256(key).digest()[:8], "big") % 100
    if bucket < TEST_PERCENT:
        return "test"
    return "val" if bucket < TEST_PERCENT + VAL_PERCENT else "train"


def read_catalog(path: Path) -> list[tuple[str, str]]:
    """(msgid, msgstr) of every translated singular message of a .mo file (polib reads it).

    Plural messages and the header are left out; so are empty translations.
    """
    try:
        import polib
    except ImportError as e:  # pragma: no cover - polib is in the `data` extra
        raise DatasetNotFound("reading message catalogs needs polib: "
                              "pip install 'dlcamp[data]'") from e
    return [(e.msgid, e.msgstr) for e in polib.mofile(str(path))
            if e.msgid and e.msgstr and not e.msgid_plural]


def collapse(candidates: list[tuple[str, str, str]]) -> list[Pair]:
    """One pair per English sentence from (src, tgt, domain) candidates.

    The same English may be translated in several catalogs or contexts (msgctxt); its
    translation is the most frequent one, ties going to the smallest string (Python's
    order), and its source the first domain (in input order) that gave that translation.
    The result is sorted by the SHA-256 of the English: a fixed, well-mixed order.
    """
    votes: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    first: dict[tuple[str, str], str] = {}
    for src, tgt, domain in candidates:
        votes[src][tgt] += 1
        first.setdefault((src, tgt), domain)
    pairs = []
    for src, counter in votes.items():
        tgt = min(counter, key=lambda t: (-counter[t], t))
        pairs.append(Pair(src, tgt, first[src, tgt]))
    return sorted(pairs, key=lambda p: hashlib.sha256(p.src.encode("utf-8")).digest())


def _read_and_clean(name: str, files: tuple[tuple[str, str, str, int, int], ...]
                    ) -> list[Pair]:
    """Every catalog read with polib, cleaned and collapsed (a second or more per set)."""
    spec = TRANSLATION_SETS.get(name)
    candidates = []
    for path, domain, markers, _, _ in files:
        for msgid, msgstr in read_catalog(Path(path)):
            pair = clean_pair(msgid, msgstr, markers, spec.target, spec.max_tgt)
            if pair is not None:
                candidates.append((pair[0], pair[1], domain))
    return collapse(candidates)


def _cached_pairs(name: str, files: tuple[tuple[str, str, str, int, int], ...]) -> list[Pair]:
    """`_read_and_clean`, cached on disk (<cache>/translation/<name>-<key>.json, written
    atomically) under a key of the catalogs' paths, sizes and mtimes, the set's target and
    length limit, CLEAN_VERSION and the source of the cleaning rules, so a new process (a
    lesson, a test) reads one JSON file instead of every catalog again. Writing a new key
    removes the set's older files."""
    spec = TRANSLATION_SETS.get(name)
    rules = hashlib.sha256(Path(translation_clean.__file__).read_bytes()).hexdigest()
    key = hashlib.sha256(json.dumps([name, spec.target, spec.max_tgt, CLEAN_VERSION, rules,
                                     files]).encode()).hexdigest()[:16]
    path = cache_dir() / "translation" / f"{name}-{key}.json"
    try:
        return [Pair(*row) for row in json.loads(path.read_text(encoding="utf-8"))]
    except (OSError, ValueError, TypeError):  # absent, or unreadable: read the catalogs
        pass
    pairs = _read_and_clean(name, files)
    try:
        atomic_write_bytes(path, json.dumps([[p.src, p.tgt, p.source] for p in pairs],
                                            ensure_ascii=False).encode("utf-8"))
        for old in path.parent.glob(f"{name}-*.json"):
            if old != path:
                old.unlink(missing_ok=True)
    except OSError:  # a read-only cache only costs time
        pass
    return pairs


@functools.cache
def _pairs_by_split(name: str, files: tuple[tuple[str, str, str, int, int], ...]
                    ) -> dict[str, tuple[Pair, ...]]:
    """Read, clean, collapse and split; memoised on the files' paths, sizes and mtimes."""
    pairs = _cached_pairs(name, files)
    out: dict[str, list[Pair]] = {"train": [], "val": [], "test": []}
    for pair in pairs:
        out[split_of(pair.src)].append(pair)
    return {"all": tuple(pairs), **{k: tuple(v) for k, v in out.items()}}


def _load(name: str) -> dict[str, tuple[Pair, ...]]:
    found = find_catalogs(name)
    files = []
    for cat, domain, path in found:
        st = path.stat()
        files.append((str(path), domain, cat.accelerators, st.st_mtime_ns, st.st_size))
    return _pairs_by_split(name, tuple(files))


def load_pairs(name: str, split: str = "train") -> list[Pair]:
    """The cleaned pairs of set `name` ("translation-zh", "translation-fr") in `split`
    ("train", "val", "test" or "all"), in the fixed order of their English's SHA-256.

    Read once per process (about a second per set); later calls return the memoised pairs
    while the catalog files are unchanged. Raises UnknownName, BadArgument (split) or
    DatasetNotFound (missing packages, named).
    """
    if split not in SPLITS:
        raise BadArgument(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    return list(_load(name)[split])


def translation_info(name: str) -> dict:
    """What `dlcamp data info translation-zh` prints: pairs per split and per catalog domain,
    the Debian packages, and the catalog files read."""
    spec = TRANSLATION_SETS.get(name)
    found = find_catalogs(name)
    by_split = _load(name)
    per_domain = collections.Counter(p.source for p in by_split["all"])
    return {
        "name": name,
        "description": spec.description,
        "target": spec.target,
        "counts": {split: len(by_split[split]) for split in SPLITS},
        "sources": {domain: per_domain[domain] for _, domain, _ in found},
        "packages": [cat.package for cat in spec.catalogs],
        "files": [str(path) for _, _, path in found],
    }
