"""Wikipedia dumps or book files → sentence-per-line text shards, as a Beam job.

    python -m pipeline.extract_text --source=wikipedia \\
        --input=enwiki-20231101-pages-articles-multistream.xml.bz2 \\
        --output_dir=data/wiki-shards --num_shards=256 [Beam options, e.g. --direct_num_workers=2]

Output (docs/design.md, "Text shards"): `train-0000i-of-0000N.txt`, `eval-0000i-of-0000M.txt` in
google-research/bert's input format, then `metadata.json`, written last. The steps:

    wikipedia: plan byte ranges ─► Reshuffle ─► read pages ─►(Reshuffle)─► clean + segment ─┐
               (multistream index)   └─► read template pages ─► side input ─┘              │
    books:     files ─► Reshuffle ─► decode, strip boilerplate, rejoin lines ─► segment ───┤
                                                                                            ▼
        split by id hash ─► bucket sizes ─► balanced shard plan ─► GroupByKey(shard) ─► write
        ─► (all shards written) ─► metadata.json

(The pages are reshuffled only when a file is read as one range, i.e. a plain dump.) Every
dropped page or book is counted by reason, as a Beam counter (logged at the end) and as
data (recorded in metadata.json).
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import logging
import operator
import re
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import apache_beam as beam

from contracts import metadata, storage
from pipeline import (
    beam_options,
    books,
    group_files,
    progress,
    sentences,
    stage,
    text_shards,
    wikipedia_dump,
    wikitext,
)

COMMAND = "pipeline.extract_text"
COUNTER_NAMESPACE = "extract_text"
SOURCES = ("wikipedia", "books")
DROP_REASONS = (
    "namespace",  # not in namespace 0 (talk, user, template, … pages)
    "redirect",
    "disambiguation",
    "too_short",  # fewer than min_article_chars characters of clean text
    "parse_error",  # a page that is not well-formed XML
    "clean_error",  # wikiextractor raised on the page's wikitext
    "duplicate",  # a second copy of a document id (the newest revision is kept)
)
_SHARD_FILE_RE = re.compile(r"^(?:train|eval)-\d{5}-of-\d{5}\.txt$")
# Shards are written in pieces of about this size (GCS uploads like big writes).
_WRITE_BYTES = 4 << 20
# At most this many bad-page warnings per read range, so a broken dump cannot flood the log.
_MAX_WARNINGS_PER_RANGE = 5


@dataclasses.dataclass(frozen=True)
class ExtractTextConfig:
    """Everything one run of extract_text needs; logged at start, kept in metadata.json."""

    input: str  # comma-separated globs of dumps (.xml, .xml.bz2, .xml.gz) or book files (.txt)
    output_dir: str  # folder for the shards and metadata.json (local or gs://)
    source: str = dataclasses.field(default="wikipedia", metadata={"enum": SOURCES})  # input kind
    num_shards: int = 8  # train shards
    num_eval_shards: int = 1  # eval shards
    eval_fraction: float = 0.005  # share of documents that go to eval, chosen by id hash
    min_article_chars: int = 200  # documents with less clean text than this are dropped (stubs)
    expand_templates: bool = True  # expand {{templates}} like the wikiextractor command
    # keep list items (indented or not) as plain sentences without their markers; by default
    # they are left out, as BERT's recipe keeps running text only
    keep_lists: bool = False
    language: str = ""  # sentence rules; "": the dump's xml:lang or the book's header, else en
    dump_date: str = ""  # YYYY-MM-DD for {{CURRENTYEAR}} & co.; "": from the file name
    multistream_index: str = ""  # index of a single multistream dump; "": found beside it
    use_multistream_index: bool = True  # False: read a multistream dump as one stream
    range_mb: float = 16.0  # compressed MiB of bz2 streams per parallel read of a multistream dump
    # How documents reach their shard: "files" (scratch files beside the output, references
    # through the shuffle: the local runner's memory stays bounded), "shuffle" (Beam's
    # GroupByKey, which the local runner holds in memory), "auto": shuffle on Dataflow, files
    # elsewhere. The shards are the same.
    grouping: str = dataclasses.field(default="auto", metadata={"enum": group_files.GROUPINGS})

    def __post_init__(self):
        if self.source not in SOURCES:
            raise ValueError(f"--source must be one of {SOURCES}, got {self.source!r}")
        if not self.output_dir:
            raise ValueError("--output_dir is required")
        if self.num_shards < 1 or self.num_eval_shards < 1:
            raise ValueError("--num_shards and --num_eval_shards must be at least 1")
        if not 0.0 <= self.eval_fraction < 1.0:
            raise ValueError(f"--eval_fraction must be in [0, 1), got {self.eval_fraction}")
        if self.min_article_chars < 0:
            raise ValueError("--min_article_chars must be >= 0")
        if self.range_mb <= 0:
            raise ValueError("--range_mb must be positive")
        group_files.resolve(self.grouping, on_dataflow=False)  # a ValueError names it
        if self.dump_date and wikitext.parse_timestamp(self.dump_date) is None:
            raise ValueError(f"--dump_date must be YYYY-MM-DD, got {self.dump_date!r}")


def _counter(name: str) -> beam.metrics.metric.Metrics.DelegatingCounter:
    return beam.metrics.Metrics.counter(COUNTER_NAMESPACE, name)


# ----------------------------------------------------------------------------------------------
# Inputs and the output folder.


def input_files(config: ExtractTextConfig) -> list[str]:
    """The input files, sorted; multistream index files matched by the globs are left out.

    Raises:
      FileNotFoundError: a pattern matches nothing (the message names it).
      ValueError: only index files matched.
    """
    files = storage.expand_globs(config.input)
    if config.source == "wikipedia":
        dumps = [path for path in files if not wikipedia_dump.is_index_file(path)]
        if not dumps:
            raise ValueError(f"--input={config.input!r} matches only multistream index files")
        if config.multistream_index and len(dumps) != 1:
            raise ValueError("--multistream_index needs exactly one dump in --input")
        return dumps
    return files


def prepare_output_dir(output_dir: str) -> None:
    """Removes an earlier run's metadata.json and shards, so that nothing stale looks complete."""
    storage.makedirs(output_dir)
    for name in storage.listdir(output_dir):
        if name == metadata.FILENAME or _SHARD_FILE_RE.match(name):
            logging.info("removing %s from an earlier run", storage.join(output_dir, name))
            storage.remove(storage.join(output_dir, name))


# ----------------------------------------------------------------------------------------------
# Wikipedia.


class _WikiTemplates(Mapping):
    """One wiki's view of the job-wide template table, keyed `(dbname, title)`.

    Several dumps (e.g. two languages) may share a job; their templates must not mix.
    """

    def __init__(self, table: Mapping[tuple[str, str], str], dbname: str):
        self._table = table
        self._dbname = dbname

    def __getitem__(self, title: str) -> str:
        return self._table[(self._dbname, title)]

    def __contains__(self, title: object) -> bool:
        return (self._dbname, title) in self._table

    def get(self, title, default=None):
        return self._table.get((self._dbname, title), default)

    def __iter__(self) -> Iterator[str]:
        return (title for dbname, title in self._table if dbname == self._dbname)

    def __len__(self) -> int:
        return sum(1 for _ in self)


def _range_bytes(read_range: wikipedia_dump.ReadRange, sizes: Mapping[str, int]) -> int:
    end = sizes[read_range.path] if read_range.end is None else read_range.end
    return end - read_range.start


class _ReadTemplatePagesFn(beam.DoFn):
    """Read range → `((dbname, title), (revision_id, kind, value))` for each template page."""

    def __init__(
        self,
        sites: Mapping[str, wikipedia_dump.SiteInfo],
        sizes: Mapping[str, int],
        reading: progress.Progress,
    ):
        self._sites = dict(sites)
        self._sizes = dict(sizes)
        self._progress = reading

    # The exact element type, a key and a value: Beam (2.78+) type-checks the CombinePerKey
    # that follows against it, and a bare `tuple` is not a key-value pair.
    def process(
        self, read_range: wikipedia_dump.ReadRange
    ) -> Iterator[tuple[tuple[str, str], tuple[int, str, str]]]:
        site = self._sites[read_range.path]
        namespaces = frozenset({wikipedia_dump.TEMPLATE_NAMESPACE_KEY})
        for item in wikipedia_dump.read_pages(read_range, site=site, namespaces=namespaces):
            self._progress.advance(items=1)
            if not isinstance(item, wikipedia_dump.Page) or item.namespace != 10:
                continue  # bad pages are counted by the article pass
            definition = wikitext.template_definition(item)
            if definition is not None:
                kind, title, value = definition
                _counter(f"templates_read_{kind}").inc()
                yield (site.dbname, title), (item.revision_id, kind, value)
        self._progress.advance(bytes_done=_range_bytes(read_range, self._sizes))


def _newest(definitions: Iterable[tuple]) -> tuple:
    """Of several pages with one template title, the highest revision (then text) wins."""
    return max(definitions)


class _ReadArticlePagesFn(beam.DoFn):
    """Read range → article `Page`s; tagged output "drops": one reason string per dropped page."""

    def __init__(
        self,
        sites: Mapping[str, wikipedia_dump.SiteInfo],
        sizes: Mapping[str, int],
        reading: progress.Progress,
    ):
        self._sites = dict(sites)
        self._sizes = dict(sizes)
        self._progress = reading

    def process(self, read_range: wikipedia_dump.ReadRange) -> Iterator[Any]:
        site = self._sites[read_range.path]
        started = time.monotonic()
        pages = articles = warnings = 0
        for item in wikipedia_dump.read_pages(read_range, site=site, namespaces=frozenset({0})):
            pages += 1
            _counter("pages_read").inc()
            self._progress.advance(items=1)
            if isinstance(item, int):
                reason = "namespace"
            elif isinstance(item, wikipedia_dump.BadPage):
                reason = "parse_error"
                if warnings < _MAX_WARNINGS_PER_RANGE:
                    logging.warning(
                        "%s: skipping a bad page at decompressed byte %d: %s",
                        item.path,
                        item.offset,
                        item.reason,
                    )
                warnings += 1
            else:
                reason = wikitext.drop_reason(item)
            if reason:
                _counter(f"dropped_{reason}").inc()
                yield beam.pvalue.TaggedOutput("drops", reason)
                continue
            articles += 1
            yield read_range.path, item
        self._progress.advance(bytes_done=_range_bytes(read_range, self._sizes))
        logging.info(
            "read %s: %d pages, %d articles in %.1f s",
            read_range.describe(),
            pages,
            articles,
            time.monotonic() - started,
        )


class _CleanArticleFn(beam.DoFn):
    """`(path, Page)` → `Document` (wikiextractor, sentence split); tagged output "drops"."""

    def __init__(self, sites: Mapping[str, wikipedia_dump.SiteInfo], config: ExtractTextConfig):
        self._sites = dict(sites)
        self._config = config
        self._prefixes: dict[tuple[int, str], str] = {}

    def process(
        self,
        path_and_page: tuple[str, wikipedia_dump.Page],
        templates: Mapping[tuple[str, str], str],
        redirects: Mapping[tuple[str, str], str],
    ) -> Iterator[Any]:
        path, page = path_and_page
        site = self._sites[path]
        wiki_templates = _WikiTemplates(templates, site.dbname)
        prefix = self._template_prefix(site, templates, wiki_templates)
        counts: collections.Counter = collections.Counter()
        try:
            paragraphs = wikitext.clean_wikitext(
                page,
                site=site,
                templates=wiki_templates,
                redirects=_WikiTemplates(redirects, site.dbname),
                prefix=prefix,
                expand_templates=self._config.expand_templates,
                keep_lists=self._config.keep_lists,
                counts=counts,
            )
        except Exception as error:  # wikiextractor's regexes and recursion on odd wikitext
            logging.warning(
                "page %r (id %d): wikiextractor failed: %r", page.title, page.page_id, error
            )
            _counter("dropped_clean_error").inc()
            yield beam.pvalue.TaggedOutput("drops", "clean_error")
            return
        if counts["list_lines"]:
            kept = "kept" if self._config.keep_lists else "removed"
            _counter(f"list_lines_{kept}").inc(counts["list_lines"])
        for name in ("template_redirects_unresolved", "debris_removed", "debris_dropped"):
            if counts[name]:
                _counter(name).inc(counts[name])
        language = sentences.language_code(self._config.language or site.language)
        document_sentences = sentences.split_paragraphs(paragraphs, language=language)
        if sum(len(sentence) for sentence in document_sentences) < self._config.min_article_chars:
            _counter("dropped_too_short").inc()
            yield beam.pvalue.TaggedOutput("drops", "too_short")
            return
        yield text_shards.Document.of(
            wikitext.document_id(page, site),
            document_sentences,
            version=(page.revision_id, page.timestamp),
        )

    def _template_prefix(self, site, templates, wiki_templates) -> str:
        # Without a siteinfo name for namespace 10, look at the wiki's template titles; cached,
        # since scanning the table once per page would be quadratic.
        if site.template_namespace:
            return site.template_namespace + ":"
        key = (id(templates), site.dbname)
        if key not in self._prefixes:
            self._prefixes[key] = wikitext.template_prefix(site, iter(wiki_templates))
        return self._prefixes[key]


class ReadWikipedia(beam.PTransform):
    """Dump files → (`Document`s, drop reasons). Reads siteinfo and the index when built."""

    def __init__(self, paths: Sequence[str], config: ExtractTextConfig, *, workers: int = 1):
        super().__init__()
        self._config = config
        dump_date = config.dump_date or None
        self.sites = {
            path: wikipedia_dump.read_siteinfo(path, dump_date=dump_date) for path in paths
        }
        self.sizes = {path: storage.size(path) for path in paths}
        range_bytes = beam_options.local_range_bytes(
            int(config.range_mb * (1 << 20)), sum(self.sizes.values()), workers=workers
        )
        self.ranges: list[wikipedia_dump.ReadRange] = []
        self.template_ranges: list[wikipedia_dump.ReadRange] = []
        for path in paths:
            site = self.sites[path]
            if not site.has_siteinfo or not site.template_namespace:
                logging.warning(
                    "%s: %s; using the canonical Template namespace"
                    " (wikiextractor's own reader would silently drop every page)",
                    path,
                    "no <siteinfo>" if not site.has_siteinfo else "siteinfo lacks namespace 10",
                )
            plan = functools.partial(
                wikipedia_dump.plan_reads,
                path,
                site=site,
                index_path=config.multistream_index or None,
                use_index=config.use_multistream_index,
                range_bytes=range_bytes,
            )
            self.ranges += plan()
            if config.expand_templates:
                # With an index, the template pass reads only the streams that hold a page
                # titled "Template:…" (the index lists every title); without one, everything.
                prefix = f"{site.template_namespace}:" if site.template_namespace else None
                self.template_ranges += plan(title_prefix=prefix)
        for path in paths:
            logging.info(
                "%s: %s, %s, language %s, read as %d range(s), %d of them for templates",
                path,
                self.sites[path].dbname or "(no dbname)",
                self.sites[path].encoding,
                self.sites[path].language,
                sum(1 for r in self.ranges if r.path == path),
                sum(1 for r in self.template_ranges if r.path == path),
            )
            note = sentences.fallback_note(
                sentences.language_code(config.language or self.sites[path].language)
            )
            if note:
                logging.warning("%s: %s", path, note)

    def expand(self, pipeline: beam.Pipeline):
        sites_by_path = self.sites
        workers = beam_options.local_workers(pipeline.pipeline)

        def reading(step: str, read_ranges: Sequence[wikipedia_dump.ReadRange]):
            total = sum(_range_bytes(r, self.sizes) for r in read_ranges)
            return progress.Progress(step, "pages", total_bytes=total, workers=workers)

        ranges = (
            pipeline
            | "PlanReads" >> beam.Create(self.ranges)
            # Spread the ranges of one huge file over all workers.
            | "SpreadRanges" >> beam.Reshuffle()
        )
        if self._config.expand_templates:
            definitions = (
                pipeline
                | "PlanTemplateReads" >> beam.Create(self.template_ranges)
                | "SpreadTemplateRanges" >> beam.Reshuffle()
                | "ReadTemplatePages"
                >> beam.ParDo(
                    _ReadTemplatePagesFn(
                        sites_by_path,
                        self.sizes,
                        reading(f"{COMMAND}: template pass", self.template_ranges),
                    )
                )
                | "NewestTemplate" >> beam.CombinePerKey(_newest)
            )
            templates = definitions | "Templates" >> beam.FlatMap(_definitions_of_kind, "template")
            redirects = definitions | "Redirects" >> beam.FlatMap(_definitions_of_kind, "redirect")
        else:
            templates = pipeline | "NoTemplates" >> beam.Create([])
            redirects = pipeline | "NoRedirects" >> beam.Create([])
        read = ranges | "ReadArticlePages" >> beam.ParDo(
            _ReadArticlePagesFn(sites_by_path, self.sizes, reading(COMMAND, self.ranges))
        ).with_outputs("drops", main="pages")
        pages = read.pages
        if any(read_range.parts == 1 for read_range in self.ranges):
            # A file read as one range (a plain dump) yields all its pages in one bundle: spread
            # them so that cleaning, the slow part, runs on every worker. Multistream ranges are
            # spread already; there the pages stay fused with their reader, and the local runner
            # does not have to hold them all in memory.
            pages = pages | "SpreadPages" >> beam.Reshuffle()
        cleaned = pages | "CleanArticles" >> beam.ParDo(
            _CleanArticleFn(sites_by_path, self._config),
            templates=beam.pvalue.AsDict(templates),
            redirects=beam.pvalue.AsDict(redirects),
        ).with_outputs("drops", main="documents")
        drops = (read.drops, cleaned.drops) | "AllDrops" >> beam.Flatten()
        return cleaned.documents, drops


def _definitions_of_kind(item: tuple, kind: str) -> Iterator[tuple]:
    key, (_, item_kind, value) = item
    if item_kind == kind:
        yield key, value


# ----------------------------------------------------------------------------------------------
# Books.


class _ReadBookFn(beam.DoFn):
    """Book path → `Document`; tagged output "drops". An unreadable file fails the job."""

    def __init__(self, config: ExtractTextConfig, reading: progress.Progress):
        self._config = config
        self._progress = reading

    def process(self, path: str) -> Iterator[Any]:
        started = time.monotonic()
        book = books.read_book(path, language=self._config.language or None)
        _counter("books_read").inc()
        self._progress.advance(items=1, bytes_done=storage.size(path))
        document_sentences = sentences.split_paragraphs(book.paragraphs, language=book.language)
        logging.info(
            "read %s (%s, %s, %s): %d paragraphs, %d sentences in %.1f s",
            path,
            book.title,
            book.encoding,
            "Gutenberg markers cut" if book.has_gutenberg_markers else "no Gutenberg markers",
            len(book.paragraphs),
            len(document_sentences),
            time.monotonic() - started,
        )
        if sum(len(sentence) for sentence in document_sentences) < self._config.min_article_chars:
            _counter("dropped_too_short").inc()
            yield beam.pvalue.TaggedOutput("drops", "too_short")
            return
        yield text_shards.Document.of(book.doc_id, document_sentences)


class ReadBooks(beam.PTransform):
    """Book files → (`Document`s, drop reasons)."""

    def __init__(self, paths: Sequence[str], config: ExtractTextConfig):
        super().__init__()
        self._paths = list(paths)
        self._config = config

    def expand(self, pipeline: beam.Pipeline):
        reading = progress.Progress(
            COMMAND,
            "books",
            total_bytes=sum(storage.size(path) for path in self._paths),
            workers=beam_options.local_workers(pipeline.pipeline),
        )
        read = (
            pipeline
            | "ListBooks" >> beam.Create(self._paths)
            | "SpreadBooks" >> beam.Reshuffle()
            | "ReadBooks"
            >> beam.ParDo(_ReadBookFn(self._config, reading)).with_outputs(
                "drops", main="documents"
            )
        )
        return read.documents, read.drops


# ----------------------------------------------------------------------------------------------
# Shards.


def _split_and_bucket(
    document: text_shards.Document, config: ExtractTextConfig
) -> tuple[tuple[str, int], text_shards.Document]:
    split = text_shards.split_of(document.doc_id, eval_fraction=config.eval_fraction)
    num_buckets = text_shards.BUCKETS_PER_SHARD * _shard_count(split, config)
    return (split, text_shards.bucket_of(document.doc_id, num_buckets=num_buckets)), document


def _shard_count(split: str, config: ExtractTextConfig) -> int:
    return config.num_shards if split == "train" else config.num_eval_shards


def _shard_plan(
    bucket_bytes: Iterable[tuple[tuple[str, int], int]], config: ExtractTextConfig
) -> dict[tuple[str, int], int]:
    """(split, bucket) → shard index, balancing bytes per split (see text_shards)."""
    plan = {}
    for split in text_shards.SPLITS:
        sizes = {bucket: size for (s, bucket), size in bucket_bytes if s == split}
        for bucket, shard in text_shards.assign_buckets(
            sizes, num_shards=_shard_count(split, config)
        ).items():
            plan[(split, bucket)] = shard
    return plan


class _SpillDocuments(beam.DoFn):
    """((split, bucket), Document) -> the documents in scratch files under `scratch_dir`, a
    file each `max_bytes` of them, and ((split, bucket), `group_files.Slice`) out, with the
    slice's text bytes as its weight (for the shard plan)."""

    def __init__(self, scratch_dir: str, *, max_bytes: int = 32 << 20):
        self._scratch_dir = scratch_dir
        self._max_bytes = max_bytes

    def start_bundle(self):
        self._groups: dict[tuple[str, int], list[text_shards.Document]] = {}
        self._weights: collections.Counter = collections.Counter()
        self._bytes = 0

    def process(self, item):
        key, document = item
        self._groups.setdefault(key, []).append(document)
        self._weights[key] += document.num_bytes
        self._bytes += len(document.compressed) + len(document.doc_id) + 64
        if self._bytes >= self._max_bytes:
            yield from self._flush()

    def finish_bundle(self):
        for element in self._flush():
            yield beam.transforms.window.GlobalWindows.windowed_value(element)

    def _flush(self) -> list:
        if not self._groups:
            return []
        # A name of its own per file: bundles have no stable identity (a retried bundle's
        # file is left unread, and removed with the scratch folder).
        path = storage.join(self._scratch_dir, f"documents-{uuid.uuid4().hex}.pickle")
        slices = group_files.write_groups(path, self._groups, weights=self._weights)
        self.start_bundle()
        return slices


def _write_shard(
    shard_and_documents: tuple[tuple[str, int], Iterable[text_shards.Document]],
    config: ExtractTextConfig,
) -> dict[str, Any]:
    """Writes one shard atomically; returns its statistics.

    `documents` are the shard's documents or, grouped through files, `group_files.Slice`s of
    the scratch files that hold them."""
    (split, index), documents = shard_and_documents
    documents = list(documents)
    if documents and isinstance(documents[0], group_files.Slice):
        documents = list(group_files.read_slices(documents))
    kept, duplicates = text_shards.deduplicate(documents)
    path = storage.join(
        config.output_dir, text_shards.shard_name(split, index, _shard_count(split, config))
    )
    num_bytes = _write_documents(path, kept)
    num_sentences = sum(document.num_sentences for document in kept)
    _counter("documents_written").inc(len(kept))
    _counter("sentences_written").inc(num_sentences)
    _counter("bytes_written").inc(num_bytes)
    if duplicates:
        _counter("dropped_duplicate").inc(duplicates)
    logging.info("wrote %s: %d documents, %d bytes", path, len(kept), num_bytes)
    return {
        "split": split,
        "index": index,
        "path": path,
        "documents": len(kept),
        "sentences": num_sentences,
        "bytes": num_bytes,
        "duplicates": duplicates,
    }


def _write_documents(path: str, documents: Sequence[text_shards.Document]) -> int:
    """Writes documents in the shard format (a blank line between documents); returns bytes."""
    written = 0
    pending: list[bytes] = []
    pending_bytes = 0
    with storage.atomic_open(path, "wb") as handle:
        for position, document in enumerate(documents):
            data = document.data if position == 0 else b"\n" + document.data
            pending.append(data)
            pending_bytes += len(data)
            if pending_bytes >= _WRITE_BYTES:
                handle.write(b"".join(pending))
                written += pending_bytes
                pending, pending_bytes = [], 0
        handle.write(b"".join(pending))
        written += pending_bytes
    return written


def _finish(
    _: Any,
    *,
    shards: Sequence[dict[str, Any]],
    drops: Mapping[str, int],
    config: ExtractTextConfig,
    inputs: Sequence[str],
    sources: Mapping[str, Any],
    scratch_dir: str,
) -> stage.StageResult:
    """Runs once every shard is written: writes the empty shards, removes the scratch folder;
    what metadata.json holds."""
    storage.rmtree(scratch_dir)
    by_name = {(shard["split"], shard["index"]): shard for shard in shards}
    for split in text_shards.SPLITS:
        count = _shard_count(split, config)
        for index in range(count):
            if (split, index) not in by_name:
                path = storage.join(config.output_dir, text_shards.shard_name(split, index, count))
                storage.atomic_write(path, b"")
                by_name[(split, index)] = {
                    "split": split,
                    "index": index,
                    "path": path,
                    "documents": 0,
                    "sentences": 0,
                    "bytes": 0,
                    "duplicates": 0,
                }
    ordered = [by_name[key] for key in sorted(by_name)]
    documents = sum(shard["documents"] for shard in ordered)
    dropped = dict.fromkeys(DROP_REASONS, 0)
    dropped.update(drops)
    dropped["duplicate"] += sum(shard["duplicates"] for shard in ordered)
    if documents == 0:
        # An empty output would look like a finished job; it almost always means the input
        # was not what it seemed (wrong glob, wrong --source, every page filtered).
        raise ValueError(
            f"no document extracted from {len(inputs)} input file(s) ({', '.join(inputs[:3])}"
            f"{', …' if len(inputs) > 3 else ''}); dropped: "
            + ", ".join(f"{reason}={count}" for reason, count in dropped.items() if count)
        )
    counts = {
        "documents": documents,
        "sentences": sum(shard["sentences"] for shard in ordered),
        "bytes": sum(shard["bytes"] for shard in ordered),
        **{
            f"{split}_documents": sum(s["documents"] for s in ordered if s["split"] == split)
            for split in text_shards.SPLITS
        },
        **{f"dropped_{reason}": count for reason, count in sorted(dropped.items())},
    }
    empty = [storage.basename(s["path"]) for s in ordered if not s["documents"]]
    if empty:
        logging.warning("%d shard(s) got no document: %s", len(empty), ", ".join(empty))
    return stage.StageResult(
        outputs=[shard["path"] for shard in ordered],
        counts=counts,
        extra={
            "sources": dict(sources),
            "shards": [
                {key: shard[key] for key in ("documents", "sentences", "bytes")}
                | {"name": storage.basename(shard["path"])}
                for shard in ordered
            ],
        },
    )


class WriteShards(beam.PTransform):
    """`Document`s → size-balanced train/eval shards, then metadata.json."""

    def __init__(
        self,
        config: ExtractTextConfig,
        *,
        inputs: Sequence[str],
        drops: beam.PCollection,
        sources: Mapping[str, Any],
    ):
        super().__init__()
        self._config = config
        self._inputs = list(inputs)
        self._drops = drops
        self._sources = dict(sources)
        self._scratch_dir = storage.join(config.output_dir, f".tmp-text-{uuid.uuid4().hex}")

    def expand(self, documents: beam.PCollection) -> beam.PCollection:
        config = self._config
        keyed = documents | "SplitAndBucket" >> beam.Map(_split_and_bucket, config)
        on_dataflow = beam_options.runs_on_dataflow(documents.pipeline)
        if group_files.resolve(config.grouping, on_dataflow=on_dataflow) == "files":
            keyed = keyed | "SpillDocuments" >> beam.ParDo(_SpillDocuments(self._scratch_dir))
            weight = operator.attrgetter("weight")
        else:
            weight = operator.attrgetter("num_bytes")
        plan = (
            keyed
            | "DocumentBytes" >> beam.Map(lambda item: (item[0], weight(item[1])))
            | "BucketBytes" >> beam.CombinePerKey(sum)
            | "AllBuckets" >> beam.combiners.ToList()
            | "PlanShards" >> beam.Map(_shard_plan, config)
        )
        shards = (
            keyed
            | "AssignShard"
            >> beam.Map(
                lambda item, plan: ((item[0][0], plan[item[0]]), item[1]),
                plan=beam.pvalue.AsSingleton(plan),
            )
            | "GroupShards" >> beam.GroupByKey()
            | "WriteShard" >> beam.Map(_write_shard, config)
        )
        drop_counts = self._drops | "CountDrops" >> beam.combiners.Count.PerElement()
        return (
            documents.pipeline
            | "Once" >> beam.Create([None])
            | "Finish"
            >> beam.Map(
                _finish,
                shards=beam.pvalue.AsList(shards),
                drops=beam.pvalue.AsDict(drop_counts),
                config=config,
                inputs=self._inputs,
                sources=self._sources,
                scratch_dir=self._scratch_dir,
            )
            | "WriteMetadata"
            >> stage.WriteMetadata(
                command=COMMAND, config=config, output_dir=config.output_dir, inputs=self._inputs
            )
        )


# ----------------------------------------------------------------------------------------------
# The job.


def build_pipeline(pipeline: beam.Pipeline, config: ExtractTextConfig) -> beam.PCollection:
    """Adds the whole extract_text job to `pipeline`.

    Lists the inputs (an empty glob fails here, naming the pattern), reads every dump's
    siteinfo and multistream index, and clears the output folder of an earlier run's shards and
    metadata.json, all before the pipeline runs.

    Returns:
      A PCollection with one element, the metadata record, once everything is written.
    """
    inputs = input_files(config)
    if config.source == "wikipedia":
        reader = ReadWikipedia(inputs, config, workers=beam_options.local_workers(pipeline))
        sources = {
            storage.basename(path): dataclasses.asdict(site) for path, site in reader.sites.items()
        }
    else:
        reader = ReadBooks(inputs, config)
        sources = {}
    prepare_output_dir(config.output_dir)
    documents, drops = pipeline | f"Read{config.source.capitalize()}" >> reader
    return documents | "WriteShards" >> WriteShards(
        config, inputs=inputs, drops=drops, sources=sources
    )


STAGE = stage.Stage(
    command=COMMAND,
    config_class=ExtractTextConfig,
    build_pipeline=build_pipeline,
    output_dir=operator.attrgetter("output_dir"),
)


if __name__ == "__main__":
    stage.run_as_program(STAGE)
