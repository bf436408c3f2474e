"""Attention pieces against PyTorch's own: masked softmax, scaled dot-product attention,
multi-head attention, and the positional encoding table."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from dlcamp.models.attention import (
    AdditiveAttention,
    DotProductAttention,
    MultiHeadAttention,
    PositionalEncoding,
    copy_to_torch_mha,
    masked_softmax,
    sequence_mask,
)


def test_sequence_mask_keeps_the_first_valid_len_entries():
    x = torch.ones(2, 4)
    out = sequence_mask(x, torch.tensor([1, 3]), value=-1.0)
    assert out.tolist() == [[1, -1, -1, -1], [1, 1, 1, -1]]
    assert x.eq(1).all()  # a copy, not in place


@pytest.mark.parametrize("lens_shape", ["per-example", "per-query"])
def test_masked_softmax_equals_softmax_on_the_valid_part_and_zero_rows(lens_shape):
    torch.manual_seed(0)
    scores = torch.randn(3, 4, 5, dtype=torch.float64, requires_grad=True)
    if lens_shape == "per-example":
        lens = torch.tensor([2, 0, 5])
        per_row = lens.unsqueeze(1).expand(3, 4)
    else:
        per_row = lens = torch.tensor([[1, 2, 3, 0], [0, 0, 5, 4], [5, 1, 2, 3]])
    weights = masked_softmax(scores, lens)
    for b in range(3):
        for q in range(4):
            n = int(per_row[b, q])
            row = weights[b, q]
            if n == 0:
                assert row.eq(0).all()  # zeros, not the uniform row of the -1e6 trick
            else:
                torch.testing.assert_close(row[:n], torch.softmax(scores[b, q, :n], -1))
                assert row[n:].eq(0).all()
    (weights * torch.randn_like(weights)).sum().backward()
    assert torch.isfinite(scores.grad).all()
    assert scores.grad[per_row.unsqueeze(-1).expand(3, 4, 5) <= torch.arange(5)].eq(0).all()


def test_masked_softmax_refuses_lengths_of_the_wrong_shape():
    with pytest.raises(ValueError, match=r"\(B,\) or \(B, Q\)"):
        masked_softmax(torch.randn(2, 3, 4), torch.ones(2, 5, dtype=torch.long))


def test_masked_softmax_without_lengths_is_softmax():
    s = torch.randn(2, 3, 4)
    torch.testing.assert_close(masked_softmax(s), torch.softmax(s, -1))


@pytest.mark.parametrize("per_query", [False, True])
def test_scaled_dot_product_equals_torchs(per_query):
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 3, 8), torch.randn(2, 6, 8), torch.randn(2, 6, 5)
    lens = torch.tensor([[1, 4, 6], [2, 2, 3]]) if per_query else torch.tensor([4, 6])
    attention = DotProductAttention(dropout=0.5).eval()
    ours = attention(q, k, v, lens)
    keys = torch.arange(6)
    allowed = keys < (lens.unsqueeze(-1) if per_query else lens.view(2, 1, 1))  # (B, Q|1, K)
    theirs = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed.expand(2, 3, 6))
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=1e-5)
    assert attention.attention_weights.shape == (2, 3, 6)


def test_additive_attention_of_equal_keys_averages_the_values():
    """All keys equal -> equal scores -> the mean of the valid values (the book's check)."""
    attention = AdditiveAttention(key_size=2, query_size=20, num_hiddens=8).eval()
    values = torch.arange(40, dtype=torch.float32).reshape(1, 10, 4).repeat(2, 1, 1)
    out = attention(torch.randn(2, 1, 20), torch.ones(2, 10, 2), values, torch.tensor([2, 6]))
    torch.testing.assert_close(out[0, 0], values[0, :2].mean(0))
    torch.testing.assert_close(out[1, 0], values[1, :6].mean(0))
    assert attention.attention_weights.shape == (2, 1, 10)


@pytest.mark.parametrize("bias", [False, True])
def test_multi_head_attention_equals_torchs_with_copied_weights(bias):
    torch.manual_seed(0)
    ours = MultiHeadAttention(num_hiddens=16, num_heads=4, dropout=0.1, bias=bias).eval()
    theirs = copy_to_torch_mha(ours).eval()
    q, kv = torch.randn(3, 5, 16), torch.randn(3, 7, 16)
    lens = torch.tensor([7, 3, 1])
    out = ours(q, kv, kv, lens)
    ref, ref_weights = theirs(q, kv, kv, key_padding_mask=torch.arange(7) >= lens[:, None],
                              need_weights=True, average_attn_weights=False)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours.attention_weights, ref_weights, atol=1e-5, rtol=1e-5)
    # per-query lengths (a causal mask in self-attention) against torch's attn_mask
    causal = torch.arange(1, 6).expand(3, 5)
    out = ours(q, q, q, causal)
    ref, _ = theirs(q, q, q, attn_mask=torch.ones(5, 5, dtype=torch.bool).triu(1))
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_multi_head_attention_needs_heads_that_divide_the_width():
    with pytest.raises(ValueError, match="must divide"):
        MultiHeadAttention(10, 4)


def test_positional_encoding_table_and_offsets():
    pe = PositionalEncoding(num_hiddens=6, dropout=0.0, max_len=50).eval()
    x = torch.zeros(2, 10, 6)
    table = pe(x)[0]
    i, j = 7, 1  # column 2j is sin(i / 10000^(2j/d)), column 2j+1 the cosine of the same angle
    angle = i / 10000 ** (2 * j / 6)
    assert table[i, 2 * j].item() == pytest.approx(math.sin(angle), abs=1e-6)
    assert table[i, 2 * j + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)
    later = pe(torch.zeros(2, 1, 6), positions=torch.tensor([[7], [3]]))
    torch.testing.assert_close(later[:, 0], torch.stack([table[7], table[3]]))
    assert "P" not in pe.state_dict()
    with pytest.raises(ValueError, match="max_len"):
        pe(torch.zeros(1, 51, 6))
    odd = PositionalEncoding(num_hiddens=5)(torch.zeros(1, 3, 5))
    assert odd.shape == (1, 3, 5)
