"""Vocab learning: pipeline.build_vocab against Hugging Face and tensorflow-text.

    python benchmarks/bench_build_vocab.py [--sizes=8000,30522] [--skip_tf_text]

Corpus: the bundled Wikipedia sample and books, made into text shards by pipeline.extract_text
(clean sentences, as build_vocab sees them in production). Learned from: the Wikipedia train
shards plus Alice and Frankenstein. Held out for quality: the Wikipedia eval shards (10% of the
articles) and Sherlock Holmes.

Contenders, each run in a fresh process, timed from its start of work (after imports) to the
vocab file, with the peak RSS of its process tree (TensorFlow alone is ~0.5 GB of it for ours
and tensorflow-text's):

- ours: `build_vocab.run` (Beam word count on the in-process runner + the learner), uncased,
  with 5 special tokens (`num_unused=0`) so that every vocab spends the same budget on pieces;
- Hugging Face `tokenizers` `BertWordPieceTokenizer.train` (Rust, all cores; its defaults:
  min_frequency 2, limit_alphabet 1000);
- tensorflow-text `bert_vocab_from_dataset` (its defaults), on a `TextLineDataset`.

Quality: each vocab tokenizes the held-out text with BERT's rules (`tokenizer.BertTokenizer`,
Google-exact); word pieces per word and the share of words that become [UNK] (lower is better).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from launch import sample_data  # noqa: E402 - after the checkout is on the path

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def make_corpus(folder: Path) -> tuple[list[str], list[str]]:
    """Text shards via extract_text; returns (training files, held-out files)."""

    def extract(source: str, inputs: str, output: Path, eval_fraction: str) -> None:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pipeline.extract_text",
                f"--source={source}",
                f"--input={inputs}",
                f"--output_dir={output}",
                "--num_shards=4",
                f"--eval_fraction={eval_fraction}",
            ],
            check=True,
            capture_output=True,
        )

    books = sample_data.data_folder() / "books"
    extract(
        "wikipedia",
        str(sample_data.data_folder() / sample_data.WIKI_MULTISTREAM),
        folder / "wiki",
        "0.1",
    )
    extract(
        "books",
        f"{books}/pg11-alice-in-wonderland.txt,{books}/pg84-frankenstein.txt",
        folder / "books",
        "0",
    )
    extract("books", str(books / "pg1661-sherlock-holmes.txt"), folder / "heldout", "0")
    train = sorted(str(p) for p in (folder / "wiki").glob("train-*.txt"))
    train += sorted(str(p) for p in (folder / "books").glob("train-*.txt"))
    heldout = sorted(str(p) for p in (folder / "wiki").glob("eval-*.txt"))
    heldout += sorted(str(p) for p in (folder / "heldout").glob("train-*.txt"))
    return train, heldout


# --- Contenders (each runs in its own process) -------------------------------------------------


def run_ours(files: list[str], size: int, output: str) -> None:
    from pipeline import build_vocab

    build_vocab.run(
        build_vocab.BuildVocabConfig(
            input=",".join(files), output=output, vocab_size=size, num_unused=0
        )
    )


def run_ours_learner_only(files: list[str], size: int, output: str) -> None:
    """The learner alone on in-memory counts (what remains after the Beam count)."""
    import collections

    from pipeline import build_vocab
    from tokenizer import basic_tokenization, vocab, vocab_learning

    counts: collections.Counter = collections.Counter()
    for path in files:
        for line, _ in build_vocab.read_lines(path):
            counts.update(basic_tokenization.split_words(line, do_lower_case=True))
    start = time.perf_counter()
    params = vocab_learning.LearnParams()
    selected, bounds = vocab_learning.select_words(
        counts.items(), reserved_tokens=SPECIAL, params=params
    )
    learner = vocab_learning.WordpieceLearner(selected, reserved_tokens=SPECIAL, params=params)
    tokens = learner.learn_exact_size(size, bounds=bounds).tokens
    print(json.dumps({"learn_seconds": time.perf_counter() - start}))
    vocab.write(output, tokens)


def run_hugging_face(files: list[str], size: int, output: str) -> None:
    from tokenizers import BertWordPieceTokenizer

    tokenizer = BertWordPieceTokenizer(lowercase=True)
    tokenizer.train(files, vocab_size=size, special_tokens=SPECIAL, show_progress=False)
    folder = tempfile.mkdtemp()
    Path(output).write_text(
        Path(tokenizer.save_model(folder)[0]).read_text(encoding="utf-8"), encoding="utf-8"
    )


def run_tf_text(files: list[str], size: int, output: str) -> None:
    import tensorflow as tf
    from tensorflow_text.tools.wordpiece_vocab.bert_vocab_from_dataset import (
        bert_vocab_from_dataset,
    )

    dataset = tf.data.TextLineDataset(files).filter(lambda line: tf.strings.length(line) > 0)
    tokens = bert_vocab_from_dataset(
        dataset.batch(1024).prefetch(2),
        vocab_size=size,
        reserved_tokens=SPECIAL,
        bert_tokenizer_params={"lower_case": True},
    )
    Path(output).write_text("".join(t + "\n" for t in tokens), encoding="utf-8")


CONTENDERS = {
    "ours": run_ours,
    "ours_learner_only": run_ours_learner_only,
    "hugging_face": run_hugging_face,
    "tf_text": run_tf_text,
}
LABELS = {
    "ours": "ours: build_vocab (Beam count + learn)",
    "ours_learner_only": "ours: learner only (counts in memory)",
    "hugging_face": "Hugging Face WordPiece trainer",
    "tf_text": "tensorflow-text bert_vocab_from_dataset",
}


def child(name: str, files: list[str], size: int, output: str) -> None:
    start = time.perf_counter()
    CONTENDERS[name](files, size, output)
    print(json.dumps({"seconds": time.perf_counter() - start}))


def measure(name: str, files: list[str], size: int, output: str) -> dict:
    """Runs one contender in a fresh process; its times, and the peak RSS of its process tree
    (sampled every 20 ms; the child's own ru_maxrss would include its parent's before exec)."""
    command = [sys.executable, __file__, "--child", name, "--size", str(size), "--output", output]
    process = subprocess.Popen([*command, *files], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    peak = 0
    tree = psutil.Process(process.pid)
    while process.poll() is None:
        try:
            members = [tree, *tree.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in members))
        except psutil.Error:
            pass
        time.sleep(0.02)
    stdout, stderr = process.communicate()
    if process.returncode:
        raise RuntimeError(f"{name} failed:\n{stderr.decode()[-3000:]}")
    record: dict = {"peak_mb": peak / 1e6}
    for line in stdout.decode().splitlines():
        if line.startswith("{"):
            record.update(json.loads(line))
    return record


def quality(vocab_file: str, heldout: list[str]) -> tuple[int, float, float]:
    import numpy as np

    from pipeline import build_vocab
    from tokenizer import BertTokenizer, basic_tokenization

    tokenizer = BertTokenizer(vocab_file, do_lower_case=True)
    lines = [line for path in heldout for line, _ in build_vocab.read_lines(path) if line]
    words = basic_tokenization.split_words_batch(lines, do_lower_case=True)
    pieces = tokenizer.tokenize_words(words)
    num_words = sum(len(w) for w in words)
    num_pieces = sum(len(p) for p in pieces)
    unknown = int(sum((p == tokenizer.unk_id).sum() for p in pieces))
    del np
    return tokenizer.vocab_size, num_pieces / num_words, unknown / num_words


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="8000,30522")
    parser.add_argument("--skip_tf_text", action="store_true", help="it takes minutes per size")
    parser.add_argument("--child")
    parser.add_argument("--size", type=int)
    parser.add_argument("--output")
    parser.add_argument("files", nargs="*")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.files, args.size, args.output)
        return

    names = ["ours", "ours_learner_only", "hugging_face"] + (
        [] if args.skip_tf_text else ["tf_text"]
    )
    with tempfile.TemporaryDirectory() as folder:
        train, heldout = make_corpus(Path(folder))
        megabytes = sum(os.path.getsize(f) for f in train) / 1e6
        print(
            f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
            f"{platform.python_version()}; corpus: {len(train)} shards, {megabytes:.1f} MB; "
            f"held out: {sum(os.path.getsize(f) for f in heldout) / 1e6:.2f} MB"
        )
        for size in (int(s) for s in args.sizes.split(",")):
            print(f"\nvocab_size {size}")
            print(
                f"{'':42s} {'seconds':>8s} {'peak MB':>8s} {'tokens':>7s} "
                f"{'pieces/word':>12s} {'[UNK]/word':>11s}"
            )
            for name in names:
                output = os.path.join(folder, f"{name}-{size}.txt")
                record = measure(name, train, size, output)
                tokens, per_word, unk = quality(output, heldout)
                seconds = record["seconds"]
                if "learn_seconds" in record:
                    seconds = record["learn_seconds"]
                print(
                    f"{LABELS[name]:42s} {seconds:8.1f} {record['peak_mb']:8.0f} {tokens:7d} "
                    f"{per_word:12.4f} {unk:11.5f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
