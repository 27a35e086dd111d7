r"""Pretrains BERT (masked LM + next sentence) on TFRecords from create_pretraining_data.

  python -m trainer.run_pretraining \
      --input_file='data/records/train/*.tfrecord' \
      --eval_input_file='data/records/eval/*.tfrecord' \
      --output_dir=data/model --model_size=tiny \
      --train_batch_size=32 --num_train_steps=300 --num_warmup_steps=30 \
      --learning_rate=1e-3 --do_train --do_eval

On a TPU: `--tpu=<name>` (or `local` on a TPU VM, or grpc://host:8470) and
`--mixed_precision=bf16`; on several GPUs `--strategy=mirrored`. See docs/trainer.md.
"""

from __future__ import annotations

import dataclasses
import functools
import json

from absl import app, flags, logging

from contracts import command_line, metadata, storage
from trainer import config as config_lib
from trainer import distribution, training_loop

FLAGS = flags.FLAGS


def define_flags(values: flags.FlagValues = FLAGS) -> None:
    """Defines the command-line flags in `values`; only when run as a program (other
    stages share flag names such as --output_dir) or, in tests, in their own FlagValues."""
    define_string = functools.partial(flags.DEFINE_string, flag_values=values)
    define_integer = functools.partial(flags.DEFINE_integer, flag_values=values)
    define_float = functools.partial(flags.DEFINE_float, flag_values=values)
    define_bool = functools.partial(flags.DEFINE_bool, flag_values=values)
    define_enum = functools.partial(flags.DEFINE_enum, flag_values=values)
    define_string("input_file", None, "Comma-separated globs of training TFRecords.")
    define_string("eval_input_file", "", "Comma-separated globs of eval TFRecords.")
    define_string("output_dir", None, "Checkpoints, TensorBoard events and eval results.")
    define_string("bert_config_file", "", "A bert_config.json in Google's format.")
    define_enum(
        "model_size", "base", config_lib.MODEL_SIZES, "Model size when no --bert_config_file."
    )
    define_integer(
        "vocab_size",
        None,
        "Vocab size for --model_size; default: metadata.json beside the records, else 30522.",
    )
    define_string(
        "init_checkpoint",
        "",
        "Initial weights: this trainer's checkpoint, Google's, or a Hugging Face folder.",
    )
    define_integer(
        "max_seq_length",
        None,
        "Tokens per sequence; default: the records' metadata.json, else 128.",
    )
    define_integer(
        "max_predictions_per_seq",
        None,
        "Masked positions per sequence; default: the records' metadata.json, else 20.",
    )
    define_integer("train_batch_size", 32, "Global batch per optimiser update.")
    define_integer("eval_batch_size", 8, "Global eval batch.")
    define_integer("num_train_steps", 100_000, "Optimiser updates.")
    define_integer("num_warmup_steps", 10_000, "Linear warmup steps.")
    define_float("learning_rate", 1e-4, "Peak learning rate.")
    define_enum("optimizer", "adamw", config_lib.OPTIMIZERS, "Optimiser.")
    define_float("weight_decay_rate", 0.01, "Decoupled weight decay (not LayerNorm/bias).")
    define_float("clip_norm", 1.0, "Global gradient-norm clip; 0 disables.")
    define_integer("gradient_accumulation_steps", 1, "Micro-batches per update.")
    define_enum("mixed_precision", "fp32", config_lib.MIXED_PRECISIONS, "Precision.")
    define_bool("nsp", True, "Train the next-sentence head; false: masked LM only.")
    define_bool(
        "jit_compile",
        None,
        "Compile the steps with XLA; default: on for TPUs and GPUs, off on CPUs.",
    )
    define_enum("strategy", "auto", config_lib.STRATEGIES, "Distribution strategy.")
    define_string("tpu", "", "TPU name, 'local' on a TPU VM, or grpc://host:8470.")
    define_integer("save_checkpoints_steps", 1000, "Checkpoint every N steps.")
    define_integer("keep_checkpoint_max", 5, "Checkpoints kept.")
    define_integer("steps_per_loop", 100, "Steps per compiled loop call (log interval).")
    define_integer("max_eval_steps", 100, "Eval batches at most.")
    define_bool("do_train", True, "Train.")
    define_bool("do_eval", False, "Evaluate on --eval_input_file after training.")
    define_float("peak_tflops_per_device", 0.0, "Device peak for MFU; 0: GPU table lookup.")
    define_integer("shuffle_buffer_size", 10_000, "Records in the shuffle buffer.")
    define_integer("seed", 12345, "Seeds shuffling, initialisation and dropout.")


def _records_metadata(patterns: str) -> dict:
    """The metadata.json beside the first matched records that has one ({} if none)."""
    for pattern in storage.split_patterns(patterns):
        record = metadata.read(storage.dirname(pattern))
        if record:
            return record
    return {}


def _bert_config(flag_values: flags.FlagValues) -> config_lib.BertConfig:
    if flag_values.bert_config_file:
        return config_lib.BertConfig.from_json_file(flag_values.bert_config_file)
    records = _records_metadata(flag_values.input_file or flag_values.eval_input_file or "")
    vocab_size = flag_values.vocab_size or records.get("vocab_size") or 30522
    return config_lib.model_config(flag_values.model_size, vocab_size=vocab_size)


def config_from_flags(flag_values: flags.FlagValues = FLAGS) -> config_lib.PretrainingConfig:
    """The run's PretrainingConfig from the parsed flags."""
    values = {
        field.name: flag_values[field.name].value
        for field in dataclasses.fields(config_lib.PretrainingConfig)
        if field.name in flag_values and field.name != "bert"
    }
    values = {
        name: ("" if value is None and name != "jit_compile" else value)
        for name, value in values.items()
    }
    # Shapes the flags leave open come from the records' metadata.json (else Google's
    # defaults); given ones are checked against it before the first step.
    patterns = flag_values.input_file or flag_values.eval_input_file or ""
    made_with = _records_metadata(patterns).get("flags", {})
    for name, default in (("max_seq_length", 128), ("max_predictions_per_seq", 20)):
        if flag_values[name].value is None:
            values[name] = int(made_with.get(name, default))
    if flag_values.tpu and flag_values.strategy == "auto":
        values["strategy"] = "tpu"
    return config_lib.PretrainingConfig(bert=_bert_config(flag_values), **values)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    config = config_from_flags()
    strategy = distribution.get_strategy(config.strategy, tpu=config.tpu)
    metrics = training_loop.run(config, strategy=strategy)
    logging.info("done: %s", json.dumps(metrics, sort_keys=True))


if __name__ == "__main__":
    define_flags()
    flags.mark_flags_as_required(["output_dir"])
    command_line.run(main, program="trainer.run_pretraining")
