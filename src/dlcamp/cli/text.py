"""`dlcamp generate` and `dlcamp translate`, and what `dlcamp data info` says about text.

    dlcamp generate RUN --prompt 床前            # a language model (lstm, gpt, ...) writes on
    dlcamp translate RUN "Open file" --beam 4   # a translation model (seq2seq, bahdanau,
                                                # transformer) translates each sentence given
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from dlcamp.cli.argtypes import number, seed, whole
from dlcamp.core.errors import BadArgument

# generate: the most tokens (free text) and lines (poems) one command writes (10,000 tokens:
# about 20 s on a laptop CPU). Generation prints at the end, so a typo like --length 10000000
# would otherwise look like a hang.
MAX_LENGTH, MAX_LINES = 10_000, 1_000
MAX_BEAM, MAX_SENTENCES = 32, 1_000  # translate: beams per sentence, sentences per command
POEM_CORPORA = ("tang300", "tang")  # `--poem auto` writes 5-character lines for these


def _generate(args: argparse.Namespace) -> int:
    from dlcamp.text.generate import generate, generate_poem
    from dlcamp.train.checkpoint import load_language_model

    model, vocab, data = load_language_model(args.run)
    poem = args.poem
    if poem == "auto":
        poem = "5" if data.get("dataset") in POEM_CORPORA else "off"
    if poem != "off" and data.get("token", "char") != "char":
        raise BadArgument("poem mode needs a character-level model; use --poem off")
    sampling = dict(temperature=args.temperature, top_k=args.top_k, greedy=args.greedy,
                    seed=args.seed)
    if poem == "off":
        print(generate(model, vocab, args.prompt, args.length, token=data.get("token", "char"),
                       **sampling))
    else:
        print(generate_poem(model, vocab, args.prompt, chars_per_line=int(poem),
                            lines=args.lines, **sampling))
    return 0


def _translate(args: argparse.Namespace) -> int:
    from dlcamp.train.translation import load_translator

    sentences = list(args.text)
    if args.text == ["-"]:
        sentences = [line.strip() for line in sys.stdin if line.strip()]
    if not sentences:
        raise BadArgument("nothing to translate: give a sentence, e.g. \"Open file\", or - to "
                          "read one sentence a line from standard input")
    if len(sentences) > MAX_SENTENCES:
        raise BadArgument(f"{len(sentences):,} sentences: at most {MAX_SENTENCES:,} a command")
    translator = load_translator(args.run, device=args.device)
    results = translator.translate(sentences, beam=args.beam, max_len=args.max_len)
    for source, result in zip(sentences, results, strict=True):
        if args.json:
            print(json.dumps({"source": source, **result}, ensure_ascii=False))
        else:
            print(result["translation"])
    return 0


def corpus_info(name: str) -> int:
    """One text corpus: where it was found, records per split, characters, an example."""
    from dlcamp.core.errors import DatasetNotFound
    from dlcamp.text.corpora import corpus_text, get_corpus_spec, load_corpus, locate_corpus

    spec = get_corpus_spec(name)
    print(f"{name}: {spec.description}")
    try:
        where = locate_corpus(name)
    except DatasetNotFound:
        print(f"  missing. {spec.how_to_get}")
        return 0
    train, val = load_corpus(name, "train"), load_corpus(name, "val")
    chars = len(corpus_text(name, "train"))
    print(f"  found in {where[0].parent}; {len(train):,} train / {len(val):,} val records, "
          f"{chars:,} training characters")
    first = train[0]
    print(f"  e.g. {first.title or ''} {first.author or ''}: {first.lines[0][:60]}".rstrip())
    return 0


def translation_set_info(name: str) -> int:
    """One parallel corpus: pairs per split, the catalogs (by domain) they came from, and the
    Debian packages it reads; missing catalogs are printed with the fix, not raised."""
    from dlcamp.core.errors import DatasetNotFound
    from dlcamp.text.translation import translation_info

    try:
        info: dict[str, Any] = translation_info(name)
    except DatasetNotFound as e:
        print(f"missing: {e}")  # names the set, the packages and the fix
        return 0
    print(f"{name}: {info['description']}")
    splits = "  ".join(f"{split} {n:,}" for split, n in info["counts"].items())
    print(f"  pairs: {splits}")
    top = sorted(info["sources"].items(), key=lambda kv: -kv[1])
    print(f"  from {len(top)} catalogs: " + ", ".join(f"{d} {n:,}" for d, n in top[:12])
          + (", ..." if len(top) > 12 else ""))
    print(f"  packages: {', '.join(info['packages'])}")
    return 0


def add_parsers(sub: Any) -> None:
    """The `generate` and `translate` subcommands."""
    g = sub.add_parser("generate", help="write text with a trained language model")
    g.add_argument("run", help="run directory or checkpoint of a language model")
    g.add_argument("--prompt", required=True, help="the start of the text, e.g. 床前")
    g.add_argument("--length", type=whole(0, MAX_LENGTH), default=100,
                   help=f"tokens to add (free text; 0 to {MAX_LENGTH:,})")
    g.add_argument("--poem", default="auto", choices=["auto", "off", "5", "7"],
                   help="5 or 7 characters a line, ending in ，/。 in turn (auto: 5 for "
                   f"models trained on {' or '.join(POEM_CORPORA)}, else off)")
    g.add_argument("--lines", type=whole(1, MAX_LINES), default=4,
                   help=f"poem lines (4: a quatrain; 1 to {MAX_LINES:,})")
    g.add_argument("--temperature", default=0.8,
                   type=number(0, above=True, note="; use --greedy for always the likeliest "
                               "token"),
                   help="a finite number > 0 (default 0.8). < 1: safer choices, > 1: more "
                   "surprising ones; tiny: nearly greedy, huge: nearly uniform")
    g.add_argument("--top-k", type=whole(0, note="; 0: no limit"), default=0,
                   help="sample among the k likeliest (0, or more than the vocabulary: all)")
    g.add_argument("--greedy", action="store_true", help="always the likeliest next token")
    g.add_argument("--seed", type=seed(), help="for a repeatable sample")
    g.set_defaults(func=_generate)

    t = sub.add_parser("translate", help="translate English with a trained translation model")
    t.add_argument("run", help="run directory or checkpoint of a seq2seq, bahdanau or "
                   "transformer model trained on translation-zh or translation-fr")
    t.add_argument("text", nargs="+", help="one or more English sentences (quote each), "
                   "or - to read one a line from standard input")
    t.add_argument("--beam", type=whole(1, MAX_BEAM), default=1,
                   help=f"beam size (1: greedy search; up to {MAX_BEAM})")
    t.add_argument("--max-len", type=whole(1, 1000), default=None,
                   help="the most target tokens a translation may have (default: twice the "
                   "longest in training)")
    t.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    t.add_argument("--json", action="store_true",
                   help="one JSON object a sentence: source, translation, tokens, score (the "
                   "beam's length-normalised log-probability; null for greedy search)")
    t.set_defaults(func=_translate)
