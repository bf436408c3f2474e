"""Text for sequence models: corpora, tokens and vocabularies, minibatches, sampling.

    from dlcamp.text import make_text_loaders, sample_next
    data = make_text_loaders("tang300", batch_size=32, num_steps=35)
    for X, Y, fresh in data.train: ...        # (B, T) ids, Y = X shifted by one

The corpora themselves (Tang and Song poems, Chinese sayings, English quotations from
Debian's fortune packages) are read by `dlcamp.text.corpora`, re-exported here.
"""

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
from dlcamp.text.vocab import Vocab, encode_corpus, tokenize

__all__ = [
    "CORPORA", "SeqDataLoader", "TextLoaders", "TextRecord", "Vocab", "corpus_text",
    "encode_corpus", "list_corpora", "load_corpus", "make_text_loaders",
    "perplexity", "sample_next", "seq_data_iter_random", "seq_data_iter_sequential",
    "tokenize",
]
