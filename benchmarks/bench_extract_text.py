"""extract_text against the `wikiextractor` command: throughput and peak memory.

    python benchmarks/bench_extract_text.py [--copies=8] [--processes=1,2] [--sentences]
    python benchmarks/bench_extract_text.py --debris

Dumps: the bundled multistream sample (1.7 MB, 206 pages, 106 pages wikiextractor keeps), and a
larger one made by repeating its pages `--copies` times with fresh ids and titles, written as a
real multistream dump with its index (100 pages a bz2 stream, one of them a small template page,
as real dumps have templates all over). Both tools read the same file:

- wikiextractor: `python -m wikiextractor.WikiExtractor DUMP --processes P --json` (its default
  template expansion; P extract processes, plus its reader and its output process);
- extract_text: `python -m pipeline.extract_text --input=DUMP --direct_num_workers=P` (P Beam
  worker processes for P > 1, in-process for P = 1; plus the launching process).

Each is timed end to end as a command (Python and TensorFlow start-up included, as a user
sees it); peak memory is the largest sum of RSS over the command's process tree, sampled every
20 ms. MB/s is compressed dump MB per second, articles/s the articles each tool writes.

`--debris` instead counts, in what each tool writes, the lines that carry list markers or the
debris of templates that expanded to nothing (empty or punctuation-only parentheses, a label's
dangling colon), as a share of all lines, on the English samples and on the hand-made dumps in
other scripts (tests/data/extract_text): wikiextractor's output is the "before" (paragraph
lines), extract_text's the "after" (sentence lines).

`--sentences` also prints the agreement of sentencex (ours) and pysbd with the hand-checked
sample in tests/data/extract_text/sentences_gold.txt, and their speed.
"""

from __future__ import annotations

import argparse
import bz2
import json
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from launch import sample_data  # noqa: E402 - after the checkout is on the path

SAMPLE = sample_data.data_folder() / sample_data.WIKI_MULTISTREAM
GOLD = ROOT / "tests/data/extract_text/sentences_gold.txt"
PAGES_PER_STREAM = 100


def make_repeated_dump(copies: int, folder: Path) -> Path:
    """Writes the sample's pages `copies` times (fresh ids and titles) as a multistream dump."""
    xml = bz2.decompress(SAMPLE.read_bytes()).decode("utf-8")
    first = xml.index("  <page>")
    last = xml.rindex("</page>") + len("</page>\n")
    header, footer = xml[:first], xml[last:]
    pages = re.findall(r"  <page>.*?</page>\n", xml[first:last], re.DOTALL)
    dump = folder / f"enwiki-x{copies}-multistream.xml.bz2"
    index_lines = []
    with dump.open("wb") as out:
        out.write(bz2.compress(header.encode("utf-8")))
        batch: list[str] = []
        stream_pages: list[tuple[int, str]] = []

        def flush(final: bool) -> None:
            offset = out.tell()
            text = "".join(batch) + (footer if final else "")
            out.write(bz2.compress(text.encode("utf-8")))
            index_lines.extend(f"{offset}:{pid}:{title}" for pid, title in stream_pages)
            batch.clear()
            stream_pages.clear()

        for copy in range(copies):
            for page in pages:
                title = re.search(r"<title>(.*?)</title>", page).group(1)
                new_title = title if copy == 0 else f"{title} {copy}"
                page_id = int(re.search(r"<id>(\d+)</id>", page).group(1)) + copy * 10_000_000
                page = page.replace(f"<title>{title}</title>", f"<title>{new_title}</title>", 1)
                page = re.sub(r"<id>\d+</id>", f"<id>{page_id}</id>", page, count=1)
                batch.append(page)
                stream_pages.append((page_id, new_title))
                if len(batch) == PAGES_PER_STREAM - 1:
                    # One template page per stream, as in a real dump (English Wikipedia has a
                    # template in almost every stream of 100 pages): both tools then read the
                    # whole dump twice, once for templates and once for articles.
                    template_id = 900_000_000 + len(index_lines)
                    template_title = f"Template:Bench{template_id}"
                    batch.append(
                        f"  <page>\n    <title>{template_title}</title>\n    <ns>10</ns>\n"
                        f"    <id>{template_id}</id>\n    <revision>\n      <id>1</id>\n"
                        '      <text xml:space="preserve">benchmark {{{1|}}}</text>\n'
                        "    </revision>\n  </page>\n"
                    )
                    stream_pages.append((template_id, template_title))
                    flush(final=False)
        flush(final=True)
    index = folder / f"enwiki-x{copies}-multistream-index.txt.bz2"
    index.write_bytes(bz2.compress(("\n".join(index_lines) + "\n").encode("utf-8")))
    return dump


def run_measured(command: list[str]) -> tuple[float, float, float]:
    """Runs a command; returns (wall seconds, CPU seconds, peak RSS MiB of its process tree)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    # The log goes to a file: a pipe nobody reads until the end could fill up and block.
    with tempfile.TemporaryFile() as log:
        started = time.monotonic()
        process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=log, env=env, cwd=ROOT
        )
        root = psutil.Process(process.pid)
        peak = 0
        while process.poll() is None:
            try:
                tree = [root, *root.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
            except psutil.Error:
                pass
            time.sleep(0.02)
        wall = time.monotonic() - started
        log.seek(0)
        stderr = log.read().decode("utf-8", "replace")
    if process.returncode:
        raise RuntimeError(f"{command[:3]} failed:\n{stderr[-3000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, peak / 2**20


def wikiextractor(dump: Path, processes: int, out: Path) -> tuple[float, float, float, int]:
    wall, cpu, peak = run_measured(
        [sys.executable, "-m", "wikiextractor.WikiExtractor", str(dump), "-o", str(out)]
        + ["--json", "--quiet", "--processes", str(processes)]
    )
    articles = sum(1 for file in out.rglob("wiki_*") for _ in file.open(encoding="utf-8"))
    return wall, cpu, peak, articles


def extract_text(
    dump: Path, processes: int, out: Path, *flags: str
) -> tuple[float, float, float, int]:
    wall, cpu, peak = run_measured(
        [sys.executable, "-m", "pipeline.extract_text", f"--input={dump}", f"--output_dir={out}"]
        + ["--num_shards=4", "--range_mb=0.25", f"--direct_num_workers={processes}"]
        + ["--verbosity=-1", *flags]
    )
    counts = json.loads((out / "metadata.json").read_text())["counts"]
    return wall, cpu, peak, counts["documents"]


def bench_dumps(copies: int, process_counts: list[int]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        dumps = [SAMPLE, make_repeated_dump(copies, Path(folder))]
        print(
            f"{'dump':<34}{'tool':<14}{'P':>3}{'wall s':>9}{'CPU s':>8}{'MB/s':>8}"
            f"{'articles':>10}{'art/s':>8}{'peak MiB':>10}"
        )
        for dump in dumps:
            megabytes = dump.stat().st_size / 1e6
            for processes in process_counts:
                for name, tool in (
                    ("wikiextractor", wikiextractor),
                    ("extract_text", extract_text),
                ):
                    out = Path(folder) / f"{name}-{dump.stem}-{processes}"
                    wall, cpu, peak, articles = tool(dump, processes, out)
                    print(
                        f"{dump.name[:33]:<34}{name:<14}{processes:>3}{wall:>9.1f}{cpu:>8.1f}"
                        f"{megabytes / wall:>8.2f}{articles:>10}{articles / wall:>8.1f}{peak:>10.0f}",
                        flush=True,
                    )


# A line with a list or indentation marker, as wikiextractor lets them through ("* item",
# ":* item", "; term", ": indented").
LIST_LINE = re.compile(r"^\s*[*#:;]")
# What a template that expands to nothing leaves: parentheses holding nothing or punctuation
# only ("(,)", "（、）"), a separator just inside a parenthesis ("(; 14 March", "\"Aploun\";)"),
# a label's colon with no label ("(: \"Felidae\"", ", : x") or with a separator after it
# ("Greek:, \"Apollōn\"").
DEBRIS = re.compile(
    r"[(（][\s,.;:،、，：；]*[)）]|[(（]\s*[,;，；、]|\S[,;，；、]\s*[)）]"
    r"|[(（,，]\s*[:：]|[:：]\s*[,;，；]"
)


def _lines_of(tool: str, out: Path) -> list[str]:
    if tool == "wikiextractor":
        return [
            line
            for file in sorted(out.rglob("wiki_*"))
            for record in file.open(encoding="utf-8")
            for line in json.loads(record)["text"].split("\n")
            if line.strip()
        ]
    return [
        line
        for file in sorted(out.glob("*.txt"))
        for line in file.read_text(encoding="utf-8").split("\n")
        if line.strip()
    ]


def bench_debris() -> None:
    data = sample_data.data_folder() / "wikipedia"
    dumps = [
        SAMPLE,
        data / "enwiki-table-markup.xml.bz2",
        data / "tinywiki-pages-articles.xml",
        *sorted((ROOT / "tests/data/extract_text").glob("*-pages-articles.xml")),
    ]
    print(
        f"{'dump':<40}{'tool':<14}{'lines':>7}{'list':>6}{'debris':>8}{'share':>8}",
        flush=True,
    )
    totals = {"wikiextractor": [0, 0], "extract_text": [0, 0]}
    with tempfile.TemporaryDirectory() as folder:
        for dump in dumps:
            for tool, run in (("wikiextractor", wikiextractor), ("extract_text", extract_text)):
                out = Path(folder) / f"{tool}-{dump.name}"
                # The hand-made articles are a few sentences each: shorter than the default
                # --min_article_chars, which keeps stubs out of real dumps.
                flags = (
                    ["--eval_fraction=0", "--min_article_chars=20"] if "tests" in dump.parts else []
                )
                run(dump, 1, out, *flags) if tool == "extract_text" else run(dump, 1, out)
                lines = _lines_of(tool, out)
                lists = sum(1 for line in lines if LIST_LINE.match(line))
                debris = sum(1 for line in lines if DEBRIS.search(line))
                bad = sum(1 for line in lines if LIST_LINE.match(line) or DEBRIS.search(line))
                totals[tool][0] += len(lines)
                totals[tool][1] += bad
                print(
                    f"{dump.name[:39]:<40}{tool:<14}{len(lines):>7}{lists:>6}{debris:>8}"
                    f"{bad / max(len(lines), 1):>8.2%}",
                    flush=True,
                )
    for tool, (lines, bad) in totals.items():
        print(f"{'all':<40}{tool:<14}{lines:>7}{'':>6}{'':>8}{bad / lines:>8.2%}")
    print("goal: under 0.5% of output lines (extract_text)")


def bench_sentences() -> None:
    import pysbd

    from pipeline import sentences

    blocks = sentences.parse_gold_sample(GOLD.read_text(encoding="utf-8"))

    def pysbd_segment(paragraph: str, language: str) -> list[str]:
        try:
            segmenter = pysbd.Segmenter(language=language, clean=False)
        except ValueError:  # a language pysbd does not know
            segmenter = pysbd.Segmenter(language="en", clean=False)
        return segmenter.segment(paragraph)

    text = " ".join(" ".join(gold) for _, gold in blocks if _ == "en") * 20
    print(
        f"\n{'segmenter':<12}{'F1':>7}{'precision':>11}{'recall':>8}{'exact ¶':>9}{'MB/s (en)':>11}"
    )
    for name, segment in (
        ("sentencex", lambda p, lang: sentences.split_sentences(p, language=lang)),
        ("pysbd", pysbd_segment),
    ):
        scores = sentences.agreement(blocks, segment)
        started = time.monotonic()
        segment(text, "en")
        speed = len(text.encode()) / 1e6 / (time.monotonic() - started)
        print(
            f"{name:<12}{scores['f1']:>7.3f}{scores['precision']:>11.3f}{scores['recall']:>8.3f}"
            f"{scores['paragraphs_exact']:>9.3f}{speed:>11.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--copies", type=int, default=8, help="repeats in the larger dump")
    parser.add_argument("--processes", default="1,2", help="comma-separated process counts")
    parser.add_argument("--sentences", action="store_true", help="also compare segmenters")
    parser.add_argument("--debris", action="store_true", help="list and template debris only")
    args = parser.parse_args()
    print(
        f"machine: {platform.processor() or platform.machine()}, {psutil.cpu_count()} cores, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB, Python {platform.python_version()}"
    )
    if args.debris:
        bench_debris()
        return
    bench_dumps(args.copies, [int(p) for p in args.processes.split(",")])
    if args.sentences:
        bench_sentences()


if __name__ == "__main__":
    main()
