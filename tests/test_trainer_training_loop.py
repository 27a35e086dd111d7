"""trainer.training_loop and trainer.run_pretraining, end to end on CPU with BERT-tiny."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf

from launch import sample_data
from pipeline import beam_options, create_pretraining_data
from tests import pretraining_fixtures
from tests.test_trainer_input_pipeline import PREDS, SEQ, VOCAB, write_metadata, write_records
from trainer import config as config_lib
from trainer import distribution, input_pipeline, optimization, profiling, training_loop

ROOT = Path(__file__).resolve().parent.parent


def read_scalars(folder) -> dict[str, list[tuple[int, float]]]:
    """{metric: [(step, value), ...]} from the TensorBoard event files in `folder`; each tag
    must be its metric in its group (training_loop.SUMMARY_GROUPS), e.g. "loss/mlm_loss"."""
    scalars: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(tf.io.gfile.glob(f"{folder}/events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == "text":
                    continue
                group, name = value.tag.split("/")
                assert training_loop.SUMMARY_GROUPS[name] == group, value.tag
                number = (
                    float(tf.make_ndarray(value.tensor))
                    if value.HasField("tensor")
                    else value.simple_value
                )
                scalars.setdefault(name, []).append((event.step, number))
    return scalars


def tiny_config(tmp_path, **overrides) -> config_lib.PretrainingConfig:
    values = dict(
        input_file=str(tmp_path / "records" / "train-*.tfrecord"),
        output_dir=str(tmp_path / "model"),
        bert=config_lib.model_config("tiny", vocab_size=VOCAB),
        max_seq_length=SEQ,
        max_predictions_per_seq=PREDS,
        train_batch_size=16,
        eval_batch_size=16,
        num_train_steps=6,
        num_warmup_steps=2,
        learning_rate=1e-3,
        steps_per_loop=3,
        save_checkpoints_steps=3,
        jit_compile=False,
    )
    values.update(overrides)
    return config_lib.PretrainingConfig(**values)


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> Path:
    """A folder `records/` with two training shards, an eval shard and metadata.json."""
    root = tmp_path_factory.mktemp("trainer")
    folder = root / "records"
    folder.mkdir()
    files = [folder / f"train-0000{i}-of-00002.tfrecord" for i in range(2)]
    for index, path in enumerate(files):
        write_records(path, 400, seed=index)
    write_records(folder / "eval-00000-of-00001.tfrecord", 64, seed=9)
    write_metadata(folder, files)
    return root


def test_bert_tiny_learns_and_writes_events_checkpoints_and_eval(records, tmp_path):
    config = tiny_config(
        records,
        output_dir=str(tmp_path / "model"),
        eval_input_file=str(records / "records" / "eval-*.tfrecord"),
        train_batch_size=32,
        num_train_steps=150,
        num_warmup_steps=10,
        learning_rate=3e-3,
        steps_per_loop=30,
        save_checkpoints_steps=100,
        do_eval=True,
    )
    metrics = training_loop.run(config, strategy=distribution.get_strategy("one_device"))
    model_dir = tmp_path / "model"
    train = read_scalars(model_dir / "train")
    for name in (
        "mlm_loss",
        "nsp_loss",
        "loss",
        "masked_lm_accuracy",
        "next_sentence_accuracy",
        "learning_rate",
        "examples_per_second",
        "tokens_per_second",
        "gradient_norm",
        "loss_scale",
        "input_wait_share",
    ):
        assert [step for step, _ in train[name]] == [30, 60, 90, 120, 150], name
    # In-memory records behind a prefetch: the input is never the bottleneck here.
    assert all(0.0 <= share < 0.5 for _, share in train["input_wait_share"])
    assert "eval_examples" not in train  # counts are not charted
    mlm = [value for _, value in train["mlm_loss"]]
    # It learns: from chance (ln 97 = 4.57) to below the records' unigram entropy bound.
    assert mlm[-1] < mlm[0] - 0.2 and mlm[-1] < math.log(VOCAB) - 0.8, mlm
    # The rate of the last update (step 149): 3e-3 * (1 - 149 / 150), Google's decay.
    assert train["learning_rate"][-1][1] == pytest.approx(2e-5, rel=1e-4)

    assert metrics["eval_examples"] == 64
    assert metrics["mlm_loss"] < math.log(VOCAB) - 0.4
    results = dict(
        line.split(" = ") for line in (model_dir / "eval_results.txt").read_text().splitlines()
    )
    assert results["global_step"] == "150"
    assert float(results["masked_lm_accuracy"]) == pytest.approx(
        metrics["masked_lm_accuracy"], rel=1e-5
    )
    evaluation = read_scalars(model_dir / "eval")
    assert evaluation["nsp_loss"] == [(150, pytest.approx(metrics["nsp_loss"], rel=1e-5))]

    # Checkpoints at multiples of save_checkpoints_steps and at the end; config beside them.
    assert tf.train.latest_checkpoint(str(model_dir)).endswith("ckpt-150")
    assert (model_dir / "ckpt-120.index").exists()  # the first loop end past 100
    saved = training_loop.config_from_json((model_dir / "config.json").read_text())
    assert saved == config
    assert config_lib.BertConfig.from_json_file(str(model_dir / "bert_config.json")) == config.bert


def test_profile_steps_trace_the_train_step_into_the_tensorboard_folder(records, tmp_path):
    config = tiny_config(records, output_dir=str(tmp_path / "model"), profile_steps="2,4")
    training_loop.run(config, strategy=distribution.get_strategy("one_device"))
    train = tmp_path / "model" / "train"
    # The loops of 3 steps are cut to end at START and STOP.
    assert [step for step, _ in read_scalars(train)["loss"]] == [2, 4, 6]
    traces = list(train.glob("plugins/profile/*/*.xplane.pb"))
    assert len(traces) == 1, traces
    trace = traces[0].read_bytes()
    assert b"train_step" in trace and b"IteratorGetNext" in trace
    # The run's config as a text card.
    texts = [
        value.tensor.string_val[0].decode()
        for path in train.glob("events.out.tfevents.*")
        for event in tf.compat.v1.train.summary_iterator(str(path))
        for value in event.summary.value
        if value.tag == "config"
    ]
    assert len(texts) == 1 and '"profile_steps": "2,4"' in texts[0]
    with pytest.raises(ValueError, match="--profile_steps='4,2': need 0 <= START < STOP"):
        tiny_config(records, profile_steps="4,2")
    # Loops cut to the window's edges; a run resumed past the window runs whole loops again.
    window = profiling.StepProfiler("2,4", logdir=str(tmp_path))
    assert [window.steps_to_run(step, 3) for step in (0, 2, 4, 9)] == [2, 2, 3, 3]


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("localhost", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@pytest.mark.slow  # two TensorFlow processes, ~40 s
def test_two_workers_train_together_and_only_the_chief_writes(records, tmp_path):
    model_dir = tmp_path / "model"
    cluster = {"worker": [f"localhost:{port}" for port in _free_ports(2)]}
    flags = [
        f"--input_file={records / 'records' / 'train-*.tfrecord'}",
        f"--eval_input_file={records / 'records' / 'eval-*.tfrecord'}",
        f"--output_dir={model_dir}",
        "--model_size=tiny",
        "--train_batch_size=8",
        "--eval_batch_size=8",
        "--num_train_steps=4",
        "--num_warmup_steps=1",
        "--steps_per_loop=2",
        "--save_checkpoints_steps=2",
        "--strategy=multi_worker",
        "--do_eval",
    ]
    processes = []
    for index in range(2):
        (tmp_path / f"tmp{index}").mkdir()
        environment = dict(
            os.environ,
            TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
            TMPDIR=str(tmp_path / f"tmp{index}"),  # where a worker's temporary folder goes
        )
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "trainer.run_pretraining", *flags],
                cwd=ROOT,
                env=environment,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    logs = []
    try:
        for process in processes:
            logs.append(process.communicate(timeout=300)[1])
    finally:
        for process in processes:
            process.kill()
    for process, log in zip(processes, logs, strict=True):
        assert process.returncode == 0, log[-3000:]
        assert "step 4/4" in log and "eval at step 4" in log, log[-3000:]
    # One writer: worker 0's checkpoints, events and results; worker 1 left nothing anywhere.
    assert sorted(p.name for p in model_dir.iterdir()) == [
        "bert_config.json",
        "checkpoint",
        "ckpt-2.data-00000-of-00001",
        "ckpt-2.index",
        "ckpt-4.data-00000-of-00001",
        "ckpt-4.index",
        "config.json",
        "eval",
        "eval_results.txt",
        "train",
    ]
    for run in ("train", "eval"):
        assert len(list((model_dir / run).glob("events.out.tfevents.*"))) == 1, run
    assert [step for step, _ in read_scalars(model_dir / "train")["loss"]] == [2, 4]
    assert not any((tmp_path / "tmp1").iterdir())  # worker 1's checkpoints, removed
    assert not any((tmp_path / "tmp0").iterdir())


def test_resumes_where_a_killed_run_stopped_with_the_same_learning_rate(records, tmp_path):
    model_dir = tmp_path / "model"
    flags = [
        f"--input_file={records / 'records' / 'train-*.tfrecord'}",
        f"--output_dir={model_dir}",
        "--model_size=tiny",  # vocab_size from the records' metadata.json
        f"--max_seq_length={SEQ}",
        f"--max_predictions_per_seq={PREDS}",
        "--train_batch_size=8",
        "--num_train_steps=100000",
        "--num_warmup_steps=10",
        "--learning_rate=1e-3",
        "--steps_per_loop=1",
        "--save_checkpoints_steps=3",
    ]
    process = subprocess.Popen(
        [sys.executable, "-m", "trainer.run_pretraining", *flags],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while not (model_dir / "ckpt-6.index").exists():
            assert process.poll() is None, process.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.2)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    latest = tf.train.latest_checkpoint(str(model_dir))
    killed_at = int(latest.rsplit("-", 1)[1])
    assert killed_at >= 6 and killed_at % 3 == 0

    config = tiny_config(
        records,
        output_dir=str(model_dir),
        train_batch_size=8,
        num_train_steps=killed_at + 2,
        num_warmup_steps=10,
        steps_per_loop=1,
        save_checkpoints_steps=3,
        jit_compile=None,
    )
    trainer = training_loop.Trainer(config, strategy=distribution.get_strategy("one_device"))
    assert training_loop.restore_or_initialize(trainer) == killed_at
    # Weights and optimiser slots come back as saved.
    reader = tf.train.load_checkpoint(latest)
    saved_slot = reader.get_tensor("optimizer/m/0/.ATTRIBUTES/VARIABLE_VALUE")
    np.testing.assert_array_equal(trainer.optimizer.m[0].numpy(), saved_slot)
    assert np.abs(saved_slot).sum() > 0
    # Every weight of the model, each transformer layer included, is in the checkpoint and
    # restored from it (Keras 3 keeps layers held in a list out of TF's object graph).
    saved = {
        name: reader.get_tensor(name)
        for name in reader.get_variable_to_shape_map()
        if name.startswith("model/")
    }
    assert any("/encoder/layer_1/" in name for name in saved)
    restored = tf.train.Checkpoint(model=trainer.model)
    model_keys = {
        name for name, _ in tf.train.list_variables(restored.write(str(tmp_path / "again")))
    }
    assert {name for name in model_keys if name.startswith("model/")} == set(saved)
    assert len(saved) == len(trainer.model.weights)
    after = tf.train.load_checkpoint(str(tmp_path / "again"))
    for name, array in saved.items():
        np.testing.assert_array_equal(after.get_tensor(name), array, err_msg=name)
    expected_rate = float(
        optimization.learning_rate(
            killed_at, peak_learning_rate=1e-3, num_train_steps=100000, num_warmup_steps=10
        )
    )
    assert float(trainer.learning_rate(trainer.step)) == pytest.approx(
        float(
            optimization.learning_rate(
                killed_at,
                peak_learning_rate=1e-3,
                num_train_steps=killed_at + 2,
                num_warmup_steps=10,
            )
        )
    )
    # Same schedule as the killed run (same num_train_steps): the same learning rate.
    resumed = training_loop.Trainer(
        dataclasses.replace(config, num_train_steps=100000),
        strategy=distribution.get_strategy("one_device"),
    )
    training_loop.restore_or_initialize(resumed)
    assert float(resumed.learning_rate(resumed.step)) == pytest.approx(expected_rate, rel=1e-6)
    logged = dict(read_scalars(model_dir / "train")["learning_rate"])
    assert logged[killed_at] == pytest.approx(
        float(
            optimization.learning_rate(
                killed_at - 1, peak_learning_rate=1e-3, num_train_steps=100000, num_warmup_steps=10
            )
        ),
        rel=1e-6,
    )

    training_loop.train(trainer, start_step=killed_at)
    assert int(trainer.step.numpy()) == killed_at + 2
    assert tf.train.latest_checkpoint(str(model_dir)).endswith(f"ckpt-{killed_at + 2}")


_REPLICAS_SCRIPT = textwrap.dedent(
    """
    import dataclasses, sys
    import tensorflow as tf

    # Two logical CPU devices: set before TensorFlow initialises its devices.
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from trainer import training_loop

    base = training_loop.config_from_json(sys.argv[1])
    runs = {
        "one": (tf.distribute.OneDeviceStrategy("/cpu:0"), 1),
        "two": (tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]), 1),
        "two_accumulated": (tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]), 2),
    }
    for name, (strategy, micro_batches) in runs.items():
        config = dataclasses.replace(
            base,
            output_dir=f"{base.output_dir}/{name}",
            gradient_accumulation_steps=micro_batches,
        )
        training_loop.run(config, strategy=strategy)

    # The eval batch must split over the replicas only when the run evaluates.
    two = runs["two"][0]
    odd_eval = dataclasses.replace(base, output_dir=f"{base.output_dir}/odd", eval_batch_size=3)
    training_loop.Trainer(odd_eval, strategy=two)
    try:
        training_loop.Trainer(dataclasses.replace(odd_eval, do_eval=True), strategy=two)
    except ValueError as error:
        assert "eval_batch_size 3 does not split over 2 replica(s)" in str(error), error
    else:
        raise AssertionError("an eval batch of 3 over 2 replicas was accepted")
    """
)


@pytest.mark.slow  # three runs in a fresh TensorFlow process
def test_one_and_two_replicas_give_the_same_losses(records, tmp_path):
    config = tiny_config(
        records,
        output_dir=str(tmp_path),
        # No dropout: the replicas draw their masks per replica.
        bert=config_lib.model_config(
            "tiny", vocab_size=VOCAB, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0
        ),
        num_train_steps=5,
        steps_per_loop=1,
        save_checkpoints_steps=100,
        train_batch_size=16,
    )
    result = subprocess.run(
        [sys.executable, "-c", _REPLICAS_SCRIPT, config.to_json_string()],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    losses = {
        name: read_scalars(tmp_path / name / "train") for name in ("one", "two", "two_accumulated")
    }
    for metric in ("mlm_loss", "nsp_loss", "masked_lm_accuracy"):
        one = np.array([v for _, v in losses["one"][metric]])
        assert len(one) == 5
        for other in ("two", "two_accumulated"):
            np.testing.assert_allclose(
                [v for _, v in losses[other][metric]], one, rtol=1e-3, err_msg=f"{other} {metric}"
            )
    # The runs trained (the loss moved), so equal numbers are not equal initial numbers.
    assert losses["one"]["loss"][-1][1] != losses["one"]["loss"][0][1]


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_steps_run(records, tmp_path, precision):
    config = tiny_config(records, output_dir=str(tmp_path), mixed_precision=precision)
    trainer = training_loop.Trainer(config, strategy=distribution.get_strategy("one_device"))
    policy = {"bf16": "mixed_bfloat16", "fp16": "mixed_float16"}[precision]
    assert trainer.model.dtype_policy.name == policy
    metrics = training_loop.train(trainer, start_step=0)
    assert int(trainer.step.numpy()) == 6
    assert math.isfinite(metrics["loss"]) and metrics["skipped_steps"] == 0
    scalars = read_scalars(tmp_path / "train")
    expected_scale = 2.0**15 if precision == "fp16" else 1.0
    assert scalars["loss_scale"][-1][1] == expected_scale


def test_persistent_non_finite_losses_stop_the_run_without_touching_the_weights(tmp_path):
    folder = tmp_path / "records"
    folder.mkdir()
    write_records(folder / "train-00000-of-00001.tfrecord", 64, weight=float("nan"))
    config = tiny_config(
        tmp_path,
        mixed_precision="fp16",
        steps_per_loop=1,
        max_consecutive_non_finite_steps=3,
    )
    trainer = training_loop.Trainer(config, strategy=distribution.get_strategy("one_device"))
    before = [v.numpy() for v in trainer.model.weights]
    with pytest.raises(training_loop.NonFiniteLossError, match="3 updates in a row had non-finite"):
        training_loop.train(trainer, start_step=0)
    assert int(trainer.step.numpy()) == 0
    assert float(trainer.loss_scale.scale.numpy()) == 2.0**15 / 8  # halved on every skip
    for variable, old in zip(trainer.model.weights, before, strict=True):
        np.testing.assert_array_equal(variable.numpy(), old)
    skipped = read_scalars(tmp_path / "model" / "train")["skipped_steps"]
    assert [value for _, value in skipped] == [1.0, 1.0, 1.0]


@pytest.mark.slow  # the local GCS server answers each request in tens of milliseconds
def test_gcs_input_and_output(records, gcs_dir):
    for name in tf.io.gfile.listdir(str(records / "records")):
        tf.io.gfile.copy(str(records / "records" / name), f"{gcs_dir}/records/{name}")
    config = tiny_config(
        records,
        input_file=f"{gcs_dir}/records/train-*.tfrecord",
        eval_input_file=f"{gcs_dir}/records/eval-*.tfrecord",
        output_dir=f"{gcs_dir}/model",
        num_train_steps=2,
        steps_per_loop=2,
        save_checkpoints_steps=2,
        do_eval=True,
    )
    metrics = training_loop.run(config, strategy=distribution.get_strategy("one_device"))
    assert math.isfinite(metrics["mlm_loss"])
    names = set(tf.io.gfile.listdir(f"{gcs_dir}/model"))
    assert {"checkpoint", "ckpt-2.index", "eval_results.txt", "config.json"} <= names
    assert read_scalars(f"{gcs_dir}/model/train")["mlm_loss"][-1][0] == 2
    # A second run in the same folder resumes from the gs:// checkpoint.
    trainer = training_loop.Trainer(config, strategy=distribution.get_strategy("one_device"))
    assert training_loop.restore_or_initialize(trainer) == 2


def _mlm_loss_falls(config) -> list[float]:
    training_loop.run(config, strategy=distribution.get_strategy("one_device"))
    return [value for _, value in read_scalars(Path(config.output_dir) / "train")["mlm_loss"]]


@pytest.mark.slow  # ~25 s: runs the reference script, then trains
def test_trains_on_records_from_googles_reference_script(tmp_path, data_dir):
    config = config_lib.PretrainingConfig(
        input_file=str(data_dir / sample_data.GOOGLE_RECORDS),
        output_dir=str(tmp_path / "model"),
        bert=config_lib.model_config("tiny"),  # bert-base-uncased vocab: 30522
        max_seq_length=128,
        max_predictions_per_seq=20,
        train_batch_size=16,
        num_train_steps=40,
        num_warmup_steps=4,
        learning_rate=2e-3,
        steps_per_loop=5,
        jit_compile=False,
    )
    mlm = _mlm_loss_falls(config)
    # The first 5 steps start near chance, ln(30522) = 10.3.
    assert mlm[0] > 9.5 and mlm[-1] < mlm[0] - 2.0, mlm


def test_trains_on_records_from_create_pretraining_data(tmp_path):
    shards = pretraining_fixtures.write_book_shards(
        tmp_path / "text", books=pretraining_fixtures.real_books()[:1]
    )
    records_dir = tmp_path / "records"
    pipeline = beam.Pipeline(options=beam_options.pipeline_options([]))
    create_pretraining_data.build_pipeline(
        pipeline,
        create_pretraining_data.CreatePretrainingDataConfig(
            input_file=",".join(str(p) for p in shards),
            output_dir=str(records_dir),
            vocab_file=str(pretraining_fixtures.VOCAB),
            max_seq_length=64,
            max_predictions_per_seq=10,
            dupe_factor=1,
            num_shards=2,
        ),
    )
    pipeline.run().wait_until_finish()
    config = config_lib.PretrainingConfig(
        input_file=str(records_dir / "train-*.tfrecord"),
        output_dir=str(tmp_path / "model"),
        bert=config_lib.model_config("tiny"),
        max_seq_length=64,
        max_predictions_per_seq=10,
        train_batch_size=16,
        num_train_steps=40,
        num_warmup_steps=4,
        learning_rate=2e-3,
        steps_per_loop=10,
        jit_compile=False,
    )
    mlm = _mlm_loss_falls(config)
    assert mlm[-1] < mlm[0] - 2.0, mlm
    # The records' metadata.json is checked: a different max_seq_length stops the run.
    with pytest.raises(
        ValueError, match=r"metadata\.json: the records were made with max_seq_length=64"
    ):
        training_loop.run(
            dataclasses.replace(config, max_seq_length=128, output_dir=str(tmp_path / "other")),
            strategy=distribution.get_strategy("one_device"),
        )


def test_flags_take_open_shapes_and_vocab_size_from_the_records_metadata(records):
    from absl import flags

    from trainer import run_pretraining

    pattern = str(records / "records" / "train-*.tfrecord")
    values = flags.FlagValues()
    run_pretraining.define_flags(values)
    values(["run_pretraining", f"--input_file={pattern}", "--output_dir=/tmp/x"])
    config = run_pretraining.config_from_flags(values)
    assert (config.max_seq_length, config.max_predictions_per_seq) == (SEQ, PREDS)
    assert config.bert.vocab_size == VOCAB and config.bert.num_hidden_layers == 12
    assert config.jit_compile is None and config.strategy == "auto"
    values.unparse_flags()
    values(
        [
            "run_pretraining",
            f"--input_file={pattern}",
            "--output_dir=/tmp/x",
            "--model_size=tiny",
            "--max_seq_length=64",
            "--tpu=pod-v3-32",
            "--nojit_compile",
        ]
    )
    config = run_pretraining.config_from_flags(values)
    assert config.max_seq_length == 64  # given: checked against metadata.json at start
    assert config.bert.hidden_size == 128 and config.jit_compile is False
    assert (config.strategy, config.tpu) == ("tpu", "pod-v3-32")


def test_a_truncated_record_file_stops_training_with_its_name_and_offset(tmp_path):
    folder = tmp_path / "records"
    folder.mkdir()
    good, cut = folder / "train-00000-of-00002.tfrecord", folder / "train-00001-of-00002.tfrecord"
    write_records(good, 64)
    write_records(cut, 64, seed=1)
    data = cut.read_bytes()
    record_bytes = len(data) // 64
    cut.write_bytes(data[: 10 * record_bytes + record_bytes // 2])  # 10 records and a half
    # The shuffle buffer reads every file before the first step, so the damage stops step 1.
    config = tiny_config(tmp_path, num_train_steps=30, steps_per_loop=3, shuffle_buffer_size=4096)
    with pytest.raises(input_pipeline.DamagedRecordsError) as caught:
        training_loop.run(config, strategy=distribution.get_strategy("one_device"))
    message = str(caught.value)
    assert f"{cut}: a truncated or corrupt TFRecord at byte {10 * record_bytes}" in message
    assert "training stopped at step 0" in message and "pipeline.create_pretraining_data" in message
    assert "truncated record at" in message and "{{" not in message
    assert input_pipeline.find_damaged_record([str(good)]) is None
    # Cut inside a record's header, TensorFlow's reader sees a clean end: found all the same.
    cut.write_bytes(data[: 10 * record_bytes + 7])
    assert input_pipeline.find_damaged_record([str(good), str(cut)]) == (
        str(cut),
        10 * record_bytes,
        f"at byte {10 * record_bytes}: 7 stray bytes",
    )
