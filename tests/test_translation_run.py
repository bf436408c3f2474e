"""Translation as a product: the per-token loss, a run trained from the command line,
`dlcamp translate` and `dlcamp evaluate` (sacrebleu BLEU), and the errors users meet."""

from __future__ import annotations

import json
import math

import pytest
import torch

from dlcamp.cli.main import main
from dlcamp.train.task import Seq2Seq, masked_cross_entropy


def hand_loss(logits: list, targets: list, lengths: list) -> float:
    """Mean over real tokens of -log softmax, counted with Python floats."""
    total, count = 0.0, 0
    for row, tgt, n in zip(logits, targets, lengths, strict=True):
        for t in range(n):
            scores = row[t]
            log_z = math.log(sum(math.exp(s) for s in scores))
            total += log_z - scores[tgt[t]]
            count += 1
    return total / count


def test_masked_loss_is_the_mean_over_real_tokens():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 7, generator=g)
    targets = torch.randint(0, 7, (3, 5), generator=g)
    lengths = torch.tensor([5, 2, 1])
    total, n = masked_cross_entropy(logits, targets, lengths)
    expected = hand_loss(logits.tolist(), targets.tolist(), lengths.tolist())
    assert int(n) == 8
    assert float(total / n) == pytest.approx(expected, rel=1e-6)


def test_padding_changes_nothing_unlike_the_books_per_sequence_mean():
    """The same sentence padded to 4 or to 9 positions: our loss is the same; the book's
    (zero the padding, then average every row over all T positions) shrinks with padding."""
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(1, 4, 6, generator=g)
    targets = torch.randint(0, 6, (1, 4), generator=g)
    length = torch.tensor([3])
    padded_logits = torch.cat([logits, torch.randn(1, 5, 6, generator=g)], dim=1)
    padded_targets = torch.cat([targets, torch.zeros(1, 5, dtype=torch.long)], dim=1)
    ours = [float(t / n) for t, n in (masked_cross_entropy(logits, targets, length),
                                      masked_cross_entropy(padded_logits, padded_targets, length))]
    assert ours[0] == pytest.approx(ours[1], rel=1e-6)
    book = []
    for lg, tg in ((logits, targets), (padded_logits, padded_targets)):
        nll = torch.nn.functional.cross_entropy(lg[0], tg[0], reduction="none")
        mask = torch.arange(len(tg[0])) < length[0]
        book.append(float((nll * mask).mean()))
    assert book[1] == pytest.approx(book[0] * 4 / 9, rel=1e-6)


class Echo(torch.nn.Module):
    """An 'encoder-decoder' whose logits are fixed: checks what the task does with them."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = torch.nn.Parameter(logits)

    def forward(self, src, src_len, tgt_in):
        return self.logits


def test_seq2seq_task_reports_loss_ppl_and_token_accuracy():
    logits = torch.tensor([[[4.0, 0, 0], [0, 4.0, 0], [0, 0, 4.0]],
                           [[0, 4.0, 0], [4.0, 0, 0], [4.0, 0, 0]]])
    tgt_out = torch.tensor([[0, 1, 0], [1, 2, 0]])
    batch = (torch.zeros(2, 3, dtype=torch.long), torch.tensor([3, 3]), tgt_out,
             tgt_out, torch.tensor([3, 2]))
    task = Seq2Seq()
    loss, sums = task.step(Echo(logits), batch)
    loss.backward()
    summary = task.summarize({k: float(v) for k, v in sums.items()})
    assert summary["acc"] == pytest.approx(3 / 5)      # 0,1 right, 0 wrong; 1 right, 2 wrong
    assert summary["ppl"] == pytest.approx(math.exp(summary["loss"]))
    assert float(loss) == pytest.approx(summary["loss"], rel=1e-6)


@pytest.fixture(scope="module")
def zh_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "s2s"
    code = main(["train", "--model", "seq2seq", "--dataset", "translation-zh", "--quick",
                 "--epochs", "2", "--out", str(out), "--no-progress"])
    assert code == 0
    return out


def test_a_quick_run_learns_translates_and_evaluates(zh_run, capsys):
    rows = (zh_run / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    first, last = (dict(zip(header, r.split(","), strict=True)) for r in (rows[1], rows[-1]))
    assert float(last["train_loss"]) < float(first["train_loss"])
    capsys.readouterr()
    assert main(["translate", str(zh_run), "Open file", "Save %s as", "--beam", "3",
                 "--json"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["source"] for x in lines] == ["Open file", "Save %s as"]
    assert all(x["translation"] and x["score"] is not None for x in lines)
    assert "<ph" not in lines[1]["translation"]       # the user's placeholder is put back
    assert main(["evaluate", str(zh_run), "--quick", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["kind"] == "translation" and result["pairs"] == 200
    assert 0.0 <= result["bleu"] <= 100.0 and len(result["samples"]) == 10
    # the same number from sacrebleu called here, on translations made in one batch of 200
    # (evaluate translates in chunks of 128), placeholders scored as one word each
    import re

    import sacrebleu

    from dlcamp.text.translation import load_pairs
    from dlcamp.train.translation import load_translator

    pairs = load_pairs("translation-zh", "test")[:200]
    hyps = [r["translation"] for r in load_translator(zh_run).translate(
        [p.src for p in pairs], cleaned=True)]
    one_word = [[re.sub(r"<(ph\d+|unk)>", r" \1 ", t) for t in texts]
                for texts in (hyps, [p.tgt for p in pairs])]
    again = sacrebleu.corpus_bleu(one_word[0], [one_word[1]], tokenize="zh")
    assert result["bleu"] == pytest.approx(again.score, abs=1e-9)
    assert [s["translation"] for s in result["samples"]] == hyps[:10]
    assert main(["evaluate", str(zh_run), "--quick", "--dataset", "translation-fr"]) == 2
    assert "cannot be scored on translation-fr" in capsys.readouterr().err


def test_batched_greedy_equals_one_sentence_at_a_time(zh_run):
    """Padding a short source to the batch's longest must not change its translation."""
    from dlcamp.train.translation import load_translator

    translator = load_translator(zh_run)
    sentences = ["Open file", "Close the window and quit the program now", "Print"]
    batched = translator.translate(sentences)
    alone = [translator.translate([s])[0] for s in sentences]
    assert [b["tokens"] for b in batched] == [a["tokens"] for a in alone]


def test_readable_errors(zh_run, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["translate", str(zh_run), "--beam", "0", "Open"])
    assert exit_.value.code == 2 and "--beam: must be a whole number" in capsys.readouterr().err
    assert main(["train", "--model", "transformer", "--dataset", "tang300", "--quick",
                 "--out", str(tmp_path / "x")]) == 2
    assert "parallel corpus" in capsys.readouterr().err
    assert main(["train", "--model", "lstm", "--dataset", "translation-fr", "--quick",
                 "--out", str(tmp_path / "y")]) == 2
    assert "translation model" in capsys.readouterr().err
    assert main(["translate", str(tmp_path / "nothing"), "Open"]) == 2
    assert main(["translate", str(zh_run), "  "]) == 2
    assert "nothing left to translate" in capsys.readouterr().err
    assert main(["export", str(zh_run), "--out", str(tmp_path / "m.onnx")]) == 2
    assert "dlcamp translate" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_placeholders_come_back_once_and_escapes_stay(zh_run):
    from dlcamp.train.translation import drop_invented, load_translator

    assert drop_invented("<ph1> <ph1> 文件 <ph2>", 1) == "<ph1> 文件"
    assert drop_invented("打开 <ph1>", 1) == "打开 <ph1>"
    translator = load_translator(zh_run)
    for sentence, placeholders in (("Save %s as", ["%s"]), ("%d files in %s", ["%d", "%s"]),
                                   ("Progress: %d%% of %s", ["%d", "%s"])):
        out = translator.translate([sentence], beam=2)[0]["translation"]
        for p in placeholders:  # never twice (a model may leave one out)
            assert out.count(p) <= 1, (sentence, out)
        if "%%" in sentence:  # no lone % in a printf string
            assert "%" not in out.replace("%%", "").replace("%d", "").replace("%s", "")


def test_api_refusals(zh_run):
    from dlcamp.core.errors import BadArgument
    from dlcamp.train.translation import load_translator

    translator = load_translator(zh_run)
    assert translator.translate([]) == []
    with pytest.raises(BadArgument, match="list of sentences"):
        translator.translate("Open file")
    with pytest.raises(BadArgument, match="max_len"):
        translator.translate(["Open"], max_len=0)
    with pytest.raises(BadArgument, match="split the text"):
        translator.translate(["word " * 400])
