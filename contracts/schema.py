"""The pretraining TFRecord schema: defined once, imported by the writer and by the trainer.

It is exactly google-research/bert's (`create_pretraining_data.py` writes it, `run_pretraining.py`
reads it), so records move freely between that project and this one:

| feature              | dtype   | length                   |
|----------------------|---------|--------------------------|
| input_ids            | int64   | max_seq_length           |
| input_mask           | int64   | max_seq_length           |
| segment_ids          | int64   | max_seq_length           |
| masked_lm_positions  | int64   | max_predictions_per_seq  |
| masked_lm_ids        | int64   | max_predictions_per_seq  |
| masked_lm_weights    | float32 | max_predictions_per_seq  |
| next_sentence_labels | int64   | 1 (1 = B is a random segment, 0 = B follows A) |

Padding is 0 everywhere; a padded prediction slot has weight 0.0.
This module imports no Beam, so the trainer can use it on a TPU VM, and TensorFlow only inside
the two functions that build TensorFlow objects: the writer (`pipeline.example_encoding`)
serializes with numpy and must not pay TensorFlow's start-up.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import tensorflow as tf

SEQUENCE_FEATURES = ("input_ids", "input_mask", "segment_ids")
PREDICTION_FEATURES = ("masked_lm_positions", "masked_lm_ids", "masked_lm_weights")
FLOAT_FEATURES = frozenset({"masked_lm_weights"})
FEATURE_NAMES = (*SEQUENCE_FEATURES, *PREDICTION_FEATURES, "next_sentence_labels")


def feature_lengths(*, max_seq_length: int, max_predictions_per_seq: int) -> dict[str, int]:
    """Fixed length of each feature, by name."""
    lengths = dict.fromkeys(SEQUENCE_FEATURES, max_seq_length)
    lengths.update(dict.fromkeys(PREDICTION_FEATURES, max_predictions_per_seq))
    lengths["next_sentence_labels"] = 1
    return lengths


def feature_spec(
    *, max_seq_length: int, max_predictions_per_seq: int
) -> dict[str, tf.io.FixedLenFeature]:
    """The `tf.io.parse_example` spec for one record, as google-research/bert declares it."""
    import tensorflow as tf  # heavy; only readers need it (see the module docstring)

    lengths = feature_lengths(
        max_seq_length=max_seq_length, max_predictions_per_seq=max_predictions_per_seq
    )
    return {
        name: tf.io.FixedLenFeature([length], tf.float32 if name in FLOAT_FEATURES else tf.int64)
        for name, length in lengths.items()
    }


def to_example(features: Mapping[str, np.ndarray | list]) -> tf.train.Example:
    """Builds a `tf.train.Example` from one instance's padded feature arrays."""
    import tensorflow as tf  # heavy; only readers need it (see the module docstring)

    example = tf.train.Example()
    for name in FEATURE_NAMES:
        values = np.asarray(features[name]).reshape(-1)
        if name in FLOAT_FEATURES:
            example.features.feature[name].float_list.value.extend(values.astype(np.float32))
        else:
            example.features.feature[name].int64_list.value.extend(values.astype(np.int64))
    return example


def serialize(features: Mapping[str, np.ndarray | list]) -> bytes:
    """Serializes one instance deterministically (map fields in a fixed order), so that the
    same instance always gives the same bytes, on any worker."""
    return to_example(features).SerializeToString(deterministic=True)


def check_lengths(
    features: Mapping[str, np.ndarray | list], *, max_seq_length: int, max_predictions_per_seq: int
) -> None:
    """Raises ValueError naming the first feature whose length breaks the schema."""
    lengths = feature_lengths(
        max_seq_length=max_seq_length, max_predictions_per_seq=max_predictions_per_seq
    )
    for name, length in lengths.items():
        actual = np.asarray(features[name]).size
        if actual != length:
            raise ValueError(f"feature {name!r} has {actual} values, the schema needs {length}")
