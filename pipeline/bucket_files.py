"""Documents grouped into buckets through scratch files, for runners that group in memory.

Why: Beam's local runner (FnApiRunner) materialises a GroupByKey's whole input in the memory
of the driver process before the next stage runs, so grouping the tokenized corpus by bucket
held all of it at once (~3 bytes of memory per byte of text). Dataflow's shuffle service
spills to disk and needs none of this.

Instead, each byte range's reader writes its documents into one scratch file, sorted by
bucket, and sends through the shuffle only a reference per bucket: (path, offset, length,
documents). A bucket's step then reads its slice of every range file. What crosses the
shuffle is a few dozen bytes per (range, bucket); memory is bounded by one range's documents
while reading and one bucket's while making instances, whatever the corpus size.

A range file is a run of records, bucket after bucket; a record is a document as
`pretraining_instances.encode_document` makes it: a header of three little-endian uint32 (the
lengths of the id in UTF-8, of the token bytes and of the sentence-length bytes), then those
bytes. Files are written under a temporary name and renamed: a retried range rewrites the
same bytes under the same name.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from typing import NamedTuple

from contracts import hashing, storage

_HEADER = struct.Struct("<III")

Encoded = tuple[str, bytes, bytes]  # pretraining_instances.encode_document's output


class Slice(NamedTuple):
    """One bucket's documents in one range file: bytes [offset, offset + length) of path."""

    path: str
    offset: int
    length: int
    documents: int


def range_file_name(range_path: str, start: int) -> str:
    """A stable file name for the range starting at `start` of `range_path`."""
    return f"range-{hashing.stable_hash64('range', range_path, start):016x}.docs"


def write_range(path: str, buckets: dict[int, list[Encoded]]) -> Iterator[tuple[int, Slice]]:
    """Writes one range's documents, bucket by bucket in bucket order, atomically.

    Yields:
      (bucket, Slice) for every bucket with documents, once the file is in place.
    """
    storage.makedirs(storage.dirname(path))
    temporary = storage.temporary_path(path)
    slices: list[tuple[int, Slice]] = []
    offset = 0
    try:
        with storage.open_file(temporary, "wb") as f:
            for bucket in sorted(buckets):
                chunks = []
                for doc_id, tokens, lengths in buckets[bucket]:
                    name = doc_id.encode("utf-8")
                    chunks += (_HEADER.pack(len(name), len(tokens), len(lengths)), name)
                    chunks += (tokens, lengths)
                data = b"".join(chunks)
                f.write(data)
                slices.append((bucket, Slice(path, offset, len(data), len(buckets[bucket]))))
                offset += len(data)
        storage.rename(temporary, path)
    except BaseException:
        storage.remove(temporary)
        raise
    yield from slices


def read_slices(slices: Iterable[Slice]) -> Iterator[Encoded]:
    """The documents of a bucket's slices, as `pretraining_instances.decode_document` takes
    them (in slice order; a bucket orders its documents itself)."""
    for piece in sorted(slices):
        with storage.open_file(piece.path, "rb") as f:
            f.seek(piece.offset)
            data = f.read(piece.length)
        if len(data) != piece.length:
            raise ValueError(
                f"{piece.path}: scratch file truncated (wanted {piece.length} bytes at "
                f"{piece.offset}, got {len(data)})"
            )
        view = memoryview(data)
        position = read = 0
        while position < len(data):
            name_length, token_length, lengths_length = _HEADER.unpack_from(data, position)
            position += _HEADER.size
            name_end = position + name_length
            tokens_end = name_end + token_length
            end = tokens_end + lengths_length
            yield (
                str(view[position:name_end], "utf-8"),
                bytes(view[name_end:tokens_end]),
                bytes(view[tokens_end:end]),
            )
            position = end
            read += 1
        if read != piece.documents or position != len(data):
            raise ValueError(
                f"{piece.path}: scratch slice at {piece.offset} holds {read} documents, "
                f"expected {piece.documents}"
            )
