"""Grouping by key through scratch files, for runners that group in memory (`--grouping`).

Why: Beam's local runner (FnApiRunner) materialises a GroupByKey's whole input in the memory
of the driver process before the next stage runs, so a job that groups its corpus by key (text
shards by shard, tokenized documents by bucket) held all of it at once: ~3-4 bytes of memory
per byte of text. Dataflow's shuffle service spills to disk and needs none of this.

Instead, a step writes the items it would have shuffled into a scratch file of its own, group
after group, and sends through the shuffle only a reference per group: a `Slice` (path, offset,
length, number of items, and a weight the job may sum, e.g. bytes). The grouped step then reads
its slice of every file. What crosses the shuffle is a few dozen bytes per (file, key); memory
is bounded by what one step writes at a time and what one key holds, whatever the corpus size.

A file is a run of slices; a slice is one pickled list (our own scratch data, written and read
by the same job). Files are written under a temporary name and renamed: a retried step
rewrites the same bytes under the same name.
"""

from __future__ import annotations

import pickle
from collections.abc import Hashable, Iterable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

from contracts import hashing, storage

GROUPINGS = ("auto", "files", "shuffle")


class Slice(NamedTuple):
    """One key's items in one scratch file: bytes [offset, offset + length) of path."""

    path: str
    offset: int
    length: int
    items: int
    weight: int = 0  # what the writer summed over the items (e.g. their bytes), for planning


def resolve(grouping: str, *, on_dataflow: bool) -> str:
    """ "files" or "shuffle" for a `--grouping` value ("auto": shuffle on Dataflow only)."""
    if grouping not in GROUPINGS:
        raise ValueError(f"grouping={grouping!r}: must be one of {', '.join(GROUPINGS)}")
    if grouping == "auto":
        return "shuffle" if on_dataflow else "files"
    return grouping


def file_name(*key_parts: object) -> str:
    """A stable scratch file name for the step identified by `key_parts`."""
    return f"group-{hashing.stable_hash64('group-file', *key_parts):016x}.pickle"


def write_groups(
    path: str,
    groups: Mapping[Hashable, Sequence[Any]],
    *,
    weights: Mapping[Hashable, int] | None = None,
) -> list[tuple[Hashable, Slice]]:
    """Writes `groups` (key -> items), in key order, to `path` atomically.

    Returns:
      (key, Slice) for every key, once the file is in place.
    """
    storage.makedirs(storage.dirname(path))
    temporary = storage.temporary_path(path)
    slices: list[tuple[Hashable, Slice]] = []
    offset = 0
    try:
        with storage.open_file(temporary, "wb") as f:
            for key in sorted(groups):
                items = list(groups[key])
                data = pickle.dumps(items, protocol=pickle.HIGHEST_PROTOCOL)
                f.write(data)
                weight = weights.get(key, 0) if weights else 0
                slices.append((key, Slice(path, offset, len(data), len(items), weight)))
                offset += len(data)
        storage.rename(temporary, path)
    except BaseException:
        storage.remove(temporary)
        raise
    return slices


def read_slices(slices: Iterable[Slice]) -> Iterator[Any]:
    """The items of a key's slices, slice after slice in a fixed order (path, offset)."""
    for piece in sorted(slices):
        with storage.open_file(piece.path, "rb") as f:
            f.seek(piece.offset)
            data = f.read(piece.length)
        if len(data) != piece.length:
            raise ValueError(
                f"{piece.path}: scratch file truncated (wanted {piece.length} bytes at "
                f"{piece.offset}, got {len(data)})"
            )
        try:
            items = pickle.loads(data)
        except Exception as error:  # a damaged scratch file: say which
            raise ValueError(
                f"{piece.path}: scratch slice at {piece.offset} unreadable: {error}"
            ) from error
        if len(items) != piece.items:
            raise ValueError(
                f"{piece.path}: scratch slice at {piece.offset} holds {len(items)} items, "
                f"expected {piece.items}"
            )
        yield from items
