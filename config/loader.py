"""Find, read, interpolate and validate the YAML configuration.

Pipeline (``parse_config``): YAML text -> plain data (duplicate keys rejected)
-> legacy single-account form folded into ``accounts: [...]`` -> ``${ENV}``
interpolation -> ``msgspec.convert`` into ``AppConfig`` (types, constraints and
the schema's cross-field checks) -> relative directories made absolute ->
warnings.

Interpolation: ``${NAME}`` anywhere inside a string value is replaced by the
environment variable NAME (a missing variable is an error naming it and the
field); ``$${`` is a literal ``${``; the substituted text is not scanned again.
Values stay strings, and the conversion runs with ``strict=False`` so msgspec
turns ``"20"`` into ``20`` where the schema wants a number (``"true"`` /
``"false"`` into booleans): ``max_order_volume: ${MAX_VOL}`` works, and a YAML
number where the schema wants text (``brokerid: 9999``) is still an error with a
hint to quote it, never a silent conversion (``userid: 012345`` would lose its 0).

Errors are ``ConfigError`` whose ``str()`` is one complete message in the shape
``<file name>: <field path>: <what was expected>``; msgspec's ValidationError
paths (``$.accounts[1].gateway``) are translated, not re-implemented.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import msgspec
import msgspec.inspect as mi
import yaml

from config.schema import ACCOUNT_ID_PATTERN, SECRET_FIELD_NAMES, AppConfig

__all__ = [
    "CONFIG_ENV_VAR",
    "DEMO_NOTICE",
    "LOCAL_CONFIG_PATH",
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


class ConfigError(Exception):
    """A configuration problem the user can fix; ``str(err)`` is the complete message.

    ``source`` (file name), ``field`` (dotted field path) and ``line`` are set
    when known, for callers that want to point at the spot themselves.
    """

    def __init__(
        self, message: str, *, source: str | None = None, field: str | None = None, line: int | None = None
    ) -> None:
        super().__init__(message)
        self.source = source
        self.field = field
        self.line = line


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


def load_config(cli_path: str | None = None) -> LoadedConfig:
    """Resolve (see ``resolve_config_path``), read and validate the configuration."""
    path, is_demo = resolve_config_path(cli_path)
    warnings: list[str] = []
    config = load_config_file(path, warnings=warnings)
    return LoadedConfig(config=config, source=path, is_demo=is_demo, warnings=warnings)


def load_config_file(path: Path, *, warnings: list[str] | None = None) -> AppConfig:
    """Read and validate one file (no resolution).

    Relative ``database.data_dir`` / ``socket.socket_dir`` are taken relative to
    the file's directory, so every process that loads the file agrees on them
    whatever its current directory. Warnings are appended to ``warnings`` if given.
    """
    path = Path(path).expanduser().absolute()
    name = path.name
    try:
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
    return parse_config(text, name, base_dir=path.parent, warnings=warnings)


def parse_config(
    text: str,
    source_name: str = "<string>",
    *,
    base_dir: Path | None = None,
    warnings: list[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> AppConfig:
    """Validate YAML text into an ``AppConfig``; raise ``ConfigError`` naming ``source_name``.

    ``base_dir`` anchors relative directories (default: the current directory);
    ``environ`` replaces ``os.environ`` for ``${NAME}`` lookups; warnings are
    appended to ``warnings`` if given.
    """
    ctx = _Context(source_name)
    raw = _read_yaml(text, ctx)
    if raw is None:
        raise ctx.error((), "the file is empty (expected an 'accounts' list)")
    if not isinstance(raw, dict):
        raise ctx.error((), f"expected a mapping at the top level (accounts: ...), got {_describe(raw)}")
    data = _fold_legacy(raw, ctx)
    substituted: set[tuple[Any, ...]] = set()
    data = _interpolate(data, (), os.environ if environ is None else environ, substituted, ctx)
    try:
        config = msgspec.convert(data, AppConfig, strict=False)
    except msgspec.ValidationError as exc:
        raise _translate(str(exc), data, ctx) from None
    config = _absolute_dirs(config, base_dir or Path.cwd())
    if warnings is not None:
        warnings.extend(_collect_warnings(config, substituted, ctx))
    return config


# --------------------------------------------------------------------------- messages


# Field names (and keys such as `x-risk`) shown with dots; anything else in brackets.
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


class _AnyKey:
    """Path segment for msgspec's ``[...]`` (a value in a mapping, key not reported)."""

    def __repr__(self) -> str:
        return "[...]"


_ANY = _AnyKey()
Segment = str | int | _AnyKey
FieldPath = tuple[Segment, ...]


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
            if isinstance(seg, _AnyKey):
                out += "[...]"
            elif isinstance(seg, int):
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


_TYPE_WORDS = {
    "int": "an integer",
    "float": "a number",
    "str": "a string",
    "bool": "true or false",
    "array": "a list",
    "object": "a mapping",
    "null": "null",
}
_PY_TYPES: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "float": (int, float),
    "str": (str,),
    "bool": (bool,),
    "array": (list,),
    "object": (dict,),
    "null": (type(None),),
}


def _type_words(msgspec_type: str) -> str:
    return " or ".join(_TYPE_WORDS.get(t.strip(), t.strip()) for t in msgspec_type.split("|"))


def _matches(value: Any, msgspec_type: str) -> bool:
    names = [t.strip() for t in msgspec_type.split("|")]
    if isinstance(value, bool):
        return "bool" in names
    return any(isinstance(value, _PY_TYPES.get(n, ())) for n in names)


@cache
def _app_type() -> mi.Type:
    return mi.type_info(AppConfig)


def _unwrap(t: mi.Type | None) -> mi.Type | None:
    while True:
        if isinstance(t, mi.Metadata):
            t = t.type
        elif isinstance(t, mi.UnionType):
            inner = [x for x in t.types if not isinstance(x, mi.NoneType)]
            if len(inner) != 1:
                return t
            t = inner[0]
        else:
            return t


def _type_at(path: FieldPath) -> mi.Type | None:
    """The schema type found at ``path`` (None if the path leaves the schema)."""
    t: mi.Type | None = _app_type()
    for seg in path:
        t = _unwrap(t)
        if isinstance(t, mi.StructType) and isinstance(seg, str):
            t = next((f.type for f in t.fields if f.encode_name == seg), None)
        elif isinstance(t, mi.ListType) and isinstance(seg, int):
            t = t.item_type
        elif isinstance(t, mi.DictType):
            t = t.value_type
        else:
            return None
    return _unwrap(t)


def _literal_values(path: FieldPath) -> tuple[Any, ...]:
    """The allowed values of the Literal field at ``path``, in the order the schema lists them.

    (``msgspec.inspect`` sorts them; "sim, ctp, tqsdk" reads better than "ctp, sim, tqsdk".)
    """
    if not path or not isinstance(path[-1], str):
        return ()
    parent = _type_at(path[:-1])
    if not isinstance(parent, mi.StructType):
        return ()
    info = next((f for f in msgspec.structs.fields(parent.cls) if f.encode_name == path[-1]), None)
    if info is None:
        return ()
    candidates = [info.type]
    while candidates:
        t = candidates.pop()
        origin = get_origin(t)
        if origin is Literal:
            return get_args(t)
        if origin is Annotated:
            candidates.append(get_args(t)[0])
        elif origin in (Union, UnionType):
            candidates.extend(get_args(t))
    return ()


def _value_at(data: Any, path: FieldPath) -> tuple[bool, Any]:
    """The raw (interpolated) value at ``path``: ``(found, value)``."""
    for seg in path:
        in_list = isinstance(seg, int) and isinstance(data, list) and 0 <= seg < len(data)
        in_dict = isinstance(seg, str) and isinstance(data, dict) and seg in data
        if not (in_list or in_dict):
            return False, None
        data = data[seg]
    return True, data


_LOCATION = re.compile(r"^(?P<msg>.*?)(?: - at (?:`(?P<key>key)` in )?`(?P<path>\$[^`]*)`)?$", re.DOTALL)
_PATH_SEGMENT = re.compile(r"\.([^.\[]+)|\[(\d+|\.\.\.)\]")
_EXPECTED = re.compile(r"^Expected `(?P<type>[^`]+)`(?P<cons>.*?)(?:, got `(?P<got>[^`]+)`)?$", re.DOTALL)
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<name>[^`]+)`$")
_MISSING = re.compile(r"^Object missing required field `(?P<name>[^`]+)`$")
_ENUM = re.compile(r"^Invalid enum value ")
# Cross-field checks in the schema raise "<relative path>: <detail>".
_RELATIVE = re.compile(
    r"^(?P<rel>[A-Za-z_]\w*(?:\[\d+\])*(?:\.[A-Za-z_]\w*(?:\[\d+\])*)*): (?P<detail>.*)$", re.DOTALL
)


def _parse_path(text: str) -> FieldPath:
    """``$.accounts[1].gateway`` or ``accounts[1].gateway`` -> ``("accounts", 1, "gateway")``."""
    text = text.removeprefix("$")
    if text and text[0] not in ".[":
        text = "." + text
    segments: list[Segment] = []
    for name, index in _PATH_SEGMENT.findall(text):
        if name:
            segments.append(name)
        elif index == "...":
            segments.append(_ANY)
        else:
            segments.append(int(index))
    return tuple(segments)


def _translate(text: str, data: Any, ctx: _Context) -> ConfigError:
    """Turn one msgspec ValidationError message into a ConfigError in our shape."""
    loc = _LOCATION.match(text)
    assert loc is not None  # the pattern matches any string
    msg = loc["msg"]
    path = _parse_path(loc["path"] or "$")
    if _ANY in path:
        path = _resolve_any(path, data, msg)
    field_name = next((s for s in reversed(path) if isinstance(s, str)), "")
    found, value = _value_at(data, path)
    secret = field_name in SECRET_FIELD_NAMES
    got = _describe(value, secret=secret) if found else None

    if loc["key"]:
        mapping = value if isinstance(value, dict) else {}
        bad = next((k for k in mapping if not isinstance(k, str)), None)
        return ctx.error(path, f"keys must be text, got key {_describe(bad)} (write it in quotes)")

    if m := _UNKNOWN.match(msg):
        return ctx.error((*path, m["name"]), _unknown_field_detail(path, m["name"], ctx))

    if m := _MISSING.match(msg):
        if path == () and m["name"] == "accounts":
            return ctx.error(
                ("accounts",),
                "required: list the accounts here (or write a single account's account_id at the top level)",
            )
        return ctx.error((*path, m["name"]), "required field is missing")

    if _ENUM.match(msg):
        noun = field_name.replace("_", " ") or "value"
        values = _literal_values(path)
        if values:
            return ctx.error(path, f"unknown {noun} {got} (expected {', '.join(map(str, values))})")
        return ctx.error(path, f"unknown {noun} {got}")

    if m := _EXPECTED.match(msg):
        return ctx.error(path, _expected_detail(m["type"], m["cons"].strip(), value, found, got, secret))

    if m := _RELATIVE.match(msg):
        return ctx.error((*path, *_parse_path(m["rel"])), m["detail"])
    return ctx.error(path, msg)


def _resolve_any(path: FieldPath, data: Any, msg: str) -> FieldPath:
    """msgspec reports a bad mapping value as ``[...]``: name the first entry that does not fit."""
    i = path.index(_ANY)
    found, mapping = _value_at(data, path[:i])
    m = _EXPECTED.match(msg)
    if found and isinstance(mapping, dict) and m:
        for key, value in mapping.items():
            if isinstance(key, str) and not _matches(value, m["type"]):
                return (*path[:i], key, *path[i + 1 :])
    return path


def _unknown_field_detail(path: FieldPath, name: str, ctx: _Context) -> str:
    t = _type_at(path)
    expected = [f.encode_name for f in t.fields] if isinstance(t, mi.StructType) else []
    if ctx.legacy and path == ("accounts", 0):
        # In the legacy form the account's keys share the top level with the other sections.
        expected += [s for s in _app_sections() if s not in expected]
    detail = "unknown field"
    if expected:
        detail += f" (expected one of: {', '.join(expected)})"
        close = difflib.get_close_matches(name, expected, n=1, cutoff=0.6)
        if close:
            detail += f"; did you mean '{close[0]}'?"
    return detail


def _number(text: str) -> str:
    """msgspec writes bounds as floats ("0.0"): show 0, 1024, 4294967295, 0.5."""
    try:
        number = float(text)
    except ValueError:
        return text
    return str(int(number)) if number.is_integer() else repr(number)


def _expected_detail(
    msgspec_type: str, cons: str, value: Any, found: bool, got: str | None, secret: bool
) -> str:
    words = _type_words(msgspec_type)
    got_part = f", got {got}" if found else ""
    if cons.startswith("matching regex"):
        if ACCOUNT_ID_PATTERN in cons:
            return f"invalid account id {got} (expected 1-32 characters: letters, digits, '_' or '-')"
        return f"expected {words} {cons}{got_part}"
    if cons.startswith("of length"):
        if cons in ("of length >= 1", "of length > 0"):
            return "must not be empty"
        return f"expected {words} {cons}{got_part}"
    if cons:
        # Numeric bounds: "> 0.0", ">= 1", "<= 4294967295".
        op, _, bound = cons.partition(" ")
        return f"expected {words} {op} {_number(bound)}{got_part}"
    detail = f"expected {words}{got_part}"
    wants_text = "str" in [t.strip() for t in msgspec_type.split("|")]
    if wants_text and found and isinstance(value, int | float) and not isinstance(value, bool):
        # YAML reads 9999 as a number; ids and codes must be quoted to stay text (and keep leading zeros).
        detail += " (write it in quotes)" if secret else f' (write it in quotes: "{value}")'
    return detail


# --------------------------------------------------------------------------- YAML


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (PyYAML silently keeps the last one)."""

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


def _read_yaml(text: str, ctx: _Context) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass: no arbitrary objects
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
    return tuple(name for name in AppConfig.__struct_encode_fields__ if name != "accounts")


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


def _interpolate(
    node: Any, path: FieldPath, env: Mapping[str, str], substituted: set[tuple[Any, ...]], ctx: _Context
) -> Any:
    """Replace ``${NAME}`` in every string value (not in keys); record where a variable was used."""
    if isinstance(node, dict):
        return {
            k: _interpolate(v, (*path, k if isinstance(k, str) else str(k)), env, substituted, ctx)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_interpolate(v, (*path, i), env, substituted, ctx) for i, v in enumerate(node)]
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
        if name not in env:
            raise ctx.error(path, f"environment variable '{name}' is not set")
        substituted.add(path)
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

    database = msgspec.structs.replace(config.database, data_dir=anchor(config.database.data_dir))
    socket = msgspec.structs.replace(config.socket, socket_dir=anchor(config.socket.socket_dir))
    return msgspec.structs.replace(config, database=database, socket=socket)


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
            for name in sorted(type(section).secret_fields):
                path = ("accounts", i, section_name, name)
                if getattr(section, name) and path not in substituted:
                    warn(
                        path,
                        "secret written in the file: put it in an environment variable and write "
                        f'{name}: "${{VARIABLE}}"',
                    )
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
