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

from dlcamp.errors import BadArgument


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
    the `top_k` largest logits when top_k > 0.
    """
    if not temperature > 0:
        raise BadArgument(f"temperature must be > 0 (use greedy=True for argmax), "
                          f"got {temperature}")
    if top_k < 0:
        raise BadArgument(f"top_k must be >= 0 (0: no limit), got {top_k}")
    if logits.dim() not in (1, 2):
        raise BadArgument(f"logits must be (V,) or (B, V), got shape {tuple(logits.shape)}")
    x = logits.detach().float().reshape(-1, logits.shape[-1]).clone()  # (B, V): ours to edit
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
        # Subtracting the max first keeps x / temperature finite for tiny temperatures.
        x = (x - x.max(dim=-1, keepdim=True).values) / temperature
        probs = torch.softmax(x, dim=-1)  # (B, V)
        if generator is not None:
            probs = probs.to(generator.device)
        ids = torch.multinomial(probs, 1, generator=generator).squeeze(-1).to(x.device)  # (B,)
    return ids[0] if logits.dim() == 1 else ids
