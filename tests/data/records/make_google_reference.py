"""Makes `google-reference-seq128.tfrecord` with GOOGLE'S reference script, not with ours.

The file lets the trainer's tests check that records written by Google's algorithm
(`official/nlp/data/create_pretraining_data.py` from the `tf-models-official` wheel, a port of
google-research/bert's script) train unchanged. It was made once and lives in the real data
folder (`$BERT_STACK_DATA/records/`, default ../shared/data), not in the project; run this again
only to remake it:

    .venv/bin/pip install --no-deps tf-models-official tf-keras   # the `bench` extra
    .venv/bin/python tests/data/records/make_google_reference.py [OUTPUT]

OUTPUT defaults to `google-reference-seq128.tfrecord` in the working folder.
Input: `books/pg11-alice-in-wonderland.txt` of the data folder, Gutenberg header and footer cut off,
one document per chapter (so next-sentence "random" segments come from other documents), one
sentence per line (a simple punctuation split; the reference only needs line boundaries).
Flags: bert-base-uncased vocab, --do_lower_case, --max_seq_length=128,
--max_predictions_per_seq=20, --dupe_factor=1, --random_seed=12345, the other flags at the
script's defaults. The reference seeds one `random.Random(12345)`, so a rerun writes the same
examples; but it serializes each `tf.train.Example` non-deterministically (the order of the
feature map changes from process to process), so this script then rewrites every record with
`SerializeToString(deterministic=True)`: same examples, same order, canonical bytes, and a rerun
gives a byte-identical file.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(HERE))))
from launch import sample_data  # noqa: E402 - after the checkout is on the path

DATA = str(sample_data.data_folder())
BOOK = os.path.join(DATA, "books", "pg11-alice-in-wonderland.txt")
VOCAB = os.path.join(DATA, sample_data.UNCASED_VOCAB)
OUTPUT = sys.argv[1] if len(sys.argv) > 1 else "google-reference-seq128.tfrecord"
# A sentence ends at . ! or ? (maybe followed by a closing quote or bracket), then a space.
_SENTENCE_END = re.compile(r"([.!?][’”)]*)\s+")


def book_to_shard_text(text: str) -> str:
    """A Gutenberg book as the reference's input: one sentence a line, chapters as documents."""
    start = text.index("\n", text.index("*** START OF")) + 1
    end = text.index("*** END OF")
    body = text[start:end]
    documents: list[list[str]] = [[]]
    for paragraph in re.split(r"\n\s*\n", body):
        paragraph = " ".join(paragraph.split())
        if not paragraph:
            continue
        if paragraph.startswith("CHAPTER ") and documents[-1]:
            documents.append([])
        sentences = _SENTENCE_END.sub("\\1\n", paragraph).split("\n")
        documents[-1].extend(s for s in sentences if s.strip())
    return "\n\n".join("\n".join(doc) for doc in documents if doc) + "\n"


def _canonicalize(path: str) -> None:
    """Rewrites each record of a TFRecord file with deterministic proto serialization."""
    import tensorflow as tf

    records = [
        tf.train.Example.FromString(record).SerializeToString(deterministic=True)
        for record in tf.data.TFRecordDataset(path).as_numpy_iterator()
    ]
    with tf.io.TFRecordWriter(path) as writer:
        for record in records:
            writer.write(record)


def main() -> None:
    with open(BOOK, encoding="utf-8") as f:
        shard_text = book_to_shard_text(f.read())
    with tempfile.TemporaryDirectory() as tmp:
        shard = os.path.join(tmp, "train-00000-of-00001.txt")
        with open(shard, "w", encoding="utf-8") as f:
            f.write(shard_text)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "official.nlp.data.create_pretraining_data",
                f"--input_file={shard}",
                f"--output_file={OUTPUT}",
                f"--vocab_file={VOCAB}",
                "--do_lower_case=true",
                "--max_seq_length=128",
                "--max_predictions_per_seq=20",
                "--dupe_factor=1",
                "--random_seed=12345",
            ],
            check=True,
        )
    _canonicalize(OUTPUT)
    print(f"wrote {OUTPUT} ({os.path.getsize(OUTPUT)} bytes)")


if __name__ == "__main__":
    main()
