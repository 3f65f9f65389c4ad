"""sqlmodel table classes of an account database: the CURRENT schema.

One class per table. These classes describe the schema the code reads and writes; the
database files themselves are brought to that schema by ``storage/migrations.py`` (frozen DDL,
one step per version), never by ``create_all``, so an old file is upgraded rather than
recreated. A test checks that the migrated schema equals what these classes describe.

Storage conventions (shared by every table):

- Enumerations (Direction, Offset, Status, OrderType) are stored by NAME as plain text,
  exactly as ``core.models`` spells them.
- Datetimes are stored as INTEGER microseconds since the Unix epoch (UTC instant). Integers
  sort and compare exactly, index compactly, and convert back without float rounding; the
  loader rebuilds them as tz-aware ``CHINA_TZ`` datetimes. To read one in the sqlite3 shell:
  ``datetime(datetime / 1e6, 'unixepoch', '+8 hours')``.
- Every row keeps ``account_id`` although a file holds one account: rows are then self-describing
  when files are merged or exported, and models round-trip unchanged.

The tables live in their own ``MetaData`` so nothing else that uses SQLModel can add to (or be
created by) an account database.
"""

from __future__ import annotations

from sqlalchemy import Index, MetaData, UniqueConstraint
from sqlmodel import Field, SQLModel

ACCOUNT_METADATA = MetaData()


class _AccountTable(SQLModel):
    """Base of the account-database tables: binds them to ``ACCOUNT_METADATA``."""

    metadata = ACCOUNT_METADATA


class OrderRow(_AccountTable, table=True):
    """``orders``: the latest known state of every order, upserted by ``order_id``.

    A rowid table (not WITHOUT ROWID) so that rowid records first-seen order, the tie-breaker
    for orders created in the same microsecond.
    """

    __tablename__ = "orders"
    __table_args__ = (
        Index("ix_orders_datetime", "datetime"),
        Index("ix_orders_status", "status"),
    )

    order_id: str = Field(primary_key=True)
    account_id: str
    vt_symbol: str
    direction: str
    offset: str
    type: str
    price: float
    volume: float
    traded: float
    traded_price: float
    status: str
    datetime: int  # creation time, epoch microseconds
    update_time: int | None = None  # epoch microseconds
    reference: str
    status_msg: str


class TradeRow(_AccountTable, table=True):
    """``trades``: every fill once. ``trade_id`` is unique, so a replayed fill is ignored.

    ``id`` (the rowid) records arrival order: CTP stamps fills to the second only, so many
    fills share a ``datetime`` and arrival order is the faithful tie-breaker.
    """

    __tablename__ = "trades"
    __table_args__ = (
        UniqueConstraint("trade_id", name="uq_trades_trade_id"),
        Index("ix_trades_datetime", "datetime"),
    )

    id: int | None = Field(default=None, primary_key=True)
    trade_id: str
    account_id: str
    order_id: str
    vt_symbol: str
    direction: str
    offset: str
    price: float
    volume: float
    datetime: int  # epoch microseconds
    commission: float
    reference: str


class PositionRow(_AccountTable, table=True):
    """``positions``: the account's current positions, replaced as a whole set.

    ``datetime`` is when the set was saved (the same for every row of one snapshot).
    """

    __tablename__ = "positions"
    __table_args__ = (UniqueConstraint("vt_symbol", "direction", name="uq_positions_symbol_direction"),)

    id: int | None = Field(default=None, primary_key=True)
    account_id: str
    vt_symbol: str
    direction: str
    volume: float
    yd_volume: float
    frozen: float
    yd_frozen: float
    price: float  # average cost
    pnl: float
    last_price: float
    margin: float
    datetime: int  # snapshot time, epoch microseconds


class AccountSnapshotRow(_AccountTable, table=True):
    """``account_snapshots``: the equity curve, one appended row per snapshot."""

    __tablename__ = "account_snapshots"
    __table_args__ = (Index("ix_account_snapshots_datetime", "datetime"),)

    id: int | None = Field(default=None, primary_key=True)
    account_id: str
    datetime: int  # snapshot time, epoch microseconds
    balance: float
    available: float
    margin: float
    frozen: float
    commission: float
    close_pnl: float
    position_pnl: float
    pre_balance: float
    trading_day: str


class StrategyTriggerRow(_AccountTable, table=True):
    """``strategy_triggers``: what each strategy instance decided, when and why.

    AUTOINCREMENT so an id, once shown to the operator, is never reused even if old rows are
    purged later.
    """

    __tablename__ = "strategy_triggers"
    __table_args__ = (
        Index("ix_strategy_triggers_datetime", "datetime"),
        {"sqlite_autoincrement": True},
    )

    id: int | None = Field(default=None, primary_key=True)
    account_id: str
    datetime: int  # epoch microseconds
    instance: str
    vt_symbol: str
    condition: str
    price: float
    action: str
    result: str
    order_id: str
    error: str


class BarRow(_AccountTable, table=True):
    """``bars``: bars of subscribed contracts (1-minute) for strategy warm-up.

    Unique on (vt_symbol, interval, datetime): a re-saved bar replaces the earlier version. The
    unique index also serves "last N bars of a symbol".
    """

    __tablename__ = "bars"
    __table_args__ = (
        UniqueConstraint("vt_symbol", "interval", "datetime", name="uq_bars_symbol_interval_dt"),
    )

    id: int | None = Field(default=None, primary_key=True)
    account_id: str
    vt_symbol: str
    interval: str
    datetime: int  # bar start, epoch microseconds
    open_price: float
    high_price: float
    low_price: float
    close_price: float
    volume: float
    turnover: float
    open_interest: float


class ConditionalOrderRow(_AccountTable, table=True):
    """``conditional_orders``: every conditional order and its latest state, upserted by
    ``cond_id``; written before the trader says anything about it (and TRIGGERED before its
    order is sent: it fires at most once, see ``core/conditional.py``)."""

    __tablename__ = "conditional_orders"
    __table_args__ = (
        Index("ix_conditional_orders_state", "state"),
        Index("ix_conditional_orders_created_at", "created_at"),
    )

    cond_id: str = Field(primary_key=True)
    account_id: str
    vt_symbol: str
    kind: str
    source: str
    op: str
    trigger_price: float
    direction: str
    offset: str
    volume: float
    price_type: str
    price: float
    offset_ticks: int
    trailing: float
    expiry: str
    trading_day: str
    reference: str
    state: str
    message: str
    order_id: str
    created_at: int  # epoch microseconds
    updated_at: int  # epoch microseconds
    triggered_at: int | None = None  # epoch microseconds
