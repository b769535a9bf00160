"""Data: document corpora, tokenizers and the selection of the T training documents.

Public API::

    Document(id, text)                       # frozen dataclass
    load_corpus(source, *, path="", text_field="text", split="train", limit=None)
                                             # sources: "news", "wiki", "files", "cnn_dailymail"
    get_tokenizer(name) -> Tokenizer         # "gpt2", "neox"/"pythia", local dir, hub id
    select_documents(corpus, tokenizer, *, T, C, seed, min_tokens=None, first_t=False,
                     block=None) -> DocumentSet
    restrict_vocab(docs) -> DocumentSet      # compact vocabulary of the ids present
    filler_pool(corpus, tokenizer, *, exclude_ids, n, C, seed) -> (tokens_NC, mask_NC, ids)
"""

from .documents import DocumentSet, filler_pool, restrict_vocab, select_documents
from .sources import SOURCES, Corpus, Document, load_corpus
from .tokenizers import Tokenizer, get_tokenizer

__all__ = [
    "SOURCES",
    "Corpus",
    "Document",
    "DocumentSet",
    "Tokenizer",
    "filler_pool",
    "get_tokenizer",
    "load_corpus",
    "restrict_vocab",
    "select_documents",
]
