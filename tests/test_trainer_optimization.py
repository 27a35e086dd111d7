"""trainer.optimization against NumPy transcriptions of google-research/bert's optimizer and
the LAMB paper."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from trainer import optimization


def _google_learning_rate(step, *, peak, total, warmup, end=0.0, power=1.0):
    """google-research/bert optimization.create_optimizer, in NumPy."""
    decayed = (peak - end) * (1 - min(step, total) / total) ** power + end
    if warmup and step < warmup:
        return peak * step / warmup
    return decayed


@pytest.mark.parametrize("power,end", [(1.0, 0.0), (2.0, 1e-5)])
def test_learning_rate_warms_up_then_decays_like_google_bert(power, end):
    kwargs = dict(peak_learning_rate=1e-3, num_train_steps=100, num_warmup_steps=10)
    for step in (0, 1, 5, 9, 10, 11, 50, 99, 100, 150):
        got = float(
            optimization.learning_rate(step, **kwargs, end_learning_rate=end, decay_power=power)
        )
        want = _google_learning_rate(step, peak=1e-3, total=100, warmup=10, end=end, power=power)
        assert got == pytest.approx(want, rel=1e-5, abs=1e-12), step
    assert float(optimization.learning_rate(0, **kwargs)) == 0.0
    assert float(optimization.learning_rate(100, **kwargs)) == pytest.approx(0.0, abs=1e-12)


def _variables():
    rng = np.random.default_rng(0)
    return [
        tf.Variable(rng.normal(size=(3, 2)).astype(np.float32), name="layer_0/dense/kernel"),
        tf.Variable(rng.normal(size=(2,)).astype(np.float32), name="layer_0/dense/bias"),
        tf.Variable(rng.normal(size=(2,)).astype(np.float32), name="layer_0/LayerNorm/gamma"),
    ]


def _gradients(step):
    rng = np.random.default_rng(100 + step)
    return [rng.normal(size=s).astype(np.float32) for s in ((3, 2), (2,), (2,))]


def test_weight_decay_skips_layer_norm_and_bias():
    optimizer = optimization.AdamW(_variables())
    assert optimizer.decays() == {
        "layer_0/dense/kernel:0": True,
        "layer_0/dense/bias:0": False,
        "layer_0/LayerNorm/gamma:0": False,
    }


def test_adamw_matches_google_adam_weight_decay_optimizer():
    variables = _variables()
    expected = [v.numpy().astype(np.float64) for v in variables]
    m = [np.zeros_like(w) for w in expected]
    v = [np.zeros_like(w) for w in expected]
    optimizer = optimization.AdamW(variables, weight_decay_rate=0.01)
    for step in range(3):
        gradients = _gradients(step)
        lr = 0.1 * (step + 1)
        optimizer.apply([tf.constant(g) for g in gradients], learning_rate=lr, step=step)
        for i, g in enumerate(gradients):
            # AdamWeightDecayOptimizer.apply_gradients: no bias correction, decay added.
            m[i] = 0.9 * m[i] + 0.1 * g
            v[i] = 0.999 * v[i] + 0.001 * g * g
            update = m[i] / (np.sqrt(v[i]) + 1e-6)
            if i == 0:
                update += 0.01 * expected[i]
            expected[i] = expected[i] - lr * update
    for variable, want in zip(variables, expected, strict=True):
        np.testing.assert_allclose(variable.numpy(), want, rtol=1e-5, atol=1e-6)


def test_lamb_scales_by_trust_ratio_except_excluded_variables():
    variables = _variables()
    expected = [v.numpy().astype(np.float64) for v in variables]
    m = [np.zeros_like(w) for w in expected]
    v = [np.zeros_like(w) for w in expected]
    optimizer = optimization.Lamb(variables, weight_decay_rate=0.01)
    for step in range(3):
        gradients = _gradients(step)
        optimizer.apply([tf.constant(g) for g in gradients], learning_rate=0.01, step=step)
        for i, g in enumerate(gradients):
            m[i] = 0.9 * m[i] + 0.1 * g
            v[i] = 0.999 * v[i] + 0.001 * g * g
            m_hat = m[i] / (1 - 0.9 ** (step + 1))
            v_hat = v[i] / (1 - 0.999 ** (step + 1))
            update = m_hat / (np.sqrt(v_hat) + 1e-6)
            ratio = 1.0
            if i == 0:
                update = update + 0.01 * expected[i]
                ratio = np.linalg.norm(expected[i]) / np.linalg.norm(update)
            expected[i] = expected[i] - 0.01 * ratio * update
    for variable, want in zip(variables, expected, strict=True):
        np.testing.assert_allclose(variable.numpy(), want, rtol=1e-5, atol=1e-6)


def test_skipped_update_changes_nothing():
    variables = _variables()
    before = [v.numpy() for v in variables]
    optimizer = optimization.AdamW(variables)
    values = optimizer.new_values(
        [tf.constant(g) for g in _gradients(0)], learning_rate=0.1, step=0, apply=False
    )
    optimizer.assign(values)
    for variable, old in zip(variables, before, strict=True):
        np.testing.assert_array_equal(variable.numpy(), old)
    assert all(not slot.numpy().any() for slot in optimizer.m + optimizer.v)


def test_dynamic_loss_scale_halves_on_overflow_and_grows_after_good_steps():
    scale = optimization.LossScale(initial_scale=8.0, growth_steps=3)
    scale.update(tf.constant(False))
    assert float(scale.scale.numpy()) == 4.0
    for _ in range(2):
        scale.update(tf.constant(True))
    assert float(scale.scale.numpy()) == 4.0
    scale.update(tf.constant(True))
    assert float(scale.scale.numpy()) == 8.0
    assert int(scale.good_steps.numpy()) == 0
    for _ in range(10):
        scale.update(tf.constant(False))
    assert float(scale.scale.numpy()) == 1.0  # never below 1

    static = optimization.LossScale(initial_scale=8.0, dynamic=False)
    static.update(tf.constant(False))
    assert float(static.scale.numpy()) == 1.0


def test_unknown_optimizer_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown optimizer 'sgd'; choose one of adamw, lamb"):
        optimization.create_optimizer(
            "sgd", _variables(), weight_decay_rate=0.0, beta_1=0.9, beta_2=0.999, epsilon=1e-6
        )
