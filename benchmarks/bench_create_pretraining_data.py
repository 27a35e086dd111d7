r"""create_pretraining_data against Google's reference script: time, memory, output statistics.

    .venv/bin/python benchmarks/bench_create_pretraining_data.py [--corpus_mb=30] \
        [--small_corpus_mb=3] [--workers=1,2] [--skip_reference]

What it does, in one run:

1. Builds text shards of at least `--corpus_mb` MB (8 shards, google-research/bert's input
   format) by repeating the bundled books, cut into documents of 12 paragraphs; and a small
   corpus of `--small_corpus_mb` the same way (for the memory slope).
2. Runs Google's `official/nlp/data/create_pretraining_data.py` (tf-models-official, the port of
   google-research/bert's script; `make bench` installs it with --no-deps) and ours on the same
   shards, vocab and flags (`--dupe_factor=5 --max_seq_length=128
   --max_predictions_per_seq=20`), each as a fresh process, start-up included. Wall time is
   measured around the process; peak memory is the largest summed RSS of the process and its
   children (our Beam workers), sampled every 50 ms.
3. Reads both outputs back and prints their statistics side by side: instances, real (non-pad)
   token fraction, masked fraction, the [MASK] / random / kept split, random-next fraction.

Both reference runs take minutes (it is single-threaded Python, ~5 s a MB here), which is what
makes up most of the default run time.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
from absl import app, flags

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import pretraining_fixtures  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_float("corpus_mb", 30.0, "Size of the main corpus, in MB (10^6 bytes).")
flags.DEFINE_float("small_corpus_mb", 3.0, "Size of the small corpus (memory slope); 0 skips.")
flags.DEFINE_list("workers", ["1", "2"], "Our runs: --direct_num_workers values.")
flags.DEFINE_list(
    "groupings", ["auto"], "Our runs: --grouping values (files, shuffle; auto: files)."
)
flags.DEFINE_list(
    "books",
    list(pretraining_fixtures.BOOK_NAMES),
    "Books (file names in the data folder's books/) the corpora repeat; e.g. "
    "pg1342-pride-and-prejudice.txt,pg2701-moby-dick.txt for text the tests never see.",
)
flags.DEFINE_bool("skip_reference", False, "Run ours only.")
flags.DEFINE_string("work_dir", "", "Where corpora and outputs go (default: a temporary folder).")

VOCAB = str(pretraining_fixtures.VOCAB)
JOB_FLAGS = ["--dupe_factor=5", "--max_seq_length=128", "--max_predictions_per_seq=20"]
NUM_SHARDS = 8
MASK_ID = 103


def build_corpus(folder: Path, megabytes: float) -> list[Path]:
    """Text shards of at least `megabytes` MB from the --books, repeated."""
    folder_of_books = pretraining_fixtures.require_real_data() / "books"
    documents = [
        doc
        for name in FLAGS.books
        for doc in pretraining_fixtures.book_documents(folder_of_books / name)
    ]
    text = pretraining_fixtures.shard_text(documents).encode("utf-8")
    per_shard = int(megabytes * 1e6) // NUM_SHARDS
    data = text * -(-per_shard // len(text))
    # Cut at the first document end past the target, so every document is whole.
    end = data.find(b"\n\n", per_shard)
    data = data[: end + 2] if end >= 0 else data
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(NUM_SHARDS):
        path = folder / f"train-{index:05d}-of-{NUM_SHARDS:05d}.txt"
        path.write_bytes(data)
        paths.append(path)
    return paths


def measure(command: list[str], *, log: Path) -> tuple[float, int]:
    """Runs `command`; returns (wall seconds, peak RSS bytes of it and its children)."""
    peak = 0
    with open(log, "wb") as out:
        start = time.perf_counter()
        process = psutil.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                try:
                    tree = [process, *process.children(recursive=True)]
                    peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
                except psutil.Error:
                    pass
                done.wait(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        code = process.wait()
        wall = time.perf_counter() - start
        done.set()
        sampler.join()
    if code:
        tail = log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{' '.join(command[:3])} failed ({code}); see {log}:\n{tail}")
    return wall, peak


def statistics(paths: list[str]) -> dict[str, float]:
    """The output statistics of TFRecord files in google-research/bert's schema."""
    import tensorflow as tf

    from contracts import schema

    spec = schema.feature_spec(max_seq_length=128, max_predictions_per_seq=20)
    dataset = tf.data.TFRecordDataset(paths).batch(4096).map(lambda r: tf.io.parse_example(r, spec))
    totals = dict.fromkeys(
        ("instances", "slots", "real", "masked", "mask", "kept", "random", "random_next"), 0
    )
    for batch in dataset.as_numpy_iterator():
        weights = batch["masked_lm_weights"] > 0
        positions = batch["masked_lm_positions"]
        at_positions = np.take_along_axis(batch["input_ids"], positions, axis=1)[weights]
        originals = batch["masked_lm_ids"][weights]
        totals["instances"] += len(positions)
        totals["slots"] += batch["input_mask"].size
        totals["real"] += int(batch["input_mask"].sum())
        totals["masked"] += int(weights.sum())
        totals["mask"] += int((at_positions == MASK_ID).sum())
        totals["kept"] += int(((at_positions == originals) & (at_positions != MASK_ID)).sum())
        totals["random_next"] += int(batch["next_sentence_labels"].sum())
    totals["random"] = totals["masked"] - totals["mask"] - totals["kept"]
    masked = max(1, totals["masked"])
    return {
        "instances": totals["instances"],
        "real_token_fraction": totals["real"] / max(1, totals["slots"]),
        "masked_fraction": totals["masked"] / max(1, totals["real"]),
        "mask_split": totals["mask"] / masked,
        "random_split": totals["random"] / masked,
        "kept_split": totals["kept"] / masked,
        "random_next_fraction": totals["random_next"] / max(1, totals["instances"]),
    }


def run_reference(corpus: list[Path], output: Path, *, log: Path) -> tuple[float, int]:
    return measure(
        [
            sys.executable,
            "-m",
            "official.nlp.data.create_pretraining_data",
            f"--input_file={','.join(map(str, corpus))}",
            f"--output_file={output}",
            f"--vocab_file={VOCAB}",
            "--do_lower_case=true",
            "--random_seed=12345",
            *JOB_FLAGS,
        ],
        log=log,
    )


def run_ours(
    corpus: list[Path], output: Path, *, workers: int, grouping: str, log: Path
) -> tuple[float, int]:
    return measure(
        [
            sys.executable,
            "-m",
            "pipeline.create_pretraining_data",
            f"--input_file={','.join(map(str, corpus))}",
            f"--output_dir={output}",
            f"--vocab_file={VOCAB}",
            "--num_shards=64",
            *JOB_FLAGS,
            f"--direct_num_workers={workers}",
            f"--grouping={grouping}",
        ],
        log=log,
    )


def main(argv) -> None:
    del argv
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    work = Path(FLAGS.work_dir or tempfile.mkdtemp(prefix="bench-cpd-"))
    if not FLAGS.skip_reference:
        try:
            import official.nlp.data.create_pretraining_data  # noqa: F401
        except ImportError:
            sys.exit("the reference needs `pip install --no-deps tf-models-official tf-keras`")
    sizes = {"main": FLAGS.corpus_mb}
    if FLAGS.small_corpus_mb:
        sizes["small"] = FLAGS.small_corpus_mb
    corpora = {name: build_corpus(work / f"text-{name}", mb) for name, mb in sizes.items()}
    corpus_bytes = {name: sum(p.stat().st_size for p in paths) for name, paths in corpora.items()}
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB; load average {os.getloadavg()}"
    )
    for name, size in corpus_bytes.items():
        print(f"corpus {name}: {size / 1e6:.1f} MB in {NUM_SHARDS} shards")
    print(f"flags: {' '.join(JOB_FLAGS)}, bert-base-uncased vocab\n")

    rows = []  # (label, corpus, wall, peak, output paths)
    for name, paths in corpora.items():
        if not FLAGS.skip_reference:
            output = work / f"reference-{name}.tfrecord"
            wall, peak = run_reference(paths, output, log=work / f"reference-{name}.log")
            rows.append(("reference", name, wall, peak, [str(output)]))
            print(f"reference {name}: {wall:.1f} s, peak {peak / 2**20:.0f} MiB", flush=True)
        for grouping in FLAGS.groupings:
            for workers in map(int, FLAGS.workers):
                if name != "main" and workers != int(FLAGS.workers[0]):
                    continue
                output = work / f"ours-{name}-{workers}-{grouping}"
                wall, peak = run_ours(
                    paths,
                    output,
                    workers=workers,
                    grouping=grouping,
                    log=work / f"ours-{name}-{workers}-{grouping}.log",
                )
                shards = sorted(str(p) for p in output.glob("train-*.tfrecord"))
                label = f"ours, {workers} worker{'s' * (workers > 1)}"
                if len(FLAGS.groupings) > 1:
                    label += f", {grouping}"
                rows.append((label, name, wall, peak, shards))
                print(f"{label} {name}: {wall:.1f} s, peak {peak / 2**20:.0f} MiB", flush=True)

    print("\n| run | corpus MB | wall s | peak MiB | speed-up |")
    print("|---|---|---|---|---|")
    reference_wall = {name: wall for label, name, wall, _, _ in rows if label == "reference"}
    for label, name, wall, peak, _ in rows:
        speedup = reference_wall.get(name, float("nan")) / wall
        print(
            f"| {label} | {corpus_bytes[name] / 1e6:.1f} | {wall:.1f} | {peak / 2**20:.0f} | "
            f"{speedup:.1f}x |"
        )
    if "small" in corpus_bytes:
        grow = corpus_bytes["main"] - corpus_bytes["small"]
        print("\nmemory growth per corpus byte, small -> main corpus:")
        for label in dict.fromkeys(r[0] for r in rows):
            peaks = {name: peak for lab, name, _, peak, _ in rows if lab == label}
            if len(peaks) == 2:
                print(f"  {label}: {(peaks['main'] - peaks['small']) / grow:.1f} bytes per byte")

    main_rows = [r for r in rows if r[1] == "main"]
    stats = [(label, statistics(paths)) for label, _, _, _, paths in main_rows]
    names = list(stats[0][1])
    print("\n| statistic (main corpus) | " + " | ".join(label for label, _ in stats) + " |")
    print("|---|" + "---|" * len(stats))
    for key in names:
        cells = [f"{s[key]:d}" if isinstance(s[key], int) else f"{s[key]:.4f}" for _, s in stats]
        print(f"| {key} | " + " | ".join(cells) + " |")
    print(f"\noutputs and logs in {work}")


if __name__ == "__main__":
    app.run(main)
