"""The data chain's command lines, built in one place: text shards → vocab → records.

    python -m launch.chain --stage=all --wiki_input=dump.xml.bz2 --books_input='books/*.txt' \
        --output_root=data [--dupe_factor=3 …] [Beam options, e.g. --direct_num_workers=2]

`make wiki-shards`, `make books-shards`, `make vocab` and `make pretraining-data` run one stage
each through this module, `make demo` (launch/demo.py) runs them all, and the Dataflow launcher
(launch/dataflow.py) sends the same commands to Dataflow with its Beam options: a flag that the
chain sets is set the same way everywhere. The stages, in order:

  extract-wiki    pipeline.extract_text --source=wikipedia   → <root>/shards/wiki
  extract-books   pipeline.extract_text --source=books       → <root>/shards/books (books given)
  vocab           pipeline.build_vocab (train shards only)   → <root>/vocab/vocab.txt
  records-train   pipeline.create_pretraining_data           → <root>/records/train
  records-eval    the same on the eval shards, --dupe_factor=eval_dupe_factor, prefix eval
                                                              → <root>/records/eval

The vocab is learned from the train split only, so eval text stays unseen; eval records need
one mask per document (eval_dupe_factor=1) to measure accuracy.
"""

from __future__ import annotations

import dataclasses
import shlex
import subprocess
import sys
from collections.abc import Callable, Sequence

from absl import flags, logging

from contracts import command_line, config_flags, metadata, storage

STAGES = ("extract-wiki", "extract-books", "vocab", "records-train", "records-eval")
_TRAIN_SHARDS = "train-*.txt"
_EVAL_SHARDS = "eval-*.txt"


@dataclasses.dataclass(frozen=True)
class DataChain:
    """The inputs, outputs and settings of the data stages, as one chain."""

    wiki_input: str  # comma-separated globs of Wikipedia dumps (local or gs://)
    output_root: str  # shards, vocab and records go under it (local or gs://)
    books_input: str = ""  # comma-separated globs of book .txt files; "": no books
    wiki_num_shards: int = 512  # text shards for Wikipedia (English: ~40 MB each)
    books_num_shards: int = 32  # text shards for the books
    # share of Wikipedia articles held out for eval; -1: extract_text's default (0.005)
    wiki_eval_fraction: float = -1.0
    vocab_size: int = 30522  # WordPiece vocab size (BERT's)
    do_lower_case: bool = True  # uncased vocab and records (bert-base-uncased style)
    # strip accents in vocab and records; None: as do_lower_case (Google's rule)
    strip_accents: bool | None = None
    max_seq_length: int = 128  # tokens per instance
    max_predictions_per_seq: int = 20  # masked tokens per instance at most
    dupe_factor: int = 10  # masks drawn per train document (google-research/bert's default)
    eval_dupe_factor: int = 1  # masks per eval document: one is enough to measure accuracy
    do_whole_word_mask: bool = False  # mask whole words rather than word pieces
    train_record_shards: int = 1024  # train TFRecord shards (~250 MB each for Wikipedia)
    eval_record_shards: int = 8  # eval TFRecord shards
    extract_text_args: tuple[str, ...] = ()  # more flags for both extract_text stages
    build_vocab_args: tuple[str, ...] = ()  # more flags for build_vocab (e.g. --algorithm)
    create_pretraining_data_args: tuple[str, ...] = ()  # more flags for both record stages

    @property
    def wiki_shards(self) -> str:
        return storage.join(self.output_root, "shards", "wiki")

    @property
    def books_shards(self) -> str:
        return storage.join(self.output_root, "shards", "books")

    @property
    def vocab_file(self) -> str:
        return storage.join(self.output_root, "vocab", "vocab.txt")

    @property
    def train_records(self) -> str:
        return storage.join(self.output_root, "records", "train")

    @property
    def eval_records(self) -> str:
        return storage.join(self.output_root, "records", "eval")


@dataclasses.dataclass(frozen=True)
class ChainStage:
    """One stage's command.

    Attributes:
      name: one of STAGES.
      module: the program, run as `python -m <module>`.
      args: its flags.
      output_dir: the folder of its output set; `<output_dir>/metadata.json`, written last,
        marks it complete.
    """

    name: str
    module: str
    args: tuple[str, ...]
    output_dir: str

    @property
    def done_marker(self) -> str:
        return storage.join(self.output_dir, metadata.FILENAME)

    def argv(self, *, python: str = sys.executable, extra: Sequence[str] = ()) -> list[str]:
        return [python, "-m", self.module, *self.args, *extra]


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _strip_accents_flag(chain: DataChain) -> list[str]:
    """The flag when the chain sets it; left out, each stage follows --do_lower_case."""
    if chain.strip_accents is None:
        return []
    return [f"--strip_accents={_bool(chain.strip_accents)}"]


def stages(chain: DataChain) -> list[ChainStage]:
    """The chain's commands, in order (no extract-books without books)."""
    sources = [("wiki", "wikipedia", chain.wiki_input, chain.wiki_shards, chain.wiki_num_shards)]
    if chain.books_input:
        sources.append(
            ("books", "books", chain.books_input, chain.books_shards, chain.books_num_shards)
        )
    out = []
    for short, source, inputs, output_dir, num_shards in sources:
        args = [
            f"--input={inputs}",
            f"--source={source}",
            f"--output_dir={output_dir}",
            f"--num_shards={num_shards}",
        ]
        if short == "wiki" and chain.wiki_eval_fraction >= 0:
            args.append(f"--eval_fraction={chain.wiki_eval_fraction}")
        out.append(
            ChainStage(
                f"extract-{short}",
                "pipeline.extract_text",
                (*args, *chain.extract_text_args),
                output_dir,
            )
        )
    shard_dirs = [output_dir for _, _, _, output_dir, _ in sources]
    train_text = ",".join(storage.join(d, _TRAIN_SHARDS) for d in shard_dirs)
    eval_text = ",".join(storage.join(d, _EVAL_SHARDS) for d in shard_dirs)
    out.append(
        ChainStage(
            "vocab",
            "pipeline.build_vocab",
            (
                f"--input={train_text}",
                f"--output={chain.vocab_file}",
                f"--vocab_size={chain.vocab_size}",
                f"--do_lower_case={_bool(chain.do_lower_case)}",
                *_strip_accents_flag(chain),
                *chain.build_vocab_args,
            ),
            storage.dirname(chain.vocab_file),
        )
    )
    for split, inputs, output_dir, dupe_factor, num_shards in (
        ("train", train_text, chain.train_records, chain.dupe_factor, chain.train_record_shards),
        ("eval", eval_text, chain.eval_records, chain.eval_dupe_factor, chain.eval_record_shards),
    ):
        args = [
            f"--input_file={inputs}",
            f"--output_dir={output_dir}",
            f"--vocab_file={chain.vocab_file}",
            f"--do_lower_case={_bool(chain.do_lower_case)}",
            *_strip_accents_flag(chain),
            f"--do_whole_word_mask={_bool(chain.do_whole_word_mask)}",
            f"--max_seq_length={chain.max_seq_length}",
            f"--max_predictions_per_seq={chain.max_predictions_per_seq}",
            f"--dupe_factor={dupe_factor}",
            f"--num_shards={num_shards}",
        ]
        if split == "eval":
            args.append("--output_prefix=eval")
        out.append(
            ChainStage(
                f"records-{split}",
                "pipeline.create_pretraining_data",
                (*args, *chain.create_pretraining_data_args),
                output_dir,
            )
        )
    return out


def run(
    chain: DataChain,
    *,
    only: str = "all",
    extra: Sequence[str] = (),
    runner: Callable[..., subprocess.CompletedProcess] = subprocess.run,
) -> list[str]:
    """Runs the chain's stages (or the one named `only`), each printed first; stops at the
    first that fails. Returns the names of those that ran.

    Raises:
      ValueError: `only` names no stage of this chain.
      subprocess.CalledProcessError: a stage failed (its own error is on stderr above).
    """
    chosen = [s for s in stages(chain) if only in ("all", s.name)]
    if not chosen:
        names = ", ".join(s.name for s in stages(chain))
        raise ValueError(f"--stage={only!r}: this chain's stages are {names} (or all)")
    for stage in chosen:
        argv = stage.argv(extra=extra)
        print(f"$ {shlex.join(['python', *argv[1:]])}", flush=True)
        runner(argv, check=True)
    return [stage.name for stage in chosen]


def main(argv: Sequence[str]) -> None:
    chain = config_flags.config_from_flags(DataChain)
    logging.info("data chain: %s", chain)
    try:
        run(chain, only=flags.FLAGS.stage, extra=argv[1:])
    except subprocess.CalledProcessError as error:
        sys.exit(error.returncode)  # the stage has said why


def parse_flags(argv: Sequence[str]) -> list[str]:
    """Our flags; what is left (Beam options) goes to every stage."""
    return flags.FLAGS(list(argv), known_only=True)


if __name__ == "__main__":
    config_flags.define_flags(DataChain)
    flags.DEFINE_enum("stage", "all", ("all", *STAGES), "Run this stage only, or all in order.")
    command_line.run(main, program="launch.chain", flags_parser=parse_flags)
