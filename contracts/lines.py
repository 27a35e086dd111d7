"""Reading text files a line at a time, fast and forgiving: chunked reads, UTF-8 with U+FFFD.

Text shards and tokenizer inputs can be gigabytes: lines are cut out of 8 MiB chunks (a remote
file's readline would be a round trip per line). A line that is not valid UTF-8 is decoded with
U+FFFD for its bad bytes (BERT's text cleaning then deletes them, as Google's tokenizer ignores
them) and reported, so callers can count it; nothing is dropped.
"""

from __future__ import annotations

from collections.abc import Iterator

from contracts import storage

CHUNK_BYTES = 8 << 20


def decode(raw: bytes) -> tuple[str, bool]:
    """A line's bytes as text without a trailing "\\r", and whether they were valid UTF-8."""
    try:
        return raw.decode("utf-8").rstrip("\r"), True
    except UnicodeDecodeError:
        return raw.decode("utf-8", errors="replace").rstrip("\r"), False


def read_lines(
    path: str, *, what: str = "file", chunk_bytes: int = CHUNK_BYTES
) -> Iterator[tuple[str, bool]]:
    """The lines of a file, without line ends, each with whether it was valid UTF-8.

    Args:
      path: local or gs://.
      what: what the file is, for the error message ("text shard", "input").
      chunk_bytes: read size.

    Raises:
      OSError: the file cannot be read; the message names it ("cannot read <what> <path>: ...").
    """
    rest = b""
    for chunk in _chunks(path, what, chunk_bytes):
        lines = (rest + chunk).split(b"\n")
        rest = lines.pop()
        for raw in lines:
            yield decode(raw)
    if rest:
        yield decode(rest)


def _chunks(path: str, what: str, chunk_bytes: int) -> Iterator[bytes]:
    try:
        f = storage.open_file(path, "rb")
    except OSError as error:
        raise OSError(f"cannot read {what} {path}: {error.strerror or error}") from error
    with f:
        while True:
            try:
                chunk = f.read(chunk_bytes)
            except OSError as error:
                raise OSError(f"cannot read {what} {path}: {error.strerror or error}") from error
            if not chunk:
                return
            yield chunk
