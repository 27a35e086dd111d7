r"""Exports a fine-tuned classifier as a SavedModel that takes raw text.

  python -m trainer.export_classifier --model_dir=runs/sst2 --output=runs/sst2/saved_model

--model_dir is a `trainer.run_classifier` --output_dir: its latest checkpoint, its
classifier_config.json (task, labels, model config, max_seq_length, do_lower_case) and the vocab
it was trained with. The SavedModel's `serving_default` signature:

  single-sentence tasks   text: string [batch]
  sentence-pair tasks     text_a, text_b: string [batch]
  -> probabilities  float32 [batch, labels]  (softmax of the logits)
     label          string [batch]           (the task's label name, as GLUE writes it)
     (STS-B and other regression tasks: score float32 [batch])

Tokenization runs inside the graph (tensorflow-text; the same ids as the project's tokenizer
and run_classifier's features: Google's packing and pair truncation at max_seq_length), so a
server needs no Python tokenizer. Loading needs `import tensorflow_text` (its WordPiece op) and
nothing of this project's. The vocab travels inside as the asset `vocab_file`.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf
from absl import flags, logging

from contracts import command_line, metadata, storage
from trainer import run_classifier
from trainer.export_saved_model import Untracked, save_complete, text_tokenizer

FLAGS = flags.FLAGS


class ClassifierExport(tf.Module):
    """What is saved: the classifier's variables, its tokenizer and the serving function."""

    def __init__(self, model, *, tokenizer, vocab_file: str, labels, max_seq_length: int, pair):
        super().__init__(name="bert_classifier")
        self._model = Untracked(model)  # as in export_saved_model: variables tracked, not Keras
        self.model_variables = [v.value if hasattr(v, "value") else v for v in model.weights]
        self._tokenizer = tokenizer
        self._max_seq_length = max_seq_length
        self._regression = not labels
        self.labels = tf.constant(list(labels) or [""], tf.string)
        self.vocab_file = tf.saved_model.Asset(vocab_file)
        names = ("text_a", "text_b") if pair else ("text",)
        self.serve = tf.function(
            self._serve,
            input_signature=[tf.TensorSpec([None], tf.string, name=n) for n in names],
            autograph=False,
        )

    def _serve(self, text_a, text_b=None):
        packed = self._tokenizer.pack_tensor(text_a, text_b, max_seq_length=self._max_seq_length)
        logits = self._model.layer(
            {
                "input_ids": packed["input_word_ids"],
                "input_mask": packed["input_mask"],
                "segment_ids": packed["input_type_ids"],
            },
            training=False,
        )
        if self._regression:
            return {"score": logits[:, 0]}
        return {
            "probabilities": tf.nn.softmax(logits, axis=-1),
            "label": tf.gather(self.labels, tf.argmax(logits, axis=-1)),
        }


def export_classifier(model_dir: str, output: str) -> str:
    """Writes the SavedModel into `output` (which must not exist); returns it."""
    record = run_classifier.read_classifier_config(model_dir)
    vocab_file = storage.join(model_dir, run_classifier.VOCAB_FILE)
    if not storage.exists(vocab_file):
        raise FileNotFoundError(f"{vocab_file}: not found (written by run_classifier)")
    if storage.exists(output):
        raise FileExistsError(f"{output} exists: give a new folder")
    task = run_classifier.task_of(record)
    module = ClassifierExport(
        run_classifier.load_classifier(model_dir, record),
        tokenizer=text_tokenizer(vocab_file, **run_classifier.tokenization_of(record)),
        vocab_file=vocab_file,
        labels=record["labels"],
        max_seq_length=record["max_seq_length"],
        pair=task.train.text_b is not None,
    )
    signature = module.serve.get_concrete_function()
    save_complete(module, output, signatures={"serving_default": signature})
    metadata.write(
        output,
        command="trainer.export_classifier",
        flags={"model_dir": model_dir, "output": output},
        inputs=[vocab_file, storage.join(model_dir, run_classifier.CLASSIFIER_CONFIG_FILE)],
        outputs=sorted(
            storage.join(root, name) for root, names in storage.walk(output) for name in names
        ),
        counts={"parameters": module._model.layer.count_params()},
        extra={
            "task": record["task"],
            "labels": record["labels"],
            "inputs": sorted(signature.structured_input_signature[1]),
        },
    )
    logging.info("wrote %s", output)
    return output


def define_flags() -> None:
    flags.DEFINE_string("model_dir", None, "A trainer.run_classifier --output_dir.")
    flags.DEFINE_string("output", None, "The SavedModel folder to write (must not exist).")
    flags.mark_flags_as_required(["model_dir", "output"])


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments: {' '.join(argv[1:])}")
    export_classifier(FLAGS.model_dir, FLAGS.output)


if __name__ == "__main__":
    define_flags()
    command_line.run(main, program="trainer.export_classifier")
