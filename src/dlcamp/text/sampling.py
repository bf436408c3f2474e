"""Language-model helpers: perplexity, gradient clipping, and picking the next token.

- Perplexity turns the mean cross-entropy into "how many tokens the model hesitates between".
- Gradient clipping keeps one exploding step (long products of RNN Jacobians) from
  throwing the weights far away: it rescales all gradients together when their global
  L2 norm exceeds a threshold, keeping their direction.
- Sampling: greedy decoding always takes the most likely token and tends to repeat itself;
  sampling from softmax(logits / temperature), possibly restricted to the top k tokens,
  gives varied text. Low temperature -> close to greedy; high -> close to uniform.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

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


def clip_gradients(params: Iterable[torch.Tensor] | torch.nn.Module, max_norm: float) -> float:
    """Scale all gradients in place so that their global L2 norm is at most `max_norm`.

    g <- g * min(1, max_norm / ||g||), with ||g|| the norm of all gradients concatenated.
    Returns that norm before clipping, as `torch.nn.utils.clip_grad_norm_` does (same
    formula, same 1e-6 guard). The factor is applied even when it is 1, so no Python `if`
    waits for a GPU result before the optimizer step.
    """
    if max_norm <= 0:
        raise BadArgument(f"max_norm must be > 0, got {max_norm}")
    if isinstance(params, torch.nn.Module):
        params = params.parameters()
    elif isinstance(params, torch.Tensor):
        params = [params]
    grads = [p.grad.detach() for p in params if p.grad is not None]
    if not grads:
        return 0.0
    device = grads[0].device
    norms = torch.stack([torch.linalg.vector_norm(g).to(device) for g in grads])  # (P,)
    total = torch.linalg.vector_norm(norms)  # the norm of the concatenated gradients
    scale = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    for g in grads:
        g.mul_(scale.to(g.device))
    return float(total)


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
