r"""Converts BERT checkpoints between this trainer's, google-research/bert's and Hugging Face's.

  python -m trainer.convert_checkpoint \
      --input=data/model --input_format=tensorflow \
      --output=data/model-hf --output_format=huggingface

  python -m trainer.convert_checkpoint \
      --input=uncased_L-12_H-768_A-12/bert_model.ckpt \
      --output=data/google-base --output_format=tensorflow

Formats (see trainer/checkpoints.py and docs/checkpoints.md):
  tensorflow   this trainer's checkpoint (`tf.train.Checkpoint(model=...)`), a prefix such as
               `data/model/ckpt-1000` or the run's output_dir (newest checkpoint)
  google       google-research/bert's `bert_model.ckpt` + `bert_config.json`
  huggingface  a folder with `config.json` + `model.safetensors` (BertForPreTraining/BertModel)

The mapping is by name. Heads are converted when present, optimiser slots and step counters are
dropped, and a checkpoint that does not fit the BERT layout of its config stops the conversion
with the names missing, unexpected or of the wrong shape. The output folder must be new (or
empty); `metadata.json` is written into it last. A `vocab.txt` beside the input (or
--vocab_file) is copied along.
"""

from __future__ import annotations

import tensorflow as tf
from absl import app, flags, logging

from contracts import command_line, metadata, storage
from trainer import checkpoints
from trainer.config import BertConfig

FLAGS = flags.FLAGS


def _check_new_folder(output_dir: str) -> None:
    """Refuses an output folder that already holds files: a conversion never mixes its
    files with another checkpoint's."""
    existing = storage.listdir(output_dir)
    if existing:
        raise ValueError(
            f"{output_dir} already holds files ({', '.join(existing[:5])}"
            f"{', ...' if len(existing) > 5 else ''}); write to a new folder"
        )


def convert(
    input_path: str,
    output_dir: str,
    *,
    output_format: str,
    input_format: str = "auto",
    config: BertConfig | None = None,
    vocab_file: str | None = None,
    allow_unexpected: bool = False,
) -> checkpoints.Weights:
    """Reads a checkpoint in one format and writes it in another (or the same).

    Args:
      input_path: the checkpoint (prefix, folder, or Hugging Face folder).
      output_dir: a new or empty folder (local or gs://).
      output_format: one of checkpoints.FORMATS.
      input_format: one of FORMATS or "auto".
      config: the model config; default: the one stored with the input.
      vocab_file: a vocab to copy into the output as vocab.txt; default: vocab.txt beside the
        input, when there is one.
      allow_unexpected: leave out tensors that are not BERT weights (e.g. a fine-tuned
        classifier) instead of failing.

    Returns:
      The weights converted.

    Raises:
      ValueError: output_dir is not empty, unknown format, vocab size differs from the model's,
        or the checkpoint does not fit (CheckpointMismatchError).
      FileNotFoundError: no checkpoint or config at input_path.
    """
    if output_format not in checkpoints.FORMATS:
        raise ValueError(
            f"unknown output format {output_format!r}; choose one of {checkpoints.FORMATS}"
        )
    _check_new_folder(output_dir)
    if input_format == "auto":
        input_format = checkpoints.detect_format(input_path)
    weights = checkpoints.read(
        input_path, format=input_format, config=config, allow_unexpected=allow_unexpected
    )
    if not vocab_file:
        candidate = storage.join(checkpoints.checkpoint_folder(input_path), checkpoints.VOCAB_FILE)
        vocab_file = candidate if storage.exists(candidate) else None
    vocab_text = None
    if vocab_file:
        vocab_text = storage.read_text(vocab_file)
        vocab_size = len(vocab_text.splitlines())
        if vocab_size != weights.config.vocab_size:
            raise ValueError(
                f"{vocab_file} has {vocab_size} tokens, the model's vocab_size is "
                f"{weights.config.vocab_size}"
            )
    outputs = checkpoints.write(weights, output_dir, format=output_format)
    if vocab_text is not None:
        vocab_output = storage.join(output_dir, checkpoints.VOCAB_FILE)
        storage.atomic_write(vocab_output, vocab_text)
        outputs.append(vocab_output)
    metadata.write(
        output_dir,
        command="trainer.convert_checkpoint",
        flags={
            "input": input_path,
            "input_format": input_format,
            "output": output_dir,
            "output_format": output_format,
            "allow_unexpected": allow_unexpected,
        },
        inputs=list(weights.files),
        outputs=outputs,
        counts={
            "tensors": len(weights.tensors),
            "parameters": weights.num_parameters,
            "training_state_tensors_dropped": len(weights.dropped),
        },
        vocab_file=vocab_file,
        extra={"parts": list(weights.parts), "bert_config": weights.config.to_dict()},
    )
    logging.info(
        "wrote %s (%s format): %d tensors, %d parameters, parts: %s",
        output_dir,
        output_format,
        len(weights.tensors),
        weights.num_parameters,
        ", ".join(weights.parts),
    )
    return weights


def define_flags() -> None:
    formats = list(checkpoints.FORMATS)
    flags.DEFINE_string("input", None, "The checkpoint to convert: prefix, folder or HF folder.")
    flags.DEFINE_enum("input_format", "auto", ["auto", *formats], "Format of --input.")
    flags.DEFINE_string("output", None, "A new folder for the converted checkpoint.")
    flags.DEFINE_enum("output_format", None, formats, "Format to write.")
    flags.DEFINE_string(
        "bert_config_file", "", "The model's bert_config.json; default: the one with --input."
    )
    flags.DEFINE_string(
        "vocab_file", "", "Vocab copied into --output; default: vocab.txt beside --input."
    )
    flags.DEFINE_bool(
        "allow_unexpected",
        False,
        "Leave out tensors that are not BERT weights (e.g. a classifier) instead of failing.",
    )


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    try:
        config = (
            BertConfig.from_json_file(FLAGS.bert_config_file) if FLAGS.bert_config_file else None
        )
        convert(
            FLAGS.input,
            FLAGS.output,
            output_format=FLAGS.output_format,
            input_format=FLAGS.input_format,
            config=config,
            vocab_file=FLAGS.vocab_file or None,
            allow_unexpected=FLAGS.allow_unexpected,
        )
    except tf.errors.OpError as error:
        # TensorFlow's message names no file: say which input it was.
        raise ValueError(f"{FLAGS.input}: {error.message}") from error


if __name__ == "__main__":
    define_flags()
    flags.mark_flags_as_required(["input", "output", "output_format"])
    command_line.run(main, program="trainer.convert_checkpoint")
