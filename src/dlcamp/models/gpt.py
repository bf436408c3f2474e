"""A small decoder-only Transformer language model, GPT-style (Radford et al., 2018, 2019;
d2l section 11.9).

Unlike the encoder-decoder of transformer.py, its blocks are pre-norm (GPT-2):
`x + Dropout(sublayer(LayerNorm(x)))`, with one final LayerNorm before the output layer;
this trains without a learning-rate warm-up in our short CPU runs. Attention is causal and
computed by F.scaled_dot_product_attention (PyTorch's fused kernel: the from-scratch version
is dlcamp.models.attention). Positions are learned (GPT) or sinusoidal; the output layer
may share the input embedding's weights ("tied", Press & Wolf, 2017).

It has the call signature of models/rnn.RNNLM, so the LanguageModel task, perplexity and
`dlcamp generate` use it unchanged:

    forward(tokens (B, T), state=None) -> (logits (B, T, vocab), state)

Here the state is the context: the last <= max_len token ids seen, (B, L) int64. Feeding a
text one token at a time with the returned state gives the logits of one forward pass over
it (while it fits in max_len; after that the oldest tokens drop out of the window). In
training mode a call without a state returns None: nothing is carried between batches.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from dlcamp.core.config import Recipe
from dlcamp.core.errors import BadArgument
from dlcamp.models.attention import sinusoids
from dlcamp.models.registry import register_model


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention where token i sees tokens 0..i: (B, T, d) -> (B, T, d)."""

    def __init__(self, num_hiddens: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        if num_heads < 1 or num_hiddens % num_heads:
            raise ValueError(f"num_heads ({num_heads}) must divide num_hiddens ({num_hiddens})")
        self.num_heads, self.dropout = num_heads, dropout
        self.qkv = nn.Linear(num_hiddens, 3 * num_hiddens)
        self.proj = nn.Linear(num_hiddens, num_hiddens)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = (z.reshape(b, t, self.num_heads, -1).transpose(1, 2)   # (B, heads, T, d/h)
                   for z in self.qkv(x).chunk(3, dim=-1))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.proj(y.transpose(1, 2).reshape(b, t, d))


class GPTBlock(nn.Module):
    """Pre-norm block: x + attn(LN(x)), then x + MLP(LN(x)) with a GELU MLP."""

    def __init__(self, num_hiddens: int, num_heads: int, ffn_num_hiddens: int,
                 dropout: float) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(num_hiddens)
        self.attention = CausalSelfAttention(num_hiddens, num_heads, dropout)
        self.ln2 = nn.LayerNorm(num_hiddens)
        self.mlp = nn.Sequential(nn.Linear(num_hiddens, ffn_num_hiddens), nn.GELU(),
                                 nn.Linear(ffn_num_hiddens, num_hiddens))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attention(self.ln1(x)))
        return x + self.drop(self.mlp(self.ln2(x)))


class GPT(nn.Module):
    """Decoder-only Transformer LM; see the module docstring for forward and its state.

    In eval mode a call with more than max_len tokens (a long prompt) runs window by window,
    each token seeing at most max_len tokens; in training it raises BadArgument (a one-line
    CLI error). Raises ValueError for bad sizes, an unknown `positions`, or a state whose
    batch size differs from the tokens'.
    """

    def __init__(self, vocab_size: int, num_hiddens: int = 128, num_heads: int = 4,
                 num_blks: int = 2, ffn_num_hiddens: int | None = None, dropout: float = 0.1,
                 max_len: int = 256, positions: str = "learned", tie: bool = True) -> None:
        super().__init__()
        if vocab_size < 2 or min(num_hiddens, num_blks, max_len) < 1:
            raise ValueError("vocab_size >= 2 and num_hiddens, num_blks, max_len >= 1 please")
        if positions not in ("learned", "sinusoidal"):
            raise ValueError(f"positions must be 'learned' or 'sinusoidal', got {positions!r}")
        self.vocab_size, self.max_len = vocab_size, max_len
        self.embedding = nn.Embedding(vocab_size, num_hiddens)
        if positions == "learned":
            self.pos = nn.Parameter(torch.zeros(max_len, num_hiddens))
            nn.init.normal_(self.pos, std=0.02)
        else:
            self.register_buffer("pos", sinusoids(max_len, num_hiddens), persistent=False)
        self.drop = nn.Dropout(dropout)
        self.blks = nn.ModuleList(
            GPTBlock(num_hiddens, num_heads, ffn_num_hiddens or 4 * num_hiddens, dropout)
            for _ in range(num_blks))
        self.ln_f = nn.LayerNorm(num_hiddens)
        self.output = nn.Linear(num_hiddens, vocab_size, bias=False)
        self._init_weights(num_blks)
        if tie:
            self.output.weight = self.embedding.weight

    def _init_weights(self, num_blks: int) -> None:
        """GPT-2's: N(0, 0.02) weights, zero biases, and the projections that add into the
        residual stream scaled by 1/sqrt(2 * blocks) (Radford et al., 2019, section 2.3)."""
        for name, p in self.named_parameters():
            if name == "pos":
                continue
            if name.endswith("bias"):
                nn.init.zeros_(p)
            elif p.dim() == 2:
                residual = name.endswith(("proj.weight", "mlp.2.weight"))
                nn.init.normal_(p, std=0.02 / (math.sqrt(2 * num_blks) if residual else 1.0))

    state_batch_dim = 0  # the state is the context (B, L): rows first (RNN states: dim 1)

    def forward(self, tokens: torch.Tensor, state: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        t = tokens.shape[1]
        if t > self.max_len and not self.training:  # a long prompt: window by window
            pieces = []
            for i in range(0, t, self.max_len):
                logits, state = self(tokens[:, i:i + self.max_len], state)
                pieces.append(logits)
            return torch.cat(pieces, dim=1), state
        if t > self.max_len:
            raise BadArgument(f"{t} tokens at once, but this GPT trains on at most "
                              f"{self.max_len} (its max_len): use --num-steps "
                              f"{self.max_len} or less")
        context = tokens
        if state is not None:
            if state.shape[0] != tokens.shape[0]:
                raise ValueError(f"the state holds {state.shape[0]} rows, the tokens "
                                 f"{tokens.shape[0]}")
            context = torch.cat([state, tokens], dim=1)[:, -self.max_len:]
        n = context.shape[1]
        x = self.drop(self.embedding(context) + self.pos[:n].to(self.embedding.weight.dtype))
        for blk in self.blks:
            x = blk(x)
        logits = self.output(self.ln_f(x[:, n - t:]))                   # (B, T, vocab)
        keep = state is not None or not self.training
        return logits, (context if keep else None)


# Adam with clipping at 1 and a cosine schedule, as the LSTM's LM_RECIPE, at the book's
# Transformer learning rate scale (d2l 11.7 uses 0.0015); 64-token windows.
GPT_RECIPE = Recipe(epochs=12, lr=0.001, optimizer="adam", grad_clip=1.0, batch_size=32,
                    num_steps=64, schedule="cosine")


@register_model("gpt", recipe=GPT_RECIPE)
def gpt(vocab_size: int = 100, num_hiddens: int = 128, num_heads: int = 4, num_blks: int = 2,
        ffn_num_hiddens: int = 0, dropout: float = 0.1, max_len: int = 256,
        positions: str = "learned", tie: bool = True) -> GPT:
    """Decoder-only Transformer language model, GPT-style (pre-norm, causal attention)"""
    return GPT(vocab_size, num_hiddens, num_heads, num_blks, ffn_num_hiddens or None, dropout,
               max_len, positions, tie)
