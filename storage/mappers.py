"""Row mappers between ``core.models`` structs and account-database rows, generated from the tables.

``build_mapper(OrderRow.__table__, Order)`` reads the table's columns (``storage/tables.py``) and the
struct's fields and returns a ``RowMapper`` with two functions:

- ``params(obj, *supplied)``: the row of ``obj`` as a tuple in column order, ready to bind to
  an INSERT whose ``?`` parameters follow the same columns;
- ``from_row(row)``: the struct back from a row SELECTed in that column order.

Each column is the struct field of the same name, stored in the form the field's type calls for
(``storage/tables.py`` states the conventions): an enumeration by member NAME as text, a
datetime as INTEGER epoch microseconds (read back as a ``CHINA_TZ`` datetime), str / float / int
as they are. A nullable column takes an optional field and passes None through both ways. The
table's autoincrement rowid (``id``) is left to SQLite. A column that is not a field of the
struct (a snapshot's ``datetime``) is ``supplied`` by the caller of ``params`` in its stored
form; a supplied column that is also a field is still loaded into it.

Every mismatch is an error when the mapper is built, at import: a column without a field, a
field type with no storage form, a storage form the column's SQL type cannot hold, a nullable
column for a field that cannot be None, an optional field for a NOT NULL column.

Why generated source: orders and trades are written on the order path (a 1 ms p99 budget),
so a mapper must cost what a hand-written function costs. Each mapper is therefore compiled
once from Python source that reads like the hand-written code (one attribute read or tuple
item per column, conversions inline), not a loop over converters run for every row. The
source is kept on the mapper (``RowMapper.source``) and registered with ``linecache`` so a
traceback through it shows the line.
"""

from __future__ import annotations

import enum
import keyword
import linecache
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, NamedTuple, TypeVar

import msgspec

from core.models import CHINA_TZ

if typing.TYPE_CHECKING:
    from sqlalchemy import Column, Table
    from sqlalchemy.types import TypeEngine

M = TypeVar("M", bound=msgspec.Struct)

_UTC_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_CHINA_EPOCH = _UTC_EPOCH.astimezone(CHINA_TZ)
_ONE_US = timedelta(microseconds=1)


def to_epoch_us(value: datetime) -> int:
    """Exact integer microseconds since the epoch (naive values are taken as China time)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=CHINA_TZ)
    # timedelta floor-division is exact integer arithmetic; ``timestamp() * 1e6`` is a float
    # and can be off by a microsecond for present-day times.
    return (value - _UTC_EPOCH) // _ONE_US


def from_epoch_us(value: int) -> datetime:
    """Inverse of ``to_epoch_us``: a ``CHINA_TZ`` datetime (the CHINA_TZ object itself)."""
    return _CHINA_EPOCH + timedelta(microseconds=value)


class _Form(NamedTuple):
    """How values of one field type are stored: the SQL type the column must have, and the
    expressions (``{}`` stands for the value) that convert to and from the stored value.
    ``None`` for an expression: stored as it is."""

    sql_type: type[TypeEngine[Any]]
    encode: str | None
    decode: str | None


def _plain_forms() -> dict[type, _Form]:
    from sqlalchemy import Float, Integer, String  # only to build a mapper: see mapper_from_source

    return {
        str: _Form(String, None, None),
        float: _Form(Float, None, None),
        int: _Form(Integer, None, None),
        datetime: _Form(Integer, "_to_us({})", "_from_us({})"),
    }


def _enum_form(members: str) -> _Form:
    from sqlalchemy import String

    # ``_name_`` is the attribute behind ``Enum.name`` (the same str object), read without the
    # property call that ``.name`` costs; ``members`` names a plain {name: member} dict, which
    # fails like ``Enum[name]`` (KeyError) for a name that is not a member.
    return _Form(String, "{}._name_", members + "[{}]")


def _unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    """``X | None`` (or ``Optional[X]``) -> ``(X, True)``; any other type -> ``(type, False)``."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1 and len(args) == 2:
            return rest[0], True
    return annotation, False


def _sql_type(column: Column[Any]) -> TypeEngine[Any]:
    """The column's SQL type, seen through a decorator such as sqlmodel's ``AutoString``."""
    from sqlalchemy.types import TypeDecorator

    sql_type = column.type
    return sql_type.impl_instance if isinstance(sql_type, TypeDecorator) else sql_type


def _form_of(
    where: str, annotation: Any, column: Column[Any], namespace: dict[str, Any], members: str
) -> tuple[_Form, bool]:
    """The storage form of a field typed ``annotation`` kept in ``column``, and whether the field
    may be None. An enumeration's {name: member} dict is put in ``namespace`` as ``members``."""
    base, optional = _unwrap_optional(annotation)
    plain = _plain_forms()
    if isinstance(base, type) and issubclass(base, enum.Enum):
        namespace[members] = dict(base.__members__)
        form = _enum_form(members)
    elif base in plain:
        form = plain[base]
    else:
        raise TypeError(f"{where}: no storage form for a field of type {annotation!r}")
    if not isinstance(_sql_type(column), form.sql_type):
        raise TypeError(
            f"{where}: {annotation!r} is stored as {form.sql_type.__name__}, the column is {column.type}"
        )
    if column.nullable and not optional:
        raise TypeError(f"{where}: nullable column, but a field of type {annotation!r} cannot be None")
    return form, optional


@dataclass(frozen=True, slots=True)
class RowMapper(Generic[M]):
    """A generated mapping between one table's rows and one ``core.models`` struct.

    ``columns``: the mapped columns in table order (every column but the autoincrement rowid),
    the order of ``params`` tuples and of the rows ``from_row`` takes. ``supplied``: the
    columns whose values ``params`` takes as extra arguments, in that order."""

    table_name: str
    model: type[M]
    columns: tuple[str, ...]
    supplied: tuple[str, ...]
    params: Callable[..., tuple[Any, ...]]
    from_row: Callable[[Sequence[Any]], M]
    source: str

    @property
    def table(self) -> Table:
        """The table (``storage.tables``: imports sqlmodel)."""
        from storage.tables import ACCOUNT_METADATA

        return ACCOUNT_METADATA.tables[self.table_name]

    @property
    def fields(self) -> tuple[str, ...]:
        """The struct fields stored in (and loaded from) a column of the same name."""
        names = set(self.model.__struct_fields__)
        return tuple(name for name in self.columns if name in names)


def build_mapper(table: Table, model: type[M], *, supplied: Sequence[str] = ()) -> RowMapper[M]:
    """The mapper between ``table`` (of a ``storage.tables`` class) and ``model``.

    ``supplied`` names columns whose values ``params`` takes after the struct, in that order and
    in stored form (for a datetime column, epoch microseconds). Raises TypeError if a column
    cannot be mapped (see the module docstring)."""
    name = table.name
    rowid = table.autoincrement_column
    columns = [c for c in table.columns if c is not rowid]
    column_names = [c.name for c in columns]
    unknown = [s for s in supplied if s not in column_names]
    if unknown or len(set(supplied)) != len(supplied):
        raise TypeError(f"{name}: supplied columns {list(supplied)} are not distinct columns of the table")
    fields = {f.name: f.type for f in msgspec.structs.fields(model)}
    namespace: dict[str, Any] = {"_model": model, "_to_us": to_epoch_us, "_from_us": from_epoch_us}
    encoded: list[str] = []
    decoded: list[str] = []
    for i, column in enumerate(columns):
        col = column.name
        where = f"{name}.{col} <-> {model.__name__}.{col}"
        if not col.isidentifier() or keyword.iskeyword(col):
            raise TypeError(f"{where}: a column name must be a Python identifier to map to a field")
        if col in supplied:
            encoded.append(f"s{supplied.index(col)}")
        if col not in fields:
            if col not in supplied:
                raise TypeError(f"{where}: no field {model.__name__}.{col} and not supplied by the caller")
            continue  # stored from the caller's value, not loaded into the struct
        form, optional = _form_of(where, fields[col], column, namespace, f"_members_{i}")
        if col not in supplied:
            if optional and not column.nullable:
                raise TypeError(f"{where}: NOT NULL column, but the field may be None")
            value = f"o.{col}"
            if form.encode is None:
                encoded.append(value)
            elif optional:
                # the walrus reads the attribute once, as a local, for both the test and the use
                encoded.append(f"None if (x{i} := {value}) is None else {form.encode.format(f'x{i}')}")
            else:
                encoded.append(form.encode.format(value))
        item = f"v{i}"
        if form.decode is None:
            decoded.append(f"{col}={item}")
        elif column.nullable:
            decoded.append(f"{col}=None if {item} is None else {form.decode.format(item)}")
        else:
            decoded.append(f"{col}={form.decode.format(item)}")
    arguments = "".join(f", s{k}" for k in range(len(supplied)))
    items = ", ".join(f"v{i}" for i in range(len(columns)))
    source = (
        f"def params(o{arguments}):\n"
        f"    return ({', '.join(encoded)},)\n"
        f"\n"
        f"def from_row(row):\n"
        # unpacking the row into locals once is cheaper than indexing it per column, and a row
        # of the wrong length fails here instead of loading shifted values
        f"    ({items},) = row\n"
        f"    return _model({', '.join(decoded)})\n"
    )
    return mapper_from_source(name, model, columns=column_names, supplied=supplied, source=source)


def mapper_from_source(
    table_name: str, model: type[M], *, columns: Sequence[str], supplied: Sequence[str], source: str
) -> RowMapper[M]:
    """The mapper of ``build_mapper``'s ``source`` for ``model``, without the table (so without
    SQLAlchemy): what ``storage.database`` builds from its compiled cache. The enumerations'
    {name: member} dicts are taken from ``model``'s fields, as ``build_mapper`` takes them."""
    fields = {f.name: f.type for f in msgspec.structs.fields(model)}
    namespace: dict[str, Any] = {"_model": model, "_to_us": to_epoch_us, "_from_us": from_epoch_us}
    for i, col in enumerate(columns):
        if col in fields:
            base, _ = _unwrap_optional(fields[col])
            if isinstance(base, type) and issubclass(base, enum.Enum):
                namespace[f"_members_{i}"] = dict(base.__members__)
    filename = f"<storage mapper {table_name}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    exec(compile(source, filename, "exec"), namespace)
    return RowMapper(
        table_name=table_name,
        model=model,
        columns=tuple(columns),
        supplied=tuple(supplied),
        params=namespace["params"],
        from_row=namespace["from_row"],
        source=source,
    )
