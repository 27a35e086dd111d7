"""Tokenization throughput: tokenizer.BertTokenizer against Hugging Face and Google.

    python benchmarks/bench_tokenizer.py [--copies=2] [--batch_size=4096]

Text: every line of the bundled books and of the raw wikitext of the bundled Wikipedia sample
(43k lines, 6 MB, 13% of lines non-ASCII), repeated `--copies` times. Vocab: bert-base-uncased.

- ours: `BertTokenizer.tokenize_to_ids` (ids) and `.tokenize` (piece strings), batches of
  `--batch_size` lines, and the TensorFlow-graph version `tokenize_tensor`;
- Hugging Face `tokenizers` `BertWordPieceTokenizer(lowercase=True).encode_batch` (Rust, all
  cores via its thread pool), same batches, no special tokens;
- Google's FullTokenizer algorithm (tests/google_reference_tokenization.py), one copy only.

Reports MB/s (UTF-8 input bytes) and lines/s, and for each the number of lines whose pieces differ
from Google's.
"""

from __future__ import annotations

import argparse
import bz2
import html
import os
import platform
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from launch import sample_data  # noqa: E402 - after the checkout is on the path
from tests import pretraining_fixtures  # noqa: E402

VOCAB = sample_data.data_folder() / sample_data.UNCASED_VOCAB


def corpus_lines() -> list[str]:
    lines = []
    for path in pretraining_fixtures.real_books():
        lines += path.read_text(encoding="utf-8").split("\n")
    for name in (sample_data.WIKI_MULTISTREAM, sample_data.WIKI_TABLES, sample_data.TINYWIKI):
        path = sample_data.data_folder() / name
        raw = path.read_bytes()
        xml = (bz2.decompress(raw) if path.suffix == ".bz2" else raw).decode("utf-8")
        for match in re.finditer(r"<text[^>]*>(.*?)</text>", xml, re.S):
            lines += html.unescape(match.group(1)).split("\n")
    return lines


def batches(lines: list[str], size: int):
    for start in range(0, len(lines), size):
        yield lines[start : start + size]


def timed(function, repeats: int = 2) -> tuple[float, object]:
    """Best wall time of `repeats` runs (after one warm-up) and the last result."""
    result = function()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--copies", type=int, default=2)
    parser.add_argument("--batch_size", type=int, default=4096)
    args = parser.parse_args()

    import tensorflow as tf
    from tokenizers import BertWordPieceTokenizer

    from tests.google_reference_tokenization import FullTokenizer
    from tokenizer import BertTokenizer

    one_copy = corpus_lines()
    lines = one_copy * args.copies
    megabytes = sum(len(line.encode("utf-8")) + 1 for line in lines) / 1e6
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, TF {tf.__version__}"
    )
    print(
        f"text: {len(lines)} lines, {megabytes:.1f} MB ({args.copies} copies), vocab {VOCAB.name}"
    )

    google = FullTokenizer(str(VOCAB), do_lower_case=True)
    start = time.perf_counter()
    reference = [google.tokenize(line) for line in one_copy]
    google_seconds = (time.perf_counter() - start) * args.copies  # one copy, scaled

    ours = BertTokenizer(str(VOCAB), do_lower_case=True)
    hugging_face = BertWordPieceTokenizer(str(VOCAB), lowercase=True)

    def ours_ids():
        return [
            ids for batch in batches(lines, args.batch_size) for ids in ours.tokenize_to_ids(batch)
        ]

    def ours_pieces():
        return [p for batch in batches(lines, args.batch_size) for p in ours.tokenize(batch)]

    def ours_graph():
        out = []
        for batch in batches(lines, args.batch_size):
            out += ours.tokenize_tensor(tf.constant(batch)).to_list()
        return out

    def hf_ids():
        return [
            e.ids
            for batch in batches(lines, args.batch_size)
            for e in hugging_face.encode_batch(batch, add_special_tokens=False)
        ]

    def hf_pieces():
        return [
            e.tokens
            for batch in batches(lines, args.batch_size)
            for e in hugging_face.encode_batch(batch, add_special_tokens=False)
        ]

    def differ(pieces) -> int:
        return sum(
            got != want for got, want in zip(pieces[: len(one_copy)], reference, strict=True)
        )

    rows = []
    seconds, result = timed(ours_ids)
    rows.append(("ours tokenize_to_ids", seconds, differ([ours.id_to_token(r) for r in result])))
    seconds, result = timed(ours_pieces)
    rows.append(("ours tokenize (strings)", seconds, differ(result)))
    seconds, result = timed(ours_graph, repeats=1)
    rows.append(
        ("ours tokenize_tensor (TF graph)", seconds, differ([ours.id_to_token(r) for r in result]))
    )
    seconds, result = timed(hf_ids)
    rows.append(("HF tokenizers encode_batch (ids)", seconds, None))
    seconds, result = timed(hf_pieces)
    rows.append(("HF tokenizers encode_batch (strings)", seconds, differ(result)))
    rows.append(("Google FullTokenizer (Python)", google_seconds, 0))

    print(f"\n{'tokenizer':40s} {'MB/s':>8s} {'lines/s':>10s} {'lines != Google':>16s}")
    for name, seconds, mismatches in rows:
        mismatch = "-" if mismatches is None else f"{mismatches}/{len(one_copy)}"
        print(f"{name:40s} {megabytes / seconds:8.2f} {len(lines) / seconds:10.0f} {mismatch:>16s}")


if __name__ == "__main__":
    main()
