"""Paths that may be local or `gs://`: glob, open, exists, sizes, folders and atomic writes.

Every file access of the project goes through this module, so a path works the same whether it
names a local file or a Cloud Storage object (or anything else fsspec has a filesystem for).
Local paths use Python's own file functions; URLs use fsspec, whose `gs://` filesystem is gcsfs.
Not `tf.io.gfile`: a stage that needs no TensorFlow (extract_text, build_vocab) would pay its
~5 s import and ~0.5 GiB per worker only to open files. TensorFlow's own readers
(`TFRecordDataset`, checkpoints) reach `gs://` by themselves and see the same objects.

What it adds to those filesystems:

- comma-separated lists of globs, each required to match something (an empty glob is an error
  that names the pattern, never a silently empty job);
- sorted, de-duplicated results, so that the order of inputs never depends on the filesystem;
- one `dirname`/`join`/`basename` for both kinds of path, trailing slashes ignored;
- writes that are atomic: the bytes go to a temporary name beside the target (`temporary_path`),
  then a rename, so a crash never leaves a half-written file under the final name.
"""

from __future__ import annotations

import contextlib
import glob as local_glob
import hashlib
import os
import shutil
import uuid
from collections.abc import Iterator, Sequence

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
    """The last component of `path`, trailing slashes ignored."""
    return path.rstrip("/").rsplit("/", 1)[-1]


def dirname(path: str) -> str:
    """The folder that holds `path` (trailing slashes ignored); "." for a bare name."""
    stripped = path.rstrip("/")
    if "/" not in stripped:
        return "."
    folder = stripped.rsplit("/", 1)[0]
    if not folder:
        return "/"  # "/x"
    if folder.endswith(":/"):
        return stripped  # "gs://bucket" is its own top
    return folder


def temporary_path(path: str) -> str:
    """A hidden, unique name beside `path`, for writing before a rename onto `path`."""
    return join(dirname(path), f".{basename(path)}.tmp-{uuid.uuid4().hex}")


def split_patterns(patterns: str | Sequence[str]) -> list[str]:
    """Splits a comma-separated flag value (or a list of them) into single patterns."""
    if isinstance(patterns, str):
        patterns = [patterns]
    return [p.strip() for value in patterns for p in value.split(",") if p.strip()]


# --- The two filesystems ----------------------------------------------------------------------

_REMOTE_FILESYSTEMS: dict[tuple[str, str | None], object] = {}


def _remote(path: str):
    """(fsspec filesystem, protocol) for a URL. One instance per protocol and emulator
    setting; no listing cache, since TensorFlow writes to the same buckets behind its back."""
    import fsspec  # only remote paths need it (gcsfs comes with it)

    protocol = path.split("://", 1)[0]
    key = (protocol, os.environ.get("STORAGE_EMULATOR_HOST"))
    if key not in _REMOTE_FILESYSTEMS:
        _REMOTE_FILESYSTEMS[key] = fsspec.filesystem(
            protocol, use_listings_cache=False, skip_instance_cache=True
        )
    return _REMOTE_FILESYSTEMS[key], protocol


def _with_protocol(protocol: str, path: str) -> str:
    return path if "://" in path else f"{protocol}://{path}"


def glob(pattern: str) -> list[str]:
    """Files and folders matching one glob, sorted."""
    if not is_remote(pattern):
        return sorted(local_glob.glob(pattern))
    filesystem, protocol = _remote(pattern)
    return sorted(_with_protocol(protocol, p) for p in filesystem.glob(pattern))


def expand_globs(patterns: str | Sequence[str]) -> list[str]:
    """Expands comma-separated globs into a sorted list of files.

    Args:
      patterns: one string of comma-separated globs, or a list of such strings.

    Returns:
      The matching paths (folders left out), sorted and de-duplicated.

    Raises:
      ValueError: no pattern was given.
      FileNotFoundError: a pattern matched nothing; the message names it.
    """
    pattern_list = split_patterns(patterns)
    if not pattern_list:
        raise ValueError("no input path given")
    found: set[str] = set()
    for pattern in pattern_list:
        matches = [m for m in glob(pattern) if not isdir(m)]
        if not matches:
            raise FileNotFoundError(f"no file matches {pattern!r}")
        found.update(matches)
    return sorted(found)


def exists(path: str) -> bool:
    if not is_remote(path):
        return os.path.exists(path)
    filesystem, _ = _remote(path)
    return filesystem.exists(path)


def isdir(path: str) -> bool:
    if not is_remote(path):
        return os.path.isdir(path)
    filesystem, _ = _remote(path)
    return filesystem.isdir(path)


def size(path: str) -> int:
    """Size of a file in bytes."""
    if not is_remote(path):
        return os.path.getsize(path)
    filesystem, _ = _remote(path)
    return int(filesystem.size(path))


def makedirs(path: str) -> None:
    """Creates a folder and its parents; nothing to do on object stores (no folders there)."""
    if not is_remote(path):
        os.makedirs(path, exist_ok=True)


def listdir(path: str) -> list[str]:
    """Names (not paths) in a folder, sorted; [] for a missing folder."""
    if not is_remote(path):
        return sorted(os.listdir(path)) if os.path.isdir(path) else []
    filesystem, _ = _remote(path)
    if not filesystem.isdir(path):
        return []
    prefix = path.split("://", 1)[1].rstrip("/") + "/"
    names = {entry[len(prefix) :].split("/", 1)[0] for entry in filesystem.ls(path, detail=False)}
    return sorted(name for name in names if name)


def walk(path: str) -> Iterator[tuple[str, list[str]]]:
    """(folder, file names) for `path` and every folder below it."""
    if not is_remote(path):
        for folder, _, names in os.walk(path):
            yield folder, sorted(names)
        return
    filesystem, protocol = _remote(path)
    for folder, _, names in filesystem.walk(path):
        yield _with_protocol(protocol, folder), sorted(names)


def remove(path: str) -> None:
    """Removes a file if it is there."""
    if not is_remote(path):
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
        return
    filesystem, _ = _remote(path)
    if filesystem.exists(path):
        filesystem.rm_file(path)


def rmtree(path: str) -> None:
    """Removes a folder and everything in it, if it is there."""
    if not is_remote(path):
        shutil.rmtree(path, ignore_errors=True)
        return
    filesystem, _ = _remote(path)
    with contextlib.suppress(FileNotFoundError):
        filesystem.rm(path, recursive=True)


def rename(source: str, target: str) -> None:
    """Moves a file onto `target`, replacing it (on GCS a server-side copy, then a delete)."""
    if not is_remote(source):
        os.replace(source, target)
        return
    filesystem, _ = _remote(source)
    filesystem.mv(source, target)


def copy(source: str, target: str) -> None:
    """Copies one file, between any two kinds of path."""
    with open_file(source, "rb") as reader, open_file(target, "wb") as writer:
        while chunk := reader.read(_CHUNK_BYTES):
            writer.write(chunk)


def open_file(path: str, mode: str = "rb"):
    """Opens a local or remote file; `mode` as for `open` ('r', 'rb', 'w', 'wb').

    Text modes read and write UTF-8 with "\\n" line ends, whatever the platform.
    """
    if not is_remote(path):
        if "b" in mode:
            return open(path, mode)  # noqa: SIM115 - the caller closes it
        return open(path, mode, encoding="utf-8", newline="")  # noqa: SIM115
    filesystem, _ = _remote(path)
    if "b" in mode:
        return filesystem.open(path, mode)
    return filesystem.open(path, mode, encoding="utf-8", newline="")


def read_bytes(path: str) -> bytes:
    with open_file(path, "rb") as f:
        return f.read()


def read_text(path: str) -> str:
    return read_bytes(path).decode("utf-8")


@contextlib.contextmanager
def atomic_open(path: str, mode: str = "wb") -> Iterator:
    """Opens `path` for writing so that it appears complete or not at all.

    The data goes to `temporary_path(path)`, renamed onto `path` only when the block exits
    without an exception; on an exception the temporary file is removed. On GCS the rename is a
    server-side copy, so readers never see a partial object either.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes only; got mode {mode!r}")
    makedirs(dirname(path))
    temporary = temporary_path(path)
    try:
        with open_file(temporary, mode) as f:
            yield f
        rename(temporary, path)
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
