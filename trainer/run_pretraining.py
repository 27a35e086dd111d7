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

import json

from absl import app, flags, logging

from contracts import command_line, config_flags, metadata, storage
from trainer import config as config_lib
from trainer import distribution, training_loop

FLAGS = flags.FLAGS


def define_flags(values: flags.FlagValues = FLAGS) -> None:
    """Defines the command-line flags in `values`: one per field of `PretrainingConfig`, with
    its default and its comment as help (`contracts.config_flags`), and the three that choose
    the model. Only when run as a program (other stages share flag names such as
    --output_dir) or, in tests, in their own FlagValues."""
    config_flags.define_flags(
        config_lib.PretrainingConfig,
        flag_values=values,
        # None: taken from the records' metadata.json, else Google's defaults (128, 20).
        defaults={"max_seq_length": None, "max_predictions_per_seq": None, "output_dir": None},
    )
    flags.DEFINE_string(
        "bert_config_file", "", "A bert_config.json in Google's format.", flag_values=values
    )
    flags.DEFINE_enum(
        "model_size",
        "base",
        config_lib.MODEL_SIZES,
        "Model size when no --bert_config_file.",
        flag_values=values,
    )
    flags.DEFINE_integer(
        "vocab_size",
        None,
        "Vocab size for --model_size; default: metadata.json beside the records, else 30522.",
        flag_values=values,
    )
    flags.mark_flags_as_required(["output_dir"], flag_values=values)


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
    # Shapes the flags leave open come from the records' metadata.json (else the config's
    # defaults, Google's); given ones are checked against it before the first step.
    patterns = flag_values.input_file or flag_values.eval_input_file or ""
    made_with = _records_metadata(patterns).get("flags", {})
    defaults = config_lib.PretrainingConfig(output_dir="-", do_train=False)
    overrides = {"bert": _bert_config(flag_values)}
    for name in ("max_seq_length", "max_predictions_per_seq"):
        if flag_values[name].value is None:
            overrides[name] = int(made_with.get(name, getattr(defaults, name)))
    if flag_values.tpu and flag_values.strategy == "auto":
        overrides["strategy"] = "tpu"
    return config_flags.config_from_flags(
        config_lib.PretrainingConfig, flag_values=flag_values, **overrides
    )


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
