"""Command-line flags derived from a frozen config dataclass: one source of defaults and help.

Every program of ours has one typed, frozen config whose fields carry the defaults, each
commented once on its own line:

    @dataclasses.dataclass(frozen=True)
    class ExtractTextConfig:
        input: str  # comma-separated globs of dumps or book files
        num_shards: int = 8  # train shards

`define_flags(ExtractTextConfig)` defines `--input` and `--num_shards` with those defaults and
those comments as help, and `config_from_flags(ExtractTextConfig)` builds the config from the
parsed values, so a default is written once and a flag cannot drift from its field. A field
without a default is a required flag. Types: str, int, float, bool (`--name` / `--noname`),
`X | None` (no value: None), tuple[str, ...] (shell words: `--x='--a=1 --b="c d"'`). A field whose
`metadata` has `"flag": False` is not a flag; `"enum": (...)` restricts a str flag.
"""

from __future__ import annotations

import dataclasses
import inspect
import io
import shlex
import sys
import tokenize
import types
import typing
from typing import Any

from absl import flags


def field_comments(config_class: type) -> dict[str, str]:
    """The comment that documents each field: the one at the end of its line, else the comment
    lines just above it (in the class that declares the field, for a subclass's inherited ones)."""
    comments: dict[str, str] = {}
    for cls in reversed(config_class.__mro__):
        if dataclasses.is_dataclass(cls) and "__dataclass_fields__" in vars(cls):
            comments.update(_own_field_comments(cls))
    return comments


def _own_field_comments(config_class: type) -> dict[str, str]:
    lines = inspect.getsource(config_class).splitlines()
    comment_at: dict[int, str] = {}  # 0-based line -> comment text
    for token in tokenize.generate_tokens(io.StringIO("\n".join(lines) + "\n").readline):
        if token.type == tokenize.COMMENT:
            comment_at[token.start[0] - 1] = token.string.lstrip("#").strip()
    names = {field.name for field in dataclasses.fields(config_class)}
    comments = {}
    for number, line in enumerate(lines):
        name = line.strip().split(":", 1)[0]
        if name not in names or name in comments or not line.strip().startswith(name + ":"):
            continue
        if number in comment_at:
            comments[name] = comment_at[number]
            continue
        above = []
        row = number - 1
        while row >= 0 and lines[row].strip().startswith("#"):
            above.insert(0, comment_at.get(row, ""))
            row -= 1
        if above:
            comments[name] = " ".join(above)
    return comments


def _base_type(annotation: Any) -> tuple[type, bool]:
    """(str | int | float | bool | tuple, whether None is allowed) of a field's annotation."""
    if isinstance(annotation, str):
        annotation = eval(annotation, {"tuple": tuple})  # noqa: S307 - our own annotations
    optional = False
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional = len(members) < len(typing.get_args(annotation))
        annotation = members[0]
    if typing.get_origin(annotation) is tuple:
        return tuple, optional
    return annotation, optional


def flag_fields(config_class: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(config_class) if f.metadata.get("flag", True)]


def define_flags(
    config_class: type,
    *,
    flag_values: flags.FlagValues = flags.FLAGS,
    defaults: dict[str, Any] | None = None,
) -> None:
    """Defines one flag per field of `config_class` in `flag_values`.

    Args:
      config_class: a dataclass whose fields each have a comment (their help).
      flag_values: where to define them.
      defaults: defaults that differ from the fields' for this program (rare; e.g. a launcher).

    Raises:
      ValueError: a field has no comment, or a type this module does not map to a flag.
    """
    comments = field_comments(config_class)
    defaults = defaults or {}
    required = []
    # The program's own flags, shown by --help (absl keys them to the running program's file).
    where = {"flag_values": flag_values, "module_name": sys.argv[0] if sys.argv else None}
    for field in flag_fields(config_class):
        help_text = comments.get(field.name)
        if not help_text:
            raise ValueError(f"{config_class.__name__}.{field.name}: no comment to use as help")
        kind, optional = _base_type(field.type)
        if field.name in defaults:
            default = defaults[field.name]
        elif field.default is not dataclasses.MISSING:
            default = field.default
        elif field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        else:
            default = None
            required.append(field.name)
        enum = field.metadata.get("enum")
        if enum:
            flags.DEFINE_enum(field.name, default, enum, help_text, **where)
        elif kind is bool:
            flags.DEFINE_bool(field.name, default, help_text, **where)
        elif kind is int:
            flags.DEFINE_integer(field.name, default, help_text, **where)
        elif kind is float:
            flags.DEFINE_float(field.name, default, help_text, **where)
        elif kind is str:
            flags.DEFINE_string(field.name, default, help_text, **where)
        elif kind is tuple:
            flags.DEFINE_string(field.name, shlex.join(default or ()), help_text, **where)
        else:
            raise ValueError(f"{config_class.__name__}.{field.name}: no flag for type {kind}")
        del optional  # None is simply the default of an optional flag
    if required:
        flags.mark_flags_as_required(required, flag_values=flag_values)


def config_from_flags(
    config_class: type, *, flag_values: flags.FlagValues = flags.FLAGS, **overrides: Any
):
    """`config_class` built from the parsed flags (and `overrides` for fields that are not
    flags, or that the program computes).

    Raises:
      ValueError: what the config's own checks (`__post_init__`) refuse.
    """
    values = {}
    for field in flag_fields(config_class):
        value = flag_values[field.name].value
        if _base_type(field.type)[0] is tuple and value is not None:
            value = tuple(shlex.split(value))
        values[field.name] = value
    values.update(overrides)
    return config_class(**values)
