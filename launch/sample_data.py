"""Where the real sample data lives: one setting, `BERT_STACK_DATA`, default `../shared/data`.

The samples (a cut-down English Wikipedia dump in plain and multistream layout, five
public-domain books, Google's reference pretraining records, the bert-base-uncased vocab, GLUE
SST-2) are read from that folder, never copied into the project. `make demo`, `make wiki-shards`,
the benchmarks and the tests all reach it through `data_folder()`.
"""

from __future__ import annotations

import os
from pathlib import Path

ENVIRONMENT_VARIABLE = "BERT_STACK_DATA"
_PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Relative to the checkout, not to the working directory, so every command agrees.
DEFAULT_FOLDER = _PROJECT_ROOT / ".." / "shared" / "data"

# The files of the sample, by their path inside the data folder.
WIKI_DUMP = "wikipedia/enwiki-articles1-shortened.xml.bz2"
WIKI_MULTISTREAM = "wikipedia/enwiki-articles1-shortened-multistream.xml.bz2"
WIKI_MULTISTREAM_INDEX = "wikipedia/enwiki-articles1-shortened-multistream-index.txt.bz2"
WIKI_TABLES = "wikipedia/enwiki-table-markup.xml.bz2"
TINYWIKI = "wikipedia/tinywiki-pages-articles.xml"
BOOKS_GLOB = "books/*.txt"
GOOGLE_RECORDS = "records/google-reference-seq128.tfrecord"
UNCASED_VOCAB = "vocab/bert-base-uncased-vocab.txt"


def data_folder() -> Path:
    """The folder `BERT_STACK_DATA` names, or `../shared/data` beside the checkout."""
    configured = os.environ.get(ENVIRONMENT_VARIABLE)
    return Path(configured) if configured else DEFAULT_FOLDER.resolve()


def missing_reason(folder: Path | None = None) -> str | None:
    """Why the data folder cannot be used, or None when it can."""
    folder = folder or data_folder()
    if (folder / WIKI_MULTISTREAM).is_file():
        return None
    return (
        f"real data folder {folder} not found (or it lacks {WIKI_MULTISTREAM}): set "
        f"{ENVIRONMENT_VARIABLE} to the folder of the shared samples (default ../shared/data)"
    )
