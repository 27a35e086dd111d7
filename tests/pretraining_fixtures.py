"""Small inputs for the create_pretraining_data tests, made from three of the real books.

A Gutenberg book becomes text in google-research/bert's input format: its header and footer
cut, one sentence a line (a simple punctuation split), and a blank line between documents of
`paragraphs_per_document` paragraphs (a chapter-sized piece of a book is a fair stand-in for a
Wikipedia article).
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import UNCASED_VOCAB, require_real_data

BOOK_NAMES = ("pg11-alice-in-wonderland.txt", "pg1661-sherlock-holmes.txt", "pg84-frankenstein.txt")
VOCAB = UNCASED_VOCAB
# A sentence ends at . ! or ? (and any closing quotes or brackets), before a space.
_SENTENCE_END = re.compile(r"([.!?][’”\"')]*)\s+")


def real_books() -> list[Path]:
    """Alice, Sherlock Holmes and Frankenstein in the real data folder (skips when it is absent)."""
    folder = require_real_data() / "books"
    return [folder / name for name in BOOK_NAMES]


def book_documents(path: Path, *, paragraphs_per_document: int = 12) -> list[list[str]]:
    """A book as documents of sentences."""
    text = path.read_text(encoding="utf-8")
    start = text.index("\n", text.index("*** START OF")) + 1
    body = text[start : text.index("*** END OF")]
    paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", body)]
    paragraphs = [p for p in paragraphs if p]
    documents = []
    for first in range(0, len(paragraphs), paragraphs_per_document):
        sentences = []
        for paragraph in paragraphs[first : first + paragraphs_per_document]:
            sentences.extend(
                s for s in _SENTENCE_END.sub("\\1\n", paragraph).split("\n") if s.strip()
            )
        documents.append(sentences)
    return documents


def shard_text(documents: list[list[str]]) -> str:
    """Documents in the input format: a sentence a line, a blank line after each document."""
    return "".join("\n".join(document) + "\n\n" for document in documents)


def write_book_shards(
    folder: Path,
    *,
    prefix: str = "train",
    books: list[Path] | None = None,
    paragraphs_per_document: int = 12,
) -> list[Path]:
    """One text shard per book, named like extract_text's."""
    books = real_books() if books is None else books
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, book in enumerate(books):
        path = folder / f"{prefix}-{index:05d}-of-{len(books):05d}.txt"
        path.write_text(
            shard_text(book_documents(book, paragraphs_per_document=paragraphs_per_document)),
            encoding="utf-8",
        )
        paths.append(path)
    return paths
