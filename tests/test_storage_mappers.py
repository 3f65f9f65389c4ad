"""Generated row mappers (storage/mappers.py): every column mapped, every field stored, the stored
form of each table written out by hand (a dropped, swapped or re-encoded column changes it),
round trips with every field set, and the checks that refuse a mapping that cannot be right."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Column, Float, Integer, MetaData, String, Table

from core.models import (
    CHINA_TZ,
    Account,
    Bar,
    CondExpiry,
    ConditionalOrder,
    CondKind,
    CondPrice,
    CondState,
    Direction,
    Offset,
    Order,
    OrderType,
    Position,
    Status,
    StrategyTrigger,
    Trade,
    TriggerOp,
    TriggerSource,
)
from storage import AccountDatabase, database_path
from storage.database import MAPPERS
from storage.mappers import build_mapper, to_epoch_us
from storage.tables import ACCOUNT_METADATA
from tests.test_storage import assert_same

PROPERTY = settings(max_examples=80, deadline=None, derandomize=True, database=None)

T0 = datetime(2026, 3, 2, 9, 0, 0, 123456, tzinfo=CHINA_TZ)
T0_US = 1_772_413_200_123_456  # 2026-03-02 01:00:00.123456 UTC, written out, not computed
AT = T0 + timedelta(minutes=30)  # a snapshot time
AT_US = T0_US + 30 * 60 * 1_000_000

# One struct of each stored model with EVERY field set, to a value that differs from its default
# and from every other field of the same type: a mapper that drops a field loads the default,
# one that swaps two fields loads the other's value; both fail a comparison.
ORDER = Order(
    account_id="ACC9",
    order_id="O-77",
    vt_symbol="au2612.SHFE",
    direction=Direction.SHORT,
    offset=Offset.CLOSEYESTERDAY,
    type=OrderType.FOK,
    price=512.34,
    volume=7.0,
    traded=3.0,
    traded_price=512.25,
    status=Status.CANCELLED,
    datetime=T0,
    update_time=T0 + timedelta(seconds=2, microseconds=5),
    reference="ma_cross",
    status_msg="cancelled by user",
)
TRADE = Trade(
    account_id="ACC9",
    trade_id="T-5",
    order_id="O-77",
    vt_symbol="rb2610.SHFE",
    direction=Direction.LONG,
    offset=Offset.CLOSETODAY,
    price=3555.0,
    volume=2.0,
    datetime=T0,
    commission=1.23,
    reference="ma_cross",
)
POSITION = Position(
    account_id="ACC9",
    vt_symbol="rb2610.SHFE",
    direction=Direction.SHORT,
    volume=5.0,
    yd_volume=3.0,
    frozen=2.0,
    yd_frozen=1.0,
    price=3555.5,
    pnl=-250.0,
    last_price=3560.5,
    margin=17_777.75,
)
ACCOUNT = Account(
    account_id="ACC9",
    balance=1_000_000.5,
    available=800_000.25,
    margin=150_000.75,
    frozen=49_999.5,
    commission=12.5,
    close_pnl=300.25,
    position_pnl=-100.5,
    pre_balance=999_812.5,
    trading_day="20260302",
    datetime=T0 - timedelta(days=1),  # replaced by the snapshot time when saved
)
TRIGGER = StrategyTrigger(
    account_id="ACC9",
    datetime=T0,
    instance="ma_1",
    vt_symbol="IF2606.CFFEX",
    condition="fast MA crossed above slow MA",
    price=3801.4,
    action="buy",
    result="failed",
    order_id="O-77",
    error="risk: max position 5 reached",
)
BAR = Bar(
    account_id="ACC9",
    vt_symbol="au2612.SHFE",
    interval="5m",
    datetime=T0,
    open_price=500.0,
    high_price=501.25,
    low_price=499.75,
    close_price=500.5,
    volume=123.0,
    turnover=61_500_000.5,
    open_interest=45_678.0,
)
CONDITIONAL = ConditionalOrder(
    account_id="ACC9",
    cond_id="COND.20260302.1-1",
    vt_symbol="rb2610.SHFE",
    kind=CondKind.STOP_LOSS,
    source=TriggerSource.BID,
    op=TriggerOp.LE,
    trigger_price=3540.0,
    direction=Direction.SHORT,
    offset=Offset.CLOSE,
    volume=4.0,
    price_type=CondPrice.LIMIT,
    price=3538.0,
    offset_ticks=2,
    trailing=11.0,
    expiry=CondExpiry.DAY,
    trading_day="2026-03-02",
    reference="manual_stop",
    state=CondState.TRIGGERED,
    message="sent SELL CLOSE 4",
    order_id="O-78",
    created_at=T0,
    updated_at=T0 + timedelta(seconds=3),
    triggered_at=T0 + timedelta(seconds=2),
)
SAMPLES = [ORDER, TRADE, POSITION, ACCOUNT, TRIGGER, BAR, CONDITIONAL]

# The stored rows of the samples, as ``SELECT *`` returns them (rowid ``id`` first where the table
# has one), written out by hand: the on-disk format existing files have. sqlite3 returns each
# value in its storage class (str TEXT, float REAL, int INTEGER), so types are compared too.
STORED: dict[str, tuple[Any, ...]] = {
    "orders": (
        "O-77",
        "ACC9",
        "au2612.SHFE",
        "SHORT",
        "CLOSEYESTERDAY",
        "FOK",
        512.34,
        7.0,
        3.0,
        512.25,
        "CANCELLED",
        T0_US,
        T0_US + 2_000_005,
        "ma_cross",
        "cancelled by user",
    ),
    "trades": (
        1,
        "T-5",
        "ACC9",
        "O-77",
        "rb2610.SHFE",
        "LONG",
        "CLOSETODAY",
        3555.0,
        2.0,
        T0_US,
        1.23,
        "ma_cross",
    ),
    "positions": (
        1,
        "ACC9",
        "rb2610.SHFE",
        "SHORT",
        5.0,
        3.0,
        2.0,
        1.0,
        3555.5,
        -250.0,
        3560.5,
        17_777.75,
        AT_US,
    ),
    "account_snapshots": (
        1,
        "ACC9",
        AT_US,
        1_000_000.5,
        800_000.25,
        150_000.75,
        49_999.5,
        12.5,
        300.25,
        -100.5,
        999_812.5,
        "20260302",
    ),
    "strategy_triggers": (
        1,
        "ACC9",
        T0_US,
        "ma_1",
        "IF2606.CFFEX",
        "fast MA crossed above slow MA",
        3801.4,
        "buy",
        "failed",
        "O-77",
        "risk: max position 5 reached",
    ),
    "bars": (
        1,
        "ACC9",
        "au2612.SHFE",
        "5m",
        T0_US,
        500.0,
        501.25,
        499.75,
        500.5,
        123.0,
        61_500_000.5,
        45_678.0,
    ),
    "conditional_orders": (
        "COND.20260302.1-1",
        "ACC9",
        "rb2610.SHFE",
        "STOP_LOSS",
        "BID",
        "LE",
        3540.0,
        "SHORT",
        "CLOSE",
        4.0,
        "LIMIT",
        3538.0,
        2,
        11.0,
        "DAY",
        "2026-03-02",
        "manual_stop",
        "TRIGGERED",
        "sent SELL CLOSE 4",
        "O-78",
        T0_US,
        T0_US + 3_000_000,
        T0_US + 2_000_000,
    ),
}


@pytest.fixture
def db(tmp_path: Path) -> Iterator[AccountDatabase]:
    with AccountDatabase(database_path(tmp_path, "ACC9")) as database:
        yield database


def save_samples(db: AccountDatabase) -> None:
    db.save_order(ORDER)
    assert db.save_trade(TRADE) is True
    db.save_positions([POSITION], AT)
    db.save_account(ACCOUNT, AT)
    db.save_trigger(TRIGGER)
    db.save_bar(BAR)
    db.save_conditional(CONDITIONAL)


def raw_rows(path: Path, table: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(f"SELECT * FROM {table}").fetchall()
    finally:
        conn.close()


def assert_same_row(actual: tuple[Any, ...], expected: tuple[Any, ...]) -> None:
    assert len(actual) == len(expected), f"{len(actual)} columns, expected {len(expected)}"
    for i, (got, want) in enumerate(zip(actual, expected, strict=True)):
        assert got == want and type(got) is type(want), f"column {i}: {got!r} != {want!r}"


# --- coverage: every column mapped, every field stored ----------------------------------------


def test_every_table_has_a_mapper_that_maps_every_column() -> None:
    assert sorted(m.table.name for m in MAPPERS) == sorted(ACCOUNT_METADATA.tables)
    for mapper in MAPPERS:
        table = ACCOUNT_METADATA.tables[mapper.table.name]
        # every column but the rowid alias ``id``, in table order
        assert mapper.columns == tuple(c.name for c in table.columns if c.name != "id"), table.name


def test_every_field_of_a_stored_model_has_a_column() -> None:
    """A field added to a model without a column (and a migration) would be silently lost."""
    for mapper in MAPPERS:
        assert set(mapper.fields) == set(mapper.model.__struct_fields__), mapper.model.__name__
    assert {m.table.name: m.supplied for m in MAPPERS if m.supplied} == {
        "positions": ("datetime",),
        "account_snapshots": ("datetime",),
    }


def test_samples_set_every_field_to_a_distinct_non_default_value() -> None:
    """The round-trip tests below can only catch a dropped or swapped field if this holds."""
    assert sorted(type(s).__name__ for s in SAMPLES) == sorted(m.model.__name__ for m in MAPPERS)
    for sample in SAMPLES:
        seen: dict[tuple[type, Any], str] = {}
        for field in msgspec.structs.fields(type(sample)):
            value = getattr(sample, field.name)
            if field.default is not msgspec.NODEFAULT:
                assert value != field.default, f"{type(sample).__name__}.{field.name} is its default"
            key = (type(value), value)
            assert key not in seen, f"{type(sample).__name__}: {field.name} == {seen[key]}"
            seen[key] = field.name


# --- the stored form --------------------------------------------------------------------------


def test_stored_rows_are_exactly_the_documented_form(db: AccountDatabase) -> None:
    save_samples(db)
    for table, expected in STORED.items():
        [row] = raw_rows(db.path, table)
        assert_same_row(row, expected)


def test_a_missing_update_time_is_stored_as_null(db: AccountDatabase) -> None:
    db.save_order(msgspec.structs.replace(ORDER, update_time=None))
    [row] = raw_rows(db.path, "orders")
    assert_same_row(row, (*STORED["orders"][:12], None, *STORED["orders"][13:]))


def test_stored_rows_load_as_the_saved_structs(db: AccountDatabase) -> None:
    save_samples(db)
    assert_same(db.load_order("O-77"), ORDER)  # type: ignore[arg-type]
    [order] = db.load_orders()
    assert_same(order, ORDER)
    [trade] = db.load_trades()
    assert_same(trade, TRADE)
    [position] = db.load_positions()
    assert_same(position, POSITION)
    [account] = db.load_account_snapshots()
    assert_same(account, msgspec.structs.replace(ACCOUNT, datetime=AT))
    [trigger] = db.load_triggers()
    assert_same(trigger, TRIGGER)
    [bar] = db.load_bars("au2612.SHFE", interval="5m")
    assert_same(bar, BAR)
    [cond] = db.load_conditionals()
    assert_same(cond, CONDITIONAL)
    assert db.load_conditionals(live_only=True) == []


def test_rows_written_by_hand_load_like_saved_ones(db: AccountDatabase) -> None:
    """A file written by an earlier version (here: the documented rows inserted with plain SQL)
    loads into the same structs."""
    conn = sqlite3.connect(db.path)
    with conn:
        for table, row in STORED.items():
            conn.execute(f"INSERT INTO {table} VALUES ({', '.join('?' * len(row))})", row)
    conn.close()
    assert_same(db.load_order("O-77"), ORDER)  # type: ignore[arg-type]
    assert_same(db.load_trades()[0], TRADE)
    assert_same(db.load_positions()[0], POSITION)
    assert_same(db.load_account_snapshots()[0], msgspec.structs.replace(ACCOUNT, datetime=AT))
    assert_same(db.load_triggers()[0], TRIGGER)
    assert_same(db.load_bars("au2612.SHFE", interval="5m")[0], BAR)
    assert_same(db.load_conditionals()[0], CONDITIONAL)


# --- the mapper functions themselves ----------------------------------------------------------

_ORDER_MAPPER, _TRADE_MAPPER = MAPPERS[0], MAPPERS[1]

_datetimes = st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2100, 1, 1)).map(
    lambda d: d.replace(tzinfo=CHINA_TZ)
)
_floats = st.floats(allow_nan=False, allow_infinity=False)
_text = st.text(max_size=12)
_orders = st.builds(
    Order,
    account_id=_text,
    order_id=_text,
    vt_symbol=_text,
    direction=st.sampled_from(Direction),
    offset=st.sampled_from(Offset),
    type=st.sampled_from(OrderType),
    price=_floats,
    volume=_floats,
    traded=_floats,
    traded_price=_floats,
    status=st.sampled_from(Status),
    datetime=_datetimes,
    update_time=st.none() | _datetimes,
    reference=_text,
    status_msg=_text,
)
_trades = st.builds(
    Trade,
    account_id=_text,
    trade_id=_text,
    order_id=_text,
    vt_symbol=_text,
    direction=st.sampled_from(Direction),
    offset=st.sampled_from(Offset),
    price=_floats,
    volume=_floats,
    datetime=_datetimes,
    commission=_floats,
    reference=_text,
)


@PROPERTY
@given(_orders)
def test_order_params_and_from_row_are_inverse(order: Order) -> None:
    params = _ORDER_MAPPER.params(order)
    assert len(params) == len(_ORDER_MAPPER.columns)
    assert_same(_ORDER_MAPPER.from_row(params), order)


@PROPERTY
@given(_trades)
def test_trade_params_and_from_row_are_inverse(trade: Trade) -> None:
    params = _TRADE_MAPPER.params(trade)
    assert len(params) == len(_TRADE_MAPPER.columns)
    assert_same(_TRADE_MAPPER.from_row(params), trade)


def test_params_follow_the_column_order() -> None:
    by_column = dict(zip(_ORDER_MAPPER.columns, _ORDER_MAPPER.params(ORDER), strict=True))
    assert by_column["direction"] == "SHORT"
    assert by_column["type"] == "FOK"
    assert by_column["status"] == "CANCELLED"
    assert by_column["datetime"] == T0_US
    assert by_column["update_time"] == T0_US + 2_000_005
    assert by_column["traded_price"] == 512.25


def test_a_row_of_the_wrong_length_is_refused() -> None:
    row = _ORDER_MAPPER.params(ORDER)
    with pytest.raises(ValueError, match="unpack"):
        _ORDER_MAPPER.from_row(row[:-1])
    with pytest.raises(ValueError, match="unpack"):
        _ORDER_MAPPER.from_row((*row, "extra"))


def test_an_unknown_enum_name_is_refused() -> None:
    row = list(_TRADE_MAPPER.params(TRADE))
    row[_TRADE_MAPPER.columns.index("direction")] = "long"  # a value, not the NAME
    with pytest.raises(KeyError):
        _TRADE_MAPPER.from_row(row)


# --- mappings that cannot be right are refused when built -------------------------------------


class Sample(msgspec.Struct, kw_only=True):
    name: str
    side: Direction
    price: float
    at: datetime
    until: datetime | None = None


def sample_table(*extra: Column[Any], drop: tuple[str, ...] = (), **replace: Column[Any]) -> Table:
    columns = {
        "id": Column("id", Integer, primary_key=True),
        "name": Column("name", String, nullable=False),
        "side": Column("side", String, nullable=False),
        "price": Column("price", Float, nullable=False),
        "at": Column("at", Integer, nullable=False),
        "until": Column("until", Integer, nullable=True),
    }
    columns.update(replace)
    kept = [c for name, c in columns.items() if name not in drop]
    return Table("samples", MetaData(), *kept, *extra)


def test_a_sample_mapping_round_trips_and_takes_supplied_columns() -> None:
    mapper = build_mapper(sample_table(Column("saved", Integer, nullable=False)), Sample, supplied=("saved",))
    assert mapper.columns == ("name", "side", "price", "at", "until", "saved")
    value = Sample(name="x", side=Direction.NET, price=1.5, at=T0, until=AT)
    row = mapper.params(value, 42)
    assert row == ("x", "NET", 1.5, T0_US, AT_US, 42)
    assert_same(mapper.from_row(row), value)


@pytest.mark.parametrize(
    ("table", "supplied", "message"),
    [
        (lambda: sample_table(Column("extra", String, nullable=False)), (), "no field Sample.extra"),
        (lambda: sample_table(), ("missing",), "not distinct columns"),
        (lambda: sample_table(), ("price", "price"), "not distinct columns"),
        (lambda: sample_table(side=Column("side", Integer, nullable=False)), (), "stored as String"),
        (lambda: sample_table(at=Column("at", String, nullable=False)), (), "stored as Integer"),
        (lambda: sample_table(price=Column("price", Integer, nullable=False)), (), "stored as Float"),
        (lambda: sample_table(price=Column("price", Float, nullable=True)), (), "cannot be None"),
        (lambda: sample_table(until=Column("until", Integer, nullable=False)), (), "may be None"),
    ],
)
def test_a_mapping_that_cannot_be_right_is_refused(
    table: Any, supplied: tuple[str, ...], message: str
) -> None:
    with pytest.raises(TypeError, match=message):
        build_mapper(table(), Sample, supplied=supplied)


def test_a_field_type_without_a_storage_form_is_refused() -> None:
    class WithList(msgspec.Struct, kw_only=True):
        name: str
        tags: list[str]

    table = Table(
        "with_list",
        MetaData(),
        Column("name", String, nullable=False),
        Column("tags", String, nullable=False),
    )
    with pytest.raises(TypeError, match="no storage form"):
        build_mapper(table, WithList)


def test_a_field_left_without_a_column_is_reported_by_the_mapper() -> None:
    mapper = build_mapper(sample_table(drop=("until",)), Sample)
    assert "until" not in mapper.fields
    assert set(mapper.fields) != set(Sample.__struct_fields__)


def test_stored_epoch_constant_matches_the_encoder() -> None:
    assert to_epoch_us(T0) == T0_US
