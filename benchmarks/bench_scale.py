"""The whole data chain at three sizes, 1 and 2 workers: time and peak memory per stage, the
per-MB fit, and the projection to full English Wikipedia + books.

    .venv/bin/python benchmarks/bench_scale.py [--sizes_mb=10,50,150] [--workers=1,2] \
        [--csv=benchmarks/scale.csv --png=benchmarks/scale.png]

For each size S (MB of clean text), a multistream dump is made by repeating the bundled
sample's pages with fresh ids and titles (`bench_extract_text.make_repeated_dump`, one
template page a stream as in real dumps), enough copies for S MB of extracted text. Then, as
fresh commands (start-up included, as a user runs them), with `--direct_num_workers=W`:

1. extract_text DUMP -> text shards (8 train shards);
2. build_vocab on the train shards (16,000 WordPiece tokens: see VOCAB_SIZE);
3. create_pretraining_data with that vocab (`--dupe_factor=5 --max_seq_length=128`, 64 shards).

Wall time around each command; peak memory is the largest summed RSS of its process tree,
sampled every 20 ms. A least-squares line per (stage, workers) gives seconds and MiB per MB of
text beyond the fixed start-up; the projection applies it to the sizes stated in `PROJECTION`.
The memory guard: create_pretraining_data's peak may grow by at most 0.3 bytes per extra byte of
text between the smallest and the largest size (its contract is flat memory).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import platform
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_extract_text import make_repeated_dump, run_measured  # noqa: E402

STAGES = ("extract_text", "build_vocab", "create_pretraining_data")
MEMORY_GUARD_BYTES_PER_BYTE = 0.3
# The copies repeat the sample's words, which hold ~30,400 WordPiece candidates: fewer than
# BERT's 30,522, so the benchmark learns a smaller vocab (the learner's cost hardly depends on it).
VOCAB_SIZE = 16_000

# What the projection assumes. English Wikipedia (pages-articles, 2026): ~22 GB of bz2, ~13 GB
# of clean text after extract_text; books: ~7 GB of text (20 GB in all, as the scale issue says).
PROJECTION = {"wikipedia_text_mb": 13_000, "books_text_mb": 7_000}
WORKSTATION_CORES = 32
# Dataflow batch list prices (us-central1): $0.056 per vCPU-hour, $0.003557 per GB-hour of
# memory, $0.011 per GB of Dataflow Shuffle data processed; persistent disk not counted.
DATAFLOW = {
    "machine": "n2-standard-4",
    "vcpus": 4,
    "memory_gb": 16,
    "vcpu_hour": 0.056,
    "gb_hour": 0.003557,
    "shuffle_gb": 0.011,
    "workers": 32,
}


def python() -> str:
    return sys.executable


def stage_command(stage: str, folder: Path, dump: Path, workers: int) -> list[str]:
    text, vocab, records = folder / "text", folder / "vocab.txt", folder / "records"
    common = [f"--direct_num_workers={workers}", "--noprogress", "--verbosity=-1"]
    if stage == "extract_text":
        return [python(), "-m", "pipeline.extract_text", f"--input={dump}"] + [
            f"--output_dir={text}",
            "--num_shards=8",
            *common,
        ]
    if stage == "build_vocab":
        return [python(), "-m", "pipeline.build_vocab", f"--input={text}/train-*.txt"] + [
            f"--output={vocab}",
            f"--vocab_size={VOCAB_SIZE}",
            *common,
        ]
    return [python(), "-m", "pipeline.create_pretraining_data"] + [
        f"--input_file={text}/train-*.txt",
        f"--output_dir={records}",
        f"--vocab_file={vocab}",
        "--dupe_factor=5",
        "--max_seq_length=128",
        "--max_predictions_per_seq=20",
        "--num_shards=64",
        *common,
    ]


def text_megabytes(folder: Path) -> float:
    return sum(p.stat().st_size for p in (folder / "text").glob("*.txt")) / 1e6


def fit(sizes: list[float], values: list[float]) -> tuple[float, float]:
    """(intercept, slope per MB) of the least-squares line."""
    slope, intercept = np.polyfit(np.array(sizes), np.array(values), 1)
    return float(intercept), float(slope)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes_mb", default="10,50,150", help="MB of clean text per size")
    parser.add_argument("--workers", default="1,2", help="--direct_num_workers values")
    parser.add_argument("--csv", default="", help="write the measurements here")
    parser.add_argument("--png", default="", help="draw the curves here")
    parser.add_argument("--work_dir", default="", help="default: a temporary folder")
    parser.add_argument("--stages", default=",".join(STAGES), help="the stages to run, in order")
    parser.add_argument("--from_csv", default="", help="report on an earlier run's --csv only")
    args = parser.parse_args()
    sizes = [float(s) for s in args.sizes_mb.split(",")]
    worker_counts = [int(w) for w in args.workers.split(",")]
    if args.from_csv:
        with open(args.from_csv, newline="") as f:
            rows = [
                {k: (v if k == "stage" else float(v)) for k, v in row.items()}
                for row in csv.DictReader(f)
            ]
        for row in rows:
            row["workers"] = int(row["workers"])
        worker_counts = sorted({row["workers"] for row in rows})
        report(rows, worker_counts)
        if args.png:
            draw(rows, worker_counts, args.png)
        return
    print(
        f"machine: {platform.processor() or platform.machine()}, {psutil.cpu_count()} cores, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB, Python {platform.python_version()}",
        flush=True,
    )
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="bench-scale-"))
    work.mkdir(parents=True, exist_ok=True)

    # One copy's clean text, from an extract of a one-copy dump.
    probe = work / "probe"
    probe.mkdir(exist_ok=True)
    probe_dump = make_repeated_dump(1, probe)
    run_measured(stage_command("extract_text", probe, probe_dump, 1))
    per_copy = text_megabytes(probe)
    print(f"one copy of the sample: {per_copy:.2f} MB of clean text", flush=True)

    rows = []
    print(
        f"{'stage':<25}{'W':>3}{'text MB':>9}{'dump MB':>9}{'wall s':>9}{'CPU s':>8}"
        f"{'MB/s':>7}{'peak MiB':>10}",
        flush=True,
    )
    for size in sizes:
        copies = max(1, math.ceil(size / per_copy))
        size_dir = work / f"x{copies}"
        size_dir.mkdir(exist_ok=True)
        dump = make_repeated_dump(copies, size_dir)
        for workers in worker_counts:
            run_dir = size_dir / f"w{workers}"
            shutil.rmtree(run_dir, ignore_errors=True)
            run_dir.mkdir()
            for stage in args.stages.split(","):
                wall, cpu, peak = run_measured(stage_command(stage, run_dir, dump, workers))
                megabytes = text_megabytes(run_dir)
                row = {
                    "stage": stage,
                    "workers": workers,
                    "text_mb": round(megabytes, 2),
                    "dump_mb": round(dump.stat().st_size / 1e6, 2),
                    "wall_s": round(wall, 2),
                    "cpu_s": round(cpu, 2),
                    "peak_mib": round(peak, 1),
                }
                rows.append(row)
                print(
                    f"{stage:<25}{workers:>3}{megabytes:>9.1f}{row['dump_mb']:>9.1f}"
                    f"{wall:>9.1f}{cpu:>8.1f}{megabytes / wall:>7.2f}{peak:>10.0f}",
                    flush=True,
                )
            if (run_dir / "records" / "metadata.json").exists():
                records = json.loads((run_dir / "records" / "metadata.json").read_text())
                print(f"  {records['counts']['instances']:,} instances", flush=True)
                shutil.rmtree(run_dir / "records")
        dump.unlink()

    if args.csv:
        with open(args.csv, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)

    report(rows, worker_counts)
    if args.png:
        draw(rows, worker_counts, args.png)


def report(rows: list[dict], worker_counts: list[int]) -> None:
    print("\nfit per stage (seconds and MiB = start + slope x MB of text):")
    print(
        f"{'stage':<25}{'W':>3}{'start s':>9}{'s/MB':>8}{'MB/s':>7}{'start MiB':>11}{'MiB/MB':>8}"
    )
    slopes: dict[tuple[str, int], float] = {}
    for stage in STAGES:
        for workers in worker_counts:
            mine = [r for r in rows if r["stage"] == stage and r["workers"] == workers]
            if len(mine) < 2:
                continue
            sizes = [r["text_mb"] for r in mine]
            start, per_mb = fit(sizes, [r["wall_s"] for r in mine])
            mem_start, mem_per_mb = fit(sizes, [r["peak_mib"] for r in mine])
            slopes[stage, workers] = per_mb
            print(
                f"{stage:<25}{workers:>3}{start:>9.1f}{per_mb:>8.3f}{1 / per_mb:>7.2f}"
                f"{mem_start:>11.0f}{mem_per_mb:>8.3f}"
            )
    if len(worker_counts) > 1:
        low, high = worker_counts[0], worker_counts[-1]
        print(f"\nspeed-up {high} vs {low} workers at the largest size:")
        largest = max(r["text_mb"] for r in rows)
        for stage in STAGES:
            pick = {
                r["workers"]: r["wall_s"]
                for r in rows
                if r["stage"] == stage and abs(r["text_mb"] - largest) < 1e-6
            }
            if low in pick and high in pick:
                print(f"  {stage:<25}{pick[low] / pick[high]:.2f}x")

    guard = [r for r in rows if r["stage"] == "create_pretraining_data"]
    for workers in worker_counts:
        mine = sorted((r for r in guard if r["workers"] == workers), key=lambda r: r["text_mb"])
        if len(mine) >= 2:
            grown = (mine[-1]["peak_mib"] - mine[0]["peak_mib"]) * 2**20
            extra = (mine[-1]["text_mb"] - mine[0]["text_mb"]) * 1e6
            ratio = grown / extra
            verdict = "ok" if ratio <= MEMORY_GUARD_BYTES_PER_BYTE else "OVER THE GUARD"
            print(
                f"\nmemory guard, create_pretraining_data, {workers} worker(s): peak grows "
                f"{ratio:.3f} bytes per extra text byte (at most {MEMORY_GUARD_BYTES_PER_BYTE}): "
                f"{verdict}"
            )

    total_mb = PROJECTION["wikipedia_text_mb"] + PROJECTION["books_text_mb"]
    one = {stage: slopes.get((stage, 1)) for stage in STAGES}
    if all(one.values()):
        # One process's per-MB cost; a 32-core workstation runs 32 of them (an upper bound on
        # the speed: no shared-disk or memory-bandwidth limits assumed).
        seconds = sum(one[stage] * total_mb for stage in STAGES)
        print(
            f"\nprojection for {total_mb:,} MB of text "
            f"({PROJECTION['wikipedia_text_mb']:,} MB Wikipedia + {PROJECTION['books_text_mb']:,}"
            " MB books; books at the wiki text rate, their extraction counted like the dump's):"
        )
        print(f"  one process: {seconds / 3600:.1f} h")
        print(
            f"  {WORKSTATION_CORES}-core workstation, perfect scaling: "
            f"{seconds / WORKSTATION_CORES / 3600:.1f} h"
        )
        d = DATAFLOW
        # A Dataflow vCPU is one hyperthread, about half a core of this machine's: two
        # vCPU-seconds per measured process-second.
        vcpu_hours = 2 * seconds / 3600
        machines_hours = vcpu_hours / d["vcpus"]
        wall_h = machines_hours / d["workers"]
        cost = (
            machines_hours * (d["vcpus"] * d["vcpu_hour"] + d["memory_gb"] * d["gb_hour"])
            + 2 * total_mb / 1e3 * d["shuffle_gb"]
        )
        print(
            f"  Dataflow, {d['workers']} x {d['machine']}: {vcpu_hours:.0f} vCPU-hours, "
            f"~{wall_h:.2f} h of work (+ ~0.1 h start-up per stage), ~${cost:,.0f} at list "
            "price (vCPU, memory and shuffle; not disk)"
        )


def draw(rows: list[dict], worker_counts: list[int], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (time_axis, memory_axis) = plt.subplots(1, 2, figsize=(11, 4.2))
    for stage in STAGES:
        for workers in worker_counts:
            mine = sorted(
                (r for r in rows if r["stage"] == stage and r["workers"] == workers),
                key=lambda r: r["text_mb"],
            )
            style = "-" if workers == worker_counts[0] else "--"
            label = f"{stage}, {workers} worker{'s' if workers > 1 else ''}"
            sizes = [r["text_mb"] for r in mine]
            time_axis.plot(sizes, [r["wall_s"] for r in mine], style, marker="o", label=label)
            memory_axis.plot(sizes, [r["peak_mib"] for r in mine], style, marker="o", label=label)
    time_axis.set(xlabel="MB of clean text", ylabel="wall seconds", title="time per stage")
    memory_axis.set(xlabel="MB of clean text", ylabel="peak MiB (process tree)", title="memory")
    time_axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
