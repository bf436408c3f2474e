"""Attention: masked softmax, additive and scaled dot-product scoring, multi-head attention and
sinusoidal positional encoding (d2l chapter 11, "Attention Mechanisms and Transformers").

Shapes follow one convention: queries (B, Q, d_q), keys (B, K, d_k), values (B, K, d_v), and
`valid_lens` saying how many keys each query may look at: None (all), (B,) (one length per
example, e.g. the real source length) or (B, Q) (one per query, e.g. a causal mask).

The one place we differ from the book on purpose: a query with no valid key gets a row of
zeros, not the uniform row that the book's "fill with -1e6" trick produces. A fully masked row
then contributes nothing, and nothing is averaged over padding.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def sequence_mask(x: torch.Tensor, valid_len: torch.Tensor, value: float = 0.0) -> torch.Tensor:
    """A copy of `x` (..., K) with the entries at positions >= valid_len set to `value`.

    `valid_len` has shape x.shape[:-1] (or one that broadcasts to it), e.g. x (B, K) and
    valid_len (B,): row b keeps its first valid_len[b] entries.
    """
    keep = torch.arange(x.shape[-1], device=x.device) < valid_len.unsqueeze(-1)
    return x.masked_fill(~keep, value)


def _key_mask(scores: torch.Tensor, valid_lens: torch.Tensor) -> torch.Tensor:
    """Boolean (B, Q, K): True where the key is valid for that query."""
    if valid_lens.shape[0] != scores.shape[0]:
        raise ValueError(f"valid_lens of shape {tuple(valid_lens.shape)} do not fit scores "
                         f"{tuple(scores.shape)}: one length per batch row, (B,) or (B, Q)")
    if valid_lens.dim() == 1:
        valid_lens = valid_lens.unsqueeze(-1)                          # (B, 1): same for all Q
    if valid_lens.shape != scores.shape[:-1] and valid_lens.shape[-1] != 1:
        raise ValueError(f"valid_lens of shape {tuple(valid_lens.shape)} do not fit scores "
                         f"{tuple(scores.shape)}: use (B,) or (B, Q)")
    keys = torch.arange(scores.shape[-1], device=scores.device)
    return keys < valid_lens.unsqueeze(-1)


def masked_softmax(scores: torch.Tensor, valid_lens: torch.Tensor | None = None) -> torch.Tensor:
    """Softmax over the last axis of `scores` (B, Q, K), only over the first valid_lens keys.

    valid_lens: None, (B,) or (B, Q). Masked keys get weight exactly 0; a query row with no
    valid key (valid length 0) is all zeros. Gradients are finite everywhere (no -inf, no NaN).
    Raises ValueError when valid_lens has another shape.
    """
    if valid_lens is None:
        return torch.softmax(scores, dim=-1)
    keep = _key_mask(scores, valid_lens)
    # The most negative finite number: exp(min - max) is exactly 0 next to any real score, so
    # the valid part equals a plain softmax over it; a fully masked row comes out uniform and
    # is then zeroed by the final masked_fill (whose backward passes zero gradient there).
    low = torch.finfo(scores.dtype).min
    weights = torch.softmax(scores.masked_fill(~keep, low), dim=-1)
    return weights.masked_fill(~keep, 0.0)


class AdditiveAttention(nn.Module):
    """Additive (Bahdanau) scoring: a(q, k) = w_v^T tanh(W_q q + W_k k).

    forward(queries (B, Q, query_size), keys (B, K, key_size), values (B, K, d_v), valid_lens)
    -> (B, Q, d_v); the weights (B, Q, K) stay in `.attention_weights`.
    """

    def __init__(self, key_size: int, query_size: int, num_hiddens: int,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.W_k = nn.Linear(key_size, num_hiddens, bias=False)
        self.W_q = nn.Linear(query_size, num_hiddens, bias=False)
        self.w_v = nn.Linear(num_hiddens, 1, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.attention_weights: torch.Tensor | None = None

    def forward(self, queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                valid_lens: torch.Tensor | None = None) -> torch.Tensor:
        # (B, Q, 1, h) + (B, 1, K, h): every query against every key, then one score each
        features = torch.tanh(self.W_q(queries).unsqueeze(2) + self.W_k(keys).unsqueeze(1))
        scores = self.w_v(features).squeeze(-1)                           # (B, Q, K)
        self.attention_weights = masked_softmax(scores, valid_lens)
        return torch.bmm(self.dropout(self.attention_weights), values)


class DotProductAttention(nn.Module):
    """Scaled dot-product scoring: a(q, k) = q.k / sqrt(d) (Vaswani et al., 2017, eq. 1).

    forward(queries (B, Q, d), keys (B, K, d), values (B, K, d_v), valid_lens) -> (B, Q, d_v);
    the weights (B, Q, K) stay in `.attention_weights`. Dropout acts on the weights.
    """

    def __init__(self, dropout: float = 0.0) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.attention_weights: torch.Tensor | None = None

    def forward(self, queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                valid_lens: torch.Tensor | None = None) -> torch.Tensor:
        scores = torch.bmm(queries, keys.transpose(1, 2)) / math.sqrt(queries.shape[-1])
        self.attention_weights = masked_softmax(scores, valid_lens)
        return torch.bmm(self.dropout(self.attention_weights), values)


class MultiHeadAttention(nn.Module):
    """num_heads scaled dot-product attentions side by side, each on its own num_hiddens /
    num_heads slice of the projected queries, keys and values; their outputs are
    concatenated and projected by W_o (Vaswani et al., 2017, section 3.2.2).

    forward(queries (B, Q, num_hiddens), keys (B, K, num_hiddens), values (B, K, num_hiddens),
    valid_lens None | (B,) | (B, Q)) -> (B, Q, num_hiddens). `.attention_weights` is
    (B, num_heads, Q, K). Raises ValueError when num_heads does not divide num_hiddens.
    """

    def __init__(self, num_hiddens: int, num_heads: int, dropout: float = 0.0,
                 bias: bool = False) -> None:
        super().__init__()
        if num_heads < 1 or num_hiddens % num_heads:
            raise ValueError(f"num_heads ({num_heads}) must divide num_hiddens ({num_hiddens})")
        self.num_hiddens, self.num_heads = num_hiddens, num_heads
        self.attention = DotProductAttention(dropout)
        self.W_q = nn.Linear(num_hiddens, num_hiddens, bias=bias)
        self.W_k = nn.Linear(num_hiddens, num_hiddens, bias=bias)
        self.W_v = nn.Linear(num_hiddens, num_hiddens, bias=bias)
        self.W_o = nn.Linear(num_hiddens, num_hiddens, bias=bias)

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """(B, n, num_hiddens) -> (B * num_heads, n, num_hiddens / num_heads), head-major."""
        b, n, _ = x.shape
        x = x.reshape(b, n, self.num_heads, -1).transpose(1, 2)
        return x.reshape(b * self.num_heads, n, -1)

    def merge_heads(self, x: torch.Tensor) -> torch.Tensor:
        """The inverse of split_heads."""
        bh, n, d = x.shape
        x = x.reshape(bh // self.num_heads, self.num_heads, n, d).transpose(1, 2)
        return x.reshape(bh // self.num_heads, n, self.num_heads * d)

    @property
    def attention_weights(self) -> torch.Tensor | None:
        w = self.attention.attention_weights
        return None if w is None else w.reshape(-1, self.num_heads, *w.shape[1:])

    def forward(self, queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                valid_lens: torch.Tensor | None = None) -> torch.Tensor:
        q = self.split_heads(self.W_q(queries))
        k = self.split_heads(self.W_k(keys))
        v = self.split_heads(self.W_v(values))
        if valid_lens is not None:  # example b's lengths serve its heads b*h ... b*h + h - 1
            valid_lens = valid_lens.repeat_interleave(self.num_heads, dim=0)
        return self.W_o(self.merge_heads(self.attention(q, k, v, valid_lens)))


def copy_mha_weights(ours: MultiHeadAttention, theirs: nn.MultiheadAttention) -> None:
    """Copy our W_q, W_k, W_v (stacked into torch's in_proj_weight (3h, h)) and W_o (torch's
    out_proj) into `theirs`; where ours has no bias, torch's biases are set to zero."""
    with torch.no_grad():
        theirs.in_proj_weight.copy_(torch.cat([ours.W_q.weight, ours.W_k.weight,
                                               ours.W_v.weight]))
        theirs.out_proj.weight.copy_(ours.W_o.weight)
        if ours.W_q.bias is None:
            theirs.in_proj_bias.zero_()
            theirs.out_proj.bias.zero_()
        else:
            theirs.in_proj_bias.copy_(torch.cat([ours.W_q.bias, ours.W_k.bias, ours.W_v.bias]))
            theirs.out_proj.bias.copy_(ours.W_o.bias)


def copy_to_torch_mha(ours: MultiHeadAttention) -> nn.MultiheadAttention:
    """A new torch.nn.MultiheadAttention (batch_first=True) with the weights of `ours` (see
    copy_mha_weights), its dropout and its train/eval mode. Compare the two in eval mode."""
    theirs = nn.MultiheadAttention(ours.num_hiddens, ours.num_heads,
                                   dropout=ours.attention.dropout.p, bias=True, batch_first=True)
    theirs = theirs.to(device=ours.W_q.weight.device, dtype=ours.W_q.weight.dtype)
    copy_mha_weights(ours, theirs)
    return theirs.train(ours.training)


def sinusoids(max_len: int, num_hiddens: int) -> torch.Tensor:
    """(max_len, num_hiddens): P[i, 2j] = sin(i / 10000^(2j/d)), P[i, 2j+1] = cos(same angle)
    (Vaswani et al., 2017, section 3.5). An odd num_hiddens is allowed (the last sine column
    has no cosine partner)."""
    position = torch.arange(max_len, dtype=torch.float32).unsqueeze(1)
    freq = torch.pow(10000.0, -torch.arange(0, num_hiddens, 2, dtype=torch.float32)
                     / num_hiddens)
    angles = position * freq                                            # (max_len, ceil(d/2))
    p = torch.zeros(max_len, num_hiddens)
    p[:, 0::2] = torch.sin(angles)
    p[:, 1::2] = torch.cos(angles[:, : num_hiddens // 2])
    return p


class PositionalEncoding(nn.Module):
    """Adds the sinusoidal position table to x (B, T, num_hiddens), then dropout.

    forward(x, positions=None): positions (B, T) int64 says which row of the table each token
    takes (default 0..T-1; an incremental decoder passes its step counts). The table is a
    non-persistent buffer: it moves with .to(device) and stays out of the state dict.
    Raises ValueError for a position >= max_len.
    """

    def __init__(self, num_hiddens: int, dropout: float = 0.0, max_len: int = 1000) -> None:
        super().__init__()
        self.max_len = max_len
        self.dropout = nn.Dropout(dropout)
        self.register_buffer("P", sinusoids(max_len, num_hiddens), persistent=False)

    def forward(self, x: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        if positions is None:
            if x.shape[1] > self.max_len:
                raise ValueError(f"{x.shape[1]} positions, but the table has max_len "
                                 f"{self.max_len}")
            return self.dropout(x + self.P[: x.shape[1]].to(x.dtype))
        if positions.numel() and int(positions.max()) >= self.max_len:
            raise ValueError(f"position {int(positions.max())} >= max_len {self.max_len}")
        return self.dropout(x + self.P[positions].to(x.dtype))
