"""tokenizer.BertTokenizer (tensorflow-text) and tokenizer.WordPieceTokenizer (plain Python)
against google-research/bert's FullTokenizer (reproduced in tests/google_reference_tokenization.py
as the reference), on real text, on every character and on each known difference of
tensorflow-text's own normalization."""

from __future__ import annotations

import bz2
import html
import pickle
import re
import subprocess
import sys
import unicodedata

import numpy as np
import pytest
import tensorflow as tf

from contracts import storage
from launch import sample_data
from tests import pretraining_fixtures
from tests.conftest import UNCASED_VOCAB
from tests.google_reference_tokenization import FullTokenizer
from tokenizer import BertTokenizer, WordPieceTokenizer, vocab, wordpiece
from tokenizer.tokenize import tokenize_file


def _corpus_lines(data_dir) -> list[str]:
    """Every line of three real books and of the raw wikitext of the Wikipedia samples."""
    lines = []
    for path in pretraining_fixtures.real_books():
        lines += path.read_text(encoding="utf-8").split("\n")
    for name in (sample_data.WIKI_MULTISTREAM, sample_data.WIKI_TABLES, sample_data.TINYWIKI):
        path = data_dir / name
        raw = path.read_bytes()
        xml = (bz2.decompress(raw) if path.suffix == ".bz2" else raw).decode("utf-8")
        for match in re.finditer(r"<text[^>]*>(.*?)</text>", xml, re.S):
            lines += html.unescape(match.group(1)).split("\n")
    return lines


@pytest.fixture(scope="module")
def corpus_lines(data_dir) -> list[str]:
    lines = _corpus_lines(data_dir)
    assert len(lines) > 40_000 and sum(not line.isascii() for line in lines) > 5_000
    return lines


@pytest.fixture(scope="module")
def uncased() -> BertTokenizer:
    return BertTokenizer(UNCASED_VOCAB, do_lower_case=True)


@pytest.fixture(scope="module")
def cased_vocab_file(tmp_path_factory) -> str:
    """A small cased vocab: the uncased one plus capitalised words and accented pieces."""
    tokens = vocab.load(UNCASED_VOCAB)
    extra = [t.capitalize() for t in tokens[1000:8000] if t.isalpha() and t.isascii()]
    extra += ["##é", "é", "Café", "É", "##ß", "Σ", "##Σ", "ΟΔΟΣ", "Ä", "##Ä"]
    seen = set(tokens)
    cased = tokens + [t for t in dict.fromkeys(extra) if t not in seen]
    path = str(tmp_path_factory.mktemp("cased") / "cased-vocab.txt")
    vocab.write(path, cased)
    return path


@pytest.fixture(scope="module")
def cased(cased_vocab_file) -> BertTokenizer:
    return BertTokenizer(cased_vocab_file, do_lower_case=False)


def _python_twin(tokenizer: BertTokenizer) -> WordPieceTokenizer:
    """The plain-Python tokenizer over the same vocab and normalization."""
    return WordPieceTokenizer.from_tokens(
        tokenizer.id_to_token(range(tokenizer.vocab_size)),
        do_lower_case=tokenizer.do_lower_case,
        strip_accents=tokenizer.strip_accents,
    )


# --- Real text: every line of the bundled books and Wikipedia sample ---------------------------


def test_uncased_matches_google_on_every_corpus_line(corpus_lines, uncased):
    reference = FullTokenizer(UNCASED_VOCAB, do_lower_case=True)
    ours = uncased.tokenize(corpus_lines)
    mismatches = [
        (line, want, got)
        for line, want, got in zip(
            corpus_lines, (reference.tokenize(x) for x in corpus_lines), ours, strict=True
        )
        if want != got
    ]
    assert not mismatches, mismatches[:3]
    # The ids are the same pieces.
    ids = uncased.tokenize_to_ids(corpus_lines[:2000])
    assert [uncased.id_to_token(row) for row in ids] == ours[:2000]
    # The plain-Python tokenizer gives the same ids on every line.
    python_ids = _python_twin(uncased).tokenize_to_ids(corpus_lines)
    assert [row.tolist() for row in python_ids] == [
        uncased.convert_tokens_to_ids(row) for row in ours
    ]


def test_cased_matches_google_on_every_corpus_line(corpus_lines, cased, cased_vocab_file):
    reference = FullTokenizer(cased_vocab_file, do_lower_case=False)
    ours = cased.tokenize(corpus_lines)
    mismatches = [
        (line, got)
        for line, got in zip(corpus_lines, ours, strict=True)
        if reference.tokenize(line) != got
    ]
    assert not mismatches, mismatches[:3]
    assert _python_twin(cased).tokenize(corpus_lines) == ours
    # Cased really is cased: capitalised words keep their own pieces.
    assert cased.tokenize(["The Café"]) == [["The", "Café"]]


def test_graph_version_matches_google_on_corpus(corpus_lines, uncased):
    reference = FullTokenizer(UNCASED_VOCAB, do_lower_case=True)
    sample = corpus_lines[::4]
    got = uncased.tokenize_tensor(tf.constant(sample)).to_list()
    mismatches = [
        (line, uncased.id_to_token(row))
        for line, row in zip(sample, got, strict=True)
        if reference.tokenize(line) != uncased.id_to_token(row)
    ]
    assert not mismatches, mismatches[:3]


# --- Every single character, in context ---------------------------------------------------------


def _every_character_texts() -> list[str]:
    code_points = [cp for cp in range(0x10000) if not 0xD800 <= cp <= 0xDFFF]
    # Beyond the BMP: every assigned character outside the big ideograph and private-use planes.
    code_points += [
        cp for cp in range(0x10000, 0x20000) if unicodedata.category(chr(cp)) not in ("Cn", "Co")
    ]
    return [f"a{chr(cp)}b {chr(cp)}Z" for cp in code_points]


@pytest.mark.parametrize("do_lower_case", [True, False])
def test_every_character_matches_google(do_lower_case, uncased, cased, cased_vocab_file):
    # Each character between letters and alone: shows whether it is deleted, whitespace,
    # punctuation, a CJK word, an accent, or a letter, the same way Google's code decides.
    tokenizer = uncased if do_lower_case else cased
    vocab_file = UNCASED_VOCAB if do_lower_case else cased_vocab_file
    reference = FullTokenizer(vocab_file, do_lower_case=do_lower_case)
    texts = _every_character_texts()
    ours = tokenizer.tokenize(texts)
    graph = tokenizer.tokenize_tensor(tf.constant(texts)).to_list()
    python = _python_twin(tokenizer).tokenize(texts)
    for text, got, got_graph, got_python in zip(texts, ours, graph, python, strict=True):
        want = reference.tokenize(text)
        assert got == want, (hex(ord(text[1])), got, want)
        assert tokenizer.id_to_token(got_graph) == want, (hex(ord(text[1])), got_graph, want)
        assert got_python == want, (hex(ord(text[1])), got_python, want)


# --- Where tensorflow-text's own normalization differs from Google's: one test each ----------


def _assert_google(tokenizer: BertTokenizer, text: str, expected: list[str]) -> None:
    vocab_file = UNCASED_VOCAB if tokenizer.do_lower_case else tokenizer.source
    reference = FullTokenizer(vocab_file, do_lower_case=tokenizer.do_lower_case)
    assert reference.tokenize(text) == expected  # the case is stated right
    assert tokenizer.tokenize([text]) == [expected]
    assert _python_twin(tokenizer).tokenize([text]) == [expected]
    graph = tokenizer.tokenize_tensor(tf.constant([text])).to_list()[0]
    assert tokenizer.id_to_token(graph) == expected


def test_no_nfkc_folding_of_ligatures_superscripts_and_full_width(uncased):
    # tensorflow-text folds "ﬁ" to "fi", "²" to "2" and full-width letters to ASCII (NFKC).
    _assert_google(uncased, "ﬁne ² ｆｕｌｌ", ["ﬁ", "##ne", "²", "[UNK]"])


def test_ellipsis_character_is_one_punctuation_mark(uncased):
    # NFKC would make "…" three "." pieces.
    _assert_google(uncased, "wait…", ["wait", "…"])


def test_sharp_s_and_final_sigma_are_lower_cased_not_case_folded(uncased):
    # Case folding makes "ß" "ss" and every sigma "σ"; Python's lower() keeps "ß" and writes a
    # final sigma "ς", as Google's tokenizer does.
    _assert_google(uncased, "Straße ΟΔΟΣ", ["st", "##raße", "ο", "##δ", "##ος"])


def test_control_characters_are_deleted_not_turned_into_spaces(uncased):
    # tensorflow-text makes them spaces: "co operate", "a b", "x y".
    _assert_google(
        uncased,
        "co\xadoperate a\x7fb x\x01y in\u200bto",
        ["cooperate", "ab", "x", "##y", "into"],
    )


def test_nul_and_replacement_character_are_deleted(uncased):
    _assert_google(uncased, "to\x00ge\ufffdther", ["together"])


def test_special_tokens_in_raw_text_stay_plain_text(uncased):
    text = "[CLS] a [SEP] b [MASK] c [PAD] [UNK]"
    expected = ["[", "cl", "##s", "]", "a", "[", "sep", "]", "b", "[", "mask", "]", "c"]
    expected += ["[", "pad", "]", "[", "un", "##k", "]"]
    _assert_google(uncased, text, expected)
    ids = uncased.tokenize_to_ids([text])[0]
    special = [uncased.cls_id, uncased.sep_id, uncased.mask_id, uncased.pad_id, uncased.unk_id]
    assert not np.isin(ids, special).any()


def test_cjk_ideographs_split_and_kana_not(uncased):
    _assert_google(uncased, "日本語テキスト", ["日", "本", "語", "テ", "##キ", "##ス", "##ト"])


def test_chinese_punctuation_is_split(uncased):
    _assert_google(
        uncased, "中国，世人。「人」", ["中", "国", "，", "世", "人", "。", "「", "人", "」"]
    )


def test_symbols_that_are_not_punctuation_stay_attached(uncased):
    # "€", "©", "°" are symbols (Sc, So), not punctuation: Google keeps them inside the word.
    _assert_google(uncased, "€5 ©2020 °C", ["€", "##5", "©", "##20", "##20", "°c"])


def test_accents_stripped_when_uncased_kept_when_cased(uncased, cased):
    _assert_google(uncased, "Café naïve", ["cafe", "naive"])
    _assert_google(cased, "Café", ["Café"])


@pytest.mark.parametrize(
    "do_lower_case, strip_accents", [(True, None), (True, False), (False, True), (False, None)]
)
def test_strip_accents_apart_from_lower_case_matches_hugging_face(
    corpus_lines, do_lower_case, strip_accents
):
    # Hugging Face's BERT normalizer (tokenizers, Rust) is the reference for strip_accents set
    # apart from lower-casing. Its lower-casing knows no final sigma (Google's, Python's, does),
    # so lines with a capital sigma are left out; its NFC first is a no-op on NFC lines.
    from tokenizers import normalizers, pre_tokenizers

    from tokenizer import basic_tokenization

    normalizer = normalizers.BertNormalizer(
        clean_text=True,
        handle_chinese_chars=True,
        strip_accents=strip_accents,
        lowercase=do_lower_case,
    )
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    lines = [
        line
        for line in corpus_lines
        if not line.isascii() and "Σ" not in line and unicodedata.is_normalized("NFC", line)
    ]
    assert len(lines) > 5_000
    mismatches = [
        (line, got)
        for line in lines
        if (
            got := basic_tokenization.split_words(
                line, do_lower_case=do_lower_case, strip_accents=strip_accents
            )
        )
        != [word for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(line))]
    ]
    assert not mismatches, mismatches[:3]


def test_strip_accents_in_python_and_in_the_graph(cased_vocab_file):
    tokens = vocab.load(cased_vocab_file) + ["café", "résumé", "हिन्दी"]
    texts = ["Café résumé", "CAFÉ", "हिन्दी", "Cafe"]
    # Stripping "accents" (category Mn) also drops Devanagari's virama: the word falls apart.
    hindi_stripped = ["ह", "##ि", "##न", "##द", "##ी"]
    cases = {
        # (do_lower_case, strip_accents): the pieces of each text
        (True, False): [["café", "résumé"], ["café"], ["हिन्दी"], ["cafe"]],
        (True, True): [["cafe", "resume"], ["cafe"], hindi_stripped, ["cafe"]],
        (False, True): [["Cafe", "resume"], ["[UNK]"], hindi_stripped, ["Cafe"]],
        (False, False): [["Café", "résumé"], ["[UNK]"], ["हिन्दी"], ["Cafe"]],
    }
    for (do_lower_case, strip_accents), expected in cases.items():
        tokenizer = BertTokenizer.from_tokens(
            tokens, do_lower_case=do_lower_case, strip_accents=strip_accents
        )
        assert tokenizer.tokenize(texts) == expected, (do_lower_case, strip_accents)
        graph = tokenizer.tokenize_tensor(tf.constant(texts)).to_list()
        assert graph == [ids.tolist() for ids in tokenizer.tokenize_to_ids(texts)]
        clone = pickle.loads(pickle.dumps(tokenizer))
        assert (clone.do_lower_case, clone.strip_accents) == (do_lower_case, strip_accents)
    # Left out, it follows do_lower_case (Google's rule).
    assert BertTokenizer.from_tokens(tokens, do_lower_case=True).strip_accents is True
    assert BertTokenizer.from_tokens(tokens, do_lower_case=False).strip_accents is False


def test_unicode_line_separator_is_whitespace(uncased):
    _assert_google(uncased, "one\u2028two\u3000three\xa0four", ["one", "two", "three", "four"])


def test_word_of_more_than_100_characters_is_unknown(uncased):
    _assert_google(uncased, "a" * 100, ["aaa", *["##aa"] * 48, "##a"])
    _assert_google(uncased, "a" * 101 + " b", ["[UNK]", "b"])


def test_100_character_limit_counts_characters_not_bytes(cased):
    # tensorflow-text counts bytes: 100 "é" are 200 bytes, within Google's 100 characters.
    _assert_google(cased, "é" * 100, ["é", *["##é"] * 99])
    _assert_google(cased, "é" * 101, ["[UNK]"])
    sixty = ["Ä", *["##Ä"] * 59]
    _assert_google(cased, "Ä" * 60 + "." + "Ä" * 60, [*sixty, ".", *sixty])


def test_scripts_without_spaces_are_split_past_100_characters(uncased):
    # Thai puts spaces between phrases only, so a phrase is one "word" to basic tokenization:
    # Google's tokenizer makes one over 100 characters a single [UNK]; ours splits it like any
    # word, up to 1000 characters, in Python, in tensorflow-text and in the graph.
    words = ["แมว", "เป็น", "สัตว์", "เลี้ยง"]
    tokens = uncased.id_to_token(range(uncased.vocab_size))
    pieces = [*tokens, *words, *(f"##{w}" for w in words)]
    thai = BertTokenizer.from_tokens(pieces, strip_accents=False)  # keeps Thai vowel marks
    phrase = "".join(words) * 8
    assert 100 < len(phrase) < 1000
    expected = ["แมว", *[f"##{w}" for w in words[1:]], *[f"##{w}" for w in words] * 7]
    too_long = "".join(words) * 60
    assert len(too_long) > 1000
    texts = [f"{phrase} a", "b " + too_long, "x" * 101]
    want = [[*expected, "a"], ["b", "[UNK]"], ["[UNK]"]]
    assert thai.tokenize(texts) == want
    assert _python_twin(thai).tokenize(texts) == want
    graph = thai.tokenize_tensor(tf.constant(texts)).to_list()
    assert [thai.id_to_token(ids) for ids in graph] == want


def test_empty_and_blank_texts(uncased):
    assert uncased.tokenize(["", "   ", "\t\n"]) == [[], [], []]
    ids = uncased.tokenize_to_ids(["", "x"])
    assert ids[0].dtype == np.int32 and ids[0].shape == (0,)
    assert uncased.tokenize([]) == []


# --- API --------------------------------------------------------------------------------------


def test_ids_and_special_tokens(uncased):
    tokens = vocab.load(UNCASED_VOCAB)
    assert uncased.vocab_size == len(tokens) == 30522
    assert (uncased.pad_id, uncased.unk_id, uncased.cls_id, uncased.sep_id, uncased.mask_id) == (
        0,
        100,
        101,
        102,
        103,
    )
    ids = uncased.tokenize_to_ids(["The unaffable x"])[0]
    assert ids.dtype == np.int32
    assert uncased.id_to_token(ids) == ["the", "una", "##ffa", "##ble", "x"]
    assert uncased.convert_tokens_to_ids(["the", "##ble"]) == [uncased.vocab["the"], 3468]
    assert uncased.is_continuation.shape == (30522,) and uncased.is_continuation.dtype == bool
    assert uncased.is_continuation.sum() == sum(t.startswith("##") for t in tokens)
    assert uncased.is_continuation[ids].tolist() == [False, False, True, True, False]


def test_passing_one_string_is_an_error(uncased):
    with pytest.raises(TypeError, match="sequence of texts"):
        uncased.tokenize_to_ids("one text")
    with pytest.raises(TypeError, match="sequence of texts"):
        _python_twin(uncased).tokenize_to_ids("one text")


def test_python_tokenizer_empty_batches_and_texts(uncased):
    python = _python_twin(uncased)
    assert python.tokenize_to_ids([]) == []
    ids = python.tokenize_to_ids(["", "x", "  "])
    assert [row.dtype for row in ids] == [np.int32] * 3
    assert [row.shape for row in ids] == [(0,), (1,), (0,)]


def test_python_tokenizer_memo_is_bounded_and_changes_nothing(uncased, monkeypatch):
    texts = [f"word{i} the unaffable {i * 7919}th" for i in range(400)]
    want = [row.tolist() for row in uncased.tokenize_to_ids(texts)]
    monkeypatch.setattr(wordpiece, "MEMO_WORDS", 50)
    python = _python_twin(uncased)
    got = []
    for start in range(0, len(texts), 20):  # the memo is checked once a batch
        got += [row.tolist() for row in python.tokenize_to_ids(texts[start : start + 20])]
        assert len(python._memo) <= 50 + 20 * 8
    assert got == want


def test_python_tokenizer_and_the_pipeline_load_no_tensorflow():
    # create_pretraining_data's driver and workers tokenize with it: no TensorFlow in them.
    code = (
        "import sys\n"
        "import pipeline.create_pretraining_data\n"
        "from tokenizer import WordPieceTokenizer\n"
        f"t = WordPieceTokenizer({UNCASED_VOCAB!r})\n"
        "assert t.tokenize(['Héllo, world']) == [['hello', ',', 'world']]\n"
        "loaded = [m for m in ('tensorflow', 'tensorflow_text', 'keras') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_pickles_without_the_vocab_file(uncased, tmp_path):
    path = tmp_path / "vocab.txt"
    vocab.write(str(path), vocab.load(UNCASED_VOCAB))
    tokenizer = BertTokenizer(str(path))
    path.unlink()  # a Beam worker need not see the file
    clone = pickle.loads(pickle.dumps(tokenizer))
    assert clone.tokenize(["Hello, Wörld"]) == [["hello", ",", "world"]]
    assert clone.vocab_size == tokenizer.vocab_size


def test_graph_version_in_tf_data(uncased):
    texts = ["Hello, World!", "Café ﬁ", ""]
    dataset = tf.data.Dataset.from_tensor_slices(texts).batch(2).map(uncased.tokenize_tensor)
    rows = [row for batch in dataset for row in batch.to_list()]
    assert rows == [ids.tolist() for ids in uncased.tokenize_to_ids(texts)]


def test_bad_vocab_file_is_an_error_naming_it(tmp_path):
    path = tmp_path / "dup.txt"
    path.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nx\nx\n", encoding="utf-8")
    with pytest.raises(ValueError, match=f"{path}.*duplicate token 'x' on lines 6 and 7"):
        BertTokenizer(str(path))


# --- python -m tokenizer.tokenize -------------------------------------------------------------


def test_tokenize_file_one_line_out_per_line_in(uncased, tmp_path):
    source = tmp_path / "in.txt"
    source.write_bytes(
        b"Hello, World!\n\n" + "Café [SEP]\r\n".encode() + b"bad \xff\xfe bytes\nno newline"
    )
    output = tmp_path / "out" / "tokens.txt"
    counts = tokenize_file(str(source), str(output), uncased, batch_size=2)
    assert output.read_text(encoding="utf-8").split("\n") == [
        "hello , world !",
        "",
        "cafe [ sep ]",
        "bad bytes",
        "no new ##line",
        "",
    ]
    assert (counts.lines, counts.invalid_utf8_lines, counts.unknown_pieces) == (5, 1, 0)
    assert counts.pieces == 13
    assert [p.name for p in output.parent.iterdir()] == ["tokens.txt"]  # no temporary left


def test_tokenize_file_on_gcs(uncased, gcs_dir):
    source = storage.join(gcs_dir, "in.txt")
    storage.atomic_write(source, "Straße\nΟΔΟΣ\n")
    output = storage.join(gcs_dir, "out.txt")
    tokenize_file(source, output, uncased)
    assert storage.read_text(output) == "st ##raße\nο ##δ ##ος\n"


def test_tokenize_command(tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("The Café.\nΣ\n", encoding="utf-8")
    output = tmp_path / "out.txt"
    args = [f"--vocab_file={UNCASED_VOCAB}", f"--input={source}", f"--output={output}"]
    subprocess.run([sys.executable, "-m", "tokenizer.tokenize", *args], check=True)
    assert output.read_text(encoding="utf-8") == "the cafe .\nσ\n"
    missing = subprocess.run(
        [
            sys.executable,
            "-m",
            "tokenizer.tokenize",
            *args[:1],
            f"--input={tmp_path}/nope",
            *args[2:],
        ],
        capture_output=True,
        text=True,
    )
    assert missing.returncode != 0 and f"{tmp_path}/nope" in missing.stderr


@pytest.mark.parametrize("max_seq_length", [6, 9, 16, 64])
def test_pack_tensor_packs_and_truncates_as_classifier_features(uncased, max_seq_length):
    # The in-graph packing (serving exports) and the Python one (run_classifier's features)
    # must give the same ids, or a served model sees other inputs than it was trained on.
    from trainer import classifier_features, glue

    pairs = [
        ("A short one.", "And a much, much longer second sentence than the first one is."),
        ("The first sentence is the longer of the two here, by far.", "Short."),
        ("Equal length here", "same length there"),
        ("", "Only the second segment has words."),
        ("Ünïcödé accents and CJK 中文 too", "tiny"),
    ]
    examples = [
        glue.Example(guid=str(i), text_a=a, text_b=b, label=None) for i, (a, b) in enumerate(pairs)
    ]
    singles = [
        glue.Example(guid=str(i), text_a=a, text_b=None, label=None)
        for i, (a, _) in enumerate(pairs)
    ]
    for batch, texts_b in ((examples, [b for _, b in pairs]), (singles, None)):
        expected = classifier_features.encode(
            batch, uncased, max_seq_length=max_seq_length, labels=()
        )
        packed = uncased.pack_tensor(
            tf.constant([a for a, _ in pairs]),
            None if texts_b is None else tf.constant(texts_b),
            max_seq_length=max_seq_length,
        )
        width = packed["input_word_ids"].shape[1]
        assert width <= max_seq_length
        assert expected["input_mask"][:, width:].sum() == 0  # padded to the longest only
        for ours, theirs in (
            ("input_word_ids", "input_ids"),
            ("input_mask", "input_mask"),
            ("input_type_ids", "segment_ids"),
        ):
            np.testing.assert_array_equal(packed[ours].numpy(), expected[theirs][:, :width])
