"""Language-model runs for the sequence lessons and benchmarks: train, measure, write a sample.

    trainer, loaders, ppl = lm_run("lstm", "tang300", quick=True)
    print(sample(trainer, loaders, "床前"))

A run is `dlcamp train --model NAME --dataset CORPUS` in memory (the registered recipe, then
`overrides`); nothing is written to disk. For a language model the Trainer's "examples" are
predicted tokens, so `examples_per_s` in the history is tokens per second.
"""

from __future__ import annotations

from typing import Any

from dlcamp.course.compare import train_model
from dlcamp.text.generate import generate, generate_poem
from dlcamp.train.run import make_config

# Quick mode: the first part of the corpus (dlcamp.text.make_text_loaders) and a step budget.
QUICK_LM = dict(epochs=2, max_steps=60)


def lm_run(name: str, corpus: str = "tang300", quick: bool = False, curves: bool = True,
           log: Any = print, **overrides: Any) -> tuple[Any, Any, float]:
    """Train `name` on `corpus`; returns the trainer, the loaders (TextLoaders: `.train`,
    `.val` (the held-out split, also `.eval`) and `.vocab`) and the validation perplexity
    after the last epoch."""
    settings = {**(QUICK_LM if quick else {}), **overrides}
    cfg = make_config(name, corpus, quick=quick, **settings)
    trainer, loaders = train_model(cfg, curves=curves, progress=not quick, log=log)
    last = trainer.history[-1]
    log(f"{name} on {corpus}: validation perplexity {last['val_ppl']:.1f} after "
        f"{trainer.train_seconds:.1f} s of training, {tokens_per_second(trainer):,.0f} tokens/s")
    return trainer, loaders, last["val_ppl"]


def sample(trainer: Any, loaders: Any, prompt: str, poem: int = 0, seed: int = 0,
           length: int = 60, temperature: float = 0.8, top_k: int = 0) -> str:
    """Text from the trained model: a poem of `poem` characters a line, or free text."""
    if poem:
        return generate_poem(trainer.model, loaders.vocab, prompt, chars_per_line=poem,
                             temperature=temperature, top_k=top_k, seed=seed)
    return generate(trainer.model, loaders.vocab, prompt, length, temperature=temperature,
                    top_k=top_k, seed=seed)


def tokens_per_second(trainer: Any) -> float:
    """Training speed over the whole run: predicted tokens / training seconds (one short
    epoch alone is too noisy on a busy machine)."""
    return sum(r["train_examples"] for r in trainer.history) / max(trainer.train_seconds, 1e-9)


def unigram_perplexity(train_ids: Any, val_ids: Any, vocab_size: int) -> float:
    """Perplexity on `val_ids` of the unigram model fitted on `train_ids` (add-one smoothing):
    the baseline a language model has to beat (it ignores every token before the current one).
    """
    import torch

    counts = torch.bincount(torch.as_tensor(train_ids), minlength=vocab_size).double() + 1.0
    log_p = (counts / counts.sum()).log()
    return float(torch.exp(-log_p[torch.as_tensor(val_ids)].mean()))


def scratch_matches_concise(name: str, vocab_size: int = 50, batch_size: int = 4,
                            num_steps: int = 12, seed: int = 0, **kwargs: Any
                            ) -> dict[str, float]:
    """Build `name` (torch.nn layer) and `name-scratch` (a loop over time), give the scratch
    model the concise one's weights, run one batch through both and backpropagate the same
    loss. Returns the largest absolute differences of the logits, the final state(s) and the
    gradients of every parameter: all should be rounding errors (~1e-7 in float32).
    """
    import torch

    from dlcamp.models import create_model

    torch.manual_seed(seed)
    concise = create_model(name, vocab_size=vocab_size, **kwargs)
    scratch = create_model(f"{name}-scratch", vocab_size=vocab_size, **kwargs)
    scratch.load_state_dict(concise.state_dict())
    tokens = torch.randint(vocab_size, (batch_size, num_steps))  # (B, T)
    runs = []
    for model in (concise, scratch):
        logits, state = model(tokens)  # (B, T, V), state(s) (layers * directions, B, H)
        logits.square().mean().backward()
        states = state if isinstance(state, tuple) else (state,)
        runs.append((logits, states, dict(model.named_parameters())))
    (l1, s1, p1), (l2, s2, p2) = runs

    def gap(a: Any, b: Any) -> float:
        return (a - b).abs().max().item()

    return {"logits": gap(l1, l2),
            "state": max(gap(a, b) for a, b in zip(s1, s2, strict=True)),
            "gradients": max(gap(p1[n].grad, p2[n].grad) for n in p1)}


def compare_lms(names: list[str], corpus: str, quick: bool = False, log: Any = print,
                **budget: Any) -> dict[str, tuple[Any, Any, float]]:
    """Train each model on `corpus` under the same `budget` (steps or seconds) and print one
    line each: validation perplexity, steps and tokens/s. Returns {name: (trainer, loaders,
    val_ppl)}."""
    runs = {name: lm_run(name, corpus, quick=quick, curves=False, **budget) for name in names}
    for name, (trainer, _, ppl) in runs.items():
        log(f"{name:10s} validation perplexity {ppl:6.2f}   {trainer.global_step:>5} steps   "
            f"{tokens_per_second(trainer):>8,.0f} tokens/s   {trainer.train_seconds:6.1f} s")
    return runs
