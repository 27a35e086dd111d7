r"""Exports a BERT encoder as a TensorFlow SavedModel in TF Hub's BERT convention.

  python -m trainer.export_saved_model --checkpoint=data/model --output=data/saved_model \
      --vocab_file=data/vocab.txt --do_lower_case

The checkpoint may be in any format of trainer/checkpoints.py (this trainer's,
google-research/bert's, Hugging Face's); only the encoder and pooler are exported, in float32.

Signatures:
  serving_default  input_word_ids, input_mask, input_type_ids: int32 [batch, seq]
                   -> sequence_output float32 [batch, seq, hidden],
                      pooled_output float32 [batch, hidden]
                   Any seq up to the model's max_position_embeddings (longer: an
                   InvalidArgumentError that says so).
  serve_text       (with --vocab_file) text: string [batch], one segment per example
                   -> the same outputs, plus input_word_ids / input_mask / input_type_ids as
                      tokenized: [CLS] pieces [SEP], cut to --max_seq_length, padded to the
                      longest in the batch. Loading it needs `import tensorflow_text` (its
                      WordPiece op).
The loaded object is also callable Hub-style: `model(dict(input_word_ids=..., input_mask=...,
input_type_ids=...))`. With a vocab, the SavedModel carries it as the asset `vocab_file` and the
variable `do_lower_case`, as TF Hub's BERT encoders do.
"""

from __future__ import annotations

import tensorflow as tf
from absl import app, flags, logging

from contracts import command_line, metadata, storage
from tokenizer import basic_tokenization
from trainer import checkpoints, modeling
from trainer.config import BertConfig

FLAGS = flags.FLAGS

TEXT_SIGNATURE = "serve_text"
_INPUT_NAMES = ("input_word_ids", "input_mask", "input_type_ids")


class Untracked:
    """Holds an object out of TensorFlow's automatic dependency tracking."""

    def __init__(self, layer):
        self.layer = layer


def text_tokenizer(vocab_file: str, *, do_lower_case: bool, strip_accents: bool | None = None):
    """The in-graph tokenizer, imported here: only an export with a vocab needs tensorflow-text
    (which a TPU or GPU VM the launchers set up does not have).

    Raises:
      ModuleNotFoundError: tensorflow-text is not installed; the message says what to do.
    """
    try:
        from tokenizer.bert_tokenizer import BertTokenizer
    except ModuleNotFoundError as error:
        if error.name != "tensorflow_text":
            raise
        raise ModuleNotFoundError(
            f"tokenizing inside the SavedModel (--vocab_file) needs tensorflow-text: "
            f"pip install 'tensorflow-text~={tf.__version__.rsplit('.', 1)[0]}.0'"
        ) from error
    return BertTokenizer(vocab_file, do_lower_case=do_lower_case, strip_accents=strip_accents)


class BertEncoderExport(tf.Module):
    """The tf.Module that is saved: the encoder, its signatures and the optional tokenizer.

    Args:
      encoder: a built float32 BertEncoder holding the weights.
      tokenizer: when given, a `serve_text` function that tokenizes inside the graph.
      vocab_file: the tokenizer's vocab, stored as an asset.
      max_seq_length: tokens per example in `serve_text`, [CLS] and [SEP] included.
    """

    def __init__(
        self,
        encoder: modeling.BertEncoder,
        *,
        tokenizer=None,  # a tokenizer.BertTokenizer
        vocab_file: str | None = None,
        max_seq_length: int = 128,
    ):
        super().__init__(name="bert_encoder")
        # The Keras layer itself is kept out of the saved object graph (Keras 3 lists hide the
        # transformer layers from it, and walking Keras objects makes saving several times
        # slower); its TensorFlow variables, which the traced functions capture, are tracked.
        self._encoder = Untracked(encoder)
        self.variables_by_name = {
            name: variable.value
            for name, variable in modeling.google_variable_names(encoder).items()
        }
        self._max_positions = encoder.config.max_position_embeddings
        ids_spec = [tf.TensorSpec([None, None], tf.int32, name=name) for name in _INPUT_NAMES]
        # No autograph: the functions have no Python control flow to convert.
        self.serve = tf.function(self._encode, input_signature=ids_spec, autograph=False)
        self.__call__ = tf.function(
            self._call,
            input_signature=[dict(zip(_INPUT_NAMES, ids_spec, strict=True))],
            autograph=False,
        )
        if tokenizer is not None:
            self._tokenizer = tokenizer
            self._max_seq_length = max_seq_length
            self.vocab_file = tf.saved_model.Asset(vocab_file)
            self.do_lower_case = tf.Variable(tokenizer.do_lower_case, trainable=False)
            self.serve_text = tf.function(
                self._encode_text,
                input_signature=[tf.TensorSpec([None], tf.string, name="text")],
                autograph=False,
            )

    def _encode(self, input_word_ids, input_mask, input_type_ids):
        """int32 [batch, seq] ids, mask and segment ids -> {sequence_output [batch, seq,
        hidden], pooled_output [batch, hidden]} float32."""
        seq_length = tf.shape(input_word_ids)[1]
        # Slicing the position table past its end would not fail by itself but give a shape
        # error deep inside; say what is wrong instead.
        check = tf.debugging.assert_less_equal(
            seq_length,
            self._max_positions,
            # (No quote characters: the SavedModel stores the message escaped.)
            message=f"input sequence longer than max_position_embeddings {self._max_positions}",
        )
        with tf.control_dependencies([check]):
            outputs = self._encoder.layer(
                {
                    "input_ids": input_word_ids,
                    "input_mask": input_mask,
                    "segment_ids": input_type_ids,
                },
                training=False,
            )
        return {
            "sequence_output": tf.cast(outputs["sequence_output"], tf.float32),
            "pooled_output": tf.cast(outputs["pooled_output"], tf.float32),
        }

    def _call(self, inputs):
        # A call of the traced `serve` graph, so the encoder is traced once.
        return self.serve(*(inputs[name] for name in _INPUT_NAMES))

    def _encode_text(self, text):
        """string [batch] -> the encoder outputs plus the int32 [batch, seq] inputs made."""
        inputs = self._tokenizer.pack_tensor(text, max_seq_length=self._max_seq_length)
        input_word_ids, input_mask, input_type_ids = (inputs[name] for name in _INPUT_NAMES)
        outputs = self.serve(input_word_ids, input_mask, input_type_ids)
        return {
            **outputs,
            "input_word_ids": input_word_ids,
            "input_mask": input_mask,
            "input_type_ids": input_type_ids,
        }


def export_saved_model(
    weights: checkpoints.Weights,
    output_dir: str,
    *,
    vocab_file: str | None = None,
    do_lower_case: bool = True,
    strip_accents: bool | None = None,
    max_seq_length: int = 128,
) -> list[str]:
    """Writes the SavedModel of the weights' encoder into `output_dir`.

    Locally the SavedModel is written beside the output under a hidden temporary name and
    renamed into place; on gs:// (no folder rename) it is written in place. Either way
    `metadata.json` goes in last, so a folder with it is complete.

    Args:
      weights: the checkpoint read (any format); needs the encoder and the pooler.
      output_dir: a new or empty folder (local or gs://).
      vocab_file: adds the `serve_text` signature with this WordPiece vocab inside.
      do_lower_case: how the tokenizer treats case (True for uncased vocabs).
      strip_accents: whether it strips accents; None: as do_lower_case (Google's rule).
      max_seq_length: tokens per example in `serve_text`, [CLS] and [SEP] included.

    Returns:
      The files written.

    Raises:
      ValueError: output_dir not empty, no pooler, vocab size or max_seq_length that does
        not fit the model.
    """
    config = weights.config
    output_dir = output_dir.rstrip("/")  # renamed into place below: no trailing slash
    existing = storage.listdir(output_dir)
    if existing:
        raise ValueError(
            f"{output_dir} already holds files ({', '.join(existing[:5])}); export into a "
            "new folder"
        )
    tokenizer = None
    if vocab_file:
        # max_seq_length only shapes serve_text: without a vocab it is not used (and its
        # default must not refuse a model with fewer than 128 positions).
        if not 2 <= max_seq_length <= config.max_position_embeddings:
            raise ValueError(
                f"max_seq_length {max_seq_length} must be between 2 and the model's "
                f"max_position_embeddings {config.max_position_embeddings}"
            )
        tokenizer = text_tokenizer(
            vocab_file, do_lower_case=do_lower_case, strip_accents=strip_accents
        )
        if tokenizer.vocab_size != config.vocab_size:
            raise ValueError(
                f"{vocab_file} has {tokenizer.vocab_size} tokens, the model's vocab_size is "
                f"{config.vocab_size}"
            )
    encoder = checkpoints.build_encoder(weights)
    module = BertEncoderExport(
        encoder, tokenizer=tokenizer, vocab_file=vocab_file, max_seq_length=max_seq_length
    )
    signatures = {"serving_default": module.serve.get_concrete_function()}
    if tokenizer is not None:
        signatures[TEXT_SIGNATURE] = module.serve_text.get_concrete_function()
    logging.info("saving the SavedModel (%s)", ", ".join(signatures))
    save_complete(module, output_dir, signatures=signatures)
    files = sorted(
        storage.join(root, file) for root, names in storage.walk(output_dir) for file in names
    )
    metadata.write(
        output_dir,
        command="trainer.export_saved_model",
        flags={
            "checkpoint": weights.source,
            "vocab_file": vocab_file or "",
            "do_lower_case": do_lower_case,
            "strip_accents": basic_tokenization.resolve_strip_accents(do_lower_case, strip_accents),
            "max_seq_length": max_seq_length,
        },
        inputs=list(weights.files),
        outputs=files,
        counts={"parameters": encoder.count_params()},
        vocab_file=vocab_file,
        extra={"signatures": sorted(signatures), "bert_config": config.to_dict()},
    )
    logging.info("wrote %s: signatures %s", output_dir, ", ".join(sorted(signatures)))
    return files


def save_complete(module: tf.Module, output_dir: str, *, signatures: dict) -> None:
    """tf.saved_model.save into `output_dir` (new or empty) so that a failed or killed export
    never leaves what looks like a whole SavedModel; the caller writes metadata.json last."""
    if storage.is_remote(output_dir):
        # Object stores have no folder rename (TensorFlow's GCS filesystem would copy object
        # by object, no more atomic than writing in place): save into output_dir itself;
        # metadata.json, written last, marks the folder complete.
        _save_or_remove(module, output_dir, signatures=signatures)
        return
    # Locally, save beside the output under a hidden name and rename it into place, so that
    # output_dir never holds a partial SavedModel.
    temporary = storage.temporary_path(output_dir)
    _save_or_remove(module, temporary, signatures=signatures)
    try:
        storage.rmtree(output_dir)  # empty (or absent): the callers check
        storage.rename(temporary, output_dir)
    finally:
        storage.rmtree(temporary)


def _save_or_remove(module: tf.Module, path: str, *, signatures: dict) -> None:
    """tf.saved_model.save into `path` (new or empty), removing `path` again if it fails."""
    try:
        tf.saved_model.save(module, path, signatures=signatures)
    except BaseException:
        storage.rmtree(path)
        raise


def define_flags() -> None:
    flags.DEFINE_string("checkpoint", None, "The checkpoint: any format of convert_checkpoint.")
    flags.DEFINE_enum(
        "checkpoint_format",
        "auto",
        ["auto", *checkpoints.FORMATS],
        "Format of --checkpoint.",
    )
    flags.DEFINE_string("output", None, "A new folder for the SavedModel.")
    flags.DEFINE_string(
        "bert_config_file", "", "The model's bert_config.json; default: the checkpoint's."
    )
    flags.DEFINE_string("vocab_file", "", "WordPiece vocab: adds the raw-text signature.")
    flags.DEFINE_bool("do_lower_case", True, "Lower-case and strip accents (uncased vocabs).")
    flags.DEFINE_bool("strip_accents", None, "Strip accents; default: as --do_lower_case.")
    flags.DEFINE_integer("max_seq_length", 128, "Tokens per example in the raw-text signature.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    try:
        config = (
            BertConfig.from_json_file(FLAGS.bert_config_file) if FLAGS.bert_config_file else None
        )
        weights = checkpoints.read(FLAGS.checkpoint, format=FLAGS.checkpoint_format, config=config)
        export_saved_model(
            weights,
            FLAGS.output,
            vocab_file=FLAGS.vocab_file or None,
            do_lower_case=FLAGS.do_lower_case,
            strip_accents=FLAGS.strip_accents,
            max_seq_length=FLAGS.max_seq_length,
        )
    except tf.errors.OpError as error:
        # TensorFlow's message names no file: say which checkpoint it was.
        raise ValueError(f"{FLAGS.checkpoint}: {error.message}") from error


if __name__ == "__main__":
    define_flags()
    flags.mark_flags_as_required(["checkpoint", "output"])
    command_line.run(main, program="trainer.export_saved_model")
