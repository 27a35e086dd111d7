"""BERT checkpoints in three formats, read and written by name, through one in-memory form.

The three formats (`FORMATS`):

  tensorflow   this trainer's own: a TF2 object-based checkpoint of
               `tf.train.Checkpoint(model=BertPretrainingModel)` (what `trainer.run_pretraining`
               saves as `<output_dir>/ckpt-<step>`, with optimiser slots, step and loss scale
               beside the model), plus `bert_config.json` in the same folder. Keys are object
               paths such as `model/bert/encoder/layer_0/attention/self_attention/query/_kernel/
               .ATTRIBUTES/VARIABLE_VALUE`; they are computed from the model itself (see
               `tensorflow_checkpoint_keys`), so they follow `trainer/modeling.py`.
  google       google-research/bert's: a name-based checkpoint (`bert_model.ckpt.index` +
               `.data-*`) whose tensors carry the TF1 variable names `bert/encoder/layer_N/...`,
               `cls/predictions/...`, `cls/seq_relationship/...`, plus `bert_config.json`: what
               Google published, and what its `modeling.py` and `--init_checkpoint` read.
  huggingface  a folder with `config.json` and `model.safetensors` (or a sharded
               `model.safetensors.index.json`) for `BertForPreTraining`, `BertForMaskedLM`,
               `BertForNextSentencePrediction` or a bare `BertModel`.

Every reader returns a `Weights`: the config and {google-research/bert name: float32 array},
Google's names being the common language (our Keras variables carry them too, see
`modeling.google_variable_names`). Every writer takes one. A checkpoint holds four parts
(`PARTS`): the encoder (embeddings and layers; always required), the pooler, the masked-LM head
and the next-sentence head; each optional part is all there or all absent, and absent parts stay
absent in the output rather than being filled with fresh random values. Training state
(optimiser slots, step counters, loss scale) is dropped and counted. Anything else is an error
that lists the names missing, unexpected or of the wrong shape.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from absl import logging

from contracts import storage
from trainer import modeling
from trainer.checkpoints.google import read_google, write_google
from trainer.checkpoints.huggingface import huggingface_config, read_huggingface, write_huggingface
from trainer.checkpoints.layout import (
    BERT_CONFIG_FILE,
    FORMATS,
    HUGGINGFACE_CONFIG_FILE,
    PARTS,
    VOCAB_FILE,
    BertConfig,
    CheckpointMismatchError,
    ConfigNotFoundError,
    Weights,
    architecture_differences,
    check_weights,
    checkpoint_folder,
    checkpoint_prefix,
    config_beside,
    detect_format,
    google_variable_shapes,
    huggingface_name,
    part_of,
    transposed_in_huggingface,
)
from trainer.checkpoints.tensorflow_format import (
    read_tensorflow,
    tensorflow_checkpoint_keys,
    write_tensorflow,
)

# ---- any format --------------------------------------------------------------------------

_READERS = {"google": read_google, "huggingface": read_huggingface, "tensorflow": read_tensorflow}
_WRITERS = {
    "google": write_google,
    "huggingface": write_huggingface,
    "tensorflow": write_tensorflow,
}


def read(
    path: str,
    *,
    format: str = "auto",
    config: BertConfig | None = None,
    allow_unexpected: bool = False,
) -> Weights:
    """Reads a checkpoint in any of FORMATS.

    Args:
      path: the checkpoint (prefix or folder, see the readers).
      format: one of FORMATS, or "auto" (`detect_format`).
      config: the model's config; default: the one stored with the checkpoint.
      allow_unexpected: leave out names that are not BERT weights instead of failing.

    Raises:
      ValueError: an unknown format; and see the readers.
    """
    if format == "auto":
        format = detect_format(path)
    if format not in _READERS:
        raise ValueError(f"unknown checkpoint format {format!r}; choose auto or one of {FORMATS}")
    logging.info("reading %s (%s format)", path, format)
    weights = _READERS[format](path, config=config, allow_unexpected=allow_unexpected)
    logging.info(
        "read %d tensors, %d parameters (%s)%s",
        len(weights.tensors),
        weights.num_parameters,
        ", ".join(weights.parts),
        f"; dropped {len(weights.dropped)} tensors of training state" if weights.dropped else "",
    )
    return weights


def read_config(path: str, *, format: str = "auto") -> BertConfig:
    """The config stored with a checkpoint, without reading its tensors: a Hugging Face
    folder's config.json, else the bert_config.json (or the trainer's config.json) beside it.

    Raises:
      ConfigNotFoundError: the checkpoint stores none. ValueError: an unreadable config.
    """
    if format == "auto":
        format = detect_format(path)
    if format == "huggingface":
        folder = path.rstrip("/")
        if folder.endswith(".safetensors"):
            folder = storage.dirname(folder)
        return huggingface_config(storage.join(folder, HUGGINGFACE_CONFIG_FILE))
    prefix = checkpoint_prefix(path)
    return config_beside(prefix, source=prefix)


def write(weights: Weights, output_dir: str, *, format: str) -> list[str]:
    """Writes `weights` into the folder `output_dir` in one of FORMATS; returns the files."""
    if format not in _WRITERS:
        raise ValueError(f"unknown checkpoint format {format!r}; choose one of {FORMATS}")
    logging.info("writing %s (%s format, %s)", output_dir, format, ", ".join(weights.parts))
    return _WRITERS[format](weights, output_dir)


def assign(model: keras.layers.Layer, weights: Weights) -> list[str]:
    """Assigns the weights to a BertPretrainingModel or BertEncoder, by google name.

    Parts the checkpoint lacks keep their values (e.g. fresh heads when starting pretraining
    from a `BertModel`); parts the model lacks (heads, for an encoder) are not used.

    Returns:
      The names of the model's variables that were left as they were.

    Raises:
      ValueError: a tensor's shape differs from the variable's.
    """
    variables = modeling.google_variable_names(model)
    kept = []
    for name, variable in variables.items():
        if name not in weights.tensors:
            kept.append(name)
            continue
        value = weights.tensors[name]
        if tuple(value.shape) != tuple(variable.shape):
            raise ValueError(
                f"{weights.source}: {name} has shape {list(value.shape)}, the model's "
                f"variable {list(variable.shape)}"
            )
        variable.assign(value)
    return kept


def load_weights(
    model: keras.layers.Layer,
    path: str,
    *,
    format: str = "auto",
    allow_unexpected: bool = False,
) -> Weights:
    """Loads a checkpoint in any format into a BertPretrainingModel or BertEncoder (the
    trainer's `--init_checkpoint`).

    The checkpoint's own config (when it has one) must describe the same architecture as
    `model.config` (sizes, heads, activation, LayerNorm epsilon; dropout may differ). The
    encoder must be complete; heads or pooler the checkpoint lacks keep their initial values
    (logged); training state in it is ignored.

    Args:
      model: the model, built (its variables exist).
      path: the checkpoint, in any of FORMATS (see `read`).
      format: one of FORMATS or "auto".
      allow_unexpected: ignore names that are not BERT weights instead of failing.

    Returns:
      The weights read.

    Raises:
      ValueError: architectures differ; CheckpointMismatchError and the readers' errors.
    """
    config = model.config
    try:
        weights = read(path, format=format, allow_unexpected=allow_unexpected)
    except ConfigNotFoundError as error:
        # A checkpoint without its config (e.g. a bare Google ckpt): trust the model's.
        logging.warning("%s; reading it with the model's config", error)
        weights = read(path, format=format, config=config, allow_unexpected=allow_unexpected)
    differences = architecture_differences(config, weights.config)
    if differences:
        raise ValueError(
            f"{path}: the checkpoint's config differs from the model's ({'; '.join(differences)})"
        )
    kept = assign(model, weights)
    if kept:
        kept_parts = sorted({part_of(name) for name in kept})
        logging.info(
            "%s has no %s: those weights keep their initial values", path, ", ".join(kept_parts)
        )
    unused = sorted(
        set(weights.parts) - {part_of(name) for name in modeling.google_variable_names(model)}
    )
    if unused:
        logging.info("%s: not used by this model: %s", path, ", ".join(unused))
    return weights


def build_encoder(weights: Weights) -> modeling.BertEncoder:
    """A float32 BertEncoder (built) holding the weights' encoder and pooler.

    Raises:
      ValueError: the weights have no pooler (its output would be random).
    """
    if "pooler" not in weights.parts:
        raise ValueError(
            f"{weights.source}: no pooler weights (bert/pooler/dense); an encoder without them "
            "would give a random pooled_output"
        )
    encoder = modeling.BertEncoder(weights.config, dtype="float32")
    encoder({"input_ids": tf.zeros((1, 2), tf.int32)})
    assign(encoder, weights)
    return encoder


__all__ = [
    "checkpoint_folder",
    "read_config",
    "BERT_CONFIG_FILE",
    "CheckpointMismatchError",
    "ConfigNotFoundError",
    "FORMATS",
    "PARTS",
    "VOCAB_FILE",
    "Weights",
    "architecture_differences",
    "assign",
    "build_encoder",
    "check_weights",
    "checkpoint_prefix",
    "detect_format",
    "google_variable_shapes",
    "huggingface_name",
    "load_weights",
    "part_of",
    "read",
    "read_google",
    "read_huggingface",
    "read_tensorflow",
    "tensorflow_checkpoint_keys",
    "transposed_in_huggingface",
    "write",
    "write_google",
    "write_huggingface",
    "write_tensorflow",
]
