"""Paths that may be local or `gs://`: glob, open, exists, sizes and atomic writes.

Every stage goes through this module, so a path works the same whether it names a local file,
a Cloud Storage object or anything else TensorFlow's filesystem layer knows. It is built on
`tf.io.gfile` (TensorFlow's own GCS client), the one filesystem that Beam workers, the trainer
and TPU VMs all have; it adds only what `tf.io.gfile` leaves to its callers:

- comma-separated lists of globs, each required to match something (an empty glob is an error
  that names the pattern, never a silently empty job);
- sorted, de-duplicated results, so that the order of inputs never depends on the filesystem;
- writes that are atomic: the bytes go to a temporary name beside the target, then a rename,
  so a crash never leaves a half-written file under the final name.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid
from collections.abc import Iterator, Sequence

import tensorflow as tf

_CHUNK_BYTES = 8 << 20


def is_remote(path: str) -> bool:
    """True for URLs such as `gs://bucket/x` that name no local file."""
    return "://" in path


def join(base: str, *parts: str) -> str:
    """Joins path parts with `/` for URLs and `os.path.join` for local paths."""
    if is_remote(base):
        return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])
    return os.path.join(base, *parts)


def basename(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def split_patterns(patterns: str | Sequence[str]) -> list[str]:
    """Splits a comma-separated flag value (or a list of them) into single patterns."""
    if isinstance(patterns, str):
        patterns = [patterns]
    return [p.strip() for value in patterns for p in value.split(",") if p.strip()]


def expand_globs(patterns: str | Sequence[str]) -> list[str]:
    """Expands comma-separated globs into a sorted list of files.

    Args:
      patterns: one string of comma-separated globs, or a list of such strings.

    Returns:
      The matching paths, sorted and de-duplicated.

    Raises:
      ValueError: no pattern was given.
      FileNotFoundError: a pattern matched nothing; the message names it.
    """
    pattern_list = split_patterns(patterns)
    if not pattern_list:
        raise ValueError("no input path given")
    found: set[str] = set()
    for pattern in pattern_list:
        try:
            matches = tf.io.gfile.glob(pattern)
        except tf.errors.NotFoundError:
            matches = []
        matches = [m for m in matches if not tf.io.gfile.isdir(m)]
        if not matches:
            raise FileNotFoundError(f"no file matches {pattern!r}")
        found.update(matches)
    return sorted(found)


def exists(path: str) -> bool:
    return tf.io.gfile.exists(path)


def size(path: str) -> int:
    """Size of a file in bytes."""
    return tf.io.gfile.stat(path).length


def makedirs(path: str) -> None:
    tf.io.gfile.makedirs(path)


def listdir(path: str) -> list[str]:
    return sorted(tf.io.gfile.listdir(path)) if tf.io.gfile.isdir(path) else []


def remove(path: str) -> None:
    if tf.io.gfile.exists(path):
        tf.io.gfile.remove(path)


def open_file(path: str, mode: str = "rb"):
    """Opens a local or remote file; `mode` as for `open` ('r', 'rb', 'w', 'wb')."""
    return tf.io.gfile.GFile(path, mode)


def read_text(path: str) -> str:
    with open_file(path, "rb") as f:
        return f.read().decode("utf-8")


@contextlib.contextmanager
def atomic_open(path: str, mode: str = "wb") -> Iterator:
    """Opens `path` for writing so that it appears complete or not at all.

    The data goes to a hidden temporary file in the same folder, renamed onto `path` only when
    the block exits without an exception; on an exception the temporary file is removed.
    On GCS the rename is a server-side copy, so readers never see a partial object either.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes only; got mode {mode!r}")
    folder, name = path.rstrip("/").rsplit("/", 1) if "/" in path else (".", path)
    makedirs(folder)
    temporary = join(folder, f".{name}.tmp-{uuid.uuid4().hex}")
    try:
        with open_file(temporary, mode) as f:
            # GFile creates nothing until the first write: an empty output must still exist.
            f.write(b"" if "b" in mode else "")
            yield f
        tf.io.gfile.rename(temporary, path, overwrite=True)
    finally:
        remove(temporary)


def atomic_write(path: str, data: bytes | str) -> None:
    """Writes `data` to `path` atomically (see `atomic_open`)."""
    with atomic_open(path, "wb") as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)


def sha256(path: str) -> str:
    """Hex sha256 of a file's bytes, read in 8 MiB chunks."""
    digest = hashlib.sha256()
    with open_file(path, "rb") as f:
        while chunk := f.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()
