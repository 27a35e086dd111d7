"""Wikipedia `pages-articles` dumps, read: files, siteinfo, multistream ranges, pages.

Plain functions with no Beam in them; `pipeline/extract_text.py` wires them into a job, and
`pipeline/wikitext.py` turns the pages' wikitext into text.

Reading. A dump is `.xml`, `.xml.bz2` or `.xml.gz`, local or `gs://`, in any export schema in use
(0.9 to 0.11: only `page`, `title`, `ns`, `id`, `redirect` and `revision/{id,timestamp,text}` are
read, by local name). `plan_reads` cuts a file into `ReadRange`s:

- a multistream `.bz2` with its index (`…-multistream.xml.bz2` +
  `…-multistream-index.txt.bz2` beside it, found automatically, or given) becomes many independent
  byte ranges, each a run of whole bz2 streams of 100 pages, so many workers read one huge file
  in parallel;
- any other file is one range, read start to end as one stream.

`read_pages` streams one range: raw bytes in 1 MiB chunks → bz2/gzip decompression (concatenated
streams included) → UTF-8 (a UTF-16 dump is transcoded on the fly) → page elements, cut at the
`<page>`/`</page>` tags, each parsed on its own with expat. Memory is bounded by the largest page,
whatever the dump size. One page that is not well-formed XML (a bad byte, a broken tag) comes out
as a `BadPage` to be counted and skipped; a file that cannot be read (truncated compression,
no `</mediawiki>` at the end, a range that does not start a bz2 stream) raises `DumpError`
naming the file and the byte offset.
"""

from __future__ import annotations

import bz2
import codecs
import dataclasses
import datetime
import re
import xml.etree.ElementTree as ElementTree
import zlib
from collections.abc import Iterable, Iterator

from wikiextractor import extract as wikiextractor

from contracts import storage
from pipeline import sentences

_CHUNK_BYTES = 1 << 20
# How much of a file's start is enough to find `<mediawiki …>` and `<siteinfo>` (a real
# siteinfo is ~5 KB; a bz2 block decompresses to at most ~900 KB).
_HEAD_BYTES = 4 << 20
CANONICAL_TEMPLATE_NAMESPACE = "Template"
TEMPLATE_NAMESPACE_KEY = 10
# "#REDIRECT [[…]]" at the start of the text, for dumps whose pages lack `<redirect/>`.
_REDIRECT_TEXT_RE = re.compile(
    r"\s*#(?:" + "|".join(wikiextractor.redirectKeywords) + r")\s*:?\s*\[\[", re.IGNORECASE
)


class DumpError(ValueError):
    """A dump file cannot be read; the message names the file and, where known, the offset."""


@dataclasses.dataclass(frozen=True)
class SiteInfo:
    """What a dump says about its wiki (`<mediawiki>` attributes and `<siteinfo>`).

    Attributes:
      dbname: e.g. "enwiki"; "" when the dump has no `<siteinfo>`.
      language: the content language from `xml:lang`, e.g. "en".
      base_url: the main page URL from `<base>`.
      namespaces: `(key, name)` pairs; empty without `<siteinfo>`.
      namespace_aliases: `(key, alias)` pairs from `<namespacealias key="…">` elements (or
        `<namespacealiases><ns id="…">`), where a dump has them.
      template_namespace: the name of namespace 10 ("Template", "Vorlage", …), or None when the
        dump does not say (then the job uses the prefix of its template pages, else "Template").
      has_siteinfo: whether the dump has a `<siteinfo>` element at all.
      encoding: the file's text encoding ("utf-8" or "utf-16-le"/"utf-16-be").
      schema_version: the export schema, e.g. "0.10".
      dump_date: "YYYY-MM-DD" from a `YYYYMMDD` in the file name, or None.
    """

    dbname: str = ""
    language: str = sentences.DEFAULT_LANGUAGE
    base_url: str = ""
    namespaces: tuple[tuple[int, str], ...] = ()
    namespace_aliases: tuple[tuple[int, str], ...] = ()
    template_namespace: str | None = None
    has_siteinfo: bool = False
    encoding: str = "utf-8"
    schema_version: str = ""
    dump_date: str | None = None


@dataclasses.dataclass(frozen=True)
class ReadRange:
    """One unit of reading work: a byte range of a dump file.

    Attributes:
      path: the dump file.
      start: first byte (0, or the start of a bz2 stream from the multistream index).
      end: one past the last byte, or None for the end of the file.
      compression: "bz2", "gzip" or "none".
      encoding: the file's text encoding (see `SiteInfo.encoding`).
      part: index of this range in the file's plan; `parts` how many there are.
    """

    path: str
    start: int = 0
    end: int | None = None
    compression: str = "none"
    encoding: str = "utf-8"
    part: int = 0
    parts: int = 1

    @property
    def to_end_of_file(self) -> bool:
        return self.end is None

    def describe(self) -> str:
        if self.parts == 1:
            return self.path
        end = "end" if self.end is None else self.end
        return f"{self.path} [bytes {self.start}-{end}, part {self.part + 1}/{self.parts}]"


@dataclasses.dataclass(frozen=True)
class Page:
    """One `<page>` of a dump.

    Attributes:
      page_id: the page id (int).
      title: the full title, namespace prefix included.
      namespace: the `<ns>` number (0 = articles, 10 = templates).
      redirect: whether the page is a redirect (`<redirect>` or "#REDIRECT" text).
      revision_id: the id of the (last) revision in the dump, 0 if absent.
      timestamp: that revision's ISO 8601 timestamp, "" if absent.
      text: the wikitext, XML entities decoded.
    """

    page_id: int
    title: str
    namespace: int
    redirect: bool
    revision_id: int
    timestamp: str
    text: str


@dataclasses.dataclass(frozen=True)
class BadPage:
    """A page element that could not be parsed; counted and skipped, never fatal."""

    path: str
    offset: int
    reason: str


# ----------------------------------------------------------------------------------------------
# Files: compression, encoding, siteinfo, multistream index.


def compression_of(path: str) -> str:
    """ "bz2", "gzip" or "none", from the file name."""
    name = storage.basename(path).lower()
    if name.endswith(".bz2"):
        return "bz2"
    if name.endswith(".gz"):
        return "gzip"
    return "none"


_INDEX_NAME_RE = re.compile(r"-multistream-index(\d*)\.txt(-p\d+p\d+)?\.bz2$")
_MULTISTREAM_NAME_RE = re.compile(r"-multistream(\d*)\.xml(-p\d+p\d+)?\.bz2$")


def is_index_file(path: str) -> bool:
    """Whether `path` is a multistream index (`…-multistream-index.txt.bz2`), not a dump."""
    return bool(_INDEX_NAME_RE.search(storage.basename(path)))


def index_path_for(path: str) -> str | None:
    """The index Wikimedia publishes beside a multistream dump, by name; None for other files.

    `enwiki-20231101-pages-articles-multistream.xml.bz2` →
    `enwiki-20231101-pages-articles-multistream-index.txt.bz2`, and for the split files
    `…-multistream1.xml-p1p41242.bz2` → `…-multistream-index1.txt-p1p41242.bz2`.
    """
    match = _MULTISTREAM_NAME_RE.search(path)
    if not match:
        return None
    return (
        path[: match.start()]
        + f"-multistream-index{match.group(1)}.txt{match.group(2) or ''}.bz2"
        + path[match.end() :]
    )


def dump_date_from_name(path: str) -> str | None:
    """ "YYYY-MM-DD" from the `YYYYMMDD` in a Wikimedia dump name (`enwiki-20231101-…`), or None."""
    for match in re.finditer(r"(?<!\d)(\d{8})(?!\d)", storage.basename(path)):
        try:
            date = datetime.datetime.strptime(match.group(1), "%Y%m%d")
        except ValueError:
            continue
        if 2001 <= date.year <= 2100:
            return date.strftime("%Y-%m-%d")
    return None


def _raw_chunks(path: str, start: int, end: int | None) -> Iterator[bytes]:
    """The bytes of `path` from `start` to `end` (None: end of file), in 1 MiB chunks."""
    position = start
    try:
        # A remote file may open lazily and fail at the first read: all of it is inside the try.
        with storage.open_file(path, "rb") as handle:
            if start:
                handle.seek(start)
            while end is None or position < end:
                size = _CHUNK_BYTES if end is None else min(_CHUNK_BYTES, end - position)
                chunk = handle.read(size)
                if not chunk:
                    break
                position += len(chunk)
                yield chunk
    except OSError as error:
        raise DumpError(f"{path}: cannot read at byte {position} ({error})") from error
    if end is not None and position < end:
        raise DumpError(f"{path}: ends at byte {position}, before byte {end}")


def _decompressed(
    chunks: Iterable[bytes], compression: str, *, where: str, require_end: bool = True
) -> Iterator[bytes]:
    """Decompresses a run of concatenated bz2 streams or gzip members.

    Args:
      chunks: compressed bytes.
      compression: "bz2", "gzip" or "none".
      where: names the file (and range) in errors.
      require_end: raise if the data stops inside a stream (a truncated file); False to read just
        the head of a file.
    """
    if compression == "none":
        yield from chunks
        return
    if compression == "bz2":
        new_decompressor = bz2.BZ2Decompressor
    elif compression == "gzip":

        def new_decompressor():
            return zlib.decompressobj(wbits=31)

    else:
        raise ValueError(f"unknown compression {compression!r}")
    decompressor = new_decompressor()
    started = False  # whether the current stream has received any byte
    first = True
    for chunk in chunks:
        if first and compression == "bz2" and not chunk.startswith(b"BZh"):
            # A range from the multistream index must start a bz2 stream.
            raise DumpError(f"{where}: no bz2 stream starts here (wrong index for this dump?)")
        first = False
        data = chunk
        while data:
            started = True
            try:
                out = decompressor.decompress(data)
            except (OSError, EOFError, zlib.error) as error:
                raise DumpError(f"{where}: corrupt {compression} data ({error})") from error
            if out:
                yield out
            if decompressor.eof:
                # Concatenated streams: multistream dumps hold one bz2 stream per 100 pages.
                data = decompressor.unused_data
                decompressor = new_decompressor()
                started = False
            else:
                data = b""
    if require_end and started:
        raise DumpError(
            f"{where}: truncated {compression} data: it ends inside a stream (a file cut short,"
            " or a multistream index that belongs to another dump)"
        )


def _detect_encoding(head: bytes) -> str:
    """The text encoding of an XML document from its first bytes (BOM, then declaration)."""
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8"
    if head.startswith(codecs.BOM_UTF16_LE):
        return "utf-16-le"
    if head.startswith(codecs.BOM_UTF16_BE):
        return "utf-16-be"
    if head.startswith(b"<\x00"):
        return "utf-16-le"
    if head.startswith(b"\x00<"):
        return "utf-16-be"
    declaration = re.match(rb"""\s*<\?xml[^>]*encoding\s*=\s*["']([\w.-]+)["']""", head)
    if declaration:
        name = declaration.group(1).decode("ascii").lower()
        try:
            codecs.lookup(name)
        except LookupError as error:
            raise DumpError(f"unknown XML encoding {name!r}") from error
        return "utf-8" if name in ("utf-8", "utf8", "us-ascii", "ascii") else name
    return "utf-8"


def _to_utf8(chunks: Iterable[bytes], encoding: str, *, where: str) -> Iterator[bytes]:
    """Re-encodes text bytes to UTF-8 on the fly (expat and our tag search want UTF-8)."""
    if encoding == "utf-8":
        first = True
        for chunk in chunks:
            if first and chunk.startswith(codecs.BOM_UTF8):
                chunk = chunk[len(codecs.BOM_UTF8) :]
            first = False
            yield chunk
        return
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    try:
        first = True
        for chunk in chunks:
            text = decoder.decode(chunk)
            if first and text.startswith("\ufeff"):
                text = text[1:]
            first = False
            yield text.encode("utf-8")
        yield decoder.decode(b"", final=True).encode("utf-8")
    except UnicodeDecodeError as error:
        raise DumpError(f"{where}: not valid {encoding} ({error})") from error


def read_siteinfo(path: str, *, dump_date: str | None = None) -> SiteInfo:
    """Reads the `<mediawiki>` start tag and `<siteinfo>` at the start of a dump.

    Args:
      path: the dump file (local or gs://).
      dump_date: "YYYY-MM-DD" to record; default: from the file name.

    Returns:
      The dump's `SiteInfo`; defaults (and `has_siteinfo=False`) for what it lacks.

    Raises:
      DumpError: the file is empty, not a MediaWiki XML export, or cannot be decompressed.
    """
    compression = compression_of(path)
    head = b""
    for chunk in _decompressed(
        _raw_chunks(path, 0, None), compression, where=path, require_end=False
    ):
        head += chunk
        if len(head) >= _HEAD_BYTES or b"</siteinfo" in head or b"<page" in head:
            break
    if not head.strip():
        raise DumpError(f"{path}: empty file")
    encoding = _detect_encoding(head[:256])
    # The head may end inside a character: replace it, only the tags matter here.
    text = head.decode(encoding, errors="replace")
    root = re.search(r"<mediawiki\b[^>]*>", text)
    if not root:
        raise DumpError(f"{path}: not a MediaWiki XML dump (no <mediawiki> element at its start)")
    language = re.search(r"""xml:lang\s*=\s*["']([^"']+)["']""", root.group(0))
    version = re.search(r"""\bversion\s*=\s*["']([^"']+)["']""", root.group(0))
    info = {
        "language": sentences.language_code(language.group(1) if language else None),
        "schema_version": version.group(1) if version else "",
        "encoding": encoding,
        "dump_date": dump_date or dump_date_from_name(path),
    }
    block = re.search(r"<siteinfo>.*?</siteinfo>", text, re.DOTALL)
    if not block:
        return SiteInfo(**info)
    try:
        siteinfo = ElementTree.fromstring(block.group(0))
    except ElementTree.ParseError as error:
        raise DumpError(f"{path}: malformed <siteinfo> ({error})") from error
    namespaces = []
    template_namespace = None
    for element in siteinfo.iter("namespace"):
        key = int(element.get("key", "0"))
        name = (element.text or "").strip()
        namespaces.append((key, name))
        if key == TEMPLATE_NAMESPACE_KEY and name:
            template_namespace = name
    aliases = [
        (int(element.get("key", "0")), (element.text or "").strip())
        for element in siteinfo.iter("namespacealias")
    ]
    for group in siteinfo.iter("namespacealiases"):
        aliases += [(int(e.get("id", "0")), (e.text or "").strip()) for e in group.iter("ns")]
    return SiteInfo(
        dbname=(siteinfo.findtext("dbname") or "").strip(),
        base_url=(siteinfo.findtext("base") or "").strip(),
        namespaces=tuple(namespaces),
        namespace_aliases=tuple((key, alias) for key, alias in aliases if alias),
        template_namespace=template_namespace,
        has_siteinfo=True,
        **info,
    )


@dataclasses.dataclass(frozen=True)
class StreamIndex:
    """What a multistream index says about the dump's bz2 streams.

    Attributes:
      offsets: the distinct stream start offsets, sorted.
      marked: the offsets of streams holding a page whose title starts with the prefix asked
        for (e.g. "Template:"), so a pass that needs only those pages reads only those streams.
    """

    offsets: tuple[int, ...]
    marked: frozenset[int] = frozenset()


def read_index(index_path: str, *, title_prefix: str | None = None) -> StreamIndex:
    """Reads a multistream index (`offset:page_id:title` lines), streaming.

    Args:
      index_path: the index file (`.txt.bz2` or plain).
      title_prefix: mark the streams that hold a title starting with this.

    Raises:
      DumpError: the index cannot be read, is empty or has a malformed line.
    """
    offsets: set[int] = set()
    marked: set[int] = set()
    prefix = title_prefix.encode("utf-8") if title_prefix else None
    pending = b""
    chunks = _decompressed(
        _raw_chunks(index_path, 0, None), compression_of(index_path), where=index_path
    )
    for chunk in [*chunks, b"\n"]:
        lines = (pending + chunk).split(b"\n")
        pending = lines.pop()
        for line in lines:
            if not line.strip():
                continue
            offset, _, rest = line.partition(b":")
            if not offset.isdigit() or not rest:
                raise DumpError(f"{index_path}: malformed index line {line[:80]!r}")
            offsets.add(int(offset))
            if prefix is not None and rest.partition(b":")[2].startswith(prefix):
                marked.add(int(offset))
    if not offsets:
        raise DumpError(f"{index_path}: empty multistream index")
    return StreamIndex(offsets=tuple(sorted(offsets)), marked=frozenset(marked))


def plan_reads(
    path: str,
    *,
    site: SiteInfo,
    index_path: str | None = None,
    use_index: bool = True,
    range_bytes: int = 16 << 20,
    title_prefix: str | None = None,
) -> list[ReadRange]:
    """Cuts a dump into independent `ReadRange`s.

    Args:
      path: the dump file.
      site: its `SiteInfo` (for the encoding).
      index_path: its multistream index; default: `index_path_for(path)` when that file exists.
      use_index: False to read even a multistream dump as one stream.
      range_bytes: target compressed size of one range: consecutive bz2 streams are grouped up
        to about this many bytes (a stream is never cut).
      title_prefix: with an index, plan only the streams that hold a title starting with this
        (e.g. "Template:" for the template pass); without an index, the whole file.

    Returns:
      The ranges, in file order; one range for a file without an index.
    """
    compression = compression_of(path)
    whole = [ReadRange(path=path, compression=compression, encoding=site.encoding)]
    if not use_index or compression != "bz2":
        return whole
    if index_path is None:
        index_path = index_path_for(path)
        if index_path is None or not storage.exists(index_path):
            return whole
    index = read_index(index_path, title_prefix=title_prefix)
    file_size = storage.size(path)
    if index.offsets[-1] >= file_size:
        raise DumpError(
            f"{index_path}: offset {index.offsets[-1]} is past the end of {path}"
            f" ({file_size} bytes); the index belongs to another dump"
        )
    # Byte 0 starts the header stream (`<mediawiki>`, `<siteinfo>`); it holds no page in
    # Wikimedia's dumps but is read like any other, so a dump that does put pages there loses
    # none.
    starts = sorted({0, *index.offsets})
    streams: list[tuple[int, int | None]] = list(zip(starts, [*starts[1:], None], strict=True))
    if title_prefix is not None:
        streams = [stream for stream in streams if stream[0] in index.marked]
    groups: list[tuple[int, int | None]] = []
    for start, end in streams:
        if groups and groups[-1][1] == start and start - groups[-1][0] < range_bytes:
            groups[-1] = (groups[-1][0], end)  # the next stream, and the group is not full yet
        else:
            groups.append((start, end))
    return [
        ReadRange(
            path=path,
            start=start,
            end=end,
            compression=compression,
            encoding=site.encoding,
            part=part,
            parts=len(groups),
        )
        for part, (start, end) in enumerate(groups)
    ]


# ----------------------------------------------------------------------------------------------
# Pages.


_NS_RE = re.compile(rb"<ns>\s*(-?\d+)\s*</ns>")


def page_elements(read_range: ReadRange) -> Iterator[tuple[int, bytes | None]]:
    """The raw `<page>…</page>` elements of a range, as UTF-8 bytes.

    Yields:
      `(offset, element)` pairs: `offset` counts decompressed UTF-8 bytes from the range start
      (for messages); `element` is None for a page cut short by the start of the next one
      (malformed XML), to be counted as bad.

    Raises:
      DumpError: the data cannot be decompressed or decoded, or the range ends inside a page,
        or a range that runs to the end of the file has no `</mediawiki>`.
    """
    where = read_range.describe()
    chunks = _to_utf8(
        _decompressed(
            _raw_chunks(read_range.path, read_range.start, read_range.end),
            read_range.compression,
            where=where,
        ),
        read_range.encoding,
        where=where,
    )
    buffer = b""
    consumed = 0  # decompressed bytes before buffer[0]
    saw_end = False
    for chunk in chunks:
        buffer += chunk
        position = 0
        while True:
            start = buffer.find(b"<page>", position)
            if start < 0:
                saw_end = saw_end or b"</mediawiki>" in buffer[position:]
                # Keep a short tail: a tag may be split across two chunks.
                position = max(position, len(buffer) - 16)
                break
            end = buffer.find(b"</page>", start + 6)
            if end < 0:
                position = start  # the page continues in the next chunk
                break
            next_start = buffer.find(b"<page>", start + 6, end)
            if next_start >= 0:
                yield consumed + start, None
                position = next_start
                continue
            yield consumed + start, buffer[start : end + 7]
            position = end + 7
        consumed += position
        buffer = buffer[position:]
    if b"<page>" in buffer:
        raise DumpError(f"{where}: ends inside a <page> (truncated file or wrong index)")
    if read_range.to_end_of_file and not saw_end:
        raise DumpError(f"{where}: ends without </mediawiki> (truncated file?)")


def namespace_of(element: bytes) -> int | None:
    """The `<ns>` of a raw page element without parsing it (None if it has none)."""
    match = _NS_RE.search(element, 0, 4096) or _NS_RE.search(element)
    return int(match.group(1)) if match else None


def parse_page(element: bytes, *, site: SiteInfo) -> Page:
    """Parses one raw `<page>` element.

    Raises:
      ValueError (ElementTree.ParseError included): not well-formed, or without title or id.
    """
    page = ElementTree.fromstring(element)
    title = _child_text(page, "title")
    page_id = _child_text(page, "id")
    if title is None or not page_id or not page_id.strip().isdigit():
        raise ValueError("page without <title> or numeric <id>")
    namespace_text = _child_text(page, "ns")
    if namespace_text is not None and namespace_text.strip().lstrip("-").isdigit():
        namespace = int(namespace_text)
    else:
        namespace = _namespace_from_title(title, site)
    revisions = [child for child in page if _local_name(child.tag) == "revision"]
    revision = revisions[-1] if revisions else None
    text = ""
    revision_id = 0
    timestamp = ""
    if revision is not None:
        text = _child_text(revision, "text") or ""
        revision_id_text = _child_text(revision, "id") or "0"
        revision_id = int(revision_id_text) if revision_id_text.strip().isdigit() else 0
        timestamp = (_child_text(revision, "timestamp") or "").strip()
    redirect = any(_local_name(child.tag) == "redirect" for child in page) or bool(
        _REDIRECT_TEXT_RE.match(text)
    )
    return Page(
        page_id=int(page_id),
        title=title.strip(),
        namespace=namespace,
        redirect=redirect,
        revision_id=revision_id,
        timestamp=timestamp,
        text=text,
    )


def _local_name(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child_text(element: ElementTree.Element, name: str) -> str | None:
    for child in element:
        if _local_name(child.tag) == name:
            return child.text or ""
    return None


def _namespace_from_title(title: str, site: SiteInfo) -> int:
    """Namespace from a title's prefix, for dumps without `<ns>` (schema < 0.6)."""
    prefix, colon, _ = title.partition(":")
    if colon:
        for key, name in site.namespaces:
            if name and name == prefix:
                return key
    return 0


def read_pages(
    read_range: ReadRange,
    *,
    site: SiteInfo,
    namespaces: frozenset[int] | None = None,
) -> Iterator[Page | BadPage | int]:
    """Streams the pages of one range.

    Args:
      read_range: what to read.
      site: the file's `SiteInfo`.
      namespaces: parse only pages in these namespaces (None: all); the others are yielded as
        their namespace number (an int), cheaply, so callers can count them.

    Yields:
      `Page`, `BadPage` (not well-formed: count and skip) or an int namespace (skipped page).
    """
    for offset, element in page_elements(read_range):
        if element is None:
            yield BadPage(read_range.describe(), offset, "page not closed before the next <page>")
            continue
        if namespaces is not None:
            namespace = namespace_of(element)
            if namespace is not None and namespace not in namespaces:
                yield namespace
                continue
        try:
            yield parse_page(element, site=site)
        except (ElementTree.ParseError, ValueError) as error:
            yield BadPage(read_range.describe(), offset, str(error))
