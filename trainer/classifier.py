"""BERT for sequence classification (and regression): the encoder, dropout on the pooled
output, one dense layer; google-research/bert's run_classifier model, Hugging Face's
`BertForSequenceClassification`.

The encoder is `trainer.modeling.BertEncoder` (Google's variable names, so every checkpoint
format of `trainer.checkpoints` loads into it); the pooler and the classifier are the only
weights a pretraining checkpoint does not give (the pooler does, when it has one).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from trainer import modeling
from trainer.config import BertConfig


class BertClassifier(keras.Model):
    """Call on {"input_ids", "input_mask", "segment_ids"} (int [batch, seq]); returns float32
    logits [batch, num_labels] (num_labels 1: a regression score)."""

    def __init__(
        self,
        config: BertConfig,
        *,
        num_labels: int,
        seed: int | None = None,
        dtype: str | keras.DTypePolicy | None = None,
        name: str = "bert_classifier",
    ):
        super().__init__(name=name, dtype=dtype)
        self.config = config
        self.num_labels = num_labels
        self.bert = modeling.BertEncoder(config, seed=seed, name="bert", dtype=self.dtype_policy)
        self.classifier = keras.layers.Dense(
            num_labels,
            kernel_initializer=keras.initializers.TruncatedNormal(
                stddev=config.initializer_range, seed=seed
            ),
            name="classifier",
            dtype=self.dtype_policy,
        )
        self._seed = seed
        zeros = tf.zeros((1, 2), tf.int32)
        self({"input_ids": zeros, "input_mask": zeros + 1, "segment_ids": zeros})

    def call(self, inputs, training=False, dropout_seed=None):
        pooled = self.bert(inputs, training=training, dropout_seed=dropout_seed)["pooled_output"]
        return self.head(pooled, training=training, dropout_seed=dropout_seed)

    def head(self, pooled, training=False, dropout_seed=None):
        """Dropout (in training) and the classifier layer on the pooled output: float32
        logits. For callers that need the encoder's other outputs too (distillation)."""
        if training and self.config.hidden_dropout_prob > 0:
            seed = (
                tf.random.experimental.stateless_fold_in(dropout_seed, 99)
                if dropout_seed is not None
                else tf.constant([self._seed or 0, 99], tf.int64)
            )
            pooled = tf.nn.experimental.stateless_dropout(
                pooled, self.config.hidden_dropout_prob, seed=seed
            )
        return tf.cast(self.classifier(pooled), tf.float32)
