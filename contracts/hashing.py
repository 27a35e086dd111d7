"""Stable hashes and per-key random streams: the same values on every machine, run and worker.

Determinism (docs/design.md): every random choice of a stage is seeded from stable keys (the
seed, a document id, a duplicate index), never from a global generator or the order in which
workers see elements. Python's `hash` of a str is salted per process, so it cannot serve.

The variants below are frozen: which document goes to eval, to which shard, and every masking
draw depend on them, so changing one changes every output of the stages that use it.
"""

from __future__ import annotations

import hashlib

import numpy as np


def stable_hash64(
    *parts: object, separator: str = "\x1f", algorithm: str = "blake2b", byteorder: str = "little"
) -> int:
    """A 64-bit hash of `parts` (joined by `separator`, as UTF-8).

    Args:
      parts: what the hash is of; each is turned into a string.
      separator: put between the parts.
      algorithm: "blake2b" (8-byte digest) or "sha256" (its first 8 bytes).
      byteorder: how the 8 bytes become an int, "little" or "big".
    """
    data = separator.join(str(part) for part in parts).encode("utf-8")
    if algorithm == "blake2b":
        digest = hashlib.blake2b(data, digest_size=8).digest()
    elif algorithm == "sha256":
        digest = hashlib.sha256(data).digest()[:8]
    else:
        raise ValueError(f"algorithm={algorithm!r}: must be 'blake2b' or 'sha256'")
    return int.from_bytes(digest, byteorder)  # type: ignore[arg-type]


def bucket_of(*parts: object, num_buckets: int, **hash_options) -> int:
    """Which of `num_buckets` buckets the key `parts` falls in (see `stable_hash64`)."""
    return stable_hash64(*parts, **hash_options) % num_buckets


# splitmix64 (Steele, Lea, Flood 2014): a bijective 64-bit mixer with full avalanche, so
# consecutive counters give independent-looking uniform values.
GOLDEN_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def splitmix64(values: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer on a uint64 array (wrapping arithmetic, as the algorithm needs)."""
    z = np.asarray(values, dtype=np.uint64)
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))
