"""BERT checkpoints in three layouts, read and written by name, through one in-memory form.

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

import collections
import dataclasses
import functools
import json
import re
from collections.abc import Iterable, Mapping, Sequence

import keras
import numpy as np
import safetensors
import safetensors.numpy
import tensorflow as tf
from absl import logging

from contracts import storage
from trainer import modeling
from trainer.config import BertConfig

FORMATS = ("google", "huggingface", "tensorflow")

# File names inside a checkpoint folder.
BERT_CONFIG_FILE = "bert_config.json"  # Google's and this trainer's model config
GOOGLE_CHECKPOINT = "bert_model.ckpt"  # the prefix Google's released checkpoints use
TENSORFLOW_CHECKPOINT = "ckpt-0"  # the trainer's `ckpt-<step>` naming, step unknown
HUGGINGFACE_CONFIG_FILE = "config.json"
SAFETENSORS_FILE = "model.safetensors"
SAFETENSORS_INDEX_FILE = "model.safetensors.index.json"
VOCAB_FILE = "vocab.txt"
# The text file tf.train.latest_checkpoint reads to find the newest checkpoint in a folder.
CHECKPOINT_STATE_FILE = "checkpoint"
# The object graph every TF2 object-based checkpoint stores beside the tensors.
_OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"
_VARIABLE_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"

# The parts of a BERT checkpoint, by google-research/bert name prefix.
PARTS = {
    "encoder": ("bert/embeddings/", "bert/encoder/"),
    "pooler": ("bert/pooler/",),
    "masked_lm": ("cls/predictions/",),
    "next_sentence": ("cls/seq_relationship/",),
}

# Names of training state in Google-style checkpoints: optimiser slots (google-research/bert's
# AdamWeightDecayOptimizer writes `<variable>/adam_m` and `/adam_v`; tf.train optimisers
# `/Adam`, `/Adam_1`, `/Momentum`; LAMB implementations `/lamb_m`, `/lamb_v`), the step counter
# and mixed-precision loss-scale state.
_GOOGLE_TRAINING_STATE = re.compile(
    r"(^|/)(global_step|good_steps|loss_scale|current_loss_scale)$"
    r"|/(adam_m|adam_v|Adam|Adam_1|Momentum|lamb_m|lamb_v|LAMB|LAMB_1|accum_grad\w*)$"
)
# Buffers Hugging Face saves that are not weights: `position_ids` ([1, P] = arange) and
# `token_type_ids` (zeros) of BertEmbeddings.
_HUGGINGFACE_BUFFERS = re.compile(r"(^|\.)embeddings\.(position_ids|token_type_ids)$")
# Safetensors dtype codes of floating-point tensors; all are read as float32.
_SAFETENSORS_FLOATS = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    # numpy has no bfloat16; TensorFlow's numpy type (from ml_dtypes) reads it.
    "BF16": tf.bfloat16.as_numpy_dtype,
}
_SAFETENSORS_INTEGERS = {"I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8}
# BertConfig fields that change what the weights compute (dropout and init do not).
_ARCHITECTURE_FIELDS = (
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "hidden_act",
    "max_position_embeddings",
    "type_vocab_size",
    "layer_norm_eps",
)
# How many names an error message lists before "... and N more".
_LISTED_NAMES = 12


class CheckpointMismatchError(ValueError):
    """A checkpoint's names or shapes do not fit the BERT layout of its config.

    Attributes:
      missing: expected names the checkpoint lacks.
      unexpected: names in the checkpoint that are neither BERT weights nor training state.
      wrong_shapes: {name: (shape in the checkpoint, shape the config implies)}.
    """

    def __init__(
        self,
        source: str,
        *,
        missing: Sequence[str] = (),
        unexpected: Sequence[str] = (),
        wrong_shapes: Mapping[str, tuple[tuple[int, ...], tuple[int, ...]]] | None = None,
        hint: str = "",
    ):
        self.missing = list(missing)
        self.unexpected = list(unexpected)
        self.wrong_shapes = dict(wrong_shapes or {})
        lines = [f"{source}: the checkpoint does not match the BERT layout of its config"]
        if self.missing:
            lines.append(f"  missing ({len(self.missing)}): {_list_names(self.missing)}")
        if self.unexpected:
            lines.append(f"  unexpected ({len(self.unexpected)}): {_list_names(self.unexpected)}")
        if self.wrong_shapes:
            shapes = [
                f"{name} {list(found)} (config: {list(expected)})"
                for name, (found, expected) in self.wrong_shapes.items()
            ]
            lines.append(f"  wrong shape ({len(shapes)}): {_list_names(shapes)}")
        if hint:
            lines.append(f"  {hint}")
        super().__init__("\n".join(lines))


class ConfigNotFoundError(FileNotFoundError):
    """A checkpoint without its model config beside it."""


def _list_names(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_LISTED_NAMES])
    return shown + (
        f", ... and {len(names) - _LISTED_NAMES} more" if len(names) > _LISTED_NAMES else ""
    )


@dataclasses.dataclass(frozen=True)
class Weights:
    """A BERT's weights in google-research/bert's names, and the config they belong to.

    Attributes:
      config: the model's hyperparameters.
      tensors: {google-research/bert name: float32 array}, only names of the layout of `config`
        (`google_variable_shapes`), in layout order; each part complete or absent.
      source: where they were read from (for messages).
      dropped: names of training state left out on reading (optimiser slots, step, ...).
      files: the files they were read from.
    """

    config: BertConfig
    tensors: Mapping[str, np.ndarray]
    source: str = ""
    dropped: tuple[str, ...] = ()
    files: tuple[str, ...] = ()

    @property
    def parts(self) -> tuple[str, ...]:
        """The parts present, in PARTS order (always starting with "encoder")."""
        present = {part_of(name) for name in self.tensors}
        return tuple(part for part in PARTS if part in present)

    @property
    def num_parameters(self) -> int:
        return int(sum(array.size for array in self.tensors.values()))


# ---- the layout --------------------------------------------------------------------------


def google_variable_shapes(config: BertConfig) -> dict[str, tuple[int, ...]]:
    """{google-research/bert variable name: shape} of every weight of a pretraining BERT.

    The same names and shapes as `modeling.google_variable_names(BertPretrainingModel(config))`
    (a test checks it), without building a model.
    """
    hidden, inner = config.hidden_size, config.intermediate_size
    shapes: dict[str, tuple[int, ...]] = {
        "bert/embeddings/word_embeddings": (config.vocab_size, hidden),
        "bert/embeddings/token_type_embeddings": (config.type_vocab_size, hidden),
        "bert/embeddings/position_embeddings": (config.max_position_embeddings, hidden),
        "bert/embeddings/LayerNorm/gamma": (hidden,),
        "bert/embeddings/LayerNorm/beta": (hidden,),
    }

    def dense(prefix: str, inputs: int, outputs: int) -> None:
        shapes[f"{prefix}/kernel"] = (inputs, outputs)
        shapes[f"{prefix}/bias"] = (outputs,)

    def layer_norm(prefix: str) -> None:
        shapes[f"{prefix}/gamma"] = (hidden,)
        shapes[f"{prefix}/beta"] = (hidden,)

    for index in range(config.num_hidden_layers):
        layer = f"bert/encoder/layer_{index}"
        for projection in ("query", "key", "value"):
            dense(f"{layer}/attention/self/{projection}", hidden, hidden)
        dense(f"{layer}/attention/output/dense", hidden, hidden)
        layer_norm(f"{layer}/attention/output/LayerNorm")
        dense(f"{layer}/intermediate/dense", hidden, inner)
        dense(f"{layer}/output/dense", inner, hidden)
        layer_norm(f"{layer}/output/LayerNorm")
    dense("bert/pooler/dense", hidden, hidden)
    dense("cls/predictions/transform/dense", hidden, hidden)
    layer_norm("cls/predictions/transform/LayerNorm")
    shapes["cls/predictions/output_bias"] = (config.vocab_size,)
    shapes["cls/seq_relationship/output_weights"] = (2, hidden)
    shapes["cls/seq_relationship/output_bias"] = (2,)
    return shapes


def part_of(name: str) -> str:
    """The part ("encoder", "pooler", "masked_lm", "next_sentence") a google name belongs to.

    Raises:
      ValueError: a name outside BERT's scopes.
    """
    for part, prefixes in PARTS.items():
        if name.startswith(prefixes):
            return part
    raise ValueError(f"{name!r} is not a BERT variable name")


_HUGGINGFACE_SPECIAL_NAMES = {
    "cls/predictions/output_bias": "cls.predictions.bias",
    "cls/seq_relationship/output_weights": "cls.seq_relationship.weight",
    "cls/seq_relationship/output_bias": "cls.seq_relationship.bias",
}
_HUGGINGFACE_LEAVES = {"kernel": "weight", "gamma": "weight", "beta": "bias", "bias": "bias"}


def huggingface_name(google_name: str) -> str:
    """The `BertForPreTraining` state-dict name of a google-research/bert variable name.

    "bert/encoder/layer_3/attention/self/query/kernel" -> "bert.encoder.layer.3.attention.self.
    query.weight"; "cls/predictions/output_bias" -> "cls.predictions.bias". (A bare `BertModel`
    uses the same names without "bert.".)
    """
    if google_name in _HUGGINGFACE_SPECIAL_NAMES:
        return _HUGGINGFACE_SPECIAL_NAMES[google_name]
    *scopes, leaf = google_name.split("/")
    scopes = [re.sub(r"^layer_(\d+)$", r"layer.\1", scope) for scope in scopes]
    if leaf in _HUGGINGFACE_LEAVES:
        return ".".join([*scopes, _HUGGINGFACE_LEAVES[leaf]])
    return ".".join([*scopes, leaf, "weight"])  # the embedding tables


def transposed_in_huggingface(google_name: str) -> bool:
    """True where PyTorch's Linear stores the [out, in] transpose of the [in, out] kernel.

    (The next-sentence `output_weights` are [2, hidden] in both layouts.)
    """
    return google_name.endswith("/kernel")


def check_weights(
    tensors: Mapping[str, np.ndarray],
    config: BertConfig,
    *,
    source: str,
    dropped: Iterable[str] = (),
    files: Iterable[str] = (),
    allow_unexpected: bool = False,
    hint: str = "",
) -> Weights:
    """Checks named tensors against the layout of `config` and returns them as `Weights`.

    Args:
      tensors: {google-research/bert name: array} as read from a checkpoint (training state
        already removed).
      config: the model's config.
      source: the checkpoint's path, for messages.
      dropped: names of training state the reader left out.
      files: the files read.
      allow_unexpected: leave out (and log) names outside the layout instead of failing.
      hint: a line added to the error message.

    Raises:
      CheckpointMismatchError: an encoder weight or part of an optional part is missing, a
        name is unexpected (unless allowed), or a shape differs from the config's.
    """
    expected = google_variable_shapes(config)
    unexpected = sorted(name for name in tensors if name not in expected)
    if unexpected and allow_unexpected:
        logging.warning(
            "%s: leaving out %d unexpected tensors: %s",
            source,
            len(unexpected),
            _list_names(unexpected),
        )
        unexpected = []
    wrong_shapes = {
        name: (tuple(tensors[name].shape), shape)
        for name, shape in expected.items()
        if name in tensors and tuple(tensors[name].shape) != shape
    }
    present_parts = {part_of(name) for name in tensors if name in expected} | {"encoder"}
    missing = [name for name in expected if name not in tensors and part_of(name) in present_parts]
    if missing or unexpected or wrong_shapes:
        raise CheckpointMismatchError(
            source, missing=missing, unexpected=unexpected, wrong_shapes=wrong_shapes, hint=hint
        )
    ordered = {
        name: np.asarray(tensors[name], dtype=np.float32) for name in expected if name in tensors
    }
    return Weights(
        config=config,
        tensors=ordered,
        source=source,
        dropped=tuple(sorted(dropped)),
        files=tuple(files),
    )


# ---- finding checkpoints and configs -----------------------------------------------------


def checkpoint_prefix(path: str) -> str:
    """The prefix of the TensorFlow checkpoint at `path`.

    Args:
      path: a prefix (`.../bert_model.ckpt`, `.../ckpt-1000`), its `.index` file, or a folder
        holding a `checkpoint` state file (the newest checkpoint is taken) or exactly one
        `*.index` file (Google's released folders have no state file).

    Raises:
      FileNotFoundError: no checkpoint there.
      ValueError: a folder with several checkpoints and no state file.
    """
    path = path.rstrip("/")
    if path.endswith(".index"):
        path = path[: -len(".index")]
    if storage.exists(path + ".index"):
        return path
    if storage.isdir(path):
        latest = tf.train.latest_checkpoint(path)
        if latest:
            return latest
        prefixes = [
            name[: -len(".index")] for name in storage.listdir(path) if name.endswith(".index")
        ]
        if len(prefixes) == 1:
            return storage.join(path, prefixes[0])
        if prefixes:
            raise ValueError(
                f"{path}: several checkpoints ({', '.join(prefixes)}) and no '"
                f"{CHECKPOINT_STATE_FILE}' file saying which is the newest; name one, e.g. "
                f"{storage.join(path, prefixes[-1])}"
            )
    raise FileNotFoundError(
        f"{path}: no TensorFlow checkpoint (no {path}.index, and no folder with a checkpoint)"
    )


def _load_checkpoint(prefix: str):
    """tf.train.load_checkpoint (a CheckpointReader), with an error that names the checkpoint.

    Raises:
      ValueError: the files are unreadable (truncated, corrupt, not a checkpoint).
    """
    try:
        return tf.train.load_checkpoint(prefix)
    except tf.errors.OpError as error:
        # TensorFlow's message ("file is too short to be an sstable") names no file.
        raise ValueError(
            f"{prefix}: not a readable TensorFlow checkpoint ({error.message})"
        ) from error


def _checkpoint_files(prefix: str) -> tuple[str, ...]:
    return tuple(sorted(storage.glob(prefix + ".index") + storage.glob(prefix + ".data-*")))


def detect_format(path: str) -> str:
    """Which of FORMATS the checkpoint at `path` is in.

    A folder with `model.safetensors` (or its index, or `pytorch_model.bin`) is huggingface; a
    TensorFlow checkpoint whose tensors live under `model/` is this trainer's (tensorflow), one
    whose tensors are named `bert/...` is google.

    Raises:
      FileNotFoundError: nothing at `path` looks like a checkpoint.
      ValueError: a TensorFlow checkpoint of neither layout.
    """
    stripped = path.rstrip("/")
    if stripped.endswith(".safetensors"):
        return "huggingface"
    if storage.isdir(stripped) and any(
        storage.exists(storage.join(stripped, name))
        for name in (SAFETENSORS_FILE, SAFETENSORS_INDEX_FILE, "pytorch_model.bin")
    ):
        return "huggingface"
    prefix = checkpoint_prefix(stripped)
    names = list(_load_checkpoint(prefix).get_variable_to_shape_map())
    if any(name.startswith("model/") for name in names):
        return "tensorflow"
    if any(name.startswith(("bert/", "cls/")) for name in names):
        return "google"
    raise ValueError(
        f"{prefix}: a TensorFlow checkpoint, but neither this trainer's (names under 'model/') "
        f"nor google-research/bert's (names under 'bert/'); its first names: "
        f"{_list_names(sorted(names))}"
    )


def _read_json(path: str) -> dict:
    try:
        values = json.loads(storage.read_text(path))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(values, dict):
        raise ValueError(f"{path}: not a JSON object")
    return values


def _config_beside(prefix: str, *, source: str) -> BertConfig:
    """The BertConfig in the checkpoint's folder: bert_config.json, else the trainer's
    config.json (whose "bert" key holds it)."""
    folder = storage.dirname(prefix)
    path = storage.join(folder, BERT_CONFIG_FILE)
    if storage.exists(path):
        return BertConfig.from_json_file(path)
    path = storage.join(folder, "config.json")
    if storage.exists(path):
        values = _read_json(path)
        if isinstance(values.get("bert"), dict):
            try:
                return BertConfig.from_dict(values["bert"])
            except (TypeError, ValueError) as error:
                raise ValueError(f"{path}: {error}") from error
    raise ConfigNotFoundError(
        f"{source}: no {BERT_CONFIG_FILE} in {folder}; pass the model's config (--bert_config_file)"
    )


def _huggingface_config(path: str) -> BertConfig:
    values = _read_json(path)
    model_type = values.get("model_type", "bert")
    if model_type != "bert":
        # RoBERTa, DistilBERT, ALBERT, ... differ in more than names (position offsets, no
        # token types, shared layers): refuse rather than convert into something else.
        raise ValueError(f"{path}: model_type {model_type!r} is not a BERT")
    position_type = values.get("position_embedding_type", "absolute")
    if position_type != "absolute":
        raise ValueError(
            f"{path}: position_embedding_type {position_type!r}; only 'absolute' (BERT's "
            "learned positions) is supported"
        )
    if "hidden_size" not in values:
        raise ValueError(f"{path}: not a BERT config (no 'hidden_size' key)")
    try:
        return BertConfig.from_dict(values)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{path}: {error}") from error


# ---- google ------------------------------------------------------------------------------


def read_google(
    path: str, *, config: BertConfig | None = None, allow_unexpected: bool = False
) -> Weights:
    """Reads a google-research/bert checkpoint.

    Args:
      path: the checkpoint prefix (e.g. `uncased_L-12_H-768_A-12/bert_model.ckpt`) or its
        folder (see `checkpoint_prefix`).
      config: the model's config; default: `bert_config.json` beside the checkpoint.
      allow_unexpected: leave out names outside the layout instead of failing (e.g. a
        fine-tuned classifier's `output_weights`).

    Returns:
      The weights; optimiser slots and `global_step` are dropped.

    Raises:
      CheckpointMismatchError, FileNotFoundError, ValueError: see `check_weights`,
        `checkpoint_prefix`.
    """
    prefix = checkpoint_prefix(path)
    config = config or _config_beside(prefix, source=prefix)
    reader = _load_checkpoint(prefix)
    tensors, dropped = {}, []
    for name in sorted(reader.get_variable_to_shape_map()):
        if _GOOGLE_TRAINING_STATE.search(name):
            dropped.append(name)
        else:
            tensors[name] = reader.get_tensor(name)
    hint = ""
    if any(name.startswith("model/") for name in tensors):
        hint = "its names are under 'model/': it is in the tensorflow format, not google"
    return check_weights(
        tensors,
        config,
        source=prefix,
        dropped=dropped,
        files=_checkpoint_files(prefix),
        allow_unexpected=allow_unexpected,
        hint=hint,
    )


def write_google(weights: Weights, output_dir: str) -> list[str]:
    """Writes google-research/bert's layout: `bert_model.ckpt.{index,data-00000-of-00001}`,
    `bert_config.json` and a `checkpoint` state file (so that the folder itself works as a
    checkpoint path for `tf.train.latest_checkpoint`).

    The tensors keep their plain TF1 names (SaveV2, no object graph), so
    `tf.train.load_checkpoint`, `tf.compat.v1.train.init_from_checkpoint` and Google's
    `modeling.get_assignment_map_from_checkpoint` read them as they read Google's releases.

    Returns:
      The files written.
    """
    storage.makedirs(output_dir)
    prefix = storage.join(output_dir, GOOGLE_CHECKPOINT)
    names = sorted(weights.tensors)
    # SaveV2 writes the data and index through temporary names renamed at the end (TF's
    # BundleWriter), so a crash leaves no index that looks complete.
    tf.raw_ops.SaveV2(
        prefix=prefix,
        tensor_names=names,
        shape_and_slices=[""] * len(names),
        tensors=[tf.constant(weights.tensors[name]) for name in names],
    )
    config_path = storage.join(output_dir, BERT_CONFIG_FILE)
    storage.atomic_write(config_path, weights.config.to_json_string())
    state_path = _write_checkpoint_state(output_dir, GOOGLE_CHECKPOINT)
    return [*_checkpoint_files(prefix), config_path, state_path]


def _write_checkpoint_state(output_dir: str, prefix_name: str) -> str:
    # The CheckpointState text proto, with a path relative to its folder.
    path = storage.join(output_dir, CHECKPOINT_STATE_FILE)
    storage.atomic_write(
        path,
        f'model_checkpoint_path: "{prefix_name}"\nall_model_checkpoint_paths: "{prefix_name}"\n',
    )
    return path


# ---- huggingface -------------------------------------------------------------------------


def _read_safetensors(path: str) -> dict[str, np.ndarray]:
    """{name: array} of a .safetensors file (local or gs://); floats as float32."""
    with storage.open_file(path, "rb") as f:
        data = f.read()
    try:
        entries = safetensors.deserialize(data)
    except Exception as error:  # safetensors raises its own SafetensorError (and others)
        raise ValueError(f"{path}: not a safetensors file ({error})") from error
    tensors = {}
    for name, entry in entries:
        dtype = _SAFETENSORS_FLOATS.get(entry["dtype"]) or _SAFETENSORS_INTEGERS.get(entry["dtype"])
        if dtype is None:
            raise ValueError(f"{path}: tensor {name} has unsupported dtype {entry['dtype']}")
        array = np.frombuffer(entry["data"], dtype=dtype).reshape(entry["shape"])
        if entry["dtype"] in _SAFETENSORS_FLOATS:
            array = array.astype(np.float32)
        tensors[name] = array
    return tensors


def _google_names_by_huggingface_name(config: BertConfig) -> dict[str, str]:
    """{Hugging Face name: google name}, with BertModel's unprefixed names and the old
    `LayerNorm.gamma` / `.beta` names (pytorch-pretrained-bert) as aliases."""
    names = {}
    for google_name in google_variable_shapes(config):
        hf_name = huggingface_name(google_name)
        aliases = [hf_name]
        if hf_name.startswith("bert."):
            aliases.append(hf_name[len("bert.") :])
        for alias in list(aliases):
            if ".LayerNorm." in alias:
                aliases.append(re.sub(r"\.weight$", ".gamma", re.sub(r"\.bias$", ".beta", alias)))
        for alias in aliases:
            names[alias] = google_name
    return names


def read_huggingface(
    path: str, *, config: BertConfig | None = None, allow_unexpected: bool = False
) -> Weights:
    """Reads a Hugging Face BERT folder (`config.json` + `model.safetensors`, or shards listed
    in `model.safetensors.index.json`).

    Args:
      path: the folder (or its .safetensors file).
      config: the model's config; default: the folder's `config.json` (model_type "bert").
      allow_unexpected: leave out names that are not BERT weights (e.g. a fine-tuned
        `classifier.weight`) instead of failing.

    Returns:
      The weights. `cls.predictions.decoder.weight`, where saved, must equal the word
      embeddings (BERT ties them, and so does our model).

    Raises:
      FileNotFoundError: no safetensors in the folder (the message says what to do with a
        `pytorch_model.bin`).
      CheckpointMismatchError, ValueError: names or shapes do not fit, untied output
        embeddings, not a BERT config.
    """
    folder = path.rstrip("/")
    if folder.endswith(".safetensors"):
        folder = storage.dirname(folder)
    index_path = storage.join(folder, SAFETENSORS_INDEX_FILE)
    if storage.exists(storage.join(folder, SAFETENSORS_FILE)):
        files = [storage.join(folder, SAFETENSORS_FILE)]
    elif storage.exists(index_path):
        weight_map = _read_json(index_path).get("weight_map", {})
        files = [storage.join(folder, name) for name in sorted(set(weight_map.values()))]
    elif storage.exists(storage.join(folder, "pytorch_model.bin")):
        raise FileNotFoundError(
            f"{folder}: only pytorch_model.bin, no {SAFETENSORS_FILE}; re-save it with "
            "transformers (`BertForPreTraining.from_pretrained(folder).save_pretrained(new_"
            "folder)` writes safetensors) and convert that"
        )
    else:
        raise FileNotFoundError(f"{folder}: no {SAFETENSORS_FILE} (not a Hugging Face folder)")
    config_path = storage.join(folder, HUGGINGFACE_CONFIG_FILE)
    if config is None:
        if not storage.exists(config_path):
            raise FileNotFoundError(f"{folder}: no {HUGGINGFACE_CONFIG_FILE}")
        config = _huggingface_config(config_path)
    raw: dict[str, np.ndarray] = {}
    for file in files:
        raw.update(_read_safetensors(file))
    google_names = _google_names_by_huggingface_name(config)
    tensors: dict[str, np.ndarray] = {}
    dropped, unexpected = [], {}
    decoder_weight = decoder_bias = None
    for name, array in raw.items():
        stripped = name[len("bert.") :] if name.startswith("bert.") else name
        if _HUGGINGFACE_BUFFERS.search(name):
            dropped.append(name)
        elif name == "cls.predictions.decoder.weight":
            decoder_weight = array
        elif name == "cls.predictions.decoder.bias":
            decoder_bias = array
        elif name in google_names or stripped in google_names:
            google_name = google_names.get(name) or google_names[stripped]
            tensors[google_name] = array.T if transposed_in_huggingface(google_name) else array
        else:
            unexpected[name] = array
    word_embeddings = tensors.get("bert/embeddings/word_embeddings")
    if (
        decoder_weight is not None
        and word_embeddings is not None
        and not np.array_equal(decoder_weight, word_embeddings)
    ):
        raise ValueError(
            f"{folder}: cls.predictions.decoder.weight differs from the word embeddings "
            "(untied output embeddings); BERT, and this trainer's model, tie them"
        )
    if decoder_bias is not None:
        bias = tensors.setdefault("cls/predictions/output_bias", decoder_bias)
        if not np.array_equal(bias, decoder_bias):
            raise ValueError(
                f"{folder}: cls.predictions.decoder.bias differs from cls.predictions.bias"
            )
    # Report unexpected names as they are in the file; check_weights sees them by that name.
    tensors.update(unexpected)
    return check_weights(
        tensors,
        config,
        source=folder,
        dropped=dropped,
        files=[*files, config_path] if storage.exists(config_path) else files,
        allow_unexpected=allow_unexpected,
    )


def huggingface_architecture(parts: Sequence[str]) -> str:
    """The transformers class whose state dict holds exactly these parts."""
    heads = {"masked_lm", "next_sentence"} & set(parts)
    if heads == {"masked_lm", "next_sentence"}:
        return "BertForPreTraining"
    if heads == {"masked_lm"}:
        return "BertForMaskedLM"
    if heads == {"next_sentence"}:
        return "BertForNextSentencePrediction"
    return "BertModel"


def write_huggingface(weights: Weights, output_dir: str) -> list[str]:
    """Writes `config.json` and `model.safetensors` for transformers' `from_pretrained`.

    With heads, the names are `BertForPreTraining`'s ("bert." in front, "cls." heads); without,
    a bare `BertModel`'s. The tied `cls.predictions.decoder.weight` is not stored (transformers
    ties it to the word embeddings on loading, as its own `save_pretrained` does).

    Returns:
      The files written.
    """
    storage.makedirs(output_dir)
    architecture = huggingface_architecture(weights.parts)
    arrays = {}
    for name, array in weights.tensors.items():
        hf_name = huggingface_name(name)
        if architecture == "BertModel":
            hf_name = hf_name[len("bert.") :]
        arrays[hf_name] = np.ascontiguousarray(
            array.T if transposed_in_huggingface(name) else array
        )
    model_path = storage.join(output_dir, SAFETENSORS_FILE)
    # "format": "pt" is what transformers expects in the header of PyTorch-loadable files.
    storage.atomic_write(model_path, safetensors.numpy.save(arrays, metadata={"format": "pt"}))
    values = {
        **weights.config.to_dict(),
        "model_type": "bert",
        "architectures": [architecture],
        "position_embedding_type": "absolute",
        "tie_word_embeddings": True,
        "pad_token_id": 0,
    }
    config_path = storage.join(output_dir, HUGGINGFACE_CONFIG_FILE)
    storage.atomic_write(config_path, json.dumps(values, indent=2, sort_keys=True) + "\n")
    return [model_path, config_path]


# ---- tensorflow (this trainer's) ---------------------------------------------------------


def _escape(name: str) -> str:
    # TensorFlow's escaping of object names in checkpoint keys (trackable_utils).
    return name.replace(".", "..").replace("/", ".S")


@functools.cache
def _tensorflow_paths(num_hidden_layers: int, *, encoder_only: bool) -> dict[str, tuple[str, ...]]:
    """{google name: object path from the `tf.train.Checkpoint` root} of every weight of a
    BertPretrainingModel (or a standalone BertEncoder) held as `model`.

    The paths depend only on the model's structure, so they come from a miniature model with
    the same number of layers, walked breadth first as TensorFlow's checkpoint writer walks it
    (the first path found to an object is its name).
    """
    config = BertConfig(
        vocab_size=4,
        hidden_size=4,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=1,
        intermediate_size=4,
        max_position_embeddings=4,
    )
    if encoder_only:
        model = modeling.BertEncoder(config)
        model({"input_ids": tf.zeros((1, 2), tf.int32)})
    else:
        model = modeling.BertPretrainingModel(config)
    root = tf.train.Checkpoint(model=model)
    view = tf.train.TrackableView(root)
    paths: dict[int, tuple[str, ...]] = {id(root): ()}
    queue = collections.deque([root])
    while queue:
        node = queue.popleft()
        for name, child in view.children(node).items():
            if id(child) not in paths:
                paths[id(child)] = (*paths[id(node)], name)
                queue.append(child)
    by_name = {}
    for name, variable in modeling.google_variable_names(model).items():
        if id(variable) not in paths:
            # trainer/modeling.py must keep every layer reachable as an attribute (Keras 3
            # leaves layers held only in a list out of TensorFlow's object graph).
            raise RuntimeError(f"variable {name} is not in the model's checkpoint object graph")
        by_name[name] = paths[id(variable)]
    return by_name


def tensorflow_checkpoint_keys(
    num_hidden_layers: int, *, encoder_only: bool = False
) -> dict[str, str]:
    """{google-research/bert name: key in this trainer's checkpoints} for a model with
    `num_hidden_layers` layers; e.g. "bert/encoder/layer_0/attention/self/query/kernel" ->
    "model/bert/encoder/layer_0/attention/self_attention/query/_kernel/.ATTRIBUTES/
    VARIABLE_VALUE".

    Args:
      num_hidden_layers: transformer layers.
      encoder_only: keys of `tf.train.Checkpoint(model=BertEncoder)` instead of a
        BertPretrainingModel's.
    """
    paths = _tensorflow_paths(num_hidden_layers, encoder_only=encoder_only)
    return {
        name: "/".join(_escape(part) for part in path) + _VARIABLE_SUFFIX
        for name, path in paths.items()
    }


def read_tensorflow(
    path: str, *, config: BertConfig | None = None, allow_unexpected: bool = False
) -> Weights:
    """Reads this trainer's checkpoint (`tf.train.Checkpoint(model=...)`) by name.

    Only the model's tensors are read: the optimiser slots, step, loss scale and the rest of
    the training state are dropped, so a checkpoint from any point of a run converts.

    Args:
      path: a checkpoint prefix (`.../ckpt-1000`) or the run's output_dir (newest checkpoint).
      config: the model's config; default: `bert_config.json` beside the checkpoint (the
        trainer writes it into output_dir), else the trainer's `config.json`.
      allow_unexpected: leave out unknown names under `model/` instead of failing.

    Raises:
      CheckpointMismatchError, FileNotFoundError, ValueError: see `check_weights`,
        `checkpoint_prefix`.
    """
    prefix = checkpoint_prefix(path)
    config = config or _config_beside(prefix, source=prefix)
    reader = _load_checkpoint(prefix)
    names = set(reader.get_variable_to_shape_map())
    model_names = {name for name in names if name.startswith("model/")}
    # A standalone encoder saved as `model` has its embeddings right under model/.
    encoder_only = not any(name.startswith("model/bert/") for name in model_names) and any(
        name.startswith("model/embeddings/") for name in model_names
    )
    keys = tensorflow_checkpoint_keys(config.num_hidden_layers, encoder_only=encoder_only)
    tensors = {
        google_name: reader.get_tensor(key) for google_name, key in keys.items() if key in names
    }
    known = set(keys.values())
    for key in sorted(model_names - known):
        tensors[key] = reader.get_tensor(key)  # unexpected: reported under its key
    dropped = sorted(names - model_names - {_OBJECT_GRAPH_KEY})
    hint = ""
    layer_names = [name for name in keys if name.startswith("bert/encoder/")]
    if "bert/embeddings/word_embeddings" in tensors and not any(
        name in tensors for name in layer_names
    ):
        hint = (
            "the checkpoint holds no transformer layer at all: it was saved by a version of "
            "trainer/modeling.py whose layers Keras kept out of the checkpoint's object graph; "
            "its encoder weights are lost"
        )
    elif not model_names and any(name.startswith(("bert/", "cls/")) for name in names):
        hint = "its names are google-research/bert's: it is in the google format"
    return check_weights(
        tensors,
        config,
        source=prefix,
        dropped=dropped,
        files=_checkpoint_files(prefix),
        allow_unexpected=allow_unexpected,
        hint=hint,
    )


def write_tensorflow(weights: Weights, output_dir: str) -> list[str]:
    """Writes this trainer's format: `ckpt-0.{index,data-*}` of a `tf.train.Checkpoint` whose
    `model` has the object structure of a BertPretrainingModel, plus `bert_config.json` and a
    `checkpoint` state file.

    Only the parts present are written (a converted `BertModel` gets no heads), so the output
    holds no weight that was not in the input. `tf.train.Checkpoint(model=model).read(...)`
    restores it into a BertPretrainingModel, and `load_weights` into any of our models.

    Returns:
      The files written.
    """
    storage.makedirs(output_dir)
    paths = _tensorflow_paths(weights.config.num_hidden_layers, encoder_only=False)
    # A skeleton of plain tf.Modules with the model's child names, holding only the variables
    # present: the same object graph and keys as the real model, minus the absent parts.
    root = tf.Module()
    for name, array in weights.tensors.items():
        *scopes, leaf = paths[name]
        node = root
        for scope in scopes:
            child = node.__dict__.get(scope)
            if child is None:
                if hasattr(tf.Module, scope):
                    raise RuntimeError(f"object name {scope!r} clashes with tf.Module")
                child = tf.Module()
                setattr(node, scope, child)
            node = child
        setattr(node, leaf, tf.Variable(array, trainable=False))
    prefix = storage.join(output_dir, TENSORFLOW_CHECKPOINT)
    tf.train.Checkpoint(model=root.model).write(prefix)
    config_path = storage.join(output_dir, BERT_CONFIG_FILE)
    storage.atomic_write(config_path, weights.config.to_json_string())
    state_path = _write_checkpoint_state(output_dir, TENSORFLOW_CHECKPOINT)
    return [*_checkpoint_files(prefix), config_path, state_path]


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


def write(weights: Weights, output_dir: str, *, format: str) -> list[str]:
    """Writes `weights` into the folder `output_dir` in one of FORMATS; returns the files."""
    if format not in _WRITERS:
        raise ValueError(f"unknown checkpoint format {format!r}; choose one of {FORMATS}")
    logging.info("writing %s (%s format, %s)", output_dir, format, ", ".join(weights.parts))
    return _WRITERS[format](weights, output_dir)


def architecture_differences(ours: BertConfig, theirs: BertConfig) -> list[str]:
    """The architecture fields (not dropout or init) on which two configs differ, as
    "field: ours vs theirs" strings."""
    return [
        f"{field}: {getattr(ours, field)!r} vs {getattr(theirs, field)!r}"
        for field in _ARCHITECTURE_FIELDS
        if getattr(ours, field) != getattr(theirs, field)
    ]


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
