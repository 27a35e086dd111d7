"""Documents out of text shards, read in byte ranges so that no reader holds a whole file.

The input format is google-research/bert's: UTF-8, one sentence per line, a blank line (or a
line of whitespace only) between documents. A file is cut into byte ranges of about
`split_bytes`; each range is read by one worker.

Which range owns a document: the one holding the start of the blank line right before the
document (the first document of a file belongs to the range at offset 0). A reader starting
mid-file skips forward to the first whole line, reads past its end to finish its last document,
and never starts a document whose blank line lies beyond its end. Every document is read by
exactly one range, whatever the range size.

A document's id is `<file>:<byte offset of its first line>`, where `<file>` is the shortest
path suffix that tells the inputs apart (`train-00000-of-00008.txt`, or
`wiki-shards/train-00000-of-00008.txt` when books-shards has a file of the same name): stable
across runs, workers and range sizes, and unchanged when the shards move to another folder
or to gs://.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from typing import NamedTuple

from contracts import lines, storage


class ByteRange(NamedTuple):
    """Bytes [start, end) of `path`; `name` prefixes the ids of its documents."""

    path: str
    name: str
    start: int
    end: int


class TextDocument(NamedTuple):
    """One document: its id and its sentences (stripped, non-empty)."""

    doc_id: str
    sentences: list[str]


def short_names(paths: Sequence[str]) -> dict[str, str]:
    """The shortest trailing path components that tell `paths` apart.

    Args:
      paths: distinct file paths (local or gs://).

    Returns:
      path -> name, e.g. {"data/wiki/train-0.txt": "wiki/train-0.txt", ...}.
    """
    parts = {path: path.rstrip("/").split("/") for path in paths}
    depth = 1
    while True:
        names = {path: "/".join(components[-depth:]) for path, components in parts.items()}
        if len(set(names.values())) == len(names) or depth > max(map(len, parts.values())):
            return names
        depth += 1


def plan_ranges(paths: Sequence[str], sizes: Sequence[int], *, split_bytes: int) -> list[ByteRange]:
    """Cuts each file into ranges of about `split_bytes`.

    Args:
      paths: the input files.
      sizes: their sizes in bytes (an empty file gives no range).
      split_bytes: the target range size.

    Returns:
      The ranges, in file order.
    """
    names = short_names(paths)
    ranges = []
    for path, size in zip(paths, sizes, strict=True):
        for start in range(0, size, split_bytes):
            ranges.append(ByteRange(path, names[path], start, min(size, start + split_bytes)))
    return ranges


def _decode(line: bytes, counts: Counter) -> str:
    # The reference decodes with errors="ignore"; a replacement character is then dropped by the
    # tokenizer's text cleaning (as Google's), so the text is the same. Counted.
    text, valid = lines.decode(line)
    if not valid:
        counts["lines_invalid_utf8"] += 1
    return text


def read_documents(
    byte_range: ByteRange,
    *,
    max_document_bytes: int,
    max_sentence_bytes: int,
    counts: Counter | None = None,
) -> Iterator[TextDocument]:
    """The documents that `byte_range` owns (see the module docstring).

    Args:
      byte_range: what to read.
      max_document_bytes: a document growing past this is emitted in pieces of about this
        size, cut at sentences, each piece a document of its own (`documents_cut` counts them):
        a shard missing its blank lines must not make one worker hold the whole file.
      max_sentence_bytes: longer lines are skipped (`lines_too_long`): they are not sentences,
        and a single one would become an instance of one truncated sentence anyway.
      counts: accumulates what was read and skipped, if given.

    Yields:
      TextDocument, in file order.
    """
    counts = counts if counts is not None else Counter()
    path, name, start, end = byte_range
    with storage.open_file(path, "rb") as f:
        position = 0
        # Whether the blank line that would precede the next document is ours.
        may_start = start == 0
        if start > 0:
            f.seek(start - 1)
            f.readline()
            position = f.tell()  # the first line that starts >= start
        in_document = False
        sentences: list[str] = []
        doc_start = doc_bytes = 0
        while True:
            line_start = position
            line = f.readline()
            if not line:
                break
            # The file's own position, not a sum of len(line): it is the seek target.
            position = f.tell()
            text = _decode(line, counts).strip()
            if not text:
                if sentences:
                    yield TextDocument(f"{name}:{doc_start}", sentences)
                    sentences = []
                in_document = False
                if line_start >= end:
                    break  # a document after this blank line belongs to the next range
                may_start = True
                continue
            if not in_document:
                if not may_start:
                    if line_start >= end:
                        break
                    continue  # the rest of a document that the previous range owns
                # Ours (its blank line is in our range), even if it starts past our end.
                in_document, may_start = True, False
                doc_start, doc_bytes = line_start, 0
            if len(line) > max_sentence_bytes:
                counts["lines_too_long"] += 1
                continue
            if doc_bytes + len(line) > max_document_bytes and sentences:
                counts["documents_cut"] += 1
                yield TextDocument(f"{name}:{doc_start}", sentences)
                sentences, doc_start, doc_bytes = [], line_start, 0
            sentences.append(text)
            doc_bytes += len(line)
        if sentences:
            yield TextDocument(f"{name}:{doc_start}", sentences)
