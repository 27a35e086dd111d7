"""pipeline.build_vocab and tokenizer.vocab_learning: the learner equals tensorflow-text's, each
Beam step, and the whole job on the bundled books and Wikipedia sample."""

from __future__ import annotations

import bz2
import collections
import dataclasses
import html
import json
import re
import subprocess
import sys

import apache_beam as beam
import numpy as np
import pytest
import sentencepiece
import tensorflow as tf
import tensorflow_text as tf_text
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to
from tensorflow_text.tools.wordpiece_vocab import wordpiece_tokenizer_learner_lib as tf_text_learner

from contracts import metadata, storage
from pipeline import build_vocab
from tests import pretraining_fixtures
from tokenizer import BertTokenizer, basic_tokenization, vocab, vocab_learning
from tokenizer.vocab_learning import LearnParams


def _word_counts(path, *, do_lower_case=True) -> collections.Counter:
    counts = collections.Counter()
    for line in path.read_text(encoding="utf-8").split("\n"):
        counts.update(basic_tokenization.split_words(line, do_lower_case=do_lower_case))
    return counts


@pytest.fixture(scope="module")
def alice(data_dir):
    return data_dir / "books" / "pg11-alice-in-wonderland.txt"


@pytest.fixture(scope="module")
def corpus_dir(data_dir, tmp_path_factory):
    """Text shards: three real books as they are, plus the Wikipedia sample's raw wikitext."""
    folder = tmp_path_factory.mktemp("shards")
    for path in pretraining_fixtures.real_books():
        (folder / f"book-{path.name}").write_bytes(path.read_bytes())
    xml = bz2.decompress(
        (data_dir / "wikipedia" / "enwiki-articles1-shortened-multistream.xml.bz2").read_bytes()
    ).decode("utf-8")
    texts = [html.unescape(m.group(1)) for m in re.finditer(r"<text[^>]*>(.*?)</text>", xml, re.S)]
    (folder / "wiki-00000.txt").write_text("\n\n".join(texts), encoding="utf-8")
    return folder


# --- The learner: the same vocab as tensorflow-text's, token for token --------------------------


@pytest.mark.parametrize(
    ("vocab_size", "do_lower_case", "params"),
    [
        (700, True, LearnParams()),
        (1500, False, LearnParams()),
        (400, True, LearnParams(max_unique_chars=40, max_input_tokens=1500, num_iterations=3)),
    ],
)
def test_learner_equals_tensorflow_text(alice, vocab_size, do_lower_case, params):
    # Ranked input: tensorflow-text breaks count ties by input order, we by word.
    counts = vocab_learning.rank_words(_word_counts(alice, do_lower_case=do_lower_case).items())
    reserved = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    kwargs = {k: v for k, v in vars(params).items() if k != "joiner"}
    expected = tf_text_learner.learn(counts, vocab_size, reserved, **kwargs)
    assert vocab_learning.learn(counts, vocab_size, reserved, params=params) == expected
    assert len(expected) <= vocab_size  # the original stops within 5% below the size


def test_input_selection_equals_tensorflow_text(alice):
    counts = vocab_learning.rank_words(_word_counts(alice).items())
    params = LearnParams(max_unique_chars=30, max_input_tokens=900, max_token_length=8)
    reserved = ["the", "[PAD]"]
    selected, bounds = vocab_learning.select_words(counts, reserved_tokens=reserved, params=params)
    candidates = tf_text_learner.get_input_words(counts, reserved, 8)
    allowed = tf_text_learner.get_allowed_chars(candidates, 30)
    assert selected == tf_text_learner.filter_input_words(candidates, allowed, 900)
    assert all(len(w) <= 8 and w != "the" for w, _ in selected)
    upper, lower = tf_text_learner.get_search_threshs(counts, int(1e7), 10)
    assert bounds == (lower, upper)


def test_exact_size_tops_up_and_keeps_every_character(alice):
    counts = _word_counts(alice)
    reserved = vocab.special_prefix()
    learned = vocab_learning.learn(counts, 2000, reserved)
    exact = vocab_learning.learn(counts, 2000, reserved, exact_size=True)
    assert len(learned) < 2000 and len(exact) == 2000
    assert exact[: len(learned)] == learned  # the learned vocab, then the most useful extra pieces
    chars = {c for word in counts for c in word}
    assert chars <= set(exact) and {"##" + c for c in chars} <= set(exact)


def test_exact_size_cut_never_drops_characters():
    # A search range that cannot reach the size from above: the vocab is cut, characters stay.
    counts = {"abcdef": 50, "abcxyz": 50, "uvw": 40}
    params = LearnParams(lower_thresh=1, upper_thresh=1)
    # 12 characters, their 12 "##" forms and the 3 words: 27 tokens learned.
    assert len(vocab_learning.learn(counts, 25, [], params=params)) == 27
    tokens = vocab_learning.learn(counts, 25, [], params=params, exact_size=True)
    chars = set("abcdefxyzuvw")
    # Two pieces must go: the least frequent ones ("abcxyz" ties "abcdef" and sorts after it).
    assert "abcdef" in tokens and "abcxyz" not in tokens and "uvw" not in tokens
    assert len(tokens) == 25 and chars <= set(tokens) and {"##" + c for c in chars} <= set(tokens)
    with pytest.raises(ValueError, match="cannot hold"):
        vocab_learning.learn(counts, 20, [], params=params, exact_size=True)


def test_too_small_corpus_and_empty_corpus_are_errors():
    with pytest.raises(ValueError, match="too small for vocab_size 500"):
        vocab_learning.learn({"tiny": 3, "corpus": 2}, 500, [], exact_size=True)
    with pytest.raises(ValueError, match="corpus is empty"):
        vocab_learning.learn({}, 500, [])


# --- Beam steps -------------------------------------------------------------------------------------


def test_count_words_sums_over_shards(tmp_path):
    (tmp_path / "a.txt").write_text("The cat, the CAT.\n\nCafé\n", encoding="utf-8")
    (tmp_path / "b.txt").write_bytes(b"the end \xff\n[SEP]")
    expected = {"the": 3, "cat": 2, ",": 1, ".": 1, "cafe": 1, "end": 1, "[": 1, "sep": 1, "]": 1}
    with test_pipeline.TestPipeline(runner="FnApiRunner") as pipeline:
        counts = (
            pipeline
            | beam.Create([str(tmp_path / "a.txt"), str(tmp_path / "b.txt")])
            | build_vocab.CountWords(do_lower_case=True)
        )
        assert_that(counts, equal_to(list(expected.items())))
    totals = {
        c.key.metric.name: c.committed
        for c in pipeline.result.metrics().query()["counters"]  # type: ignore[attr-defined]
    }
    assert totals["invalid_utf8_lines"] == 1 and totals["lines"] == 5 and totals["files"] == 2


@pytest.mark.parametrize(
    "do_lower_case, strip_accents, words",
    [(True, False, ["café", "naïve"]), (False, True, ["Cafe", "naive"]), (True, None, ["cafe"])],
)
def test_count_words_strips_accents_apart_from_lower_case(
    tmp_path, do_lower_case, strip_accents, words
):
    (tmp_path / "a.txt").write_text("Café naïve\n", encoding="utf-8")
    with test_pipeline.TestPipeline(runner="FnApiRunner") as pipeline:
        counts = (
            pipeline
            | beam.Create([str(tmp_path / "a.txt")])
            | build_vocab.CountWords(do_lower_case=do_lower_case, strip_accents=strip_accents)
            | beam.Keys()
        )
        expected = ["cafe", "naive"] if strip_accents is None else words
        assert_that(counts, equal_to(expected))


def test_select_learner_input_equals_in_memory_selection(alice):
    counts = _word_counts(alice)
    params = LearnParams(max_unique_chars=25, max_input_tokens=700)
    reserved = vocab.special_prefix(num_unused=3)
    expected = vocab_learning.select_words(counts.items(), reserved_tokens=reserved, params=params)
    with test_pipeline.TestPipeline(runner="FnApiRunner") as pipeline:
        selected = (
            pipeline
            | beam.Create(sorted(counts.items()))
            | build_vocab.SelectLearnerInput(params=params, reserved_tokens=reserved)
        )
        assert_that(selected, equal_to([expected]))


def test_unreadable_shard_is_an_error_naming_it(tmp_path):
    missing = str(tmp_path / "gone-00000.txt")
    with pytest.raises(OSError, match=f"cannot read text shard {missing}"):
        list(build_vocab.read_lines(missing))
    with (
        pytest.raises(Exception, match="gone-00000.txt"),
        test_pipeline.TestPipeline(runner="FnApiRunner") as pipeline,
    ):
        _ = pipeline | beam.Create([missing]) | build_vocab.CountWords(do_lower_case=True)


# --- The whole job --------------------------------------------------------------------------------


def _tokens_per_word(tokenizer: BertTokenizer, lines: list[str]) -> tuple[float, float]:
    ids = np.concatenate(tokenizer.tokenize_to_ids(lines))
    words = sum(len(basic_tokenization.split_words(x, do_lower_case=True)) for x in lines)
    return len(ids) / words, float(np.mean(ids == tokenizer.unk_id))


def test_wordpiece_vocab_on_bundled_corpus(corpus_dir, tmp_path, data_dir):
    output = str(tmp_path / "run1" / "vocab.txt")
    config = build_vocab.BuildVocabConfig(
        input=f"{corpus_dir}/book-*.txt,{corpus_dir}/wiki-*.txt", output=output, vocab_size=8000
    )
    record = build_vocab.run(config)
    tokens = vocab.load(output, expected_size=8000)
    assert tokens[:104] == vocab.special_prefix()
    assert record["counts"]["files"] == 4 and record["counts"]["vocab_tokens"] == 8000
    assert record["counts"]["lines"] > 40_000 and record["counts"]["words"] > 500_000
    assert record["flags"]["input"] == config.input and record["flags"]["vocab_size"] == 8000
    assert metadata.read(str(tmp_path / "run1"))["vocab"]["sha256"] == storage.sha256(output)

    # Byte-identical on a rerun, with another worker count.
    rerun = str(tmp_path / "run2" / "vocab.txt")
    build_vocab.run(
        dataclasses.replace(config, input=str(corpus_dir / "*.txt"), output=rerun),
        beam_args=["--direct_num_workers=2", "--direct_running_mode=multi_threading"],
    )
    assert storage.sha256(rerun) == storage.sha256(output)

    # Usable by our tokenizer, which spells every corpus word without [UNK]...
    lines = (data_dir / "books" / "pg84-frankenstein.txt").read_text(encoding="utf-8").split("\n")
    tokenizer = BertTokenizer(output)
    pieces_per_word, unk_rate = _tokens_per_word(tokenizer, lines)
    assert unk_rate == 0.0 and 1.0 < pieces_per_word < 1.3
    # ...and by tensorflow-text's BertTokenizer directly, with the same pieces on plain text.
    tf_tokenizer = tf_text.BertTokenizer(
        tf.lookup.StaticVocabularyTable(
            tf.lookup.KeyValueTensorInitializer(
                tokens, tf.range(len(tokens), dtype=tf.int64), value_dtype=tf.int64
            ),
            num_oov_buckets=1,
        ),
        lower_case=True,
    )
    sample = ["It was on a dreary night of November that I beheld my man completed."]
    got = tf_tokenizer.tokenize(sample).merge_dims(1, 2).to_list()[0]
    assert got == tokenizer.tokenize_to_ids(sample)[0].tolist()


def test_sentencepiece_vocab(data_dir, tmp_path):
    outputs = []
    for run in ("a", "b"):
        output = str(tmp_path / run / "vocab.txt")
        config = build_vocab.BuildVocabConfig(
            input=str(data_dir / "books" / "*.txt"),
            output=output,
            vocab_size=1500,
            algorithm="sentencepiece",
            sentencepiece_sentences=3000,
        )
        build_vocab.run(config)
        outputs.append(output)
    model_path = build_vocab.sentencepiece_model_path(outputs[0])
    assert model_path.endswith("/a/vocab.model")
    for path in (outputs[0], model_path):
        assert storage.sha256(path) == storage.sha256(path.replace("/a/", "/b/"))
    model = sentencepiece.SentencePieceProcessor(model_file=model_path)
    assert model.get_piece_size() == 1500 - 104 + 2
    tokens = vocab.load(outputs[0], expected_size=1500)
    assert tokens[:104] == vocab.special_prefix()
    assert any(t.startswith("##") for t in tokens) and "\u2581" not in "".join(tokens)
    tokenizer = BertTokenizer(outputs[0])
    lines = (data_dir / "books" / "pg84-frankenstein.txt").read_text(encoding="utf-8").split("\n")
    pieces_per_word, unk_rate = _tokens_per_word(tokenizer, lines)
    assert unk_rate < 0.01 and pieces_per_word < 2.0
    metadata_record = json.loads((tmp_path / "a" / "metadata.json").read_text())
    assert [o["path"] for o in metadata_record["outputs"]] == ["vocab.txt", "vocab.model"]


def test_sentencepiece_vocab_too_small_for_the_characters_is_refused():
    pieces = ["\u2581ab", "c", "\u2581d", "e"]  # characters a-e: 10 tokens with their ## forms
    reserved = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokens = build_vocab.sentencepiece_to_wordpiece(pieces, vocab_size=15, reserved_tokens=reserved)
    assert {"a", "##a", "e", "##e"} <= set(tokens) and len(tokens) == 15
    # One token fewer would have cut "##e" (the last character's continuation form) silently.
    with pytest.raises(ValueError, match="too small for this text: its 5 characters.*15 or more"):
        build_vocab.sentencepiece_to_wordpiece(pieces, vocab_size=14, reserved_tokens=reserved)


def test_empty_corpus_is_an_error(tmp_path):
    (tmp_path / "blank-00000.txt").write_text("\n \n\t\n", encoding="utf-8")
    output = tmp_path / "out" / "vocab.txt"
    with pytest.raises(Exception, match="corpus is empty"):
        build_vocab.run(
            build_vocab.BuildVocabConfig(
                input=str(tmp_path / "blank-*.txt"), output=str(output), vocab_size=500
            )
        )
    assert not (tmp_path / "out" / "metadata.json").exists()
    with pytest.raises(FileNotFoundError, match="no file matches"):
        build_vocab.run(
            build_vocab.BuildVocabConfig(input=str(tmp_path / "none-*.txt"), output=str(output))
        )


def test_command_on_gcs(data_dir, gcs_dir):
    source = storage.join(gcs_dir, "shards", "alice-00000.txt")
    storage.atomic_write(source, (data_dir / "books" / "pg11-alice-in-wonderland.txt").read_bytes())
    output = storage.join(gcs_dir, "vocab", "vocab.txt")
    args = [f"--input={gcs_dir}/shards/*.txt", f"--output={output}", "--vocab_size=1200"]
    subprocess.run(
        [sys.executable, "-m", "pipeline.build_vocab", *args, "--nodo_lower_case"], check=True
    )
    tokens = vocab.load(output, expected_size=1200)
    assert "Alice" in tokens  # cased
    record = metadata.read(storage.join(gcs_dir, "vocab"))
    assert record["flags"]["do_lower_case"] is False and record["flags"]["vocab_size"] == 1200
    assert record["inputs"][0]["path"] == source
