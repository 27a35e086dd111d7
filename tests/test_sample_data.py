"""The sample a fresh clone fetches (launch.sample_data), and the multistream tool it uses
(pipeline.multistream). The fetch is tested against a local HTTP server serving the real data
folder, never the internet."""

from __future__ import annotations

import bz2
import functools
import http.server
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from contracts import storage
from launch import sample_data
from pipeline import multistream, wikipedia_dump
from tests.test_wikipedia import dump_xml, page_xml

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def mirror(monkeypatch):
    """Serves a folder over HTTP on 127.0.0.1 and points BERT_STACK_SAMPLE_MIRROR at it."""
    servers = []

    def serve(folder: Path) -> str:
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
        handler.log_message = lambda *args: None
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        url = f"http://127.0.0.1:{server.server_address[1]}"
        monkeypatch.setenv(sample_data.MIRROR_VARIABLE, url)
        return url

    yield serve
    for server in servers:
        server.shutdown()


def test_fetch_gives_the_data_folder_files_and_builds_the_multistream_copy(
    data_dir, mirror, tmp_path
):
    mirror(data_dir)
    said: list[str] = []
    out = sample_data.fetch_sample(tmp_path / "sample", log=said.append)
    for name, (_, pinned) in sample_data.SOURCES.items():
        assert storage.sha256(str(out / name)) == pinned == storage.sha256(str(data_dir / name)), (
            name
        )
    # Built here by pipeline.multistream, byte for byte the shared copy and its index.
    for name in (sample_data.WIKI_MULTISTREAM, sample_data.WIKI_MULTISTREAM_INDEX):
        assert storage.sha256(str(out / name)) == storage.sha256(str(data_dir / name)), name
    assert storage.sha256(str(out / sample_data.UNCASED_VOCAB)) == sample_data.VOCAB_SHA256
    assert sum("fetching" in line for line in said) == len(sample_data.SOURCES)
    assert any("pipeline.multistream" in line for line in said)
    # A second run finds everything in place and fetches nothing.
    said.clear()
    sample_data.fetch_sample(out, log=said.append)
    assert not any("fetching" in line for line in said)


def test_fetch_refuses_a_file_that_is_not_the_pinned_one(data_dir, mirror, tmp_path):
    served = tmp_path / "served"
    shutil.copytree(data_dir / "books", served / "books")
    (served / "wikipedia").mkdir()
    (served / sample_data.WIKI_DUMP).write_bytes(b"not the dump")
    mirror(served)
    with pytest.raises(ValueError, match="sha256 .* expected a53f4648"):
        sample_data.fetch_sample(tmp_path / "sample", log=lambda _: None)
    assert not (tmp_path / "sample" / sample_data.WIKI_DUMP).exists()


def test_fetch_names_the_source_it_cannot_reach(monkeypatch, tmp_path):
    monkeypatch.setenv(sample_data.MIRROR_VARIABLE, "http://127.0.0.1:9")
    with pytest.raises(OSError, match="cannot fetch http://127.0.0.1:9/wikipedia/"):
        sample_data.fetch_sample(tmp_path / "sample", log=lambda _: None)


def test_multistream_round_trip_and_index(tmp_path):
    pages = [page_xml(f"Title {i} & co", f"Text of page {i}.", page_id=10 + i) for i in range(5)]
    xml = dump_xml(pages)
    source = tmp_path / "small.xml"
    source.write_text(xml, encoding="utf-8")
    output = tmp_path / "small-multistream.xml.bz2"
    counts = multistream.write_multistream(str(source), str(output), pages_per_stream=2)
    assert counts["pages"] == 5 and counts["streams"] == 5  # header, 2 + 2 + 1 pages, trailer
    assert bz2.decompress(output.read_bytes()).decode("utf-8") == xml
    index = bz2.decompress((tmp_path / "small-multistream-index.txt.bz2").read_bytes())
    entries = [line.split(":", 2) for line in index.decode("utf-8").splitlines()]
    assert [(page_id, title) for _, page_id, title in entries] == [
        (str(10 + i), f"Title {i} & co") for i in range(5)
    ]
    offsets = sorted({int(offset) for offset, _, _ in entries})
    assert len(offsets) == 3
    # Each offset starts a stream that holds those pages, and extract_text's reader agrees.
    data = output.read_bytes()
    assert bz2.BZ2Decompressor().decompress(data[offsets[1] :]).count(b"<page>") == 2
    assert wikipedia_dump.index_path_for(str(output)) == str(
        tmp_path / "small-multistream-index.txt.bz2"
    )


def test_multistream_refuses_a_truncated_dump_and_a_non_dump(tmp_path):
    truncated = tmp_path / "cut.xml"
    truncated.write_text(dump_xml([page_xml("A", "Text.")])[:-40], encoding="utf-8")
    with pytest.raises(ValueError, match="no </page>"):
        multistream.write_multistream(str(truncated), str(tmp_path / "a-multistream.xml.bz2"))
    plain = tmp_path / "notes.txt"
    plain.write_text("just text\n")
    with pytest.raises(ValueError, match="not a MediaWiki XML dump"):
        multistream.write_multistream(str(plain), str(tmp_path / "b-multistream.xml.bz2"))
    with pytest.raises(ValueError, match="must end in -multistream.xml.bz2"):
        multistream.write_multistream(str(plain), str(tmp_path / "c.xml.bz2"))
    assert not list(tmp_path.glob("*multistream*"))


def test_multistream_command_line_error_is_one_line(tmp_path):
    plain = tmp_path / "notes.txt"
    plain.write_text("just text\n")
    completed = subprocess.run(
        [
            *(sys.executable, "-m", "pipeline.multistream"),
            f"--input={plain}",
            f"--output={tmp_path / 'x-multistream.xml.bz2'}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert completed.returncode == 1
    assert completed.stderr.strip().splitlines() == [
        "pipeline.multistream: error: no <page> element: not a MediaWiki XML dump"
    ]
