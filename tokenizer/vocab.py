"""WordPiece vocab files: one token per line, the line number is the id (BERT's format).

`load` reads a vocab the way google-research/bert does (each line stripped of surrounding
whitespace) and refuses one that would silently train or tokenize wrongly: duplicate tokens (two
ids for one piece), a missing special token, an empty line, or a size other than the expected
one. Every error names the file. `write` writes one atomically; `bert_layout` orders special
tokens and learned pieces the way BERT's vocabularies do.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from contracts import storage

PAD = "[PAD]"
UNK = "[UNK]"
CLS = "[CLS]"
SEP = "[SEP]"
MASK = "[MASK]"
SPECIAL_TOKENS = (PAD, UNK, CLS, SEP, MASK)
CONTINUATION_PREFIX = "##"

# google-research/bert's vocabs start [PAD], [unused0]..[unused98], [UNK], [CLS], [SEP], [MASK]:
# 99 unused slots put [UNK]=100, [CLS]=101, [SEP]=102, [MASK]=103, the ids code written for
# bert-base often assumes. The slots also leave room for task-specific tokens after training.
DEFAULT_NUM_UNUSED = 99


def unused_token(index: int) -> str:
    return f"[unused{index}]"


def special_prefix(*, num_unused: int = DEFAULT_NUM_UNUSED) -> list[str]:
    """The tokens a BERT-layout vocab starts with: [PAD], [unused0..], [UNK], [CLS], [SEP], [MASK]."""
    if num_unused < 0:
        raise ValueError(f"num_unused must be >= 0, got {num_unused}")
    return [PAD, *(unused_token(i) for i in range(num_unused)), UNK, CLS, SEP, MASK]


def bert_layout(
    pieces: Iterable[str], *, vocab_size: int, num_unused: int = DEFAULT_NUM_UNUSED
) -> list[str]:
    """The special tokens, then `pieces` in order, cut to exactly `vocab_size` tokens.

    Args:
      pieces: learned tokens, best first; special tokens and duplicates among them are skipped.
      vocab_size: the number of tokens wanted.
      num_unused: how many [unusedN] slots follow [PAD].

    Returns:
      A list of exactly `vocab_size` distinct tokens.

    Raises:
      ValueError: too few pieces to fill `vocab_size`, or `vocab_size` smaller than the special
        tokens alone.
    """
    tokens = special_prefix(num_unused=num_unused)
    num_special = len(tokens)
    if vocab_size < num_special:
        raise ValueError(
            f"vocab_size {vocab_size} is smaller than the {num_special} special tokens "
            f"([PAD], {num_unused} [unused], [UNK], [CLS], [SEP], [MASK])"
        )
    seen = set(tokens)
    for piece in pieces:
        if len(tokens) == vocab_size:
            break
        if piece not in seen:
            seen.add(piece)
            tokens.append(piece)
    if len(tokens) < vocab_size:
        raise ValueError(
            f"only {len(tokens) - num_special} distinct pieces for vocab_size {vocab_size} "
            f"(which needs {vocab_size - num_special}): the corpus is too small for this size"
        )
    return tokens


def parse(text: str, *, path: str = "<vocab>") -> list[str]:
    """Splits a vocab file's text into tokens, stripped as google-research/bert strips them."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the newline that ends the last line
    tokens = [line.strip() for line in lines]
    for line_number, token in enumerate(tokens, start=1):
        if not token:
            raise ValueError(f"{path}: line {line_number} is empty; a vocab has one token a line")
    return tokens


def validate(
    tokens: Sequence[str],
    *,
    path: str = "<vocab>",
    expected_size: int | None = None,
    required_tokens: Sequence[str] = SPECIAL_TOKENS,
) -> None:
    """Raises ValueError (naming `path`) if `tokens` is not a usable vocab.

    Checks: no duplicates, every token in `required_tokens` present, exactly `expected_size`
    tokens when given, no empty token and no whitespace inside a token (it could never match).
    """
    if not tokens:
        raise ValueError(f"{path}: the vocab is empty")
    first_line: dict[str, int] = {}
    for line_number, token in enumerate(tokens, start=1):
        if not token or any(c.isspace() for c in token):
            raise ValueError(
                f"{path}: line {line_number}: token {token!r} is empty or has whitespace"
            )
        if token in first_line:
            raise ValueError(
                f"{path}: duplicate token {token!r} on lines {first_line[token]} and {line_number}"
            )
        first_line[token] = line_number
    missing = [token for token in required_tokens if token not in first_line]
    if missing:
        raise ValueError(f"{path}: missing special token(s) {', '.join(missing)}")
    if expected_size is not None and len(tokens) != expected_size:
        raise ValueError(f"{path}: has {len(tokens)} tokens, expected {expected_size}")


def load(
    path: str,
    *,
    expected_size: int | None = None,
    required_tokens: Sequence[str] = SPECIAL_TOKENS,
) -> list[str]:
    """Reads and validates a vocab file (local or gs://).

    Args:
      path: the vocab file, one token per line.
      expected_size: if given, the exact number of tokens required (e.g. the model's vocab_size).
      required_tokens: tokens that must be present (by default [PAD] [UNK] [CLS] [SEP] [MASK]).

    Returns:
      The tokens; token i has id i.

    Raises:
      FileNotFoundError: no such file.
      ValueError: not valid UTF-8, or `validate` fails; the message names the file.
    """
    if not storage.exists(path):
        raise FileNotFoundError(f"vocab file not found: {path}")
    try:
        text = storage.read_text(path)
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not UTF-8 text ({error})") from error
    tokens = parse(text, path=path)
    validate(tokens, path=path, expected_size=expected_size, required_tokens=required_tokens)
    return tokens


def write(path: str, tokens: Sequence[str], *, expected_size: int | None = None) -> None:
    """Validates `tokens` and writes them one per line, atomically (local or gs://)."""
    validate(tokens, path=path, expected_size=expected_size)
    storage.atomic_write(path, "".join(token + "\n" for token in tokens))
