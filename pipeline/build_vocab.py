"""Learns a WordPiece (or sentencepiece) vocab from text shards: a Beam job.

  python -m pipeline.build_vocab --input='data/wiki-shards/train-*.txt' \\
      --output=data/vocab.txt --vocab_size=30522 --do_lower_case --algorithm=wordpiece

WordPiece (the default):
  1. every shard is read by one worker, which splits its lines into words with BERT's basic
     tokenizer (the same rules `tokenizer.BertTokenizer` applies later) and counts them;
  2. the per-shard counts are summed by word with a combiner (`CombinePerKey`), so no worker ever
     sorts or holds the corpus, only its table of distinct words;
  3. tensorflow-text's learner picks its input from the table (words of at most 50 characters
     made of the 1,000 most frequent characters, the 5M most frequent of them), also in Beam;
  4. one worker learns the vocab from those counts (`tokenizer.vocab_learning`: the same vocab
     as tensorflow-text's `bert_vocab_from_dataset`, much faster) and writes it in BERT's
     layout: [PAD], [unused0..98], [UNK], [CLS], [SEP], [MASK], the characters, then the pieces
     by frequency; exactly --vocab_size lines.

Sentencepiece (`--algorithm=sentencepiece`, ALBERT style): a deterministic sample of at most
`--sentencepiece_sentences` lines (the lines with the smallest hashes) trains a unigram model on
BERT-pre-tokenized text; it is written as `<output stem>.model`, and its pieces are written as a
WordPiece-format vocab ("▁word" -> "word", "iece" -> "##iece") that `tokenizer.BertTokenizer` and
the rest of the pipeline read like any other.

Both write the vocab atomically, then `metadata.json` beside it, last. The same inputs and flags
give a byte-identical vocab on any runner with any number of workers.
"""

from __future__ import annotations

import dataclasses
import io
import logging
from collections import Counter
from collections.abc import Iterator, Sequence

import apache_beam as beam
import sentencepiece

from contracts import hashing, lines, metadata, storage
from pipeline import beam_options, progress, stage
from tokenizer import basic_tokenization, vocab, vocab_learning
from tokenizer.vocab_learning import LearnParams

COMMAND = "pipeline.build_vocab"
ALGORITHMS = ("wordpiece", "sentencepiece")
_METRICS_NAMESPACE = "build_vocab"
_PROGRESS_EVERY_LINES = 10_000


@dataclasses.dataclass(frozen=True)
class BuildVocabConfig:
    """Everything one run of build_vocab needs; logged at start, kept in metadata.json."""

    input: str  # comma-separated globs of text shards (local or gs://)
    output: str  # the vocab file to write (local or gs://); metadata.json goes beside it
    vocab_size: int = 30522  # lines in the vocab file, special tokens included (BERT-base's)
    do_lower_case: bool = True  # lower-case before counting (uncased vocab)
    # strip accents before counting; None: as do_lower_case (Google's rule)
    strip_accents: bool | None = None
    # "wordpiece" (tensorflow-text's learner) or "sentencepiece"
    algorithm: str = dataclasses.field(default="wordpiece", metadata={"enum": ALGORITHMS})
    num_unused: int = vocab.DEFAULT_NUM_UNUSED  # [unusedN] after [PAD]: [UNK]=100 as in BERT
    # WordPiece: learn from at most this many of the most frequent words (-1: all)
    max_input_tokens: int = LearnParams.max_input_tokens
    # WordPiece: alphabet size; words with rarer characters are not learned from
    max_unique_chars: int = LearnParams.max_unique_chars
    sentencepiece_sentences: int = 1_000_000  # most lines sentencepiece trains on (a sample)
    sentencepiece_character_coverage: float = 0.9995  # rarer characters become [UNK]
    sentencepiece_threads: int = 1  # >1 is faster but sentencepiece is then not deterministic

    def __post_init__(self):
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {self.algorithm!r}")
        minimum = len(vocab.special_prefix(num_unused=self.num_unused)) + 1
        if self.vocab_size < minimum:
            raise ValueError(f"vocab_size must be at least {minimum}, got {self.vocab_size}")
        if self.sentencepiece_sentences < 1:
            raise ValueError("sentencepiece_sentences must be positive")

    @property
    def reserved_tokens(self) -> list[str]:
        return vocab.special_prefix(num_unused=self.num_unused)

    @property
    def learn_params(self) -> LearnParams:
        """tensorflow-text's learner settings: its defaults, but for the two above."""
        return dataclasses.replace(
            LearnParams(),
            max_input_tokens=None if self.max_input_tokens < 0 else self.max_input_tokens,
            max_unique_chars=self.max_unique_chars,
        )


# --- Reading and counting ------------------------------------------------------------------------


def read_lines(path: str) -> Iterator[tuple[str, bool]]:
    """The lines of a text shard, without line ends, with whether each was valid UTF-8.

    Bad bytes become U+FFFD, which BERT's cleaning deletes (Google's tokenizer ignores them).

    Raises:
      OSError: the file cannot be read; the message names it.
    """
    return lines.read_lines(path, what="text shard")


class CountWordsInFile(beam.DoFn):
    """A text shard -> (word, count) for each distinct word in it (BERT's basic tokenization)."""

    def __init__(
        self,
        *,
        do_lower_case: bool,
        strip_accents: bool | None = None,
        reading: progress.Progress | None = None,
    ):
        self._normalization = {"do_lower_case": do_lower_case, "strip_accents": strip_accents}
        self._progress = reading or progress.Progress(COMMAND, "lines", enabled=False)
        self._files = beam.metrics.Metrics.counter(_METRICS_NAMESPACE, "files")
        self._lines = beam.metrics.Metrics.counter(_METRICS_NAMESPACE, "lines")
        self._words = beam.metrics.Metrics.counter(_METRICS_NAMESPACE, "words")
        self._invalid = beam.metrics.Metrics.counter(_METRICS_NAMESPACE, "invalid_utf8_lines")

    def setup(self):
        basic_tokenization.character_classes()  # once per worker, not inside the first bundle

    def process(self, path: str) -> Iterator[tuple[str, int]]:
        counts: Counter[str] = Counter()
        num_lines = num_invalid = 0
        read_bytes = 0
        for line, valid in read_lines(path):
            num_lines += 1
            num_invalid += not valid
            read_bytes += len(line) + 1  # characters: bytes for the ASCII most text is
            counts.update(basic_tokenization.split_words(line, **self._normalization))
            if num_lines % _PROGRESS_EVERY_LINES == 0:
                self._progress.advance(items=_PROGRESS_EVERY_LINES, bytes_done=read_bytes)
                read_bytes = 0
        self._progress.advance(items=num_lines % _PROGRESS_EVERY_LINES, bytes_done=read_bytes)
        self._files.inc()
        self._lines.inc(num_lines)
        self._invalid.inc(num_invalid)
        self._words.inc(sum(counts.values()))
        logging.info("%s: %d lines, %d distinct words", path, num_lines, len(counts))
        yield beam.pvalue.TaggedOutput(
            _FILE_STATS, (1, num_lines, sum(counts.values()), num_invalid)
        )
        yield from counts.items()


class CountWords(beam.PTransform):
    """Paths of text shards -> (word, count) over all of them, one element per distinct word.

    After it is applied, `file_stats` is a PCollection of one dict: files, lines, words and
    invalid_utf8_lines over all shards, for metadata.json (read in the same pass).
    """

    def __init__(
        self,
        *,
        do_lower_case: bool,
        strip_accents: bool | None = None,
        input_bytes: int = 0,
    ):
        super().__init__()
        self._normalization = {"do_lower_case": do_lower_case, "strip_accents": strip_accents}
        self._input_bytes = input_bytes
        self.file_stats: beam.PCollection | None = None

    def expand(self, paths):
        counted = (
            paths
            # One shard per element; the reshuffle spreads shards over workers.
            | "SpreadShards" >> beam.Reshuffle()
            | "CountPerShard"
            >> beam.ParDo(
                CountWordsInFile(
                    **self._normalization,
                    reading=progress.Progress(
                        COMMAND,
                        "lines",
                        total_bytes=self._input_bytes,
                        workers=beam_options.local_workers(paths.pipeline),
                    ),
                )
            ).with_outputs(_FILE_STATS, main="words")
        )
        self.file_stats = (
            counted[_FILE_STATS]
            | "SumFileStats" >> beam.CombineGlobally(_sum_columns)
            | "NameFileStats"
            >> beam.Map(lambda sums: dict(zip(_FILE_STAT_NAMES, sums, strict=True)))
        )
        return counted.words | "SumPerWord" >> beam.CombinePerKey(sum)


_FILE_STATS = "file_stats"
_FILE_STAT_NAMES = ("files", "lines", "words", "invalid_utf8_lines")


def _sum_columns(rows) -> tuple[int, ...]:
    return tuple(sum(column) for column in zip(*rows, strict=True)) if rows else (0, 0, 0, 0)


# --- tensorflow-text's input selection, over the whole count table --------------------------------


class _MinMax(beam.CombineFn):
    """(smallest, largest) of the values; None for none."""

    def create_accumulator(self):
        return None

    def add_input(self, accumulator, value):
        if accumulator is None:
            return (value, value)
        return (min(accumulator[0], value), max(accumulator[1], value))

    def merge_accumulators(self, accumulators):
        result = None
        for accumulator in accumulators:
            if accumulator is not None:
                result = self.add_input(result, accumulator[0])
                result = self.add_input(result, accumulator[1])
        return result

    def extract_output(self, accumulator):
        return accumulator


# Inverting every UTF-8 byte reverses the order of the encoded strings (UTF-8 sorts as code
# points do); the 0xFF end marker puts a word before the longer words it is a prefix of.
_INVERT_BYTES = bytes(range(255, -1, -1))


def _word_rank(word_count: tuple[str, int]) -> tuple[int, bytes]:
    # Top.Of keeps the largest: most frequent first, ties by word (as vocab_learning.rank_words).
    word, count = word_count
    return count, word.encode("utf-8").translate(_INVERT_BYTES) + b"\xff"


class _CharCounts(beam.CombineFn):
    """(word, count) -> {character: count summed over its occurrences}, one dict in the end."""

    def create_accumulator(self) -> Counter:
        return Counter()

    def add_input(self, accumulator: Counter, word_count: tuple[str, int]) -> Counter:
        word, count = word_count
        for char in word:
            accumulator[char] += count
        return accumulator

    def merge_accumulators(self, accumulators) -> Counter:
        merged = Counter()
        for accumulator in accumulators:
            merged.update(accumulator)
        return merged

    def extract_output(self, accumulator: Counter) -> dict[str, int]:
        return dict(accumulator)


class SelectLearnerInput(beam.PTransform):
    """(word, count) table -> one element: (selected (word, count) list, search bounds).

    tensorflow-text's `learn()` preprocessing, distributed: words longer than
    `max_token_length` or equal to a reserved token are dropped, so are words with a character
    outside the `max_unique_chars` most frequent ones, and the `max_input_tokens` most frequent
    words are kept.
    """

    def __init__(self, *, params: LearnParams, reserved_tokens: Sequence[str]):
        super().__init__()
        self._params = params
        self._reserved = frozenset(reserved_tokens)

    def expand(self, word_counts):
        params, reserved = self._params, self._reserved
        bounds = (
            word_counts
            | "Counts" >> beam.Values()
            | "MinMaxCount" >> beam.CombineGlobally(_MinMax())
        )
        candidates = word_counts | "Candidates" >> beam.Filter(
            lambda wc: vocab_learning.is_candidate_word(
                wc[0], reserved_tokens=reserved, params=params
            )
        )
        allowed_chars = (
            candidates
            | "CountChars" >> beam.CombineGlobally(_CharCounts())
            | "TopChars"
            >> beam.Map(lambda counts: vocab_learning.allowed_characters(counts, params))
        )
        allowed_words = candidates | "AllowedChars" >> beam.Filter(
            lambda wc, allowed: all(char in allowed for char in wc[0]),
            allowed=beam.pvalue.AsSingleton(allowed_chars),
        )
        if params.max_input_tokens in (None, -1):
            selected = allowed_words | "AllWords" >> beam.combiners.ToList()
        else:
            selected = allowed_words | "MostFrequent" >> beam.combiners.Top.Of(
                params.max_input_tokens, key=_word_rank
            )
        return selected | "WithBounds" >> beam.Map(
            _with_bounds, bounds=beam.pvalue.AsSingleton(bounds), params=params
        )


def _with_bounds(selected, bounds, params):
    if not selected or bounds is None:
        raise ValueError("no words to learn a vocab from: the corpus is empty")
    return vocab_learning.rank_words(selected), vocab_learning.search_bounds(*bounds, params)


def learn_wordpiece_vocab(selected_and_bounds, *, config: BuildVocabConfig) -> list[str]:
    """The learner's input -> exactly `config.vocab_size` tokens in BERT's layout."""
    selected, bounds = selected_and_bounds
    beam.metrics.Metrics.counter(_METRICS_NAMESPACE, "learner_input_words").inc(len(selected))
    logging.info("learning %d tokens from %d words", config.vocab_size, len(selected))
    learner = vocab_learning.WordpieceLearner(
        selected, reserved_tokens=config.reserved_tokens, params=config.learn_params
    )
    learned = learner.learn_exact_size(config.vocab_size, bounds=bounds)
    beam.metrics.Metrics.counter(_METRICS_NAMESPACE, "learner_threshold").inc(learned.threshold)
    return learned.tokens


# --- sentencepiece ---------------------------------------------------------------------------------


def _line_hash(line: str) -> int:
    return hashing.stable_hash64(line, byteorder="big")


class SampleLines(beam.PTransform):
    """Text shards -> one element: at most `num_lines` non-empty lines, a deterministic sample.

    The kept lines are those with the smallest hashes, so the sample is the same on every run
    and runner and needs memory for `num_lines` lines only.
    """

    def __init__(self, *, num_lines: int, do_lower_case: bool, strip_accents: bool | None = None):
        super().__init__()
        self._num_lines = num_lines
        self._normalization = {"do_lower_case": do_lower_case, "strip_accents": strip_accents}

    def expand(self, paths):
        normalization = self._normalization
        return (
            paths
            | "SpreadShards" >> beam.Reshuffle()
            | "ReadLines" >> beam.FlatMap(lambda path: (line for line, _ in read_lines(path)))
            | "PreTokenize"
            >> beam.Map(
                lambda line: " ".join(basic_tokenization.split_words(line, **normalization))
            )
            | "NonEmpty" >> beam.Filter(bool)
            | "Smallest" >> beam.combiners.Top.Of(self._num_lines, key=_line_hash, reverse=True)
            | "Sorted" >> beam.Map(lambda lines: sorted(lines, key=lambda x: (_line_hash(x), x)))
        )


def sentencepiece_to_wordpiece(
    pieces: Sequence[str], *, vocab_size: int, reserved_tokens: Sequence[str]
) -> list[str]:
    """sentencepiece pieces (best first) as a WordPiece vocab of exactly `vocab_size` tokens.

    "▁word" (starts a word) becomes "word", "iece" (continues one) "##iece"; every character
    gets both forms, so that greedy WordPiece can spell any word the model could.
    """
    converted = []
    for piece in pieces:
        if piece.startswith("\u2581"):
            piece = piece[1:]
            if piece:
                converted.append(piece)
        elif piece:
            converted.append(vocab.CONTINUATION_PREFIX + piece)
    chars = sorted(
        {c for token in converted for c in token.removeprefix(vocab.CONTINUATION_PREFIX)}
    )
    essential = [*chars, *(vocab.CONTINUATION_PREFIX + c for c in chars)]
    tokens = list(dict.fromkeys([*reserved_tokens, *essential, *converted]))
    needed = len(dict.fromkeys([*reserved_tokens, *essential]))
    if needed > vocab_size:
        # Cutting would drop characters (or their ## forms): words holding them become [UNK].
        raise ValueError(
            f"vocab_size {vocab_size} is too small for this text: its {len(chars)} characters "
            f"need {len(essential)} tokens (each alone and as ##continuation) besides the "
            f"{len(reserved_tokens)} reserved ones; pass --vocab_size={needed} or more"
        )
    if len(tokens) < vocab_size:
        raise ValueError(
            f"sentencepiece gave {len(tokens)} tokens, fewer than vocab_size {vocab_size}"
        )
    return tokens[:vocab_size]


def train_sentencepiece(
    lines: Sequence[str], *, output: str, config: BuildVocabConfig
) -> list[str]:
    """Trains a unigram sentencepiece model on `lines`; writes `<output stem>.model`.

    Returns:
      The WordPiece-format vocab (exactly `config.vocab_size` tokens).
    """
    if not lines:
        raise ValueError("no text to learn a vocab from: the corpus is empty")
    reserved = config.reserved_tokens
    # The pieces fill what the special tokens leave; +2: sentencepiece's own <unk> and the bare
    # "▁" piece are dropped in the conversion.
    num_pieces = config.vocab_size - len(reserved) + 2
    model = io.BytesIO()
    try:
        # Sentences from an iterator and the model into memory: no temporary paths end up in
        # the model's recorded trainer spec, so reruns write the same bytes.
        sentencepiece.SentencePieceTrainer.train(
            sentence_iterator=iter(lines),
            model_writer=model,
            vocab_size=num_pieces,
            model_type="unigram",
            character_coverage=config.sentencepiece_character_coverage,
            # The text is already BERT-normalized (and lower-cased when asked).
            normalization_rule_name="identity",
            input_sentence_size=0,
            shuffle_input_sentence=False,
            num_threads=config.sentencepiece_threads,
            bos_id=-1,
            eos_id=-1,
            unk_id=0,
            minloglevel=2,
        )
    except RuntimeError as error:
        raise ValueError(
            f"sentencepiece could not learn {num_pieces} pieces from {len(lines)} lines: {error}"
        ) from error
    model_bytes = model.getvalue()
    processor = sentencepiece.SentencePieceProcessor(model_proto=model_bytes)
    pieces = [processor.id_to_piece(i) for i in range(processor.get_piece_size())]
    storage.atomic_write(sentencepiece_model_path(output), model_bytes)
    return sentencepiece_to_wordpiece(
        pieces[1:],  # without <unk>
        vocab_size=config.vocab_size,
        reserved_tokens=reserved,
    )


def sentencepiece_model_path(output: str) -> str:
    """`data/vocab.txt` -> `data/vocab.model`."""
    stem = output[: -len(".txt")] if output.endswith(".txt") else output
    return stem + ".model"


# --- The job ------------------------------------------------------------------------------------


def _write_vocab(tokens, *, config, file_stats):  # untyped: Beam logs string annotations
    """Writes the vocab; what metadata.json records of it."""
    vocab.write(config.output, tokens, expected_size=config.vocab_size)
    logging.info("wrote %s: %d tokens", config.output, len(tokens))
    outputs = [config.output]
    if config.algorithm == "sentencepiece":
        outputs.append(sentencepiece_model_path(config.output))
    counts = dict(file_stats or {})
    counts["vocab_tokens"] = len(tokens)
    counts["continuation_tokens"] = sum(t.startswith(vocab.CONTINUATION_PREFIX) for t in tokens)
    return stage.StageResult(outputs=outputs, counts=counts, extra={})


def input_files(config: BuildVocabConfig) -> list[str]:
    """The text shards, sorted (a metadata.json that a glob matches is left out).

    Raises:
      FileNotFoundError: a pattern matches nothing (the message names it).
    """
    return metadata.data_files(storage.expand_globs(config.input), patterns=config.input)


def build_pipeline(pipeline: beam.Pipeline, config: BuildVocabConfig) -> beam.PCollection:
    """Adds the vocab job to `pipeline`: the vocab file (with sentencepiece also
    `sentencepiece_model_path(output)`), then metadata.json beside it.

    Returns:
      A PCollection with one element, the metadata record, once everything is written.
    """
    inputs = input_files(config)
    if storage.exists(config.output):
        logging.info("%s exists and will be replaced", config.output)
    paths = pipeline | "Shards" >> beam.Create(inputs)
    file_stats = None
    if config.algorithm == "wordpiece":
        count_words = CountWords(
            do_lower_case=config.do_lower_case,
            strip_accents=config.strip_accents,
            input_bytes=sum(storage.size(path) for path in inputs),
        )
        tokens = (
            paths
            | "CountWords" >> count_words
            | "SelectLearnerInput"
            >> SelectLearnerInput(
                params=config.learn_params, reserved_tokens=config.reserved_tokens
            )
            | "LearnWordPiece" >> beam.Map(learn_wordpiece_vocab, config=config)
        )
        file_stats = beam.pvalue.AsSingleton(count_words.file_stats)
    else:
        tokens = (
            paths
            | "SampleLines"
            >> SampleLines(
                num_lines=config.sentencepiece_sentences,
                do_lower_case=config.do_lower_case,
                strip_accents=config.strip_accents,
            )
            | "TrainSentencepiece"
            >> beam.Map(train_sentencepiece, output=config.output, config=config)
        )
    return (
        tokens
        | "WriteVocab" >> beam.Map(_write_vocab, config=config, file_stats=file_stats)
        | "WriteMetadata"
        >> stage.WriteMetadata(
            command=COMMAND,
            config=config,
            output_dir=output_dir(config),
            inputs=inputs,
            vocab_file=config.output,
        )
    )


def output_dir(config: BuildVocabConfig) -> str:
    """The folder of the vocab, where its metadata.json goes."""
    return storage.dirname(config.output)


STAGE = stage.Stage(
    command=COMMAND,
    config_class=BuildVocabConfig,
    build_pipeline=build_pipeline,
    output_dir=output_dir,
)


def run(config: BuildVocabConfig, beam_args: Sequence[str] = ()) -> dict:
    """Runs the job; returns the metadata record it wrote."""
    stage.run(STAGE, config, beam_args)
    return metadata.read(output_dir(config))


if __name__ == "__main__":
    stage.run_as_program(STAGE)
