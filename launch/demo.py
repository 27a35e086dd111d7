"""`make demo`: the bundled Wikipedia sample and books to a trained BERT-tiny, on one CPU machine.

Runs the five commands a user would run, each as its own process and printed before it runs, so
the demo doubles as a worked example:

  extract_text (wikipedia) ─┐
  extract_text (books) ─────┴─► build_vocab ─► create_pretraining_data (train, eval) ─►
  run_pretraining (train + eval) ─► run_classifier on SST-2: from the pretrained BERT, and
                                    from a random initialisation of the same architecture

then prints a summary (documents, instances, steps, final eval accuracies, the two SST-2 dev
accuracies side by side and whether pretraining helped, where the TensorBoard logs are) and
draws the loss and accuracy curves into `<output_dir>/curves.png`. The fine-tuning steps need
GLUE's SST-2 in the data folder (glue/SST-2, as ../shared/data has it); without it they are
skipped, and the summary says so.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from absl import flags, logging

from contracts import command_line, metadata
from launch import chain, sample_data

_PROJECT_ROOT = Path(__file__).resolve().parent.parent
_DATA = sample_data.data_folder()


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    """What the demo runs on and how long it trains; defaults fit 7 minutes on 2 CPU cores."""

    output_dir: str = "data/demo"
    # The real samples in the data folder (BERT_STACK_DATA, default ../shared/data; its
    # README says where they come from).
    wiki_input: str = str(_DATA / sample_data.WIKI_MULTISTREAM)
    books_input: str = str(_DATA / sample_data.BOOKS_GLOB)
    # ~10% of the articles go to eval, so the eval split is large enough to mean something
    # (the books keep extract_text's 0.005: five books give too few documents to split).
    wiki_eval_fraction: float = 0.1
    vocab_size: int = 8000  # a 30k vocab is mostly unused on 3 MB of text
    max_seq_length: int = 128
    max_predictions_per_seq: int = 20
    dupe_factor: int = 3  # masks per document; Google's default is 10
    model_size: str = "tiny"  # 2 layers, hidden 128 (Turc et al. 2019)
    # ~1.5 passes over the records; masked-LM accuracy leaves the unigram plateau (~0.05)
    # after ~200 steps and reaches ~0.13 on eval by 1500 (measured, benchmarks/RESULTS.md).
    num_train_steps: int = 1500
    num_warmup_steps: int = 150
    train_batch_size: int = 32
    learning_rate: float = 1e-3  # BERT-tiny tolerates, and needs, a high rate
    steps_per_loop: int = 100
    # Fine-tuning, twice on the same task and flags: from the pretrained BERT and from random
    # initial weights. GLUE's SST-2 files (train.tsv, dev.tsv); "": no fine-tuning.
    finetune_data: str = str(_DATA / "glue" / "SST-2")
    finetune_task: str = "SST-2"
    # Movie-review sentences are short: 64 tokens hold ~99% of SST-2's.
    finetune_max_seq_length: int = 64
    finetune_epochs: float = 1.0
    # Turc et al. 2019 fine-tune their small BERTs at 1e-4 to 5e-4.
    finetune_learning_rate: float = 1e-4


def data_chain(config: DemoConfig) -> chain.DataChain:
    """The demo's data stages: launch.chain's, with the settings of a 3 MB sample."""
    return chain.DataChain(
        wiki_input=config.wiki_input,
        books_input=config.books_input,
        output_root=config.output_dir,
        wiki_num_shards=2,
        books_num_shards=2,
        wiki_eval_fraction=config.wiki_eval_fraction,
        vocab_size=config.vocab_size,
        max_seq_length=config.max_seq_length,
        max_predictions_per_seq=config.max_predictions_per_seq,
        dupe_factor=config.dupe_factor,
        train_record_shards=4,
        eval_record_shards=1,
    )


_STAGE_TITLES = {
    "extract-wiki": "extract wikipedia",
    "extract-books": "extract books",
    "vocab": "learn vocab",
    "records-train": "train records",
    "records-eval": "eval records",
}


def stage_commands(config: DemoConfig) -> list[tuple[str, list[str]]]:
    """The demo's commands, in order, as (stage name, argv) pairs."""
    data = data_chain(config)
    commands = [(_STAGE_TITLES[stage.name], stage.argv()) for stage in chain.stages(data)]
    commands.append(
        (
            "train BERT",
            [
                *(sys.executable, "-m", "trainer.run_pretraining"),
                f"--input_file={data.train_records}/*.tfrecord",
                f"--eval_input_file={data.eval_records}/*.tfrecord",
                f"--output_dir={Path(config.output_dir) / 'model'}",
                f"--model_size={config.model_size}",
                f"--max_seq_length={config.max_seq_length}",
                f"--max_predictions_per_seq={config.max_predictions_per_seq}",
                f"--train_batch_size={config.train_batch_size}",
                "--eval_batch_size=32",
                f"--num_train_steps={config.num_train_steps}",
                f"--num_warmup_steps={config.num_warmup_steps}",
                f"--learning_rate={config.learning_rate}",
                f"--steps_per_loop={config.steps_per_loop}",
                f"--save_checkpoints_steps={config.num_train_steps}",
                "--do_train",
                "--do_eval",
            ],
        )
    )
    if config.finetune_data:
        for name, init in (("pretrained", "model"), ("random", "")):
            commands.append((f"fine-tune {name}", finetune_command(config, init=init)))
    return commands


def finetune_dir(config: DemoConfig, name: str) -> Path:
    return Path(config.output_dir) / "finetune" / name


def finetune_command(config: DemoConfig, *, init: str) -> list[str]:
    """run_classifier on the demo's task: from `<output_dir>/<init>` (the pretrained BERT), or,
    with init "", from random weights of the same config and vocab."""
    out = Path(config.output_dir)
    start = ["--init_checkpoint=" + str(out / init)] if init else []
    return [
        *(sys.executable, "-m", "trainer.run_classifier"),
        f"--task_name={config.finetune_task}",
        f"--data_dir={config.finetune_data}",
        *start,
        f"--bert_config_file={out / 'model' / 'bert_config.json'}",
        f"--vocab_file={out / 'vocab' / 'vocab.txt'}",
        f"--output_dir={finetune_dir(config, 'pretrained' if init else 'random')}",
        f"--max_seq_length={config.finetune_max_seq_length}",
        f"--num_train_epochs={config.finetune_epochs}",
        f"--learning_rate={config.finetune_learning_rate}",
        f"--train_batch_size={config.train_batch_size}",
        "--eval_batch_size=64",
        "--do_train",
        "--do_eval",
    ]


def finetune_verdict(pretrained: dict | None, random: dict | None) -> list[str]:
    """The summary's fine-tuning lines: both dev accuracies, and plainly whether pretraining
    put the model ahead."""
    if pretrained is None or random is None:
        return ["  fine-tuning   not run (no SST-2 in the data folder: glue/SST-2)"]
    a, b = pretrained["accuracy"], random["accuracy"]
    lines = [
        f"  fine-tuning   {pretrained['task']} dev accuracy ({pretrained['examples']} examples): "
        f"pretrained {a:.4f}, random init {b:.4f}"
    ]
    # Two standard errors of a difference of two accuracies on the same dev set: a smaller
    # gap could be chance.
    noise = 2 * math.sqrt(2 * max(a, b) * (1 - max(a, b)) / max(1, pretrained["examples"]))
    if a - b > noise:
        lines.append(f"                pretraining helped: +{100 * (a - b):.1f} points")
    elif a > b:
        lines.append(
            f"                pretrained ahead by +{100 * (a - b):.1f} points, within the noise "
            f"of {pretrained['examples']} dev examples (±{100 * noise:.1f}): pretrain longer or "
            "on more text for a clear lead"
        )
    else:
        lines.append(
            f"                pretraining did NOT help here ({100 * (a - b):+.1f} points): the "
            "demo's corpus and training are small; train longer (--num_train_steps) or on more "
            "text"
        )
    return lines


def read_eval_results(path: Path) -> dict[str, float]:
    """Parses `eval_results.txt` (`name = value` lines, as google-research/bert writes it)."""
    results = {}
    for line in path.read_text().splitlines():
        for separator in ("=", ":"):
            if separator in line:
                name, value = (part.strip() for part in line.split(separator, 1))
                with contextlib.suppress(ValueError):  # a text line, not a figure
                    results[name] = float(value)
                break
    return results


def read_scalars(event_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar in a TensorBoard event folder, as sorted (step, value) pairs by metric name:
    the tag without its group ("loss/mlm_loss" -> "mlm_loss")."""
    tf = command_line.import_tensorflow_quietly()  # heavy: only for reading the events

    series: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(event_dir.glob("events.out.tfevents.*")):
        for record in tf.data.TFRecordDataset(str(path)):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name not in ("", "scalars"):
                    continue  # the config's text card
                if value.HasField("tensor"):
                    number = float(tf.make_ndarray(value.tensor))
                elif value.HasField("simple_value"):
                    number = float(value.simple_value)
                else:
                    continue
                name = value.tag.rsplit("/", 1)[-1]
                series.setdefault(name, []).append((int(event.step), number))
    return {tag: sorted(points) for tag, points in series.items()}


def plot_curves(model_dir: Path, png: Path) -> Path:
    """Draws train/eval loss and accuracy curves from the TensorBoard events into `png`."""
    import matplotlib

    matplotlib.use("Agg")  # no screen needed
    import matplotlib.pyplot as plt

    train = read_scalars(model_dir / "train")
    evaluation = read_scalars(model_dir / "eval") if (model_dir / "eval").is_dir() else {}
    figure, (loss_axes, accuracy_axes) = plt.subplots(1, 2, figsize=(11, 4))
    for tag in ("loss", "mlm_loss", "nsp_loss"):
        if tag in train:
            steps, values = zip(*train[tag], strict=True)
            loss_axes.plot(steps, values, label=f"train {tag}")
    for tag in ("masked_lm_accuracy", "next_sentence_accuracy"):
        if tag in train:
            steps, values = zip(*train[tag], strict=True)
            accuracy_axes.plot(steps, values, label=f"train {tag}")
        if tag in evaluation:
            steps, values = zip(*evaluation[tag], strict=True)
            accuracy_axes.plot(steps, values, "o", label=f"eval {tag}")
    loss_axes.set(title="loss", xlabel="step")
    accuracy_axes.set(title="accuracy", xlabel="step", ylim=(0, 1))
    for axes in (loss_axes, accuracy_axes):
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(png, dpi=100)
    plt.close(figure)
    return png


def _counts(folder: Path) -> dict:
    record = metadata.read(str(folder))
    return record.get("counts", {}) if record else {}


def _eval_results(folder: Path) -> dict | None:
    path = folder / "eval_results.json"
    return json.loads(path.read_text()) if path.exists() else None


def summarize(config: DemoConfig, seconds: dict[str, float]) -> str:
    """The closing summary: what went in, what came out, how well it learned."""
    out = Path(config.output_dir)
    wiki = _counts(out / "shards" / "wiki")
    books = _counts(out / "shards" / "books")
    train_records = _counts(out / "records" / "train")
    eval_records = _counts(out / "records" / "eval")
    eval_path = out / "model" / "eval_results.txt"
    results = read_eval_results(eval_path) if eval_path.exists() else {}

    def count(counts: dict, *names: str) -> str:
        for name in names:
            if name in counts:
                return f"{counts[name]:,}"
        return "?"

    lines = [
        "",
        "Demo finished.",
        f"  documents     {count(wiki, 'documents')} Wikipedia articles, "
        f"{count(books, 'documents')} books",
        f"  instances     {count(train_records, 'instances')} train, "
        f"{count(eval_records, 'instances')} eval (seq {config.max_seq_length})",
        f"  vocab         {config.vocab_size:,} WordPiece tokens learned from the shards",
        f"  training      BERT-{config.model_size}, {config.num_train_steps} steps of "
        f"{config.train_batch_size} sequences",
    ]
    for name in ("masked_lm_accuracy", "next_sentence_accuracy", "masked_lm_loss", "mlm_loss"):
        if name in results:
            lines.append(f"  eval {name:<22} {results[name]:.4f}")
    # (Without fine-tuning data there are no results, and the verdict says it did not run.)
    lines += finetune_verdict(
        *(_eval_results(finetune_dir(config, n)) for n in ("pretrained", "random"))
    )
    lines += [
        "  time          "
        + ", ".join(f"{stage} {secs:.0f}s" for stage, secs in seconds.items())
        + f"; total {sum(seconds.values()):.0f}s",
        f"  TensorBoard   make tensorboard  (or: tensorboard --logdir {out / 'model'})",
        f"  curves        {out / 'curves.png'}",
    ]
    return "\n".join(lines)


def run_demo(config: DemoConfig) -> dict[str, float]:
    """Runs every stage in order; stops at the first that fails. Returns seconds per stage."""
    out = Path(config.output_dir)
    if out.exists():
        shutil.rmtree(out)  # a demo always starts from the raw data
    out.mkdir(parents=True)
    seconds: dict[str, float] = {}
    environment = dict(os.environ, PYTHONPATH=str(_PROJECT_ROOT))
    commands = stage_commands(config)
    for number, (stage, argv) in enumerate(commands, start=1):
        shown = shlex.join([Path(argv[0]).name, *argv[1:]])
        print(f"\n=== [{number}/{len(commands)}] {stage}\n$ {shown}", flush=True)
        start = time.monotonic()
        completed = subprocess.run(argv, cwd=_PROJECT_ROOT, env=environment)
        seconds[stage] = time.monotonic() - start
        if completed.returncode != 0:
            raise SystemExit(f"demo stopped: stage '{stage}' failed (exit {completed.returncode})")
    return seconds


_DEFAULTS = DemoConfig()


def _define_flags() -> None:
    """Defined only when run as a program: importing this module must not claim flag names
    (`--output_dir`) that the stage modules define too."""
    flags.DEFINE_string("output_dir", _DEFAULTS.output_dir, "Where everything goes; wiped first.")
    flags.DEFINE_integer("num_train_steps", _DEFAULTS.num_train_steps, "Training steps.")
    flags.DEFINE_integer("dupe_factor", _DEFAULTS.dupe_factor, "Masked copies of each document.")
    flags.DEFINE_integer("vocab_size", _DEFAULTS.vocab_size, "WordPiece vocab size to learn.")
    flags.DEFINE_string("wiki_input", _DEFAULTS.wiki_input, "Wikipedia dump(s).")
    flags.DEFINE_string("books_input", _DEFAULTS.books_input, "Glob of book .txt files.")
    flags.DEFINE_string(
        "finetune_data",
        _DEFAULTS.finetune_data,
        "GLUE SST-2 folder (train.tsv, dev.tsv) the pretrained and a random BERT are fine-tuned "
        "on; '' to skip",
    )
    flags.DEFINE_float("finetune_epochs", _DEFAULTS.finetune_epochs, "Fine-tuning epochs.")


def main(argv: Sequence[str]) -> None:
    del argv
    wiki_input, books_input = flags.FLAGS.wiki_input, flags.FLAGS.books_input
    if sample_data.missing_reason() is not None and (wiki_input, books_input) == (
        _DEFAULTS.wiki_input,
        _DEFAULTS.books_input,
    ):
        # A fresh clone with no ../shared/data: fetch the sample (pinned, sha256-checked).
        folder = sample_data.sample_folder(_PROJECT_ROOT / "data" / "sample")
        wiki_input = str(folder / sample_data.WIKI_MULTISTREAM)
        books_input = str(folder / sample_data.BOOKS_GLOB)
    finetune_data = flags.FLAGS.finetune_data
    if finetune_data and not Path(finetune_data, "train.tsv").exists():
        print(f"no {Path(finetune_data, 'train.tsv')}: the demo will not fine-tune", flush=True)
        finetune_data = ""
    config = dataclasses.replace(
        _DEFAULTS,
        output_dir=flags.FLAGS.output_dir,
        num_train_steps=flags.FLAGS.num_train_steps,
        num_warmup_steps=max(1, flags.FLAGS.num_train_steps // 10),
        dupe_factor=flags.FLAGS.dupe_factor,
        vocab_size=flags.FLAGS.vocab_size,
        wiki_input=wiki_input,
        books_input=books_input,
        finetune_data=finetune_data,
        finetune_epochs=flags.FLAGS.finetune_epochs,
    )
    logging.info("demo config: %s", config)
    seconds = run_demo(config)
    png = plot_curves(Path(config.output_dir) / "model", Path(config.output_dir) / "curves.png")
    print(summarize(config, seconds))
    logging.info("curves written to %s", png)


if __name__ == "__main__":
    _define_flags()
    command_line.run(main, program="launch.demo")
