"""``AccountDatabase``: one account's SQLite file, read and written in ``core.models`` objects.

One file per account, ``<data_dir>/trading_<ACCOUNT_ID>.db`` (``database_path``). Its one
writer is the account's trader process; other processes (console, tools) may open it with
``readonly=True`` at the same time (WAL lets readers proceed while the writer commits).

Every ``save_*`` method has committed its transaction when it returns. The trader writes an
order or trade BEFORE reporting it to the manager, so anything the manager has seen survives a
crash of the trader process.

Why raw ``sqlite3`` underneath the sqlmodel tables: the order path (manager -> trader -> sim ->
reply) has a 1 ms p99 budget and persists each order 2-3 times on it. An ORM session costs
hundreds of microseconds per write; a prepared statement on a long-lived sqlite3 connection
costs tens. So the table classes (``storage/tables.py``) stay the single description of the
schema, SQLAlchemy Core compiles every statement from them ONCE at import time, and the
statements run on one ``sqlite3`` connection whose statement cache keeps them prepared. The
conversion between rows and structs is generated from the same table classes
(``storage/mappers.py``). Rows never leave this module: callers get and give ``core.models``
structs only.

Conventions (see ``storage/tables.py``): enums by NAME; datetimes as INTEGER epoch
microseconds, returned as tz-aware ``CHINA_TZ`` datetimes (a naive datetime is taken to be
China time; an aware one in another zone comes back as the same instant in ``CHINA_TZ``).
``since`` is inclusive and applies to the row's main time (an order's creation time). ``limit``
keeps the most recent N rows; every list is returned oldest first.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple

from core.models import (
    ACTIVE_STATUSES,
    Account,
    Bar,
    ConditionalOrder,
    CondState,
    EquityPoint,
    Order,
    Position,
    StrategyTrigger,
    Trade,
)
from storage.mappers import build_mapper, from_epoch_us, mapper_from_source, to_epoch_us
from storage.migrations import SchemaVersionError, latest_version, migrate, schema_version

BUSY_TIMEOUT_S = 5.0
"""How long a statement waits for a lock held by another connection before failing. Readers
never block the WAL writer; this covers checkpoints and a second writer opened by mistake.
Waiting is preferred to failing: a failed ``save_order`` means an order that cannot be reported."""

CHECKPOINT_TICK_S = 0.2
"""The writer's checkpoint thread looks this often and checkpoints after a tick with no writes."""

CHECKPOINT_MAX_AGE_S = 5.0
"""Under writes that never pause, checkpoint anyway at least this often."""

WAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024
"""After a checkpoint, a -wal file grown past this by a burst is truncated back to it."""


def database_path(data_dir: Path | str, account_id: str) -> Path:
    """``<data_dir>/trading_<ACCOUNT_ID>.db``; ValueError if the id cannot be a file name."""
    if not account_id or account_id in (".", "..") or any(ch in account_id for ch in "/\\\0"):
        raise ValueError(f"account id {account_id!r} cannot be used in a database file name")
    return Path(data_dir) / f"trading_{account_id}.db"


# --- SQL, compiled once from the table classes ------------------------------------------------
#
# SQLAlchemy compiles every statement and ``build_mapper`` generates every mapper's source from
# the table classes, once; the result (plain strings) is kept in ``__pycache__`` next to this
# file, under a key of the sources it was made from (this module, the tables, the mappers, the
# models, SQLAlchemy's and sqlmodel's own files), so a trader starts without importing SQLAlchemy
# or sqlmodel (about 0.3 s of CPU and 15 MB): any change to one of them compiles afresh.


class _Query(NamedTuple):
    """A compiled read: SQL with ``:name`` parameters plus the values SQLAlchemy bound at
    compile time (the IN list of statuses, the ``OFFSET 0`` the SQLite dialect adds to every
    LIMIT), merged under the caller's parameters."""

    sql: str
    defaults: dict[str, Any]


#: (mapper name, table name, model, supplied columns): every table's mapper
_MAPPED: tuple[tuple[str, str, type[Any], tuple[str, ...]], ...] = (
    ("order", "orders", Order, ()),
    ("trade", "trades", Trade, ()),
    # A positions row carries the time its set was saved, which Position does not have.
    ("position", "positions", Position, ("datetime",)),
    # A snapshot's time is the caller's ``at`` (it overrides Account.datetime) and loads into it.
    ("snapshot", "account_snapshots", Account, ("datetime",)),
    ("trigger", "strategy_triggers", StrategyTrigger, ()),
    ("bar", "bars", Bar, ()),
    ("conditional", "conditional_orders", ConditionalOrder, ()),
)
_RECENT_TABLES = ("trades", "account_snapshots", "strategy_triggers")


def _compile() -> dict[str, Any]:
    """Every statement (name -> SQL, or [SQL, defaults] for a read) and every mapper (name ->
    columns, supplied, source), compiled from the table classes with SQLAlchemy."""
    from sqlalchemy import Table, and_, bindparam, delete, func, literal_column, select
    from sqlalchemy.dialects import sqlite
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert
    from sqlalchemy.sql import ClauseElement

    from storage.tables import ACCOUNT_METADATA

    # qmark for the hot writes (tuples bind fastest); named for the reads (clearer, not hot).
    qmark = sqlite.dialect(paramstyle="qmark")
    named = sqlite.dialect(paramstyle="named")
    tables: dict[str, Table] = dict(ACCOUNT_METADATA.tables)
    mappers = {
        name: build_mapper(tables[table], model, supplied=supplied)
        for name, table, model, supplied in _MAPPED
    }

    def query(statement: ClauseElement) -> list[Any]:
        # render_postcompile expands IN (...) into plain named parameters now, not per execution.
        compiled = statement.compile(dialect=named, compile_kwargs={"render_postcompile": True})
        return [str(compiled), dict(compiled.params)]

    def insert(
        table: Table, columns: Sequence[str], *, conflict: Sequence[str] = (), update: bool = False
    ) -> str:
        """INSERT of ``columns`` as ``?`` parameters in exactly that order (checked),
        optionally with an ON CONFLICT clause."""
        stmt = sqlite_insert(table).values({name: bindparam(name) for name in columns})
        if conflict and update:
            stmt = stmt.on_conflict_do_update(
                index_elements=list(conflict),
                set_={name: stmt.excluded[name] for name in columns if name not in conflict},
            )
        elif conflict:
            stmt = stmt.on_conflict_do_nothing(index_elements=list(conflict))
        compiled = stmt.compile(dialect=qmark)
        if tuple(compiled.positiontup or ()) != tuple(columns):
            raise RuntimeError(f"{table.name}: compiled parameter order {compiled.positiontup} != {columns}")
        return str(compiled)

    def recent(
        table: Table,
        columns: Sequence[str],
        *,
        since: bool,
        where: ClauseElement | None = None,
        tiebreak: str = "id",
    ) -> list[Any]:
        """SELECT the most recent ``:limit`` rows newest first (callers reverse), by
        ``datetime`` then rowid (arrival order), optionally ``datetime >= :since``."""
        stmt = select(*(table.c[name] for name in columns))
        if where is not None:
            stmt = stmt.where(where)
        if since:
            stmt = stmt.where(table.c.datetime >= bindparam("since", None))
        stmt = stmt.order_by(table.c.datetime.desc(), literal_column(tiebreak).desc()).limit(
            bindparam("limit", None)
        )
        return query(stmt)

    def equity(since: bool, thinned: bool) -> list[Any]:
        """The newest ``:limit`` points (``datetime >= :since``); ``thinned``: only the last
        point of each ``:every`` microseconds (datetimes are integer microseconds)."""
        t = tables["account_snapshots"]
        stmt = select(
            t.c.datetime,
            t.c.balance,
            t.c.available,
            t.c.margin,
            (t.c.close_pnl + t.c.position_pnl - t.c.commission).label("pnl"),
        )
        if since:
            stmt = stmt.where(t.c.datetime >= bindparam("since", None))
        if thinned:
            last = select(func.max(t.c.id))
            if since:
                last = last.where(t.c.datetime >= bindparam("since", None))
            stmt = stmt.where(t.c.id.in_(last.group_by(t.c.datetime // bindparam("every", None))))
        return query(stmt.order_by(t.c.datetime.desc(), t.c.id.desc()).limit(bindparam("limit", None)))

    orders, positions, bars = tables["orders"], tables["positions"], tables["bars"]
    cols = {name: m.columns for name, m in mappers.items()}
    sql: dict[str, Any] = {
        "upsert_order": insert(orders, cols["order"], conflict=("order_id",), update=True),
        # DO NOTHING on trade_id only (not INSERT OR IGNORE, which would also swallow NOT NULL errors).
        "insert_trade": insert(tables["trades"], cols["trade"], conflict=("trade_id",)),
        "insert_position": insert(positions, cols["position"]),
        "delete_positions": query(delete(positions)),
        "insert_snapshot": insert(tables["account_snapshots"], cols["snapshot"]),
        "insert_trigger": insert(tables["strategy_triggers"], cols["trigger"]),
        "upsert_bar": insert(bars, cols["bar"], conflict=("vt_symbol", "interval", "datetime"), update=True),
        "upsert_conditional": insert(
            tables["conditional_orders"], cols["conditional"], conflict=("cond_id",), update=True
        ),
        "select_order": query(
            select(*(orders.c[n] for n in cols["order"])).where(
                orders.c.order_id == bindparam("order_id", None)
            )
        ),
        "select_positions": query(
            select(*(positions.c[n] for n in cols["position"])).order_by(
                positions.c.vt_symbol, positions.c.direction
            )
        ),
        "select_bars": query(
            select(*(bars.c[n] for n in cols["bar"]))
            .where(
                bars.c.vt_symbol == bindparam("vt_symbol", None),
                bars.c.interval == bindparam("interval", None),
            )
            .order_by(bars.c.datetime.desc())
            .limit(bindparam("limit", None))
        ),
    }
    active = orders.c.status.in_(sorted(s.name for s in ACTIVE_STATUSES))
    for since in (False, True):
        for thinned in (False, True):
            sql[f"equity:{since}:{thinned}"] = equity(since, thinned)
        for active_only in (False, True):
            sql[f"orders:{since}:{active_only}"] = recent(
                orders, cols["order"], since=since, where=active if active_only else None, tiebreak="rowid"
            )
        for table in _RECENT_TABLES:
            sql[f"{table}:{since}"] = recent(tables[table], cols[_MAPPED_BY_TABLE[table]], since=since)
        trades, triggers = tables["trades"], tables["strategy_triggers"]
        for until in (False, True):
            for symbol in (False, True):
                conditions = []
                if until:
                    conditions.append(trades.c.datetime < bindparam("until", None))
                if symbol:
                    conditions.append(trades.c.vt_symbol == bindparam("vt_symbol", None))
                where = and_(*conditions) if conditions else None
                sql[f"trades:{since}:{until}:{symbol}"] = recent(
                    trades, cols["trade"], since=since, where=where
                )
        sql[f"strategy_triggers_until:{since}"] = recent(
            triggers, cols["trigger"], since=since, where=triggers.c.datetime < bindparam("until", None)
        )
    conditionals = tables["conditional_orders"]
    live = sorted(s.name for s in CondState if s.is_live)
    for live_only in (False, True):
        stmt = select(*(conditionals.c[n] for n in cols["conditional"]))
        if live_only:
            stmt = stmt.where(conditionals.c.state.in_(live))
        stmt = stmt.order_by(conditionals.c.created_at.desc(), literal_column("rowid").desc())
        sql[f"conditional_orders:{live_only}"] = query(stmt.limit(bindparam("limit", None)))
    return {
        "sql": sql,
        "mappers": {
            name: {"columns": list(m.columns), "supplied": list(m.supplied), "source": m.source}
            for name, m in mappers.items()
        },
    }


_MAPPED_BY_TABLE = {table: name for name, table, _, _ in _MAPPED}


def _compiled_key() -> str:
    """What the compiled statements are made of: the sources of this module, the tables, the
    mappers and the models, and SQLAlchemy's and sqlmodel's own files (path, size, mtime)."""
    import hashlib
    import importlib.util

    digest = hashlib.sha256()
    here = Path(__file__).resolve().parent
    for source in (
        here / "database.py",
        here / "tables.py",
        here / "mappers.py",
        here.parent / "core" / "models.py",
    ):
        digest.update(source.read_bytes())
    for package in ("sqlalchemy", "sqlmodel"):
        spec = importlib.util.find_spec(package)
        origin = Path(spec.origin) if spec is not None and spec.origin else None
        if origin is not None and origin.exists():
            stat = origin.stat()
            digest.update(f"{origin}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:24]


def compiled_cache_path() -> Path:
    """The file the compiled statements are kept in (see above)."""
    return Path(__file__).resolve().parent / "__pycache__" / f"account-sql-{_compiled_key()}.json"


def _load_compiled() -> dict[str, Any]:
    """The compiled statements from the cache, or compiled now (and kept, if the directory
    can be written: a read-only install compiles at every start, as before the cache)."""
    import json
    import os

    path = compiled_cache_path()
    try:
        compiled = json.loads(path.read_text())
        if isinstance(compiled, dict) and compiled.get("key") == path.stem:
            return compiled
    except (OSError, ValueError):
        pass
    compiled = {"key": path.stem, **_compile()}
    with suppress(OSError):
        path.parent.mkdir(exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(compiled))
        os.replace(tmp, path)  # whole or not at all: another process may read it meanwhile
        for stale in path.parent.glob("account-sql-*.json"):  # from sources since changed
            if stale != path:
                stale.unlink(missing_ok=True)
    return compiled


_COMPILED = _load_compiled()
_STATEMENTS: dict[str, Any] = _COMPILED["sql"]

# Model <-> row conversion, generated from the table classes. ``columns`` (every column but the
# rowid alias ``id``, which SQLite assigns) is the order of the parameters of every INSERT below
# and of the columns of every SELECT a mapper loads from.
_ORDER, _TRADE, _POSITION, _SNAPSHOT, _TRIGGER, _BAR, _CONDITIONAL = (
    mapper_from_source(table, model, **_COMPILED["mappers"][name]) for name, table, model, _ in _MAPPED
)
MAPPERS = (_ORDER, _TRADE, _POSITION, _SNAPSHOT, _TRIGGER, _BAR, _CONDITIONAL)
"""Every table's mapper (one per table of ``ACCOUNT_METADATA``)."""


def _query(name: str) -> _Query:
    sql, defaults = _STATEMENTS[name]
    return _Query(sql, defaults)


_UPSERT_ORDER: str = _STATEMENTS["upsert_order"]
_INSERT_TRADE: str = _STATEMENTS["insert_trade"]
_INSERT_POSITION: str = _STATEMENTS["insert_position"]
_DELETE_POSITIONS = _query("delete_positions")
_INSERT_SNAPSHOT: str = _STATEMENTS["insert_snapshot"]
_INSERT_TRIGGER: str = _STATEMENTS["insert_trigger"]
_UPSERT_BAR: str = _STATEMENTS["upsert_bar"]
_UPSERT_CONDITIONAL: str = _STATEMENTS["upsert_conditional"]
_SELECT_ORDER = _query("select_order")
_SELECT_POSITIONS = _query("select_positions")
_SELECT_BARS = _query("select_bars")


@cache
def _select_conditionals(live_only: bool) -> _Query:
    return _query(f"conditional_orders:{live_only}")


@cache
def _select_equity(since: bool, thinned: bool = False) -> _Query:
    """The newest ``:limit`` points (``datetime >= :since``); ``thinned``: only the last
    point of each ``:every`` microseconds."""
    return _query(f"equity:{since}:{thinned}")


@cache
def _select_orders(since: bool, active_only: bool) -> _Query:
    return _query(f"orders:{since}:{active_only}")


@cache
def _select_trades(since: bool, until: bool, symbol: bool) -> _Query:
    """Trades newest first, ``datetime >= :since``, ``< :until``, of ``:vt_symbol``."""
    return _query(f"trades:{since}:{until}:{symbol}")


@cache
def _select_triggers_until(since: bool) -> _Query:
    return _query(f"strategy_triggers_until:{since}")


@cache
def _select_recent(table_name: str, since: bool) -> _Query:
    return _query(f"{table_name}:{since}")


# --- the database ------------------------------------------------------------------------------


def checkpoint_due(previous: int, seen: int, done: int, age: float, max_age: float) -> bool:
    """The checkpoint thread's rule, from the writer's change counter at the previous tick
    (``previous``), now (``seen``) and at the last checkpoint (``done``), and the seconds since
    that checkpoint (``age``): checkpoint when something was written since, and either the
    last tick saw no writes (a pause) or ``max_age`` has passed (writes that never pause)."""
    if seen == done:
        return False
    return seen == previous or age >= max_age


class _Checkpointer:
    """A daemon thread with its own connection that runs PASSIVE WAL checkpoints when the
    writer is quiet.

    A checkpoint fsyncs the -wal file and then the database file. On ext4 an fsync commits the
    filesystem journal, and a write() that appends to the WAL meanwhile (a metadata change)
    waits for that commit: measured here, a save during a checkpoint takes 4-9 ms instead of
    30 us. Orders arrive in bursts, so the thread looks every ``tick`` seconds and checkpoints
    only after a tick with no writes. Under writes that never pause it checkpoints anyway
    every ``max_age`` seconds, so the WAL cannot grow without bound. A checkpoint taken in a
    pause usually copies every frame (unless a reader still holds an old snapshot), which lets
    the writer restart the WAL from its beginning: overwriting the file instead of growing it.
    """

    def __init__(self, path: Path, changes: Callable[[], int], tick: float, max_age: float) -> None:
        self._name = path.name
        self._changes = changes
        self._tick = tick
        self._max_age = max_age
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._conn = sqlite3.connect(
            path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        # NORMAL as on the writer: the WAL is fsynced before its frames are copied and the
        # database file after, so a checkpoint never leaves a torn database behind.
        self._conn.execute("PRAGMA synchronous = NORMAL")
        self._thread = threading.Thread(target=self._loop, name=f"checkpoint:{path.name}", daemon=True)
        self._thread.start()

    def run(self) -> tuple[int, int, int]:
        with self._lock:
            row = self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return (int(row[0]), int(row[1]), int(row[2]))

    def _loop(self) -> None:
        seen = done = self._changes()
        last = time.monotonic()
        failing = ""  # the last failure, said once (a full disk fails every round)
        while not self._stop.wait(self._tick):
            try:
                # total_changes counts rows written by the writer connection: cheap to read
                # and costs the save path nothing.
                previous, seen = seen, self._changes()
                if not checkpoint_due(previous, seen, done, time.monotonic() - last, self._max_age):
                    continue
                self.run()
            except Exception as exc:
                # Nothing is lost: frames stay in the WAL and a later round (or the writer's
                # close) copies them. Keep the thread alive and say so in the trader's log,
                # once per distinct failure.
                if str(exc) != failing:
                    failing = str(exc)
                    logging.getLogger(__name__).error(
                        "WAL checkpoint of %s failed: %s (retried; said once)", self._name, exc
                    )
            else:
                if failing:
                    failing = ""
                    logging.getLogger(__name__).warning("WAL checkpoint of %s works again", self._name)
            done, last = seen, time.monotonic()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join()
        with self._lock:
            self._conn.close()


class AccountDatabase:
    """One account's SQLite database: the trader's writer, or a read-only view for others.

    Opening for writing creates the directory and file if missing, switches the file to WAL and
    applies pending migrations. Opening ``readonly=True`` requires an existing file already at
    this program's schema version (only the writer migrates) and rejects writes.

    All methods are synchronous and thread-safe (one lock serializes the single connection).
    Every ``save_*`` has committed when it returns.

    WAL checkpoints (copying committed pages from the -wal file into the database file, with
    fsyncs) cost milliseconds. SQLite would run them inside whichever commit crosses its
    threshold (1000 pages), i.e. inside a ``save_order`` on the order path. The writer
    therefore turns automatic checkpoints off and leaves them to a daemon thread with its own
    connection that checkpoints in pauses between writes (see ``_Checkpointer``; sqlite3
    releases the GIL while it works, and a PASSIVE checkpoint takes no lock the writer needs).
    ``checkpoint_tick=None`` restores SQLite's automatic checkpoints instead.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        readonly: bool = False,
        checkpoint_tick: float | None = CHECKPOINT_TICK_S,
    ) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self._lock = threading.RLock()  # reentrant: saves nest inside batch()
        self._batch_depth = 0
        self._checkpointer: _Checkpointer | None = None
        if readonly:
            self._conn = self._open_readonly()
            return
        self._conn = self._open_writer()
        if checkpoint_tick is not None:
            conn = self._conn
            try:
                self._checkpointer = _Checkpointer(
                    self.path, lambda: conn.total_changes, checkpoint_tick, CHECKPOINT_MAX_AGE_S
                )
            except BaseException:
                self._conn.close()
                raise
            # Only once the thread runs: from here on nobody else checkpoints during commits.
            self._conn.execute("PRAGMA wal_autocheckpoint = 0")

    def _open_writer(self) -> sqlite3.Connection:
        # Trading records: keep a new data directory private to the user.
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # isolation_level=None: autocommit, so a lone statement is its own transaction and is
        # committed when execute() returns; multi-statement writes use explicit BEGIN/COMMIT.
        # check_same_thread=False: a gateway thread may save too; self._lock serializes use.
        conn = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise sqlite3.OperationalError(f"{self.path}: cannot switch to WAL (journal_mode={mode})")
            # synchronous=NORMAL in WAL mode: a commit appends its frames to the -wal file with
            # write() and returns without fsync (fsync happens at checkpoints). Once write()
            # returned, the bytes are in the kernel's page cache, which outlives the process:
            # after a SIGKILL or a crash of the trader, the next opener replays the WAL and
            # sees every committed transaction. Only an OS crash or power loss can drop the
            # last commits (the file stays consistent, never corrupt). FULL would fsync every
            # commit, costing milliseconds on the 1 ms order path for protection against a
            # failure that also takes the exchange connection down with it.
            conn.execute("PRAGMA synchronous = NORMAL")
            # No foreign keys in this schema; state it so a build default cannot add checks.
            conn.execute("PRAGMA foreign_keys = OFF")
            conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT_BYTES}")
            migrate(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _open_readonly(self) -> sqlite3.Connection:
        if not self.path.exists():
            raise FileNotFoundError(f"no account database at {self.path}")
        # mode=ro: SQLite itself refuses writes. A WAL reader still maps the -shm index, which
        # works as long as the same user can write to the directory (our data dir).
        uri = self.path.resolve().as_uri() + "?mode=ro"
        conn = sqlite3.connect(
            uri, uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        try:
            version, latest = schema_version(conn), latest_version()
            if version != latest:
                raise SchemaVersionError(
                    f"{self.path}: schema version {version}, this program reads version {latest}"
                    + ("; start the account's trader once to migrate it" if version < latest else "")
                )
        except BaseException:
            conn.close()
            raise
        return conn

    # --- lifecycle ---

    def close(self) -> None:
        """Stop the checkpoint thread and close the connection (idempotent). The last
        connection to a file checkpoints the WAL and removes it."""
        if self._checkpointer is not None:
            self._checkpointer.stop()
        with self._lock:
            self._conn.close()

    def checkpoint(self) -> tuple[int, int, int]:
        """Run a PASSIVE WAL checkpoint now: (busy, wal frames, frames checkpointed). Uses the
        checkpoint thread's connection when there is one, so saves are not queued behind it."""
        if self._checkpointer is not None:
            return self._checkpointer.run()
        with self._lock:
            row = self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return (int(row[0]), int(row[1]), int(row[2]))

    def __enter__(self) -> AccountDatabase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"AccountDatabase({str(self.path)!r}, readonly={self.readonly})"

    @property
    def schema_version(self) -> int:
        """The file's schema version (``PRAGMA user_version``)."""
        with self._lock:
            return schema_version(self._conn)

    def pragma(self, name: str) -> Any:
        """Value of a connection/database PRAGMA (``journal_mode``, ``synchronous``...), for
        diagnostics and tests."""
        if not name.isidentifier():
            raise ValueError(f"not a pragma name: {name!r}")
        with self._lock:
            row = self._conn.execute(f"PRAGMA {name}").fetchone()
        return None if row is None else row[0]

    # --- writes (hot: orders and trades) ---

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Writes inside share ONE commit, made when the block ends.

        Used around one gateway call, which may save an order several times (SUBMITTING,
        NOTTRADED, fills): one commit instead of one per write. The commit is made even when
        the block raises: each write in it is a true record of something that happened (an
        order the venue has), so nothing is rolled back. Nested batches join the outer one.
        Other threads' saves wait until the batch ends.
        """
        with self._lock:
            if self._batch_depth:
                self._batch_depth += 1
                try:
                    yield
                finally:
                    self._batch_depth -= 1
                return
            self._conn.execute("BEGIN IMMEDIATE")
            self._batch_depth = 1
            try:
                yield
            finally:
                self._batch_depth = 0
                try:
                    self._conn.execute("COMMIT")
                except BaseException:
                    # end the failed transaction, so later writes are not swallowed by it
                    with suppress(sqlite3.Error):
                        self._conn.execute("ROLLBACK")
                    raise

    def save_order(self, order: Order) -> None:
        """Insert or replace the order's row (by ``order_id``) with this, its latest state.

        Storage keeps the last write; rejecting stale status regressions is the OMS's job."""
        params = _ORDER.params(order)
        with self._lock:
            self._conn.execute(_UPSERT_ORDER, params)

    def save_trade(self, trade: Trade) -> bool:
        """Record a fill. True if new; False if ``trade_id`` exists (the stored row is kept
        as it was: replayed fills after a reconnect are idempotent)."""
        params = _TRADE.params(trade)
        with self._lock:
            return self._conn.execute(_INSERT_TRADE, params).rowcount == 1

    # --- writes (periodic) ---

    def save_positions(self, positions: Iterable[Position], at: datetime) -> None:
        """Replace the stored set of current positions with ``positions``, stamped ``at``.

        Atomic: readers see the old set or the new one. Two positions with the same
        (vt_symbol, direction) raise ``sqlite3.IntegrityError`` and keep the old set."""
        at_us = to_epoch_us(at)
        rows = [_POSITION.params(p, at_us) for p in positions]
        with self._lock:
            self._transaction(((_DELETE_POSITIONS.sql, None), (_INSERT_POSITION, rows)))

    def save_account(self, account: Account, at: datetime) -> None:
        """Append one point of the equity curve (``at`` overrides ``account.datetime``)."""
        params = _SNAPSHOT.params(account, to_epoch_us(at))
        with self._lock:
            self._conn.execute(_INSERT_SNAPSHOT, params)

    def save_trigger(self, trigger: StrategyTrigger) -> int:
        """Append a strategy trigger record; returns its id (never reused)."""
        params = _TRIGGER.params(trigger)
        with self._lock:
            row_id = self._conn.execute(_INSERT_TRIGGER, params).lastrowid
        assert row_id is not None  # an INSERT always sets it
        return row_id

    def save_conditional(self, cond: ConditionalOrder) -> None:
        """Insert or replace a conditional order's row (by ``cond_id``) with its latest state."""
        params = _CONDITIONAL.params(cond)
        with self._lock:
            self._conn.execute(_UPSERT_CONDITIONAL, params)

    def save_bar(self, bar: Bar) -> None:
        """Insert or replace a bar by (vt_symbol, interval, datetime)."""
        params = _BAR.params(bar)
        with self._lock:
            self._conn.execute(_UPSERT_BAR, params)

    def save_bars(self, bars: Iterable[Bar]) -> None:
        """``save_bar`` for many bars in one transaction (history downloads, warm-up)."""
        rows = [_BAR.params(b) for b in bars]
        with self._lock:
            self._transaction(((_UPSERT_BAR, rows),))

    def _transaction(self, steps: Sequence[tuple[str, list[tuple[Any, ...]] | None]]) -> None:
        """Run statements (``None`` params: once; a list: executemany) in one transaction.
        Caller holds the lock."""
        conn = self._conn
        if self._batch_depth:
            # inside batch(): a savepoint keeps these steps all-or-nothing
            conn.execute("SAVEPOINT steps")
            try:
                for sql, params in steps:
                    if params is None:
                        conn.execute(sql)
                    else:
                        conn.executemany(sql, params)
                conn.execute("RELEASE steps")
            except BaseException:
                with suppress(sqlite3.Error):  # the whole transaction may be gone with the error
                    conn.execute("ROLLBACK TO steps")
                    conn.execute("RELEASE steps")
                raise
            return
        # IMMEDIATE takes the write lock at BEGIN: no deferred read->write upgrade that could
        # fail with SQLITE_BUSY halfway through.
        conn.execute("BEGIN IMMEDIATE")
        try:
            for sql, params in steps:
                if params is None:
                    conn.execute(sql)
                else:
                    conn.executemany(sql, params)
            conn.execute("COMMIT")
        except BaseException:
            # a failed COMMIT (a full disk) may have rolled back already: keep its own error
            with suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise

    # --- reads ---

    def _fetch(self, query: _Query, params: dict[str, Any]) -> list[Any]:
        bound = {**query.defaults, **params}
        with self._lock:
            return self._conn.execute(query.sql, bound).fetchall()

    @staticmethod
    def _recent_params(since: datetime | None, limit: int) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": max(int(limit), 0)}
        if since is not None:
            params["since"] = to_epoch_us(since)
        return params

    def load_orders(
        self, *, since: datetime | None = None, active_only: bool = False, limit: int = 1000
    ) -> list[Order]:
        """The most recent ``limit`` orders created at or after ``since``, oldest first;
        ``active_only`` keeps SUBMITTING / NOTTRADED / PARTTRADED orders."""
        rows = self._fetch(_select_orders(since is not None, active_only), self._recent_params(since, limit))
        return list(map(_ORDER.from_row, reversed(rows)))

    def load_order(self, order_id: str) -> Order | None:
        """One order by id, or None."""
        rows = self._fetch(_SELECT_ORDER, {"order_id": order_id})
        return _ORDER.from_row(rows[0]) if rows else None

    def load_trades(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        vt_symbol: str | None = None,
        limit: int = 1000,
    ) -> list[Trade]:
        """The most recent ``limit`` trades at or after ``since`` and before ``until`` (of
        ``vt_symbol``, if given), oldest first (ties: arrival)."""
        params = self._recent_params(since, limit)
        if until is not None:
            params["until"] = to_epoch_us(until)
        if vt_symbol is not None:
            params["vt_symbol"] = vt_symbol
        query = _select_trades(since is not None, until is not None, vt_symbol is not None)
        rows = self._fetch(query, params)
        return list(map(_TRADE.from_row, reversed(rows)))

    def load_positions(self) -> list[Position]:
        """The last saved set of positions, ordered by (vt_symbol, direction)."""
        return list(map(_POSITION.from_row, self._fetch(_SELECT_POSITIONS, {})))

    def load_account_snapshots(self, *, since: datetime | None = None, limit: int = 5000) -> list[Account]:
        """The most recent ``limit`` account snapshots, oldest first; ``Account.datetime`` is
        the snapshot time."""
        rows = self._fetch(
            _select_recent("account_snapshots", since is not None), self._recent_params(since, limit)
        )
        return list(map(_SNAPSHOT.from_row, reversed(rows)))

    def load_equity(
        self, *, since: datetime | None = None, limit: int = 5000, every: float | None = None
    ) -> list[EquityPoint]:
        """The equity curve, oldest first. ``pnl`` = close_pnl + position_pnl - commission:
        the trading result of the day net of fees, unaffected by deposits and withdrawals
        (which move ``balance`` but are not P&L). ``every`` (seconds): the last point of each
        such slice of time only (``limit`` then counts slices)."""
        params = self._recent_params(since, limit)
        thinned = every is not None and every > 0
        if thinned:
            params["every"] = max(1, round(every * 1_000_000))  # type: ignore[operator]
        rows = self._fetch(_select_equity(since is not None, thinned), params)
        return [
            EquityPoint(datetime=from_epoch_us(r[0]), balance=r[1], available=r[2], margin=r[3], pnl=r[4])
            for r in reversed(rows)
        ]

    def load_triggers(
        self, *, since: datetime | None = None, until: datetime | None = None, limit: int = 1000
    ) -> list[StrategyTrigger]:
        """The most recent ``limit`` strategy triggers (at or after ``since``, before ``until``),
        oldest first."""
        params = self._recent_params(since, limit)
        query = _select_recent("strategy_triggers", since is not None)
        if until is not None:
            params["until"] = to_epoch_us(until)
            query = _select_triggers_until(since is not None)
        rows = self._fetch(query, params)
        return list(map(_TRIGGER.from_row, reversed(rows)))

    def load_conditionals(self, *, live_only: bool = False, limit: int = 1000) -> list[ConditionalOrder]:
        """The most recently created ``limit`` conditional orders, oldest first; ``live_only``
        keeps the PENDING and SUSPENDED ones."""
        rows = self._fetch(_select_conditionals(live_only), {"limit": max(int(limit), 0)})
        return list(map(_CONDITIONAL.from_row, reversed(rows)))

    def load_bars(self, vt_symbol: str, *, interval: str = "1m", limit: int = 1000) -> list[Bar]:
        """The last ``limit`` bars of ``vt_symbol``, oldest first."""
        rows = self._fetch(
            _SELECT_BARS, {"vt_symbol": vt_symbol, "interval": interval, "limit": max(int(limit), 0)}
        )
        return list(map(_BAR.from_row, reversed(rows)))
