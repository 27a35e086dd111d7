"""Tokenizes a text file line by line: one line in, one line of space-separated word pieces out.

  python -m tokenizer.tokenize --vocab_file=vocab.txt --do_lower_case \\
      --input=shard.txt --output=shard.tokens.txt

For looking at what a vocab does to your own text. Paths may be local or gs://. Lines are
tokenized in batches; the output appears atomically (complete or not at all). A line that is not
valid UTF-8 is decoded with U+FFFD for the bad bytes, which BERT's cleaning then deletes, the same
as google-research/bert's tokenizer ignoring them; such lines are counted and reported.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterator

from absl import app, flags

from contracts import command_line, lines, storage

DEFAULT_BATCH_SIZE = 2048  # lines per tokenizer call: big enough to amortise each TF call
_LOG_EVERY_SECONDS = 30.0


@dataclasses.dataclass
class TokenizeCounts:
    lines: int = 0
    pieces: int = 0
    unknown_pieces: int = 0  # [UNK] in the output
    invalid_utf8_lines: int = 0  # decoded with U+FFFD for the bad bytes


def _lines(path: str, counts: TokenizeCounts) -> Iterator[str]:
    """The lines of a file, without their line ends; invalid UTF-8 repaired and counted."""
    for line, valid in lines.read_lines(path, what="input"):
        counts.invalid_utf8_lines += not valid
        yield line


def _batches(path: str, batch_size: int, counts: TokenizeCounts) -> Iterator[list[str]]:
    batch: list[str] = []
    for line in _lines(path, counts):
        batch.append(line)
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def tokenize_file(
    input_path: str,
    output_path: str,
    tokenizer,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> TokenizeCounts:
    """Writes the word pieces of each line of `input_path` to the same line of `output_path`.

    Args:
      input_path: UTF-8 text file (local or gs://).
      output_path: where to write; written atomically.
      tokenizer: a `tokenizer.BertTokenizer`.
      batch_size: lines per tokenizer call.

    Returns:
      The counts of lines, pieces, [UNK] pieces and lines that were not valid UTF-8.
    """
    if not storage.exists(input_path):
        raise FileNotFoundError(f"input file not found: {input_path}")
    counts = TokenizeCounts()
    unk_id = tokenizer.unk_id
    last_log = time.monotonic()
    with storage.atomic_open(output_path, "wb") as out:
        for batch in _batches(input_path, batch_size, counts):
            ids_per_line = tokenizer.tokenize_to_ids(batch)
            lines = []
            for ids in ids_per_line:
                counts.pieces += len(ids)
                counts.unknown_pieces += int((ids == unk_id).sum())
                lines.append(" ".join(tokenizer.id_to_token(ids)))
            out.write(("\n".join(lines) + "\n").encode("utf-8"))
            counts.lines += len(batch)
            if time.monotonic() - last_log > _LOG_EVERY_SECONDS:
                logging.info("%s: %d lines tokenized", input_path, counts.lines)
                last_log = time.monotonic()
    if counts.invalid_utf8_lines:
        logging.warning(
            "%s: %d lines were not valid UTF-8; their bad bytes were dropped",
            input_path,
            counts.invalid_utf8_lines,
        )
    return counts


def _define_flags() -> None:
    flags.DEFINE_string("vocab_file", None, "WordPiece vocab, one token per line.")
    flags.DEFINE_bool("do_lower_case", True, "Lower-case (uncased vocab).")
    flags.DEFINE_bool(
        "strip_accents",
        None,
        "Strip accents (NFD, drop non-spacing marks); default: as --do_lower_case (Google's).",
    )
    flags.DEFINE_string("input", None, "UTF-8 text file to tokenize (local or gs://).")
    flags.DEFINE_string("output", None, "Where to write the word pieces, one line per line.")
    flags.DEFINE_integer("batch_size", DEFAULT_BATCH_SIZE, "Lines per tokenizer call.")
    flags.mark_flags_as_required(["vocab_file", "input", "output"])


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from tokenizer.bert_tokenizer import BertTokenizer

    FLAGS = flags.FLAGS
    tokenizer = BertTokenizer(
        FLAGS.vocab_file, do_lower_case=FLAGS.do_lower_case, strip_accents=FLAGS.strip_accents
    )
    start = time.monotonic()
    counts = tokenize_file(FLAGS.input, FLAGS.output, tokenizer, batch_size=FLAGS.batch_size)
    seconds = time.monotonic() - start
    logging.info(
        "wrote %s: %d lines, %d pieces (%.3f%% [UNK]) in %.1f s",
        FLAGS.output,
        counts.lines,
        counts.pieces,
        100.0 * counts.unknown_pieces / max(counts.pieces, 1),
        seconds,
    )


if __name__ == "__main__":
    _define_flags()
    command_line.run(main, program="tokenizer.tokenize")
