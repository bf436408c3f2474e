"""Translation pairs from gettext catalogs: cleaning, split, search, batches, codecs."""

from __future__ import annotations

import collections
import json
import random

import polib
import pytest
import torch

from dlcamp.core.errors import DatasetNotFound, UnknownName
from dlcamp.text.catalogs import collapse
from dlcamp.text.codecs import build_codec, codec_from_dict
from dlcamp.text.translation import (
    TRANSLATION_SETS,
    Pair,
    TranslationLoader,
    list_translation_sets,
    load_pairs,
    make_translation_loaders,
    pair_loader,
    prepare_source,
    restore_placeholders,
    split_of,
    translation_info,
)
from dlcamp.text.translation_clean import clean_pair, mask_placeholders

# --- cleaning ---------------------------------------------------------------------------------


@pytest.mark.parametrize("msgid, msgstr, markers, target, expected", [
    ("_Open File...", "打开文件(_O)...", "_", "char", ("Open File...", "打开文件...")),
    ("&About", "关于(&A)", "&", "char", ("About", "关于")),
    ("Fo~rm", "表单(~R)", "~_", "char", ("Form", "表单")),
    ("Pa_ragraph end", "Fin de pa_ragraphe", "~_", "bpe", ("Paragraph end", "Fin de paragraphe")),
    ("Capture &Device", "Périphérique de cap&ture", "&", "bpe",
     ("Capture Device", "Périphérique de capture")),
    ("R&&D &Tools", "R&&D (&T) 工具", "&", "char", ("R&D Tools", "R&D 工具")),
    ("core_bare is set", "已设置 core_bare", "", "char", ("core_bare is set", "已设置 core_bare")),
    ("Size\xa0:\n  big", "Taille\xa0:\tgrande", "", "bpe", ("Size : big", "Taille : grande")),
])
def test_accelerators_and_whitespace(msgid, msgstr, markers, target, expected):
    assert clean_pair(msgid, msgstr, markers, target) == expected


@pytest.mark.parametrize("msgid, msgstr, expected", [
    ("Open %s in %d", "在 %d 中打开 %s",  # the k-th "%s" of one side is the k-th of the other
     ("Open <ph1> in <ph2>", "在 <ph2> 中打开 <ph1>")),
    ("Open %s in %s", "在 %s 中打开 %s", ("Open <ph1> in <ph2>", "在 <ph1> 中打开 <ph2>")),
    ("Move %1$s to %2$s", "把 %1$s 移到 %2$s", ("Move <ph1> to <ph2>", "把 <ph1> 移到 <ph2>")),
    ("%1$s of %2$s", "%2$s 的 %1$s", ("<ph1> of <ph2>", "<ph2> 的 <ph1>")),
    ("Hello %(user)s, {0} new {name}", "你好 %(user)s，{0} 条新 {name}",
     ("Hello <ph1>, <ph2> new <ph3>", "你好 <ph1>，<ph2> 条新 <ph3>")),
    ("Installing $(ARG1) for %PRODUCTNAME", "正在为 %PRODUCTNAME 安装 $(ARG1)",
     ("Installing <ph1> for <ph2>", "正在为 <ph2> 安装 <ph1>")),
    ("unused variable %q+D in %<asm%>", "%<asm%> 中未使用的变量 %q+D",
     ("unused variable <ph1> in <ph2>asm<ph3>", "<ph2>asm<ph3> 中未使用的变量 <ph1>")),
    ("Zoom %1 to 100%%", "缩放 %1 到 100%%", ("Zoom <ph1> to 100%", "缩放 <ph1> 到 100%")),
    ("Delete %s", "删除 %d", None),  # different placeholders: dropped
    ("Delete %s", "删除", None),  # one missing
    ("Delete", "删除 %s", None),  # one invented
])
def test_placeholders_become_the_same_tokens_on_both_sides(msgid, msgstr, expected):
    assert clean_pair(msgid, msgstr, "", "char") == expected


def test_unmask_puts_the_original_placeholders_back():
    masked, originals = mask_placeholders("Copy %1$s to %2$s (%d%%)")
    assert (masked, originals) == ("Copy <ph1> to <ph2> (<ph3>%)", ["%1$s", "%2$s", "%d"])
    assert restore_placeholders("<ph2> 复制到 <ph1>（<ph3>）<ph7>", originals) == \
        "%2$s 复制到 %1$s（%d）<ph7>"
    assert prepare_source("  Open\t%s  now ") == ("Open <ph1> now", ["%s"])


@pytest.mark.parametrize("msgid, msgstr, target", [
    ("Open", "", "char"),  # untranslated
    ("VLC media player", "VLC media player", "bpe"),  # identical
    ("Manambu", "manambu", "bpe"),  # identical but for case
    ("Version", "Version 2", "char"),  # Chinese target without a Chinese character
    (" ".join(["word"] * 17), "很长", "char"),  # 17 source words
    ("Long", "长" * 49, "char"),  # 49 characters
    ("Long", " ".join(["mot"] * 25), "bpe"),  # 25 words
    ("%s: %s", "%s：%s", "char"),  # no English word in the source
])
def test_dropped_pairs(msgid, msgstr, target):
    assert clean_pair(msgid, msgstr, "", target) is None


def test_length_limits_are_inclusive():
    assert clean_pair(" ".join(["word"] * 16), "长" * 48, "", "char") is not None
    assert clean_pair("Long", "长" * 47 + "%s", "", "char") is None  # placeholder mismatch
    assert clean_pair("Long %s", "长" * 47 + "%s", "", "char") is not None  # <ph1> is one


def test_context_duplicates_collapse_to_the_most_frequent_then_smallest():
    cands = [("Play", "开始播放", "vlc"), ("Play", "播放", "gimp20"), ("Play", "播放", "sw"),
             ("Save", "存储", "a"), ("Save", "保存", "b")]
    for seed in range(3):  # the answer does not depend on the catalogs' order...
        random.Random(seed).shuffle(cands)
        by_src = {p.src: p for p in collapse(cands)}
        assert by_src["Play"].tgt == "播放" and by_src["Save"].tgt == "保存"  # 保 < 存
        assert by_src["Save"].source == "b"
    # ... except the source, the first domain in input order that gave the chosen translation
    assert collapse([("Play", "播放", "sw"), ("Play", "播放", "gimp20")])[0].source == "sw"


# --- the split ----------------------------------------------------------------------------------


def test_split_by_sha256_is_pinned_and_proportional():
    # Pinned values: any machine, any Python, any PYTHONHASHSEED gives these.
    assert [split_of(s) for s in ("Open", "Save As...", "Quit", "File", "Cancel")] == \
        ["train", "train", "train", "train", "train"]
    assert split_of("Item 17") == "test" and split_of("Item 2") == "val"
    # near-copies share a split: case, punctuation and spaces do not count
    for variants in (["Item 17", "item 17", "Item 17...", "ITEM-17"],
                     ["Open File", "Open file", "Open File...", "_Open File"]):
        assert len({split_of(v) for v in variants}) == 1
    counts = collections.Counter(split_of(f"Item {i}") for i in range(20_000))
    assert 0.04 < counts["test"] / 20_000 < 0.06 and 0.04 < counts["val"] / 20_000 < 0.06


# --- catalogs on disk ---------------------------------------------------------------------------

SPECIAL_VLC = [  # (msgctxt, msgid, msgstr) written into vlc.mo
    (None, "&Open Media", "打开媒体(&O)"),
    ("menu", "Play", "播放"), ("button", "Play", "播放"), ("tooltip", "Play", "开始播放"),
    (None, "Open %1$s in %2$s", "在 %2$s 中打开 %1$s"),
    (None, "Delete %s", "删除 %d"),
    (None, "VLC", "VLC"),
    (None, "Untranslated", ""),
]


def _write_mo(path, entries, plural=False):
    po = polib.POFile()
    po.metadata = {"Content-Type": "text/plain; charset=UTF-8"}
    for ctx, msgid, msgstr in entries:
        po.append(polib.POEntry(msgctxt=ctx, msgid=msgid, msgstr=msgstr))
    if plural:
        po.append(polib.POEntry(msgid="%d file", msgid_plural="%d files",
                                msgstr_plural={0: "%d 个文件"}))
    path.parent.mkdir(parents=True, exist_ok=True)
    po.save_as_mofile(str(path))


@pytest.fixture
def catalogs(tmp_path, monkeypatch):
    """Every pinned translation-zh catalog, spread over the three search roots."""
    roots = {"data": tmp_path / "data", "cache": tmp_path / "cache" / "debian",
             "system": tmp_path / "system"}
    monkeypatch.setenv("DLCAMP_DATA", str(roots["data"]))
    monkeypatch.setenv("DLCAMP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("DLCAMP_SYSTEM_ROOT", str(roots["system"]))
    spec = TRANSLATION_SETS.get("translation-zh")
    files = {}
    for k, cat in enumerate(spec.catalogs):
        root = roots[("data", "cache", "system")[k % 3]]
        for domain in cat.domains:
            path = root / cat.folder.format(lang="zh_CN") / f"{domain}.mo"
            entries = [(None, f"Message of {domain}", f"{domain} 的消息")]
            _write_mo(path, entries + (SPECIAL_VLC if domain == "vlc" else []),
                      plural=domain == "vlc")
            files[domain] = path
    return files


def test_catalogs_read_cleaned_and_split(catalogs):
    pairs = {p.src: p for p in load_pairs("translation-zh", "all")}
    assert len(pairs) == len(catalogs) + 3  # one message per domain + 3 kept from vlc
    assert pairs["Open Media"] == Pair("Open Media", "打开媒体", "vlc")
    assert pairs["Play"].tgt == "播放"  # 2 contexts of 3 say so
    assert pairs["Open <ph1> in <ph2>"].tgt == "在 <ph2> 中打开 <ph1>"
    assert pairs["Message of gimp20"] == Pair("Message of gimp20", "gimp20 的消息", "gimp20")
    assert not {"Delete <ph1>", "VLC", "Untranslated"} & set(pairs)
    assert not any("file" in src for src in pairs)  # the plural entry is left out
    splits = {s: load_pairs("translation-zh", s) for s in ("train", "val", "test")}
    assert sum(map(len, splits.values())) == len(pairs)
    for split, items in splits.items():
        assert all(split_of(p.src) == split for p in items)
    info = translation_info("translation-zh")
    assert info["counts"]["all"] == len(pairs) and info["sources"]["vlc"] == 4
    assert len(info["files"]) == len(catalogs) and "vlc-l10n" in info["packages"]


def test_changed_catalog_is_read_again(catalogs):
    assert "Newly added" not in {p.src for p in load_pairs("translation-zh", "all")}
    _write_mo(catalogs["git"], [(None, "Newly added", "新加的")])
    assert "Newly added" in {p.src for p in load_pairs("translation-zh", "all")}


def test_a_new_process_reads_the_disk_cache_not_the_catalogs(catalogs, monkeypatch, tmp_path):
    from dlcamp.text import catalogs as module

    first = load_pairs("translation-zh", "all")
    assert list((tmp_path / "cache" / "translation").glob("translation-zh-*.json"))
    module._pairs_by_split.cache_clear()  # as in a new process

    def no_reading(path):
        raise AssertionError(f"read {path} again")

    monkeypatch.setattr(module, "read_catalog", no_reading)
    assert load_pairs("translation-zh", "all") == first
    module._pairs_by_split.cache_clear()
    _write_mo(catalogs["git"], [(None, "Newly added", "新加的")])  # a changed catalog: read
    with pytest.raises(AssertionError, match="read"):
        load_pairs("translation-zh", "all")


def test_missing_packages_are_named_in_one_error(catalogs):
    catalogs["vlc"].unlink()
    catalogs["sw"].unlink()
    with pytest.raises(DatasetNotFound) as err:
        load_pairs("translation-zh")
    message = str(err.value)
    assert "vlc-l10n" in message and "libreoffice-l10n-zh-cn" in message
    assert "git," not in message and "gimp-data" not in message
    assert "apt-get install vlc-l10n libreoffice-l10n-zh-cn" in message
    assert "install-data.sh" in message and "dpkg -x" in message


def test_pinned_debian_catalogs():
    """The real set (scripts/install-data.sh installs or unpacks the packages)."""
    counts = translation_info("translation-zh")["counts"]
    assert 35_000 < counts["all"] < 50_000
    assert 0.04 < counts["test"] / counts["all"] < 0.06
    pairs = {p.src: p for p in load_pairs("translation-zh", "all")}
    assert pairs["Open Media"] == Pair("Open Media", "打开媒体", "vlc")  # "&Open Media"
    assert pairs["Paragraph end"].tgt == "段落结尾"  # LibreOffice's "Pa_ragraph end"
    assert not [p for p in pairs.values() if "(_" in p.tgt or "(&" in p.tgt or "(~" in p.tgt]


def test_unknown_names():
    assert list_translation_sets() == ["translation-fr", "translation-zh"]
    with pytest.raises(UnknownName, match="did you mean 'translation-zh'"):
        load_pairs("translation-zn")


def test_loaders_from_catalogs(catalogs):
    data = make_translation_loaders("translation-zh", batch_size=4)
    assert data.eval_split == "val" and data.tgt_codec.kind == "char"
    assert data.train.num_pairs == len(load_pairs("translation-zh", "train"))
    assert len(data.test_pairs) == len(load_pairs("translation-zh", "test"))
    src, src_len, tgt_in, tgt_out, tgt_len = next(iter(data.train))
    assert src.dtype == tgt_in.dtype == torch.long and src.shape[0] == 4
    assert "train" in data.describe
    assert data.max_tgt_len == max(len(data.tgt_codec.encode(p.tgt)) + 1
                                   for p in load_pairs("translation-zh", "train"))
    test = pair_loader(data.test_pairs, data.src_codec, data.tgt_codec, batch_size=100)
    src, src_len, tgt_in, tgt_out, tgt_len = next(iter(test))  # in the split's order
    codec = data.tgt_codec  # characters never seen in training come back as <unk>
    assert [codec.decode(row) for row in tgt_out] == \
        [codec.decode(codec.encode(p.tgt)) for p in data.test_pairs]
    assert tgt_len.tolist() == [len(codec.encode(p.tgt)) + 1 for p in data.test_pairs]


# --- batches ------------------------------------------------------------------------------------


def _toy_loader(**kw):
    src_codec = build_codec("word", ["a b c d e"], min_freq=1)
    tgt_codec = build_codec("char", ["甲乙丙丁"])
    srcs = [[13, 14], [15], [13, 14, 15, 16, 17], [16]]  # ids of a, b, ... in word order
    tgts = [[13], [14, 15, 16], [13, 14], [16, 16, 16, 16]]
    return TranslationLoader(srcs, tgts, src_codec, tgt_codec, **kw), srcs, tgts


def test_batch_layout():
    loader, srcs, tgts = _toy_loader(batch_size=3)
    assert len(loader) == 2
    batches = list(loader)
    src, src_len, tgt_in, tgt_out, tgt_len = batches[0]
    assert src.tolist() == [[13, 14, 3, 1, 1, 1], [15, 3, 1, 1, 1, 1], [13, 14, 15, 16, 17, 3]]
    assert src_len.tolist() == [3, 2, 6]
    assert tgt_in.tolist() == [[2, 13, 1, 1], [2, 14, 15, 16], [2, 13, 14, 1]]
    assert tgt_out.tolist() == [[13, 3, 1, 1], [14, 15, 16, 3], [13, 14, 3, 1]]
    assert tgt_len.tolist() == [2, 4, 3]
    assert [t.shape for t in batches[1]] == [(1, 2), (1,), (1, 5), (1, 5), (1,)]  # own length
    short, *_ = _toy_loader(batch_size=4, max_src=3, max_tgt=2)
    src, src_len, tgt_in, tgt_out, tgt_len = next(iter(short))
    assert src[2].tolist() == [13, 14, 3] and src.shape[1] == 3 and tgt_in.shape[1] == 2
    assert tgt_out[1].tolist() == [14, 15] and tgt_len.tolist() == [2, 2, 2, 2]


def test_shuffle_depends_on_seed_and_epoch_only():
    def order(seed, epoch):
        loader, *_ = _toy_loader(batch_size=1, shuffle=True, seed=seed)
        loader.set_epoch(epoch)
        return [int(b[1][0]) * 10 + int(b[4][0]) for b in loader]

    assert order(0, 0) == order(0, 0) and sorted(order(0, 0)) == sorted(order(1, 3))
    assert len({tuple(order(0, e)) for e in range(6)}) > 1


# --- codecs -------------------------------------------------------------------------------------

FRENCH = ["Ouvrir le fichier <ph1>", "Enregistrer sous...", "Taille : <ph1>x<ph2>",
          "Le fichier est ouvert", "Fermer le fichier", "Ouvrir un média"] * 3


@pytest.mark.parametrize("kind, texts, sample, decoded", [
    ("word", ["Open the file.", "open <ph1> files (all).", "Save the file (now)."],
     "Open the <ph1> FILE (soon).",
     "open the <ph1> file (<unk>)."),
    ("char", ["打开 <ph1> 文件", "保存文件"], "打开 <ph1> 文件", "打开 <ph1> 文件"),
    ("bpe", FRENCH, "Taille : <ph1>x<ph2>", "Taille : <ph1>x<ph2>"),
])
def test_codecs_round_trip(kind, texts, sample, decoded):
    codec = build_codec(kind, texts, **({"vocab_size": 80} if kind == "bpe" else {}))
    assert (codec.unk, codec.pad, codec.bos, codec.eos) == (0, 1, 2, 3)
    assert codec.vocab.to_tokens([0, 1, 2, 3, 4]) == ["<unk>", "<pad>", "<bos>", "<eos>", "<ph1>"]
    ids = codec.encode(sample)
    assert codec.tokens(sample).count("<ph1>") == 1 and ids.count(4) == 1
    assert codec.decode([codec.bos, *ids, codec.eos, 7, 8]) == decoded  # stops at <eos>
    assert codec.decode(torch.tensor([*ids, codec.pad, codec.pad])) == decoded
    d = json.loads(json.dumps(codec.to_dict()))  # JSON-safe
    again = codec_from_dict(d)
    assert type(again) is type(codec) and len(again) == len(codec)
    assert again.encode(sample) == ids and again.to_dict() == codec.to_dict()


def test_word_codec_min_freq_and_bpe_is_deterministic():
    words = build_codec("word", ["open file", "open"])
    assert words.encode("open file") == [words.vocab["open"], 0]  # "file" seen once
    a = build_codec("bpe", FRENCH, vocab_size=80)
    b = build_codec("bpe", FRENCH[::-1], vocab_size=80)
    assert a.to_dict() == build_codec("bpe", FRENCH, vocab_size=80).to_dict()
    assert all(a.decode(a.encode(t)) == t for t in FRENCH)
    assert all(b.decode(b.encode(t)) == t for t in FRENCH)
    with pytest.raises(UnknownName):
        build_codec("sentencepiece", FRENCH)


def test_a_name_with_several_underscores_keeps_them():
    from dlcamp.text.translation_clean import strip_accelerators

    assert strip_accelerators("gimp_image_new", "_") == "gimp_image_new"
    assert strip_accelerators("_Open", "_") == "Open"
    assert strip_accelerators("打开(_O) file_name", "_") == "打开 file_name"
