"""pipeline.books: encodings, Gutenberg boilerplate, rejoined lines, on the real books."""

from __future__ import annotations

import codecs

import apache_beam as beam
import pytest
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from pipeline import books, extract_text

BOOKS = {
    "pg11-alice-in-wonderland.txt": (
        "Alice’s Adventures in Wonderland",
        "Alice was beginning to get very tired of sitting by her sister on the bank,",
        "and the happy summer days.",
    ),
    "pg1661-sherlock-holmes.txt": (
        "The Adventures of Sherlock Holmes",
        "To Sherlock Holmes she is always THE woman.",
        "head of a private school at Walsall, where I believe that she has met with considerable success.",
    ),
    "pg84-frankenstein.txt": (
        "Frankenstein",
        "To Mrs. Saville, England.",
        "He was soon borne away by the waves and lost in darkness and distance.",
    ),
}


@pytest.mark.parametrize("name", sorted(BOOKS))
def test_real_books_lose_all_boilerplate(data_dir, name):
    title, first, last = BOOKS[name]
    book = books.read_book(str(data_dir / "books" / name))
    assert book.title == title
    assert book.language == "en"
    assert book.encoding == "utf-8"
    assert book.has_gutenberg_markers
    assert book.paragraphs[0].startswith(first)
    assert book.paragraphs[-1].endswith(last)
    text = "\n".join(book.paragraphs)
    for boilerplate in ("Gutenberg", "*** START", "*** END", "Produced by", "LICENSE", "eBook"):
        assert boilerplate not in text
    # Hard wraps are gone: every paragraph is one line.
    assert all("\n" not in paragraph for paragraph in book.paragraphs)
    # Headings and the contents are not prose.
    assert not any(p.startswith(("CHAPTER", "ADVENTURE", "Chapter ", "Letter ")) for p in text)


def test_the_contents_of_sherlock_holmes_is_dropped(data_dir):
    book = books.read_book(str(data_dir / "books" / "pg1661-sherlock-holmes.txt"))
    assert not any("The Red-headed League" in paragraph for paragraph in book.paragraphs[:3])


def test_rejoin_lines_keeps_hyphens_and_dashes():
    assert books.rejoin_lines("a waistcoat-\npocket and the\nobserver--\nexcellent") == (
        "a waistcoat-pocket and the observer--excellent"
    )
    assert books.rejoin_lines("  indented\n   verse line ,\n") == "indented verse line ,"


@pytest.mark.parametrize(
    ("paragraph", "prose"),
    [
        ("CHAPTER I. Down the Rabbit-Hole", False),
        ("ADVENTURE I. A SCANDAL IN BOHEMIA", False),
        ("Letter 1", False),
        ("by", False),
        ("“Yes.”", True),
        ("‘Oh dear! Oh dear! I shall be late!’", True),
        ("a long line of running text that has no full stop at its end but goes on", True),
    ],
)
def test_is_prose(paragraph, prose):
    assert books.is_prose(paragraph) is prose


def test_contents_blocks():
    assert books.is_contents("   I. A Scandal\n  II. The League\n III. A Case")
    assert books.is_contents("Chapter 1\nChapter 2\nChapter 3")
    assert not books.is_contents("How doth the little crocodile\nImprove his shining tail,\nAnd")


def _gutenberg(body: str, *, start: str, end: str, header: str = "") -> str:
    return f"{header}\n\n{start}\n\n{body}\n\n{end}\n\nLicence text that must go.\n"


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (
            "*** START OF THE PROJECT GUTENBERG EBOOK X ***",
            "*** END OF THE PROJECT GUTENBERG EBOOK X ***",
        ),
        (
            "***START OF THE PROJECT GUTENBERG EBOOK X***",
            "***END OF THE PROJECT GUTENBERG EBOOK X***",
        ),
        (
            "*END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*",
            "End of the Project Gutenberg EBook of X",
        ),
        ("*** START OF THIS PROJECT GUTENBERG E-TEXT X ***", "End of Project Gutenberg's X, by Y"),
    ],
)
def test_marker_spellings(start, end):
    text = _gutenberg("The body has one sentence.", start=start, end=end, header="Header lines.")
    body, found = books.strip_boilerplate(text)
    assert found
    assert body.strip() == "The body has one sentence."


def test_text_without_markers_is_kept_whole():
    body, found = books.strip_boilerplate("Just a text.\n\nWith two paragraphs.")
    assert not found
    assert books.paragraphs_of(body) == ["Just a text.", "With two paragraphs."]


def test_encodings():
    text = "“Café” – naïve déjà vu. It costs £5."
    assert books.decode(text.encode("utf-8")) == (text, "utf-8")
    assert books.decode(codecs.BOM_UTF8 + text.encode("utf-8")) == (text, "utf-8-sig")
    assert books.decode(text.encode("utf-16")) == (text, "utf-16")
    # Windows-1252 smart quotes and dash: not UTF-8, and Latin-1 would make control characters.
    assert books.decode(text.encode("cp1252")) == (text, "cp1252")
    # 0x81 is undefined in Windows-1252: Latin-1 takes it.
    assert books.decode(b"caf\xe9 \x81") == ("café \x81", "latin-1")
    # A declared charset is tried before Windows-1252.
    assert books.decode("Ça".encode("cp850"), declared="IBM850") == ("Ça", "cp850")


def test_declared_encoding_from_the_header_is_used():
    header = "Title: Kalevala\nLanguage: Finnish\nCharacter set encoding: ISO-8859-1\n"
    start, end = (
        "*** START OF THE PROJECT GUTENBERG EBOOK K ***",
        "*** END OF THE PROJECT GUTENBERG EBOOK K ***",
    )
    data = _gutenberg(
        "Mieleni minun tekevi, lähteäni laulamahan.", start=start, end=end, header=header
    )
    book = books.parse_book(data.encode("latin-1"), path="kalevala.txt")
    assert book.encoding == "iso8859-1"
    assert book.language == "fi"
    assert book.title == "Kalevala"
    assert book.paragraphs == ("Mieleni minun tekevi, lähteäni laulamahan.",)


def test_binary_and_missing_files_are_errors_that_name_them(tmp_path):
    binary = tmp_path / "cover.jpg.txt"
    binary.write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01")
    with pytest.raises(books.BookError, match="cover.jpg.txt.*NUL"):
        books.read_book(str(binary))
    with pytest.raises(books.BookError, match="nothing-here.txt"):
        books.read_book(str(tmp_path / "nothing-here.txt"))


def test_doc_id_depends_on_name_and_content_not_folder():
    a = books.parse_book(b"Some text here.", path="/x/book.txt")
    b = books.parse_book(b"Some text here.", path="gs://bucket/y/book.txt")
    c = books.parse_book(b"Other text here.", path="/x/book.txt")
    assert a.doc_id == b.doc_id != c.doc_id
    assert a.doc_id.startswith("book:book.txt:")


def test_read_books_step(data_dir, tmp_path):
    """The Beam step: one document per book, a counted drop for a book with no prose."""
    empty = tmp_path / "empty.txt"
    empty.write_text("CONTENTS\n\nCHAPTER I.\n", encoding="utf-8")
    paths = [str(data_dir / "books" / name) for name in sorted(BOOKS)] + [str(empty)]
    config = extract_text.ExtractTextConfig(
        input=",".join(paths), output_dir=str(tmp_path / "out"), source="books"
    )
    with test_pipeline.TestPipeline(runner="FnApiRunner") as pipeline:
        documents, drops = pipeline | extract_text.ReadBooks(paths, config)
        ids = documents | beam.Map(lambda document: document.doc_id.split(":")[1])
        assert_that(ids, equal_to(sorted(BOOKS)), label="ids")
        no_boilerplate = documents | beam.Map(
            lambda d: b"Gutenberg" not in d.data and b"\n\n" not in d.data
        )
        assert_that(no_boilerplate, equal_to([True] * 3), label="clean")
        assert_that(drops, equal_to(["too_short"]), label="drops")
