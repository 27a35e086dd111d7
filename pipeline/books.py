"""Book files (one book a file, e.g. Project Gutenberg) to clean paragraphs of running text.

Plain functions with no Beam in them; `pipeline/extract_text.py` wires them into a job.

- Encoding: a byte-order mark wins; then strict UTF-8; then the charset the Gutenberg header
  declares ("Character set encoding: ISO-8859-1"); then Windows-1252; then Latin-1, which
  decodes any byte. UTF-8 goes first because headers often lie (GITenberg re-encoded many
  books to UTF-8 and kept the old header), and text in a legacy 8-bit encoding is practically
  never valid UTF-8. A file with NUL bytes is not text: an error names it.
- Boilerplate: everything up to the `*** START OF THE PROJECT GUTENBERG EBOOK … ***` line and
  from the `*** END OF …` line on (header, footer, licence) is cut, also in the older spellings
  (`*END*THE SMALL PRINT!`, `End of the Project Gutenberg EBook of …`); so are the "Produced by"
  credits and `[Illustration]` marks. A file without markers is taken whole.
- Layout: Gutenberg hard-wraps lines at ~70 characters and separates paragraphs with blank
  lines. Lines of a paragraph are rejoined with spaces (a line ending in a hyphen or a dash is
  joined without one, keeping the hyphen: "waistcoat-" + "pocket"). Paragraphs that are not
  prose are left out: headings and title pages (no lowercase letter, or fewer than ten words
  and no sentence-final punctuation), tables of contents (blocks of numbered entries).
"""

from __future__ import annotations

import codecs
import contextlib
import dataclasses
import hashlib
import re

from contracts import storage
from pipeline import sentences

# How much of the file's start holds the Gutenberg header fields.
_HEADER_SCAN_CHARS = 20_000

_START_MARKERS = (
    re.compile(r"^\s*\*{3}\s*START OF (?:THE|THIS) PROJECT GUTENBERG E-?(?:BOOK|TEXT).*$", re.I),
    re.compile(r"^\s*\*+\s*START\b.*PROJECT GUTENBERG.*$", re.I),
    re.compile(r"^\s*\*END\*\s*THE SMALL PRINT!.*$", re.I),
)
_END_MARKERS = (
    re.compile(r"^\s*\*{3}\s*END OF (?:THE|THIS) PROJECT GUTENBERG E-?(?:BOOK|TEXT).*$", re.I),
    re.compile(r"^\s*\*+\s*END\b.*PROJECT GUTENBERG.*$", re.I),
    re.compile(r"^\s*End of (?:the )?Project Gutenberg(?:'s|’s)?\b.*$", re.I),
)
_FIELD_RE = re.compile(r"^(Title|Author|Language|Character set encoding):\s*(.+?)\s*$", re.I | re.M)
_CREDITS_RE = re.compile(
    r"^(?:Produced by|E-?text prepared by|Prepared by|Transcribed (?:from|by)|This e-?text was"
    r"|Transcriber'?s? note|HTML version by|Updated editions)",
    re.I,
)
_ILLUSTRATION_RE = re.compile(r"\[Illustration[^\]]*\]", re.I)
_ITALIC_RE = re.compile(r"(?<![\w_])_([^_\n]+)_(?![\w_])")
_SENTENCE_END_RE = re.compile(r"[.!?…:]['\"’”»)\]]*$")
# A line of a table of contents: "  IV. The Boscombe Valley Mystery", "Chapter 12", "3. Home".
_CONTENTS_LINE_RE = re.compile(
    r"^\s*(?:(?:[IVXLC]+|\d+)\.?\s+\S.*|(?:chapter|letter|book|part|volume|act|scene)\s+\w+\.?)\s*$",
    re.I,
)
_BLANK_LINES_RE = re.compile(r"\n[ \t]*\n")
# A paragraph this long (in words) is prose even without a full stop at its end.
_MIN_PROSE_WORDS = 10


class BookError(ValueError):
    """A book file cannot be read as text; the message names the file."""


@dataclasses.dataclass(frozen=True)
class Book:
    """One book, cleaned.

    Attributes:
      doc_id: `book:<file name>:<first 16 hex of the file's sha256>`: stable wherever the file
        lives, distinct for distinct contents (the train/eval hash key).
      path: where it was read from.
      title: from the Gutenberg header, else the file name.
      language: a language code from the header ("en" by default).
      encoding: the encoding the bytes were decoded with.
      paragraphs: running text, one paragraph a string, hard wraps rejoined.
      has_gutenberg_markers: whether START/END markers were found and cut at.
    """

    doc_id: str
    path: str
    title: str
    language: str
    encoding: str
    paragraphs: tuple[str, ...]
    has_gutenberg_markers: bool


def decode(data: bytes, *, declared: str | None = None, path: str = "<bytes>") -> tuple[str, str]:
    """Decodes a text file's bytes; see the module docstring for the order tried.

    Args:
      data: the file's bytes.
      declared: an encoding named by the file itself, tried after UTF-8.
      path: names the file in errors.

    Returns:
      `(text, encoding)`.

    Raises:
      BookError: the data holds NUL bytes (a binary file, or UTF-16/32 without a BOM).
    """
    for bom, encoding in (
        (codecs.BOM_UTF32_LE, "utf-32"),
        (codecs.BOM_UTF32_BE, "utf-32"),
        (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if data.startswith(bom):
            try:
                return data.decode(encoding), encoding
            except UnicodeDecodeError as error:
                raise BookError(
                    f"{path}: not valid {encoding} despite its BOM ({error})"
                ) from error
    if b"\x00" in data[:65536]:
        raise BookError(f"{path}: holds NUL bytes; not a text file (or UTF-16 without a BOM)")
    candidates = ["utf-8"]
    if declared:
        with contextlib.suppress(LookupError):  # an unknown name is no hint
            candidates.append(codecs.lookup(declared).name)
    candidates += ["cp1252", "latin-1"]
    for encoding in candidates:
        try:
            return data.decode(encoding), encoding
        except UnicodeDecodeError:
            continue
    raise AssertionError("latin-1 decodes any byte")  # pragma: no cover


def header_fields(text: str) -> dict[str, str]:
    """`Title`, `Author`, `Language`, `Character set encoding` from a Gutenberg header."""
    fields: dict[str, str] = {}
    for match in _FIELD_RE.finditer(text[:_HEADER_SCAN_CHARS]):
        fields.setdefault(match.group(1).lower(), match.group(2))
    return fields


def strip_boilerplate(text: str) -> tuple[str, bool]:
    """Cuts the Project Gutenberg header, footer and licence.

    Returns:
      `(body, found)`: the text between the START and END markers, and whether a START marker
      was found (without one, the text is returned unchanged).
    """
    lines = text.split("\n")
    start = None
    for index, line in enumerate(lines):
        if any(marker.match(line) for marker in _START_MARKERS):
            start = index
            break
    if start is None:
        return text, False
    end = len(lines)
    for index in range(start + 1, len(lines)):
        if any(marker.match(lines[index]) for marker in _END_MARKERS):
            end = index
            break
    return "\n".join(lines[start + 1 : end]), True


def rejoin_lines(paragraph: str) -> str:
    """Joins the hard-wrapped lines of one paragraph into one line."""
    joined = ""
    for line in paragraph.split("\n"):
        line = line.strip()
        if not line:
            continue
        if not joined:
            joined = line
        elif joined.endswith("-") and not joined.endswith(" -"):
            # "waistcoat-" / "pocket" and "observer--" / "excellent": no space, keep the dash.
            joined += line
        else:
            joined += " " + line
    return joined


def is_prose(paragraph: str) -> bool:
    """False for headings, title-page lines and contents entries; True for running text."""
    if not any(character.islower() for character in paragraph):
        return False  # "CHAPTER IV.", "THE ADVENTURES OF SHERLOCK HOLMES"
    if len(paragraph.split()) >= _MIN_PROSE_WORDS:
        return True
    return bool(_SENTENCE_END_RE.search(paragraph))


def is_contents(raw_paragraph: str) -> bool:
    """True for a block of three or more lines that are mostly numbered entries (a contents)."""
    lines = [line for line in raw_paragraph.split("\n") if line.strip()]
    if len(lines) < 3:
        return False
    entries = sum(1 for line in lines if _CONTENTS_LINE_RE.match(line))
    return entries >= 0.6 * len(lines)


def paragraphs_of(body: str) -> list[str]:
    """The prose paragraphs of a book body (boilerplate already cut)."""
    body = body.replace("\r\n", "\n").replace("\r", "\n")
    paragraphs = []
    for raw in _BLANK_LINES_RE.split(body):
        raw = _ILLUSTRATION_RE.sub("", raw)
        if is_contents(raw):
            continue
        paragraph = rejoin_lines(raw)
        if not paragraph:
            continue
        if not paragraphs and _CREDITS_RE.match(paragraph):
            continue  # "Produced by …" before the text starts
        paragraph = _ITALIC_RE.sub(r"\1", paragraph)
        if is_prose(paragraph):
            paragraphs.append(sentences.normalize_whitespace(paragraph))
    return paragraphs


def parse_book(data: bytes, *, path: str, language: str | None = None) -> Book:
    """Decodes and cleans one book.

    Args:
      data: the file's bytes.
      path: where they come from (for the id, the title and errors).
      language: a language code to use instead of the header's.

    Raises:
      BookError: not a text file.
    """
    head = data[:_HEADER_SCAN_CHARS].decode("latin-1")
    declared = header_fields(head).get("character set encoding")
    text, encoding = decode(data, declared=declared, path=path)
    fields = header_fields(text)
    body, has_markers = strip_boilerplate(text)
    name = storage.basename(path)
    return Book(
        doc_id=f"book:{name}:{hashlib.sha256(data).hexdigest()[:16]}",
        path=path,
        title=fields.get("title") or name,
        language=sentences.language_code(language or fields.get("language")),
        encoding=encoding,
        paragraphs=tuple(paragraphs_of(body)),
        has_gutenberg_markers=has_markers,
    )


def read_book(path: str, *, language: str | None = None) -> Book:
    """Reads and cleans the book at `path` (local or gs://); see `parse_book`.

    Raises:
      BookError: the file cannot be read or is not text; the message names it.
    """
    try:
        with storage.open_file(path, "rb") as handle:
            data = handle.read()
    except OSError as error:
        raise BookError(f"{path}: cannot read ({error})") from error
    return parse_book(data, path=path, language=language)
