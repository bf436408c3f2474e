"""The Transformer encoder-decoder from scratch (Vaswani et al., 2017; d2l section 11.7).

Post-norm blocks as in the paper, the book and torch.nn.Transformer's default: each sub-layer
is `LayerNorm(x + Dropout(sublayer(x)))`. The encoder block has self-attention and a
position-wise feed-forward network; the decoder block has masked (causal) self-attention,
attention over the encoder outputs (masked by the source length), and the feed-forward net.

Incremental decoding keeps, per decoder block, every input that block has seen so far (the
keys and values of its self-attention), like the book's `state[2][i]`. `copy_to_torch` puts
our weights into a `torch.nn.Transformer` so a test can check that both compute the same.

Embeddings are multiplied by sqrt(num_hiddens) before the positional encoding (paper,
section 3.4); we initialise them N(0, 1/num_hiddens) as fairseq does, so the scaled embedding
has unit size next to the sinusoids (the book keeps PyTorch's N(0, 1), which drowns them).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from dlcamp.core.config import Recipe
from dlcamp.models.attention import MultiHeadAttention, PositionalEncoding, copy_mha_weights
from dlcamp.models.registry import register_model
from dlcamp.models.seq2seq import Decoder, Encoder, EncoderDecoder, State


class PositionWiseFFN(nn.Module):
    """The same two-layer MLP at every position: (B, T, d) -> (B, T, d)."""

    def __init__(self, num_hiddens: int, ffn_num_hiddens: int) -> None:
        super().__init__()
        self.dense1 = nn.Linear(num_hiddens, ffn_num_hiddens)
        self.relu = nn.ReLU()
        self.dense2 = nn.Linear(ffn_num_hiddens, num_hiddens)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dense2(self.relu(self.dense1(x)))


class AddNorm(nn.Module):
    """Residual connection then layer normalisation: LayerNorm(x + Dropout(y))."""

    def __init__(self, num_hiddens: int, dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.ln = nn.LayerNorm(num_hiddens)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.ln(x + self.dropout(y))


class TransformerEncoderBlock(nn.Module):
    """Self-attention over the source, then the FFN; (B, S, d), src_len (B,) -> (B, S, d)."""

    def __init__(self, num_hiddens: int, ffn_num_hiddens: int, num_heads: int,
                 dropout: float = 0.0, bias: bool = False) -> None:
        super().__init__()
        self.attention = MultiHeadAttention(num_hiddens, num_heads, dropout, bias)
        self.addnorm1 = AddNorm(num_hiddens, dropout)
        self.ffn = PositionWiseFFN(num_hiddens, ffn_num_hiddens)
        self.addnorm2 = AddNorm(num_hiddens, dropout)

    def forward(self, x: torch.Tensor, valid_lens: torch.Tensor | None) -> torch.Tensor:
        y = self.addnorm1(x, self.attention(x, x, x, valid_lens))
        return self.addnorm2(y, self.ffn(y))


class TransformerDecoderBlock(nn.Module):
    """Causal self-attention, attention over the encoder outputs, then the FFN.

    forward(x (B, t, d), past (B, p, d) this block's earlier inputs, enc (B, S, d), src_len
    (B,), positions (B, t) of x's tokens) -> (output (B, t, d), keys (B, p + t, d), the new
    `past`). Token i may attend to every key at a position <= its own.
    """

    def __init__(self, num_hiddens: int, ffn_num_hiddens: int, num_heads: int,
                 dropout: float = 0.0, bias: bool = False) -> None:
        super().__init__()
        self.attention1 = MultiHeadAttention(num_hiddens, num_heads, dropout, bias)
        self.addnorm1 = AddNorm(num_hiddens, dropout)
        self.attention2 = MultiHeadAttention(num_hiddens, num_heads, dropout, bias)
        self.addnorm2 = AddNorm(num_hiddens, dropout)
        self.ffn = PositionWiseFFN(num_hiddens, ffn_num_hiddens)
        self.addnorm3 = AddNorm(num_hiddens, dropout)

    def forward(self, x: torch.Tensor, past: torch.Tensor, enc: torch.Tensor,
                src_len: torch.Tensor, positions: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        keys = torch.cat([past, x], dim=1)
        y = self.addnorm1(x, self.attention1(x, keys, keys, positions + 1))
        z = self.addnorm2(y, self.attention2(y, enc, enc, src_len))
        return self.addnorm3(z, self.ffn(z)), keys


class _Embed(nn.Module):
    """Token embedding * sqrt(d) + sinusoidal positions, then dropout."""

    def __init__(self, vocab_size: int, num_hiddens: int, dropout: float, max_len: int,
                 pad: int | None) -> None:
        super().__init__()
        self.scale = math.sqrt(num_hiddens)
        self.embedding = nn.Embedding(vocab_size, num_hiddens, padding_idx=pad)
        nn.init.normal_(self.embedding.weight, std=num_hiddens ** -0.5)
        if pad is not None:
            with torch.no_grad():
                self.embedding.weight[pad].zero_()
        self.pos_encoding = PositionalEncoding(num_hiddens, dropout, max_len)

    def forward(self, tokens: torch.Tensor, positions: torch.Tensor | None = None
                ) -> torch.Tensor:
        return self.pos_encoding(self.embedding(tokens) * self.scale, positions)


class TransformerEncoder(Encoder):
    """forward(src (B, S), src_len (B,)) -> (B, S, d); padding keys are masked.
    `attention_weights`: per block, (B, heads, S, S) of the last call."""

    def __init__(self, vocab_size: int, num_hiddens: int, ffn_num_hiddens: int, num_heads: int,
                 num_blks: int, dropout: float = 0.0, max_len: int = 1000,
                 pad: int | None = None, bias: bool = False) -> None:
        super().__init__()
        self.embed = _Embed(vocab_size, num_hiddens, dropout, max_len, pad)
        self.blks = nn.ModuleList(
            TransformerEncoderBlock(num_hiddens, ffn_num_hiddens, num_heads, dropout, bias)
            for _ in range(num_blks))
        self.attention_weights: list[torch.Tensor] = []

    def forward(self, src: torch.Tensor, src_len: torch.Tensor) -> torch.Tensor:
        x = self.embed(src)
        self.attention_weights = []
        for blk in self.blks:
            x = blk(x, src_len)
            self.attention_weights.append(blk.attention.attention_weights)
        return x


class TransformerDecoder(Decoder):
    """State: enc_outputs (B, S, d), src_len (B,), steps (B,) tokens fed so far, and past<i>
    (B, steps, d) for each block i. `attention_weights`: per block, the attention over the
    source (B, heads, t, S) of the last call; `self_attention_weights` likewise (B, heads, t,
    steps + t). Raises ValueError past max_len target positions."""

    def __init__(self, vocab_size: int, num_hiddens: int, ffn_num_hiddens: int, num_heads: int,
                 num_blks: int, dropout: float = 0.0, max_len: int = 1000,
                 pad: int | None = None, bias: bool = False) -> None:
        super().__init__()
        self.num_hiddens = num_hiddens
        self.embed = _Embed(vocab_size, num_hiddens, dropout, max_len, pad)
        self.blks = nn.ModuleList(
            TransformerDecoderBlock(num_hiddens, ffn_num_hiddens, num_heads, dropout, bias)
            for _ in range(num_blks))
        self.dense = nn.Linear(num_hiddens, vocab_size)
        self.self_attention_weights: list[torch.Tensor] = []

    def init_state(self, enc_outputs: torch.Tensor, src_len: torch.Tensor) -> State:
        b = enc_outputs.shape[0]
        state = {"enc_outputs": enc_outputs, "src_len": src_len,
                 "steps": torch.zeros(b, dtype=torch.long, device=enc_outputs.device)}
        for i in range(len(self.blks)):
            state[f"past{i}"] = enc_outputs.new_zeros(b, 0, self.num_hiddens)
        return state

    def forward(self, tgt: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        positions = state["steps"].unsqueeze(1) + torch.arange(tgt.shape[1], device=tgt.device)
        x = self.embed(tgt, positions)
        new = dict(state, steps=state["steps"] + tgt.shape[1])
        self.attention_weights, self.self_attention_weights = [], []
        for i, blk in enumerate(self.blks):
            x, new[f"past{i}"] = blk(x, state[f"past{i}"], state["enc_outputs"],
                                     state["src_len"], positions)
            self.self_attention_weights.append(blk.attention1.attention_weights)
            self.attention_weights.append(blk.attention2.attention_weights)
        return self.dense(x), new


class Transformer(EncoderDecoder):
    """The encoder-decoder Transformer; the interface of dlcamp.models.seq2seq."""

    def __init__(self, src_vocab_size: int, tgt_vocab_size: int, src_pad: int | None = None,
                 tgt_pad: int | None = None, num_hiddens: int = 128, ffn_num_hiddens: int = 256,
                 num_heads: int = 4, num_blks: int = 2, dropout: float = 0.1,
                 max_len: int = 1000) -> None:
        if min(src_vocab_size, tgt_vocab_size) < 2 or min(num_hiddens, ffn_num_hiddens,
                                                           num_blks, max_len) < 1:
            raise ValueError("vocab sizes >= 2; num_hiddens, ffn_num_hiddens, num_blks, "
                             "max_len >= 1")
        super().__init__(
            TransformerEncoder(src_vocab_size, num_hiddens, ffn_num_hiddens, num_heads,
                               num_blks, dropout, max_len, src_pad),
            TransformerDecoder(tgt_vocab_size, num_hiddens, ffn_num_hiddens, num_heads,
                               num_blks, dropout, max_len, tgt_pad))


def copy_to_torch(model: Transformer) -> nn.Transformer:
    """A torch.nn.Transformer (batch_first, post-norm, ReLU) holding our blocks' weights.

    It covers the two stacks only: feed it our embedded inputs (`model.encoder.embed(src)`,
    `model.decoder.embed(tgt)`) and apply `model.decoder.dense` to its output. Its final
    LayerNorms of the encoder and decoder stacks are removed (ours, like the book's, has
    none). Dropout and train/eval mode are copied; compare in eval mode.
    """
    enc, dec = model.encoder, model.decoder
    blk = enc.blks[0]
    theirs = nn.Transformer(
        d_model=blk.attention.num_hiddens, nhead=blk.attention.num_heads,
        num_encoder_layers=len(enc.blks), num_decoder_layers=len(dec.blks),
        dim_feedforward=blk.ffn.dense1.out_features, dropout=blk.addnorm1.dropout.p,
        batch_first=True, norm_first=False)
    theirs.encoder.norm = None
    theirs.decoder.norm = None
    weight = blk.ffn.dense1.weight
    theirs = theirs.to(device=weight.device, dtype=weight.dtype)

    def copy_common(ours: nn.Module, layer: nn.Module, norms: list[AddNorm]) -> None:
        layer.linear1.load_state_dict(ours.ffn.dense1.state_dict())
        layer.linear2.load_state_dict(ours.ffn.dense2.state_dict())
        for k, addnorm in enumerate(norms, start=1):
            getattr(layer, f"norm{k}").load_state_dict(addnorm.ln.state_dict())

    for ours, layer in zip(enc.blks, theirs.encoder.layers, strict=True):
        copy_mha_weights(ours.attention, layer.self_attn)
        copy_common(ours, layer, [ours.addnorm1, ours.addnorm2])
    for ours, layer in zip(dec.blks, theirs.decoder.layers, strict=True):
        copy_mha_weights(ours.attention1, layer.self_attn)
        copy_mha_weights(ours.attention2, layer.multihead_attn)
        copy_common(ours, layer, [ours.addnorm1, ours.addnorm2, ours.addnorm3])
    return theirs.train(model.training)


# d2l 11.7 trains on English-French with num_hiddens 256, 2 blocks, 4 heads, FFN 64,
# dropout 0.2, Adam lr 0.0015, gradient clipping at 1, 30 epochs. For 2 CPU cores we take
# width 128 with the paper's 2x wider FFN (256), dropout 0.1, Adam lr 0.001 on a cosine
# schedule, clipping at 1.
TRANSFORMER_RECIPE = Recipe(epochs=10, lr=0.001, optimizer="adam", grad_clip=1.0,
                            batch_size=64, schedule="cosine")


@register_model("transformer", recipe=TRANSFORMER_RECIPE)
def transformer(src_vocab_size: int = 100, tgt_vocab_size: int = 100, src_pad: int = 1,
                tgt_pad: int = 1, num_hiddens: int = 128, ffn_num_hiddens: int = 256,
                num_heads: int = 4, num_blks: int = 2, dropout: float = 0.1,
                max_len: int = 1000) -> Transformer:
    """Transformer encoder-decoder translator from scratch (Vaswani et al. 2017; d2l 11.7)"""
    return Transformer(src_vocab_size, tgt_vocab_size, src_pad, tgt_pad, num_hiddens,
                       ffn_num_hiddens, num_heads, num_blks, dropout, max_len)
