"""Fine-tuning features: trainer.classifier_features.encode against Hugging Face's tokenizer.

    python benchmarks/bench_classifier_features.py [--pairs=400000] [--max_seq_length=128]

The fine-tuning issue's goal: converting QQP-sized data (~400k sentence pairs) takes well under
a minute on 2 cores. QQP is not in the data folder, so the pairs are made of the real SST-2
train sentences (67,349; each paired with another chosen by a fixed stride, so pairs of every
length mix and truncation happens as on QQP's longer questions when max_seq_length is small).

- ours: `classifier_features.encode` with `tokenizer.BertTokenizer` (what run_classifier runs
  before caching): Google's FullTokenizer rules, [CLS] a [SEP] b [SEP], Google's pair
  truncation (longest first), padded int32 arrays;
- Hugging Face: `BertTokenizerFast` (Rust, its own thread pool on every core) called on the
  same pairs with `truncation="longest_first"`, `padding="max_length"`, NumPy output: the
  call run_glue.py makes.

Both use the bert-base-uncased vocab from the data folder. Prints seconds and pairs/s of each,
and how many pairs get different input ids (the tokenizers differ on a few characters; the
truncation rule is Google's on our side; Hugging Face's longest_first ends differently when both
texts are long, which only shows when max_seq_length is small).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np  # noqa: E402

from launch import sample_data  # noqa: E402 - after the checkout is on the path

SEP = 102  # [SEP] in the bert-base-uncased vocab
# A stride coprime with the number of SST-2 train sentences: sentence i meets i + STRIDE.
STRIDE = 7919


def make_pairs(count: int):
    """`count` sentence pairs of the real SST-2 train sentences, as QQP examples."""
    from trainer import glue

    folder = sample_data.data_folder() / "glue" / "SST-2"
    sentences = [
        e.text_a
        for e in glue.read_examples(glue.TASKS["SST-2"], str(folder / "train.tsv"), split="train")
    ]
    n = len(sentences)
    return [
        glue.Example(str(i), sentences[i % n], sentences[(i + STRIDE) % n], str(i % 2))
        for i in range(count)
    ]


def ours(examples, *, vocab: str, max_seq_length: int):
    from tokenizer.bert_tokenizer import BertTokenizer
    from trainer import classifier_features

    tokenizer = BertTokenizer(vocab, do_lower_case=True)
    started = time.perf_counter()
    arrays = classifier_features.encode(
        examples, tokenizer, max_seq_length=max_seq_length, labels=("0", "1")
    )
    return time.perf_counter() - started, arrays["input_ids"]


def hugging_face(examples, *, vocab: str, max_seq_length: int):
    from transformers import BertTokenizerFast

    tokenizer = BertTokenizerFast(vocab=vocab, do_lower_case=True)  # transformers 5: `vocab`
    started = time.perf_counter()
    encoded = tokenizer(
        [e.text_a for e in examples],
        [e.text_b for e in examples],
        truncation="longest_first",
        max_length=max_seq_length,
        padding="max_length",
        return_tensors="np",
    )
    return time.perf_counter() - started, encoded["input_ids"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--pairs", type=int, default=400_000)
    parser.add_argument("--max_seq_length", type=int, default=128)
    args = parser.parse_args()
    reason = sample_data.missing_reason()
    if reason or not (sample_data.data_folder() / "glue" / "SST-2").is_dir():
        sys.exit(f"bench_classifier_features: {reason or 'no glue/SST-2 in the data folder'}")
    vocab = str(sample_data.data_folder() / sample_data.UNCASED_VOCAB)
    examples = make_pairs(args.pairs)
    print(
        f"{len(examples):,} pairs of SST-2 train sentences, max_seq_length {args.max_seq_length}; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
    )
    our_seconds, our_ids = ours(examples, vocab=vocab, max_seq_length=args.max_seq_length)
    their_seconds, their_ids = hugging_face(
        examples, vocab=vocab, max_seq_length=args.max_seq_length
    )
    rows = np.nonzero((our_ids != their_ids).any(axis=1))[0]
    different = len(rows)
    # Where the first [SEP] is: a different place means the pair was cut differently.
    split = sum(int(np.argmax(our_ids[r] == SEP) != np.argmax(their_ids[r] == SEP)) for r in rows)
    full = int((our_ids[:, -1] != 0).sum())  # pairs that fill max_seq_length: truncated or just fit
    print(f"{'':<44}{'seconds':>10}{'pairs/s':>12}")
    for name, seconds in (
        ("ours (classifier_features.encode)", our_seconds),
        ("Hugging Face BertTokenizerFast", their_seconds),
    ):
        print(f"{name:<44}{seconds:>10.1f}{len(examples) / seconds:>12,.0f}")
    print(
        f"ours / Hugging Face: {their_seconds / our_seconds:.2f}x; goal: well under 60 s "
        f"({'met' if our_seconds < 60 else 'NOT met'}); pairs with different ids: "
        f"{different:,} of {len(examples):,} ({full:,} fill all {args.max_seq_length} tokens; "
        f"{split:,} of the differences cut the pair elsewhere, {different - split:,} other tokens)"
    )
    if split:
        print(
            "  Cut elsewhere: Hugging Face's longest_first does not end as Google's loop does when "
            "both texts are long\n  (e.g. at max_seq_length 32 Google's loop, and ours, keep 15 + 15 "
            "tokens where Hugging Face keeps 14 + 16)."
        )


if __name__ == "__main__":
    main()
