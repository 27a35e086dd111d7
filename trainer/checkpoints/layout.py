"""The BERT checkpoint layout every format shares: names, parts, shapes, the in-memory
`Weights`, the errors, and finding a checkpoint and its config (trainer/checkpoints/__init__.py
says what each format is)."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import tensorflow as tf
from absl import logging

from contracts import storage
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

# The parts of a BERT checkpoint, by google-research/bert name prefix.
PARTS = {
    "encoder": ("bert/embeddings/", "bert/encoder/"),
    "pooler": ("bert/pooler/",),
    "masked_lm": ("cls/predictions/",),
    "next_sentence": ("cls/seq_relationship/",),
}

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
            lines.append(f"  missing ({len(self.missing)}): {list_names(self.missing)}")
        if self.unexpected:
            lines.append(f"  unexpected ({len(self.unexpected)}): {list_names(self.unexpected)}")
        if self.wrong_shapes:
            shapes = [
                f"{name} {list(found)} (config: {list(expected)})"
                for name, (found, expected) in self.wrong_shapes.items()
            ]
            lines.append(f"  wrong shape ({len(shapes)}): {list_names(shapes)}")
        if hint:
            lines.append(f"  {hint}")
        super().__init__("\n".join(lines))


class ConfigNotFoundError(FileNotFoundError):
    """A checkpoint without its model config beside it."""


def list_names(names: Sequence[str]) -> str:
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
            list_names(unexpected),
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


def checkpoint_folder(path: str) -> str:
    """The folder of a checkpoint path (a folder itself, or a prefix / file inside one)."""
    stripped = path.rstrip("/")
    return stripped if storage.isdir(stripped) else storage.dirname(stripped)


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


def load_checkpoint(prefix: str):
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


def checkpoint_files(prefix: str) -> tuple[str, ...]:
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
    names = list(load_checkpoint(prefix).get_variable_to_shape_map())
    if any(name.startswith("model/") for name in names):
        return "tensorflow"
    if any(name.startswith(("bert/", "cls/")) for name in names):
        return "google"
    raise ValueError(
        f"{prefix}: a TensorFlow checkpoint, but neither this trainer's (names under 'model/') "
        f"nor google-research/bert's (names under 'bert/'); its first names: "
        f"{list_names(sorted(names))}"
    )


def read_json(path: str) -> dict:
    try:
        values = json.loads(storage.read_text(path))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(values, dict):
        raise ValueError(f"{path}: not a JSON object")
    return values


def config_beside(prefix: str, *, source: str) -> BertConfig:
    """The BertConfig in the checkpoint's folder: bert_config.json, else the trainer's
    config.json (whose "bert" key holds it)."""
    folder = storage.dirname(prefix)
    path = storage.join(folder, BERT_CONFIG_FILE)
    if storage.exists(path):
        return BertConfig.from_json_file(path)
    path = storage.join(folder, "config.json")
    if storage.exists(path):
        values = read_json(path)
        if isinstance(values.get("bert"), dict):
            try:
                return BertConfig.from_dict(values["bert"])
            except (TypeError, ValueError) as error:
                raise ValueError(f"{path}: {error}") from error
    raise ConfigNotFoundError(
        f"{source}: no {BERT_CONFIG_FILE} in {folder}; pass the model's config (--bert_config_file)"
    )


def architecture_differences(ours: BertConfig, theirs: BertConfig) -> list[str]:
    """The architecture fields (not dropout or init) on which two configs differ, as
    "field: ours vs theirs" strings."""
    return [
        f"{field}: {getattr(ours, field)!r} vs {getattr(theirs, field)!r}"
        for field in _ARCHITECTURE_FIELDS
        if getattr(ours, field) != getattr(theirs, field)
    ]


def write_checkpoint_state(output_dir: str, prefix_name: str) -> str:
    # The CheckpointState text proto, with a path relative to its folder.
    path = storage.join(output_dir, CHECKPOINT_STATE_FILE)
    storage.atomic_write(
        path,
        f'model_checkpoint_path: "{prefix_name}"\nall_model_checkpoint_paths: "{prefix_name}"\n',
    )
    return path
