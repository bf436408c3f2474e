"""The from-scratch Transformer against torch.nn.Transformer with copied weights, and the
GPT-style language model's incremental state against its full forward pass."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dlcamp.core.errors import BadArgument
from dlcamp.models import create_model
from dlcamp.models.gpt import GPT
from dlcamp.models.transformer import Transformer, TransformerEncoderBlock, copy_to_torch
from dlcamp.train.speed import num_threads


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny matrices: one thread is as fast, and ten times faster on a busy 2-core machine."""
    with num_threads(1):
        yield


def _batch(seed: int = 0):
    torch.manual_seed(seed)
    src = torch.randint(4, 30, (3, 7))
    src_len = torch.tensor([7, 4, 2])
    src[torch.arange(7) >= src_len[:, None]] = 1  # padding
    return src, src_len, torch.randint(4, 40, (3, 5))


def test_transformer_equals_torch_nn_transformer_with_copied_weights():
    """Post-norm, batch-first, eval mode (dropout off): the same logits to 1e-5, with the
    source padding masked in the encoder and in the cross-attention and a causal target mask."""
    src, src_len, tgt = _batch()
    ours = Transformer(30, 40, src_pad=1, tgt_pad=1, num_hiddens=16, ffn_num_hiddens=24,
                       num_heads=4, num_blks=2, dropout=0.1).eval()
    theirs = copy_to_torch(ours).eval()
    padding = torch.arange(7) >= src_len[:, None]                         # True: ignore
    causal = nn.Transformer.generate_square_subsequent_mask(5)
    logits = ours(src, src_len, tgt)
    memory = theirs.encoder(ours.encoder.embed(src), src_key_padding_mask=padding)
    out = theirs.decoder(ours.decoder.embed(tgt), memory, tgt_mask=causal, tgt_is_causal=True,
                         memory_key_padding_mask=padding)
    torch.testing.assert_close(logits, ours.decoder.dense(out), atol=1e-5, rtol=1e-5)
    real = ~padding  # torch's encoder may zero the padded rows; only real ones are compared
    enc = ours.encoder(src, src_len)
    torch.testing.assert_close(enc[real], memory[real], atol=1e-5, rtol=1e-5)
    assert len(ours.encoder.attention_weights) == 2
    assert ours.encoder.attention_weights[0].shape == (3, 4, 7, 7)
    assert ours.attention_weights[1].shape == (3, 4, 5, 7)              # decoder over source
    # masked source keys get no weight from any decoder query
    assert ours.attention_weights[0][2, :, :, 2:].eq(0).all()


def test_encoder_block_gradients_equal_torchs():
    torch.manual_seed(0)
    model = Transformer(10, 10, num_hiddens=8, ffn_num_hiddens=16, num_heads=2, num_blks=1,
                        dropout=0.0)
    ours: TransformerEncoderBlock = model.encoder.blks[0]
    theirs = copy_to_torch(model).encoder.layers[0]
    x = torch.randn(2, 5, 8)
    lens = torch.tensor([5, 3])
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    w = torch.randn(2, 5, 8)
    (ours(a, lens) * w).sum().backward()
    (theirs(b, src_key_padding_mask=torch.arange(5) >= lens[:, None]) * w).sum().backward()
    torch.testing.assert_close(a.grad, b.grad, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(ours.ffn.dense1.weight.grad, theirs.linear1.weight.grad,
                               atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("positions,tie", [("learned", True), ("sinusoidal", False)])
def test_gpt_fed_token_by_token_equals_one_forward_pass(positions, tie):
    torch.manual_seed(0)
    model = GPT(vocab_size=20, num_hiddens=16, num_heads=2, num_blks=2, max_len=12,
                positions=positions, tie=tie).eval()
    tokens = torch.randint(0, 20, (2, 9))
    full, state = model(tokens)
    assert state.shape == (2, 9)                     # eval: the context comes back
    logits, state = model(tokens[:, :4])            # a prompt, then one token at a time
    steps = [logits]
    for t in range(4, 9):
        logits, state = model(tokens[:, t:t + 1], state)
        steps.append(logits)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)
    # past max_len the window slides: the state keeps the last max_len tokens, and the
    # logits are those of one forward pass over that window
    extra = torch.randint(0, 20, (2, 6))
    for t in range(6):
        logits, state = model(extra[:, t:t + 1], state)
    window = torch.cat([tokens, extra], dim=1)[:, -12:]
    assert state.shape == (2, 12) and torch.equal(state, window)
    torch.testing.assert_close(logits, model(window)[0][:, -1:], atol=1e-5, rtol=1e-5)
    assert (model.output.weight is model.embedding.weight) == tie


def test_gpt_in_training_carries_nothing_and_refuses_long_inputs():
    model = create_model("gpt", vocab_size=30, max_len=8)
    logits, state = model.train()(torch.randint(0, 30, (4, 8)))
    assert logits.shape == (4, 8, 30) and state is None
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    with pytest.raises(BadArgument, match="at most 8"):
        model(torch.randint(0, 30, (1, 9)))
    # in eval mode a long prompt goes through window by window: its last token sees the
    # last 8 tokens, as generation past the window does
    long = torch.randint(0, 30, (1, 20))
    with torch.no_grad():
        logits, state = model.eval()(long)
        assert logits.shape == (1, 20, 30) and torch.equal(state, long[:, -8:])
        torch.testing.assert_close(logits[:, -1], model(long[:, -8:])[0][:, -1])
    model.train()
    with pytest.raises(ValueError, match="rows"):
        model.eval()(torch.randint(0, 30, (2, 3)), torch.zeros(3, 4, dtype=torch.long))


def test_gpt_learns_a_repeating_pattern():
    """Fifty Adam steps on a period-5 sequence: the next token becomes certain."""
    torch.manual_seed(0)
    model = GPT(vocab_size=8, num_hiddens=32, num_heads=2, num_blks=1, dropout=0.0,
                max_len=16)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    seq = torch.tensor([1, 4, 2, 7, 3] * 8)
    for _ in range(50):
        start = torch.randint(0, 20, (8,))
        batch = torch.stack([seq[s:s + 13] for s in start.tolist()])
        logits, _ = model(batch[:, :-1])
        loss = nn.functional.cross_entropy(logits.reshape(-1, 8), batch[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1, loss.item()


def test_a_gpt_run_sees_only_positions_it_trained():
    """A run's GPT gets max_len = --num-steps: evaluation, which carries the context from
    batch to batch, and generation never reach position rows that training never updated."""
    from dlcamp.train.run import build, make_config

    cfg = make_config("gpt", "tang300", quick=True, num_steps=16)
    trainer, loaders, _ = build(cfg, None, progress=False, log=lambda _: None)
    assert trainer.model.max_len == 16
    trainer.model.eval()
    state = None
    with torch.no_grad():
        for x, _, _ in list(loaders.val)[:3]:
            _, state = trainer.model(x, state)
            assert state.shape[1] <= 16
