"""Recurrent language models: scratch cells equal torch.nn's, training lowers perplexity,
generation keeps the poem's shape, and the CLI trains, generates and refuses bad input."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from dlcamp.models import create_model
from dlcamp.models.rnn import RecurrentScratch
from dlcamp.text import Vocab
from dlcamp.text.generate import LINE_ENDS, generate, generate_poem
from dlcamp.train.task import LanguageModel
from test_cli import assert_one_line_error, dlcamp

TORCH_LAYERS = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("layers,bidirectional", [(1, False), (2, False), (1, True), (2, True)])
def test_scratch_layer_equals_torch_nn(cell, layers, bidirectional):
    """Same weights (copied by name), same inputs and initial state: same outputs, final state
    and gradients, in float64."""
    torch.manual_seed(0)
    ours = RecurrentScratch(cell, 5, 7, layers, bidirectional).double()
    theirs = TORCH_LAYERS[cell](5, 7, num_layers=layers, bidirectional=bidirectional).double()
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(6, 3, 5, dtype=torch.float64)  # (T, B, E)
    h0 = torch.randn(layers * (2 if bidirectional else 1), 3, 7, dtype=torch.float64)
    state = (h0, torch.randn_like(h0)) if cell == "lstm" else h0
    out_ours, s_ours = ours(x, state)
    out_theirs, s_theirs = theirs(x, state)
    torch.testing.assert_close(out_ours, out_theirs)
    for a, b in zip(s_ours if cell == "lstm" else [s_ours],
                    s_theirs if cell == "lstm" else [s_theirs], strict=True):
        torch.testing.assert_close(a, b)
    weights = torch.randn_like(out_ours)
    (out_ours * weights).sum().backward()
    (out_theirs * weights).sum().backward()
    for (name, p), q in zip(ours.named_parameters(), theirs.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, msg=name)


@pytest.mark.parametrize("name", ["rnn", "gru", "lstm", "deep-lstm", "bilstm"])
def test_scratch_and_concise_language_models_share_weights(name):
    concise = create_model(name, vocab_size=30, num_hiddens=16, embed_size=8)
    scratch = create_model(f"{name}-scratch", vocab_size=30, num_hiddens=16, embed_size=8)
    scratch.load_state_dict(concise.state_dict())
    tokens = torch.randint(0, 30, (4, 9))
    logits, _ = concise(tokens)
    assert logits.shape == (4, 9, 30)
    torch.testing.assert_close(scratch(tokens)[0], logits, atol=1e-5, rtol=1e-4)


def test_language_model_task_carries_state_only_within_a_stream():
    model = create_model("lstm", vocab_size=20, num_hiddens=8, embed_size=4)
    task = LanguageModel()
    x = torch.randint(0, 20, (2, 5))
    loss, sums = task.step(model, (x, x, torch.tensor(True)))
    assert sums["n"] == 10 and loss.item() == pytest.approx(sums["loss"].item() / 10)
    assert math.log(20) - 1 < loss.item() < math.log(20) + 1  # an untrained model: ~log V
    first = task.state[0].clone()
    task.step(model, (x, x, torch.tensor(False)))  # continues: the state is used, not reset
    continued = task.state[0].clone()
    task.step(model, (x, x, torch.tensor(True)))   # fresh: starts from zeros again
    torch.testing.assert_close(task.state[0], first)
    assert not torch.allclose(continued, first)
    assert not task.state[0].requires_grad or task.state[0].grad_fn is not None


def _tiny_poem_model():
    """A model that was never trained, over a vocabulary with the poem punctuation."""
    tokens = list("床前明月光疑是地上霜举头望低思故乡，。\n")
    vocab = Vocab([tokens])
    torch.manual_seed(0)
    return create_model("gru", vocab_size=len(vocab), num_hiddens=16, embed_size=8), vocab


@pytest.mark.parametrize("chars", [5, 7])
def test_poem_mode_keeps_the_quatrain_shape(chars):
    model, vocab = _tiny_poem_model()
    poem = generate_poem(model, vocab, "床前", chars_per_line=chars, lines=4, seed=1,
                         temperature=1.5)
    couplets = poem.split("\n")
    assert len(couplets) == 2, poem
    for couplet in couplets:
        first, second = couplet.split("，")
        assert len(first) == chars and second.endswith("。") and len(second) == chars + 1
        assert not set(first + second[:-1]) & set("，。\n")
    assert poem.startswith("床前")


def test_generate_is_repeatable_and_refuses_unknown_prompts():
    model, vocab = _tiny_poem_model()
    a = generate(model, vocab, "明月", 20, seed=3)
    assert a == generate(model, vocab, "明月", 20, seed=3) and a.startswith("明月")
    assert len(a) == 22
    assert generate(model, vocab, "明", 5, greedy=True) == generate(model, vocab, "明", 5,
                                                                     greedy=True, seed=9)
    with pytest.raises(ValueError, match="never saw"):
        generate(model, vocab, "春眠", 5)
    with pytest.raises(ValueError, match="empty"):
        generate(model, vocab, "", 5)
    assert set(LINE_ENDS) <= set(vocab.idx_to_token)


def test_cli_trains_a_language_model_generates_and_resumes(tmp_path):
    out = tmp_path / "poems"
    train = dlcamp("train", "--model", "gru", "--dataset", "tang300", "--quick", "--epochs",
                   "2", "--out", str(out)).stdout
    assert "val_ppl" in train and "epoch 2/2" in train
    lines = (out / "metrics.csv").read_text().splitlines()
    header = lines[0].split(",")
    ppl = [float(r.split(",")[header.index("val_ppl")]) for r in lines[1:]]
    train_loss = [float(r.split(",")[header.index("train_loss")]) for r in lines[1:]]
    assert train_loss[-1] < train_loss[0] and ppl[-1] < ppl[0], (train_loss, ppl)
    evaluated = json.loads(dlcamp("evaluate", str(out), "--json").stdout)
    assert evaluated["split"] == "val" and evaluated["ppl"] == pytest.approx(ppl[-1], rel=1e-4)
    poem = dlcamp("generate", str(out), "--prompt", "床前", "--seed", "0").stdout.strip()
    assert len(poem.splitlines()) == 2 and poem.startswith("床前"), poem
    free = dlcamp("generate", str(out), "--prompt", "床前", "--poem", "off", "--length", "30",
                  "--seed", "0").stdout.strip()
    assert free.startswith("床前") and len(free) >= 20
    resumed = dlcamp("train", "--resume", str(out), "--epochs", "3").stdout
    assert "epoch 3/3" in resumed


@pytest.mark.parametrize("args,fragments", [
    (["train", "--model", "lstm", "--quick"], ["language model", "tang300"]),
    (["train", "--model", "mlp", "--dataset", "tang300", "--quick"], ["not a language model"]),
    (["train", "--model", "lstm", "--dataset", "tang300", "--engine", "numpy", "--quick"],
     ["unknown NumPy engine model 'lstm'"]),
])
def test_language_model_bad_input(args, fragments, tmp_path):
    assert_one_line_error(dlcamp(*args, "--out", str(tmp_path / "r"), check=False),
                          *fragments)


def test_generate_refuses_an_image_model(tmp_path):
    out = tmp_path / "img"
    dlcamp("train", "--model", "softmax", "--quick", "--epochs", "1", "--out", str(out))
    result = dlcamp("generate", str(out), "--prompt", "a", check=False)
    assert_one_line_error(result, "not a language model")


def test_data_info_lists_the_text_corpora(isolated_data):
    out = dlcamp("data", "info").stdout
    assert "tang300" in out and "quotes-en" in out and "apt-get install fortunes-zh" in out
    found = dlcamp("data", "info", "tang300", env={"DLCAMP_SYSTEM_DATA": ""}).stdout
    assert "282 train / 31 val records" in found and "张九龄" in found
