"""Command-line flags declared once: sizes spelled ``HxW`` and absl flags generated from a config dataclass.

A config dataclass (`contextnet_tf.training.TrainConfig`, `contextnet_tf.reports.quickstart.QuickstartConfig`)
declares each field with `option`: its default, its help text and, where needed, its choices or the syntax of a
tuple (``size``: ``352x480``; ``floats``: ``0.5,2``). From that one declaration

* `define_flags` defines the absl flags of an `experiments/*.py` program (name, type, default, help);
* `overrides` reads them back into keyword arguments of the dataclass;
* `command_args` writes a config back as the flags that reproduce it (a model card's training command).

This module imports nothing from the package, so any layer may use it.
"""

import dataclasses
import os
import types
import typing

from absl import flags

SIZE_EXAMPLE = "352x480"

# Flags defined through this module belong to the program that asked for them (they show in its --help).
flags.disclaim_key_flags()


def parse_size(text, flag=None):
    """``"352x480"`` (or a (height, width) pair) -> (352, 480): positive integers, height first.

    Args:
        text: the flag's text.
        flag: the flag's name, put at the front of the error message.

    Raises:
        ValueError: ``--crop: expected HxW such as 352x480, got 'abc'``.
    """
    if isinstance(text, (tuple, list)) and len(text) == 2 and all(isinstance(v, int) for v in text):
        height, width = text
    else:
        try:
            height, width = (int(v) for v in str(text).strip().lower().split("x"))
        except ValueError:
            prefix = f"--{flag}: " if flag else ""
            raise ValueError(f"{prefix}expected HxW such as {SIZE_EXAMPLE}, got {text!r}") from None
    if height < 1 or width < 1:
        prefix = f"--{flag}: " if flag else ""
        raise ValueError(f"{prefix}expected HxW with positive height and width such as {SIZE_EXAMPLE}, got {text!r}")
    return height, width


def format_size(size):
    """(352, 480) -> ``"352x480"``."""
    height, width = size
    return f"{height}x{width}"


def _parse_list(text):
    if isinstance(text, (tuple, list)):
        return list(text)
    return [part.strip() for part in str(text).split(",") if part.strip()]


def parse_sizes(text, flag=None):
    """``"1024x2048,512x1024"`` -> [(1024, 2048), (512, 1024)] (see `parse_size`)."""
    return [parse_size(part, flag) for part in _parse_list(text)]


def parse_floats(text, flag=None):
    """``"0.5,2"`` -> (0.5, 2.0), with an error naming the flag."""
    try:
        return tuple(float(part) for part in _parse_list(text))
    except (TypeError, ValueError):
        prefix = f"--{flag}: " if flag else ""
        raise ValueError(f"{prefix}expected numbers separated by commas such as 0.5,2, got {text!r}") from None


def _format_float(value):
    short = f"{value:g}"
    return short if float(short) == value else repr(float(value))


class _SizeParser(flags.ArgumentParser):
    """absl parser of one ``HxW`` size (absl prefixes its errors with ``flag --name=value:``)."""

    syntactic_help = "a size HxW such as " + SIZE_EXAMPLE

    def parse(self, argument):
        return parse_size(argument)

    def flag_type(self):
        return "size HxW"


class _SizeListParser(flags.ArgumentParser):
    syntactic_help = "comma-separated sizes HxW such as 1024x2048,512x1024"

    def parse(self, argument):
        return tuple(parse_sizes(argument))

    def flag_type(self):
        return "list of sizes HxW"


class _FloatListParser(flags.ArgumentParser):
    syntactic_help = "comma-separated numbers such as 0.5,2"

    def parse(self, argument):
        return parse_floats(argument)

    def flag_type(self):
        return "list of floats"


class _Serializer(flags.ArgumentSerializer):
    def __init__(self, syntax):
        self.syntax = syntax

    def serialize(self, value):
        return flag_text(value, self.syntax)


def define_size(name, default, help, flag_values=flags.FLAGS, **kwargs):
    """An absl flag holding one (height, width) size, written ``HxW``; `default` is a pair, ``"HxW"`` or None."""
    default = None if default is None else format_size(parse_size(default))
    return flags.DEFINE(_SizeParser(), name, default, help, flag_values, _Serializer("size"), **kwargs)


def define_sizes(name, default, help, flag_values=flags.FLAGS, **kwargs):
    """An absl flag holding a tuple of (height, width) sizes, written ``HxW,HxW``."""
    default = None if default is None else ",".join(format_size(parse_size(s)) for s in _parse_list(default))
    return flags.DEFINE(_SizeListParser(), name, default, help, flag_values, _Serializer("sizes"), **kwargs)


def define_floats(name, default, help, flag_values=flags.FLAGS, **kwargs):
    """An absl flag holding a tuple of floats, written ``0.5,2``."""
    default = None if default is None else flag_text(tuple(default), "floats")
    return flags.DEFINE(_FloatListParser(), name, default, help, flag_values, _Serializer("floats"), **kwargs)


# ------------------------------------------------------------------------------------------- dataclass-driven flags


def option(default, help, choices=None, syntax=None):
    """A dataclass field that is also a command-line flag.

    Args:
        default: the field's default.
        help: what the field means (the flag's help text and the field's documentation).
        choices: allowed values of a string field (an enum flag; also checked by `check_choices`).
        syntax: for tuple fields, ``size`` (``HxW``), ``sizes`` or ``floats`` (comma-separated numbers).
    """
    metadata = {"help": help}
    if choices is not None:
        metadata["choices"] = tuple(choices)
    if syntax is not None:
        if syntax not in ("size", "sizes", "floats"):
            raise ValueError(f"syntax must be size, sizes or floats, got {syntax!r}")
        metadata["syntax"] = syntax
    return dataclasses.field(default=default, metadata=metadata)


def _value_type(cls, field):
    """The field's type without ``| None``: str, int, float, bool or tuple."""
    kind = typing.get_type_hints(cls)[field.name]
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        kinds = [k for k in typing.get_args(kind) if k is not type(None)]
        kind = kinds[0]
    origin = typing.get_origin(kind)
    return origin or kind


def flag_fields(cls):
    """The fields of dataclass `cls` declared with `option` (those that have a help text)."""
    return [field for field in dataclasses.fields(cls) if "help" in field.metadata]


def check_choices(config):
    """Raises ValueError naming the first field of `config` whose value is not one of its declared choices."""
    for field in flag_fields(type(config)):
        choices = field.metadata.get("choices")
        value = getattr(config, field.name)
        if choices is not None and value is not None and value not in choices:
            raise ValueError(f"{field.name} must be one of {', '.join(map(str, choices))}, got {value!r}")


def define_flags(cls, names=None, required=(), help_overrides=None, use_defaults=True, flag_values=flags.FLAGS):
    """Defines one absl flag per `option` field of dataclass `cls`.

    Args:
        cls: the dataclass.
        names: the fields to define (default: all `option` fields), in declaration order.
        required: fields whose flag must be given.
        help_overrides: {name: help} for a program whose flag means something more specific.
        use_defaults: the flags' defaults are the fields' defaults; if False they are None (unset), and the
            field's default is named in the help (a program that layers presets under the flags).
        flag_values: the `absl.flags.FlagValues` to define them in.

    Returns:
        {field name: FlagHolder}.
    """
    help_overrides = help_overrides or {}
    fields = {field.name: field for field in flag_fields(cls)}
    unknown = set(names or ()) - set(fields)
    if unknown:
        raise ValueError(f"{cls.__name__} has no flag fields {sorted(unknown)}")
    holders = {}
    for name in names or fields:
        field = fields[name]
        help = help_overrides.get(name, field.metadata["help"])
        default = field.default
        if not use_defaults:
            if default is not None and name not in required:
                help = f"{help} (default: {flag_text(default, field.metadata.get('syntax'))})"
            default = None
        kwargs = dict(flag_values=flag_values, required=name in required)
        if name in required:
            default = None
        kind = _value_type(cls, field)
        choices = field.metadata.get("choices")
        if choices is not None:
            holder = flags.DEFINE_enum(name, default, list(choices), help, **kwargs)
        elif kind is bool:
            holder = flags.DEFINE_bool(name, default, help, **kwargs)
        elif kind is int:
            holder = flags.DEFINE_integer(name, default, help, **kwargs)
        elif kind is float:
            holder = flags.DEFINE_float(name, default, help, **kwargs)
        elif kind is str:
            holder = flags.DEFINE_string(name, default, help, **kwargs)
        elif kind is tuple:
            syntax = field.metadata.get("syntax")
            define = {"size": define_size, "sizes": define_sizes, "floats": define_floats}.get(syntax)
            if define is None:
                raise ValueError(f"{cls.__name__}.{name}: a tuple field needs syntax='size', 'sizes' or 'floats'")
            holder = define(name, default, help, **kwargs)
        else:
            raise ValueError(f"{cls.__name__}.{name}: no flag type for {field.type}")
        holders[name] = holder
    return holders


def overrides(holders, only_set=True):
    """{field name: value} of the flags in `holders` (from `define_flags`); with `only_set`, flags left at None are
    left out (so a preset's or the dataclass's default applies)."""
    return {name: holder.value for name, holder in holders.items() if not (only_set and holder.value is None)}


def flag_text(value, syntax=None):
    """A field value as flag text: sizes ``HxW``, tuples comma-separated, floats in their shortest exact form."""
    if syntax == "size":
        return format_size(value)
    if syntax == "sizes":
        return ",".join(format_size(v) for v in value)
    if isinstance(value, (tuple, list)):
        return ",".join(_format_float(v) if isinstance(v, float) else str(v) for v in value)
    if isinstance(value, float):
        return _format_float(value)
    return str(value)


def command_args(config, reference=None, always=()):
    """The flags that give `config` (a dataclass declared with `option`): every field that differs from
    `reference` (default: the dataclass defaults) or is named in `always`; booleans as ``--name`` / ``--noname``.

    A None value has no flag spelling: a field that is None in `config` but not in `reference` raises ValueError.
    """
    reference = reference if reference is not None else type(config)()
    args = []
    for field in flag_fields(type(config)):
        value = getattr(config, field.name)
        if field.name not in always and value == getattr(reference, field.name):
            continue
        if value is None:
            if field.name in always:
                continue
            raise ValueError(f"{field.name}=None cannot be written as a flag (the reference has "
                             f"{getattr(reference, field.name)!r})")
        if isinstance(value, bool):
            args.append(f"--{'' if value else 'no'}{field.name}")
        else:
            args.append(f"--{field.name}={flag_text(value, field.metadata.get('syntax'))}")
    return args


def nearest_existing(path):
    """The nearest existing path at or above `path` (absolute): where a folder or file at `path` would be created."""
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    return existing


def check_folder_flag(path, flag, noun="folder"):
    """Raises ValueError naming `--flag` unless a `noun` (a folder) can be created or reused at `path`, before any
    long work: not a file, no file on the way, and writable."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"--{flag} {path} is a file, not a {noun}")
    existing = nearest_existing(path)
    if not os.path.isdir(existing):
        raise ValueError(f"--{flag} {path}: {existing} is a file, so the {noun} cannot be created")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"--{flag} {path} cannot be written ({existing}: permission denied)")
