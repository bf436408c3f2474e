"""Turning an encoder-decoder into output sentences: greedy search and beam search
(d2l section 10.8).

Both work with any model that has `begin_decode(src, src_len) -> state` and
`decode(tgt (B, t), state) -> (logits (B, t, V), state)`, where every tensor of the state
dict is batch-first (see dlcamp.models.seq2seq). They switch the model to eval mode for the
search (and back), and compute without gradients.

Outputs are token ids without <bos> and without the final <eos>. A hypothesis that reaches
`max_len` tokens without <eos> stops there.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

State = dict[str, torch.Tensor]


class _EvalMode:
    """Eval mode and no gradients inside the block; the model's mode is restored after."""

    def __init__(self, model: nn.Module) -> None:
        self.model, self.was_training = model, model.training
        self.no_grad = torch.no_grad()

    def __enter__(self) -> None:
        self.model.eval()
        self.no_grad.__enter__()

    def __exit__(self, *exc: object) -> None:
        self.no_grad.__exit__(*exc)
        self.model.train(self.was_training)


def _check(max_len: int) -> None:
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")


def greedy_search(model: nn.Module, src: torch.Tensor, src_len: torch.Tensor, bos: int,
                  eos: int, max_len: int = 50) -> list[list[int]]:
    """The most likely next token at every step, for a whole batch at once.

    src (B, S), src_len (B,) -> B lists of token ids (no <bos>, no <eos>), each at most
    max_len long. Raises ValueError for max_len < 1.
    """
    _check(max_len)
    batch = src.shape[0]
    out: list[list[int]] = [[] for _ in range(batch)]
    done = [False] * batch
    with _EvalMode(model):
        state = model.begin_decode(src, src_len)
        tokens = torch.full((batch, 1), bos, dtype=torch.long, device=src.device)
        for _ in range(max_len):
            logits, state = model.decode(tokens, state)
            tokens = logits[:, -1].argmax(dim=-1, keepdim=True)           # (B, 1)
            for b, t in enumerate(tokens[:, 0].tolist()):
                if not done[b]:
                    if t == eos:
                        done[b] = True
                    else:
                        out[b].append(t)
            if all(done):
                break
    return out


def length_normalised(log_prob: float, length: int, alpha: float) -> float:
    """The book's beam score, (1 / L^alpha) * log P(y_1 .. y_L | x) (d2l eq. 10.8.4), with
    L counting the <eos> when the hypothesis ended with one. alpha = 0 ranks by probability
    alone, which favours short outputs; the book uses alpha = 0.75."""
    return log_prob / max(length, 1) ** alpha


def beam_search(model: nn.Module, src: torch.Tensor, src_len: torch.Tensor, bos: int, eos: int,
                beam_size: int = 4, max_len: int = 50, alpha: float = 0.75
                ) -> list[tuple[list[int], float]]:
    """Keep the beam_size most likely partial outputs at each step (one source sentence).

    src (1, S), src_len (1,) -> up to beam_size (tokens, score) pairs, best score first;
    tokens without <bos>/<eos>, score from `length_normalised`. At each step the 2 * beam_size
    best extensions of all live hypotheses are ranked by their summed log probability: an
    extension by <eos> ranked within the first beam_size is finished, the best beam_size
    others live on. The search stops when beam_size hypotheses have finished, none is left
    alive, or after max_len steps (the live ones are then scored as they are). With
    beam_size 1 this is greedy search. Raises ValueError for a batch other than 1,
    beam_size < 1 or max_len < 1.
    """
    if src.shape[0] != 1:
        raise ValueError(f"beam_search translates one sentence: src must be (1, S), "
                         f"got {tuple(src.shape)}")
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    _check(max_len)
    finished: list[tuple[list[int], float, int]] = []  # (tokens, log P, length for the score)
    with _EvalMode(model):
        state = model.begin_decode(src, src_len)
        seqs: list[list[int]] = [[]]
        log_probs = torch.zeros(1, device=src.device)
        tokens = torch.full((1, 1), bos, dtype=torch.long, device=src.device)
        for _ in range(max_len):
            logits, state = model.decode(tokens, state)
            total = F.log_softmax(logits[:, -1].float(), dim=-1) + log_probs[:, None]  # (n, V)
            vocab = total.shape[1]
            best, index = total.flatten().topk(min(2 * beam_size, total.numel()))
            rows, nexts, scores = [], [], []
            for rank, (lp, i) in enumerate(zip(best.tolist(), index.tolist(), strict=True)):
                row, tok = divmod(i, vocab)
                if tok == eos:
                    if rank < beam_size:
                        finished.append((seqs[row], lp, len(seqs[row]) + 1))
                elif len(rows) < beam_size:
                    rows.append(row), nexts.append(tok), scores.append(lp)
            if len(finished) >= beam_size or not rows:
                break
            keep = torch.tensor(rows, device=src.device)
            state = {k: v.index_select(0, keep) for k, v in state.items()}
            seqs = [seqs[r] + [t] for r, t in zip(rows, nexts, strict=True)]
            log_probs = torch.tensor(scores, device=src.device)
            tokens = torch.tensor(nexts, device=src.device).unsqueeze(1)
        else:  # max_len steps without enough finished: the live ones count as they are
            finished += [(s, lp, len(s)) for s, lp in zip(seqs, log_probs.tolist(), strict=True)]
    ranked = sorted(((s, length_normalised(lp, n, alpha)) for s, lp, n in finished),
                    key=lambda pair: -pair[1])
    return ranked[:beam_size]
