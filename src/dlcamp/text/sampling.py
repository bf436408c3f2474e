"""Language-model helpers: perplexity and picking the next token.

- Perplexity turns the mean cross-entropy into "how many tokens the model hesitates between".
- Sampling: greedy decoding always takes the most likely token and tends to repeat itself;
  sampling from softmax(logits / temperature), possibly restricted to the top k tokens,
  gives varied text. Low temperature -> close to greedy; high -> close to uniform.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from dlcamp.core.errors import BadArgument


def perplexity(mean_nll: float) -> float:
    """exp(mean negative log-likelihood per token, in nats): the model's effective branching.

    A model that spreads its probability evenly over k tokens has perplexity k; a perfect
    model has 1; a uniform guess over a vocabulary of V tokens has V. Give the mean
    cross-entropy (torch's `F.cross_entropy`, natural log) over all predicted tokens.
    """
    try:
        return math.exp(float(mean_nll))
    except OverflowError:
        return math.inf


def _ids(ids: Sequence[int] | torch.Tensor, vocab_size: int, what: str) -> torch.Tensor:
    ids = torch.as_tensor(ids, dtype=torch.long).flatten()
    if len(ids) and (int(ids.min()) < 0 or int(ids.max()) >= vocab_size):
        raise BadArgument(f"{what} ids must be in [0, {vocab_size}), got {ids.tolist()[:10]}")
    return ids


def sample_next(logits: torch.Tensor, temperature: float = 1.0, top_k: int = 0,
                greedy: bool = False, generator: torch.Generator | None = None,
                banned: Sequence[int] | torch.Tensor | None = None,
                allowed: Sequence[int] | torch.Tensor | None = None) -> torch.Tensor:
    """Pick the next token id from logits of shape (V,) -> 0-d, or (B, V) -> (B,).

    Tokens in `banned`, or not in `allowed`, get probability 0 first. Then `greedy` takes
    the argmax; otherwise a token is drawn from softmax(logits / temperature), keeping only
    the `top_k` largest logits when 0 < top_k < V (0, or V and more: no limit).

    Any finite temperature > 0 works: a tiny one draws among the likeliest tokens only (ties
    shared evenly), a huge one nearly uniformly among the tokens left.
    Raises BadArgument for a temperature that is not a finite number > 0, a negative top_k,
    logits of another shape or holding nan or +inf, and when no token is left to choose.
    """
    if not (math.isfinite(temperature) and temperature > 0):
        raise BadArgument(f"temperature must be a finite number > 0 (use greedy=True for the "
                          f"argmax), got {temperature}")
    if top_k < 0:
        raise BadArgument(f"top_k must be >= 0 (0: no limit), got {top_k}")
    if logits.dim() not in (1, 2):
        raise BadArgument(f"logits must be (V,) or (B, V), got shape {tuple(logits.shape)}")
    x = logits.detach().float().reshape(-1, logits.shape[-1]).clone()  # (B, V): ours to edit
    if bool((x.isnan() | (x == math.inf)).any()):
        raise BadArgument("the logits hold nan or +inf: the model's weights have diverged; "
                          "train it again (a smaller learning rate, or gradient clipping)")
    vocab_size = x.shape[-1]
    if allowed is not None:
        keep = torch.zeros(vocab_size, dtype=torch.bool, device=x.device)
        keep[_ids(allowed, vocab_size, "allowed").to(x.device)] = True
        x = x.masked_fill(~keep, -math.inf)
    if banned is not None:
        x[:, _ids(banned, vocab_size, "banned").to(x.device)] = -math.inf
    if bool((x == -math.inf).all(dim=-1).any()):
        raise BadArgument("no token is left to choose: all are banned or not allowed")
    if greedy:
        ids = x.argmax(dim=-1)  # (B,)
    else:
        if 0 < top_k < vocab_size:
            top = x.topk(top_k, dim=-1).indices  # (B, k): exactly k, even with ties
            x = torch.full_like(x, -math.inf).scatter(-1, top, x.gather(-1, top))
        # After subtracting the max, x <= 0: x / t is 0 for the likeliest tokens and a
        # negative number or -inf for the others, never nan, as long as t is a positive
        # float32. Clamped to float32's range, a temperature of 1e-300 (or 1e308) does not
        # round to 0 (or inf), where 0 / 0 (or -inf / inf) would be nan.
        finfo = torch.finfo(x.dtype)
        t = min(max(float(temperature), finfo.tiny), finfo.max)
        x = (x - x.max(dim=-1, keepdim=True).values) / t
        probs = torch.softmax(x, dim=-1)  # (B, V)
        if generator is not None:
            probs = probs.to(generator.device)
        ids = torch.multinomial(probs, 1, generator=generator).squeeze(-1).to(x.device)  # (B,)
    return ids[0] if logits.dim() == 1 else ids
