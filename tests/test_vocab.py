"""tokenizer.vocab: reading, validating and writing vocab files; BERT's layout."""

from __future__ import annotations

import pytest

from contracts import storage
from tests.conftest import UNCASED_VOCAB
from tokenizer import vocab

SPECIAL = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n"


def test_loads_google_vocab_with_bert_layout():
    tokens = vocab.load(UNCASED_VOCAB, expected_size=30522)
    assert len(tokens) == 30522
    # Our default layout is the start of Google's: [PAD], 99 unused, then the four specials.
    assert tokens[:104] == vocab.special_prefix()
    assert tokens.index("[MASK]") == 103


def test_strips_lines_like_google(tmp_path):
    path = tmp_path / "v.txt"
    path.write_text(SPECIAL.replace("\n", " \r\n") + "  word\t\n##ing", encoding="utf-8")
    assert vocab.load(str(path)) == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "word", "##ing"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (SPECIAL + "a\nb\na\n", "duplicate token 'a' on lines 6 and 8"),
        ("[PAD]\n[UNK]\n[SEP]\na\n", r"missing special token\(s\) \[CLS\], \[MASK\]"),
        (SPECIAL + "a\n\nb\n", "line 7 is empty"),
        ("", "the vocab is empty"),
    ],
)
def test_bad_vocab_errors_name_the_file(tmp_path, content, message):
    path = tmp_path / "bad-vocab.txt"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=message) as error:
        vocab.load(str(path))
    assert str(path) in str(error.value)


def test_wrong_size_is_an_error(tmp_path):
    path = tmp_path / "v.txt"
    path.write_text(SPECIAL + "a\n", encoding="utf-8")
    assert len(vocab.load(str(path), expected_size=6)) == 6
    with pytest.raises(ValueError, match=f"{path}: has 6 tokens, expected 30522"):
        vocab.load(str(path), expected_size=30522)


def test_not_utf8_and_missing_file(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes(SPECIAL.encode() + "café\n".encode("latin-1"))
    with pytest.raises(ValueError, match=f"{path}: not UTF-8"):
        vocab.load(str(path))
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        vocab.load(str(tmp_path / "nope.txt"))


def test_write_round_trip_and_refuses_bad_tokens(tmp_path):
    tokens = [*vocab.special_prefix(num_unused=2), "hello", "##lo", "é"]
    path = str(tmp_path / "out" / "vocab.txt")
    vocab.write(path, tokens)
    assert vocab.load(path) == tokens
    assert storage.read_text(path).endswith("é\n")
    with pytest.raises(ValueError, match="whitespace"):
        vocab.write(path, [*tokens, "two words"])
    with pytest.raises(ValueError, match="duplicate"):
        vocab.write(path, [*tokens, "hello"])
    assert vocab.load(path) == tokens  # a refused write leaves the old file alone


def test_write_and_load_on_gcs(gcs_dir):
    tokens = [*vocab.special_prefix(), "gs", "##cs"]
    path = storage.join(gcs_dir, "vocab.txt")
    vocab.write(path, tokens, expected_size=len(tokens))
    assert vocab.load(path, expected_size=len(tokens)) == tokens


def test_bert_layout():
    tokens = vocab.bert_layout(["a", "[UNK]", "b", "a", "##c", "d"], vocab_size=8, num_unused=1)
    assert tokens == ["[PAD]", "[unused0]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b"]
    with pytest.raises(ValueError, match="too small for this size"):
        vocab.bert_layout(["a"], vocab_size=8, num_unused=1)
    with pytest.raises(ValueError, match="smaller than the 104 special tokens"):
        vocab.bert_layout(["a"], vocab_size=50)
