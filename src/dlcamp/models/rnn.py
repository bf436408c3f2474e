"""Recurrent language models: RNN, GRU and LSTM, written from scratch and with torch.nn.

Both versions have the same outer shape, so their weights are interchangeable:

    tokens (B, T) -> embedding (T, B, E) -> recurrent layer(s) (T, B, H * directions)
                  -> linear output (B, T, vocab)

The embedding is the "one-hot times a matrix" of the book: multiplying a one-hot vector by a
matrix picks one row of it, so an embedding lookup computes the same thing without building
(T, B, vocab) one-hot tensors. The recurrent layer is either torch.nn.RNN/GRU/LSTM (concise)
or `RecurrentScratch`, which computes every time step with plain tensor operations and names
its parameters exactly as PyTorch does (weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0,
and *_reverse for the backward direction), so the two load each other's state dicts.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from dlcamp.core.config import Recipe
from dlcamp.models.registry import register_model

State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]
GATES = {"rnn": 1, "gru": 3, "lstm": 4}  # blocks stacked in each weight matrix (PyTorch order)


def rnn_cell(gi: torch.Tensor, h: torch.Tensor, w_hh: torch.Tensor,
             b_hh: torch.Tensor) -> torch.Tensor:
    """h_t = tanh(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh); `gi` is the input part."""
    return torch.tanh(gi + h @ w_hh.T + b_hh)


def gru_cell(gi: torch.Tensor, h: torch.Tensor, w_hh: torch.Tensor,
             b_hh: torch.Tensor) -> torch.Tensor:
    """Gated recurrent unit, PyTorch's (and cuDNN's) formulation.

    r = sigma(.)  reset gate: how much of the past feeds the candidate
    z = sigma(.)  update gate: keep the old state (z -> 1) or take the candidate (z -> 0)
    n = tanh(x W_in^T + b_in + r * (h W_hn^T + b_hn))     candidate state
    h_t = (1 - z) * n + z * h_{t-1}
    (The book multiplies r into h before the matrix product; PyTorch applies it after.)
    """
    gh = h @ w_hh.T + b_hh
    i_r, i_z, i_n = gi.chunk(3, dim=-1)
    h_r, h_z, h_n = gh.chunk(3, dim=-1)
    r = torch.sigmoid(i_r + h_r)
    z = torch.sigmoid(i_z + h_z)
    n = torch.tanh(i_n + r * h_n)
    return (1 - z) * n + z * h


def lstm_cell(gi: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor], w_hh: torch.Tensor,
              b_hh: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Long short-term memory: a memory cell c guarded by input, forget and output gates.

    i, f, o = sigma(.)   how much to write, keep and show;  g = tanh(.) what to write
    c_t = f * c_{t-1} + i * g;   h_t = o * tanh(c_t)
    """
    h, c = state
    gates = gi + h @ w_hh.T + b_hh
    i, f, g, o = gates.chunk(4, dim=-1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    h = torch.sigmoid(o) * torch.tanh(c)
    return h, c


CELLS = {"rnn": rnn_cell, "gru": gru_cell, "lstm": lstm_cell}


class RecurrentScratch(nn.Module):
    """A (deep, optionally bidirectional) RNN/GRU/LSTM layer with a Python loop over time.

    Same interface as torch.nn.RNN/GRU/LSTM with batch_first=False:
    inputs (T, B, E), state (layers * directions, B, H) [a pair (h, c) for the LSTM]
    -> outputs (T, B, H * directions), final state.
    """

    def __init__(self, cell: str, input_size: int, hidden_size: int, num_layers: int = 1,
                 bidirectional: bool = False, dropout: float = 0.0) -> None:
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"unknown cell {cell!r}; choose rnn, gru or lstm")
        self.cell, self.hidden_size, self.num_layers = cell, hidden_size, num_layers
        self.directions = 2 if bidirectional else 1
        self.dropout = dropout
        rows = GATES[cell] * hidden_size
        bound = 1.0 / math.sqrt(hidden_size)  # PyTorch's initialisation: U(-1/sqrt(H), 1/sqrt(H))
        for layer in range(num_layers):
            width = input_size if layer == 0 else hidden_size * self.directions
            for suffix in self._suffixes(layer):
                shapes = {"weight_ih": (rows, width), "weight_hh": (rows, hidden_size),
                          "bias_ih": (rows,), "bias_hh": (rows,)}
                for name, shape in shapes.items():
                    param = nn.Parameter(torch.empty(shape).uniform_(-bound, bound))
                    self.register_parameter(f"{name}{suffix}", param)

    def _suffixes(self, layer: int) -> list[str]:
        return [f"_l{layer}", f"_l{layer}_reverse"][: self.directions]

    def begin_state(self, batch_size: int, device: torch.device | str = "cpu") -> State:
        h = torch.zeros(self.num_layers * self.directions, batch_size, self.hidden_size,
                        device=device)
        return (h, h.clone()) if self.cell == "lstm" else h

    def _run(self, gi: torch.Tensor, state: State, suffix: str, reverse: bool
             ) -> tuple[torch.Tensor, State]:
        """One direction of one layer. `gi` (T, B, rows) holds every step's input product."""
        step, w_hh, b_hh = CELLS[self.cell], getattr(self, f"weight_hh{suffix}"), \
            getattr(self, f"bias_hh{suffix}")
        outputs = []
        for t in (range(len(gi) - 1, -1, -1) if reverse else range(len(gi))):
            state = step(gi[t], state, w_hh, b_hh)
            outputs.append(state[0] if self.cell == "lstm" else state)
        if reverse:
            outputs.reverse()
        return torch.stack(outputs), state

    def forward(self, inputs: torch.Tensor, state: State | None = None
                ) -> tuple[torch.Tensor, State]:
        if state is None:
            state = self.begin_state(inputs.shape[1], inputs.device)
        lstm = self.cell == "lstm"
        finals_h, finals_c = [], []
        x = inputs
        for layer in range(self.num_layers):
            outs = []
            for d, suffix in enumerate(self._suffixes(layer)):
                k = layer * self.directions + d
                s = (state[0][k], state[1][k]) if lstm else state[k]
                # the input part of every time step in one matrix product: (T, B, rows)
                gi = x @ getattr(self, f"weight_ih{suffix}").T + getattr(self, f"bias_ih{suffix}")
                out, s = self._run(gi, s, suffix, reverse=d == 1)
                outs.append(out)
                finals_h.append(s[0] if lstm else s)
                if lstm:
                    finals_c.append(s[1])
            x = torch.cat(outs, dim=-1) if len(outs) > 1 else outs[0]
            if self.dropout and self.training and layer < self.num_layers - 1:
                x = nn.functional.dropout(x, self.dropout)
        h = torch.stack(finals_h)
        return x, ((h, torch.stack(finals_c)) if lstm else h)


class RNNLM(nn.Module):
    """A character- (or word-) level language model around a recurrent layer.

    forward(tokens (B, T), state) -> (logits (B, T, vocab), state). The model knows nothing of
    its training: `dlcamp.train.task.default_task` gives RNNLMs the LanguageModel task, which
    carries the state across batches.
    """

    def __init__(self, vocab_size: int, cell: str = "lstm", num_hiddens: int = 256,
                 embed_size: int = 64, num_layers: int = 1, bidirectional: bool = False,
                 dropout: float = 0.0, scratch: bool = False) -> None:
        super().__init__()
        if vocab_size < 2 or num_hiddens < 1 or embed_size < 1 or num_layers < 1:
            raise ValueError("vocab_size >= 2, num_hiddens, embed_size, num_layers >= 1 please")
        self.vocab_size, self.cell, self.scratch = vocab_size, cell, scratch
        self.embedding = nn.Embedding(vocab_size, embed_size)
        self.drop = nn.Dropout(dropout)
        if scratch:
            self.rnn = RecurrentScratch(cell, embed_size, num_hiddens, num_layers,
                                        bidirectional, dropout)
        else:
            if cell not in GATES:
                raise ValueError(f"unknown cell {cell!r}; choose rnn, gru or lstm")
            layer = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}[cell]
            self.rnn = layer(embed_size, num_hiddens, num_layers=num_layers,
                             bidirectional=bidirectional,
                             dropout=dropout if num_layers > 1 else 0.0)
        self.num_layers, self.num_hiddens = num_layers, num_hiddens
        self.directions = 2 if bidirectional else 1
        self.output = nn.Linear(num_hiddens * self.directions, vocab_size)

    def begin_state(self, batch_size: int, device: torch.device | str = "cpu") -> State:
        """Zeros: (layers * directions, B, H), a pair of them for the LSTM."""
        h = torch.zeros(self.num_layers * self.directions, batch_size, self.num_hiddens,
                        device=device)
        return (h, h.clone()) if self.cell == "lstm" else h

    def forward(self, tokens: torch.Tensor, state: State | None = None
                ) -> tuple[torch.Tensor, State]:
        # Dropout on the connections into and out of the recurrent layer (not on the state
        # carried from step to step), as Zaremba et al. (2014) regularise LSTM language models.
        x = self.drop(self.embedding(tokens.T))          # (T, B, E)
        out, state = self.rnn(x, state)                  # (T, B, H * directions)
        return self.output(self.drop(out.transpose(0, 1))), state  # (B, T, vocab)


# Adam with gradient clipping at norm 1 (the book clips at 1 too), a cosine schedule and
# dropout 0.3 around the recurrent layer: tang300 has only 21k training characters over a
# 2,400-character vocabulary, and without dropout validation perplexity rises after epoch 6.
LM_RECIPE = Recipe(epochs=12, lr=0.005, optimizer="adam", grad_clip=1.0, batch_size=32,
                   num_steps=35, schedule="cosine", model_kwargs={"dropout": 0.3})


def _lm(cell: str, scratch: bool, layers: int = 1, bidirectional: bool = False):
    def build(vocab_size: int = 100, num_hiddens: int = 256, embed_size: int = 64,
              num_layers: int = layers, bidirectional: bool = bidirectional,
              dropout: float = 0.0) -> RNNLM:
        return RNNLM(vocab_size, cell, num_hiddens, embed_size, num_layers, bidirectional,
                     dropout, scratch=scratch)

    how = "from scratch (a Python loop over time steps)" if scratch else "with torch.nn"
    build.__doc__ = f"{cell.upper()} language model, {how}; layers {layers}" + \
        (", bidirectional (sees the future: not a usable language model)" if bidirectional
         else "")
    return build


for _cell in ("rnn", "gru", "lstm"):
    register_model(_cell, recipe=LM_RECIPE)(_lm(_cell, scratch=False))
    register_model(f"{_cell}-scratch", recipe=LM_RECIPE)(_lm(_cell, scratch=True))
register_model("deep-lstm", recipe=LM_RECIPE)(_lm("lstm", scratch=False, layers=2))
register_model("deep-lstm-scratch", recipe=LM_RECIPE)(_lm("lstm", scratch=True, layers=2))
register_model("bilstm", recipe=LM_RECIPE)(_lm("lstm", scratch=False, bidirectional=True))
register_model("bilstm-scratch", recipe=LM_RECIPE)(_lm("lstm", scratch=True, bidirectional=True))
