"""trainer.export_classifier: a fine-tuned run folder to a SavedModel that takes raw text and
answers, in a process that imports only tensorflow and tensorflow_text, as run_classifier does."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import UNCASED_VOCAB
from tokenizer.bert_tokenizer import BertTokenizer
from trainer import classifier_features, distribution, export_classifier, glue, run_classifier
from trainer import config as config_lib

# Loads the SavedModel with nothing of ours, answers for the texts given, and says which of our
# packages got imported (none may be).
_SERVE = """
import json, sys
import tensorflow as tf
import tensorflow_text  # noqa: F401 (the WordPiece op)
model = tf.saved_model.load(sys.argv[1])
serve = model.signatures["serving_default"]
inputs = json.loads(sys.argv[2])
outputs = serve(**{name: tf.constant(texts) for name, texts in inputs.items()})
print(json.dumps({
    "inputs": sorted(serve.structured_input_signature[1]),
    "outputs": {
        name: [x.decode() for x in value.numpy()] if value.dtype == tf.string
        else value.numpy().tolist()
        for name, value in outputs.items()
    },
    "ours": sorted(
        m for m in sys.modules if m.split(".")[0] in ("trainer", "tokenizer", "contracts")
    ),
}))
"""


def _fine_tune(tmp_path, data_dir, task_name):
    bert = config_lib.model_config("tiny", vocab_size=30522)
    config_file = tmp_path / "bert_config.json"
    config_file.write_text(bert.to_json_string())
    config = run_classifier.ClassifierConfig(
        task_name=task_name,
        data_dir=str(data_dir),
        output_dir=str(tmp_path / "run"),
        bert_config_file=str(config_file),
        vocab_file=UNCASED_VOCAB,
        max_seq_length=16,
        train_batch_size=2,
        num_train_epochs=2.0,
        learning_rate=1e-3,
        do_train=True,
        strategy="one_device",
    )
    run_classifier.run(config, strategy=distribution.get_strategy("one_device"))
    return config


def _served(saved_model, inputs: dict, cwd) -> dict:
    completed = subprocess.run(
        [sys.executable, "-c", _SERVE, str(saved_model), json.dumps(inputs)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.splitlines()[-1])


@pytest.mark.parametrize("task_name", ["MRPC", "SST-2"])
def test_exported_model_answers_raw_text_as_run_classifier_predicts(
    tmp_path, fixtures_dir, task_name
):
    data_dir = fixtures_dir / "glue" / task_name
    config = _fine_tune(tmp_path, data_dir, task_name)
    output = tmp_path / "saved_model"
    export_classifier.export_classifier(config.output_dir, str(output))
    assert (output / "metadata.json").exists()

    task = glue.TASKS[task_name]
    examples = glue.read_examples(task, str(data_dir / "dev.tsv"), split="dev")
    tokenizer = BertTokenizer(UNCASED_VOCAB)
    features = classifier_features.encode(
        examples, tokenizer, max_seq_length=16, labels=task.labels
    )
    record = json.loads((tmp_path / "run" / run_classifier.CLASSIFIER_CONFIG_FILE).read_text())
    model = run_classifier.load_classifier(config.output_dir, record)
    logits = run_classifier.predict(model, features, batch_size=8)
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)

    if task_name == "MRPC":
        inputs = {"text_a": [e.text_a for e in examples], "text_b": [e.text_b for e in examples]}
    else:
        inputs = {"text": [e.text_a for e in examples]}
    served = _served(output, inputs, cwd=tmp_path)
    assert served["ours"] == []
    assert served["inputs"] == sorted(inputs)
    np.testing.assert_allclose(served["outputs"]["probabilities"], expected, atol=1e-5)
    assert served["outputs"]["label"] == [task.labels[i] for i in np.argmax(logits, axis=1)]


def test_a_folder_that_is_not_a_run_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="classifier_config.json: not found"):
        export_classifier.export_classifier(str(tmp_path), str(tmp_path / "out"))
