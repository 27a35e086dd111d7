"""BERT WordPiece tokenization identical to google-research/bert's, built on tensorflow-text.

`from tokenizer import BertTokenizer` imports TensorFlow on first use only, so that
`import tokenizer` (and `tokenizer.vocab`) stays light. `WordPieceTokenizer` is the same
tokenization in plain Python (no TensorFlow), for the data pipeline's workers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tokenizer.wordpiece import WordPieceTokenizer

if TYPE_CHECKING:
    from tokenizer.bert_tokenizer import BertTokenizer

__all__ = ["BertTokenizer", "WordPieceTokenizer"]


def __getattr__(name: str):
    if name == "BertTokenizer":
        from tokenizer.bert_tokenizer import BertTokenizer

        return BertTokenizer
    raise AttributeError(f"module 'tokenizer' has no attribute {name!r}")
