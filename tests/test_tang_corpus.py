"""The "tang" corpus: 全唐诗 from npm chinese-poetry 2.0.1, cleaned, simplified, cached, split."""

from __future__ import annotations

import json
import shutil

import pytest

from dlcamp.core.errors import DatasetCorrupt, DatasetNotFound
from dlcamp.text import corpora, poetry
from dlcamp.text.corpora import corpus_text, list_corpora, load_corpus
from dlcamp.text.data import make_text_loaders
from dlcamp.text.poetry import (
    TANG_FILES,
    TANG_RECORDS,
    clean_record,
    clean_text,
    locate_tang,
    read_tang,
    strip_notes,
)

TRADITIONAL_ONLY = "們個這時書說門東車馬鳥魚風雲龍國愛學聲歸舉頭鄉"  # each has a simplified form


@pytest.fixture(scope="module")
def tang_paths():
    """The 58 source files where dlcamp finds them (scripts/install-data.sh puts them in the
    cache)."""
    try:
        return locate_tang()
    except DatasetNotFound as e:
        pytest.fail(f"{e}  (the tests need them: run `make setup`)")


@pytest.fixture
def fresh_corpora():
    corpora._load_cached.cache_clear()
    yield
    corpora._load_cached.cache_clear()


def link_files(paths, dest):
    """Symlinks to the real files in `dest` (no 25 MB copy)."""
    dest.mkdir(parents=True, exist_ok=True)
    for p in paths:
        (dest / p.name).symlink_to(p)


def test_registered():
    assert "tang" in list_corpora()
    assert corpora.get_corpus_spec("tang").joiner == ""


def test_source_records_and_characters(tang_paths):
    """The files hold 57,607 records and 3.67 M characters of verse and notes."""
    assert len(tang_paths) == len(TANG_FILES) == 58
    records = [r for p in tang_paths for r in json.loads(p.read_bytes())]
    assert len(records) == TANG_RECORDS == 57_607
    assert sum(len("".join(r["paragraphs"])) for r in records) == 3_668_082


def test_counts_after_cleaning(tang_paths):
    poems = load_corpus("tang", "all")
    # 197 records are empty (no paragraph, or only "。"); about 970 are exact repeats.
    assert 56_000 < len(poems) <= 57_607 - 197
    chars = sum(len("".join(r.lines)) for r in poems)
    assert 3_300_000 < chars < 3_500_000  # ~7% of the source was editorial notes
    text = corpus_text("tang", "all")
    assert text.count("\n") == len(poems)
    assert not set("（）〖〗[]{}") & set(text)


def test_simplified_script(tang_paths):
    poems = {(r.author, r.title): r.lines for r in load_corpus("tang", "all")}
    assert poems["李白", "静夜思"] == ("床前看月光，疑是地上霜。", "举头望山月，低头思故乡。")
    assert poems["孟浩然", "春晓"] == ("春眠不觉晓，处处闻啼鸟。", "夜来风雨声，花落知多少。")
    assert poems["王维", "相思"][0] == "红豆生南国，秋来发故枝。"  # 王維 相思 紅豆生南國
    text = corpus_text("tang", "all")
    assert {c: text.count(c) for c in TRADITIONAL_ONLY} == dict.fromkeys(TRADITIONAL_ONLY, 0)


def test_split_deterministic_and_cached_on_disk(tang_paths):
    train, val, everything = (load_corpus("tang", s) for s in ("train", "val", "all"))
    assert len(train) + len(val) == len(everything)
    assert not {r.text for r in train} & {r.text for r in val}
    assert len(val) == round(0.1 * len(everything))
    assert val[0].title == "帝京篇十首 一"  # decided by a hash of the text: same everywhere
    corpora._load_cached.cache_clear()  # read again (from the converted copy on disk)
    assert load_corpus("tang", "val") == val and load_corpus("tang", "train") == train


def test_cache_hit_second_time(tang_paths, isolated_data, monkeypatch):
    """The conversion is written to the cache once; the next read takes it from there."""
    paths = tang_paths[:2]  # a 2-file corpus keeps the test fast
    n = sum(len(json.loads(p.read_bytes())) for p in paths)
    monkeypatch.setattr(poetry, "TANG_RECORDS", n)
    first = read_tang(paths)
    cached = poetry.cache_path(paths)
    assert cached.parent == isolated_data / "cache" / "chinese-poetry" and cached.is_file()

    def no_conversion(poems):
        raise AssertionError("converted again instead of reading the cache")

    convert = poetry.to_simplified
    monkeypatch.setattr(poetry, "to_simplified", no_conversion)
    assert read_tang(paths) == first
    monkeypatch.setattr(poetry, "to_simplified", convert)
    cached.write_bytes(b'{"poems": [1, 2')  # a damaged cache is converted again
    assert read_tang(paths) == first and json.loads(cached.read_bytes())["poems"]


def test_missing_files_name_the_fix(isolated_data, fresh_corpora):
    with pytest.raises(DatasetNotFound) as e:
        load_corpus("tang")
    msg = str(e.value)
    assert "'tang'" in msg and "scripts/install-data.sh" in msg
    assert "npm pack chinese-poetry@2.0.1" in msg
    assert str(isolated_data / "data" / "chinese-poetry") in msg
    assert str(isolated_data / "cache" / "chinese-poetry") in msg
    assert "install-data.sh" in corpora.get_corpus_spec("tang").how_to_get


def test_some_files_missing_or_changed(tang_paths, isolated_data, fresh_corpora):
    dest = isolated_data / "data" / "chinese-poetry" / "dist" / "quantangshi"
    link_files(tang_paths[:1], dest)
    with pytest.raises(DatasetNotFound, match="lacks 57 of the 58 files.*install-data"):
        load_corpus("tang")
    shutil.rmtree(dest)
    link_files(tang_paths[1:], dest)
    bad = dest / tang_paths[0].name
    bad.write_bytes(tang_paths[0].read_bytes().replace("秦川".encode(), "秦州".encode()))
    with pytest.raises(DatasetCorrupt, match=r"poet\.tang\.0\.json .*SHA-256"):
        load_corpus("tang")


def test_cleaning_rules():
    assert strip_notes("一（注（內）外）二\n三（跨\n行）四）五") == "一二\n三\n四五"
    assert clean_text("玉[筯]落〖1〗春鏡，歸當朧{月悤}時。\n（見《類說》卷十二。\n）。") == \
        ["玉筯落春鏡，歸當朧□時。"]
    record = {"author": " 李白 ", "title": "中秋（題擬）", "paragraphs": ["床前　看月光。"]}
    assert clean_record(record) == ("中秋", "李白", ("床前 看月光。",))
    assert clean_record({"author": "韓氏", "title": "句", "paragraphs": ["。"]}) is None
    assert clean_record({"author": "x", "title": "y", "paragraphs": []}) is None


def test_text_loaders_on_tang(tang_paths):
    quick = make_text_loaders("tang", batch_size=16, num_steps=20, quick=True)
    x, y, _ = next(iter(quick.train))
    assert x.shape == (16, 20) and int(x.max()) < len(quick.vocab)
    full = make_text_loaders("tang", batch_size=32, num_steps=35)
    assert 8_000 < len(full.vocab) < 10_000  # distinct characters of the training poems
    assert len(full.train.corpus) > 3_000_000
    assert float((full.eval.corpus == full.vocab.unk).float().mean()) < 0.001  # rare <unk>
