"""trainer.config and trainer.modeling: config files, variable layout, and the forward pass
against an independent NumPy transcription of google-research/bert's modeling.py."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import tensorflow as tf

from trainer import config as config_lib
from trainer import modeling

TINY = config_lib.model_config(
    "tiny", vocab_size=97, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0
)


def _features(batch=2, seq=12, preds=3, vocab=97, seed=0):
    rng = np.random.default_rng(seed)
    lengths = [seq, seq - 5]
    input_mask = np.array([[1] * n + [0] * (seq - n) for n in lengths[:batch]])
    input_ids = rng.integers(5, vocab, size=(batch, seq)) * input_mask
    segment_ids = np.array([[0] * (n // 2) + [1] * (seq - n // 2) for n in lengths[:batch]])
    segment_ids *= input_mask
    positions = np.sort(rng.choice(np.arange(1, seq - 5), size=(batch, preds)), axis=1)
    return {
        "input_ids": tf.constant(input_ids, tf.int64),
        "input_mask": tf.constant(input_mask, tf.int64),
        "segment_ids": tf.constant(segment_ids, tf.int64),
        "masked_lm_positions": tf.constant(positions, tf.int64),
    }


def _google_names(layers: int) -> set[str]:
    names = {
        "bert/embeddings/word_embeddings",
        "bert/embeddings/token_type_embeddings",
        "bert/embeddings/position_embeddings",
        "bert/embeddings/LayerNorm/gamma",
        "bert/embeddings/LayerNorm/beta",
        "bert/pooler/dense/kernel",
        "bert/pooler/dense/bias",
        "cls/predictions/transform/dense/kernel",
        "cls/predictions/transform/dense/bias",
        "cls/predictions/transform/LayerNorm/gamma",
        "cls/predictions/transform/LayerNorm/beta",
        "cls/predictions/output_bias",
        "cls/seq_relationship/output_weights",
        "cls/seq_relationship/output_bias",
    }
    for n in range(layers):
        prefix = f"bert/encoder/layer_{n}/"
        for part in ("attention/self/query", "attention/self/key", "attention/self/value"):
            names |= {prefix + part + "/kernel", prefix + part + "/bias"}
        for part in ("attention/output", "output"):
            names |= {prefix + part + "/dense/kernel", prefix + part + "/dense/bias"}
            names |= {prefix + part + "/LayerNorm/gamma", prefix + part + "/LayerNorm/beta"}
        names |= {prefix + "intermediate/dense/kernel", prefix + "intermediate/dense/bias"}
    return names


def test_model_sizes_follow_turc_et_al():
    mini = config_lib.model_config("mini")
    assert (mini.num_hidden_layers, mini.hidden_size, mini.num_attention_heads) == (4, 256, 4)
    assert mini.intermediate_size == 1024
    large = config_lib.model_config("large", vocab_size=100)
    assert (large.num_hidden_layers, large.hidden_size, large.num_attention_heads) == (24, 1024, 16)
    assert large.vocab_size == 100
    with pytest.raises(ValueError, match="unknown model size 'huge'"):
        config_lib.model_config("huge")


def test_bert_config_json_in_google_format_round_trips(tmp_path):
    google = {  # bert_config.json of Google's uncased_L-2_H-128_A-2 (BERT-tiny) release
        "hidden_size": 128,
        "hidden_act": "gelu",
        "initializer_range": 0.02,
        "vocab_size": 30522,
        "hidden_dropout_prob": 0.1,
        "num_attention_heads": 2,
        "type_vocab_size": 2,
        "max_position_embeddings": 512,
        "num_hidden_layers": 2,
        "intermediate_size": 512,
        "attention_probs_dropout_prob": 0.1,
    }
    path = tmp_path / "bert_config.json"
    path.write_text(json.dumps({**google, "model_type": "bert"}))  # HF keys are ignored
    loaded = config_lib.BertConfig.from_json_file(str(path))
    assert loaded == config_lib.model_config("tiny")
    assert json.loads(loaded.to_json_string()) == {**google, "layer_norm_eps": 1e-12}

    path.write_text('{"hidden_size": 100, "num_attention_heads": 3}')
    with pytest.raises(ValueError, match=r"bert_config\.json: hidden_size 100 is not a multiple"):
        config_lib.BertConfig.from_json_file(str(path))
    path.write_text("{not json")
    with pytest.raises(ValueError, match=r"bert_config\.json: not valid JSON"):
        config_lib.BertConfig.from_json_file(str(path))


def test_variables_have_google_checkpoint_names_and_shapes():
    model = modeling.BertPretrainingModel(TINY, seed=1)
    names = modeling.google_variable_names(model)
    assert set(names) == _google_names(TINY.num_hidden_layers)
    assert tuple(names["bert/embeddings/word_embeddings"].shape) == (97, 128)
    assert tuple(names["bert/encoder/layer_1/intermediate/dense/kernel"].shape) == (128, 512)
    assert tuple(names["cls/seq_relationship/output_weights"].shape) == (2, 128)
    # The output embedding is tied: no [hidden, vocab] matrix exists besides the input table.
    assert modeling.count_parameters(model) == sum(int(np.prod(v.shape)) for v in names.values())

    encoder = modeling.BertEncoder(TINY)
    encoder(_features())
    assert {v.path for v in encoder.weights} == {
        n for n in _google_names(TINY.num_hidden_layers) if n.startswith("bert/")
    }


def test_seeded_initialisation_is_reproducible_and_distinct_per_matrix():
    first = modeling.google_variable_names(modeling.BertPretrainingModel(TINY, seed=7))
    second = modeling.google_variable_names(modeling.BertPretrainingModel(TINY, seed=7))
    other = modeling.google_variable_names(modeling.BertPretrainingModel(TINY, seed=8))
    for name in first:
        np.testing.assert_array_equal(first[name].numpy(), second[name].numpy())
    query = first["bert/encoder/layer_0/attention/self/query/kernel"].numpy()
    key = first["bert/encoder/layer_0/attention/self/key/kernel"].numpy()
    assert not np.allclose(query, key)
    assert not np.allclose(query, other["bert/encoder/layer_0/attention/self/query/kernel"])
    # Truncated normal, stddev 0.02: nothing beyond two standard deviations.
    assert np.abs(query).max() <= 0.04 + 1e-6
    assert 0.01 < query.std() < 0.02


def _layer_norm(x, gamma, beta, eps=1e-12):
    mean = x.mean(-1, keepdims=True)
    variance = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(variance + eps) * gamma + beta


def _gelu(x):
    return 0.5 * x * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _numpy_bert(w, features, config):
    """google-research/bert's modeling.py forward pass, transcribed to NumPy."""
    ids, mask, segments, positions = (
        features[k].numpy()
        for k in ("input_ids", "input_mask", "segment_ids", "masked_lm_positions")
    )
    batch, seq = ids.shape
    heads, size = config.num_attention_heads, config.head_size
    x = w["bert/embeddings/word_embeddings"][ids]
    x = x + w["bert/embeddings/token_type_embeddings"][segments]
    x = x + w["bert/embeddings/position_embeddings"][:seq]
    x = _layer_norm(x, w["bert/embeddings/LayerNorm/gamma"], w["bert/embeddings/LayerNorm/beta"])
    bias = (1.0 - mask[:, None, None, :]) * -10000.0
    for n in range(config.num_hidden_layers):
        p = f"bert/encoder/layer_{n}/"

        def dense(v, name, p=p):
            return v @ w[p + name + "/kernel"] + w[p + name + "/bias"]

        def split(v):
            return v.reshape(batch, seq, heads, size).transpose(0, 2, 1, 3)

        q, k, v = (split(dense(x, "attention/self/" + t)) for t in ("query", "key", "value"))
        probs = _softmax(q @ k.transpose(0, 1, 3, 2) / math.sqrt(size) + bias)
        context = (probs @ v).transpose(0, 2, 1, 3).reshape(batch, seq, -1)
        attention = _layer_norm(
            dense(context, "attention/output/dense") + x,
            w[p + "attention/output/LayerNorm/gamma"],
            w[p + "attention/output/LayerNorm/beta"],
        )
        hidden = _gelu(dense(attention, "intermediate/dense"))
        x = _layer_norm(
            dense(hidden, "output/dense") + attention,
            w[p + "output/LayerNorm/gamma"],
            w[p + "output/LayerNorm/beta"],
        )
    pooled = np.tanh(x[:, 0] @ w["bert/pooler/dense/kernel"] + w["bert/pooler/dense/bias"])
    gathered = np.take_along_axis(x, positions[:, :, None], axis=1)
    t = "cls/predictions/transform/"
    gathered = _gelu(gathered @ w[t + "dense/kernel"] + w[t + "dense/bias"])
    gathered = _layer_norm(gathered, w[t + "LayerNorm/gamma"], w[t + "LayerNorm/beta"])
    mlm = gathered @ w["bert/embeddings/word_embeddings"].T + w["cls/predictions/output_bias"]
    nsp = (
        pooled @ w["cls/seq_relationship/output_weights"].T + w["cls/seq_relationship/output_bias"]
    )
    return x, pooled, mlm, nsp


def test_forward_pass_matches_numpy_transcription_of_google_bert():
    model = modeling.BertPretrainingModel(TINY, seed=3)
    # Non-trivial LayerNorm and bias values, so a swapped gamma/beta or a missing bias shows.
    rng = np.random.default_rng(0)
    for variable in model.weights:
        if "LayerNorm" in variable.path or variable.path.endswith("bias"):
            variable.assign(variable.numpy() + rng.normal(0, 0.1, variable.shape))
    weights = {
        n: v.numpy().astype(np.float64) for n, v in modeling.google_variable_names(model).items()
    }
    features = _features()
    outputs = model(features)
    sequence, pooled, mlm, nsp = _numpy_bert(weights, features, TINY)
    real = features["input_mask"].numpy().astype(bool)
    np.testing.assert_allclose(outputs["sequence_output"].numpy()[real], sequence[real], atol=2e-4)
    np.testing.assert_allclose(outputs["pooled_output"].numpy(), pooled, atol=2e-4)
    np.testing.assert_allclose(outputs["mlm_logits"].numpy(), mlm, atol=2e-4)
    np.testing.assert_allclose(outputs["nsp_logits"].numpy(), nsp, atol=2e-4)


def test_padding_is_masked_out_and_dropout_follows_its_seed():
    model = modeling.BertPretrainingModel(config_lib.model_config("tiny", vocab_size=97), seed=3)
    features = _features()
    changed = dict(features)
    ids = features["input_ids"].numpy().copy()
    ids[1, -5:] = 42  # only padding positions of the second row
    changed["input_ids"] = tf.constant(ids)
    a, b = model(features)["mlm_logits"], model(changed)["mlm_logits"]
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5)

    seed = tf.constant([4, 2])
    first = model(features, training=True, dropout_seed=seed)["mlm_logits"]
    again = model(features, training=True, dropout_seed=seed)["mlm_logits"]
    other = model(features, training=True, dropout_seed=tf.constant([4, 3]))["mlm_logits"]
    np.testing.assert_array_equal(first.numpy(), again.numpy())
    assert not np.allclose(first.numpy(), other.numpy())
    assert not np.allclose(first.numpy(), a.numpy())


def test_quantizable_masks_give_the_same_outputs_for_integer_quantization():
    model = modeling.BertPretrainingModel(TINY, seed=3)
    features = _features()
    expected = model(features)
    with modeling.quantizable_masks(model):
        attention = [
            layer
            for layer in modeling._sublayers(model)
            if isinstance(layer, modeling._SelfAttention)
        ]
        assert len(attention) == TINY.num_hidden_layers
        assert all(layer.mask_in_range for layer in attention)
        got = model(features)
    for name in ("mlm_logits", "nsp_logits"):
        np.testing.assert_allclose(got[name].numpy(), expected[name].numpy(), atol=1e-5)
    assert not any(layer.mask_in_range for layer in attention)  # restored on the way out
    # What it is for: the softmax input spans the real scores plus a margin, not -10000.
    scores = tf.constant([[3.0, -2.0, 0.5, 7.0]])
    bias = tf.constant([[0.0, 0.0, -10000.0, -10000.0]])
    probs = modeling._masked_softmax_in_range(scores, bias)
    np.testing.assert_allclose(probs.numpy(), tf.nn.softmax(scores + bias).numpy(), atol=1e-7)
    assert probs.numpy()[0, 2:].max() < 1e-8


@pytest.mark.parametrize(
    "policy,dtype", [("mixed_bfloat16", tf.bfloat16), ("mixed_float16", tf.float16)]
)
def test_mixed_precision_keeps_float32_variables_and_logits(policy, dtype):
    model = modeling.BertPretrainingModel(TINY, seed=3, dtype=policy)
    reference = modeling.BertPretrainingModel(TINY, seed=3)
    outputs = model(_features())
    assert outputs["sequence_output"].dtype == dtype
    assert outputs["mlm_logits"].dtype == tf.float32
    assert outputs["nsp_logits"].dtype == tf.float32
    assert all(v.dtype == "float32" for v in model.weights)
    expected = reference(_features())["mlm_logits"].numpy()
    np.testing.assert_allclose(outputs["mlm_logits"].numpy(), expected, atol=0.15)
