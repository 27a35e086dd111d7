"""google-research/bert's checkpoints: name-based (`bert_model.ckpt.*`), TF1 variable names."""

from __future__ import annotations

import re

import tensorflow as tf

from contracts import storage
from trainer.checkpoints.layout import (
    BERT_CONFIG_FILE,
    GOOGLE_CHECKPOINT,
    BertConfig,
    Weights,
    check_weights,
    checkpoint_files,
    checkpoint_prefix,
    config_beside,
    load_checkpoint,
    write_checkpoint_state,
)

# Names of training state in Google-style checkpoints: optimiser slots (google-research/bert's
# AdamWeightDecayOptimizer writes `<variable>/adam_m` and `/adam_v`; tf.train optimisers
# `/Adam`, `/Adam_1`, `/Momentum`; LAMB implementations `/lamb_m`, `/lamb_v`), the step counter
# and mixed-precision loss-scale state.
_GOOGLE_TRAINING_STATE = re.compile(
    r"(^|/)(global_step|good_steps|loss_scale|current_loss_scale)$"
    r"|/(adam_m|adam_v|Adam|Adam_1|Momentum|lamb_m|lamb_v|LAMB|LAMB_1|accum_grad\w*)$"
)


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
    config = config or config_beside(prefix, source=prefix)
    reader = load_checkpoint(prefix)
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
        files=checkpoint_files(prefix),
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
    state_path = write_checkpoint_state(output_dir, GOOGLE_CHECKPOINT)
    return [*checkpoint_files(prefix), config_path, state_path]
