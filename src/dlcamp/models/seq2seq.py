"""Encoder-decoder models for sequence to sequence learning (d2l sections 10.6, 10.7, 11.4).

The interface every translator here follows:

    model(src (B, S), src_len (B,), tgt_in (B, T)) -> logits (B, T, V_tgt)   teacher forcing
    state = model.begin_decode(src, src_len)          encode once
    logits, state = model.decode(tgt (B, t), state)   feed only the new target tokens

`state` is a dict of tensors, every one batch-first (dim 0 is the example), so beam search
can reorder or repeat hypotheses with `index_select(0, ...)` without knowing the model.
Feeding a target one token at a time through `decode` gives the same logits as one
teacher-forced `forward` (tests/test_seq2seq_models.py checks it for every model).

Two recurrent decoders: `Seq2SeqDecoder` (the encoder's final top-layer hidden state is the
fixed context concatenated to every decoder input, as in the book; Sutskever et al., 2014,
Cho et al., 2014) and `AttentionDecoder` (Bahdanau et al., 2015: at each step the previous
top-layer hidden state queries all encoder outputs with additive attention). Unlike the book,
the encoder packs its padded batch, so padding never runs through the GRU and the "final"
state of each sentence is the one after its own last real token.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from dlcamp.core.config import Recipe
from dlcamp.models.attention import AdditiveAttention
from dlcamp.models.registry import register_model

State = dict[str, torch.Tensor]


def check_source(src: torch.Tensor, src_len: torch.Tensor) -> None:
    """ValueError unless src is (B, S) and src_len (B,) holds lengths in 1..S."""
    if src.dim() != 2 or src_len.shape != src.shape[:1]:
        raise ValueError(f"src must be (B, S) and src_len (B,); got {tuple(src.shape)} and "
                         f"{tuple(src_len.shape)}")
    if len(src_len) and (int(src_len.min()) < 1 or int(src_len.max()) > src.shape[1]):
        raise ValueError(f"src_len must lie in 1..{src.shape[1]} (the source has <eos>), "
                         f"got {src_len.tolist()}")


class Encoder(nn.Module):
    """The encoder interface: forward(src (B, S), src_len (B,)) -> whatever its decoder's
    init_state takes."""

    def forward(self, src: torch.Tensor, src_len: torch.Tensor) -> Any:
        raise NotImplementedError


class Decoder(nn.Module):
    """The decoder interface: init_state(encoder outputs, src_len) -> State;
    forward(tgt (B, t), state) -> (logits (B, t, V), state). `attention_weights` holds the
    weights of the last call, or None for a decoder without attention."""

    attention_weights: Any = None

    def init_state(self, enc_outputs: Any, src_len: torch.Tensor) -> State:
        raise NotImplementedError

    def forward(self, tgt: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        raise NotImplementedError


class EncoderDecoder(nn.Module):
    """An encoder and a decoder, used as described in the module docstring."""

    def __init__(self, encoder: Encoder, decoder: Decoder) -> None:
        super().__init__()
        self.encoder, self.decoder = encoder, decoder

    def begin_decode(self, src: torch.Tensor, src_len: torch.Tensor) -> State:
        """Encode the source once; the decoder's starting state (batch-first tensors)."""
        check_source(src, src_len)
        return self.decoder.init_state(self.encoder(src, src_len), src_len)

    def decode(self, tgt: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """The next tokens tgt (B, t) -> their logits (B, t, V) and the state after them."""
        return self.decoder(tgt, state)

    def forward(self, src: torch.Tensor, src_len: torch.Tensor,
                tgt_in: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: logits (B, T, V) of every next token of tgt_in (B, T)."""
        return self.decode(tgt_in, self.begin_decode(src, src_len))[0]

    @property
    def attention_weights(self) -> Any:
        """The decoder's attention weights of the last decode call (see the decoder)."""
        return self.decoder.attention_weights


class Seq2SeqEncoder(Encoder):
    """Embedding + multi-layer GRU over the packed source.

    forward(src (B, S), src_len (B,)) -> (outputs (B, S, H), zero at padding; hidden (L, B, H),
    each layer's state after the last real token).
    """

    def __init__(self, vocab_size: int, embed_size: int, num_hiddens: int, num_layers: int,
                 dropout: float = 0.0, pad: int | None = None) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_size, padding_idx=pad)
        self.rnn = nn.GRU(embed_size, num_hiddens, num_layers, batch_first=True,
                          dropout=dropout if num_layers > 1 else 0.0)

    def forward(self, src: torch.Tensor, src_len: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        packed = pack_padded_sequence(self.embedding(src), src_len.cpu(), batch_first=True,
                                      enforce_sorted=False)
        outputs, hidden = self.rnn(packed)
        outputs, _ = pad_packed_sequence(outputs, batch_first=True, total_length=src.shape[1])
        return outputs, hidden


class GRUDecoder(Decoder):
    """What both GRU decoders have: token embeddings, a GRU whose input is [embedding; a
    context of num_hiddens], and the output layer to the target vocabulary."""

    def __init__(self, vocab_size: int, embed_size: int, num_hiddens: int, num_layers: int,
                 dropout: float = 0.0, pad: int | None = None) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_size, padding_idx=pad)
        self.rnn = nn.GRU(embed_size + num_hiddens, num_hiddens, num_layers, batch_first=True,
                          dropout=dropout if num_layers > 1 else 0.0)
        self.dense = nn.Linear(num_hiddens, vocab_size)


class Seq2SeqDecoder(GRUDecoder):
    """GRU decoder whose every input is [embedding of the token; context], the context being
    the encoder's final top-layer hidden state. State: hidden (B, L, H), context (B, H)."""

    def init_state(self, enc_outputs: tuple[torch.Tensor, torch.Tensor],
                   src_len: torch.Tensor) -> State:
        hidden = enc_outputs[1]                                            # (L, B, H)
        return {"hidden": hidden.transpose(0, 1), "context": hidden[-1]}

    def forward(self, tgt: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        emb = self.embedding(tgt)                                          # (B, t, E)
        context = state["context"].unsqueeze(1).expand(-1, tgt.shape[1], -1)
        out, hidden = self.rnn(torch.cat([emb, context], dim=-1),
                               state["hidden"].transpose(0, 1).contiguous())
        return self.dense(out), {"hidden": hidden.transpose(0, 1), "context": state["context"]}


class AttentionDecoder(GRUDecoder):
    """Bahdanau decoder: at each step the previous top-layer hidden state is the query of an
    additive attention over the encoder outputs (masked by src_len), and the GRU input is
    [attention context; embedding]. State: enc_outputs (B, S, H), src_len (B,), hidden
    (B, L, H). `attention_weights` after a call: (B, t, S), one row per fed token."""

    def __init__(self, vocab_size: int, embed_size: int, num_hiddens: int, num_layers: int,
                 dropout: float = 0.0, pad: int | None = None) -> None:
        super().__init__(vocab_size, embed_size, num_hiddens, num_layers, dropout, pad)
        self.attention = AdditiveAttention(num_hiddens, num_hiddens, num_hiddens, dropout)

    def init_state(self, enc_outputs: tuple[torch.Tensor, torch.Tensor],
                   src_len: torch.Tensor) -> State:
        outputs, hidden = enc_outputs
        return {"enc_outputs": outputs, "src_len": src_len, "hidden": hidden.transpose(0, 1)}

    def forward(self, tgt: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        enc, src_len = state["enc_outputs"], state["src_len"]
        hidden = state["hidden"].transpose(0, 1).contiguous()              # (L, B, H)
        emb = self.embedding(tgt)                                          # (B, t, E)
        outputs, weights = [], []
        for i in range(tgt.shape[1]):  # the query depends on the previous step: a loop
            context = self.attention(hidden[-1].unsqueeze(1), enc, enc, src_len)  # (B, 1, H)
            out, hidden = self.rnn(torch.cat([context, emb[:, i:i + 1]], dim=-1), hidden)
            outputs.append(out)
            weights.append(self.attention.attention_weights)
        self.attention_weights = torch.cat(weights, dim=1) if weights else None
        logits = self.dense(torch.cat(outputs, dim=1)) if outputs else \
            emb.new_zeros(tgt.shape[0], 0, self.dense.out_features)
        return logits, {"enc_outputs": enc, "src_len": src_len,
                        "hidden": hidden.transpose(0, 1)}


# d2l 10.7 and 11.4 train both on English-French with embed 256, hidden 256, 2 GRU layers,
# dropout 0.2, Adam lr 0.005, gradient clipping at 1, 30 epochs. Our defaults halve the
# embedding for 2 CPU cores; the schedule is cosine (the book keeps lr constant).
SEQ2SEQ_RECIPE = Recipe(epochs=10, lr=0.005, optimizer="adam", grad_clip=1.0, batch_size=64,
                        schedule="cosine")


def _gru_translator(decoder: type[Decoder], doc: str):
    def build(src_vocab_size: int = 100, tgt_vocab_size: int = 100, src_pad: int = 1,
              tgt_pad: int = 1, embed_size: int = 128, num_hiddens: int = 256,
              num_layers: int = 2, dropout: float = 0.2) -> EncoderDecoder:
        if min(src_vocab_size, tgt_vocab_size) < 2 or min(embed_size, num_hiddens,
                                                           num_layers) < 1:
            raise ValueError("vocab sizes >= 2 and embed_size, num_hiddens, num_layers >= 1")
        return EncoderDecoder(
            Seq2SeqEncoder(src_vocab_size, embed_size, num_hiddens, num_layers, dropout,
                           src_pad),
            decoder(tgt_vocab_size, embed_size, num_hiddens, num_layers, dropout, tgt_pad))

    build.__doc__ = doc
    return build


register_model("seq2seq", recipe=SEQ2SEQ_RECIPE)(_gru_translator(
    Seq2SeqDecoder, "GRU encoder-decoder translator: the encoder's final state is the context "
    "(d2l 10.7)"))
register_model("bahdanau", recipe=SEQ2SEQ_RECIPE)(_gru_translator(
    AttentionDecoder, "GRU encoder-decoder translator with Bahdanau (additive) attention "
    "(d2l 11.4)"))
