"""Start-up of the data stages: this checkout against an earlier revision, side by side.

    .venv/bin/python benchmarks/bench_startup.py [--baseline=dc2f1e1] [--repeats=3]

Each command runs in a fresh process, in each tree (the baseline is checked out with
`git worktree` into a temporary folder, run with this venv's packages), on an input small enough
that the time is start-up: imports, Beam's runner, the first bundle. Reported: the median wall
time, the peak RSS of the process tree, and whether TensorFlow was imported. The default
baseline is the last revision before the ground-floor package, when every stage reached files
through tf.io.gfile.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from launch import sample_data  # noqa: E402 - after the checkout is on the path

TINYWIKI = sample_data.data_folder() / sample_data.TINYWIKI
ALICE = sample_data.data_folder() / "books" / "pg11-alice-in-wonderland.txt"


def commands(out: Path) -> dict[str, list[str]]:
    python = sys.executable
    return {
        "import extract_text": [python, "-c", "import pipeline.extract_text"],
        "extract_text (8 pages)": [
            *(python, "-m", "pipeline.extract_text", f"--input={TINYWIKI}"),
            f"--output_dir={out}/wiki",
            "--num_shards=1",
        ],
        "build_vocab (1 book)": [
            *(python, "-m", "pipeline.build_vocab", f"--input={ALICE}"),
            f"--output={out}/vocab/vocab.txt",
            "--vocab_size=500",
        ],
    }


def measure(argv: list[str], *, cwd: Path) -> tuple[float, int]:
    """(wall seconds, peak RSS bytes of the process tree)."""
    env = dict(os.environ, PYTHONPATH=str(cwd), TF_CPP_MIN_LOG_LEVEL="2")
    start = time.perf_counter()
    process = subprocess.Popen(
        argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    tree = psutil.Process(process.pid)
    peak = 0
    while process.poll() is None:
        try:
            rss = tree.memory_info().rss + sum(
                child.memory_info().rss for child in tree.children(recursive=True)
            )
            peak = max(peak, rss)
        except psutil.Error:
            pass
        time.sleep(0.02)
    seconds = time.perf_counter() - start
    if process.returncode:
        raise SystemExit(f"{' '.join(argv)} failed: {process.stderr.read().decode()[-2000:]}")
    return seconds, peak


def loads_tensorflow(module: str, *, cwd: Path) -> bool:
    code = f"import sys, {module}; print('tensorflow' in sys.modules)"
    env = dict(os.environ, PYTHONPATH=str(cwd), TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True
    )
    return done.stdout.strip().endswith("True")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="dc2f1e1", help="git revision to compare with")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        baseline = Path(scratch) / "baseline"
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(baseline), args.baseline],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        try:
            trees = {f"baseline {args.baseline}": baseline, "this checkout": ROOT}
            results: dict[str, dict[str, tuple[float, int]]] = {}
            for label, tree in trees.items():
                results[label] = {}
                for name, argv in commands(Path(scratch) / label.replace(" ", "-")).items():
                    runs = [measure(argv, cwd=tree) for _ in range(args.repeats)]
                    results[label][name] = (
                        statistics.median(r[0] for r in runs),
                        max(r[1] for r in runs),
                    )
            tf_loaded = {
                label: {m: loads_tensorflow(m, cwd=tree) for m in ("pipeline.extract_text",)}
                for label, tree in trees.items()
            }
        finally:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(baseline)], cwd=ROOT, check=False
            )
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    labels = list(results)
    print(f"{'command':<26}" + "".join(f"{label:>34}" for label in labels))
    for name in results[labels[0]]:
        cells = "".join(
            f"{results[label][name][0]:>18.2f} s {results[label][name][1] / 2**20:>9.0f} MiB"
            for label in labels
        )
        print(f"{name:<26}{cells}")
    for label in labels:
        print(
            f"{label}: extract_text imports TensorFlow: {tf_loaded[label]['pipeline.extract_text']}"
        )


if __name__ == "__main__":
    main()
