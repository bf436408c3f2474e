"""Text for sequence models: corpora, tokens and vocabularies, minibatches, sampling.

    from dlcamp.text import make_text_loaders, sample_next
    data = make_text_loaders("tang300", batch_size=32, num_steps=35)
    for X, Y, fresh in data.train: ...        # (B, T) ids, Y = X shifted by one

The corpora themselves (Tang and Song poems, Chinese sayings, English quotations from
Debian's fortune packages, the whole Tang corpus of npm chinese-poetry) are read by
`dlcamp.text.corpora`, re-exported here; the parallel corpora for translation (English
interface strings and their Chinese or French translations, from gettext catalogs) by
`dlcamp.text.translation`, with the codecs (word, character, BPE) in `dlcamp.text.codecs`.
"""

from dlcamp.text.codecs import build_codec, codec_from_dict
from dlcamp.text.corpora import (
    CORPORA,
    TextRecord,
    corpus_text,
    list_corpora,
    load_corpus,
)
from dlcamp.text.data import (
    SeqDataLoader,
    TextLoaders,
    make_text_loaders,
    seq_data_iter_random,
    seq_data_iter_sequential,
)
from dlcamp.text.sampling import perplexity, sample_next
from dlcamp.text.translation import (
    Pair,
    list_translation_sets,
    load_pairs,
    make_translation_loaders,
    translation_info,
)
from dlcamp.text.vocab import Vocab, encode_corpus, tokenize

__all__ = [
    "CORPORA", "Pair", "SeqDataLoader", "TextLoaders", "TextRecord", "Vocab", "build_codec",
    "codec_from_dict", "corpus_text", "encode_corpus", "list_corpora", "list_translation_sets",
    "load_corpus", "load_pairs", "make_text_loaders", "make_translation_loaders", "perplexity",
    "sample_next", "seq_data_iter_random", "seq_data_iter_sequential", "tokenize",
    "translation_info",
]
