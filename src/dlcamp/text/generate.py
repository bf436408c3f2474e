"""Text generation from a trained language model: free text, or poems of a fixed shape.

    model, vocab, meta = load_language_model("runs/lstm-tang300")  # dlcamp.train.checkpoint
    print(generate(model, vocab, "床前", length=48, temperature=0.8, top_k=20))
    print(generate_poem(model, vocab, "床前", chars_per_line=5, lines=4))

The prompt is first run through the model to build up its state (the "warm-up"); then each
step feeds the last token in and samples the next one from the predicted distribution.
Poem mode constrains the sampling: on a character position no punctuation, line break or
<unk> may be drawn, and after every 5 (or 7) characters the line ends with "，" or "。" in
turn, so a quatrain always has the shape of one.
"""

from __future__ import annotations

import torch
from torch import nn

from dlcamp.core.errors import BadArgument
from dlcamp.text.sampling import sample_next
from dlcamp.text.vocab import Vocab

PUNCTUATION = set("，。、；：？！,.;:?!·「」『』《》（）()“”\"'—…") | {"\n", " "}
LINE_ENDS = ("，", "。")


def _encode_prompt(vocab: Vocab, prompt: str, token: str) -> list[int]:
    tokens = list(prompt) if token == "char" else prompt.split()
    if not tokens:
        raise BadArgument("the prompt is empty: give at least one character, e.g. --prompt 床前")
    unknown = [t for t in tokens if vocab[t] == vocab.unk]
    if unknown:
        raise BadArgument(f"the prompt has tokens the model never saw in training: "
                          f"{''.join(unknown) if token == 'char' else unknown!r}. "
                          "Use others in --prompt (the vocabulary is in the checkpoint).")
    return [vocab[t] for t in tokens]


class _Stepper:
    """Feeds tokens one at a time and keeps the recurrent state between calls."""

    def __init__(self, model: nn.Module) -> None:
        self.model, self.state = model.eval(), None
        self.device = next(model.parameters()).device

    @torch.no_grad()
    def feed(self, ids: list[int]) -> torch.Tensor:
        """Run `ids` through the model; the logits (vocab,) of the token after the last one."""
        x = torch.tensor([ids], device=self.device)  # (1, T)
        logits, self.state = self.model(x, self.state)
        return logits[0, -1].float()


def generate(model: nn.Module, vocab: Vocab, prompt: str, length: int = 100,
             temperature: float = 1.0, top_k: int = 0, greedy: bool = False,
             seed: int | None = None, token: str = "char") -> str:
    """The prompt followed by `length` sampled tokens.

    Raises BadArgument for a negative length, an empty prompt or one with tokens the model
    never saw, and for sampling settings that `sample_next` refuses.
    """
    if length < 0:
        raise BadArgument(f"length must be >= 0, got {length}")
    ids = _encode_prompt(vocab, prompt, token)
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    stepper = _Stepper(model)
    logits = stepper.feed(ids)
    out = list(ids)
    banned = [vocab.unk]
    for _ in range(length):
        nxt = int(sample_next(logits.cpu(), temperature=temperature, top_k=top_k, greedy=greedy,
                              generator=gen, banned=banned))
        out.append(nxt)
        logits = stepper.feed([nxt])
    sep = "" if token == "char" else " "
    return sep.join(vocab.to_tokens(out))


def generate_poem(model: nn.Module, vocab: Vocab, prompt: str, chars_per_line: int = 5,
                  lines: int = 4, temperature: float = 0.8, top_k: int = 0,
                  greedy: bool = False, seed: int | None = None) -> str:
    """A poem of `lines` lines of `chars_per_line` characters, one couplet per output line.

    The prompt starts the first line; punctuation in it is skipped (the shape decides it).
    Raises BadArgument when the vocabulary has no "，"/"。", or the prompt has no character
    left once its punctuation is skipped, or more than the poem holds.
    """
    if chars_per_line < 1 or lines < 1:
        raise BadArgument("a poem needs at least one line of at least one character")
    missing = [p for p in LINE_ENDS if vocab[p] == vocab.unk]
    if missing:
        raise BadArgument(f"this model's vocabulary has no {''.join(missing)}: poem mode needs "
                          "a model trained on poems (tang300). Use --poem off.")
    ids = _encode_prompt(vocab, prompt, "char")
    chars = sum(vocab.idx_to_token[i] not in PUNCTUATION for i in ids)
    if chars == 0:
        raise BadArgument(f"the prompt {prompt!r} is only punctuation, which poem mode "
                          "decides itself: start with a character, e.g. --prompt 床前")
    if chars > chars_per_line * lines:
        raise BadArgument(f"the prompt has {chars} characters, more than {lines} lines of "
                          f"{chars_per_line} hold: use a shorter --prompt or more --lines")
    no_char = [i for i, t in enumerate(vocab.idx_to_token) if t in PUNCTUATION] + [vocab.unk]
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    stepper = _Stepper(model)
    text: list[str] = []
    line = 0
    pending = list(ids)   # tokens decided but not yet fed to the model
    logits = None
    while line < lines:
        if _chars_since_line_end(text) == chars_per_line:
            nxt = vocab[LINE_ENDS[line % 2]]
            line += 1
        elif pending:
            nxt = pending.pop(0)
            if vocab.idx_to_token[nxt] in PUNCTUATION:   # the prompt's own punctuation
                continue
        else:
            nxt = int(sample_next(logits.cpu(), temperature=temperature, top_k=top_k,
                                  greedy=greedy, generator=gen, banned=no_char))
        text.append(vocab.idx_to_token[nxt])
        logits = stepper.feed([nxt])
    poem = "".join(text)
    couplets = poem.replace("。", "。\n").strip().split("\n")
    return "\n".join(c for c in couplets if c)


def _chars_since_line_end(text: list[str]) -> int:
    n = 0
    for t in reversed(text):
        if t in LINE_ENDS:
            break
        n += 1
    return n
