"""`BertTokenizer`: text to WordPiece tokens, identical to google-research/bert's FullTokenizer.

How it is built, and why:

- WordPiece (greedy longest-match-first over the vocab) runs in tensorflow-text's C++
  `FastWordpieceTokenizer` / `FastBertTokenizer`, the linear-time implementation.
- tensorflow-text's own text normalization is *not* Google's: it applies NFKC case folding
  ("ﬁ" -> "fi", "²" -> "2", "ß" -> "ss", full-width letters to ASCII, "…" -> "..."), and it
  turns control characters into spaces where Google deletes them ("co\\xadoperate" is one word
  for Google, and "a\\x7fb" is "ab"). So we never let it normalize anything but plain ASCII:
  * ASCII texts (most English lines) go to `FastBertTokenizer` end to end, after our own
    deletion of ASCII control characters and lower-casing; on ASCII its whitespace and
    punctuation rules are Google's (a test checks every ASCII character).
  * Every other text is split into words in Python by `basic_tokenization.split_words`
    (Google's rules, fast), and only the words go to `FastWordpieceTokenizer`
    (no pre-tokenization).
- Google turns a word longer than 100 *characters* into [UNK]; tensorflow-text counts *bytes*.
  ASCII words have as many bytes as characters; for other words we apply the 100-character rule
  ourselves and give tensorflow-text a byte limit no 100-character word can reach.
- Text such as "[SEP]" or "[MASK]" inside the raw text stays plain text ("[", "sep", "]"), as in
  Google's tokenizer: special tokens are only ever added by the code that packs sequences.

`tokenize_tensor` is the TensorFlow-graph version of the same rules, for `tf.data` and Keras.
The vocab handling, pickling and id helpers are `tokenizer.wordpiece.WordPieceTokenizer`'s, the
same tokenization in plain Python for processes that should not load TensorFlow.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from contracts import command_line
from tokenizer import basic_tokenization, vocab, wordpiece

# TensorFlow first, quietly (its start-up chatter filtered out), then tensorflow_text on it.
tf = command_line.import_tensorflow_quietly()
import tensorflow_text as tf_text  # noqa: E402 - needs the quiet import above to run first

MAX_CHARS_PER_WORD = wordpiece.MAX_CHARS_PER_WORD
# UTF-8 needs at most 4 bytes a character: no word that is not `wordpiece.too_long` is longer.
_MAX_BYTES_PER_WORD = 4 * wordpiece.MAX_CHARS_PER_UNSPACED_WORD
# `wordpiece.too_long`'s scripts as an RE2 character class.
_UNSPACED_RE2 = (
    ".*[" + "".join(f"\\x{{{a:04X}}}-\\x{{{b:04X}}}" for a, b in wordpiece.UNSPACED_SCRIPTS) + "].*"
)
# Replaces, before WordPiece, a word that is too long: NUL never survives cleaning, so no real
# word is "\x00", and a vocab without "\x00" in any token maps it to exactly one [UNK].
_TOO_LONG_WORD = "\x00"


class BertTokenizer(wordpiece.WordPieceTokenizer):
    """Batched BERT tokenization (basic + WordPiece) that equals Google's FullTokenizer, with
    WordPiece in tensorflow-text, and the same rules as TensorFlow ops (`tokenize_tensor`,
    `pack_tensor`) for tf.data, Keras graphs and serving.

    Args, attributes: as `tokenizer.wordpiece.WordPieceTokenizer`, whose vocab handling,
    pickling and id helpers it shares.
    """

    def _setup(
        self, tokens: list[str], *, do_lower_case: bool, strip_accents: bool | None, source: str
    ) -> None:
        if any(_TOO_LONG_WORD in token for token in tokens):
            raise ValueError(f"{source}: a token contains the NUL character")
        super()._setup(
            tokens, do_lower_case=do_lower_case, strip_accents=strip_accents, source=source
        )
        # ASCII texts, end to end. Normalization off: we lower-case ourselves (see module doc).
        self._ascii_tokenizer = tf_text.FastBertTokenizer(
            vocab=tokens,
            token_out_type=tf.int32,
            unknown_token=vocab.UNK,
            max_bytes_per_word=MAX_CHARS_PER_WORD,
            lower_case_nfd_strip_accents=False,
        )
        # Words already split by basic_tokenization.
        self._word_tokenizer = tf_text.FastWordpieceTokenizer(
            vocab=tokens,
            token_out_type=tf.int32,
            unknown_token=vocab.UNK,
            max_bytes_per_word=_MAX_BYTES_PER_WORD,
            no_pretokenization=True,
        )

    def tokenize_to_ids(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Token ids of each text.

        Args:
          texts: a batch of texts (a list of str; larger batches amortise the TensorFlow calls).

        Returns:
          One int32 array of shape [num_pieces] per text, in order.
        """
        if isinstance(texts, str):
            raise TypeError("tokenize_to_ids takes a sequence of texts, not one str")
        results: list[np.ndarray | None] = [None] * len(texts)
        ascii_index, ascii_texts, other_index, other_texts = [], [], [], []
        for index, text in enumerate(texts):
            if text.isascii():
                ascii_index.append(index)
                ascii_texts.append(
                    basic_tokenization.normalize(text, do_lower_case=self.do_lower_case)
                )
            else:
                other_index.append(index)
                other_texts.append(text)
        if ascii_texts:
            ids = self._ascii_tokenizer.tokenize(tf.constant(ascii_texts, dtype=tf.string))
            for index, row in zip(ascii_index, _split_rows(ids), strict=True):
                results[index] = row
        if other_texts:
            words = basic_tokenization.split_words_batch(
                other_texts, do_lower_case=self.do_lower_case, strip_accents=self.strip_accents
            )
            for index, row in zip(other_index, self._tokenize_words(words), strict=True):
                results[index] = row
        return results  # type: ignore[return-value]

    def _tokenize_words(self, words_per_text: Sequence[Sequence[str]]) -> list[np.ndarray]:
        too_long = wordpiece.too_long
        flat = [
            _TOO_LONG_WORD if too_long(word) else word for words in words_per_text for word in words
        ]
        if not flat:
            return [np.zeros([0], np.int32) for _ in words_per_text]
        pieces = self._word_tokenizer.tokenize(tf.constant(flat, dtype=tf.string))
        word_piece_splits = pieces.row_splits.numpy()
        text_word_splits = np.cumsum([0, *(len(words) for words in words_per_text)])
        text_piece_splits = word_piece_splits[text_word_splits]
        return np.split(pieces.flat_values.numpy(), text_piece_splits[1:-1])

    def tokenize_tensor(self, texts: tf.Tensor) -> tf.RaggedTensor:
        """The same tokenization as TensorFlow ops, for `tf.data` pipelines and Keras graphs.

        Google's rules are applied with `tf.strings.regex_replace` over character classes
        computed from Python's `unicodedata` (the tables Google's tokenizer reads), then
        `tf.strings.lower` and tensorflow-text's NFD, then WordPiece on the words. It agrees
        with `tokenize_to_ids` on real text (tested on the bundled books and Wikipedia sample);
        in principle ICU's lower-casing and NFD (used here) and Python's could disagree on
        characters newer than one of the two Unicode versions.

        Args:
          texts: tf.string tensor of shape [batch].

        Returns:
          tf.int32 RaggedTensor of shape [batch, (num_pieces)].
        """
        patterns = _re2_patterns()
        texts = tf.strings.regex_replace(texts, patterns["removed"], "")
        texts = tf.strings.regex_replace(texts, patterns["cjk"], r" \0 ")
        if self.do_lower_case:
            texts = tf.strings.lower(texts, encoding="utf-8")
        if self.strip_accents:
            texts = tf_text.normalize_utf8(texts, "NFD")
            texts = tf.strings.regex_replace(texts, patterns["nonspacing_marks"], "")
        texts = tf.strings.regex_replace(texts, patterns["punctuation"], r" \0 ")
        # Every kind of whitespace to a space, which tf.strings.split (ASCII only) splits on.
        texts = tf.strings.regex_replace(texts, patterns["whitespace"], " ")
        words = tf.strings.split(texts)
        # wordpiece.too_long, as TensorFlow ops.
        lengths = tf.strings.length(words.flat_values, unit="UTF8_CHAR")
        unspaced = tf.strings.regex_full_match(words.flat_values, _UNSPACED_RE2)
        too_long = (lengths > MAX_CHARS_PER_WORD) & (
            (lengths > wordpiece.MAX_CHARS_PER_UNSPACED_WORD) | ~unspaced
        )
        words = words.with_flat_values(
            tf.where(too_long, tf.constant(_TOO_LONG_WORD), words.flat_values)
        )
        return self._word_tokenizer.tokenize(words).merge_dims(1, 2)

    def pack_tensor(
        self, texts_a: tf.Tensor, texts_b: tf.Tensor | None = None, *, max_seq_length: int
    ) -> dict[str, tf.Tensor]:
        """Tokenizes and packs one or two segments per example, as TensorFlow ops: `[CLS] A
        [SEP]` or `[CLS] A [SEP] B [SEP]`, cut to `max_seq_length` as google-research/bert's
        run_classifier cuts (`_truncate_seq_pair`: the longer segment loses its last token, B on
        a tie, until the pair fits), padded to the longest example of the batch.

        Returns:
          {"input_word_ids", "input_mask", "input_type_ids"}: int32 [batch, seq], seq <=
          max_seq_length.
        """
        pieces_a = self.tokenize_tensor(texts_a)
        length_a = pieces_a.row_lengths()
        batch = tf.shape(texts_a, out_type=tf.int64)[0]
        if texts_b is None:
            keep_a = tf.minimum(length_a, max_seq_length - 2)
            segments = [pieces_a]
            keeps = [keep_a]
        else:
            pieces_b = self.tokenize_tensor(texts_b)
            length_b = pieces_b.row_lengths()
            # trainer.classifier_features.truncation's arithmetic, on every row at once.
            excess = tf.maximum(length_a + length_b - (max_seq_length - 3), 0)
            difference = tf.minimum(tf.abs(length_a - length_b), excess)
            a = tf.where(length_a > length_b, length_a - difference, length_a)
            b = tf.where(length_a > length_b, length_b, length_b - difference)
            excess -= difference
            keeps = [a - excess // 2, b - (excess + 1) // 2]
            segments = [pieces_a, pieces_b]

        def first(pieces: tf.RaggedTensor, keep: tf.Tensor) -> tf.RaggedTensor:
            positions = tf.ragged.range(pieces.row_lengths())
            return tf.ragged.boolean_mask(pieces, positions < tf.expand_dims(keep, 1))

        def column(token_id: int) -> tf.RaggedTensor:  # [batch, 1]
            return tf.RaggedTensor.from_tensor(tf.fill([batch, 1], tf.constant(token_id, tf.int32)))

        parts, types = [column(self.cls_id)], [column(0)]  # [CLS] is of segment 0, as is A
        for index, (pieces, keep) in enumerate(zip(segments, keeps, strict=True)):
            kept = tf.concat([first(pieces, keep), column(self.sep_id)], axis=1)
            parts.append(kept)
            types.append(tf.ones_like(kept) * index)
        ids = tf.concat(parts, axis=1)
        type_ids = tf.concat(types, axis=1)
        return {
            "input_word_ids": ids.to_tensor(default_value=self.pad_id),
            "input_mask": tf.ones_like(ids).to_tensor(default_value=0),
            "input_type_ids": type_ids.to_tensor(default_value=0),
        }


@functools.cache
def _re2_patterns() -> dict[str, str]:
    classes = basic_tokenization.character_classes()
    return {
        name: basic_tokenization.re2_class(getattr(classes, name))
        for name in ("removed", "cjk", "nonspacing_marks", "punctuation", "whitespace")
    }


def _split_rows(ragged: tf.RaggedTensor) -> list[np.ndarray]:
    """A [batch, (pieces)] ragged tensor as one numpy array per row."""
    splits = ragged.row_splits.numpy()
    return np.split(ragged.flat_values.numpy(), splits[1:-1])
