"""Command-line flags declared on the fields of the option records they fill.

Each option record (a dataclass: ``ServingOptions``, ``ServerOptions``, ``TrainOptions``, ...) names,
on the field itself, the flag that sets it and its help; the field's default is the only default:

    @dataclass(frozen=True)
    class ServingOptions:
        instances: int = flag(1, "--instances", "instances per model")

``add_flags(parser, ServingOptions)`` adds ``--instances`` (its type from the default, the default
shown in the help); ``from_flags(ServingOptions, args)`` builds the record from the flags given on the
command line and leaves the rest to the dataclass. A field whose default is itself a record
(``PreprocessOptions.limits``) brings that record's flags along. Fields without a flag are not on the
command line.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from s2s.errors import S2SError

_KEY = "s2s.flag"


@dataclasses.dataclass(frozen=True)
class Flag:
    """How one field appears on the command line."""

    name: str  #: "--max-windows"; a name without dashes is a positional argument
    help: str
    type: Callable[[str], Any] | None = None  #: parses the text (default: the default value's type)
    choices: tuple[Any, ...] | None = None
    shown: str | None = None  #: the default as the help shows it (default: the default value itself)
    repeat: bool = False  #: may be given several times; the field gets the list
    nargs: str | None = None  #: for a positional: "*" takes any number

    @property
    def positional(self) -> bool:
        return not self.name.startswith("-")

    @property
    def metavar(self) -> str:
        return self.name.lstrip("-").upper().replace("-", "_")


def flag(
    default: Any = dataclasses.MISSING,
    name: str = "",
    help: str = "",
    *,
    default_factory: Callable[[], Any] | Any = dataclasses.MISSING,
    type: Callable[[str], Any] | None = None,
    choices: tuple[Any, ...] | list[Any] | None = None,
    shown: str | None = None,
    repeat: bool = False,
    nargs: str | None = None,
    secret: bool = False,
) -> Any:
    """A dataclass field with its command-line flag (use it as the field's default); ``secret`` keeps the
    value out of the record's repr (and so out of logs)."""
    spec = Flag(name, help, type, tuple(choices) if choices else None, shown, repeat, nargs)
    return dataclasses.field(default=default, default_factory=default_factory, metadata={_KEY: spec}, repr=not secret)


def add_flags(parser: argparse.ArgumentParser | Any, record: type, *, exclude: tuple[str, ...] = ()) -> None:
    """Add a flag for every flagged field of the dataclass ``record`` (and of the records it nests)."""
    for field in dataclasses.fields(record):
        spec, default = field.metadata.get(_KEY), _default(field)
        if spec is None:
            if dataclasses.is_dataclass(default):
                add_flags(parser, type(default), exclude=exclude)
            continue
        if field.name in exclude:
            continue
        kwargs: dict[str, Any] = {"default": argparse.SUPPRESS, "help": _help(spec, default)}
        if spec.positional:
            parser.add_argument(_dest(record, field), metavar=spec.name, nargs=spec.nargs, **kwargs)
            continue
        kwargs["dest"] = _dest(record, field)
        if isinstance(default, bool) and spec.type is None:
            kwargs["action"] = "store_true"
        else:
            kwargs["type"] = _parser_type(spec.type or _type_of(default))
            if spec.choices:
                kwargs["choices"] = spec.choices
            else:
                kwargs["metavar"] = spec.metavar
            if spec.repeat:
                kwargs["action"] = "append"
        parser.add_argument(spec.name, **kwargs)


def from_flags(record: type, args: argparse.Namespace, **overrides: Any) -> Any:
    """The record ``record`` from the flags given in ``args``; ``overrides`` set fields outright."""
    values: dict[str, Any] = {}
    for field in dataclasses.fields(record):
        if field.name in overrides or not field.init:
            continue
        spec = field.metadata.get(_KEY)
        if spec is None:
            default = _default(field)
            if dataclasses.is_dataclass(default):
                values[field.name] = from_flags(type(default), args)
            continue
        dest = _dest(record, field)
        if hasattr(args, dest):
            values[field.name] = getattr(args, dest)
    return record(**values, **overrides)


def is_given(args: argparse.Namespace, record: type, name: str) -> bool:
    """Whether the flag of ``record``'s field ``name`` was on the command line."""
    return hasattr(args, f"{record.__name__}.{name}")


def flags_of(record: type) -> dict[str, str]:
    """field name -> flag of the dataclass ``record`` (nested records included)."""
    out = {}
    for field in dataclasses.fields(record):
        spec = field.metadata.get(_KEY)
        if spec is not None:
            out[field.name] = spec.name
        elif dataclasses.is_dataclass(_default(field)):
            out.update(flags_of(type(_default(field))))
    return out


def _dest(record: type, field: dataclasses.Field) -> str:
    return f"{record.__name__}.{field.name}"


def _default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None


def _type_of(default: Any) -> Callable[[str], Any]:
    if isinstance(default, Path):
        return Path
    if isinstance(default, int | float | str):
        return type(default)
    return str


def _parser_type(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """``parse`` for argparse: the project's own errors become argparse's, so their message is shown."""

    def checked(text: str) -> Any:
        try:
            return parse(text)
        except S2SError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    checked.__name__ = getattr(parse, "__name__", "value")
    return checked


def _help(spec: Flag, default: Any) -> str:
    shown = spec.shown
    if shown is None and default is not None and not isinstance(default, bool) and default not in ((), []):
        shown = ",".join(str(v) for v in default) if isinstance(default, tuple | list) else str(default)
    text = spec.help + (f" (default: {shown})" if shown else "")
    return text.replace("%", "%%")  # argparse formats help with %


# ----------------------------------------------------------------------------------- value types
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmMgG]?)i?[bB]?\s*$")
_UNITS = " KMG"


def parse_size(text: str) -> int:
    """'64M', '1G', '1048576' -> bytes (binary units)."""
    match = _SIZE.match(text)
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (use e.g. 16M, 1G or a byte count)")
    number, unit = match.groups()
    return int(float(number) * 1024 ** _UNITS.index(unit.upper() or " "))


def format_size(size: int) -> str:
    """bytes -> the shortest exact '16M' / '1G' / byte-count text that :func:`parse_size` reads back."""
    for power in (3, 2, 1):
        if size and size % 1024**power == 0:
            return f"{size // 1024**power}{_UNITS[power]}"
    return str(size)


def port(text: str) -> int:
    """A TCP port number, 1..65535."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"port out of range: {value}")
    return value


def comma_list(kind: Callable[[str], Any] = int) -> Callable[[str], tuple]:
    """A flag type: '1,2,4' -> (1, 2, 4); '' -> ()."""

    def parse(text: str) -> tuple:
        try:
            return tuple(kind(v.strip()) for v in text.split(",") if v.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a comma-separated list of {kind.__name__}: {text!r}") from None

    parse.__name__ = f"list of {kind.__name__}"
    return parse
