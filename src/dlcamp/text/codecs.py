"""Codecs for translation: a sentence <-> a list of token ids, with the special tokens.

Three kinds, each built from the training sentences of its side only:

- "word" (the English source): lowercased, punctuation split off, `<phN>` one token,
  words seen fewer than `min_freq` (2) times become `<unk>`;
- "char" (the Chinese target): one token per character (spaces included), `<phN>` one token;
- "bpe" (the French target): byte-pair encoding (subwords) trained with Hugging Face
  `tokenizers` (models.BPE + BpeTrainer, ~4,000 tokens; the trainer is deterministic), words
  marked by a leading "▁" (the Metaspace pre-tokenizer) so decoding restores the spaces.

Every codec numbers its tokens with a `dlcamp.text.vocab.Vocab`: id 0 is `<unk>`, then the
reserved `<pad>`, `<bos>`, `<eos>` and `<ph1>` .. `<ph9>`. `encode(text)` gives the ids with no
`<bos>`/`<eos>`; `decode(ids)` stops at the first `<eos>` and skips `<pad>` and `<bos>`.
`to_dict()` is plain JSON (str, int, lists), so it can sit in a `weights_only` checkpoint,
and `codec_from_dict` rebuilds the codec.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import torch

from dlcamp.core.errors import BadArgument
from dlcamp.core.registry import unknown_name
from dlcamp.text.translation_clean import PLACEHOLDER_TOKENS
from dlcamp.text.vocab import Vocab

PAD, BOS, EOS = "<pad>", "<bos>", "<eos>"
RESERVED = (PAD, BOS, EOS) + PLACEHOLDER_TOKENS
CODEC_KINDS = ("word", "char", "bpe")
BPE_VOCAB_SIZE = 4000

WORD_TOKEN = re.compile(r"<ph\d+>|\w+(?:['’]\w+)*|[^\w\s]")
PH_SPLIT = re.compile(r"<ph\d+>")
CHAR_TOKEN = re.compile(r"<ph\d+>|.", re.DOTALL)
_NO_SPACE_BEFORE = re.compile(r" ([.,:;!?)\]}'’])")
_NO_SPACE_AFTER = re.compile(r"([(\[{]) ")


def word_tokens(text: str) -> list[str]:
    """"Open <ph1>'s file..." -> ["open", "<ph1>", "'", "s", "file", ".", ".", "."]."""
    return WORD_TOKEN.findall(text.lower())


def char_tokens(text: str) -> list[str]:
    """"打开 <ph1>" -> ["打", "开", " ", "<ph1>"]."""
    return CHAR_TOKEN.findall(text)


class Codec:
    """Shared part: the vocabulary, the special ids, decoding and (de)serialising.

    Subclasses define `kind`, `tokens(text) -> list[str]` and `join(tokens) -> str`.
    """

    kind = ""

    def __init__(self, vocab: Vocab) -> None:
        missing = [t for t in RESERVED if vocab.token_to_idx.get(t) != RESERVED.index(t) + 1]
        if missing:
            raise BadArgument(f"a {self.kind} codec's vocabulary must start with <unk> and "
                              f"{', '.join(RESERVED)}; wrong or missing: {missing[:3]}")
        self.vocab = vocab
        self.unk, self.pad, self.bos, self.eos = (0, 1, 2, 3)

    def __len__(self) -> int:
        return len(self.vocab)

    def tokens(self, text: str) -> list[str]:
        raise NotImplementedError

    def join(self, tokens: list[str]) -> str:
        raise NotImplementedError

    def encode(self, text: str) -> list[int]:
        """Token ids of `text` (no <bos>, no <eos>); unknown tokens are <unk> (0)."""
        get = self.vocab.token_to_idx.get
        return [get(t, 0) for t in self.tokens(text)]

    def encode_many(self, texts: Sequence[str]) -> list[list[int]]:
        """`encode` of each text."""
        return [self.encode(t) for t in texts]

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        """The text of `ids` up to the first <eos>, <pad> and <bos> skipped."""
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        kept = []
        for i in ids:
            if i == self.eos:
                break
            if i not in (self.pad, self.bos):
                kept.append(int(i))
        return self.join(self.vocab.to_tokens(kept))

    def to_dict(self) -> dict:
        return {"kind": self.kind, "tokens": list(self.vocab.idx_to_token)}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self):,} tokens)"


class WordCodec(Codec):
    """English words: lowercase, punctuation split off, <phN> kept whole."""

    kind = "word"

    @classmethod
    def build(cls, texts: Iterable[str], min_freq: int = 2) -> WordCodec:
        return cls(Vocab([word_tokens(t) for t in texts], min_freq, RESERVED))

    def tokens(self, text: str) -> list[str]:
        return word_tokens(text)

    def join(self, tokens: list[str]) -> str:
        """Words with spaces, none before closing punctuation (a readable approximation)."""
        text = " ".join(tokens)
        return _NO_SPACE_AFTER.sub(r"\1", _NO_SPACE_BEFORE.sub(r"\1", text))


class CharCodec(Codec):
    """One token per character (Chinese), <phN> kept whole; decoding is exact."""

    kind = "char"

    @classmethod
    def build(cls, texts: Iterable[str], min_freq: int = 1) -> CharCodec:
        return cls(Vocab([char_tokens(t) for t in texts], min_freq, RESERVED))

    def tokens(self, text: str) -> list[str]:
        return char_tokens(text)

    def join(self, tokens: list[str]) -> str:
        return "".join(tokens)


def _tokenizers():
    try:
        import tokenizers
    except ImportError as e:  # pragma: no cover - tokenizers is in the `data` extra
        raise BadArgument("the bpe codec needs tokenizers: pip install 'dlcamp[data]'") from e
    return tokenizers


class BpeCodec(Codec):
    """Subwords learnt by byte-pair encoding (tokenizers), spaces kept as "▁"; the special
    tokens have the same ids in the tokenizer and in the vocabulary."""

    kind = "bpe"

    def __init__(self, tokenizer_json: str) -> None:
        tk = _tokenizers()
        self.tokenizer = tk.Tokenizer.from_str(tokenizer_json)
        vocab = self.tokenizer.get_vocab(with_added_tokens=True)
        super().__init__(Vocab.from_idx_to_token(sorted(vocab, key=vocab.__getitem__)))

    @classmethod
    def build(cls, texts: Iterable[str], vocab_size: int = BPE_VOCAB_SIZE) -> BpeCodec:
        tk = _tokenizers()
        tokenizer = tk.Tokenizer(tk.models.BPE(unk_token="<unk>"))
        tokenizer.pre_tokenizer = tk.pre_tokenizers.Metaspace(prepend_scheme="never")
        tokenizer.decoder = tk.decoders.Metaspace(prepend_scheme="never")
        trainer = tk.trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                         special_tokens=["<unk>", *RESERVED])
        # Encoding cuts the special tokens out before the pre-tokenizer; training does not, so
        # the trainer gets the pieces between placeholders, as encoding will see them.
        pieces = [piece for text in texts for piece in PH_SPLIT.split(text) if piece]
        tokenizer.train_from_iterator(pieces, trainer)
        return cls(tokenizer.to_str())

    def tokens(self, text: str) -> list[str]:
        return self.tokenizer.encode(text, add_special_tokens=False).tokens

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def encode_many(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self.tokenizer.encode_batch(list(texts), add_special_tokens=False)]

    def join(self, tokens: list[str]) -> str:
        return self.tokenizer.decoder.decode(tokens)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "tokenizer": self.tokenizer.to_str()}


def build_codec(kind: str, texts: Iterable[str], **options) -> Codec:
    """A new codec of `kind` ("word", "char", "bpe") learnt from `texts` (training sentences).

    Options: `min_freq` (word, char) or `vocab_size` (bpe).
    """
    makers = {"word": WordCodec, "char": CharCodec, "bpe": BpeCodec}
    if kind not in makers:
        raise unknown_name("codec kind", kind, CODEC_KINDS)
    return makers[kind].build(texts, **options)


def codec_from_dict(d: dict) -> Codec:
    """The codec `codec.to_dict()` describes (e.g. read back from a checkpoint)."""
    if not isinstance(d, dict) or d.get("kind") not in CODEC_KINDS:
        raise BadArgument(f"not a codec description: {str(d)[:80]!r}")
    if d["kind"] == "bpe":
        return BpeCodec(d["tokenizer"])
    vocab = Vocab.from_idx_to_token(d["tokens"])
    return WordCodec(vocab) if d["kind"] == "word" else CharCodec(vocab)
