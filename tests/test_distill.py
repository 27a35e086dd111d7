"""trainer.distill: the loss, the layer map, the students, and a run_classifier-shaped output."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import tensorflow as tf

from trainer import classifier, distill, distribution, modeling, quantize, run_classifier
from trainer import config as config_lib


def _no_dropout(config):
    return dataclasses.replace(config, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def _inputs():
    ids = np.array([[101, 2204, 2143, 102, 0, 0], [101, 2919, 2143, 999, 102, 0]], np.int32)
    return {
        "input_ids": tf.constant(ids),
        "input_mask": tf.constant((ids > 0).astype(np.int32)),
        "segment_ids": tf.zeros_like(ids),
    }


def test_layer_map_is_tinyberts_uniform_mapping():
    assert distill.layer_map(3, 12) == [0, 4, 8, 12]
    assert distill.layer_map(2, 2) == [0, 1, 2]
    assert distill.layer_map(1, 2) == [0, 2]
    with pytest.raises(ValueError, match="more than the teacher's 2"):
        distill.layer_map(3, 2)


def _classifier(config, seed):
    """A random classifier whose logits are far apart (a fresh head's are all near 0)."""
    model = classifier.BertClassifier(config, num_labels=2, seed=seed)
    kernel = np.random.default_rng(seed).normal(0, 1, model.classifier.kernel.shape)
    model.classifier.kernel.assign(kernel.astype(np.float32))
    return model


@pytest.fixture(scope="module")
def teacher():
    return _classifier(_no_dropout(config_lib.model_config("tiny", vocab_size=30522)), 1)


def _objective(teacher, **flags):
    config = distill.DistillConfig(teacher_dir="unused", output_dir="unused", **flags)
    return distill.Distillation(
        config, teacher, student_layers=config.student_layers or teacher.config.num_hidden_layers
    )


def test_a_student_equal_to_its_teacher_has_no_soft_or_hidden_loss(teacher):
    student = classifier.BertClassifier(teacher.config, num_labels=2, seed=2)
    objective = _objective(teacher, student_layers=2, alpha=1.0, hidden_weight=1.0)
    objective.initialize(student)  # all of the teacher's layers: a copy
    labels = tf.constant([1, 0])
    loss = objective.loss(student, _inputs(), labels, regression=False, dropout_seed=None)
    np.testing.assert_allclose(loss.numpy(), [0.0, 0.0], atol=1e-5)

    # Another student: both terms are positive, and alpha weighs the soft one against the labels.
    other = _classifier(teacher.config, 3)
    soft = _objective(teacher, student_layers=2, alpha=1.0).loss(
        other, _inputs(), labels, regression=False, dropout_seed=None
    )
    hard = _objective(teacher, student_layers=2, alpha=0.0).loss(
        other, _inputs(), labels, regression=False, dropout_seed=None
    )
    mixed = _objective(teacher, student_layers=2, alpha=0.25).loss(
        other, _inputs(), labels, regression=False, dropout_seed=None
    )
    assert np.all(soft.numpy() > 0) and np.all(hard.numpy() > 0)
    np.testing.assert_allclose(mixed, 0.25 * soft + 0.75 * hard, rtol=1e-5)
    expected_hard = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=labels, logits=other(_inputs())
    )
    np.testing.assert_allclose(hard, expected_hard, rtol=1e-5)


def test_soft_loss_is_the_temperature_scaled_kl_divergence(teacher):
    other = _classifier(teacher.config, 3)
    temperature = 3.0
    loss = _objective(teacher, student_layers=2, alpha=1.0, temperature=temperature).loss(
        other, _inputs(), tf.constant([1, 0]), regression=False, dropout_seed=None
    )
    p = tf.nn.softmax(teacher(_inputs()) / temperature).numpy()
    q = tf.nn.softmax(other(_inputs()) / temperature).numpy()
    kl = np.sum(p * np.log(p / q), axis=-1) * temperature**2
    np.testing.assert_allclose(loss, kl, rtol=1e-4)


def test_a_narrower_student_gets_one_projection_per_mapped_state(teacher):
    narrow = dataclasses.replace(teacher.config, hidden_size=64, intermediate_size=256)
    student = classifier.BertClassifier(_no_dropout(narrow), num_labels=2, seed=2)
    objective = _objective(teacher, student_config_file="x", hidden_weight=1.0)
    objective = distill.Distillation(objective.config, teacher, student_layers=1)
    objective.build(student)
    assert [tuple(v.shape) for v in objective.variables] == [(64, 128), (64, 128)]
    assert objective.record()["distillation"]["layer_map"] == [0, 2]
    hidden = objective._hidden_loss(
        student.bert(_inputs())["hidden_states"],
        teacher.bert(_inputs())["hidden_states"],
        _inputs()["input_mask"],
    )
    assert hidden.shape == (2,) and np.all(hidden.numpy() > 0)


def _distill(tmp_path, teacher_dir, **flags):
    config = distill.DistillConfig(
        teacher_dir=str(teacher_dir),
        output_dir=str(tmp_path / "student"),
        train_batch_size=8,
        strategy="one_device",
        **flags,
    )
    return config, distill.distill(config, strategy=distribution.get_strategy("one_device"))


def test_the_first_k_layers_of_the_teacher_start_the_student(tmp_path, tiny_sst2_run):
    # Learning rate 0: the student is exactly its initialisation.
    config, results = _distill(
        tmp_path, tiny_sst2_run, student_layers=1, learning_rate=0.0, num_train_epochs=1.0
    )
    record = run_classifier.read_classifier_config(config.output_dir)
    assert record["bert"]["num_hidden_layers"] == 1
    assert record["task"] == "SST-2" and record["distillation"]["layer_map"] == [0, 2]
    assert results["split"] == "dev" and results["examples"] == 40
    assert json.loads((tmp_path / "student" / "eval_results.json").read_text()) == results

    teacher_record = run_classifier.read_classifier_config(str(tiny_sst2_run))
    teacher = run_classifier.load_classifier(str(tiny_sst2_run), teacher_record)
    student = run_classifier.load_classifier(config.output_dir, record)
    teacher_names = modeling.google_variable_names(teacher.bert)
    student_names = modeling.google_variable_names(student.bert)
    assert not any("layer_1" in name for name in student_names)
    for name, variable in student_names.items():
        np.testing.assert_array_equal(variable.numpy(), teacher_names[name].numpy())
    np.testing.assert_array_equal(student.classifier.kernel.numpy(), teacher.classifier.kernel)


def test_a_distilled_student_learns_its_teacher_and_quantize_takes_it(tmp_path, tiny_sst2_run):
    student_bert = dataclasses.replace(
        config_lib.model_config("tiny", vocab_size=30522),
        num_hidden_layers=1,
        hidden_size=64,
        intermediate_size=256,
        num_attention_heads=2,
    )
    (tmp_path / "student_config.json").write_text(student_bert.to_json_string())
    config, _ = _distill(
        tmp_path,
        tiny_sst2_run,
        student_config_file=str(tmp_path / "student_config.json"),
        alpha=1.0,
        hidden_weight=0.1,
        learning_rate=1e-3,
        num_train_epochs=4.0,
    )
    record = run_classifier.read_classifier_config(config.output_dir)
    _, _, dev = run_classifier.load_split(config.output_dir, record, "dev")
    teacher_record = run_classifier.read_classifier_config(str(tiny_sst2_run))
    teacher = run_classifier.load_classifier(str(tiny_sst2_run), teacher_record)
    target = tf.nn.softmax(run_classifier.predict(teacher, dev, batch_size=8)).numpy()

    def kl_to_teacher(model):
        q = tf.nn.softmax(run_classifier.predict(model, dev, batch_size=8)).numpy()
        return float(np.mean(np.sum(target * np.log(target / q), axis=-1)))

    untrained = classifier.BertClassifier(student_bert, num_labels=2, seed=config.seed)
    trained = run_classifier.load_classifier(config.output_dir, record)
    assert kl_to_teacher(trained) < 0.5 * kl_to_teacher(untrained)

    report = quantize.quantize(
        config.output_dir, str(tmp_path / "lite"), mode="float32", latency_runs=3
    )
    assert report["dev_examples"] == 40


def test_refusals(tmp_path, tiny_sst2_run):
    with pytest.raises(ValueError, match="say what the student is"):
        _distill(tmp_path, tiny_sst2_run)
    with pytest.raises(ValueError, match="--student_layers=3: the teacher has 2 layers"):
        _distill(tmp_path, tiny_sst2_run, student_layers=3)
    with pytest.raises(ValueError, match="give no other student"):
        _distill(tmp_path, tiny_sst2_run, student_layers=1, student_config_file="x.json")
    other = tmp_path / "other_checkpoint"
    other.mkdir()
    (other / "vocab.txt").write_text("[PAD]\n[UNK]\n")
    (other / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="differs from the teacher's vocab"):
        _distill(tmp_path, tiny_sst2_run, student_init_checkpoint=str(other))
