"""Text shards: train/eval split, size-balanced shard assignment, names and file format.

The format is google-research/bert's `create_pretraining_data.py` input: UTF-8, one sentence per
line, one blank line between documents. Every decision here depends only on a document's id and
size, never on the order in which workers see documents, so reruns and other worker counts give
byte-identical shards:

- split: a document goes to `eval` when the hash of its id, read as a number in [0, 1), is below
  `eval_fraction`;
- shard: documents are hashed into `buckets_per_shard × num_shards` buckets; the buckets (with
  their total bytes) are then dealt to shards largest first, each to the shard with the fewest
  bytes so far (the "longest processing time" rule). With many documents a bucket holds many
  small ones and the shards come out within a few percent of each other; with few (three books
  into eight shards) it places whole documents the same way;
- order inside a shard: by the hash of the document id (a stable shuffle, so neighbouring
  documents are unrelated, as BERT's random next sentences assume).
"""

from __future__ import annotations

import dataclasses
import heapq
import zlib
from collections.abc import Iterable, Mapping, Sequence

from contracts import hashing

SPLITS = ("train", "eval")
# Buckets per output shard: enough for the law of large numbers to even the buckets out, few
# enough that the bucket-size table stays tiny.
BUCKETS_PER_SHARD = 64


@dataclasses.dataclass(frozen=True)
class Document:
    """One document ready to write.

    The text travels zlib-compressed: documents cross a shuffle on their way to their shard,
    and the local runner holds every shuffled byte in memory (a third of it this way); on
    Dataflow it cuts the shuffled bytes alike.

    Attributes:
      doc_id: stable id (`<dbname>:<page id>:<title>` or `book:<name>:<sha256 prefix>`).
      compressed: zlib of the UTF-8 text: the sentences, one per line, each ending in "\n".
      num_sentences: how many lines the text has.
      num_bytes: the size of the UTF-8 text.
      version: orders duplicates of one `doc_id`: the greatest is kept (e.g. the revision id).
    """

    doc_id: str
    compressed: bytes
    num_sentences: int
    num_bytes: int
    version: tuple = ()

    @classmethod
    def of(cls, doc_id: str, sentences: Sequence[str], *, version: tuple = ()) -> Document:
        """A document from its sentences (each one line, see `format_document`)."""
        data = format_document(sentences).encode("utf-8")
        return cls(doc_id, zlib.compress(data, 1), len(sentences), len(data), version)

    @property
    def data(self) -> bytes:
        """The UTF-8 text: one sentence per line, each line ending in "\n"."""
        return zlib.decompress(self.compressed)


# How text shards hash a document id (salt, then id): frozen, the split and the shards depend on it.
_HASH = dict(separator="\x00", algorithm="sha256", byteorder="big")


def stable_hash(doc_id: str, *, salt: str) -> int:
    """A 64-bit hash of an id that is the same on every machine and Python run."""
    return hashing.stable_hash64(salt, doc_id, **_HASH)


def split_of(doc_id: str, *, eval_fraction: float) -> str:
    """ "eval" for about `eval_fraction` of ids, chosen by hash; "train" for the rest."""
    return "eval" if stable_hash(doc_id, salt="split") / 2.0**64 < eval_fraction else "train"


def bucket_of(doc_id: str, *, num_buckets: int) -> int:
    return hashing.bucket_of("bucket", doc_id, num_buckets=num_buckets, **_HASH)


def order_key(doc_id: str) -> tuple[int, str]:
    """Sort key of a document inside its shard."""
    return stable_hash(doc_id, salt="order"), doc_id


def assign_buckets(bucket_bytes: Mapping[int, int], *, num_shards: int) -> dict[int, int]:
    """Deals buckets to shards, largest first, each to the shard with the fewest bytes so far.

    Args:
      bucket_bytes: bucket → total bytes of its documents (buckets without documents may be
        left out).
      num_shards: how many shards.

    Returns:
      bucket → shard index in [0, num_shards). Ties go to the lower bucket and shard index.
    """
    if num_shards < 1:
        raise ValueError(f"num_shards must be positive, got {num_shards}")
    shards = [(0, index) for index in range(num_shards)]  # (bytes so far, shard): a min-heap
    assignment = {}
    for bucket, size in sorted(bucket_bytes.items(), key=lambda item: (-item[1], item[0])):
        total, shard = heapq.heappop(shards)
        assignment[bucket] = shard
        heapq.heappush(shards, (total + size, shard))
    return assignment


def shard_name(split: str, index: int, count: int) -> str:
    """`train-00000-of-00008.txt`."""
    return f"{split}-{index:05d}-of-{count:05d}.txt"


def format_document(sentences: Sequence[str]) -> str:
    """A document's lines: one sentence per line, each ending in "\\n"."""
    return "".join(f"{sentence}\n" for sentence in sentences)


def shard_bytes(documents: Iterable[Document]) -> bytes:
    """The whole content of one shard: documents in the given order, a blank line between."""
    return b"\n".join(document.data for document in documents)


def deduplicate(documents: Iterable[Document]) -> tuple[list[Document], int]:
    """Keeps one document per id, the one with the greatest `(version, text)`; sorts them.

    Returns:
      The kept documents in shard order (`order_key`), and how many duplicates were dropped.
    """
    kept: dict[str, Document] = {}
    seen = 0
    for document in documents:
        seen += 1
        current = kept.get(document.doc_id)
        if current is None or _newer(document, current):
            kept[document.doc_id] = document
    ordered = sorted(kept.values(), key=lambda document: order_key(document.doc_id))
    return ordered, seen - len(ordered)


def _newer(document: Document, other: Document) -> bool:
    if document.version != other.version:
        return document.version > other.version
    # Same version: the text decides (not the compressed bytes, which may differ between zlib
    # builds), so the choice is the same on every worker.
    return document.data > other.data
