"""Re-packs a Wikipedia dump in Wikimedia's multistream layout, with its index.

    python -m pipeline.multistream --input=wiki-pages-articles.xml.bz2 \
        --output=wiki-pages-articles-multistream.xml.bz2 [--pages_per_stream=100]

writes the multistream dump and `…-multistream-index.txt.bz2` beside it. Wikimedia publishes its
large dumps in this layout; smaller wikis, older dumps, cut-down samples and dumps of your own
(Special:Export, a MediaWiki's dumpBackup.php) come as one stream, which a reader must
decompress from the start: one worker. In the multistream layout the file is a run of
independent bz2 streams: the first holds the header (`<mediawiki>` to `</siteinfo>`), each next
one `pages_per_stream` whole pages, the last the closing `</mediawiki>`; the index gives, for
every page, `offset:page_id:title`, the byte offset of its stream. `pipeline.extract_text` then
reads the dump as many byte ranges in parallel. The output decompresses to exactly the input's
bytes, and the same input always gives the same output.

Memory: one stream's pages at a time.
"""

from __future__ import annotations

import bz2
import gzip
import re
from collections.abc import Iterator, Sequence
from xml.sax.saxutils import unescape

from absl import flags

from contracts import command_line, storage
from pipeline import wikipedia_dump

_TITLE_RE = re.compile(rb"<title>(.*?)</title>", re.S)
_ID_RE = re.compile(rb"<id>\s*(\d+)\s*</id>")
_XML_ENTITIES = {"&quot;": '"', "&apos;": "'", "&#039;": "'", "&#39;": "'"}


def index_path_for_output(output: str) -> str:
    """`x-multistream.xml.bz2` → `x-multistream-index.txt.bz2` (Wikimedia's naming)."""
    if not output.endswith("-multistream.xml.bz2"):
        raise ValueError(
            f"--output={output!r}: must end in -multistream.xml.bz2 (Wikimedia's name)"
        )
    return output[: -len(".xml.bz2")] + "-index.txt.bz2"


def _dump_lines(path: str) -> Iterator[bytes]:
    """The decompressed lines of a dump (concatenated bz2 or gzip streams included)."""
    decompress = {"bz2": bz2.open, "gzip": gzip.open}.get(wikipedia_dump.compression_of(path))
    with storage.open_file(path, "rb") as raw:
        if decompress is None:
            yield from raw
            return
        with decompress(raw, "rb") as handle:
            yield from handle


def split_dump(lines: Iterator[bytes]) -> Iterator[tuple[str, bytes]]:
    """("header" | "page" | "trailer", bytes): the dump cut at its `<page>` elements.

    Raises:
      ValueError: no `<page>`, or a page that does not end.
    """
    part, buffer, seen_page = "header", [], False
    for line in lines:
        stripped = line.lstrip()
        if part != "page" and stripped.startswith(b"<page>"):
            if buffer:
                yield part, b"".join(buffer)
            part, buffer, seen_page = "page", [], True
        buffer.append(line)
        if part == "page" and stripped.startswith(b"</page>"):
            yield "page", b"".join(buffer)
            part, buffer = "between", []
    if part == "page":
        raise ValueError("the last <page> has no </page>: is the dump truncated?")
    if not seen_page:
        raise ValueError("no <page> element: not a MediaWiki XML dump")
    yield "trailer", b"".join(buffer)


def page_key(page: bytes) -> tuple[int, str]:
    """The page's id and title, as the index gives them."""
    title, page_id = _TITLE_RE.search(page), _ID_RE.search(page)
    if title is None or page_id is None:
        raise ValueError(f"a <page> without <title> or <id>: {page[:200]!r}")
    text = unescape(title.group(1).decode("utf-8"), _XML_ENTITIES)
    return int(page_id.group(1)), text


def write_multistream(
    input_path: str, output: str, *, pages_per_stream: int = 100
) -> dict[str, int]:
    """Writes the multistream dump and its index (both atomically); returns counts.

    Raises:
      ValueError: the input is not a dump, or the output name is not Wikimedia's.
    """
    if pages_per_stream < 1:
        raise ValueError(f"--pages_per_stream={pages_per_stream}: must be at least 1")
    index_path = index_path_for_output(output)
    counts = {"pages": 0, "streams": 0, "bytes": 0}
    index_lines: list[bytes] = []
    with storage.atomic_open(output, "wb") as out:
        pages: list[bytes] = []

        def flush_stream(data: bytes, keys: Sequence[tuple[int, str]] = ()) -> None:
            offset = counts["bytes"]
            compressed = bz2.compress(data, 9)
            out.write(compressed)
            counts["bytes"] += len(compressed)
            counts["streams"] += 1
            index_lines.extend(f"{offset}:{i}:{t}\n".encode() for i, t in keys)

        def flush_pages() -> None:
            if pages:
                flush_stream(b"".join(pages), [page_key(page) for page in pages])
                counts["pages"] += len(pages)
                pages.clear()

        for part, data in split_dump(_dump_lines(input_path)):
            if part == "page":
                pages.append(data)
                if len(pages) == pages_per_stream:
                    flush_pages()
            else:
                flush_pages()
                flush_stream(data)
        flush_pages()
    storage.atomic_write(index_path, bz2.compress(b"".join(index_lines), 9))
    return counts


def main(argv: Sequence[str]) -> None:
    del argv
    values = flags.FLAGS
    counts = write_multistream(
        values.input, values.output, pages_per_stream=values.pages_per_stream
    )
    print(
        f"wrote {values.output} ({counts['pages']:,} pages in {counts['streams']:,} streams) "
        f"and {index_path_for_output(values.output)}"
    )


def define_flags() -> None:
    flags.DEFINE_string("input", None, "A dump: .xml, .xml.bz2 or .xml.gz, local or gs://.")
    flags.DEFINE_string("output", None, "The multistream dump, named …-multistream.xml.bz2.")
    flags.DEFINE_integer("pages_per_stream", 100, "Pages per bz2 stream (Wikimedia's: 100).")
    flags.mark_flags_as_required(["input", "output"])


if __name__ == "__main__":
    define_flags()
    command_line.run(main, program="pipeline.multistream")
