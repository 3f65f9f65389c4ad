"""Find, read, interpolate and validate the YAML configuration.

Pipeline (``parse_config``): YAML text -> plain data (duplicate keys rejected)
-> legacy single-account form folded into ``accounts: [...]`` -> ``${ENV}``
interpolation -> ``AppConfig.model_validate`` (types, constraints and the
schema's cross-field checks) -> relative directories made absolute -> warnings.

Interpolation: ``${NAME}`` anywhere inside a string value is replaced by the
environment variable NAME (a missing variable is an error naming it and the
field); ``$${`` is a literal ``${``; the substituted text is not scanned again.
The variables each account's secrets come from are kept (``AppConfig.
secret_variables_of_others``): a trader process is started without the other
accounts' (ARCHITECTURE.md, "Invariants" 6), so it loads the file ``for_account``
its own, where another account's secret whose variable is missing is withheld
(``WITHHELD``), not an error.
Values stay strings, and validation runs in pydantic's lax mode so ``"20"``
becomes ``20`` where the schema wants a number (``"true"`` / ``"false"``
booleans): ``max_order_volume: ${MAX_VOL}`` works, and a YAML number where the
schema wants text (``brokerid: 9999``) is still an error with a hint to quote
it, never a silent conversion (``userid: 012345`` would lose its 0); nor is a
boolean ever taken for a number.

Errors are ``ConfigError`` whose ``str()`` is one complete message in the shape
``<file name>: <field path>: <what was expected>``, built from the structured
errors of pydantic's ``ValidationError`` (location, error type, context, input)
and from the schema's own field metadata, never from message text.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import NoneType, UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import AwareDatetime, BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from config.errors import ConfigError
from config.paths import socket_dir_problem
from config.schema import CHECK_ERROR, SECRET_FIELD_NAMES, AppConfig

__all__ = [
    "CONFIG_ENV_VAR",
    "DEMO_NOTICE",
    "LOCAL_CONFIG_PATH",
    "WITHHELD",
    "ConfigError",
    "LoadedConfig",
    "demo_config_path",
    "load_config",
    "load_config_file",
    "parse_config",
    "resolve_config_path",
]

#: Printed by the caller when ``LoadedConfig.is_demo`` is true.
DEMO_NOTICE = "no configuration found: running the demo (3 simulated accounts)"
#: Environment variable naming the configuration file (second in the resolution order).
CONFIG_ENV_VAR = "QTRADER_CONFIG"
#: Looked up relative to the current directory (third in the resolution order).
LOCAL_CONFIG_PATH = Path("config") / "config.yaml"
#: Another account's secret in a trader process that was not given it (``for_account``).
WITHHELD = "(withheld: another account's secret)"


@dataclass
class LoadedConfig:
    """A validated configuration plus where it came from and what deserves a warning."""

    config: AppConfig
    source: Path
    is_demo: bool
    warnings: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- resolution and files


def demo_config_path() -> Path:
    """The bundled demo configuration (three simulated accounts)."""
    return Path(__file__).resolve().with_name("demo.yaml")


def resolve_config_path(cli_path: str | None) -> tuple[Path, bool]:
    """Which file to load: ``(absolute path, is_demo)``.

    Order: ``--config PATH``, else ``$QTRADER_CONFIG``, else ``./config/config.yaml``
    (relative to the current directory), else the bundled demo. A file named
    explicitly (option or variable) that does not exist is an error, never a
    silent fall-back to the demo.
    """
    if cli_path is not None:
        return _existing_file(cli_path, f"--config {cli_path}"), False
    env_path = os.environ.get(CONFIG_ENV_VAR)
    if env_path:
        return _existing_file(env_path, f"{CONFIG_ENV_VAR}={env_path}"), False
    local = Path.cwd() / LOCAL_CONFIG_PATH
    if local.is_file():
        return local, False
    return demo_config_path(), True


def _existing_file(raw: str, origin: str) -> Path:
    path = Path(raw).expanduser().absolute()
    if not path.exists():
        raise ConfigError(f"{origin}: file not found ({path})", source=path.name)
    if not path.is_file():
        raise ConfigError(f"{origin}: not a file ({path})", source=path.name)
    return path


def load_config(cli_path: str | None = None, *, for_account: str | None = None) -> LoadedConfig:
    """Resolve (see ``resolve_config_path``), read and validate the configuration
    (``for_account``: as that account's trader process, see ``parse_config``)."""
    path, is_demo = resolve_config_path(cli_path)
    warnings: list[str] = []
    config = load_config_file(path, warnings=warnings, for_account=for_account)
    return LoadedConfig(config=config, source=path, is_demo=is_demo, warnings=warnings)


def load_config_file(
    path: Path, *, warnings: list[str] | None = None, for_account: str | None = None
) -> AppConfig:
    """Read and validate one file (no resolution).

    Relative ``database.data_dir`` / ``socket.socket_dir`` are taken relative to
    the file's directory, so every process that loads the file agrees on them
    whatever its current directory. Warnings are appended to ``warnings`` if given.
    """
    path = Path(path).expanduser().absolute()
    name = path.name
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:  # before reading it: /dev/zero or a log file given by mistake
            raise ConfigError(
                f"{name}: refused: {size:,} bytes (a configuration is at most {MAX_FILE_BYTES:,})",
                source=name,
            )
        # utf-8-sig: tolerate the byte-order mark some Windows editors write.
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(f"{name}: file not found ({path})", source=name) from None
    except IsADirectoryError:
        raise ConfigError(f"{name}: not a file ({path})", source=name) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{name}: not UTF-8 text (byte {exc.start}) ({path})", source=name) from None
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read {path}: {exc.strerror or exc}", source=name) from None
    return parse_config(text, name, base_dir=path.parent, warnings=warnings, for_account=for_account)


def parse_config(
    text: str,
    source_name: str = "<string>",
    *,
    base_dir: Path | None = None,
    warnings: list[str] | None = None,
    environ: Mapping[str, str] | None = None,
    for_account: str | None = None,
) -> AppConfig:
    """Validate YAML text into an ``AppConfig``; raise ``ConfigError`` naming ``source_name``.

    ``base_dir`` anchors relative directories (default: the current directory);
    ``environ`` replaces ``os.environ`` for ``${NAME}`` lookups; warnings are
    appended to ``warnings`` if given. ``for_account``: loaded by that account's trader,
    whose environment holds no other account's secrets: a secret of another account whose
    variable is not set reads ``WITHHELD`` (any other missing variable is still an error).
    """
    ctx = _Context(source_name)
    if len(text) > MAX_FILE_BYTES:
        raise ctx.error(
            (), f"refused: {len(text):,} characters (a configuration is at most {MAX_FILE_BYTES:,})"
        )
    raw = _read_yaml(text, ctx)
    if raw is None:
        raise ctx.error((), "the file is empty (expected an 'accounts' list)")
    if not isinstance(raw, dict):
        raise ctx.error((), f"expected a mapping at the top level (accounts: ...), got {_describe(raw)}")
    data = _fold_legacy(raw, ctx)
    secrets = _Secrets(withheld=_other_accounts(data, for_account), publish_withheld=for_account is not None)
    data = _interpolate(data, (), os.environ if environ is None else environ, secrets, ctx)
    substituted = secrets.substituted
    try:
        # by key only: `class:` in the file, never `class_name:` (that is the Python name)
        config = AppConfig.model_validate(data, by_alias=True, by_name=False)
    except ValidationError as exc:
        raise _translate(_first_problem(exc.errors(include_url=False), data), ctx) from None
    _refuse_literal_secrets(config, substituted, ctx)
    config = _absolute_dirs(config, base_dir or Path.cwd())
    config._publish_variables = frozenset(secrets.publish_variables)
    config._secret_variables = {
        config.accounts[i].account_id: frozenset(names) for i, names in secrets.variables.items()
    }
    if config.socket.socket_dir is not None:
        problem = socket_dir_problem(Path(config.socket.socket_dir))
        if problem is not None:
            raise ctx.error(("socket", "socket_dir"), problem)
    if warnings is not None:
        warnings.extend(_collect_warnings(config, substituted, ctx))
    return config


# --------------------------------------------------------------------------- messages


# Field names (and keys such as `x-risk`) shown with dots; anything else in brackets.
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")

FieldPath = tuple[str | int, ...]


class _Context:
    """Source name and path display shared by every message of one parse."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.legacy = False

    def where(self, path: FieldPath) -> str:
        """``("accounts", 1, "gateway")`` -> ``accounts[1].gateway`` (as written in the file)."""
        if self.legacy and path[:2] == ("accounts", 0):
            path = path[2:]
        out = ""
        for seg in path:
            if isinstance(seg, int):
                out += f"[{seg}]"
            elif _IDENT.match(seg):
                out += f".{seg}" if out else seg
            else:
                out += f"[{seg!r}]"
        return out

    def error(self, path: FieldPath, detail: str, *, line: int | None = None) -> ConfigError:
        where = self.where(path)
        parts = [self.source]
        if line is not None:
            parts.append(f"line {line}")
        if where:
            parts.append(where)
        return ConfigError(": ".join([*parts, detail]), source=self.source, field=where or None, line=line)


def _describe(value: Any, *, secret: bool = False) -> str:
    """How a YAML value is shown after "got": the value itself unless it is a secret."""
    if value is None:
        return "null (an empty value)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if secret:
        return "a number" if isinstance(value, int | float) else f"a {type(value).__name__} value"
    if isinstance(value, str):
        return "'" + value.replace("'", "\\'") + "'"
    if isinstance(value, int | float):
        return repr(value)
    return f"{value} (a {type(value).__name__})"


# --- the schema at a location (pydantic reports where; the models say what belongs there)


@cache
def _fields_by_key(model: type[BaseModel]) -> dict[str, FieldInfo]:
    """A model's fields by YAML key (``class`` for ``class_name``), in declaration order."""
    return {info.alias or name: info for name, info in model.model_fields.items()}


def _is_model(t: Any) -> bool:
    return isinstance(t, type) and issubclass(t, BaseModel)


def _strip(t: Any) -> Any:
    """``Annotated[X, ...]`` -> ``X`` and ``X | None`` -> ``X`` (repeatedly); other unions stay."""
    while True:
        origin = get_origin(t)
        if origin is Annotated:
            t = get_args(t)[0]
        elif origin in (Union, UnionType):
            inner = [a for a in get_args(t) if a is not NoneType]
            if len(inner) != 1:
                return t
            t = inner[0]
        else:
            return t


def _annotation_at(loc: FieldPath) -> Any:
    """The schema's type at ``loc`` (None if the location leaves the schema)."""
    t: Any = AppConfig
    for seg in loc:
        t = _strip(t)
        origin = get_origin(t)
        if _is_model(t) and isinstance(seg, str):
            info = _fields_by_key(t).get(seg)
            if info is None:
                return None
            t = info.annotation
        elif origin is list and isinstance(seg, int):
            t = get_args(t)[0]
        elif origin is dict:
            t = get_args(t)[1]
        else:
            return None
    return t


def _members(t: Any) -> list[Any]:
    """The alternatives of a type: ``float | None`` -> ``[float, NoneType]`` (Annotated removed)."""
    origin = get_origin(t)
    if origin is Annotated:
        return _members(get_args(t)[0])
    if origin in (Union, UnionType):
        return [m for a in get_args(t) for m in _members(a)]
    return [t]


_INSTANT = "a date and time with its zone (2026-12-04T21:00:00+08:00)"

_WORDS: dict[Any, str] = {
    AwareDatetime: _INSTANT,
    int: "an integer",
    float: "a number",
    str: "a string",
    bool: "true or false",
    list: "a list",
    dict: "a mapping",
    NoneType: "null",
}


def _words(t: Any) -> str:
    """``float | None`` -> "a number or null"."""
    out: list[str] = []
    for member in _members(t):
        if _is_model(member):
            member = dict
        word = _WORDS.get(get_origin(member) or member, "a value")
        if word not in out:
            out.append(word)
    return " or ".join(out)


# pydantic error types that mean "not of the expected type", with what to say when the location is not
# in the schema (the schema's own type, which knows about "or null", is preferred).
_TYPE_ERRORS = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_parsing_size": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "string_type": "a string",
    "string_unicode": "a string",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "datetime_type": _INSTANT,
    "datetime_parsing": _INSTANT,
    "datetime_from_date_parsing": _INSTANT,
    "timezone_aware": _INSTANT,
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}
_BOUNDS = {"greater_than": "gt", "greater_than_equal": "ge", "less_than": "lt", "less_than_equal": "le"}
_OPERATORS = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}
_LENGTH_ERRORS = {"too_short": ">=", "string_too_short": ">=", "too_long": "<=", "string_too_long": "<="}


def _number(bound: Any) -> str:
    """Show bounds as written: 0, 1024, 4294967295, 0.5 (pydantic may report 0 as 0.0)."""
    if isinstance(bound, float) and bound.is_integer():
        return str(int(bound))
    return str(bound)


def _first_problem(errors: list[ErrorDetails], data: Any) -> ErrorDetails:
    """The one error to report (the file is fixed and loaded again): the first in the file.

    pydantic lists errors in the schema's field order, a mapping's missing fields
    before its unknown keys; read as written, ``acounts:`` comes before the
    ``accounts`` it fails to provide (and its message suggests the right name).
    """
    return min(errors, key=lambda error: _position(error, data))


def _position(error: ErrorDetails, data: Any) -> tuple[int, ...]:
    """Where an error is in the input: the index of each key or item along its location."""
    out: list[int] = []
    node = data
    for seg in error["loc"]:
        if isinstance(node, dict) and seg in node:
            out.append(list(node).index(seg))
            node = node[seg]
        elif isinstance(node, list) and isinstance(seg, int) and 0 <= seg < len(node):
            out.append(seg)
            node = node[seg]
        else:
            # not in the input (a missing field): after everything the mapping does hold
            out.append(len(node) if isinstance(node, dict | list) else 0)
            break
    return tuple(out)


def _translate(error: ErrorDetails, ctx: _Context) -> ConfigError:
    """Turn one pydantic error (location, type, context, input) into a ConfigError in our shape."""
    loc: FieldPath = tuple(error["loc"])
    kind = error["type"]
    context: dict[str, Any] = dict(error.get("ctx") or {})
    value = error.get("input")

    if kind == CHECK_ERROR:  # the schema's own checks: the offending field relative to where it ran
        return ctx.error((*loc, *context["loc"]), context["detail"])

    if loc[-1:] == ("[key]",) and get_origin(_strip(_annotation_at(loc[:-2]))) is dict:
        # (...,  <key>, "[key]"): the key of a mapping entry is not text
        return ctx.error(loc[:-2], f"keys must be text, got key {_describe(value)} (write it in quotes)")
    if kind == "invalid_key":  # a non-text key where the schema has named fields; loc ends with it
        return ctx.error(loc[:-1], f"keys must be text, got key {_describe(value)} (write it in quotes)")

    if kind == "extra_forbidden":
        return ctx.error(loc, _unknown_field_detail(loc, ctx))

    if kind == "missing":
        if loc == ("accounts",):
            return ctx.error(
                loc,
                "required: list the accounts here (or write a single account's account_id at the top level)",
            )
        return ctx.error(loc, "required field is missing")

    field_name = next((s for s in reversed(loc) if isinstance(s, str)), "")
    secret = field_name in SECRET_FIELD_NAMES
    got = _describe(value, secret=secret)
    annotation = _annotation_at(loc)

    if kind == "literal_error":
        noun = field_name.replace("_", " ") or "value"
        allowed = _strip(annotation)
        if get_origin(allowed) is not Literal:
            return ctx.error(loc, f"unknown {noun} {got}")
        values = ", ".join(map(str, get_args(allowed)))  # the schema's order: "sim, ctp, tqsdk"
        if value is None or isinstance(value, dict | list):
            return ctx.error(loc, f"expected one of {values}, got {got}")
        return ctx.error(loc, f"unknown {noun} {got} (expected {values})")

    if kind in _BOUNDS:
        words = _words(_strip(annotation)) if annotation is not None else "a number"
        bound = context[_BOUNDS[kind]]
        return ctx.error(loc, f"expected {words} {_OPERATORS[_BOUNDS[kind]]} {_number(bound)}, got {got}")

    if kind in _LENGTH_ERRORS:
        op, size = _LENGTH_ERRORS[kind], context.get("min_length" if "short" in kind else "max_length")
        if op == ">=" and size == 1:
            return ctx.error(loc, "must not be empty")
        words = _words(_strip(annotation)) if annotation is not None else "a value"
        return ctx.error(loc, f"expected {words} of length {op} {size}, got {got}")

    if kind in _TYPE_ERRORS:
        words = _words(annotation) if annotation is not None else _TYPE_ERRORS[kind]
        detail = f"expected {words}, got {got}"
        wants_text = annotation is not None and str in _members(annotation)
        if wants_text and isinstance(value, int | float) and not isinstance(value, bool):
            # YAML reads 9999 as a number; ids and codes must be quoted to stay text (and keep leading zeros).
            detail += " (write it in quotes)" if secret else f' (write it in quotes: "{value}")'
        return ctx.error(loc, detail)

    # Anything else (a pydantic check this schema does not use today): pydantic's own words, which
    # name the expectation, not the value.
    return ctx.error(loc, error["msg"][:1].lower() + error["msg"][1:])


def _unknown_field_detail(loc: FieldPath, ctx: _Context) -> str:
    parent = _strip(_annotation_at(loc[:-1]))
    expected = list(_fields_by_key(parent)) if _is_model(parent) else []
    if ctx.legacy and loc[:-1] == ("accounts", 0):
        # In the legacy form the account's keys share the top level with the other sections.
        expected += [s for s in _app_sections() if s not in expected]
    detail = "unknown field"
    if expected:
        detail += f" (expected one of: {', '.join(expected)})"
        close = difflib.get_close_matches(str(loc[-1]), expected, n=1, cutoff=0.6)
        if close:
            detail += f"; did you mean '{close[0]}'?"
    return detail


# --------------------------------------------------------------------------- YAML


#: Limits that keep a hostile or broken file from taking the process down (a real configuration
#: is a few kilobytes, a few hundred values, a dozen levels deep).
MAX_FILE_BYTES = 1024 * 1024
#: Values the document holds once every alias is expanded: bounds a "billion laughs" file,
#: where a few lines of anchors stand for billions of values.
MAX_VALUES = 100_000
#: Nesting of mappings and lists, aliases expanded (PyYAML composes nodes recursively).
MAX_DEPTH = 64


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (PyYAML silently keeps the last one) and documents
    too deep or too large once aliases are expanded (``_check_size``), before anything is built."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise _Refused(None, None, f"nested more than {MAX_DEPTH} levels deep", mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def get_single_node(self) -> yaml.Node | None:
        node = super().get_single_node()
        if node is not None:
            _check_size(node)
        return node

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *defaults` may be overridden by explicit keys: that is its purpose
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:
                continue  # unhashable key: SafeLoader reports it below
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key '{key}', first at line {first}", key_node.start_mark
                )
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


class _Refused(yaml.composer.ComposerError):
    """A well-formed document this loader will not build (too deep, too large, cyclic)."""


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_size(root: yaml.Node) -> None:
    """Refuse a document whose expanded tree exceeds ``MAX_VALUES`` values or ``MAX_DEPTH`` levels.

    An alias is the node it names, shared: the composed graph stays small however often a node is
    reused, but every later step (interpolation, validation) walks the expanded tree. Sizes and
    depths are computed once per node over the graph (iteratively, so no recursion limit applies),
    in time linear in the file.
    """
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    open_: set[int] = set()  # nodes whose children are being measured: meeting one again is a cycle
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if key in size:
            continue
        children = _children(node)
        if not done:
            if key in open_:
                raise _Refused(
                    None,
                    None,
                    "an alias (*name) refers to a mapping or list that contains it",
                    node.start_mark,
                )
            open_.add(key)
            stack.append((node, True))
            stack.extend((c, False) for c in children if id(c) not in size)
            continue
        open_.discard(key)
        size[key] = 1 + sum(size[id(c)] for c in children)
        depth[key] = 1 + max((depth[id(c)] for c in children), default=0)
        if size[key] > MAX_VALUES:
            raise _Refused(
                None,
                None,
                f"more than {MAX_VALUES:,} values once its aliases (*name) are expanded",
                node.start_mark,
            )
        if depth[key] > MAX_DEPTH:
            raise _Refused(
                None,
                None,
                f"nested more than {MAX_DEPTH} levels deep once its aliases are expanded",
                node.start_mark,
            )


def _read_yaml(text: str, ctx: _Context) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass: no arbitrary objects
    except _Refused as exc:
        mark = exc.problem_mark
        line = mark.line + 1 if mark is not None else None
        raise ctx.error((), f"refused: {exc.problem}", line=line) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "syntax error"
        if mark is None:
            raise ctx.error((), f"invalid YAML: {problem}") from None
        detail = f"invalid YAML: {problem} (column {mark.column + 1}"
        if exc.context and exc.problem and exc.context_mark is not None:
            detail += f"; {exc.context} at line {exc.context_mark.line + 1}"
        detail += ")"
        lines = text.splitlines()
        if 0 <= mark.line < len(lines):
            detail += f"\n    {lines[mark.line]}\n    {' ' * mark.column}^"
        raise ctx.error((), detail, line=mark.line + 1) from None
    except yaml.YAMLError as exc:  # e.g. a control character in the text (ReaderError)
        raise ctx.error((), f"invalid YAML: {exc}") from None


# --------------------------------------------------------------------------- legacy form, ${ENV}


@cache
def _app_sections() -> tuple[str, ...]:
    return tuple(key for key in _fields_by_key(AppConfig) if key != "accounts")


def _fold_legacy(raw: dict[Any, Any], ctx: _Context) -> dict[Any, Any]:
    """A top-level ``account_id`` (the old single-account form) becomes ``accounts: [that account]``."""
    if "account_id" not in raw:
        return raw
    if "accounts" in raw:
        raise ctx.error(
            ("accounts",),
            "use either an 'accounts' list or the single-account form (top-level account_id), not both",
        )
    ctx.legacy = True
    sections = _app_sections()
    account = {k: v for k, v in raw.items() if k not in sections}
    return {"accounts": [account], **{k: v for k, v in raw.items() if k in sections}}


_REFERENCE = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$\{")


@dataclass
class _Secrets:
    """What interpolation learns: where a variable was used, which variables each account's
    secrets (``accounts[i].<section>.<secret>``) came from, and which accounts' secrets may
    be withheld (their index in ``accounts``)."""

    withheld: frozenset[int]
    substituted: set[tuple[Any, ...]] = field(default_factory=set)
    variables: dict[int, set[str]] = field(default_factory=dict)
    #: loaded by a trader: ``publish:``'s secrets are withheld too (it never publishes)
    publish_withheld: bool = False
    publish_variables: set[str] = field(default_factory=set)

    @staticmethod
    def account_of(path: FieldPath) -> int | None:
        """The account index when ``path`` is an account's secret field."""
        if len(path) == 4 and path[0] == "accounts" and isinstance(path[1], int):
            return path[1] if path[3] in SECRET_FIELD_NAMES else None
        return None


def _other_accounts(data: dict[Any, Any], for_account: str | None) -> frozenset[int]:
    """Indexes of the accounts, as written, that are not ``for_account`` (none without one)."""
    accounts = data.get("accounts")
    if for_account is None or not isinstance(accounts, list):
        return frozenset()
    return frozenset(
        i for i, a in enumerate(accounts) if not (isinstance(a, dict) and a.get("account_id") == for_account)
    )


def _interpolate(node: Any, path: FieldPath, env: Mapping[str, str], secrets: _Secrets, ctx: _Context) -> Any:
    """Replace ``${NAME}`` in every string value (not in keys); record where a variable was used."""
    if isinstance(node, dict):
        return {
            k: _interpolate(v, (*path, k if isinstance(k, str) else str(k)), env, secrets, ctx)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_interpolate(v, (*path, i), env, secrets, ctx) for i, v in enumerate(node)]
    if not isinstance(node, str) or "${" not in node:
        return node

    def replace(m: re.Match[str]) -> str:
        token = m.group(0)
        if token == "$${":
            return "${"
        name = m.group(1)
        if name is None:
            secret = bool(path) and path[-1] in SECRET_FIELD_NAMES
            shown = "" if secret else f" in {_describe(node)}"
            raise ctx.error(
                path,
                f"malformed ${{...}}{shown} (expected ${{NAME}}, NAME made of letters, digits and _; "
                "write $${ for a literal ${)",
            )
        account = secrets.account_of(path)
        if account is not None:
            secrets.variables.setdefault(account, set()).add(name)
        publish = len(path) == 2 and path[0] == "publish" and path[1] in SECRET_FIELD_NAMES
        if publish:
            secrets.publish_variables.add(name)
        secrets.substituted.add(path)
        if name not in env:
            if account in secrets.withheld or (publish and secrets.publish_withheld):
                return WITHHELD
            raise ctx.error(path, f"environment variable '{name}' is not set")
        return env[name]

    return _REFERENCE.sub(replace, node)


# --------------------------------------------------------------------------- after validation


def _absolute_dirs(config: AppConfig, base_dir: Path) -> AppConfig:
    """Anchor relative directories now: vnpy changes the working directory of a trader later."""

    def anchor(value: str | None) -> str | None:
        if value is None:
            return None
        path = Path(value).expanduser()
        return str(path if path.is_absolute() else (base_dir / path).absolute())

    # model_copy does not validate again: an absolute path is as valid as the relative one
    database = config.database.model_copy(update={"data_dir": anchor(config.database.data_dir)})
    socket = config.socket.model_copy(update={"socket_dir": anchor(config.socket.socket_dir)})
    accounts = [  # a sim account's replay file, as the directories
        a.model_copy(update={"sim": a.sim.model_copy(update={"replay": anchor(a.sim.replay)})})
        if a.sim is not None and a.sim.replay is not None
        else a
        for a in config.accounts
    ]
    return config.model_copy(update={"database": database, "socket": socket, "accounts": accounts})


def _refuse_literal_secrets(config: AppConfig, substituted: set[tuple[Any, ...]], ctx: _Context) -> None:
    """A secret must come from the environment (ARCHITECTURE.md, "Invariants" 3): a file is
    copied, mailed and committed; a password in it has leaked already."""
    for i, account in enumerate(config.accounts):
        for section_name in ("ctp", "tqsdk"):
            section = getattr(account, section_name)
            if section is None:
                continue
            for name in sorted(type(section).secret_fields):
                path = ("accounts", i, section_name, name)
                if getattr(section, name) and path not in substituted:
                    variable = re.sub(r"[^A-Z0-9_]", "_", f"{account.account_id}_{name}".upper())
                    raise ctx.error(
                        path,
                        "secret written in the file: refused (put it in an environment variable, "
                        f'export {variable}=..., and write {name}: "${{{variable}}}")',
                    )
    publish = config.publish
    if publish is not None and publish.password and ("publish", "password") not in substituted:
        raise ctx.error(
            ("publish", "password"),
            "secret written in the file: refused (export QTRADER_REDIS_PASSWORD=..., and write "
            'password: "${QTRADER_REDIS_PASSWORD}")',
        )


def _collect_warnings(config: AppConfig, substituted: set[tuple[Any, ...]], ctx: _Context) -> list[str]:
    """Things that load but are probably not what the user wants."""
    out: list[str] = []

    def warn(path: FieldPath, detail: str) -> None:
        out.append(str(ctx.error(path, detail)))

    for i, account in enumerate(config.accounts):
        for section_name in ("ctp", "tqsdk"):
            section = getattr(account, section_name)
            if section is None:
                continue
            if account.gateway != section_name:
                warn(("accounts", i, section_name), f"ignored: the gateway is '{account.gateway}'")
        if account.market_data_from is not None and account.enabled:
            source = config.account(account.market_data_from)
            if not source.enabled:
                warn(
                    ("accounts", i, "market_data_from"),
                    f"account '{source.account_id}' is disabled, so '{account.account_id}' gets no quotes",
                )
    if not config.enabled_accounts:
        out.append(f"{ctx.source}: every account is disabled (enabled: false): nothing will run")
    return out
