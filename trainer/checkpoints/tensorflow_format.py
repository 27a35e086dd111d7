"""This trainer's own checkpoints: TF2 object-based, `tf.train.Checkpoint(model=...)`."""

from __future__ import annotations

import collections
import functools

import tensorflow as tf

from contracts import storage
from trainer import modeling
from trainer.checkpoints.layout import (
    BERT_CONFIG_FILE,
    TENSORFLOW_CHECKPOINT,
    BertConfig,
    Weights,
    check_weights,
    checkpoint_files,
    checkpoint_prefix,
    config_beside,
    load_checkpoint,
    write_checkpoint_state,
)

# The object graph every TF2 object-based checkpoint stores beside the tensors.
_OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"
_VARIABLE_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"


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
    config = config or config_beside(prefix, source=prefix)
    reader = load_checkpoint(prefix)
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
        files=checkpoint_files(prefix),
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
    state_path = write_checkpoint_state(output_dir, TENSORFLOW_CHECKPOINT)
    return [*checkpoint_files(prefix), config_path, state_path]
