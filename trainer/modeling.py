"""BERT in Keras 3 (TensorFlow backend), as in the paper and google-research/bert's modeling.py.

Post-LayerNorm transformer encoder, GELU, learned position embeddings, token-type (segment)
embeddings, a tanh pooler on the first token; for pretraining, the masked-LM head (dense, GELU,
LayerNorm, then the word-embedding table transposed plus a bias) run only on the gathered
masked positions, and the next-sentence head on the pooled output.

Inputs are a dict of int tensors:
  input_ids            [batch, seq]   token ids
  input_mask           [batch, seq]   1 for real tokens, 0 for padding (default: all ones)
  segment_ids          [batch, seq]   0 for sentence A, 1 for sentence B (default: all zeros)
  masked_lm_positions  [batch, preds] positions to predict (pretraining heads only)

Variable layout. Each variable's Keras `path` is its google-research/bert checkpoint name, with
the model's own name in front for `BertPretrainingModel` ("bert_pretraining/bert/..."), and
without for a standalone `BertEncoder` (whose name is "bert"); `google_variable_names(model)`
gives the mapping. Hugging Face's `BertForPreTraining` names are the same with "." for "/",
`weight` for `kernel`/`gamma`/embedding tables, `bias` for `beta`, and its Linear weights are
the transpose ([out, in]) of the kernels here ([in, out]):

  google-research/bert name                               shape      Hugging Face name
  bert/embeddings/word_embeddings                         [V, H]     bert.embeddings.word_embeddings.weight
  bert/embeddings/token_type_embeddings                   [T, H]     bert.embeddings.token_type_embeddings.weight
  bert/embeddings/position_embeddings                     [P, H]     bert.embeddings.position_embeddings.weight
  bert/embeddings/LayerNorm/{gamma,beta}                  [H]        bert.embeddings.LayerNorm.{weight,bias}
  bert/encoder/layer_N/attention/self/query/{kernel,bias} [H, H],[H] bert.encoder.layer.N.attention.self.query.{weight^T,bias}
    (likewise key, value)
  bert/encoder/layer_N/attention/output/dense/{kernel,bias}  [H, H]  ...attention.output.dense.{weight^T,bias}
  bert/encoder/layer_N/attention/output/LayerNorm/{gamma,beta}       ...attention.output.LayerNorm.{weight,bias}
  bert/encoder/layer_N/intermediate/dense/{kernel,bias}   [H, I]     ...intermediate.dense.{weight^T,bias}
  bert/encoder/layer_N/output/dense/{kernel,bias}         [I, H]     ...output.dense.{weight^T,bias}
  bert/encoder/layer_N/output/LayerNorm/{gamma,beta}      [H]        ...output.LayerNorm.{weight,bias}
  bert/pooler/dense/{kernel,bias}                         [H, H]     bert.pooler.dense.{weight^T,bias}
  cls/predictions/transform/dense/{kernel,bias}           [H, H]     cls.predictions.transform.dense.{weight^T,bias}
  cls/predictions/transform/LayerNorm/{gamma,beta}        [H]        cls.predictions.transform.LayerNorm.{weight,bias}
  cls/predictions/output_bias                             [V]        cls.predictions.bias (= decoder.bias)
  cls/seq_relationship/output_weights                     [2, H]     cls.seq_relationship.weight (no transpose)
  cls/seq_relationship/output_bias                        [2]        cls.seq_relationship.bias

The masked-LM output weights are the word-embedding table itself (tied, as in both), so
`cls.predictions.decoder.weight` has no variable of its own.

Mixed precision: pass `dtype="mixed_bfloat16"` or `"mixed_float16"` (a Keras 3 dtype policy);
variables stay float32, matrix work runs in the compute dtype, and LayerNorm, the attention
softmax and the output logits are float32.

Dropout takes its randomness as an argument: `dropout_seed`, a [2] int tensor, makes every mask
a stateless function of (seed, layer, site), so a step is reproducible; without it, training
mode draws from TensorFlow's stateful generator.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import keras
import tensorflow as tf

from trainer.config import BertConfig


def activation(name: str):
    """The activation function named in a bert_config.json (`hidden_act`)."""
    functions = {
        "gelu": lambda x: tf.nn.gelu(x, approximate=False),
        "gelu_new": lambda x: tf.nn.gelu(x, approximate=True),
        "gelu_approximate": lambda x: tf.nn.gelu(x, approximate=True),
        "relu": tf.nn.relu,
        "tanh": tf.math.tanh,
        "silu": tf.nn.silu,
        "swish": tf.nn.silu,
    }
    if name not in functions:
        raise ValueError(f"unknown hidden_act {name!r}; known: {', '.join(sorted(functions))}")
    return functions[name]


def _fold_seed(seed: tf.Tensor | None, salt: int) -> tf.Tensor | None:
    """A new [2] stateless seed from `seed` and a site number; None stays None."""
    if seed is None:
        return None
    return tf.random.experimental.stateless_fold_in(seed, salt)


def _dropout(x: tf.Tensor, rate: float, *, training: bool, seed: tf.Tensor | None) -> tf.Tensor:
    if not training or rate <= 0.0:
        return x
    if seed is None:
        return tf.nn.dropout(x, rate=rate)
    return tf.nn.experimental.stateless_dropout(x, rate=rate, seed=seed)


class _Initializers:
    """Hands out truncated-normal initialisers (stddev = initializer_range), each with its own
    seed derived from one model seed, so that a seeded model is the same on every run and on
    every replica; with seed None each draws fresh randomness."""

    def __init__(self, stddev: float, seed: int | None):
        self._stddev = stddev
        self._seed = seed
        self._count = 0

    def __call__(self) -> keras.initializers.Initializer:
        self._count += 1
        seed = None if self._seed is None else self._seed * 1000 + self._count
        return keras.initializers.TruncatedNormal(stddev=self._stddev, seed=seed)


class BertEmbeddings(keras.layers.Layer):
    """Word + position + token-type embeddings, then LayerNorm and dropout.

    Variables: word_embeddings [V, H], token_type_embeddings [T, H], position_embeddings [P, H],
    LayerNorm/{gamma, beta} [H].
    """

    def __init__(self, config: BertConfig, *, initializers: _Initializers, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        self._table_initializers = [initializers() for _ in range(3)]
        self.layer_norm = keras.layers.LayerNormalization(
            epsilon=config.layer_norm_eps, name="LayerNorm", dtype=self.dtype_policy
        )

    def build(self, input_shape=None):
        config = self.config
        word, token_type, position = self._table_initializers
        self.word_embeddings = self.add_weight(
            name="word_embeddings",
            shape=(config.vocab_size, config.hidden_size),
            initializer=word,
        )
        self.token_type_embeddings = self.add_weight(
            name="token_type_embeddings",
            shape=(config.type_vocab_size, config.hidden_size),
            initializer=token_type,
        )
        self.position_embeddings = self.add_weight(
            name="position_embeddings",
            shape=(config.max_position_embeddings, config.hidden_size),
            initializer=position,
        )
        self.layer_norm.build((None, None, config.hidden_size))

    def call(self, input_ids, segment_ids, training=False, dropout_seed=None):
        """int32 [batch, seq] ids and segment ids -> compute-dtype [batch, seq, hidden]."""
        seq_length = tf.shape(input_ids)[1]
        # Inside `call`, Keras 3 reads variables cast to the compute dtype (autocast).
        embeddings = tf.gather(self.word_embeddings, input_ids)
        embeddings += tf.gather(self.token_type_embeddings, segment_ids)
        embeddings += self.position_embeddings[tf.newaxis, :seq_length]
        embeddings = self.layer_norm(embeddings)
        return _dropout(
            embeddings, self.config.hidden_dropout_prob, training=training, seed=dropout_seed
        )


def _masked_softmax_in_range(scores: tf.Tensor, attention_bias: tf.Tensor) -> tf.Tensor:
    """softmax(scores + attention_bias), with padding scored just below the row's lowest real
    score instead of -10000: the same probabilities to within exp(-_MASK_MARGIN) per key.

    For integer quantization: there every tensor gets one int8 scale from its calibrated
    range, and scores + (-10000) spans ~10,000, a step of ~40 that rounds every real score to
    the same value, so each layer attends uniformly (MiniLM on SST-2 fell to chance). Here the
    softmax input spans the real scores' range plus the margin.
    """
    # 0 where a key is kept, _PADDING_BIAS at padding. Halfway: in an int8 graph the bias itself
    # is quantized (a step of ~40), and a threshold near 0 would round to 0 and mask every key.
    kept = attention_bias > _PADDING_BIAS / 2
    lowest = tf.reduce_min(scores, axis=-1, keepdims=True)
    return tf.nn.softmax(tf.where(kept, scores, lowest - _MASK_MARGIN), axis=-1)


# What padding adds to the scores (google-research/bert's value; exp(-10000) is exactly 0 in
# float32).
_PADDING_BIAS = -10000.0
# exp(-20) ~ 2e-9: what a padded key may still weigh against the lowest real one.
_MASK_MARGIN = 20.0


@contextlib.contextmanager
def quantizable_masks(model: keras.Layer):
    """Within the block, every attention layer of `model` masks padding within the scores'
    range (see `_masked_softmax_in_range`): for tracing a graph to be quantized to int8."""
    layers = [layer for layer in _sublayers(model) if isinstance(layer, _SelfAttention)]
    for layer in layers:
        layer.mask_in_range = True
    try:
        yield
    finally:
        for layer in layers:
            layer.mask_in_range = False


def _sublayers(layer: keras.Layer):
    yield layer
    for child in layer._layers:
        yield from _sublayers(child)


class _SelfAttention(keras.layers.Layer):
    """Scaled dot-product attention; query/key/value kernels are [H, H] as in Google's
    checkpoints (heads are a reshape of the output), so they convert without reshaping."""

    def __init__(self, config: BertConfig, *, initializers: _Initializers, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        self.query, self.key, self.value = (
            keras.layers.Dense(
                config.hidden_size,
                kernel_initializer=initializers(),
                name=name,
                dtype=self.dtype_policy,
            )
            for name in ("query", "key", "value")
        )
        # Set by `quantizable_masks` while a graph for integer quantization is traced.
        self.mask_in_range = False

    def build(self, input_shape=None):
        for dense in (self.query, self.key, self.value):
            dense.build((None, None, self.config.hidden_size))

    def call(self, hidden, attention_bias, training=False, dropout_seed=None):
        """[batch, seq, hidden] and a float32 [batch, 1, 1, seq] additive mask ->
        [batch, seq, hidden] context."""
        config = self.config
        batch, seq_length = tf.shape(hidden)[0], tf.shape(hidden)[1]
        heads, head_size = config.num_attention_heads, config.head_size

        def split_heads(x):  # [batch, seq, hidden] -> [batch, seq, heads, head_size]
            return tf.reshape(x, [batch, seq_length, heads, head_size])

        query = split_heads(self.query(hidden))
        key = split_heads(self.key(hidden))
        value = split_heads(self.value(hidden))
        # Scale the query (the smaller tensor) rather than the [batch, heads, seq, seq] scores.
        query *= tf.cast(1.0 / math.sqrt(head_size), query.dtype)
        scores = tf.einsum("bqnd,bknd->bnqk", query, key)
        # Softmax in float32: under fp16 the -10000 mask and large logits would overflow.
        # (Keras casts float arguments to the compute dtype on the way in; take the bias back.)
        if self.mask_in_range:
            probs = _masked_softmax_in_range(
                tf.cast(scores, tf.float32), tf.cast(attention_bias, tf.float32)
            )
        else:
            probs = tf.nn.softmax(
                tf.cast(scores, tf.float32) + tf.cast(attention_bias, tf.float32), axis=-1
            )
        probs = tf.cast(probs, hidden.dtype)
        probs = _dropout(
            probs, config.attention_probs_dropout_prob, training=training, seed=dropout_seed
        )
        context = tf.einsum("bnqk,bknd->bqnd", probs, value)
        return tf.reshape(context, [batch, seq_length, config.hidden_size])


class _DenseResidualLayerNorm(keras.layers.Layer):
    """dense -> dropout -> + residual -> LayerNorm (the post-LN sublayer output).

    Variables: dense/{kernel, bias}, LayerNorm/{gamma, beta}.
    """

    def __init__(
        self, config: BertConfig, *, input_size: int, initializers: _Initializers, **kwargs
    ):
        super().__init__(**kwargs)
        self.config = config
        self.input_size = input_size
        self.dense = keras.layers.Dense(
            config.hidden_size,
            kernel_initializer=initializers(),
            name="dense",
            dtype=self.dtype_policy,
        )
        self.layer_norm = keras.layers.LayerNormalization(
            epsilon=config.layer_norm_eps, name="LayerNorm", dtype=self.dtype_policy
        )

    def build(self, input_shape=None):
        self.dense.build((None, None, self.input_size))
        self.layer_norm.build((None, None, self.config.hidden_size))

    def call(self, hidden, residual, training=False, dropout_seed=None):
        output = _dropout(
            self.dense(hidden),
            self.config.hidden_dropout_prob,
            training=training,
            seed=dropout_seed,
        )
        return self.layer_norm(output + residual)


class _Attention(keras.layers.Layer):
    """Self-attention plus its output sublayer. Variables: self/..., output/..."""

    def __init__(self, config: BertConfig, *, initializers: _Initializers, **kwargs):
        super().__init__(**kwargs)
        self.self_attention = _SelfAttention(
            config, initializers=initializers, name="self", dtype=self.dtype_policy
        )
        self.attention_output = _DenseResidualLayerNorm(
            config,
            input_size=config.hidden_size,
            initializers=initializers,
            name="output",
            dtype=self.dtype_policy,
        )

    def build(self, input_shape=None):
        pass  # Sublayers build on first call, inside this layer's name scope.

    def call(self, hidden, attention_bias, training=False, dropout_seed=None):
        context = self.self_attention(
            hidden, attention_bias, training=training, dropout_seed=_fold_seed(dropout_seed, 0)
        )
        return self.attention_output(
            context, hidden, training=training, dropout_seed=_fold_seed(dropout_seed, 1)
        )


class _Intermediate(keras.layers.Layer):
    """The feed-forward expansion: dense [H, I] then the activation. Variables: dense/..."""

    def __init__(self, config: BertConfig, *, initializers: _Initializers, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        self.dense = keras.layers.Dense(
            config.intermediate_size,
            kernel_initializer=initializers(),
            name="dense",
            dtype=self.dtype_policy,
        )
        self.activation_fn = activation(config.hidden_act)

    def build(self, input_shape=None):
        self.dense.build((None, None, self.config.hidden_size))

    def call(self, hidden):
        return self.activation_fn(self.dense(hidden))


class TransformerLayer(keras.layers.Layer):
    """One post-LayerNorm transformer layer (`layer_N`): attention, intermediate, output."""

    def __init__(self, config: BertConfig, *, initializers: _Initializers, **kwargs):
        super().__init__(**kwargs)
        self.attention = _Attention(
            config, initializers=initializers, name="attention", dtype=self.dtype_policy
        )
        self.intermediate = _Intermediate(
            config, initializers=initializers, name="intermediate", dtype=self.dtype_policy
        )
        self.layer_output = _DenseResidualLayerNorm(
            config,
            input_size=config.intermediate_size,
            initializers=initializers,
            name="output",
            dtype=self.dtype_policy,
        )

    def build(self, input_shape=None):
        pass

    def call(self, hidden, attention_bias, training=False, dropout_seed=None):
        attention_output = self.attention(
            hidden, attention_bias, training=training, dropout_seed=_fold_seed(dropout_seed, 0)
        )
        return self.layer_output(
            self.intermediate(attention_output),
            attention_output,
            training=training,
            dropout_seed=_fold_seed(dropout_seed, 1),
        )


class _Encoder(keras.layers.Layer):
    """The stack of transformer layers (`encoder/layer_0` ... `layer_{L-1}`)."""

    def __init__(self, config: BertConfig, *, initializers: _Initializers, **kwargs):
        super().__init__(**kwargs)
        self.transformer_layers = [
            TransformerLayer(
                config, initializers=initializers, name=f"layer_{index}", dtype=self.dtype_policy
            )
            for index in range(config.num_hidden_layers)
        ]
        # Keras 3 keeps a list attribute out of TensorFlow's object graph, so a
        # tf.train.Checkpoint of the model would silently lack every transformer layer (and a
        # resumed run would restart them from their initial values). An attribute per layer
        # puts each in the graph as `encoder/layer_N`; Keras counts each layer's weights once.
        for layer in self.transformer_layers:
            setattr(self, layer.name, layer)

    def build(self, input_shape=None):
        pass

    def call(self, hidden, attention_bias, training=False, dropout_seed=None):
        """The last layer's output, and every layer's ([L] of [batch, seq, hidden])."""
        outputs = []
        for index, layer in enumerate(self.transformer_layers):
            hidden = layer(
                hidden,
                attention_bias,
                training=training,
                dropout_seed=_fold_seed(dropout_seed, index),
            )
            outputs.append(hidden)
        return hidden, outputs


class _Pooler(keras.layers.Layer):
    """tanh(dense(first token)). Variables: dense/{kernel, bias}."""

    def __init__(self, config: BertConfig, *, initializers: _Initializers, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        self.dense = keras.layers.Dense(
            config.hidden_size,
            activation="tanh",
            kernel_initializer=initializers(),
            name="dense",
            dtype=self.dtype_policy,
        )

    def build(self, input_shape=None):
        self.dense.build((None, self.config.hidden_size))

    def call(self, sequence_output):
        return self.dense(sequence_output[:, 0])


def _int32(tensor) -> tf.Tensor:
    tensor = tf.convert_to_tensor(tensor)
    return tensor if tensor.dtype == tf.int32 else tf.cast(tensor, tf.int32)


class BertEncoder(keras.layers.Layer):
    """The BERT encoder (google-research/bert's `BertModel`; scope `bert`).

    Call on {"input_ids", ["input_mask"], ["segment_ids"]} ([batch, seq] ints); returns
    {"sequence_output": [batch, seq, hidden], "pooled_output": [batch, hidden],
    "hidden_states": L + 1 of [batch, seq, hidden] (the embeddings' output, then each layer's)}
    in the compute dtype.
    """

    def __init__(
        self,
        config: BertConfig,
        *,
        seed: int | None = None,
        name: str = "bert",
        initializers: _Initializers | None = None,
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        self.config = config
        initializers = initializers or _Initializers(config.initializer_range, seed)
        self.embeddings = BertEmbeddings(
            config, initializers=initializers, name="embeddings", dtype=self.dtype_policy
        )
        self.encoder = _Encoder(
            config, initializers=initializers, name="encoder", dtype=self.dtype_policy
        )
        self.pooler = _Pooler(
            config, initializers=initializers, name="pooler", dtype=self.dtype_policy
        )

    def build(self, input_shape=None):
        pass

    def call(self, inputs, training=False, dropout_seed=None):
        input_ids = _int32(inputs["input_ids"])
        input_mask = _int32(inputs["input_mask"]) if "input_mask" in inputs else None
        if input_mask is None:
            input_mask = tf.ones_like(input_ids)
        segment_ids = _int32(inputs["segment_ids"]) if "segment_ids" in inputs else None
        if segment_ids is None:
            segment_ids = tf.zeros_like(input_ids)
        # [batch, 1, 1, seq]: 0 where a key may be attended to, _PADDING_BIAS at padding, added
        # to the float32 scores.
        attention_bias = (
            1.0 - tf.cast(input_mask[:, tf.newaxis, tf.newaxis, :], tf.float32)
        ) * _PADDING_BIAS
        hidden = self.embeddings(
            input_ids, segment_ids, training=training, dropout_seed=_fold_seed(dropout_seed, 0)
        )
        sequence_output, layer_outputs = self.encoder(
            hidden, attention_bias, training=training, dropout_seed=_fold_seed(dropout_seed, 1)
        )
        return {
            "sequence_output": sequence_output,
            "pooled_output": self.pooler(sequence_output),
            # The embeddings' output, then each transformer layer's (for distillation).
            "hidden_states": [hidden, *layer_outputs],
        }


class _MaskedLMHead(keras.layers.Layer):
    """`cls/predictions`: transform (dense, activation, LayerNorm) on the gathered positions,
    then logits against the word-embedding table plus `output_bias`."""

    def __init__(self, config: BertConfig, *, initializers: _Initializers, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        self.transform = _Transform(
            config, initializers=initializers, name="transform", dtype=self.dtype_policy
        )

    def build(self, input_shape=None):
        self.output_bias = self.add_weight(
            name="output_bias", shape=(self.config.vocab_size,), initializer="zeros"
        )

    def call(self, sequence_output, positions, embedding_table):
        """[batch, seq, hidden], int32 [batch, preds], [vocab, hidden] -> float32
        [batch, preds, vocab] logits."""
        gathered = tf.gather(sequence_output, positions, batch_dims=1)  # [batch, preds, hidden]
        transformed = self.transform(gathered)
        table = tf.cast(embedding_table, transformed.dtype)
        logits = tf.einsum("bph,vh->bpv", transformed, table)
        # The softmax and the loss that follow run in float32 (mixed precision).
        return tf.cast(logits, tf.float32) + tf.cast(self.output_bias, tf.float32)


class _Transform(keras.layers.Layer):
    """`cls/predictions/transform`: dense [H, H], activation, LayerNorm."""

    def __init__(self, config: BertConfig, *, initializers: _Initializers, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        self.dense = keras.layers.Dense(
            config.hidden_size,
            kernel_initializer=initializers(),
            name="dense",
            dtype=self.dtype_policy,
        )
        self.activation_fn = activation(config.hidden_act)
        self.layer_norm = keras.layers.LayerNormalization(
            epsilon=config.layer_norm_eps, name="LayerNorm", dtype=self.dtype_policy
        )

    def build(self, input_shape=None):
        self.dense.build((None, None, self.config.hidden_size))
        self.layer_norm.build((None, None, self.config.hidden_size))

    def call(self, hidden):
        return self.layer_norm(self.activation_fn(self.dense(hidden)))


class _NextSentenceHead(keras.layers.Layer):
    """`cls/seq_relationship`: pooled [batch, hidden] -> float32 [batch, 2] logits.

    output_weights is [2, hidden] (Google's layout, not a Dense kernel's [hidden, 2]).
    """

    def __init__(self, config: BertConfig, *, initializers: _Initializers, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        self._initializer = initializers()

    def build(self, input_shape=None):
        self.output_weights = self.add_weight(
            name="output_weights", shape=(2, self.config.hidden_size), initializer=self._initializer
        )
        self.output_bias = self.add_weight(name="output_bias", shape=(2,), initializer="zeros")

    def call(self, pooled_output):
        logits = tf.matmul(pooled_output, self.output_weights, transpose_b=True)
        return tf.cast(logits, tf.float32) + tf.cast(self.output_bias, tf.float32)


class _PretrainingHeads(keras.layers.Layer):
    """The `cls` scope: predictions (masked LM) and seq_relationship (next sentence)."""

    def __init__(self, config: BertConfig, *, initializers: _Initializers, **kwargs):
        super().__init__(**kwargs)
        self.predictions = _MaskedLMHead(
            config, initializers=initializers, name="predictions", dtype=self.dtype_policy
        )
        self.seq_relationship = _NextSentenceHead(
            config, initializers=initializers, name="seq_relationship", dtype=self.dtype_policy
        )

    def build(self, input_shape=None):
        pass

    def call(self, sequence_output, pooled_output, positions, embedding_table):
        return (
            self.predictions(sequence_output, positions, embedding_table),
            self.seq_relationship(pooled_output),
        )


class BertPretrainingModel(keras.Model):
    """BERT with the masked-LM and next-sentence heads (google-research/bert's pretraining
    graph; Hugging Face's `BertForPreTraining`).

    Variables are created at construction (a call on a dummy batch), so they exist before
    a checkpoint restore and under the strategy scope the model is built in.

    Call on a dict with input_ids, input_mask, segment_ids ([batch, seq] ints) and
    masked_lm_positions ([batch, preds] ints). Returns a dict:
      sequence_output  [batch, seq, hidden]  compute dtype
      pooled_output    [batch, hidden]       compute dtype
      mlm_logits       [batch, preds, vocab] float32
      nsp_logits       [batch, 2]            float32
    """

    def __init__(
        self,
        config: BertConfig,
        *,
        seed: int | None = None,
        dtype: str | keras.DTypePolicy | None = None,
        name: str = "bert_pretraining",
    ):
        super().__init__(name=name, dtype=dtype)
        self.config = config
        initializers = _Initializers(config.initializer_range, seed)
        self.bert = BertEncoder(
            config, initializers=initializers, name="bert", dtype=self.dtype_policy
        )
        self.cls = _PretrainingHeads(
            config, initializers=initializers, name="cls", dtype=self.dtype_policy
        )
        dummy = tf.zeros((1, 2), tf.int32)
        self(
            {
                "input_ids": dummy,
                "input_mask": tf.ones_like(dummy),
                "segment_ids": dummy,
                "masked_lm_positions": dummy[:, :1],
            }
        )

    def call(self, inputs, training=False, dropout_seed=None):
        encoder_outputs = self.bert(
            {
                key: inputs[key]
                for key in ("input_ids", "input_mask", "segment_ids")
                if key in inputs
            },
            training=training,
            dropout_seed=dropout_seed,
        )
        mlm_logits, nsp_logits = self.cls(
            encoder_outputs["sequence_output"],
            encoder_outputs["pooled_output"],
            _int32(inputs["masked_lm_positions"]),
            self.bert.embeddings.word_embeddings,
        )
        return {**encoder_outputs, "mlm_logits": mlm_logits, "nsp_logits": nsp_logits}


def google_variable_names(model: keras.layers.Layer) -> dict[str, Any]:
    """{google-research/bert checkpoint name: variable} for a BertPretrainingModel or a
    standalone BertEncoder (see the module docstring for the layout)."""
    names = {}
    for variable in model.weights:
        path = variable.path
        if isinstance(model, BertPretrainingModel):
            path = path.split("/", 1)[1]
        elif isinstance(model, BertEncoder) and not path.startswith(model.name + "/"):
            # An encoder inside another model (a classifier): its paths start with the outer
            # model's name; Google's names start at the encoder's own ("bert/...").
            parts = path.split("/")
            path = "/".join(parts[parts.index(model.name) :])
        names[path] = variable
    return names


def count_parameters(model: keras.layers.Layer) -> int:
    """Number of trainable scalars (the tied output embedding counted once)."""
    return int(sum(math.prod(v.shape) for v in model.trainable_weights))
