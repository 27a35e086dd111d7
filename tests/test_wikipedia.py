"""pipeline.wikipedia_dump and pipeline.wikitext: dump reading (multistream, plain, UTF-16, bad
input), filtering, cleaning."""

from __future__ import annotations

import bz2
import collections
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from wikiextractor import WikiExtractor as wikiextractor_command

from pipeline import wikipedia_dump, wikitext

SAMPLE = "wikipedia/enwiki-articles1-shortened-multistream.xml.bz2"
SAMPLE_INDEX = "wikipedia/enwiki-articles1-shortened-multistream-index.txt.bz2"
TINYWIKI = "wikipedia/tinywiki-pages-articles.xml"
TABLES = "wikipedia/enwiki-table-markup.xml.bz2"
# Stream starts listed in the sample's index (the header stream starts at 0).
SAMPLE_STREAMS = [638, 575005, 1617601]
# Wiki markup that must never reach the shards.
MARKUP = re.compile(r"\[\[|\]\]|\{\{|\}\}|\{\||\|\}|''|<[a-zA-Z/][^>]*>|&[a-z]+;|&#\d+;|__[A-Z]+__")

SITEINFO = """  <siteinfo>
    <sitename>Testpedia</sitename>
    <dbname>testwiki</dbname>
    <base>https://test.example.org/wiki/Main_Page</base>
    <namespaces>
      <namespace key="0" case="first-letter" />
      <namespace key="10" case="first-letter">Template</namespace>
    </namespaces>
  </siteinfo>
"""


def page_xml(
    title: str,
    text: str,
    *,
    page_id: int = 1,
    ns: int = 0,
    redirect: str | None = None,
    revision_id: int = 100,
    timestamp: str = "2013-03-22T09:37:03Z",
) -> str:
    from xml.sax.saxutils import escape

    redirect_xml = f'    <redirect title="{escape(redirect)}" />\n' if redirect else ""
    return (
        f"  <page>\n    <title>{escape(title)}</title>\n    <ns>{ns}</ns>\n    <id>{page_id}</id>\n"
        f"{redirect_xml}    <revision>\n      <id>{revision_id}</id>\n"
        f"      <timestamp>{timestamp}</timestamp>\n"
        f'      <text xml:space="preserve">{escape(text)}</text>\n    </revision>\n  </page>\n'
    )


def dump_xml(pages: list[str], *, siteinfo: str = SITEINFO, version: str = "0.10") -> str:
    return (
        f'<mediawiki xmlns="http://www.mediawiki.org/xml/export-{version}/" version="{version}" '
        f'xml:lang="en">\n{siteinfo}{"".join(pages)}</mediawiki>\n'
    )


ARTICLE = (
    "'''Testland''' is a [[country]] in the [[Test Sea]].<ref>{{cite web|title=X}}</ref> "
    "It has about 3.5 million people. Its capital, St. Example, lies on the coast.\n\n"
    "== History ==\nThe area was settled in 1200 by farmers from the north of the island.\n"
)


def write(path: Path, text: str | bytes, compression: str = "none") -> str:
    data = text.encode("utf-8") if isinstance(text, str) else text
    if compression == "bz2":
        data = bz2.compress(data)
    path.write_bytes(data)
    return str(path)


def read_all(path: str, *, site=None, **plan) -> list:
    site = site or wikipedia_dump.read_siteinfo(path)
    return [
        item
        for read_range in wikipedia_dump.plan_reads(path, site=site, **plan)
        for item in wikipedia_dump.read_pages(read_range, site=site)
    ]


def articles(items) -> dict[str, wikipedia_dump.Page]:
    return {
        item.title: item
        for item in items
        if isinstance(item, wikipedia_dump.Page) and wikitext.drop_reason(item) is None
    }


# ----------------------------------------------------------------------------------------------
# Siteinfo, index and ranges.


def test_siteinfo_of_the_bundled_dumps(data_dir):
    sample = wikipedia_dump.read_siteinfo(str(data_dir / SAMPLE))
    assert (sample.dbname, sample.language, sample.template_namespace) == (
        "enwiki",
        "en",
        "Template",
    )
    assert sample.has_siteinfo and sample.schema_version == "0.10"
    assert sample.dump_date is None

    tiny = wikipedia_dump.read_siteinfo(str(data_dir / TINYWIKI))
    assert tiny.has_siteinfo and tiny.template_namespace is None  # the wikiextractor trap
    assert tiny.language == "ltg"

    tables = wikipedia_dump.read_siteinfo(str(data_dir / TABLES))
    assert not tables.has_siteinfo and tables.dbname == ""


def test_index_names_and_dump_dates():
    assert wikipedia_dump.index_path_for(
        "gs://b/enwiki-20231101-pages-articles-multistream.xml.bz2"
    ) == ("gs://b/enwiki-20231101-pages-articles-multistream-index.txt.bz2")
    assert wikipedia_dump.index_path_for(
        "enwiki-20231101-pages-articles-multistream1.xml-p1p41242.bz2"
    ) == ("enwiki-20231101-pages-articles-multistream-index1.txt-p1p41242.bz2")
    assert wikipedia_dump.index_path_for("enwiki-20231101-pages-articles.xml.bz2") is None
    assert wikipedia_dump.is_index_file(
        "x/enwiki-20231101-pages-articles-multistream-index.txt.bz2"
    )
    assert (
        wikipedia_dump.dump_date_from_name("enwiki-20231101-pages-articles.xml.bz2") == "2023-11-01"
    )
    assert wikipedia_dump.dump_date_from_name("enwiki-99999999-pages.xml") is None
    assert wikipedia_dump.dump_date_from_name("enwiki-latest-pages.xml") is None


def test_multistream_ranges_follow_the_index(data_dir):
    path = str(data_dir / SAMPLE)
    site = wikipedia_dump.read_siteinfo(path)
    ranges = wikipedia_dump.plan_reads(path, site=site, range_bytes=1)
    assert [(r.start, r.end) for r in ranges] == [
        (0, 638),
        (638, 575005),
        (575005, 1617601),
        (1617601, None),
    ]
    # Streams are grouped up to the target size, never cut.
    grouped = wikipedia_dump.plan_reads(path, site=site, range_bytes=600_000)
    assert [(r.start, r.end) for r in grouped] == [(0, 1617601), (1617601, None)]
    assert len(wikipedia_dump.plan_reads(path, site=site)) == 1
    assert len(wikipedia_dump.plan_reads(path, site=site, use_index=False, range_bytes=1)) == 1


def test_multistream_and_plain_files_give_the_same_pages(data_dir, tmp_path):
    path = str(data_dir / SAMPLE)
    by_range = read_all(path, range_bytes=1)
    whole = read_all(path, use_index=False)
    plain = write(
        tmp_path / "plain.xml.bz2", bz2.decompress((data_dir / SAMPLE).read_bytes()), "bz2"
    )
    uncompressed = write(tmp_path / "plain.xml", bz2.decompress((data_dir / SAMPLE).read_bytes()))
    assert len(by_range) == 206
    assert by_range == whole == read_all(plain) == read_all(uncompressed)


def test_sample_pages_are_filtered_with_a_reason_each(data_dir):
    items = read_all(str(data_dir / SAMPLE))
    reasons = collections.Counter(wikitext.drop_reason(page) for page in items)
    assert reasons == {None: 98, "redirect": 99, "disambiguation": 8, "namespace": 1}
    assert "Austin (disambiguation)" not in articles(items)
    assert "Anarchism" in articles(items)


def test_we_keep_every_article_the_wikiextractor_command_finds(data_dir, tmp_path):
    """Its 106 pages = our 98 articles + the 8 disambiguation pages we drop on purpose."""
    out = tmp_path / "wikiextractor"
    subprocess.run(
        [sys.executable, "-m", "wikiextractor.WikiExtractor", str(data_dir / SAMPLE)]
        + ["-o", str(out), "--json", "--processes", "1", "--quiet"],
        check=True,
        capture_output=True,
    )
    theirs = {json.loads(line)["title"] for file in out.rglob("wiki_*") for line in file.open()}
    items = read_all(str(data_dir / SAMPLE))
    disambiguation = {
        p.title
        for p in items
        if isinstance(p, wikipedia_dump.Page) and wikitext.drop_reason(p) == "disambiguation"
    }
    assert len(theirs) == 106
    assert theirs == set(articles(items)) | disambiguation


# ----------------------------------------------------------------------------------------------
# wikiextractor's traps.


def test_siteinfo_without_template_namespace_still_gives_articles(data_dir, monkeypatch):
    """tinywiki's siteinfo lacks namespace 10: wikiextractor's reader drops all its pages."""
    path = str(data_dir / TINYWIKI)
    # What wikiextractor's siteinfo scan leaves in its global for this dump.
    monkeypatch.setattr(wikiextractor_command, "templateNamespace", "")
    with open(path, encoding="utf-8") as handle:
        assert list(wikiextractor_command.collect_pages(handle)) == []
    found = articles(read_all(path))
    assert {"Hello", "Toronto", "Big Page", "Bodmin"} <= set(found)
    assert "Redirect page" not in found  # "#REDIRECT" text without a <redirect> element
    assert "Disambiguation page" not in found  # {{disambiguation|geo}}


def test_dump_without_siteinfo_still_gives_articles(data_dir):
    path = str(data_dir / TABLES)
    site = wikipedia_dump.read_siteinfo(path)
    found = articles(read_all(path, site=site))
    assert len(found) == 5
    for page in found.values():
        paragraphs = wikitext.clean_wikitext(page, site=site, prefix=wikitext.template_prefix(site))
        assert paragraphs, page.title
        assert not any(MARKUP.search(p) for p in paragraphs), page.title


def test_template_prefix_without_siteinfo_comes_from_the_template_pages():
    bare = wikipedia_dump.SiteInfo()
    assert wikitext.template_prefix(bare) == "Template:"
    assert wikitext.template_prefix(bare, ["Vorlage:Infobox"]) == "Vorlage:"
    named = wikipedia_dump.SiteInfo(template_namespace="Modèle")
    assert wikitext.template_prefix(named, ["Vorlage:Infobox"]) == "Modèle:"


def test_utf16_dump_reads_like_utf8(data_dir, tmp_path):
    text = (data_dir / TINYWIKI).read_text(encoding="utf-8")
    declared = '<?xml version="1.0" encoding="UTF-16"?>\n' + text
    utf16 = write(tmp_path / "tiny-utf16.xml", declared.encode("utf-16"))  # with a BOM
    utf16_bz2 = write(tmp_path / "tiny-utf16.xml.bz2", declared.encode("utf-16-be"), "bz2")
    assert wikipedia_dump.read_siteinfo(utf16).encoding == "utf-16-le"
    assert wikipedia_dump.read_siteinfo(utf16_bz2).encoding == "utf-16-be"
    expected = read_all(str(data_dir / TINYWIKI))
    assert read_all(utf16) == expected
    assert read_all(utf16_bz2) == expected


def test_magic_words_are_pinned_to_the_dump_date(tmp_path):
    text = "In {{CURRENTYEAR}} ({{CURRENTMONTHNAME}} {{CURRENTDAY}}) the count was {{CURRENTYEAR}}."
    xml = dump_xml([page_xml("Count", text, timestamp="2013-03-22T09:37:03Z")])
    dated = write(tmp_path / "testwiki-20200105-pages-articles.xml", xml)
    undated = write(tmp_path / "testwiki-latest-pages-articles.xml", xml)

    def cleaned(path, **kwargs):
        site = wikipedia_dump.read_siteinfo(path, **kwargs)
        (page,) = articles(read_all(path, site=site)).values()
        return wikitext.clean_wikitext(page, site=site)

    assert cleaned(dated) == ["In 2020 (January 5) the count was 2020."]
    # No date in the name: the page's own revision time, never today's.
    assert cleaned(undated) == ["In 2013 (March 22) the count was 2013."]
    assert cleaned(undated, dump_date="2019-07-04") == ["In 2019 (July 4) the count was 2019."]


def test_templates_expand_from_the_dump(tmp_path):
    pages = [
        page_xml("Template:Lang", "a {{{1}}} word", page_id=5, ns=10),
        page_xml("Template:L", "#REDIRECT [[Template:Lang]]", page_id=6, ns=10),
        page_xml("Spain", "Spain is a country. People speak {{L|Spanish}} there today.", page_id=7),
    ]
    path = write(tmp_path / "t.xml", dump_xml(pages))
    site = wikipedia_dump.read_siteinfo(path)
    items = read_all(path, site=site)
    templates, redirects = {}, {}
    for item in items:
        if isinstance(item, wikipedia_dump.Page) and item.namespace == 10:
            kind, title, value = wikitext.template_definition(item)
            (templates if kind == "template" else redirects)[title] = value
    assert redirects == {"Template:L": "Template:Lang"}
    page = articles(items)["Spain"]
    assert wikitext.clean_wikitext(page, site=site, templates=templates, redirects=redirects) == [
        "Spain is a country. People speak a Spanish word there today."
    ]
    assert wikitext.clean_wikitext(page, site=site, expand_templates=False) == [
        "Spain is a country. People speak there today."
    ]


def test_clean_sample_articles_have_no_markup(data_dir):
    path = str(data_dir / SAMPLE)
    site = wikipedia_dump.read_siteinfo(path)
    found = articles(read_all(path, site=site))
    for page in found.values():
        for paragraph in wikitext.clean_wikitext(page, site=site):
            assert not MARKUP.search(paragraph), (page.title, paragraph)
            assert "\n" not in paragraph


def test_clean_wikitext_drops_headings_references_and_lists(tmp_path):
    page = wikipedia_dump.Page(
        1, "Testland", 0, False, 5, "2013-01-01T00:00:00Z", ARTICLE + "* a list item\n"
    )
    paragraphs = wikitext.clean_wikitext(page, site=wikipedia_dump.SiteInfo())
    assert paragraphs == [
        "Testland is a country in the Test Sea. It has about 3.5 million people. Its capital, "
        "St. Example, lies on the coast.",
        "The area was settled in 1200 by farmers from the north of the island.",
    ]


LISTS = (
    "The cat is a small animal. It lives with people.\n"
    ":* Subfamily: [[Felinae]]\n"
    "::# Genus: [[Felis]] here\n"
    ";Term : its definition\n"
    ": An indented remark.\n"
    "* A plain bullet with [[link]].\n"
    "Cats purr.<ref>A note\n"
    "* inside the reference, not a list of the article</ref> They sleep a lot.\n"
    "<!-- a comment\n"
    ": inside a comment -->\n"
    "{{Infobox\n"
    "| list = \n"
    "* inside a template\n"
    "}}\n"
    "A closing sentence of running text.\n"
)


def test_list_items_indented_or_not_are_left_out_or_kept_without_markers():
    page = wikipedia_dump.Page(1, "Cat", 0, False, 5, "2013-01-01T00:00:00Z", LISTS)
    counts = collections.Counter()
    paragraphs = wikitext.clean_wikitext(page, site=wikipedia_dump.SiteInfo(), counts=counts)
    # The lines inside the reference, the comment and the template are not the article's lists.
    assert paragraphs == [
        "The cat is a small animal. It lives with people.",
        "Cats purr. They sleep a lot.",
        "A closing sentence of running text.",
    ]
    assert counts["list_lines"] == 5
    kept = wikitext.clean_wikitext(page, site=wikipedia_dump.SiteInfo(), keep_lists=True)
    assert kept == [
        "The cat is a small animal. It lives with people.",
        "Subfamily: Felinae",
        "Genus: Felis here",
        "Term",
        "its definition",
        "An indented remark.",
        "A plain bullet with link.",
        "Cats purr. They sleep a lot.",
        "A closing sentence of running text.",
    ]
    # A removed list line leaves a paragraph break: its neighbours do not run together.
    text, taken = wikitext.without_lists("Line one\n: quoted\nLine two")
    assert (text, taken) == ("Line one\n\nLine two", 1)


def test_debris_of_templates_that_expand_to_nothing_is_removed_and_counted():
    # wikiextractor implements no Lua module: each {{#invoke:…}} expands to nothing.
    text = (
        'Kočka ({{#invoke:Lang|name|la}}: "Felidae", {{#invoke:Lang|name|ru}}: "кошачьи") je '
        "šelma. Žije s lidmi po tisíce let.\n\n"
        "Andorra ({{#invoke:IPA|ca}}, {{#invoke:IPA|es}}) je stát v Evropě.\n\n"
        # As in the English sample's Albania and Apollo: templates missing from the dump.
        "Albania ({{IPAc-en|æ|l}}, {{respell|al}}; {{lang-sq|Shqipëri}}; {{x}}) is a "
        "country.\n\n"
        "Apollo ([[Homeric Greek]]: {{lang|grc|X}}, ''Apollōn''; [[Aeolic Greek|Aeolic]]: "
        "{{lang|grc|Y}}, ''Aploun''; {{lang-la|Apollō}}) is a god. Achilles ({{IPAc-en|k}}; "
        "{{lang-grc|Z}}, ''Akhilleus'', {{IPA-el|a}}) was a hero. At 10:30, 3:1, ok.\n"
    )
    page = wikipedia_dump.Page(1, "Kočka", 0, False, 5, "2013-01-01T00:00:00Z", text)
    counts = collections.Counter()
    paragraphs = wikitext.clean_wikitext(page, site=wikipedia_dump.SiteInfo(), counts=counts)
    assert paragraphs == [
        'Kočka ("Felidae", "кошачьи") je šelma. Žije s lidmi po tisíce let.',
        "Andorra je stát v Evropě.",
        "Albania is a country.",
        'Apollo (Homeric Greek: "Apollōn"; Aeolic: "Aploun") is a god. Achilles ("Akhilleus") '
        "was a hero. At 10:30, 3:1, ok.",
    ]
    assert counts["debris_removed"] == 4


# ----------------------------------------------------------------------------------------------
# Bad input.


def test_truncated_bz2_is_an_error_naming_the_file(data_dir, tmp_path):
    data = (data_dir / SAMPLE).read_bytes()
    path = write(tmp_path / "cut.xml.bz2", data[:1_000_000])
    site = wikipedia_dump.read_siteinfo(path)
    with pytest.raises(wikipedia_dump.DumpError, match=r"cut\.xml\.bz2.*truncated"):
        read_all(path, site=site)


def test_malformed_page_is_a_counted_skip(tmp_path):
    good = page_xml("Good", ARTICLE, page_id=1)
    broken = page_xml("Broken", "text", page_id=2).replace("</title>", "</titel>")
    undecodable = page_xml("Bytes", "caf\x00e", page_id=3).replace("\x00", "\udcff")
    unclosed = page_xml("Unclosed", "text", page_id=4).replace("  </page>\n", "")
    xml = dump_xml([good, broken, unclosed, undecodable, page_xml("Last", ARTICLE, page_id=5)])
    data = xml.encode("utf-8", errors="surrogateescape")  # 0xff: not UTF-8
    path = write(tmp_path / "bad.xml", data)
    items = read_all(path)
    bad = [item for item in items if isinstance(item, wikipedia_dump.BadPage)]
    assert [p.title for p in items if isinstance(p, wikipedia_dump.Page)] == ["Good", "Last"]
    assert len(bad) == 3
    assert "not closed" in bad[1].reason


def test_unreadable_files_are_errors_naming_them(tmp_path):
    no_end = write(
        tmp_path / "no-end.xml", dump_xml([page_xml("A", ARTICLE)]).replace("</mediawiki>", "")
    )
    with pytest.raises(wikipedia_dump.DumpError, match=r"no-end\.xml.*without </mediawiki>"):
        read_all(no_end)
    cut_page = write(tmp_path / "cut-page.xml", dump_xml([page_xml("A", ARTICLE)])[:-40])
    with pytest.raises(wikipedia_dump.DumpError, match=r"cut-page\.xml.*inside a <page>"):
        read_all(cut_page)
    not_a_dump = write(tmp_path / "notes.xml", "<html><body>hello</body></html>")
    with pytest.raises(wikipedia_dump.DumpError, match=r"notes\.xml.*not a MediaWiki"):
        wikipedia_dump.read_siteinfo(not_a_dump)
    empty = write(tmp_path / "empty.xml.bz2", b"", "bz2")
    with pytest.raises(wikipedia_dump.DumpError, match=r"empty\.xml\.bz2.*empty"):
        wikipedia_dump.read_siteinfo(empty)
    with pytest.raises(wikipedia_dump.DumpError, match="missing.xml"):
        wikipedia_dump.read_siteinfo(str(tmp_path / "missing.xml"))


def test_an_index_of_another_dump_is_an_error(data_dir, tmp_path):
    dump = tmp_path / "other-multistream.xml.bz2"
    dump.write_bytes((data_dir / SAMPLE).read_bytes())
    write(tmp_path / "other-multistream-index.txt.bz2", "700:12:Anarchism\n", "bz2")
    site = wikipedia_dump.read_siteinfo(str(dump))
    first, second = wikipedia_dump.plan_reads(str(dump), site=site, range_bytes=1)
    with pytest.raises(
        wikipedia_dump.DumpError, match=r"\[bytes 0-700, part 1/2\].*inside a stream"
    ):
        list(wikipedia_dump.read_pages(first, site=site))
    with pytest.raises(wikipedia_dump.DumpError, match="no bz2 stream starts here"):
        list(wikipedia_dump.read_pages(second, site=site))
    write(tmp_path / "other-multistream-index.txt.bz2", "99999999:12:Anarchism\n", "bz2")
    with pytest.raises(wikipedia_dump.DumpError, match="past the end"):
        wikipedia_dump.plan_reads(str(dump), site=site)
    write(tmp_path / "other-multistream-index.txt.bz2", "garbage\n", "bz2")
    with pytest.raises(wikipedia_dump.DumpError, match="malformed index line"):
        wikipedia_dump.plan_reads(str(dump), site=site)


@pytest.mark.parametrize("version", ["0.9", "0.10", "0.11"])
def test_schema_versions(tmp_path, version):
    path = write(tmp_path / "v.xml", dump_xml([page_xml("Testland", ARTICLE)], version=version))
    site = wikipedia_dump.read_siteinfo(path)
    assert site.schema_version == version
    assert list(articles(read_all(path, site=site))) == ["Testland"]


def test_disambiguation_detection():
    def page(title, text):
        return wikipedia_dump.Page(1, title, 0, False, 1, "", text)

    assert wikitext.is_disambiguation(page("Mercury (disambiguation)", "x"))
    assert wikitext.is_disambiguation(page("Mercury", "Mercury may be:\n{{Disambiguation|geo}}"))
    assert wikitext.is_disambiguation(page("Mercury", "{{ hndis }}"))
    assert wikitext.is_disambiguation(page("Mercury", "x __DISAMBIG__"))
    assert not wikitext.is_disambiguation(page("Mercury", "{{Distinguish|Mars}} A planet."))
    assert not wikitext.is_disambiguation(page("Mercury", "{{disambiguation needed}} A planet."))


def write_multistream(folder: Path, streams: list[list[tuple[int, str, str]]]) -> str:
    """A multistream dump + index: streams of `(page_id, title, xml)` pages."""
    dump = folder / "test-multistream.xml.bz2"
    head, tail = dump_xml(["<PAGES>"]).split("<PAGES>")
    index = []
    with dump.open("wb") as out:
        out.write(bz2.compress(head.encode("utf-8")))
        for number, stream in enumerate(streams):
            offset = out.tell()
            text = "".join(xml for _, _, xml in stream)
            if number == len(streams) - 1:
                text += tail
            out.write(bz2.compress(text.encode("utf-8")))
            index += [f"{offset}:{page_id}:{title}" for page_id, title, _ in stream]
    write(folder / "test-multistream-index.txt.bz2", "\n".join(index) + "\n", "bz2")
    return str(dump)


def test_template_pass_reads_only_streams_with_template_titles(tmp_path):
    def article(page_id):
        return (
            page_id,
            f"Article {page_id}",
            page_xml(f"Article {page_id}", ARTICLE, page_id=page_id),
        )

    template = (9, "Template:Lang", page_xml("Template:Lang", "a {{{1}}} word", page_id=9, ns=10))
    path = write_multistream(
        tmp_path, [[article(1), article(2)], [article(3), template], [article(4)]]
    )
    site = wikipedia_dump.read_siteinfo(path)
    everything = wikipedia_dump.plan_reads(path, site=site, range_bytes=1)
    assert len(everything) == 4  # the header stream and three page streams
    (only,) = wikipedia_dump.plan_reads(path, site=site, range_bytes=1, title_prefix="Template:")
    assert (only.start, only.end) == (everything[2].start, everything[3].start)
    pages = [
        p for p in wikipedia_dump.read_pages(only, site=site) if isinstance(p, wikipedia_dump.Page)
    ]
    assert [p.title for p in pages] == ["Article 3", "Template:Lang"]
    assert wikipedia_dump.plan_reads(path, site=site, title_prefix="Vorlage:") == []
    # Articles: every stream, in any grouping.
    assert len(articles(read_all(path, range_bytes=1))) == 4
