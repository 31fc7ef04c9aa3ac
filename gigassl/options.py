"""Command-line options generated from the stage config dataclasses, and ``--config FILE.yaml`` files.

Every field of a stage config (:mod:`gigassl.config`) becomes an option ``--field-name`` of the commands that use
it, typed from its annotation (int, float, str; a bool as ``--flag/--no-flag``; a tuple as several values; an
optional field takes ``none``; ``int | str`` tries each in turn), with its help read from the ``Attributes:``
section of its class's docstring (:func:`field_help`) and its default in every profile. A value is resolved in
layers, each over the one before: the profile, the command line's presets (:data:`gigassl.config.CLI_PRESETS`),
the ``--config`` file, the options given (:meth:`CommandConfig.resolve`); an option not given keeps the value
below it. The configs validate themselves when built; a refused value is reported with the option or the file key
it came from (:class:`ConfigUsageError`).

Why argparse by hand and no library (issue #21 item 6; tried 2026-12 on TrainConfig + EncoderConfig + EmbedConfig,
each library installed outside the venv). What every one of them lacks, and this module's tests require:

- every profile's default in the help (``default: paper 1000 | smoke 3 | demo 60``): each shows the one default
  of the instance it was given, and a ``--profile`` that changes the other options' defaults needs a second parse;
- a refused value as a usage error (exit 2) naming its option or file key: all three parse ``--epochs 0`` and then
  let the config's ``ConfigError`` from ``__post_init__`` escape as a traceback, so the mapping stays ours;
- a YAML key given twice is refused (jsonargparse and simple-parsing keep the last silently).

And each one's own gaps:

- jsonargparse 4.53.0 (+ docstring-parser, typeshed-client): options are ``--train.epochs``,
  ``--train.maps.slide_aug {true,false}``; without the prefix, ``seed`` of two sections is a ValueError, and
  ``add_class_arguments`` has no per-field rename or alias (``--slides``, ``--encoder``), so the old names go;
  ``--config`` is applied where it stands (``--epochs 9 --config f.yaml`` takes the file's epochs), while here
  options always win.
- tyro 1.0.16 (+ typeguard, docstring-parser): ``--train.epochs``; ``OmitArgPrefixes`` fails with "Name conflict"
  on the shared ``seed``; renames and aliases need ``Annotated[..., tyro.conf.arg(...)]`` in :mod:`gigassl.config`
  (the method's configs would import the CLI library); profiles become positional subcommands
  (``overridable_config_cli``: ``gigassl train demo``), not ``--profile``; no ``--config`` file at all.
- simple-parsing 0.1.9 (+ docstring-parser): the closest (flat ``--epochs``, a shared field renamed in both
  sections, ``--train.seed``/``--encoder.seed``, where ours keeps the command's ``--seed`` and adds
  ``--encoder-seed``; options over ``--config_path``), but a bool is ``--slide-aug false``
  (``--no-slide-aug`` is refused), an unknown file key is a RuntimeError traceback, and aliases need
  ``simple_parsing.field(alias=...)`` in the configs.

So a library would replace the type-to-argparse mapping (:func:`_kind`, :meth:`CommandConfig.add_to`: about 100
lines) and keep the rest here (the help's profile defaults, the layers and their origins, the file's checks), add
2-4 packages to the lock, and rename options users type; validation stays in one place, the configs'
``__post_init__``, so a notebook, a Python call and the command line get the same error for the same value.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path

from .config import CLI_PRESETS, PROFILES, Profile
from .errors import ConfigError

SECTIONS = tuple(f.name for f in dataclasses.fields(Profile) if f.name != "name")


class ConfigUsageError(ConfigError):
    """A value of an option or of a ``--config`` file that a config refused, or a malformed file: a usage error
    (exit status 2 on the command line)."""


def field_help(cls) -> dict[str, str]:
    """``{field: help}`` from the ``Attributes:`` section of ``cls``'s Google-style docstring (continuation lines
    joined)."""
    lines = inspect.cleandoc(cls.__doc__ or "").splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "Attributes:")
    except StopIteration:
        return {}
    base = len(lines[start]) - len(lines[start].lstrip())
    helps: dict[str, str] = {}
    name = None
    for line in lines[start + 1:]:
        indent = len(line) - len(line.lstrip())
        if line.strip() and indent <= base:
            break  # the next section
        entry = re.match(r"^(\w+): (.*)$", line.strip())
        if entry and (name is None or indent <= entry_indent):
            name, entry_indent = entry.group(1), indent
            helps[name] = entry.group(2)
        elif name is not None and line.strip():
            helps[name] += " " + line.strip()
    return helps


# ---------------------------------------------------------------------------------------------- field types
@dataclass(frozen=True)
class _Kind:
    """How a field is typed on the command line: ``bool``, ``scalar``, ``tuple`` (``n`` values, None: any
    number) or ``config`` (a nested dataclass); ``parse`` turns one word into a value."""

    kind: str
    parse: typing.Callable | None = None
    n: int | None = None
    element: type | None = None


def _word_parser(types_: tuple, optional: bool):
    def parse(text: str):
        if optional and text.lower() in ("none", "null"):
            return None
        for t in types_:
            try:
                return t(text)
            except ValueError:
                continue
        raise ValueError(text)

    parse.__name__ = " or ".join(t.__name__ for t in types_) + (" or none" if optional else "")
    return parse


def _kind(hint) -> _Kind:
    if dataclasses.is_dataclass(hint):
        return _Kind("config")
    if hint is bool:
        return _Kind("bool")
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is tuple:
        element = args[0]
        n = None if len(args) == 2 and args[1] is Ellipsis else len(args)
        return _Kind("tuple", _word_parser((element,), False), n, element)
    if origin in (typing.Union, types.UnionType):
        options = tuple(a for a in args if a is not type(None))
        order = tuple(t for t in (int, float, str) if t in options)  # int before str: "224" is a number
        return _Kind("scalar", _word_parser(order, type(None) in args))
    if hint in (int, float, str):
        return _Kind("scalar", _word_parser((hint,), False))
    raise TypeError(f"no command-line form for a field of type {hint!r}: give it int, float, str, bool, a tuple "
                    f"of those, an Optional or a nested config.")


def _fields(cls, prefix: tuple = ()):
    """``(path, hint, help)`` of every field of ``cls``, nested configs flattened (path ``("maps", "scale")``)."""
    hints, helps = typing.get_type_hints(cls), field_help(cls)
    for f in dataclasses.fields(cls):
        if _kind(hints[f.name]).kind == "config":
            yield from _fields(hints[f.name], prefix + (f.name,))
        else:
            yield prefix + (f.name,), hints[f.name], helps.get(f.name, "")


def _hint(section: str, path: tuple):
    cls = typing.get_type_hints(Profile)[section]
    for name in path:
        hint = typing.get_type_hints(cls)[name]
        cls = hint
    return hint


def typed(value) -> str:
    """A value as it is typed on the command line (``0.5 2.0``, ``none``, ``on``)."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (tuple, list)):
        return " ".join(map(typed, value)) if value else "(empty)"
    return str(value)


# ---------------------------------------------------------------------------------------------- the layers
def _get(config, path: tuple):
    for name in path:
        config = getattr(config, name)
    return config


def with_presets(profile: Profile) -> Profile:
    """``profile`` with the command line's presets (:data:`gigassl.config.CLI_PRESETS`) applied."""
    return dataclasses.replace(profile, **{s: dataclasses.replace(getattr(profile, s), **changes)
                                           for s, changes in CLI_PRESETS.items()})


def _apply(config, changes: dict, origins: dict, section: str, prefix: tuple = ()):
    """``config`` with ``changes`` ({path: value}) applied, nested configs first; a refused value is raised as a
    ConfigUsageError naming where it came from (``origins``: {(section, path): description})."""
    nested = {p[0] for p in changes if len(p) > 1}
    direct = {p[0]: v for p, v in changes.items() if len(p) == 1}
    for name in nested:
        inner = {p[1:]: v for p, v in changes.items() if len(p) > 1 and p[0] == name}
        direct[name] = _apply(getattr(config, name), inner, origins, section, prefix + (name,))
    try:
        return dataclasses.replace(config, **direct)
    except ConfigError as err:
        field_name = getattr(err, "field", None)
        if field_name is None:
            raise
        key = (section, prefix + (field_name,))
        if key not in origins:  # the profile's value, refused beside the others given: the config's own message
            raise ConfigUsageError(f"{origins['profile']}: {err}") from None
        raise ConfigUsageError(f"{origins[key]}: {err.what}={err.value!r} is not allowed: it must be "
                               f"{err.allowed}.") from None


def resolve(profile: Profile, layers: list[tuple[dict, dict]]) -> Profile:
    """``profile`` with each layer's changes applied over the one before (presets first).

    Args:
        layers: ``(changes, origins)`` pairs: ``{(section, path): value}`` and, for the error of a refused value,
            ``{(section, path): where it came from}`` (an option, a file key).
    """
    changes: dict = {}
    origins: dict = {"profile": f"a value of the {profile.name} profile, beside the ones given"}
    for section, values in CLI_PRESETS.items():
        for name, value in values.items():
            changes[(section, (name,))] = value
            origins[(section, (name,))] = f"the command line's preset {section}.{name}"
    for layer, where in layers:
        changes.update(layer)
        origins.update(where)
    sections = {}
    for section in SECTIONS:
        mine = {path: value for (s, path), value in changes.items() if s == section}
        if mine:
            sections[section] = _apply(getattr(profile, section), mine, origins, section)
    return dataclasses.replace(profile, **sections)


# ---------------------------------------------------------------------------------------------- YAML files
def _coerce(hint, value):
    """A YAML value in the field's Python form: lists as tuples, integers and number strings (``1e-4``, which YAML
    reads as text) of float fields as floats; anything else as it is, for the config to validate."""
    kind = _kind(hint)
    if kind.kind == "tuple" and isinstance(value, list):
        return tuple(_coerce(kind.element, v) for v in value)
    if hint is float and not isinstance(value, bool):
        if isinstance(value, int):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                return value
    return value


def _unique_keys(path):
    """A safe YAML loader that refuses a key given twice in one mapping (PyYAML keeps the last silently)."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    def mapping(loader, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise ConfigUsageError(f"--config {path}: key {key!r} appears twice in one mapping (lines {seen[key]} "
                                       f"and {line}); YAML would keep the last silently. Keep one of them.")
            seen[key] = line
        return loader.construct_mapping(node, deep=deep)

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    return Loader


def read_config_file(path) -> tuple[dict, dict]:
    """The changes of a ``--config`` YAML file: ``({(section, path): value}, {(section, path): origin})``.

    Raises:
        ConfigUsageError: the file is missing or not YAML, gives a key twice in one mapping, or names a section or
            key that does not exist (the error names the key, the allowed keys and the file).
    """
    import yaml

    path = Path(path)
    try:
        data = yaml.load(path.read_text(), Loader=_unique_keys(path))
    except OSError as err:
        if path.is_dir():
            raise ConfigUsageError(f"--config {path} is a folder, not a file; give the YAML file itself, e.g. one "
                                   "written by `gigassl <command> --print-config`.") from None
        raise ConfigUsageError(f"--config {path}: cannot read it ({err.strerror}); give a YAML file, e.g. one "
                               f"written by `gigassl <command> --print-config`.") from None
    except yaml.YAMLError as err:
        raise ConfigUsageError(f"--config {path} is not valid YAML: {err}") from None
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigUsageError(f"--config {path}: expected a mapping of sections ({', '.join(SECTIONS)}); got a "
                               f"{type(data).__name__}.")
    changes: dict = {}
    origins: dict = {}

    def walk(section: str, cls, mapping, prefix: tuple):
        if not isinstance(mapping, dict):
            raise ConfigUsageError(f"--config {path}: {'.'.join((section, *prefix))} must be a mapping of keys to "
                                   f"values; got {mapping!r}.")
        hints = typing.get_type_hints(cls)
        for key, value in mapping.items():
            where = ".".join((section, *prefix, str(key)))
            if key not in hints:
                raise ConfigUsageError(f"--config {path}: unknown key {where!r}; allowed in "
                                       f"{'.'.join((section, *prefix))}: {', '.join(hints)}. Fix or remove it.")
            if dataclasses.is_dataclass(hints[key]):
                walk(section, hints[key], value, prefix + (key,))
                continue
            changes[(section, prefix + (key,))] = _coerce(hints[key], value)
            origins[(section, prefix + (key,))] = f"--config {path}, key {where}"

    for section, mapping in data.items():
        if section not in SECTIONS:
            raise ConfigUsageError(f"--config {path}: unknown section {section!r}; allowed: {', '.join(SECTIONS)}. "
                                   "Fix or remove it.")
        walk(section, typing.get_type_hints(Profile)[section], mapping, ())
    return changes, origins


def dump_config(profile: Profile, header: str = "") -> str:
    """``profile`` as the YAML text of a ``--config`` file (every section, every field; ``header`` as comment
    lines above)."""
    import yaml

    def plain(value):
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return list(value) if isinstance(value, tuple) else value

    class Dumper(yaml.SafeDumper):  # sections and fields as blocks, a field's list of values on its line
        pass

    Dumper.add_representer(list, lambda d, v: d.represent_sequence("tag:yaml.org,2002:seq", v, flow_style=True))
    body = yaml.dump({s: plain(getattr(profile, s)) for s in SECTIONS}, Dumper=Dumper, sort_keys=False,
                     default_flow_style=False, width=100)
    comments = "".join(f"# {line}\n" for line in header.splitlines())
    return comments + body


# ---------------------------------------------------------------------------------------------- options
@dataclass(frozen=True)
class Option:
    """One generated option: the field it sets (``section``, ``path``) and its flags (the first is shown)."""

    section: str
    path: tuple
    flags: tuple

    @property
    def dest(self) -> str:
        return "config:" + ".".join((self.section, *self.path))


@dataclass(frozen=True)
class Section:
    """A Profile section a command exposes: all its fields or ``only`` these; ``prefix``: every flag
    ``--<section>-<field>`` (else only where two sections of the command share a field name)."""

    name: str
    only: tuple | None = None
    prefix: bool = False


class CommandConfig:
    """The config options of one command: which sections it exposes, how its options are named, and how a
    parsed command line resolves to a :class:`~gigassl.config.Profile`.

    Args:
        sections: the :class:`Section` s, the command's own first.
        flags: ``{"section.field": (flag, alias, ...)}`` where a flag is not ``--field-name`` (the command
            line's names from before the generator, e.g. ``synth.n_slides: ("--n-slides", "--slides")``).
        metavars: ``{"section.field": metavar}`` (e.g. ``("LOW", "HIGH")`` for a range).
        default_profile: the profile of the command when ``--profile`` is not given.
    """

    def __init__(self, sections, flags: dict | None = None, metavars: dict | None = None,
                 default_profile: str = "paper"):
        self.sections = tuple(s if isinstance(s, Section) else Section(s) for s in sections)
        self.flags, self.metavars = flags or {}, metavars or {}
        self.default_profile = default_profile

    def options(self, taken=()) -> list[Option]:
        """Every generated option, named so that no two collide (nor with the ``taken`` hand options)."""
        used, out = set(taken), []
        for section in self.sections:
            cls = typing.get_type_hints(Profile)[section.name]
            for path, _, _ in _fields(cls):
                if section.only is not None and path[0] not in section.only:
                    continue
                name = path[-1].replace("_", "-")
                key = ".".join((section.name, *path))
                flags = self.flags.get(key)
                if flags is None:
                    flag = f"--{section.name}-{name}" if section.prefix or f"--{name}" in used else f"--{name}"
                    flags = (flag,)
                used.update(flags)
                out.append(Option(section.name, path, tuple(flags)))
        return out

    def add_to(self, parser: argparse.ArgumentParser) -> list[Option]:
        """Add ``--profile``, ``--config``, ``--print-config`` and every config option to ``parser``."""
        parser.add_argument("--profile", default=self.default_profile, choices=list(PROFILES),
                            help=f"run profile giving the defaults (default: {self.default_profile})")
        parser.add_argument("--config", metavar="FILE.yaml",
                            help="YAML file of values over the profile's, in sections named after the stages "
                                 f"({', '.join(SECTIONS)}); options given override it")
        parser.add_argument("--print-config", action="store_true",
                            help="write the resolved configuration (every section) as YAML to stdout and exit; "
                                 "the command's inputs are then not required")
        taken = {o for action in parser._actions for o in action.option_strings}
        profiles = {name: with_presets(p) for name, p in PROFILES.items()}
        order = [self.default_profile] + [p for p in profiles if p != self.default_profile]
        options = self.options(taken)
        groups = {}
        for option in options:
            cls = typing.get_type_hints(Profile)[option.section]
            owner = cls
            for name in option.path[:-1]:
                owner = typing.get_type_hints(owner)[name]
            title = ".".join((option.section, *option.path[:-1]))
            if title not in groups:
                summary = inspect.cleandoc(owner.__doc__ or "").split("\n")[0].replace("``", "")
                groups[title] = parser.add_argument_group(f"{title} ({owner.__name__})", summary.replace("%", "%%"))
            values = [_get(getattr(profiles[p], option.section), option.path) for p in order]
            if all(v == values[0] for v in values):
                default = f"default: {typed(values[0])}"
            else:
                default = "default: " + " | ".join(f"{p} {typed(v)}" for p, v in zip(order, values))
            text = field_help(owner).get(option.path[-1], "")
            help_ = f"{text.rstrip('.')} ({default})".replace("%", "%%")
            kind = _kind(_hint(option.section, option.path))
            key = ".".join((option.section, *option.path))
            common = dict(dest=option.dest, default=argparse.SUPPRESS, help=help_)
            if kind.kind == "bool":
                groups[title].add_argument(*option.flags, action=argparse.BooleanOptionalAction, **common)
                continue
            metavar = self.metavars.get(key, option.path[-1].upper())
            if kind.kind == "tuple":
                nargs = "*" if kind.n is None else kind.n
                if kind.n is not None and not isinstance(metavar, tuple):
                    metavar = (metavar,) * kind.n
                groups[title].add_argument(*option.flags, type=kind.parse, nargs=nargs, metavar=metavar, **common)
            else:
                groups[title].add_argument(*option.flags, type=kind.parse, metavar=metavar, **common)
        return options

    def resolve(self, args: argparse.Namespace, options: list[Option], extra: dict | None = None) -> Profile:
        """The configuration of a parsed command line: the profile, the presets, ``--config``, then the options
        given and ``extra`` (``{(section, path): (value, flag)}``, a hand option that sets fields).

        Raises:
            ConfigUsageError: a value refused by its config, or a bad ``--config`` file.
        """
        layers = []
        if getattr(args, "config", None):
            layers.append(read_config_file(args.config))
        given = {o: vars(args)[o.dest] for o in options if o.dest in vars(args)}
        changes = {(o.section, o.path): (tuple(v) if isinstance(v, list) else v) for o, v in given.items()}
        layers.append((changes, {(o.section, o.path): f"argument {o.flags[0]}" for o in given}))
        if extra:
            layers.append(({k: v for k, (v, _) in extra.items()}, {k: f"argument {f}" for k, (_, f) in extra.items()}))
        return resolve(PROFILES[args.profile], layers)
