"""TFRecord shards written in Python (with their sha256 on the fly) and temporary part files.

Why not `tf.io.TFRecordWriter`: we need each shard's sha256 for metadata.json, and reading
every shard back to hash it would double the job's I/O at the end. The TFRecord framing is
simple and stable (length, masked CRC32C of the length, data, masked CRC32C of the data;
`tensorflow/core/lib/io/record_writer.cc`), and gzip is what TensorFlow reads for
`compression_type="GZIP"`. zlib's gzip header carries no timestamp or file name, so the same
records always give the same bytes.

Part files, the job's scratch files between its last two steps, are uncompressed TFRecord
files too: the merge copies their framed records as they are.
"""

from __future__ import annotations

import hashlib
import struct
import zlib

import google_crc32c

from contracts import storage

_MASK_DELTA = 0xA282EAD8
_READ_CHUNK_BYTES = 256 << 10
_WRITE_BUFFER_BYTES = 1 << 20


_LENGTH = struct.Struct("<Q")
_CRC = struct.Struct("<I")


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC32C of `data`."""
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def frame_record(data: bytes) -> bytes:
    """One record in TFRecord framing."""
    length = _LENGTH.pack(len(data))
    return b"".join(
        (length, _CRC.pack(masked_crc32c(length)), data, _CRC.pack(masked_crc32c(data)))
    )


class TFRecordShardWriter:
    """Writes one TFRecord file atomically (temporary name, then rename), gzip or not, and
    keeps count of its records, bytes and sha256.

    Use as a context manager; on an exception the temporary file is removed and nothing
    appears under the final name.
    """

    def __init__(self, path: str, *, compression: str = "none"):
        if compression not in ("none", "gzip"):
            raise ValueError(f"compression={compression!r}: must be 'none' or 'gzip'")
        self.path = path
        self.records = 0
        self.bytes = 0
        self._sha256 = hashlib.sha256()
        # wbits=31: a gzip stream (header mtime 0, no name), level 6 as TensorFlow's GZIP.
        self._compressor = zlib.compressobj(6, zlib.DEFLATED, 31) if compression == "gzip" else None
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        storage.makedirs(storage.dirname(path))
        self._temporary = storage.temporary_path(path)
        self._file = storage.open_file(self._temporary, "wb")

    @property
    def sha256(self) -> str:
        return self._sha256.hexdigest()

    def write(self, data: bytes) -> None:
        """Appends one serialized record."""
        self.write_framed(frame_record(data))

    def write_framed(self, framed: bytes) -> None:
        """Appends one record already in TFRecord framing (e.g. from a part file)."""
        self._pending.append(framed)
        self._pending_bytes += len(framed)
        self.records += 1
        if self._pending_bytes >= _WRITE_BUFFER_BYTES:
            self._flush()

    def _flush(self, final: bool = False) -> None:
        chunk = b"".join(self._pending)
        self._pending, self._pending_bytes = [], 0
        if self._compressor is not None:
            chunk = self._compressor.compress(chunk)
            if final:
                chunk += self._compressor.flush()
        if chunk:
            self._file.write(chunk)
            self._sha256.update(chunk)
            self.bytes += len(chunk)

    def close(self) -> None:
        self._flush(final=True)
        self._file.close()
        storage.rename(self._temporary, self.path)

    def abort(self) -> None:
        self._file.close()
        storage.remove(self._temporary)

    def __enter__(self) -> TFRecordShardWriter:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()


class PartWriter:
    """Writes a part file atomically, buffered (a bucket keeps one open per output shard).

    A part file is an uncompressed TFRecord file: records are framed (and their CRCs computed)
    here, in the parallel per-bucket step, so that merging parts into a shard only copies bytes.
    """

    def __init__(self, path: str):
        self.path = path
        self.records = 0
        storage.makedirs(storage.dirname(path))
        self._temporary = storage.temporary_path(path)
        self._file = storage.open_file(self._temporary, "wb")
        self._pending: list[bytes] = []
        self._pending_bytes = 0

    def write(self, data: bytes) -> None:
        self._pending.append(frame_record(data))
        self._pending_bytes += len(data) + 16
        self.records += 1
        if self._pending_bytes >= _WRITE_BUFFER_BYTES:
            self._flush()

    def _flush(self) -> None:
        self._file.write(b"".join(self._pending))
        self._pending, self._pending_bytes = [], 0

    def close(self) -> None:
        self._flush()
        self._file.close()
        storage.rename(self._temporary, self.path)

    def abort(self) -> None:
        self._file.close()
        storage.remove(self._temporary)


class PartReader:
    """Reads a part file's framed records one at a time, through a small buffer (many are
    open at once while a shard is merged)."""

    def __init__(self, path: str):
        self.path = path
        self._file = storage.open_file(path, "rb")
        self._buffer = b""
        self._offset = 0

    def next(self) -> bytes:
        """The next record, framed (length, CRCs and data, as it goes into a TFRecord file)."""
        buffer, offset = self._buffer, self._offset
        if len(buffer) - offset >= 8:
            (length,) = _LENGTH.unpack_from(buffer, offset)
            end = offset + length + 16
            if end <= len(buffer):
                self._offset = end
                return buffer[offset:end]
        return self._refill()

    def _refill(self) -> bytes:
        buffer = self._buffer[self._offset :]
        while True:
            if len(buffer) >= 8:
                needed = _LENGTH.unpack_from(buffer, 0)[0] + 16
                if len(buffer) >= needed:
                    self._buffer, self._offset = buffer, needed
                    return buffer[:needed]
            else:
                needed = 8
            chunk = self._file.read(max(_READ_CHUNK_BYTES, needed - len(buffer)))
            if not chunk:
                raise ValueError(f"{self.path}: truncated part file")
            buffer += chunk

    def close(self) -> None:
        self._file.close()
