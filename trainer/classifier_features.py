"""Examples to model inputs, with google-research/bert's packing, cached under the run's folder.

`[CLS] A [SEP]` or `[CLS] A [SEP] B [SEP]`, padded to max_seq_length; a pair too long is cut
as Google's `_truncate_seq_pair` cuts it: one token at a time from the end of the longer of A and
B until both fit. Tokenization is the project's own (`tokenizer.BertTokenizer`, equal to
Google's FullTokenizer), a whole split in one batched call.

The arrays of a split are cached in `<output_dir>/features/<split file>-<key>.npz`, the key a
hash of everything they depend on (the file's bytes, the vocab's bytes, do_lower_case,
max_seq_length, the labels, this module's format version), so a second run reads them instead
of tokenizing again, and a change to any of those makes new ones.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Sequence

import numpy as np
from absl import logging

from contracts import storage
from trainer import glue

FORMAT_VERSION = 1
FEATURE_NAMES = ("input_ids", "input_mask", "segment_ids")


def truncation(length_a: int, length_b: int, *, max_tokens: int) -> tuple[int, int]:
    """How many tokens A and B keep: Google's `_truncate_seq_pair`, which drops the last token
    of the longer one (B on a tie) until the pair fits."""
    if length_a + length_b <= max_tokens:
        return length_a, length_b
    # The longer loses tokens until both are equal, then they alternate (B first on a tie).
    a, b = length_a, length_b
    excess = a + b - max_tokens
    difference = min(abs(a - b), excess)
    if a > b:
        a -= difference
    else:
        b -= difference
    excess -= difference
    b -= (excess + 1) // 2
    a -= excess // 2
    return a, b


def encode(
    examples: Sequence[glue.Example],
    tokenizer,
    *,
    max_seq_length: int,
    labels: Sequence[str],
) -> dict[str, np.ndarray]:
    """The model inputs of `examples`.

    Args:
      examples: from `glue.read_examples`.
      tokenizer: a `tokenizer.BertTokenizer`.
      max_seq_length: tokens per example, [CLS] and [SEP]s included.
      labels: the task's label names (index = class id); () for regression.

    Returns:
      {"input_ids", "input_mask", "segment_ids": int32 [n, max_seq_length],
       "label_ids": int32 [n] (float32 for regression; -1 / NaN where an example has no label)}.
    """
    n = len(examples)
    ids_a = tokenizer.tokenize_to_ids([e.text_a for e in examples])
    has_b = [e.text_b is not None for e in examples]
    ids_b = tokenizer.tokenize_to_ids([e.text_b for e in examples if e.text_b is not None])
    arrays = {name: np.zeros((n, max_seq_length), np.int32) for name in FEATURE_NAMES}
    b_index = 0
    for row in range(n):
        a = ids_a[row]
        b = ids_b[b_index] if has_b[row] else None
        b_index += has_b[row]
        if b is None:
            keep_a, keep_b = min(len(a), max_seq_length - 2), 0
            pieces = [[tokenizer.cls_id], a[:keep_a], [tokenizer.sep_id]]
        else:
            keep_a, keep_b = truncation(len(a), len(b), max_tokens=max_seq_length - 3)
            pieces = [[tokenizer.cls_id], a[:keep_a], [tokenizer.sep_id], b[:keep_b]]
            pieces.append([tokenizer.sep_id])
        tokens = np.concatenate([np.asarray(p, np.int32) for p in pieces])
        arrays["input_ids"][row, : len(tokens)] = tokens
        arrays["input_mask"][row, : len(tokens)] = 1
        if b is not None:
            arrays["segment_ids"][row, keep_a + 2 : len(tokens)] = 1
    if labels:
        label_id = {name: i for i, name in enumerate(labels)}
        arrays["label_ids"] = np.asarray(
            [label_id[e.label] if e.label is not None else -1 for e in examples], np.int32
        )
    else:
        arrays["label_ids"] = np.asarray(
            [float(e.label) if e.label is not None else np.nan for e in examples], np.float32
        )
    return arrays


def cache_key(
    path: str,
    *,
    vocab_file: str,
    do_lower_case: bool,
    strip_accents: bool,
    max_seq_length: int,
    labels,
) -> str:
    """A hash of everything a split's features depend on."""
    key = {
        "file": storage.sha256(path),
        "vocab": storage.sha256(vocab_file),
        "do_lower_case": do_lower_case,
        "strip_accents": strip_accents,
        "max_seq_length": max_seq_length,
        "labels": list(labels),
        "format": FORMAT_VERSION,
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def load_or_encode(
    task: glue.Task,
    path: str,
    *,
    split: str,
    tokenizer,
    vocab_file: str,
    max_seq_length: int,
    cache_dir: str,
) -> tuple[list[glue.Example], dict[str, np.ndarray]]:
    """The examples of one split file and their features, from the cache when it has them."""
    examples = glue.read_examples(task, path, split=split)
    key = cache_key(
        path,
        vocab_file=vocab_file,
        do_lower_case=tokenizer.do_lower_case,
        strip_accents=tokenizer.strip_accents,
        max_seq_length=max_seq_length,
        labels=task.labels,
    )
    cached = storage.join(cache_dir, f"{storage.basename(path)}-{key}.npz")
    if storage.exists(cached):
        with np.load(io.BytesIO(storage.read_bytes(cached))) as data:
            logging.info("features of %s from %s", path, cached)
            return examples, {name: data[name] for name in data.files}
    arrays = encode(examples, tokenizer, max_seq_length=max_seq_length, labels=task.labels)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    storage.atomic_write(cached, buffer.getvalue())
    logging.info("features of %s: %d examples, cached in %s", path, len(examples), cached)
    return examples, arrays
