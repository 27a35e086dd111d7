"""Wikitext to clean text: which pages are articles, template pages, and the cleaning.

Plain functions with no Beam in them, on the `Page`s that `pipeline/wikipedia_dump.py` reads.

Cleaning is wikiextractor's `Extractor` (3.1.0), with its traps worked around:

- it expands `{{CURRENTYEAR}}`-like magic words to the time of the run: here they are pinned to
  the dump's date (from `--dump_date` or a `YYYYMMDD` in the file name), else to the page's own
  revision timestamp, so a rerun gives the same bytes;
- its reader drops every page, silently, when `<siteinfo>` lacks the Template namespace or is
  missing (every title "starts with" the empty template namespace): we never use its reader, read
  the namespace of each page from `<ns>`, and fall back to the canonical `Template` prefix (or the
  prefix the dump's own template pages use);
- its reader decodes every file as UTF-8 and fails on a UTF-16 dump: ours detects the encoding
  from the byte-order mark or the XML declaration.
"""

from __future__ import annotations

import calendar
import collections
import datetime
import re
from collections.abc import Iterable, Mapping
from xml.sax.saxutils import escape as xml_escape

from wikiextractor import extract as wikiextractor

from pipeline.wikipedia_dump import (
    CANONICAL_TEMPLATE_NAMESPACE,
    TEMPLATE_NAMESPACE_KEY,
    Page,
    SiteInfo,
)

# Templates that mark a disambiguation page on the English Wikipedia (and their common
# redirects); `__DISAMBIG__` is the language-neutral switch the same templates emit.
_DISAMBIGUATION_TEMPLATES = (
    "disambiguation",
    "disambig",
    "disamb",
    "dab",
    "dis",
    "disambiguation cleanup",
    "geodis",
    "hndis",
    "hndis-cleanup",
    "numberdis",
    "letter-number combination disambiguation",
    "mil-unit-dis",
    "hospital disambiguation",
    "school disambiguation",
    "species latin name disambiguation",
    "genus disambiguation",
    "call sign disambiguation",
    "place name disambiguation",
    "human name disambiguation",
)
_DISAMBIGUATION_RE = re.compile(
    r"\{\{\s*(?:template\s*:\s*)?(?:"
    + "|".join(re.escape(name).replace(r"\ ", r"[ _]") for name in _DISAMBIGUATION_TEMPLATES)
    + r")\s*(?:\||\}\})|__DISAMBIG__",
    re.IGNORECASE,
)
_DISAMBIGUATION_TITLE_RE = re.compile(r"\(disambiguation\)$", re.IGNORECASE)

# Markup wikiextractor sometimes leaves behind (an unknown tag such as <onlyinclude>, a
# template it did not expand, a table or link fragment): a paragraph that still holds any of it
# after the clean-up below is dropped rather than written.
_LEFTOVER_TAG_RE = re.compile(r"</?[a-zA-Z][\w:-]*(?:\s[^<>]*)?/?>")
_LEFTOVER_TEMPLATE_RE = re.compile(r"\{\{[^{}]*\}\}")
_MAGIC_SWITCH_RE = re.compile(r"__[A-Z]+__")
_HAS_LETTER_RE = re.compile(r"[^\W\d_]")
# wikiextractor replaces <math> and <code> with "formula_7" / "codice_2": a paragraph that is
# only such a placeholder says nothing.
_PLACEHOLDER_ONLY_RE = re.compile(r"^(?:(?:formula|codice)_\d+[\s.,;:]*)+$")
# What removed templates leave in parentheses: "Schopenhauer (; 22 February 1788 – …)", "()".
# What a template that expands to nothing (one wikiextractor does not implement: #invoke Lua
# modules, #language, ...) leaves in its sentence: parentheses with nothing or punctuation in
# them, a separator just inside "(", a label's colon with no label (`(: "Felidae",: "кошачьи")`
# from `({{Ll|la}}: "Felidae", {{Ll|ru}}: "кошачьи")`), a separator just inside ")" (`"Aploun";)`
# from `''Aploun''; {{lang-la|Apollō}})`), a label's colon followed at once by a separator
# (`Greek:, "Apollōn"` from `Greek: {{lang|grc|Ἀπόλλων}}, ''Apollōn''`).
# Full-width forms too (CJK text): （ ） ： ， 、 ；
_EMPTY_PARENTHESES_RE = re.compile(r"\s*[(（][\s;,:.\-–—/；，、：]*[)）]")
_PARENTHESIS_SEPARATOR_RE = re.compile(r"([(（])\s*(?:[;,:；，、：]\s*)+")
_CLOSING_SEPARATOR_RE = re.compile(r"(?<=\S)(?:\s*[;,；，、])+\s*(?=[)）])")
_DANGLING_COLON_RE = re.compile(r"(?<=[(,;（，；、])\s*[:：]\s*")
_COLON_SEPARATOR_RE = re.compile(r"(?<=\S)([:：])\s*[,;，；、]\s*")

# English month and day names for the CURRENTMONTHNAME-like magic words (MediaWiki localises
# them by the wiki's content language; wikiextractor leaves them empty).
_MONTH_NAMES = tuple(calendar.month_name)
_MONTH_ABBREVIATIONS = tuple(calendar.month_abbr)
_DAY_NAMES = tuple(calendar.day_name)


# ----------------------------------------------------------------------------------------------
# Filtering.


def is_disambiguation(page: Page) -> bool:
    """A disambiguation page: "(disambiguation)" title, a dab template or `__DISAMBIG__`."""
    return bool(_DISAMBIGUATION_TITLE_RE.search(page.title) or _DISAMBIGUATION_RE.search(page.text))


def drop_reason(page: Page) -> str | None:
    """Why a page is not an article to extract, before cleaning; None for an article.

    Returns:
      "namespace" (not namespace 0), "redirect", "disambiguation", or None.
    """
    if page.namespace != 0:
        return "namespace"
    if page.redirect:
        return "redirect"
    if is_disambiguation(page):
        return "disambiguation"
    return None


# ----------------------------------------------------------------------------------------------
# Templates.


def template_definition(page: Page) -> tuple[str, str, str] | None:
    """What a template page contributes to expansion, as wikiextractor would store it.

    Returns:
      `("template", title, body)`, `("redirect", title, target_title)`, or None for a page with
      nothing to store.
    """
    # wikiextractor's resolver expects the dump's escaped text, as its own reader passes it.
    result = wikiextractor.resolve_template_page(page.title, [_dump_escaped(page.text)])
    if result is None:
        return None
    kind, value = result
    return kind, page.title, value


# MediaWiki's canonical namespace names, which every wiki accepts beside its local ones
# (`{{Template:X}}` on a Czech wiki is `{{Šablona:X}}`), and the aliases it defines everywhere.
CANONICAL_NAMESPACES = {
    -2: "Media",
    -1: "Special",
    1: "Talk",
    2: "User",
    3: "User talk",
    4: "Project",
    5: "Project talk",
    6: "File",
    7: "File talk",
    8: "MediaWiki",
    9: "MediaWiki talk",
    10: "Template",
    11: "Template talk",
    12: "Help",
    13: "Help talk",
    14: "Category",
    15: "Category talk",
}
CANONICAL_ALIASES = {"Image": 6, "Image talk": 7}
# Template redirects followed one after another at most (MediaWiki itself follows one; wikis
# have chains from page moves). Longer chains, and loops, are counted as unresolved.
MAX_TEMPLATE_REDIRECTS = 10


def _title_form(text: str) -> str:
    """Underscores and runs of whitespace as one space, trimmed (MediaWiki's title form)."""
    return " ".join(text.replace("_", " ").split())


def _ucfirst(text: str) -> str:
    return text[:1].upper() + text[1:]


class Namespaces:
    """A wiki's namespace names as MediaWiki resolves them: its local names, the canonical
    English ones and the aliases (siteinfo's and MediaWiki's own), any letter case, underscores
    as spaces.

    Args:
      site: the dump's siteinfo.
      template_prefix: the template namespace's prefix when the siteinfo does not name it.
    """

    def __init__(self, site: SiteInfo, *, template_prefix: str = ""):
        self.local = {key: name for key, name in site.namespaces if name}
        if TEMPLATE_NAMESPACE_KEY not in self.local and template_prefix:
            self.local[TEMPLATE_NAMESPACE_KEY] = template_prefix.rstrip(":")
        names = [*CANONICAL_NAMESPACES.items(), *((k, n) for n, k in CANONICAL_ALIASES.items())]
        names += [*self.local.items(), *site.namespace_aliases]
        self._keys = {_title_form(name).casefold(): key for key, name in names if name}
        self.names = frozenset(_ucfirst(_title_form(name)) for _, name in names if name)

    def key_of(self, prefix: str) -> int | None:
        """The namespace key a title prefix names ("template", "Šablona", "Image"), else None."""
        return self._keys.get(_title_form(prefix).casefold())

    def name_of(self, key: int) -> str:
        """The wiki's own name of a namespace (the canonical one where the dump names none)."""
        return self.local.get(key) or CANONICAL_NAMESPACES[key]

    def unprefixed_transclusions(self, text: str) -> str:
        """`{{Template:X|…}}`, `{{šablona:X}}`, `{{<alias>:X}}` as `{{X|…}}`.

        wikiextractor reads every `{{name:…}}` as a parser function call (and expands an
        unknown one to nothing), so a transclusion that names the template namespace, which
        MediaWiki allows under any of its names, came out empty. Transclusion defaults to
        that namespace, so dropping the prefix keeps the meaning.
        """
        if "{{" not in text or ":" not in text:
            return text
        return _TRANSCLUSION_PREFIX_RE.sub(self._unprefixed, text)

    def _unprefixed(self, match: re.Match) -> str:
        if self.key_of(match.group(2)) == TEMPLATE_NAMESPACE_KEY:
            return match.group(1)
        return match.group(0)

    def canonical(self, title: str) -> str:
        """A title as the wiki stores it: "template:language_link" -> "Šablona:Language link"
        on a Czech wiki; a title without a namespace only gets its first letter upper-cased."""
        title = _title_form(title)
        prefix, colon, rest = title.partition(":")
        key = self.key_of(prefix) if colon else None
        if key is None:
            return _ucfirst(title)
        return f"{self.name_of(key)}:{_ucfirst(rest.strip())}"


# `{{` then a would-be namespace name and a colon (not `{{#if:`, `{{lc:`: those are not
# namespace names, which `Namespaces.key_of` tells).
_TRANSCLUSION_PREFIX_RE = re.compile(r"(\{\{)\s*([^{}|:#\n]{1,40}?)\s*:\s*")


class _CanonicalTemplates(Mapping):
    """Template bodies by title, looked up by canonical title (`Namespaces.canonical`)."""

    def __init__(self, table: Mapping[str, str], namespaces: Namespaces):
        self._table = table
        self._namespaces = namespaces

    def __getitem__(self, title: str) -> str:
        body = self._table[self._namespaces.canonical(title)]
        return self._namespaces.unprefixed_transclusions(body)

    def __contains__(self, title: object) -> bool:
        return isinstance(title, str) and self._namespaces.canonical(title) in self._table

    def __iter__(self):
        return iter(self._table)

    def __len__(self) -> int:
        return len(self._table)


class _RedirectChains:
    """wikiextractor's `redirects.get(title)`, following chains of template redirects through
    canonical titles, at most MAX_TEMPLATE_REDIRECTS; a chain that ends nowhere (no such
    template, a loop, too long) is counted in `counts["template_redirects_unresolved"]`."""

    def __init__(
        self,
        table: Mapping[str, str],
        templates: Mapping[str, str],
        namespaces: Namespaces,
        counts: collections.Counter,
    ):
        self._table = table
        self._templates = templates
        self._namespaces = namespaces
        self._counts = counts

    def get(self, title: str, default=None):
        canonical = self._namespaces.canonical(title)
        if canonical not in self._table:
            return default
        seen = {canonical}
        for _ in range(MAX_TEMPLATE_REDIRECTS):
            target = self._namespaces.canonical(self._table[canonical])
            if target in self._templates:
                return target
            if target in seen or target not in self._table:
                break
            seen.add(target)
            canonical = target
        self._counts["template_redirects_unresolved"] += 1
        return default


def template_prefix(site: SiteInfo, template_titles: Iterable[str] = ()) -> str:
    """The namespace prefix of template titles ("Template:"), without trusting a missing siteinfo.

    Args:
      site: the dump's siteinfo; its namespace 10 name wins when present.
      template_titles: titles of the dump's template pages (namespace 10), used when the
        siteinfo does not name the namespace.
    """
    if site.template_namespace:
        return site.template_namespace + ":"
    for title in template_titles:
        prefix, colon, _ = title.partition(":")
        if colon and prefix:
            return prefix + ":"
        break
    return CANONICAL_TEMPLATE_NAMESPACE + ":"


# ----------------------------------------------------------------------------------------------
# Cleaning.


class PinnedMagicWords(wikiextractor.MagicWords):
    """wikiextractor's magic words with the date and time ones fixed to one moment.

    `Extractor.clean_text` writes `time.strftime(...)` into CURRENTYEAR & co. on every call;
    this table ignores those writes, so the expansion depends on the dump, not on the day the job
    runs. It also fills the words wikiextractor leaves empty (CURRENTMONTHNAME, CURRENTDAY2,
    CURRENTDOW, …) and the REVISION* words from the page's revision timestamp.
    """

    def __init__(self, moment: datetime.datetime, revision: datetime.datetime | None = None):
        super().__init__()
        values = _date_words("current", moment)
        values.update(_date_words("local", moment))
        values["currenttimestamp"] = values["localtimestamp"] = moment.strftime("%Y%m%d%H%M%S")
        if revision is not None:
            values.update(
                {
                    "revisionyear": f"{revision.year:04d}",
                    "revisionmonth": f"{revision.month:02d}",
                    "revisionmonth1": str(revision.month),
                    "revisionday": str(revision.day),
                    "revisionday2": f"{revision.day:02d}",
                    "revisiontimestamp": revision.strftime("%Y%m%d%H%M%S"),
                }
            )
        self._pinned = frozenset(values)
        self.values.update(values)

    def __setitem__(self, name: str, value: str) -> None:
        if name in self._pinned:
            return
        super().__setitem__(name, value)


def _date_words(prefix: str, moment: datetime.datetime) -> dict[str, str]:
    return {
        f"{prefix}year": f"{moment.year:04d}",
        f"{prefix}month": f"{moment.month:02d}",
        f"{prefix}month1": str(moment.month),
        f"{prefix}monthname": _MONTH_NAMES[moment.month],
        f"{prefix}monthnamegen": _MONTH_NAMES[moment.month],
        f"{prefix}monthabbrev": _MONTH_ABBREVIATIONS[moment.month],
        f"{prefix}day": str(moment.day),
        f"{prefix}day2": f"{moment.day:02d}",
        f"{prefix}dayname": _DAY_NAMES[moment.weekday()],
        f"{prefix}dow": str(moment.isoweekday() % 7),
        f"{prefix}week": str(moment.isocalendar()[1]),
        f"{prefix}hour": f"{moment.hour:02d}",
        f"{prefix}time": moment.strftime("%H:%M"),
    }


def parse_timestamp(value: str | None) -> datetime.datetime | None:
    """ "2016-04-21T20:45:07Z" or "2016-04-21" → an aware UTC datetime; None if unparsable."""
    if not value:
        return None
    for pattern in ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d"):
        try:
            moment = datetime.datetime.strptime(value.strip(), pattern)
        except ValueError:
            continue
        return moment.replace(tzinfo=moment.tzinfo or datetime.timezone.utc)
    return None


def page_moment(page: Page, site: SiteInfo) -> datetime.datetime:
    """The moment magic words are pinned to: the dump's date, else the page's revision time."""
    moment = parse_timestamp(site.dump_date) or parse_timestamp(page.timestamp)
    # No date anywhere: a fixed moment keeps the output reproducible all the same.
    return moment or datetime.datetime(2001, 1, 15, tzinfo=datetime.timezone.utc)


def _dump_escaped(text: str) -> str:
    """The wikitext as it appears inside the dump's XML (what wikiextractor's reader passes on)."""
    return xml_escape(text, {'"': "&quot;"})


def _ignored_tag_patterns() -> list:
    # As the wikiextractor command builds them without --links: links keep their text only.
    return list(wikiextractor._DEFAULT_IGNORED_TAG_PATTERNS) + [wikiextractor.ignoreTag("a")]


_IGNORED_TAG_PATTERNS = _ignored_tag_patterns()


def clean_wikitext(
    page: Page,
    *,
    site: SiteInfo,
    templates: Mapping[str, str] | None = None,
    redirects: Mapping[str, str] | None = None,
    prefix: str = CANONICAL_TEMPLATE_NAMESPACE + ":",
    expand_templates: bool = True,
    keep_lists: bool = False,
    counts: collections.Counter | None = None,
) -> list[str]:
    """Wikitext to plain-text paragraphs, with wikiextractor's `Extractor`.

    Args:
      page: an article page.
      site: its dump's siteinfo (namespaces, date).
      templates: template title ("Template:Foo") → body, for expansion.
      redirects: template title → target title.
      prefix: the template namespace prefix ("Template:"), see `template_prefix`.
      expand_templates: expand templates as the wikiextractor command does by default; False
        drops every `{{…}}` like its `--no-templates`.
      keep_lists: keep list items (`*`, `#`, `;`, `:` lines, indented or not) as plain
        paragraphs without their markers; by default they are left out (`without_lists`).
      counts: where to add "list_lines" (list lines left out, or kept without markers) and
        "template_redirects_unresolved".

    Returns:
      Paragraphs of plain text (no headings, lists or tables), one line each; paragraphs that
      still hold wiki markup after cleaning are left out.
    """
    counts = counts if counts is not None else collections.Counter()
    namespaces = Namespaces(site, template_prefix=prefix)
    templates = _CanonicalTemplates(templates if templates is not None else {}, namespaces)
    extractor = wikiextractor.Extractor(
        str(page.page_id),
        str(page.revision_id),
        site.base_url.rsplit("/", 1)[0] if site.base_url else "",
        page.title,
        [],
        templates=templates,
        redirects=_RedirectChains(
            redirects if redirects is not None else {}, templates, namespaces, counts
        ),
        templatePrefix=prefix,
        # Every name a title may use for a namespace: local, canonical, aliases.
        knownNamespaces=set(namespaces.names | {prefix.rstrip(":")}),
        ignored_tag_patterns=_IGNORED_TAG_PATTERNS,
        keepLinks=False,
        # Section titles are not sentences: leave them out of the text.
        keepSections=False,
    )
    extractor.magicWords = PinnedMagicWords(
        page_moment(page, site), parse_timestamp(page.timestamp)
    )
    text, list_lines = without_lists(
        namespaces.unprefixed_transclusions(page.text), keep=keep_lists
    )
    counts["list_lines"] += list_lines
    paragraphs = extractor.clean_text(
        _dump_escaped(text),
        mark_headers=False,
        expand_templates=expand_templates,
        html_safe=False,
    )
    return [p for p in (_strip_leftovers(line, counts) for line in paragraphs) if p]


# A list or indentation line: `*`, `#`, `;` or `:` markers, in any mix, at the line's start.
_LIST_LINE_RE = re.compile(r"^[*#:;]+[ \t]*(.*)$")
# Markup that can run over several lines; a line inside it is not a list line of the article.
_SPANNING_TAGS = "ref|math|poem|gallery|pre|nowiki|blockquote|score|timeline|syntaxhighlight"
_OPEN_TAG_RE = re.compile(rf"<({_SPANNING_TAGS})\b[^>]*?(/?)>", re.I)
_CLOSE_TAG_RE = re.compile(rf"</({_SPANNING_TAGS})\s*>", re.I)


def _depth_change(line: str) -> int:
    """How much deeper into multi-line markup the text is after `line` than before it."""
    if not any(mark in line for mark in ("{", "}", "[", "]", "<", ">")):
        return 0
    opened = sum(not m.group(2) for m in _OPEN_TAG_RE.finditer(line)) if "<" in line else 0
    closed = len(_CLOSE_TAG_RE.findall(line)) if "</" in line else 0
    return (
        line.count("{{")
        - line.count("}}")
        + line.count("[[")
        - line.count("]]")
        + line.count("<!--")
        - line.count("-->")
        + opened
        - closed
        + line.startswith("{|")
        - line.startswith("|}")
    )


def without_lists(text: str, *, keep: bool = False) -> tuple[str, int]:
    """The wikitext without its list and indentation lines; (text, lines taken).

    wikiextractor drops lists that start at the margin (`* item`, `# item`) but not indented
    ones: `:* Subfamily: [[X]]` comes out as `* Subfamily: X` and `: text` as a paragraph,
    though BERT's recipe keeps running text only. A line counts as a list line only outside
    every construct that can span lines (templates, links, comments, tables, <ref>, <math>,
    ...) and when it closes all it opens: removing any other would break the markup around
    it. A removed line leaves a paragraph break. With `keep`, each item stays as a paragraph
    of its own, without its markers (a `;term : definition` line gives both parts).
    """
    markers = ("*", "#", ":", ";")
    if text[:1] not in markers and not any(f"\n{marker}" in text for marker in markers):
        return text, 0
    lines = text.split("\n")
    depth = taken = 0
    for index, line in enumerate(lines):
        change = _depth_change(line)
        if depth == 0 and change == 0 and line[:1] in ("*", "#", ":", ";"):
            item = _LIST_LINE_RE.match(line).group(1)
            taken += 1
            if keep:
                parts = (part.strip() for part in item.split(" : "))
                lines[index] = "\n" + "\n\n".join(p for p in parts if p) + "\n"
            else:
                lines[index] = ""
        depth = max(0, depth + change)
    return "\n".join(lines), taken


def _has_residual_marks(text: str) -> bool:
    # Spelled out: a chain of substring tests is several times faster than a regex or any().
    return (
        "{{" in text
        or "}}" in text
        or "[[" in text
        or "]]" in text
        or "{|" in text
        or "|}" in text
        or "''" in text
    )


def _colon_alone(match: re.Match) -> str:
    return match.group(1) if match.group(1) == "：" else ": "


def _strip_leftovers(paragraph: str, counts: collections.Counter) -> str:
    """Removes the markup wikiextractor leaves in some paragraphs; "" to drop the paragraph.
    Counts the paragraphs whose template debris was removed (`debris_removed`) and those
    dropped because nothing but debris was left (`debris_dropped`)."""
    text = paragraph
    # Each substitution only where it can match (substring tests are much cheaper than a
    # regex scan): most paragraphs need none of them.
    if "<" in text:
        text = _LEFTOVER_TAG_RE.sub("", text)
    if "{{" in text:
        text = _LEFTOVER_TEMPLATE_RE.sub("", text)
    has_parenthesis = "(" in text or "（" in text
    if has_parenthesis or ":" in text or "：" in text:
        cleaned = text
        if has_parenthesis:
            cleaned = _EMPTY_PARENTHESES_RE.sub("", cleaned)
            cleaned = _PARENTHESIS_SEPARATOR_RE.sub(r"\1", cleaned)
            cleaned = _CLOSING_SEPARATOR_RE.sub("", cleaned)
        if ":" in cleaned or "：" in cleaned:
            if has_parenthesis:
                cleaned = _DANGLING_COLON_RE.sub(" ", cleaned)
                cleaned = cleaned.replace("( ", "(").replace("（ ", "（")
            cleaned = _COLON_SEPARATOR_RE.sub(_colon_alone, cleaned)
        if cleaned != text:
            if _HAS_LETTER_RE.search(cleaned):
                counts["debris_removed"] += 1
            else:
                counts["debris_dropped"] += 1
            text = cleaned
    text = text.strip()
    if (
        not text
        or text[0] in "|!"
        or _has_residual_marks(text)
        or ("__" in text and _MAGIC_SWITCH_RE.search(text))
        or not _HAS_LETTER_RE.search(text)
        or (text[0] in "fc" and _PLACEHOLDER_ONLY_RE.match(text))
    ):
        return ""
    return text


def document_id(page: Page, site: SiteInfo) -> str:
    """A stable id of an article: `<dbname>:<page id>:<title>` (the train/eval hash key).

    The title is part of it because some small wikis (and hand-made dumps) reuse page ids.
    """
    return f"{site.dbname or 'wiki'}:{page.page_id}:{page.title}"
