"""Account database: round trips, upsert/idempotency rules, limits, WAL durability across a
SIGKILL, read-only access beside the writer, and migrations that keep old rows."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine

import storage.database as database_module
from core.models import (
    CHINA_TZ,
    Account,
    Bar,
    Direction,
    EquityPoint,
    Offset,
    Order,
    OrderType,
    Position,
    Status,
    StrategyTrigger,
    Trade,
)
from storage import AccountDatabase, SchemaVersionError, database_path
from storage.database import checkpoint_due, from_epoch_us, to_epoch_us
from storage.migrations import MIGRATIONS, Migration, latest_version, migrate, schema_version
from storage.tables import ACCOUNT_METADATA
from tests.conftest import wait_until_sync

REPO = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 3, 2, 9, 0, 0, 123456, tzinfo=CHINA_TZ)
PROPERTY = settings(max_examples=60, deadline=None, derandomize=True, database=None)


# --- helpers ----------------------------------------------------------------------------------


@pytest.fixture
def db(tmp_path: Path) -> Iterator[AccountDatabase]:
    with AccountDatabase(database_path(tmp_path, "ACC1")) as database:
        yield database


def assert_same(actual: msgspec.Struct, expected: msgspec.Struct) -> None:
    """Field-by-field equality that also checks types (an enum must come back as the enum,
    not a str) and datetimes' zone (the same instant is not enough: it must be CHINA_TZ)."""
    assert type(actual) is type(expected)
    for name in expected.__struct_fields__:
        got, want = getattr(actual, name), getattr(expected, name)
        assert got == want, f"{name}: {got!r} != {want!r}"
        if type(want) in (int, float):
            # float fields with int defaults (``volume: float = 0``) come back as REAL 0.0
            assert type(got) in (int, float), name
        else:
            assert type(got) is type(want), f"{name}: {type(got)} is not {type(want)}"
        if isinstance(want, datetime):
            assert got.utcoffset() == want.utcoffset() == timedelta(hours=8), name
            assert got.tzinfo is CHINA_TZ, name


def make_order(order_id: str = "O1", *, at: datetime = T0, **changes: Any) -> Order:
    fields: dict[str, Any] = {
        "account_id": "ACC1",
        "order_id": order_id,
        "vt_symbol": "au2612.SHFE",
        "direction": Direction.SHORT,
        "offset": Offset.CLOSETODAY,
        "type": OrderType.FAK,
        "price": 512.34,
        "volume": 3.0,
        "traded": 1.0,
        "traded_price": 512.3,
        "status": Status.PARTTRADED,
        "datetime": at,
        "update_time": at + timedelta(seconds=1, microseconds=7),
        "reference": "ma_cross_au",
        "status_msg": "partly filled",
    }
    fields.update(changes)
    return Order(**fields)


def make_trade(trade_id: str = "T1", *, at: datetime = T0, **changes: Any) -> Trade:
    fields: dict[str, Any] = {
        "account_id": "ACC1",
        "trade_id": trade_id,
        "order_id": "O1",
        "vt_symbol": "rb2610.SHFE",
        "direction": Direction.LONG,
        "offset": Offset.CLOSEYESTERDAY,
        "price": 3555.0,
        "volume": 2.0,
        "datetime": at,
        "commission": 1.23,
        "reference": "manual",
    }
    fields.update(changes)
    return Trade(**fields)


def make_trigger(i: int = 0, *, at: datetime = T0) -> StrategyTrigger:
    return StrategyTrigger(
        account_id="ACC1",
        datetime=at,
        instance=f"ma_{i}",
        vt_symbol="IF2606.CFFEX",
        condition="fast MA 3801.2 crossed above slow MA 3799.8",
        price=3801.4,
        action="buy",
        result="failed",
        order_id=f"O{i}",
        error="risk: max position 5 reached",
    )


def make_bar(
    minute: int, *, vt_symbol: str = "au2612.SHFE", interval: str = "1m", close: float = 500.5
) -> Bar:
    return Bar(
        account_id="ACC1",
        vt_symbol=vt_symbol,
        interval=interval,
        datetime=T0.replace(microsecond=0) + timedelta(minutes=minute),
        open_price=500.0,
        high_price=501.25,
        low_price=499.75,
        close_price=close,
        volume=123.0,
        turnover=61_500_000.5,
        open_interest=45_678.0,
    )


def make_account(balance: float = 1_000_000.0) -> Account:
    return Account(
        account_id="ACC1",
        balance=balance,
        available=800_000.5,
        margin=150_000.25,
        frozen=49_999.25,
        commission=12.5,
        close_pnl=300.0,
        position_pnl=-100.0,
        pre_balance=999_812.5,
        trading_day="20260302",
    )


# --- paths, connection settings ---------------------------------------------------------------


def test_database_path_names_one_file_per_account(tmp_path: Path) -> None:
    assert database_path(tmp_path, "8800123") == tmp_path / "trading_8800123.db"
    for bad in ("", ".", "..", "a/b", "a\\b"):
        with pytest.raises(ValueError, match="cannot be used"):
            database_path(tmp_path, bad)


def test_writer_creates_directory_and_uses_wal_settings(tmp_path: Path) -> None:
    path = database_path(tmp_path / "new" / "data", "ACC1")
    with AccountDatabase(path) as database:
        assert path.is_file()
        assert database.pragma("journal_mode") == "wal"
        assert database.pragma("synchronous") == 1  # NORMAL
        assert database.pragma("foreign_keys") == 0
        assert database.pragma("busy_timeout") == 5000
        assert database.pragma("wal_autocheckpoint") == 0  # the checkpoint thread's job
        assert database.schema_version == latest_version()
    # WAL is a property of the file: a plain connection sees it too.
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_without_checkpoint_thread_sqlite_checkpoints_itself(tmp_path: Path) -> None:
    with AccountDatabase(tmp_path / "a.db", checkpoint_tick=None) as database:
        assert database.pragma("wal_autocheckpoint") == 1000
        database.save_order(make_order())
        busy, _, _ = database.checkpoint()
        assert busy == 0


def test_checkpoint_rule_waits_for_a_pause() -> None:
    assert not checkpoint_due(previous=5, seen=5, done=5, age=60.0, max_age=5.0)  # nothing new
    assert not checkpoint_due(previous=4, seen=5, done=3, age=1.0, max_age=5.0)  # writing now
    assert checkpoint_due(previous=5, seen=5, done=3, age=1.0, max_age=5.0)  # a quiet tick
    assert checkpoint_due(previous=4, seen=5, done=3, age=5.0, max_age=5.0)  # never quiet


def test_checkpoint_thread_checkpoints_after_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs: list[tuple[int, int, int]] = []
    original = database_module._Checkpointer.run

    def spy(self: Any) -> tuple[int, int, int]:
        result = original(self)
        runs.append(result)
        return result

    monkeypatch.setattr(database_module._Checkpointer, "run", spy)
    with AccountDatabase(tmp_path / "a.db", checkpoint_tick=0.01) as database:
        for i in range(20):
            database.save_order(make_order(f"O{i}"))
        # (busy, frames in the WAL, frames copied): everything written got copied.
        wait_until_sync(
            lambda: any(done > 0 and done == log for _, log, done in runs), timeout=20, what="checkpoint"
        )


def test_datetime_encoding_is_exact_and_sortable() -> None:
    stamps = [
        T0,
        T0.replace(microsecond=0),
        T0 + timedelta(microseconds=1),
        datetime(1970, 1, 1, 8, tzinfo=CHINA_TZ),
        datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=CHINA_TZ),
        datetime(2099, 12, 31, 23, 59, 59, 999999, tzinfo=CHINA_TZ),
    ]
    for stamp in stamps:
        back = from_epoch_us(to_epoch_us(stamp))
        assert back == stamp and back.tzinfo is CHINA_TZ
    assert sorted(stamps, key=to_epoch_us) == sorted(stamps)
    # Naive values are China time; other zones come back as the same instant in CHINA_TZ.
    assert from_epoch_us(to_epoch_us(T0.replace(tzinfo=None))) == T0
    utc = T0.astimezone(UTC)
    assert from_epoch_us(to_epoch_us(utc)) == utc
    assert from_epoch_us(to_epoch_us(utc)).tzinfo is CHINA_TZ


@PROPERTY
@given(
    st.datetimes(
        min_value=datetime(1990, 1, 1),
        max_value=datetime(2100, 1, 1),
        timezones=st.sampled_from([CHINA_TZ, timezone(timedelta(hours=8))]),
    )
)
def test_datetime_round_trip_property(stamp: datetime) -> None:
    back = from_epoch_us(to_epoch_us(stamp))
    assert back == stamp
    assert back.replace(tzinfo=None) == stamp.replace(tzinfo=None)  # same wall clock, to the µs
    assert back.tzinfo is CHINA_TZ


# --- round trips ------------------------------------------------------------------------------


def test_order_round_trip(db: AccountDatabase) -> None:
    order = make_order()
    db.save_order(order)
    loaded = db.load_order("O1")
    assert loaded is not None
    assert_same(loaded, order)
    assert db.load_order("missing") is None
    bare = make_order("O2", update_time=None, status=Status.SUBMITTING, traded=0.0, traded_price=0.0)
    db.save_order(bare)
    assert_same(db.load_order("O2"), bare)  # type: ignore[arg-type]
    loaded_all = db.load_orders()
    assert [o.order_id for o in loaded_all] == ["O1", "O2"]
    assert_same(loaded_all[0], order)


def test_every_enum_member_round_trips_by_name(db: AccountDatabase) -> None:
    cases = zip(
        list(Direction) * 6,
        list(Offset) * 4,
        list(OrderType) * 4,
        list(Status) * 4,
        strict=False,
    )
    for i, (direction, offset, order_type, status) in enumerate(cases):
        order = make_order(f"E{i}", direction=direction, offset=offset, type=order_type, status=status)
        db.save_order(order)
        assert_same(db.load_order(f"E{i}"), order)  # type: ignore[arg-type]
    # Stored as the plain NAME text (readable from any tool).
    raw = (
        sqlite3.connect(db.path)
        .execute("SELECT direction, status FROM orders WHERE order_id='E0'")
        .fetchone()
    )
    assert raw == ("LONG", "SUBMITTING")


def test_trade_round_trip(db: AccountDatabase) -> None:
    trade = make_trade()
    assert db.save_trade(trade) is True
    [loaded] = db.load_trades()
    assert_same(loaded, trade)


def test_positions_round_trip(db: AccountDatabase) -> None:
    positions = [
        Position(
            account_id="ACC1",
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
        ),
        Position(
            account_id="ACC1", vt_symbol="au2612.SHFE", direction=Direction.LONG, volume=1.0, price=500.02
        ),
    ]
    db.save_positions(positions, T0)
    loaded = db.load_positions()
    # Sorted by (vt_symbol, direction).
    assert [p.vt_symbol for p in loaded] == ["au2612.SHFE", "rb2610.SHFE"]
    assert_same(loaded[0], positions[1])
    assert_same(loaded[1], positions[0])


def test_account_snapshot_and_equity_round_trip(db: AccountDatabase) -> None:
    account = make_account()
    db.save_account(account, T0)
    [loaded] = db.load_account_snapshots()
    expected = msgspec.structs.replace(account, datetime=T0)  # ``at`` is the snapshot time
    assert_same(loaded, expected)
    [point] = db.load_equity()
    assert_same(
        point,
        EquityPoint(
            datetime=T0,
            balance=1_000_000.0,
            available=800_000.5,
            margin=150_000.25,
            pnl=300.0 - 100.0 - 12.5,  # close_pnl + position_pnl - commission
        ),
    )


def test_trigger_round_trip_and_ids(db: AccountDatabase) -> None:
    first, second = make_trigger(1), make_trigger(2, at=T0 + timedelta(seconds=1))
    id1, id2 = db.save_trigger(first), db.save_trigger(second)
    assert id2 > id1 >= 1
    loaded = db.load_triggers()
    assert len(loaded) == 2
    assert_same(loaded[0], first)
    assert_same(loaded[1], second)


def test_bar_round_trip_and_upsert(db: AccountDatabase) -> None:
    bar = make_bar(0)
    db.save_bar(bar)
    [loaded] = db.load_bars("au2612.SHFE")
    assert_same(loaded, bar)
    revised = make_bar(0, close=501.0)
    db.save_bar(revised)  # the same minute again: replaces, not duplicates
    [loaded] = db.load_bars("au2612.SHFE")
    assert_same(loaded, revised)


# --- write rules ------------------------------------------------------------------------------


def test_order_upsert_keeps_one_row_with_latest_state(db: AccountDatabase) -> None:
    base = make_order(update_time=None, status=Status.SUBMITTING, traded=0.0, traded_price=0.0)
    db.save_order(base)
    db.save_order(
        msgspec.structs.replace(base, status=Status.NOTTRADED, update_time=T0 + timedelta(seconds=1))
    )
    final = msgspec.structs.replace(
        base, status=Status.ALLTRADED, traded=3.0, traded_price=512.3, update_time=T0 + timedelta(seconds=2)
    )
    db.save_order(final)
    orders = db.load_orders()
    assert len(orders) == 1
    assert_same(orders[0], final)
    assert db.load_orders(active_only=True) == []


def test_replayed_trade_id_changes_nothing(db: AccountDatabase) -> None:
    trade = make_trade()
    assert db.save_trade(trade) is True
    replay = make_trade(price=9999.0, volume=99.0, commission=0.0, datetime=T0 + timedelta(hours=1))
    assert db.save_trade(replay) is False
    [stored] = db.load_trades()
    assert_same(stored, trade)


@PROPERTY
@given(st.lists(st.tuples(st.sampled_from("ABCDE"), st.integers(1, 9)), max_size=25))
def test_trade_replays_are_idempotent_property(fills: list[tuple[str, int]]) -> None:
    with (
        tempfile.TemporaryDirectory() as tmp,
        AccountDatabase(Path(tmp) / "p.db", checkpoint_tick=None) as database,
    ):
        first_seen: dict[str, Trade] = {}
        for i, (trade_id, volume) in enumerate(fills):
            trade = make_trade(trade_id, volume=float(volume), at=T0 + timedelta(seconds=i))
            assert database.save_trade(trade) is (trade_id not in first_seen)
            first_seen.setdefault(trade_id, trade)
        assert database.load_trades() == list(first_seen.values())


def test_positions_are_replaced_as_a_set(db: AccountDatabase) -> None:
    def pos(symbol: str, direction: Direction, volume: float) -> Position:
        return Position(account_id="ACC1", vt_symbol=symbol, direction=direction, volume=volume)

    db.save_positions([pos("au2612.SHFE", Direction.LONG, 1), pos("au2612.SHFE", Direction.SHORT, 2)], T0)
    db.save_positions([pos("rb2610.SHFE", Direction.LONG, 3)], T0 + timedelta(seconds=5))
    assert db.load_positions() == [pos("rb2610.SHFE", Direction.LONG, 3)]
    # A bad set (duplicate key) fails as a whole and keeps the previous set.
    duplicate = [pos("cu2607.SHFE", Direction.LONG, 1), pos("cu2607.SHFE", Direction.LONG, 2)]
    with pytest.raises(sqlite3.IntegrityError):
        db.save_positions(duplicate, T0 + timedelta(seconds=10))
    assert db.load_positions() == [pos("rb2610.SHFE", Direction.LONG, 3)]
    db.save_positions([], T0 + timedelta(seconds=15))
    assert db.load_positions() == []
    db.save_order(make_order())  # the connection is usable after the failed transaction


def test_concurrent_saves_from_threads(db: AccountDatabase) -> None:
    def worker(prefix: str) -> None:
        for i in range(50):
            db.save_order(make_order(f"{prefix}{i}"))

    threads = [threading.Thread(target=worker, args=(p,)) for p in "XYZ"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(db.load_orders()) == 150


# --- limit / since ----------------------------------------------------------------------------


def test_orders_limit_since_and_active(db: AccountDatabase) -> None:
    statuses = [Status.ALLTRADED, Status.NOTTRADED, Status.CANCELLED, Status.PARTTRADED, Status.SUBMITTING]
    for i in range(10):
        db.save_order(make_order(f"O{i}", at=T0 + timedelta(minutes=i), status=statuses[i % 5]))
    ids = lambda orders: [o.order_id for o in orders]  # noqa: E731
    assert ids(db.load_orders()) == [f"O{i}" for i in range(10)]  # oldest first
    assert ids(db.load_orders(limit=3)) == ["O7", "O8", "O9"]  # the most recent 3
    assert ids(db.load_orders(since=T0 + timedelta(minutes=6))) == ["O6", "O7", "O8", "O9"]  # inclusive
    assert ids(db.load_orders(since=T0 + timedelta(minutes=6), limit=2)) == ["O8", "O9"]
    assert ids(db.load_orders(active_only=True)) == ["O1", "O3", "O4", "O6", "O8", "O9"]
    assert ids(db.load_orders(active_only=True, limit=2, since=T0 + timedelta(minutes=5))) == ["O8", "O9"]
    assert db.load_orders(limit=0) == []
    # ``since`` in another zone means the same instant.
    assert ids(db.load_orders(since=(T0 + timedelta(minutes=8)).astimezone(UTC))) == ["O8", "O9"]


def test_same_time_rows_keep_arrival_order(db: AccountDatabase) -> None:
    # CTP stamps fills to the second: ties are broken by arrival, not by id text.
    for trade_id in ["T9", "T10", "T8"]:
        db.save_trade(make_trade(trade_id))
    assert [t.trade_id for t in db.load_trades()] == ["T9", "T10", "T8"]
    assert [t.trade_id for t in db.load_trades(limit=2)] == ["T10", "T8"]
    for order_id in ["B", "C", "A"]:
        db.save_order(make_order(order_id))
    db.save_order(make_order("B", status=Status.CANCELLED))  # an update keeps its place
    assert [o.order_id for o in db.load_orders()] == ["B", "C", "A"]


def test_trades_triggers_snapshots_equity_limit_and_since(db: AccountDatabase) -> None:
    for i in range(6):
        at = T0 + timedelta(seconds=i)
        db.save_trade(make_trade(f"T{i}", at=at))
        db.save_trigger(make_trigger(i, at=at))
        db.save_account(make_account(balance=1_000_000.0 + i), at)
    since = T0 + timedelta(seconds=2)
    assert [t.trade_id for t in db.load_trades(limit=2)] == ["T4", "T5"]
    assert [t.trade_id for t in db.load_trades(since=since)] == ["T2", "T3", "T4", "T5"]
    assert [t.instance for t in db.load_triggers(limit=2)] == ["ma_4", "ma_5"]
    assert [t.instance for t in db.load_triggers(since=since, limit=10)] == ["ma_2", "ma_3", "ma_4", "ma_5"]
    assert [a.balance for a in db.load_account_snapshots(limit=2)] == [1_000_004.0, 1_000_005.0]
    assert [a.datetime for a in db.load_account_snapshots(since=since)] == [
        T0 + timedelta(seconds=i) for i in range(2, 6)
    ]
    assert [p.balance for p in db.load_equity(limit=3)] == [1_000_003.0, 1_000_004.0, 1_000_005.0]
    assert [p.datetime for p in db.load_equity(since=since, limit=1)] == [T0 + timedelta(seconds=5)]


def test_equity_thinned_to_one_point_per_slice_of_time(db: AccountDatabase) -> None:
    """``every``: the last point of each slice, so days of 10 s snapshots fit a chart."""
    start = datetime(2026, 3, 2, 9, 0, 0, tzinfo=CHINA_TZ)  # on a whole minute
    for i in range(30):  # every 10 s for 5 minutes
        db.save_account(make_account(balance=1_000_000.0 + i), start + timedelta(seconds=10 * i))
    points = db.load_equity(every=60.0)
    assert [p.datetime for p in points] == [start + timedelta(seconds=50 + 60 * m) for m in range(5)]
    assert [p.balance for p in points] == [1_000_005.0 + 6 * m for m in range(5)]
    since = start + timedelta(seconds=130)
    assert [p.balance for p in db.load_equity(since=since, every=60.0)] == [
        1_000_017.0,
        1_000_023.0,
        1_000_029.0,
    ]
    assert [p.balance for p in db.load_equity(every=60.0, limit=2)] == [1_000_023.0, 1_000_029.0]
    assert len(db.load_equity()) == 30  # not thinned unless asked


def test_bars_limit_symbol_and_interval(db: AccountDatabase) -> None:
    db.save_bars([make_bar(m) for m in range(10)])
    db.save_bars([make_bar(m, vt_symbol="rb2610.SHFE") for m in range(3)])
    db.save_bar(make_bar(0, interval="1h"))
    last3 = db.load_bars("au2612.SHFE", limit=3)
    assert [b.datetime.minute for b in last3] == [7, 8, 9]  # the last 3, oldest first
    assert len(db.load_bars("au2612.SHFE")) == 10
    assert len(db.load_bars("rb2610.SHFE")) == 3
    assert len(db.load_bars("au2612.SHFE", interval="1h")) == 1
    assert db.load_bars("cu2607.SHFE") == []


# --- durability and readers -------------------------------------------------------------------

_CHILD = textwrap.dedent(
    """
    import sys, time
    from datetime import datetime
    from core.models import CHINA_TZ, Direction, Offset, Order, OrderType, Status
    from storage import AccountDatabase

    # No checkpoint thread: the commit must be found in the -wal file alone.
    db = AccountDatabase(sys.argv[1], checkpoint_tick=None)
    db.save_order(Order(
        account_id="ACC1", order_id="KILLED1", vt_symbol="au2612.SHFE", direction=Direction.LONG,
        offset=Offset.OPEN, type=OrderType.LIMIT, price=500.0, volume=1, status=Status.NOTTRADED,
        datetime=datetime(2026, 3, 2, 9, 0, tzinfo=CHINA_TZ),
    ))
    print("saved", flush=True)  # as the trader would report the order now
    time.sleep(60)  # never closes: SIGKILL comes first
    """
)


def test_saved_order_survives_sigkill_of_writer_process(tmp_path: Path) -> None:
    path = database_path(tmp_path, "ACC1")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(path)], stdout=subprocess.PIPE, text=True, cwd=REPO, env=env
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "saved"
        # While the writer process is alive and holds the file open, another process reads.
        with AccountDatabase(path, readonly=True) as reader:
            live = reader.load_order("KILLED1")
            assert live is not None and live.status is Status.NOTTRADED
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(timeout=10) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if child.stdout is not None:
            child.stdout.close()
    # The WAL left behind by the killed writer holds the commit: readers and the next writer see it.
    assert Path(f"{path}-wal").stat().st_size > 0
    with AccountDatabase(path, readonly=True) as reader:
        assert reader.load_order("KILLED1") is not None
    with AccountDatabase(path) as writer:
        order = writer.load_order("KILLED1")
        assert order is not None and order.price == 500.0


def test_readonly_reads_while_writer_writes(db: AccountDatabase) -> None:
    with AccountDatabase(db.path, readonly=True) as reader:
        assert reader.load_orders() == []
        db.save_order(make_order("O1"))
        assert [o.order_id for o in reader.load_orders()] == ["O1"]
        stop = threading.Event()
        written: list[str] = []

        def write() -> None:
            i = 0
            while not stop.is_set() and i < 2000:
                db.save_order(make_order(f"W{i}"))
                written.append(f"W{i}")
                i += 1

        writer = threading.Thread(target=write)
        writer.start()
        try:
            seen = 0
            for _ in range(50):  # reads are never blocked by the writer, and only grow
                now_seen = len(reader.load_orders(limit=100_000))
                assert now_seen >= seen
                seen = now_seen
        finally:
            stop.set()
            writer.join()
        assert len(reader.load_orders(limit=100_000)) == 1 + len(written)
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            reader.save_order(make_order("R1"))
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            reader.save_trade(make_trade())


def test_readonly_refuses_missing_or_unmigrated_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        AccountDatabase(tmp_path / "nothing.db", readonly=True)
    assert not (tmp_path / "nothing.db").exists()
    sqlite3.connect(tmp_path / "empty.db").close()
    with pytest.raises(SchemaVersionError, match="start the account's trader"):
        AccountDatabase(tmp_path / "empty.db", readonly=True)


# --- migrations -------------------------------------------------------------------------------


def _schema(path: Path) -> dict[str, Any]:
    """Tables, columns and indexes of a file, in a comparable form."""
    conn = sqlite3.connect(path)
    try:
        tables = sorted(r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'"))
        result: dict[str, Any] = {"tables": tables}
        for table in tables:
            result[table] = {
                "columns": [tuple(r[1:]) for r in conn.execute(f'PRAGMA table_info("{table}")')],
                "indexes": sorted(
                    (r[1], r[2], tuple(c[2] for c in conn.execute(f'PRAGMA index_info("{r[1]}")')))
                    for r in conn.execute(f'PRAGMA index_list("{table}")')
                ),
            }
        return result
    finally:
        conn.close()


def test_migrations_create_the_schema_the_table_classes_describe(tmp_path: Path) -> None:
    AccountDatabase(tmp_path / "migrated.db").close()
    engine = create_engine(f"sqlite:///{tmp_path / 'metadata.db'}")
    ACCOUNT_METADATA.create_all(engine)
    engine.dispose()
    assert _schema(tmp_path / "migrated.db") == _schema(tmp_path / "metadata.db")


def _version1_file(path: Path) -> None:
    """A file as version 1 of the program left it, with rows written by raw SQL."""
    conn = sqlite3.connect(path, isolation_level=None)
    assert migrate(conn, target=1) == 1
    us = to_epoch_us(T0)
    conn.execute(
        'INSERT INTO orders (order_id, account_id, vt_symbol, direction, "offset", type, price, volume,'
        " traded, traded_price, status, datetime, update_time, reference, status_msg)"
        " VALUES ('V1', 'ACC1', 'au2612.SHFE', 'LONG', 'OPEN', 'LIMIT', 500.0, 2, 0, 0.0, 'NOTTRADED', ?,"
        " NULL, 'manual', '')",
        (us,),
    )
    conn.execute(
        'INSERT INTO trades (trade_id, account_id, order_id, vt_symbol, direction, "offset", price, volume,'
        " datetime, commission, reference) VALUES ('VT1', 'ACC1', 'V1', 'au2612.SHFE', 'LONG', 'OPEN',"
        " 500.0, 1, ?, 0.5, 'manual')",
        (us,),
    )
    conn.execute(
        "INSERT INTO account_snapshots (account_id, datetime, balance, available, margin, frozen,"
        " commission, close_pnl, position_pnl, pre_balance, trading_day)"
        " VALUES ('ACC1', ?, 100.0, 90.0, 10.0, 0, 0.5, 0, 0, 100.5, '20260302')",
        (us,),
    )
    conn.close()


def test_opening_a_version_1_file_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    _version1_file(path)
    with AccountDatabase(path) as database:
        assert database.schema_version == latest_version()
        order = database.load_order("V1")
        assert order is not None
        assert (order.status, order.datetime, order.update_time) == (Status.NOTTRADED, T0, None)
        assert [t.trade_id for t in database.load_trades()] == ["VT1"]
        assert [a.balance for a in database.load_account_snapshots()] == [100.0]
        database.save_order(make_order("NEW"))
    with AccountDatabase(path) as database:  # reopening migrates nothing and loses nothing
        assert [o.order_id for o in database.load_orders()] == ["V1", "NEW"]


def test_a_later_step_upgrades_in_place_keeping_rows(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    _version1_file(path)
    later = latest_version() + 1
    step = Migration(
        later, "orders.note", ("ALTER TABLE orders ADD COLUMN note VARCHAR NOT NULL DEFAULT ''",)
    )
    conn = sqlite3.connect(path, isolation_level=None)
    assert migrate(conn, migrations=[*MIGRATIONS, step]) == later
    assert schema_version(conn) == later
    assert conn.execute("SELECT order_id, note FROM orders").fetchall() == [("V1", "")]
    conn.close()


def test_a_failing_step_leaves_the_file_at_its_old_version(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    _version1_file(path)
    broken = Migration(
        latest_version() + 1,
        "broken",
        ("CREATE TABLE extra (x INTEGER)", "ALTER TABLE nope ADD COLUMN y INTEGER"),
    )
    conn = sqlite3.connect(path, isolation_level=None)
    with pytest.raises(sqlite3.OperationalError):
        migrate(conn, migrations=[*MIGRATIONS, broken])
    assert schema_version(conn) == 1
    assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'extra'").fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM orders").fetchone() == (1,)
    conn.close()


def test_a_newer_file_is_refused_not_downgraded(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    AccountDatabase(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {latest_version() + 1}")
    conn.close()
    with pytest.raises(SchemaVersionError, match="newer"):
        AccountDatabase(path)
    with pytest.raises(SchemaVersionError):
        AccountDatabase(path, readonly=True)


# --- batch(): one commit for several writes ---


def test_batch_commits_once_at_the_end(db: AccountDatabase, tmp_path: Path) -> None:
    reader = AccountDatabase(db.path, readonly=True)
    try:
        with db.batch():
            db.save_order(make_order("B1", status=Status.SUBMITTING))
            db.save_order(make_order("B1", status=Status.NOTTRADED))
            with db.batch():  # nested batches join the outer one
                db.save_order(make_order("B2"))
            assert reader.load_order("B1") is None  # not committed yet
        stored = reader.load_order("B1")
        assert stored is not None and stored.status is Status.NOTTRADED
        assert reader.load_order("B2") is not None
    finally:
        reader.close()


def test_batch_commits_what_was_written_even_when_the_block_raises(db: AccountDatabase) -> None:
    with pytest.raises(RuntimeError), db.batch():  # noqa: PT012 - the raise must be inside the batch
        db.save_order(make_order("K1"))
        raise RuntimeError("gateway blew up after the venue took the order")
    assert db.load_order("K1") is not None  # the record of a live order is kept
    db.save_order(make_order("K2"))  # and the connection is usable afterwards
    assert db.load_order("K2") is not None
