"""pipeline.extract_text and pipeline.text_shards: shard logic, Beam steps, and whole jobs."""

from __future__ import annotations

import bz2
import hashlib
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import apache_beam as beam
import pytest
import tensorflow as tf
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from contracts import metadata, storage
from pipeline import beam_options, extract_text, sentences, text_shards, wikipedia_dump, wikitext
from tests import pretraining_fixtures
from tests.test_wikipedia import page_xml, write_multistream

SAMPLE = "wikipedia/enwiki-articles1-shortened-multistream.xml.bz2"
SAMPLE_INDEX = "wikipedia/enwiki-articles1-shortened-multistream-index.txt.bz2"
TINYWIKI = "wikipedia/tinywiki-pages-articles.xml"
MARKUP = re.compile(r"\[\[|\]\]|\{\{|\}\}|\{\||\|\}|''|<[a-zA-Z/][^>]*>|&[a-z]+;|__[A-Z]+__")


def run_job(input_path: str, output_dir: str, beam_args=(), **overrides) -> dict[str, int]:
    config = extract_text.ExtractTextConfig(input=input_path, output_dir=output_dir, **overrides)
    result = beam_options.run(extract_text.build_pipeline, list(beam_args), config=config)
    return beam_options.counters(result)


def shard_bytes(output_dir: str) -> dict[str, bytes]:
    names = [n for n in storage.listdir(output_dir) if n.endswith(".txt")]
    return {name: tf.io.gfile.GFile(storage.join(output_dir, name), "rb").read() for name in names}


def documents_of(shards: dict[str, bytes], split: str = "train") -> list[list[str]]:
    documents = []
    for name in sorted(shards):
        text = shards[name].decode("utf-8")
        if name.startswith(split) and text:
            documents += [block.split("\n") for block in text.rstrip("\n").split("\n\n")]
    return documents


# ----------------------------------------------------------------------------------------------
# text_shards: pure functions.


def test_stable_hash_and_split_are_fixed_functions_of_the_id():
    # The documented definition (sha256 of salt, NUL, id; first 8 bytes): a change would move
    # documents between train and eval against earlier runs.
    digest = hashlib.sha256(b"split\x00enwiki:12:Anarchism").digest()
    assert text_shards.stable_hash("enwiki:12:Anarchism", salt="split") == int.from_bytes(
        digest[:8], "big"
    )
    ids = [f"wiki:{i}:Title {i}" for i in range(20_000)]
    share = sum(text_shards.split_of(i, eval_fraction=0.1) == "eval" for i in ids) / len(ids)
    assert 0.09 < share < 0.11
    assert all(text_shards.split_of(i, eval_fraction=0.0) == "train" for i in ids[:100])


def test_assign_buckets_balances_bytes_largest_first():
    assert text_shards.assign_buckets({0: 10, 1: 7, 2: 5, 3: 3, 4: 3}, num_shards=2) == {
        0: 0,
        1: 1,
        2: 1,
        3: 0,
        4: 1,
    }
    # Three books into eight shards: one each, the rest empty.
    assert sorted(
        text_shards.assign_buckets({5: 900, 77: 300, 130: 600}, num_shards=8).values()
    ) == [
        0,
        1,
        2,
    ]
    with pytest.raises(ValueError):
        text_shards.assign_buckets({}, num_shards=0)


def test_shard_format_is_googles():
    first = text_shards.Document.of("a", ["One.", "Two."])
    second = text_shards.Document.of("b", ["Three."])
    assert (first.num_sentences, first.num_bytes) == (2, 10)
    assert text_shards.shard_bytes([first, second]) == b"One.\nTwo.\n\nThree.\n"
    assert text_shards.shard_name("train", 3, 8) == "train-00003-of-00008.txt"


def test_deduplicate_keeps_the_newest_and_orders_by_hash():
    old = text_shards.Document.of("x", ["old"], version=(5,))
    new = text_shards.Document.of("x", ["new"], version=(9,))
    other = text_shards.Document.of("y", ["y"])
    kept, dropped = text_shards.deduplicate([new, other, old])
    assert dropped == 1
    assert {d.data for d in kept} == {b"new\n", b"y\n"}
    assert kept == text_shards.deduplicate([old, other, new])[0]


# ----------------------------------------------------------------------------------------------
# Beam steps.


def test_read_wikipedia_step_on_tinywiki(data_dir, tmp_path):
    path = str(data_dir / TINYWIKI)
    config = extract_text.ExtractTextConfig(
        input=path, output_dir=str(tmp_path), min_article_chars=20
    )
    with test_pipeline.TestPipeline(runner="FnApiRunner") as pipeline:
        documents, drops = pipeline | extract_text.ReadWikipedia([path], config)
        titles = documents | beam.Map(lambda d: d.doc_id.split(":", 2)[2])
        assert_that(
            titles,
            equal_to(
                ["Hello", "Toronto", "Duplicate title", "Duplicate title", "Big Page", "Bodmin"]
            ),
            label="titles",
        )
        assert_that(drops, equal_to(["redirect", "disambiguation"]), label="drops")


def test_write_shards_step_balances_and_writes_metadata_last(tmp_path):
    documents = [
        text_shards.Document.of(f"doc:{i}", ["A sentence."] * (1 + i % 7)) for i in range(400)
    ]
    documents.append(text_shards.Document.of("doc:3", ["A sentence."] * 4, version=(1,)))
    config = extract_text.ExtractTextConfig(
        input="-", output_dir=str(tmp_path), num_shards=4, num_eval_shards=2, eval_fraction=0.1
    )
    with test_pipeline.TestPipeline(runner="FnApiRunner") as pipeline:
        drops = pipeline | "Drops" >> beam.Create(["redirect", "redirect", "too_short"])
        record = (
            pipeline
            | beam.Create(documents)
            | extract_text.WriteShards(config, inputs=[], drops=drops, sources={})
        )
        assert_that(record | beam.Map(lambda r: r["counts"]["documents"]), equal_to([400]))
    shards = shard_bytes(str(tmp_path))
    assert sorted(shards) == [
        "eval-00000-of-00002.txt",
        "eval-00001-of-00002.txt",
        *[f"train-0000{i}-of-00004.txt" for i in range(4)],
    ]
    train_sizes = [len(data) for name, data in sorted(shards.items()) if name.startswith("train")]
    assert max(train_sizes) < 1.1 * min(train_sizes)
    meta = metadata.read(str(tmp_path))
    assert meta["counts"]["dropped_redirect"] == 2
    assert meta["counts"]["dropped_too_short"] == 1
    assert meta["counts"]["dropped_duplicate"] == 1
    assert 20 < meta["counts"]["eval_documents"] < 60
    assert {o["path"] for o in meta["outputs"]} == set(shards)
    # doc:3 kept once, in its newer version (4 sentences).
    all_documents = documents_of(shards, "train") + documents_of(shards, "eval")
    assert len(all_documents) == 400


# ----------------------------------------------------------------------------------------------
# Whole jobs.


@pytest.fixture(scope="module")
def sample_shards(data_dir, tmp_path_factory) -> tuple[str, dict[str, bytes]]:
    """The bundled multistream sample, read in four parallel ranges."""
    output = str(tmp_path_factory.mktemp("sample") / "shards")
    counters = run_job(str(data_dir / SAMPLE), output, num_shards=3, range_mb=0.0001)
    assert counters["pages_read"] == 206
    return output, shard_bytes(output)


def test_sample_job_output(sample_shards):
    output, shards = sample_shards
    assert sorted(shards) == ["eval-00000-of-00001.txt"] + [
        f"train-0000{i}-of-00003.txt" for i in range(3)
    ]
    meta = metadata.read(output)
    counts = meta["counts"]
    assert counts["documents"] == 97  # 98 articles, one shorter than 200 characters
    assert (counts["dropped_redirect"], counts["dropped_disambiguation"]) == (99, 8)
    assert (counts["dropped_namespace"], counts["dropped_too_short"]) == (1, 1)
    assert counts["bytes"] == sum(len(data) for data in shards.values())
    assert meta["sources"][Path(SAMPLE).name]["dbname"] == "enwiki"
    documents = documents_of(shards, "train") + documents_of(shards, "eval")
    assert len(documents) == 97
    for document in documents:
        assert document and all(line.strip() == line and line for line in document)
        assert not any(MARKUP.search(line) for line in document)
    lines = [line for document in documents for line in document]
    assert counts["sentences"] == len(lines)
    assert (
        "Anarchism is a political philosophy that advocates self-governed societies based on voluntary institutions."
        in lines
    )


def test_plain_dump_shuffle_grouping_and_two_workers_give_identical_shards(
    sample_shards, data_dir, tmp_path
):
    _, expected = sample_shards  # grouped into shards through scratch files (the local default)
    plain = tmp_path / "enwiki-plain.xml.bz2"
    plain.write_bytes(bz2.compress(bz2.decompress((data_dir / SAMPLE).read_bytes())))
    run_job(str(plain), str(tmp_path / "plain"), num_shards=3, grouping="shuffle")
    assert shard_bytes(str(tmp_path / "plain")) == expected
    assert not [name for name in os.listdir(tmp_path / "plain") if name.startswith(".")]
    run_job(
        str(data_dir / SAMPLE),
        str(tmp_path / "two"),
        ["--direct_num_workers=2", "--direct_running_mode=multi_threading"],
        num_shards=3,
        range_mb=0.0001,
    )
    assert shard_bytes(str(tmp_path / "two")) == expected
    assert not [name for name in os.listdir(tmp_path / "two") if name.startswith(".")]


def test_books_job_gives_one_document_per_book(data_dir, tmp_path):
    output = str(tmp_path / "books")
    paths = ",".join(str(path) for path in pretraining_fixtures.real_books())
    counters = run_job(paths, output, source="books", num_shards=2)
    assert counters["books_read"] == 3
    shards = shard_bytes(output)
    documents = documents_of(shards, "train") + documents_of(shards, "eval")
    assert len(documents) == 3
    assert sorted(d[0][:20] for d in documents) == sorted(
        ["Alice was beginning ", "To Mrs. Saville, Eng", "To Sherlock Holmes s"]
    )
    text = b"".join(shards.values()).decode("utf-8")
    assert "Gutenberg" not in text and "START OF" not in text
    assert metadata.read(output)["counts"]["documents"] == 3


def test_empty_glob_and_missing_file_fail_before_running(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing-here"):
        run_job(str(tmp_path / "nothing-here*.xml"), str(tmp_path / "out"))
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        run_job(str(tmp_path / "missing.txt"), str(tmp_path / "out"), source="books")


def test_truncated_dump_fails_and_leaves_no_complete_looking_output(data_dir, tmp_path):
    output = tmp_path / "out"
    output.mkdir()
    (output / "metadata.json").write_text("{}")  # an earlier run's: must not survive
    cut = tmp_path / "cut.xml.bz2"
    cut.write_bytes((data_dir / SAMPLE).read_bytes()[:1_200_000])
    with pytest.raises(Exception, match=r"cut\.xml\.bz2.*truncated"):
        run_job(str(cut), str(output))
    assert not (output / "metadata.json").exists()


def test_no_document_at_all_is_an_error(tmp_path):
    dump = tmp_path / "redirects.xml"
    dump.write_text(
        '<mediawiki xml:lang="en"><siteinfo><dbname>x</dbname></siteinfo>\n'
        "<page><title>A</title><ns>0</ns><id>1</id><redirect title='B'/>"
        "<revision><id>1</id><text>#REDIRECT [[B]]</text></revision></page>\n</mediawiki>\n",
        encoding="utf-8",
    )
    with pytest.raises(Exception, match="no document extracted.*redirect=1"):
        run_job(str(dump), str(tmp_path / "out"))
    assert not (tmp_path / "out" / "metadata.json").exists()


def test_gcs_input_and_output(sample_shards, data_dir, gcs_dir):
    _, expected = sample_shards
    for name in (SAMPLE, SAMPLE_INDEX):
        tf.io.gfile.copy(str(data_dir / name), f"{gcs_dir}/in/{Path(name).name}")
    # The glob also matches the index: it is recognised and used, not read as a dump.
    run_job(f"{gcs_dir}/in/*.bz2", f"{gcs_dir}/out", num_shards=3, range_mb=0.0001)
    assert shard_bytes(f"{gcs_dir}/out") == expected
    assert metadata.read(f"{gcs_dir}/out")["counts"]["documents"] == 97


def test_command_line(data_dir, tmp_path):
    output = tmp_path / "cli"
    process = subprocess.run(
        [sys.executable, "-m", "pipeline.extract_text", f"--input={data_dir / TINYWIKI}"]
        + [f"--output_dir={output}", "--num_shards=2", "--min_article_chars=20"]
        + ["--direct_num_workers=1"],  # a Beam option, passed through
        capture_output=True,
        text=True,
    )
    assert process.returncode == 0, process.stderr[-3000:]
    assert "dropped_redirect" in process.stderr  # the logged counter summary
    meta = json.loads((output / "metadata.json").read_text())
    assert meta["command"] == "pipeline.extract_text"
    assert meta["flags"]["num_shards"] == 2
    assert meta["counts"]["documents"] == 5  # "Duplicate title" twice with one id: kept once
    assert meta["counts"]["dropped_duplicate"] == 1


def test_templates_from_the_dump_are_expanded_in_the_job(tmp_path):
    text = "Spain is a country in Europe. People speak {{L|Spanish}} there. " * 5
    streams = [
        [(1, "Spain", page_xml("Spain", text, page_id=1))],
        [
            (5, "Template:Lang", page_xml("Template:Lang", "a {{{1}}} word", page_id=5, ns=10)),
            (
                6,
                "Template:L",
                page_xml("Template:L", "#REDIRECT [[Template:Lang]]", page_id=6, ns=10),
            ),
        ],
    ]
    dump = write_multistream(tmp_path, streams)
    counters = run_job(dump, str(tmp_path / "on"), range_mb=0.0001)
    assert counters["templates_read_template"] == counters["templates_read_redirect"] == 1
    expanded = b"".join(shard_bytes(str(tmp_path / "on")).values()).decode("utf-8")
    assert "People speak a Spanish word there." in expanded
    run_job(dump, str(tmp_path / "off"), expand_templates=False)
    dropped = b"".join(shard_bytes(str(tmp_path / "off")).values()).decode("utf-8")
    assert "People speak there." in dropped


def test_templates_through_canonical_names_aliases_and_redirect_chains(fixtures_dir, tmp_path):
    # A hand-made Czech dump: templates called as {{template:language_link}} (canonical name,
    # lower case, underscores) and {{Šablony:Poznámka}} (a siteinfo alias), redirects to
    # [[Template:Language link]] and [[template:ll]] (a chain of two), and a loop.
    dump = str(fixtures_dir / "extract_text" / "cswiki-namespaces-pages-articles.xml")
    site = wikipedia_dump.read_siteinfo(dump)
    assert (6, "Obrázek") in site.namespace_aliases and (10, "Šablony") in site.namespace_aliases
    out = str(tmp_path / "out")
    counters = run_job(dump, out, eval_fraction=0.0, num_shards=1, min_article_chars=50)
    assert counters["templates_read_template"] == 2 and counters["templates_read_redirect"] == 4
    assert counters["template_redirects_unresolved"] == 1  # the loop, counted
    assert documents_of(shard_bytes(out)) == [
        [
            "Kočka domácí (Felis catus) je malá šelma z čeledi kočkovitých (Felidae).",
            "Lidé ji chovají po tisíce let a je oblíbeným domácím zvířetem v celé Evropě i jinde "
            "ve světě.",
            "Kočky spí až šestnáct hodin denně a nejvíce loví za soumraku.",
            "Cat je anglický název tohoto zvířete.",
            "Smyčka přesměrování nic nevloží.",
        ]
    ]


def test_namespace_names_resolve_as_mediawiki_resolves_them():
    site = wikipedia_dump.SiteInfo(
        namespaces=((0, ""), (6, "Soubor"), (10, "Šablona")),
        namespace_aliases=((10, "Šablony"),),
    )
    names = wikitext.Namespaces(site)
    assert names.canonical("template:language_link") == "Šablona:Language link"
    assert names.canonical("ŠABLONY: foo  bar") == "Šablona:Foo bar"
    assert names.canonical("Image:Cat.jpg") == names.canonical("file:Cat.jpg") == "Soubor:Cat.jpg"
    assert names.canonical("Category:Cats") == "Category:Cats"  # no local name: canonical
    assert names.canonical("kočka") == "Kočka"
    assert names.key_of("lc") is None and names.key_of("#if") is None
    assert names.unprefixed_transclusions("{{Template:X|a}} {{ šablony : Y}} {{lc:Z}}") == (
        "{{X|a}} {{Y}} {{lc:Z}}"
    )


# Hand-made dumps in five more scripts, each with a template redirect chain through the
# canonical name (`#REDIRECT [[Template:Latin]]`, then `[[template:language_link]]`), a
# transclusion by canonical name or alias, indented lists and a Lua call in parentheses.
SCRIPT_FIXTURES = {
    "ruwiki": [
        "Кошка (Felis catus) — небольшое хищное животное.",
        "Она живёт рядом с человеком уже несколько тысяч лет.",
        "Семейство кошачьих («Felidae») очень большое.",
        "Cat — английское название.",
    ],
    "elwiki": [
        "Η γάτα (Felis catus) είναι μικρό σαρκοφάγο θηλαστικό.",
        "Ζει κοντά στον άνθρωπο εδώ και χιλιάδες χρόνια.",
        "Η οικογένεια των αιλουροειδών («Felidae») είναι μεγάλη.",
        "Το Cat είναι η αγγλική ονομασία.",
    ],
    "arwiki": [
        "القط (Felis catus) حيوان لاحم صغير.",
        "يعيش القط مع الإنسان منذ آلاف السنين.",
        "فصيلة السنوريات («Felidae») فصيلة كبيرة.",
        "الاسم الإنجليزي هو Cat.",
    ],
    "jawiki": [
        "ネコ（Felis catus）は小型の肉食動物である。",
        "人間と数千年にわたって暮らしてきた。",
        "ネコ科（Felidae）は大きな科である。",
        "英語ではCatという。",
    ],
    "hiwiki": [
        "बिल्ली (Felis catus) एक छोटा मांसाहारी जानवर है।",
        "यह हज़ारों वर्षों से मनुष्यों के साथ रहती है।",
        "मार्जार कुल (Felidae) एक बड़ा कुल है।",
        "अंग्रेज़ी में इसे Cat कहते हैं।",
    ],
}


@pytest.mark.parametrize("wiki", sorted(SCRIPT_FIXTURES))
def test_other_scripts_come_out_clean(wiki, fixtures_dir, tmp_path):
    # Before namespaces, lists and debris were handled, each of these came out with two list
    # items ("* Подсемейство: …"), a dangling "(: «Felidae»)" and the template text missing.
    dump = str(fixtures_dir / "extract_text" / f"{wiki}-scripts-pages-articles.xml")
    out = str(tmp_path / "out")
    counters = run_job(dump, out, eval_fraction=0.0, num_shards=1, min_article_chars=20)
    assert documents_of(shard_bytes(out)) == [SCRIPT_FIXTURES[wiki]]
    assert counters["list_lines_removed"] == 2 and counters["debris_removed"] == 1
    assert "template_redirects_unresolved" not in counters


def test_thai_dump_comes_out_clean_and_says_its_sentence_rules_fall_back(
    fixtures_dir, tmp_path, caplog
):
    # Thai: no spaces between words, no full stops, a file alias (ภาพ), a template redirect
    # through the canonical "Template:" and a Lua call, as in the other scripts' fixtures.
    dump = str(fixtures_dir / "extract_text" / "thwiki-scripts-pages-articles.xml")
    out = str(tmp_path / "out")
    with caplog.at_level(logging.WARNING):
        counters = run_job(dump, out, eval_fraction=0.0, num_shards=1, min_article_chars=20)
    documents = documents_of(shard_bytes(out))
    assert len(documents) == 6 and all(len(d) == 2 for d in documents)  # a paragraph a sentence
    lines = [line for d in documents for line in d]
    assert lines[-2].startswith("แมว (Cat) เป็นสัตว์")  # {{Template:Lang|en|Cat}} via a redirect
    assert not any(re.search(r"^[*#:;]|\(\s*[,.:]?\s*\)|ไฟล์|ภาพ:", line) for line in lines)
    assert counters["list_lines_removed"] == 1 and counters["debris_removed"] == 1
    assert "template_redirects_unresolved" not in counters
    notes = [r.getMessage() for r in caplog.records if "sentence rules" in r.getMessage()]
    assert len(notes) == 1 and "'th'" in notes[0] and dump in notes[0]


def test_sentence_rule_fallback_is_said_only_for_languages_without_rules():
    assert sentences.fallback_note("en") is None and sentences.fallback_note("ja") is None
    assert "'th'" in sentences.fallback_note("th")
    # What fallback means: sentencex still splits at full stops, but Thai writes none.
    assert len(sentences.split_sentences("One here. Two here.", language="th")) == 2
    assert len(sentences.split_sentences("แมวเป็นสัตว์เลี้ยง แมวชอบนอน", language="th")) == 1
