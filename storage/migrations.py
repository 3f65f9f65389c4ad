"""Schema migrations of an account database, applied in order, never by deleting data.

The schema version lives in SQLite's ``PRAGMA user_version`` (0 = empty file). ``MIGRATIONS``
is an ordered list; step N brings a version N-1 file to version N. All pending steps run in one
``BEGIN IMMEDIATE`` transaction together with the ``user_version`` bump (SQLite DDL is
transactional), so a crash mid-upgrade leaves the file at its old version, untouched.

The DDL here is FROZEN text, not generated from ``storage/tables.py`` at run time: the table
classes describe the current schema, while step 1 must keep creating exactly what version 1
was, forever. To change the schema, edit the table class AND append a step (``ALTER TABLE ...
ADD COLUMN ... NOT NULL DEFAULT ...``, ``CREATE INDEX``, a new ``CREATE TABLE``, or the
create-copy-rename dance for anything SQLite cannot alter). ``tests/test_storage.py`` checks
that a freshly migrated file matches the table classes.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema step: the SQL statements that bring version ``version - 1`` to ``version``."""

    version: int
    summary: str
    statements: tuple[str, ...]


class SchemaVersionError(RuntimeError):
    """The file's schema version cannot be used by this program (too new, or too old to read)."""


_V1_STATEMENTS = (
    """CREATE TABLE orders (
        order_id VARCHAR NOT NULL,
        account_id VARCHAR NOT NULL,
        vt_symbol VARCHAR NOT NULL,
        direction VARCHAR NOT NULL,
        "offset" VARCHAR NOT NULL,
        type VARCHAR NOT NULL,
        price FLOAT NOT NULL,
        volume FLOAT NOT NULL,
        traded FLOAT NOT NULL,
        traded_price FLOAT NOT NULL,
        status VARCHAR NOT NULL,
        datetime INTEGER NOT NULL,
        update_time INTEGER,
        reference VARCHAR NOT NULL,
        status_msg VARCHAR NOT NULL,
        PRIMARY KEY (order_id)
    )""",
    "CREATE INDEX ix_orders_datetime ON orders (datetime)",
    "CREATE INDEX ix_orders_status ON orders (status)",
    """CREATE TABLE trades (
        id INTEGER NOT NULL,
        trade_id VARCHAR NOT NULL,
        account_id VARCHAR NOT NULL,
        order_id VARCHAR NOT NULL,
        vt_symbol VARCHAR NOT NULL,
        direction VARCHAR NOT NULL,
        "offset" VARCHAR NOT NULL,
        price FLOAT NOT NULL,
        volume FLOAT NOT NULL,
        datetime INTEGER NOT NULL,
        commission FLOAT NOT NULL,
        reference VARCHAR NOT NULL,
        PRIMARY KEY (id),
        CONSTRAINT uq_trades_trade_id UNIQUE (trade_id)
    )""",
    "CREATE INDEX ix_trades_datetime ON trades (datetime)",
    """CREATE TABLE positions (
        id INTEGER NOT NULL,
        account_id VARCHAR NOT NULL,
        vt_symbol VARCHAR NOT NULL,
        direction VARCHAR NOT NULL,
        volume FLOAT NOT NULL,
        yd_volume FLOAT NOT NULL,
        frozen FLOAT NOT NULL,
        yd_frozen FLOAT NOT NULL,
        price FLOAT NOT NULL,
        pnl FLOAT NOT NULL,
        last_price FLOAT NOT NULL,
        margin FLOAT NOT NULL,
        datetime INTEGER NOT NULL,
        PRIMARY KEY (id),
        CONSTRAINT uq_positions_symbol_direction UNIQUE (vt_symbol, direction)
    )""",
    """CREATE TABLE account_snapshots (
        id INTEGER NOT NULL,
        account_id VARCHAR NOT NULL,
        datetime INTEGER NOT NULL,
        balance FLOAT NOT NULL,
        available FLOAT NOT NULL,
        margin FLOAT NOT NULL,
        frozen FLOAT NOT NULL,
        commission FLOAT NOT NULL,
        close_pnl FLOAT NOT NULL,
        position_pnl FLOAT NOT NULL,
        pre_balance FLOAT NOT NULL,
        trading_day VARCHAR NOT NULL,
        PRIMARY KEY (id)
    )""",
    "CREATE INDEX ix_account_snapshots_datetime ON account_snapshots (datetime)",
    """CREATE TABLE strategy_triggers (
        id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
        account_id VARCHAR NOT NULL,
        datetime INTEGER NOT NULL,
        instance VARCHAR NOT NULL,
        vt_symbol VARCHAR NOT NULL,
        condition VARCHAR NOT NULL,
        price FLOAT NOT NULL,
        action VARCHAR NOT NULL,
        result VARCHAR NOT NULL,
        order_id VARCHAR NOT NULL,
        error VARCHAR NOT NULL
    )""",
    "CREATE INDEX ix_strategy_triggers_datetime ON strategy_triggers (datetime)",
    """CREATE TABLE bars (
        id INTEGER NOT NULL,
        account_id VARCHAR NOT NULL,
        vt_symbol VARCHAR NOT NULL,
        interval VARCHAR NOT NULL,
        datetime INTEGER NOT NULL,
        open_price FLOAT NOT NULL,
        high_price FLOAT NOT NULL,
        low_price FLOAT NOT NULL,
        close_price FLOAT NOT NULL,
        volume FLOAT NOT NULL,
        turnover FLOAT NOT NULL,
        open_interest FLOAT NOT NULL,
        PRIMARY KEY (id),
        CONSTRAINT uq_bars_symbol_interval_dt UNIQUE (vt_symbol, interval, datetime)
    )""",
)

_V2_STATEMENTS = (
    """CREATE TABLE conditional_orders (
        cond_id VARCHAR NOT NULL,
        account_id VARCHAR NOT NULL,
        vt_symbol VARCHAR NOT NULL,
        kind VARCHAR NOT NULL,
        source VARCHAR NOT NULL,
        op VARCHAR NOT NULL,
        trigger_price FLOAT NOT NULL,
        direction VARCHAR NOT NULL,
        "offset" VARCHAR NOT NULL,
        volume FLOAT NOT NULL,
        price_type VARCHAR NOT NULL,
        price FLOAT NOT NULL,
        offset_ticks INTEGER NOT NULL,
        trailing FLOAT NOT NULL,
        expiry VARCHAR NOT NULL,
        trading_day VARCHAR NOT NULL,
        reference VARCHAR NOT NULL,
        state VARCHAR NOT NULL,
        message VARCHAR NOT NULL,
        order_id VARCHAR NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        triggered_at INTEGER,
        PRIMARY KEY (cond_id)
    )""",
    "CREATE INDEX ix_conditional_orders_state ON conditional_orders (state)",
    "CREATE INDEX ix_conditional_orders_created_at ON conditional_orders (created_at)",
)

MIGRATIONS: list[Migration] = [
    Migration(
        1,
        "orders, trades, positions, account_snapshots, strategy_triggers, bars",
        _V1_STATEMENTS,
    ),
    Migration(2, "conditional_orders", _V2_STATEMENTS),
]


def latest_version(migrations: list[Migration] | None = None) -> int:
    """The version a file has after every step of ``migrations`` (default ``MIGRATIONS``)."""
    steps = MIGRATIONS if migrations is None else migrations
    return steps[-1].version if steps else 0


def schema_version(conn: sqlite3.Connection) -> int:
    """The file's schema version (``PRAGMA user_version``; 0 for a new, empty file)."""
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(
    conn: sqlite3.Connection,
    *,
    target: int | None = None,
    migrations: list[Migration] | None = None,
) -> int:
    """Bring the database to ``target`` (default: latest) and return the resulting version.

    ``conn`` must be in autocommit mode (``isolation_level=None``): this function owns the
    transaction. Raises ``SchemaVersionError`` if the file is newer than ``target`` (written
    by a newer program: downgrading could lose data, so it is refused, not attempted).
    """
    steps = MIGRATIONS if migrations is None else migrations
    versions = [step.version for step in steps]
    if versions != list(range(1, len(steps) + 1)):
        raise ValueError(f"migration versions must be 1..N in order, got {versions}")
    goal = latest_version(steps) if target is None else target
    # IMMEDIATE takes the write lock up front, so the version read below cannot change under
    # us (another writer opening the same file waits on busy_timeout instead of racing).
    conn.execute("BEGIN IMMEDIATE")
    try:
        current = schema_version(conn)
        if current > goal:
            raise SchemaVersionError(
                f"database schema version {current} is newer than this program's {goal}; "
                "upgrade qtrader-tui to open it"
            )
        for step in steps[current:goal]:
            for statement in step.statements:
                conn.execute(statement)
        if goal != current:
            # PRAGMA user_version is written inside the transaction: it commits (or rolls
            # back) together with the DDL above.
            conn.execute(f"PRAGMA user_version = {int(goal)}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return goal
