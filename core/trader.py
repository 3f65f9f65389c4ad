"""The trader: one account's gateway, OMS, risk checks and database.

Runs as its own OS process (``qtrader-trader --account-id DQ1 ...``, core/trader_process.py),
as an asyncio task inside the manager (embedded mode) or standalone with no manager. It is
the only writer of its account's database, and it writes every order and trade there BEFORE
reporting it, so nothing a manager or console has seen can be lost by a crash.

This module is the trader's state, lifecycle, gateway events and units of work. Its link to
the manager is core/trader_link.py (``ManagerLink``); what it does when asked, requests and
orders, is core/trader_requests.py (``RequestHandlers``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import importlib
import logging
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from config import AccountConfig, AppConfig
from config import paths as cfg_paths
from core.conditional import ConditionalBook
from core.models import (
    EXTERNAL,
    NOT_AT_VENUE,
    Account,
    Contract,
    EquityPoint,
    GatewayStatus,
    Order,
    Position,
    Status,
    Tick,
    Trade,
    TraderInfo,
    TradingState,
    now,
)
from core.oms import Oms, regresses
from core.protocol import MAX_WATCHLIST, Link, MessageType, Outgoing, Reply, Snapshot
from core.reconcile import Reconciliation
from core.reverse import Reversals
from core.risk import RiskEngine
from core.strategy_engine import StrategyEngine
from core.trader_link import LinkLogHandler, ManagerLink
from core.trader_process import (
    EXIT_ALREADY_RUNNING,
    EXIT_CONFIG,
    EXIT_OK,
    EXIT_VENUE_REFUSED,
    AccountBusy,
    AccountLock,
    main,
)
from core.trader_requests import RequestHandlers
from core.watchlist import WATCHLIST_FILE, load_watchlist
from gateways.base import Gateway

if TYPE_CHECKING:
    from storage import AccountDatabase

# what the rest of the code imports from here (the process entry's names included:
# ``qtrader-trader = core.trader:main``, and ``python -m core.trader`` is the worker)
__all__ = [
    "EXIT_ALREADY_RUNNING",
    "EXIT_CONFIG",
    "EXIT_OK",
    "EXIT_VENUE_REFUSED",
    "GATEWAYS",
    "AccountBusy",
    "Trader",
    "load_gateway_class",
    "main",
    "saved_trading_state",
]

GATEWAYS = {
    "sim": "gateways.sim:SimGateway",
    "ctp": "gateways.ctp:CtpGateway",
    "tqsdk": "gateways.tqsdk:TqsdkGateway",
}

RECENT_ORDERS = 300
RECENT_TRADES = 300
CANCEL_ON_STOP_WAIT = 3.0  # seconds to wait for cancel confirmations when stopping
ACCOUNT_PUSH_INTERVAL = 0.5  # seconds between live account pushes while prices move


def _gateway_event(method: Callable[..., None]) -> Callable[..., None]:
    """A gateway event handler never raises into the gateway.

    An exception here would abort the venue's own processing (the sim fills inside
    ``send_order``: a failing trade write would make a live order look refused). A
    storage failure halts the account instead; any other error is logged. Signals
    that strategies emit during the event are executed after it (see the engine).
    """

    @functools.wraps(method)
    def handler(self: Trader, *args: Any) -> None:
        self._event_depth += 1
        try:
            method(self, *args)
        except Exception as exc:
            self._event_failed(method.__name__, exc)
        finally:
            self._event_depth -= 1

    return handler


def _last_states(outbox: list[Outgoing]) -> list[Outgoing]:
    """One unit's messages with each order once, in its last state, where its last change
    was (a new order is SUBMITTING then NOTTRADED in one request: the manager hears the
    second; every state is the trader's and its strategies' all the same)."""
    seen: set[str] = set()
    kept: list[Outgoing] = []
    for message in reversed(outbox):
        if message[0] == "order":
            order_id = message[1].order_id
            if order_id in seen:
                continue
            seen.add(order_id)
        kept.append(message)
    if len(kept) == len(outbox):
        return outbox
    kept.reverse()
    return kept


class _SavedState(msgspec.Struct):
    trading_state: TradingState
    auto_trading: bool
    protective_kept: bool = False
    #: why the account was HALTED when no operator did it (a failed database write)
    halt_reason: str = ""


#: In the account's state directory: its trading state and switches, outliving restarts.
TRADING_STATE_FILE = "trading_state.json"
#: The file always has this size (the JSON padded with spaces), so that a HALT can be saved
#: on a full disk by rewriting its bytes in place, which needs no new block.
TRADING_STATE_BYTES = 1024
HALT_REASON_CHARS = 300  # of the storage error saved with a HALT (the file keeps its size)


def _state_bytes(saved: _SavedState) -> bytes:
    data = msgspec.json.encode(saved)
    if len(data) >= TRADING_STATE_BYTES:  # a reason can only be so long: cut it
        saved = msgspec.structs.replace(saved, halt_reason=saved.halt_reason[:HALT_REASON_CHARS])
        data = msgspec.json.encode(saved)
    return data.ljust(TRADING_STATE_BYTES - 1) + b"\n"


def write_trading_state(path: Path, saved: _SavedState) -> None:
    """Save ``saved`` to ``path``: a new file moved over the old one (atomic), or, when that
    cannot be written (a full disk), the old file's bytes rewritten in place, which fits in
    the blocks it already has (``TRADING_STATE_BYTES``). OSError if neither works."""
    data = _state_bytes(saved)
    tmp = path.with_suffix(".tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as first:
        with contextlib.suppress(OSError):
            tmp.unlink()
        try:
            fd = os.open(path, os.O_WRONLY)  # no O_TRUNC: truncating would give the blocks back
        except OSError:
            raise first from None
        try:
            if os.pwrite(fd, data, 0) != len(data):
                raise OSError(f"short write to {path}") from first
            os.fsync(fd)
        finally:
            os.close(fd)


def saved_trading_state(state_dir: Path) -> tuple[TradingState, bool] | None:
    """An account's trading state as its trader last saved it (never saved: ACTIVE, as a
    trader starts), and whether the kill switch kept its protective strategies; None when
    the file cannot be read."""
    try:
        saved = msgspec.json.decode((state_dir / TRADING_STATE_FILE).read_bytes(), type=_SavedState)
    except FileNotFoundError:
        return TradingState.ACTIVE, False
    except (OSError, msgspec.DecodeError, msgspec.ValidationError):
        return None
    return saved.trading_state, saved.protective_kept


def load_gateway_class(name: str) -> type[Gateway]:
    module_name, _, class_name = GATEWAYS[name].partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, class_name)


class Trader(ManagerLink, RequestHandlers):
    """One account's trading process (or task)."""

    def __init__(
        self,
        account: AccountConfig,
        app: AppConfig,
        *,
        data_dir: Path,
        socket_path: Path | None,
        orphan_timeout: float = 0.0,
        logger: logging.Logger | None = None,
        config_path: Path | None = None,
    ) -> None:
        self.account = account
        self.app = app
        self.account_id = account.account_id
        self.data_dir = data_dir
        self.socket_path = socket_path
        self.config_path = config_path  # said when joining a manager, which checks it
        self.orphan_timeout = orphan_timeout
        self.log = logger or logging.getLogger(f"qtrader.trader.{self.account_id}")
        self.state_dir = cfg_paths.account_state_dir(data_dir, self.account_id)
        self.oms = Oms(self.account_id)
        self.risk = RiskEngine(account.risk, self.oms)
        self.db: AccountDatabase | None = None
        self.gateway: Gateway | None = None
        self.strategies: StrategyEngine | None = None
        self.conditionals = ConditionalBook(self)
        self.reversals = Reversals(self)
        self.gateway_status = GatewayStatus.CONNECTING
        self.gateway_message = ""
        self.trading_state = TradingState.ACTIVE
        self.auto_trading = account.auto_trading
        #: HALTED by a kill switch that kept the protective strategies (``KillRequest``)
        self.protective_kept = False
        #: why the account is HALTED, when a failed write did it (saved with the state)
        self.halt_reason = ""
        #: the storage failure that halted the account, until an operator resumes it
        self._storage_error: str | None = None
        self._state_save_error = ""  # the last failure to save the trading state (said once)
        self._restore_trading_state()
        #: the Market panel's contracts, in order: the operator's saved list, else the config's
        self.watchlist: list[str] = self._restore_watchlist()
        self.started_at = now()
        self.link: Link | None = None
        self._stop = asyncio.Event()
        self._cancel_on_stop = False
        self._lock = AccountLock(self.state_dir)
        self._positions_dirty = False
        self._account_push: asyncio.TimerHandle | None = None
        self._link_handler = LinkLogHandler(self)
        self._tasks: list[asyncio.Task[Any]] = []
        self._outbox: list[Outgoing] | None = None  # held back until the commit
        #: the orders a unit of work changed, by id, in their last state: written at its commit
        self._unit_orders: dict[str, Order] | None = None
        self._event_depth = 0  # > 0 while a gateway event is being handled
        self._cancel_on_reconnect = False  # a kill switch could not cancel: do it on reconnect
        self._kill_keeps: frozenset[str] = frozenset()  # ... but not these strategies' orders
        # the venue's first push is checked against the database like any reconnect
        self._recon: Reconciliation | None = Reconciliation("start")
        #: Why the venue refused us (set by ``on_fatal``): the process exits for a restart.
        self.fatal: str | None = None
        self._failed_write: Exception | None = None
        self._dropping = False
        #: Set by the process entry point: once started, move everything alive into the
        #: collector's permanent generation (``gc.freeze``), so the full collections that the
        #: day's orders trigger do not walk the ~80,000 objects of the imports and startup
        #: (about 20 ms each, on the order path). Not in a manager's process (embedded mode).
        self.freeze_gc = False
        self._handlers = self._request_handlers()

    # ================================================================== lifecycle

    def info(self) -> TraderInfo:
        return TraderInfo(
            account_id=self.account_id,
            gateway=self.account.gateway,
            pid=os.getpid(),
            gateway_status=self.gateway_status,
            trading_state=self.trading_state,
            auto_trading=self.auto_trading,
            started_at=self.started_at,
            message=self.gateway_message,
            exiting=self.fatal is not None,
            protective_kept=self.protective_kept,
            halt_reason=self.halt_reason,
            data_dir=str(self.data_dir),
            config_path="" if self.config_path is None else str(self.config_path),
            venue_identity=self.account.venue_identity(),
            clock_offset=self._clock_offset(),
        )

    def _clock_offset(self) -> float:
        """How far the venue's clock is ahead of ours, whole seconds (``TraderInfo.clock_offset``)."""
        if self.gateway is None:
            return 0.0
        return float(round((self.gateway.now() - now()).total_seconds()))

    @property
    def _state_file(self) -> Path:
        return self.state_dir / TRADING_STATE_FILE

    def _restore_watchlist(self) -> list[str]:
        """The watchlist the operator saved from a console (core/watchlist.py), else the
        configuration's; a broken file is logged and the configuration's applies."""
        try:
            saved = load_watchlist(self.state_dir)
        except (OSError, msgspec.DecodeError, msgspec.ValidationError) as exc:
            self.log.error("ignoring unreadable %s: %s", self.state_dir / WATCHLIST_FILE, exc)
            saved = None
        return list(self.account.watchlist) if saved is None else saved[:MAX_WATCHLIST]

    def _restore_trading_state(self) -> None:
        """A HALT (kill switch, storage failure) and the auto-trading switch outlive restarts."""
        try:
            saved = msgspec.json.decode(self._state_file.read_bytes(), type=_SavedState)
        except FileNotFoundError:
            return
        except (OSError, msgspec.DecodeError, msgspec.ValidationError) as exc:
            self.log.error("ignoring unreadable %s: %s", self._state_file, exc)
            return
        self.trading_state = saved.trading_state
        self.auto_trading = saved.auto_trading
        self.protective_kept = saved.protective_kept and saved.trading_state is TradingState.HALTED
        if saved.trading_state is TradingState.HALTED:
            self.halt_reason = saved.halt_reason
        if saved.trading_state is not TradingState.ACTIVE:
            kept = " (protective strategies kept)" if self.protective_kept else ""
            why = f": {self.halt_reason}" if self.halt_reason else ""
            self.log.warning("restored trading state %s%s%s", saved.trading_state.name, kept, why)

    def _set_trading_state(
        self,
        state: TradingState,
        auto_trading: bool | None = None,
        *,
        protective_kept: bool | None = None,
        halt_reason: str | None = None,
    ) -> None:
        """Set and save the trading state. ``protective_kept`` (the kill switch's choice)
        outlives only what leaves the state as it is (the auto-trading switch); any change
        of state ends it. ``halt_reason``: why a HALT that no operator asked for (a failed
        database write); it lasts as long as the HALT, and a new HALT replaces it."""
        if protective_kept is None:
            protective_kept = self.protective_kept and state is self.trading_state
        if state is not TradingState.HALTED:
            self.halt_reason = ""
            self._storage_error = None  # the operator has looked: a new failure is news again
        elif halt_reason is not None:
            self.halt_reason = halt_reason
        elif self.trading_state is not TradingState.HALTED:
            self.halt_reason = ""
        self.trading_state = state
        self.protective_kept = protective_kept and state is TradingState.HALTED
        if auto_trading is not None:
            self.auto_trading = auto_trading
        self._save_trading_state()

    def _save_trading_state(self) -> None:
        saved = _SavedState(
            trading_state=self.trading_state,
            auto_trading=self.auto_trading,
            protective_kept=self.protective_kept,
            halt_reason=self.halt_reason,
        )
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            write_trading_state(self._state_file, saved)
        except OSError as exc:
            problem = str(exc)
            if problem != self._state_save_error:  # once per distinct problem, not per order
                self._state_save_error = problem
                self.log.critical(
                    "could not save the trading state %s to %s (%s): a restart will not remember it",
                    self.trading_state.name,
                    self._state_file,
                    exc,
                )
        else:
            self._state_save_error = ""

    def stop(self, *, cancel_orders: bool = False) -> None:
        self._cancel_on_stop = self._cancel_on_stop or cancel_orders
        self._stop.set()

    async def run(self) -> None:
        """Run until ``stop()`` or a ``shutdown`` request."""
        self._lock.acquire()
        # the account's own file from now on: written at once, so that it has its size before
        # any disk can fill (see ``write_trading_state``)
        self._save_trading_state()
        self.log.addHandler(self._link_handler)
        try:
            await self._start()
            self._tasks = [asyncio.create_task(self._snapshot_loop(), name=f"{self.account_id}-snapshots")]
            if self.socket_path is not None:
                self._tasks.append(asyncio.create_task(self._manager_loop(), name=f"{self.account_id}-link"))
                self._tasks.append(asyncio.create_task(self._heartbeat_loop(), name=f"{self.account_id}-hb"))
            if self.strategies is not None:
                # quotes first: strategies may import vnpy/TA-Lib (half a second), so they load
                # once the manager has our snapshot (or after a second without a manager)
                deadline = time.monotonic() + 1.0
                while self.socket_path is not None and self.link is None and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)
                halted = self.trading_state is TradingState.HALTED
                # after a kill switch that kept them, the protective strategies start again
                self.strategies.load(
                    autostart=("protective" if self.protective_kept else False) if halted else True
                )
            if self.freeze_gc:
                gc.collect()
                gc.freeze()
            await self._stop.wait()
        finally:
            await self._shutdown()
            self.log.removeHandler(self._link_handler)
            self._alone(False)  # gone, not orphaned
            self._lock.release()

    async def _start(self) -> None:
        # imported here: the console imports this module (for the manager) without storage
        from storage import AccountDatabase, database_path

        self.db = AccountDatabase(database_path(self.data_dir, self.account_id))
        # what we knew before a restart: recent orders and trades (positions and
        # funds come from the venue, which is their source of truth)
        for order in self.db.load_orders(limit=RECENT_ORDERS):
            self.oms.update_order(order)
        for order in self.db.load_orders(active_only=True, limit=RECENT_ORDERS):
            self.oms.update_order(order)  # every working order, however old
        for trade in self.db.load_trades(limit=RECENT_TRADES):
            self.oms.add_trade(trade)
        # daily limits count the whole trading day (a night session starts days back on Mondays)
        self.risk.start_day(self.db.load_orders(since=now() - timedelta(days=4), limit=1_000_000))
        self.conditionals.load(self.db)
        cls = load_gateway_class(self.account.gateway)
        # the account's validated section, as it is (the gateway trusts it: checked once, in config)
        settings = getattr(self.account, self.account.gateway)
        extra: dict[str, Any] = {}
        if self.account.market_data_from is not None:
            extra["external_quotes"] = True  # a paper account: the manager relays real quotes
        self.gateway = cls(self.account_id, settings, self, self.state_dir, **extra)
        self.log.info("trader %s starting: gateway %s, pid %d", self.account_id, cls.name, os.getpid())
        await self.gateway.connect()
        symbols = list(
            dict.fromkeys(
                [
                    *self.watchlist,
                    *(s.symbol for s in self.account.strategies),
                    *self.conditionals.symbols(),
                ]
            )
        )
        for vt_symbol in symbols:
            self.gateway.subscribe(vt_symbol)
        self.gateway.query()
        if self.account.strategies:
            # vnpy picks its folder from the current directory at import: keep it in ours
            (self.state_dir / ".vntrader").mkdir(parents=True, exist_ok=True)
            # the venue's clock: a signal's age and a minute's end are read against its ticks' times
            self.strategies = StrategyEngine(
                self, self.account.strategies, search_path=self.app.strategy_path, clock=self.gateway.now
            )

    async def _shutdown(self) -> None:
        if self.strategies is not None:
            self.strategies.stop_all()  # no new signals while orders are being cancelled
        if self._cancel_on_stop and self.gateway is not None:
            # while the manager still listens, so it sees the cancels
            with self._unit():
                self._cancel_all(None)
            deadline = time.monotonic() + CANCEL_ON_STOP_WAIT
            while self.oms.active_orders and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if self.oms.active_orders:
                self.log.error("%d orders still working at shutdown", len(self.oms.active_orders))
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.gateway is not None:
            try:
                await self.gateway.close()
            except Exception:
                self.log.exception("gateway close failed")
        if self.db is not None:
            try:
                self._save_snapshots(force=True)
            except (sqlite3.Error, OSError) as exc:  # a full disk: the stop goes on all the same
                self.log.error("last position/account snapshot not saved: %s", exc)
            self.db.close()
        if self.link is not None:
            await self.link.close()
        self.log.info("trader %s stopped", self.account_id)

    # ================================================================== units of work

    @contextlib.contextmanager
    def _unit(self) -> Iterator[list[Outgoing]]:
        """One request = one database commit; what it produced is reported after the commit.

        A request may change an order several times (SUBMITTING, NOTTRADED, fills); batching
        them costs one commit, and holding back the messages keeps the rule that nothing is
        reported before it is on disk. Each order the unit changed is written once, in its
        last state, just before that commit (even when the body raised: the venue has it),
        and reported once, in that state, where its last change was. The messages then leave
        in one write.
        """
        if self._outbox is not None:  # nested: join the outer unit
            yield self._outbox
            return
        self._outbox = outbox = []
        self._failed_write = None
        done = False  # the body ran to its end: what fails after it is the commit
        try:
            if self.db is None:
                yield outbox
                done = True
            else:
                with self.db.batch():
                    self._unit_orders = {}
                    try:
                        yield outbox
                        done = True
                    finally:
                        orders, self._unit_orders = self._unit_orders, None
                        for order in orders.values():
                            self.db.save_order(order)
            if self._failed_write is not None:  # a write inside a gateway event failed
                self._storage_failed(self._failed_write, outbox)
        except sqlite3.Error as exc:
            self._storage_failed(exc, outbox)
            if not done:  # the request itself did not finish: its handler answers for it
                raise
        finally:
            self._failed_write = None
            self._outbox = None
            self._unit_orders = None
            self._send(_last_states(outbox))

    def _event_failed(self, what: str, exc: Exception) -> None:
        if not isinstance(exc, sqlite3.Error | OSError):
            self.log.exception("%s failed", what)
        elif self._outbox is not None:  # inside a unit of work: it halts once, at its end
            self._failed_write = exc
        elif self._halt_for_storage(exc, what):  # a venue's own event (a resting order filled)
            self.emit("status", self.info())

    def _halt_for_storage(self, exc: Exception, what: str = "") -> bool:
        """HALT the account for a failed write, the reason saved with the state (which
        survives a full disk, see ``write_trading_state``). Said once: while the account
        stays halted for it, later failures (each refused order's record) add no line.
        True if this failure is news."""
        if self._storage_error is not None and self.trading_state is TradingState.HALTED:
            return False
        self._storage_error = str(exc)
        reason = f"database write failed: {exc}"
        self._set_trading_state(TradingState.HALTED, protective_kept=False, halt_reason=reason)
        self.log.critical(
            "%s%s: account %s HALTED; resume it once the disk is fixed",
            f"{what}: " if what else "",
            reason,
            self.account_id,
        )
        return True

    def _storage_failed(self, exc: Exception, outbox: list[Outgoing]) -> None:
        """The database refused a write: what the venue has is still reported (hiding a live
        order would be worse), but no request is answered as a success and the account stops
        taking new orders until an operator has looked (no protective strategy's either)."""
        news = self._halt_for_storage(exc)
        for i, (msg_type, data, req_id) in enumerate(outbox):
            if msg_type != "reply":
                continue
            if data.ok:
                error = (
                    f"NOT SAVED: the database write failed ({exc}); what this request did at the venue "
                    f"is shown but not on disk. {self.account_id} is HALTED: check the venue, then resume"
                )
            else:  # refused anyway: its own reason first
                error = f"{data.error} (NOT SAVED: the database write failed ({exc}); {self.account_id} is HALTED)"
            outbox[i] = ("reply", Reply(ok=False, error=error, result=data.result), req_id)
        if news:
            outbox.append(("status", self.info(), None))

    def emit(self, msg_type: MessageType, data: Any) -> None:
        """Report a change to the manager, if one is connected (a snapshot catches up later)."""
        if self._outbox is not None:
            self._outbox.append((msg_type, data, None))
            return
        self._send([(msg_type, data, None)])

    def snapshot(self) -> Snapshot:
        finished = [o for o in self.oms.orders.values() if not o.is_active][-RECENT_ORDERS:]
        db = self.db
        return Snapshot(
            info=self.info(),
            account=self.oms.account,
            contracts=list(self.oms.contracts.values()),
            ticks=list(self.oms.ticks.values()),
            positions=list(self.oms.positions.values()),
            orders=[*finished, *self.oms.active_orders.values()],
            trades=list(self.oms.trades.values())[-RECENT_TRADES:],
            strategies=self.strategies.states() if self.strategies is not None else [],
            equity=db.load_equity(limit=2000) if db is not None else [],
            triggers=db.load_triggers(limit=200) if db is not None else [],
            watchlist=list(self.watchlist),
            conditionals=self.conditionals.all(),
        )

    # ================================================================== periodic

    async def _snapshot_loop(self) -> None:
        interval = self.app.database.snapshot_interval
        next_equity = time.monotonic() + interval
        snapshot_error = ""
        while True:
            await asyncio.sleep(1.0)
            force = time.monotonic() >= next_equity
            if force:
                next_equity += interval
            try:
                self._save_snapshots(force=force)
            except (sqlite3.Error, OSError) as exc:  # keep snapshotting: the next round may succeed
                if str(exc) != snapshot_error:  # once per distinct problem, not every second
                    snapshot_error = str(exc)
                    self.log.error("saving position/account snapshots failed: %s (retried every second)", exc)
            except Exception:
                self.log.exception("saving position/account snapshots failed")
            else:
                if snapshot_error:
                    snapshot_error = ""
                    self.log.warning("position/account snapshots saved again")
            if self.strategies is not None:
                try:
                    self.strategies.on_timer()
                except Exception:
                    self.log.exception("strategy timer failed")
            try:
                self.conditionals.expire_due()  # DAY orders of a contract with no ticks any more
            except Exception:
                self.log.exception("expiring conditional orders failed")

    def _save_snapshots(self, *, force: bool) -> None:
        """Positions when they changed; the account (equity curve) every interval."""
        assert self.db is not None
        at = now()
        if self._positions_dirty or force:
            self._positions_dirty = False
            self.db.save_positions(list(self.oms.positions.values()), at)
        account = self.oms.account
        if force and account is not None:
            self.db.save_account(account, at)
            self.emit(
                "equity",
                EquityPoint(
                    datetime=at,
                    balance=account.balance,
                    available=account.available,
                    margin=account.margin,
                    pnl=account.close_pnl + account.position_pnl - account.commission,
                ),
            )

    # ================================================================== gateway events

    @_gateway_event
    def on_tick(self, tick: Tick) -> None:
        tick.account_id = self.account_id
        changed = self.oms.update_tick(tick)
        self.emit("tick", tick)
        for pos in changed:
            self.emit("position", pos)
        if changed:
            self._schedule_account_push()
        if self.strategies is not None:
            self.strategies.on_tick(tick)
        self.conditionals.on_tick(tick)

    @_gateway_event
    def on_order(self, order: Order) -> None:
        order.account_id = self.account_id
        known = self.oms.orders.get(order.order_id)
        if not order.reference and known is None and self.db is not None:
            known = self.db.load_order(order.order_id)  # ours, but older than what was loaded
        if known is not None and known.status_msg != NOT_AT_VENUE and regresses(known, order):
            self.log.debug("order %s: older state %s ignored", order.order_id, order.status.name)
            return  # a replay after a reconnect: what we have is newer
        if not order.reference:  # the venue does not carry it: ours, or placed elsewhere
            order.reference = known.reference if known is not None else EXTERNAL
            if known is None:
                self.log.warning(
                    "external order %s %s %s %g @ %g (placed outside qtrader): %s",
                    order.order_id,
                    order.direction.name,
                    order.vt_symbol,
                    order.volume,
                    order.price,
                    order.status.name,
                )
        if self._recon is not None:
            self._recon.order(known, order)
        assert self.db is not None
        if self._unit_orders is not None:  # saved at the unit's commit, in its last state
            self._unit_orders[order.order_id] = order
        else:
            self.db.save_order(order)  # durable before anyone hears of it
        self.oms.update_order(order)
        self.emit("order", order)
        self.reversals.on_order(order)
        if self.strategies is not None and order.reference not in ("manual", EXTERNAL):
            self.strategies.on_order(order)
        if order.status is Status.REJECTED:
            self.log.warning(
                "order %s %s %s rejected: %s",
                order.order_id,
                order.direction.name,
                order.vt_symbol,
                order.status_msg,
            )

    @_gateway_event
    def on_trade(self, trade: Trade) -> None:
        trade.account_id = self.account_id
        if not trade.reference:
            order = self.oms.orders.get(trade.order_id)
            if order is None and self.db is not None:
                order = self.db.load_order(trade.order_id)
            trade.reference = order.reference if order is not None else EXTERNAL
        assert self.db is not None
        if not self.db.save_trade(trade):
            self.log.debug("trade %s replayed: already recorded, ignored", trade.trade_id)
            return
        self.oms.add_trade(trade)
        self.emit("trade", trade)
        if self.strategies is not None and trade.reference not in ("manual", EXTERNAL):
            self.strategies.on_trade(trade)
        if self._recon is not None:
            orderless = trade.order_id not in self.oms.orders and self.db.load_order(trade.order_id) is None
            self._recon.fill(trade if orderless else None)
        self.log.log(
            logging.WARNING if self._recon is not None else logging.INFO,
            "%sfill %s %s %s %g @ %g (order %s)",
            "missed " if self._recon is not None else "",
            trade.direction.name,
            trade.offset.name,
            trade.vt_symbol,
            trade.volume,
            trade.price,
            trade.order_id,
        )

    @_gateway_event
    def on_position(self, position: Position) -> None:
        position.account_id = self.account_id
        self.oms.update_position(position)
        self._positions_dirty = True
        self.emit("position", position)
        if position.volume <= 0 and self._recon is None and self.gateway_status is GatewayStatus.CONNECTED:
            self.conditionals.position_flat(position.vt_symbol, position.direction)

    @_gateway_event
    def on_account(self, account: Account) -> None:
        account.account_id = self.account_id
        self.oms.update_account(account)
        self._push_account()

    @_gateway_event
    def on_contract(self, contract: Contract) -> None:
        contract.account_id = self.account_id
        self.oms.update_contract(contract)
        self.emit("contract", contract)

    @_gateway_event
    def on_status(self, status: GatewayStatus, message: str) -> None:
        if status is not self.gateway_status:
            self.log.info("venue %s: %s", status.name.lower(), message)
        if status is not GatewayStatus.CONNECTED and self._recon is None:
            self._recon = Reconciliation(f"venue {status.name.lower()}")
        elif status is GatewayStatus.CONNECTED and self._recon is not None:
            self._finish_reconciliation()  # before trading resumes
        self.gateway_status = status
        self.gateway_message = message
        self.emit("status", self.info())
        if status is GatewayStatus.CONNECTED and self._cancel_on_reconnect:
            # a kill switch pulled while the venue was down: finish its job first thing
            self._cancel_on_reconnect = False
            n = self._cancel_all(None, keep=self._kill_keeps if self.protective_kept else frozenset())
            self.log.critical("venue back: %d cancels sent for the kill switch pulled while it was down", n)

    def _finish_reconciliation(self) -> None:
        recon, self._recon = self._recon, None
        assert recon is not None
        for order in recon.unlisted(self.oms.active_orders, self.oms.trades.values()):
            self.log.warning("order %s settled: %s %s", order.order_id, order.status.name, order.status_msg)
            self.on_order(order)
        for order in recon.orders_from_fills(self.oms.orders):
            self.log.warning(
                "order %s %s %s %g: %s", order.order_id, order.direction.name, order.vt_symbol, order.traded,
                order.status_msg,
            )  # fmt: skip
            self.on_order(order)
        self.log.log(logging.WARNING if recon.changed else logging.INFO, "%s", recon.summary())
        self.conditionals.settle_unconfirmed()  # one that fired just before a crash: its order?
        self.conditionals.sweep_flat()  # a stop whose position was closed while we were away

    def on_fatal(self, message: str) -> None:
        """The venue refused us for good: exit, so the manager restarts us on its back-off."""
        if self.fatal is not None:
            return
        self.fatal = message
        self.log.critical("venue refused the connection: %s; exiting for a restart", message)
        self.gateway_status = GatewayStatus.DISCONNECTED
        self.gateway_message = message
        self.emit("status", self.info())
        self.stop()

    def on_log(self, level: str, message: str) -> None:
        self.log.log(logging.getLevelName(level.upper()), "%s", message)

    def _schedule_account_push(self) -> None:
        if self._account_push is None:
            loop = asyncio.get_running_loop()
            self._account_push = loop.call_later(ACCOUNT_PUSH_INTERVAL, self._push_account)

    def _push_account(self) -> None:
        if self._account_push is not None:
            self._account_push.cancel()
            self._account_push = None
        if self.oms.account is not None:
            self.emit("account", self.oms.account)


if __name__ == "__main__":
    sys.exit(main())
