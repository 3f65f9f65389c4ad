"""The trader: one account's gateway, OMS, risk checks and database.

Runs as its own OS process (``qtrader-trader --account-id DQ1 ...``), as an
asyncio task inside the manager (embedded mode) or standalone with no manager.
It is the only writer of its account's database, and it writes every order and
trade there BEFORE reporting it, so nothing a manager or console has seen can
be lost by a crash.

Towards the manager it is a client: it connects to
``<socket_dir>/trader-<ID>.sock``, sends ``register`` and a full ``snapshot``,
then streams changes and answers requests, one ``reply`` each. When the
manager goes away it keeps trading and reconnects by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import gc
import importlib
import logging
import math
import os
import signal
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from config import AccountConfig, AppConfig, ConfigError, load_config
from config import paths as cfg_paths
from core.lockfile import LockHeld, PidLock
from core.logs import setup_trader_logging
from core.models import (
    CHINA_TZ,
    Account,
    CancelRequest,
    CloseRequest,
    Contract,
    Direction,
    EquityPoint,
    GatewayStatus,
    LogEntry,
    Offset,
    Order,
    OrderRequest,
    Position,
    Status,
    Tick,
    Trade,
    TraderInfo,
    TradingState,
    local_order_id,
    now,
    split_vt_symbol,
)
from core.oms import Oms, position_direction_closed_by, regresses
from core.protocol import (
    CancelAllRequest,
    HistoryRequest,
    Link,
    Message,
    MessageType,
    Outgoing,
    ProtocolError,
    QuoteSourceStatus,
    Reply,
    ShutdownRequest,
    Snapshot,
    StateRequest,
    StrategyCommand,
    SubscribeRequest,
    peer_credentials,
)
from core.reconcile import EXTERNAL, NOT_AT_VENUE, Reconciliation
from core.risk import RiskEngine, venue_state
from core.strategy_engine import StrategyEngine
from gateways.base import Gateway

if TYPE_CHECKING:
    from storage import AccountDatabase

EXIT_OK = 0
EXIT_CONFIG = 2
EXIT_ALREADY_RUNNING = 3
#: The venue refused the login (or could not be reached): restart on the venue back-off.
EXIT_VENUE_REFUSED = 4

GATEWAYS = {
    "sim": "gateways.sim:SimGateway",
    "ctp": "gateways.ctp:CtpGateway",
    "tqsdk": "gateways.tqsdk:TqsdkGateway",
}

RECENT_ORDERS = 300
RECENT_TRADES = 300
BACKLOG_LIMIT = 8 * 1024 * 1024  # bytes queued to a manager that is not reading
_REPLACEABLE = frozenset({"tick", "position", "account", "heartbeat", "equity"})
CANCEL_ON_STOP_WAIT = 3.0  # seconds to wait for cancel confirmations when stopping
ACCOUNT_PUSH_INTERVAL = 0.5  # seconds between live account pushes while prices move
RECONNECT_MAX_DELAY = 1.0


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


class _SavedState(msgspec.Struct):
    trading_state: TradingState
    auto_trading: bool


class AccountBusy(RuntimeError):
    """Another trader process holds this account."""


class AccountLock(PidLock):
    """``<state_dir>/trader.lock``: one trader per account."""

    def __init__(self, state_dir: Path) -> None:
        super().__init__(state_dir / "trader.lock")

    def acquire(self) -> None:
        """Raise AccountBusy naming the holder when another trader has the account."""
        try:
            super().acquire()
        except LockHeld as exc:
            raise AccountBusy(f"another trader already runs this account (pid {exc.holder})") from None


def _close_to_split(req: OrderRequest) -> bool:
    """A plain CLOSE of whole lots on SHFE/INE; any other request (a bad volume or symbol
    included) goes to the risk rules as it is, to be refused there with their words."""
    if req.offset is not Offset.CLOSE:
        return False
    if not (math.isfinite(req.volume) and req.volume > 0 and req.volume == int(req.volume)):
        return False
    try:
        _, exchange = split_vt_symbol(req.vt_symbol)
    except ValueError:
        return False
    return exchange.has_close_today


def _one_reply(replies: list[Reply]) -> Reply:
    """The replies of the orders one request became, as that request's one reply: ok when
    every order went out; ``order_id`` lists them all; ``orders`` has each leg's result."""
    results = [r.result if isinstance(r.result, dict) else {} for r in replies]
    errors = [
        f"{res.get('offset', '?')} {res.get('volume', 0):g}: {r.error}"
        for r, res in zip(replies, results, strict=True)
        if not r.ok
    ]
    ids = ",".join(str(res["order_id"]) for res in results if res.get("order_id"))
    result = {"order_id": ids, "orders": results}
    if errors:
        return Reply(ok=False, error="; ".join(errors), result=result)
    return Reply(ok=True, result=result)


def load_gateway_class(name: str) -> type[Gateway]:
    module_name, _, class_name = GATEWAYS[name].partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, class_name)


class _LinkLogHandler(logging.Handler):
    """Forwards the trader's WARNING+ log records to the manager as ``log`` messages."""

    def __init__(self, trader: Trader) -> None:
        super().__init__(logging.WARNING)
        self.trader = trader

    def emit(self, record: logging.LogRecord) -> None:
        try:
            entry = LogEntry(
                account_id=self.trader.account_id,
                datetime=now(),
                level=record.levelname,
                message=record.getMessage(),
                source=record.name.rsplit(".", 1)[-1],
            )
            self.trader.emit("log", entry)
        except Exception:  # a log handler must never raise into the caller
            self.handleError(record)


class Trader:
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
    ) -> None:
        self.account = account
        self.app = app
        self.account_id = account.account_id
        self.data_dir = data_dir
        self.socket_path = socket_path
        self.orphan_timeout = orphan_timeout
        self.log = logger or logging.getLogger(f"qtrader.trader.{self.account_id}")
        self.state_dir = cfg_paths.account_state_dir(data_dir, self.account_id)
        self.oms = Oms(self.account_id)
        self.risk = RiskEngine(account.risk, self.oms)
        self.db: AccountDatabase | None = None
        self.gateway: Gateway | None = None
        self.strategies: StrategyEngine | None = None
        self.gateway_status = GatewayStatus.CONNECTING
        self.gateway_message = ""
        self.trading_state = TradingState.ACTIVE
        self.auto_trading = account.auto_trading
        self._restore_trading_state()
        self.started_at = now()
        self.link: Link | None = None
        self._stop = asyncio.Event()
        self._cancel_on_stop = False
        self._lock = AccountLock(self.state_dir)
        self._positions_dirty = False
        self._account_push: asyncio.TimerHandle | None = None
        self._link_handler = _LinkLogHandler(self)
        self._tasks: list[asyncio.Task[Any]] = []
        self._outbox: list[Outgoing] | None = None  # held back until the commit
        self._event_depth = 0  # > 0 while a gateway event is being handled
        self._cancel_on_reconnect = False  # a kill switch could not cancel: do it on reconnect
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
        self._handlers: dict[MessageType, Callable[[Any], Reply]] = {
            "order_req": self._on_order_req,
            "cancel_req": self._on_cancel_req,
            "cancel_all_req": self._on_cancel_all_req,
            "close_req": self._on_close_req,
            "strategy_req": self._on_strategy_req,
            "state_req": self._on_state_req,
            "status_req": lambda _: Reply(ok=True, result=self.info()),
            "history_req": self._on_history_req,
            "subscribe_req": self._on_subscribe_req,
            "quote": self._on_quote,
            "quote_source": self._on_quote_source,
            "kill_req": self._on_kill_req,
            "shutdown": self._on_shutdown,
        }

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
        )

    @property
    def _state_file(self) -> Path:
        return self.state_dir / "trading_state.json"

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
        if saved.trading_state is not TradingState.ACTIVE:
            self.log.warning("restored trading state %s", saved.trading_state.name)

    def _set_trading_state(self, state: TradingState, auto_trading: bool | None = None) -> None:
        self.trading_state = state
        if auto_trading is not None:
            self.auto_trading = auto_trading
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            tmp = self._state_file.with_suffix(".tmp")
            tmp.write_bytes(
                msgspec.json.encode(_SavedState(trading_state=state, auto_trading=self.auto_trading))
            )
            os.replace(tmp, self._state_file)
        except OSError:
            self.log.exception("could not save the trading state")

    def stop(self, *, cancel_orders: bool = False) -> None:
        self._cancel_on_stop = self._cancel_on_stop or cancel_orders
        self._stop.set()

    async def run(self) -> None:
        """Run until ``stop()`` or a ``shutdown`` request."""
        self._lock.acquire()
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
                self.strategies.load(autostart=self.trading_state is not TradingState.HALTED)
            if self.freeze_gc:
                gc.collect()
                gc.freeze()
            await self._stop.wait()
        finally:
            await self._shutdown()
            self.log.removeHandler(self._link_handler)
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
        cls = load_gateway_class(self.account.gateway)
        # the account's validated section, as it is (the gateway trusts it: checked once, in config)
        settings = getattr(self.account, self.account.gateway)
        extra: dict[str, Any] = {}
        if self.account.market_data_from is not None:
            extra["external_quotes"] = True  # a paper account: the manager relays real quotes
        self.gateway = cls(self.account_id, settings, self, self.state_dir, **extra)
        self.log.info("trader %s starting: gateway %s, pid %d", self.account_id, cls.name, os.getpid())
        await self.gateway.connect()
        symbols = list(dict.fromkeys([*self.account.watchlist, *(s.symbol for s in self.account.strategies)]))
        for vt_symbol in symbols:
            self.gateway.subscribe(vt_symbol)
        self.gateway.query()
        if self.account.strategies:
            # vnpy picks its folder from the current directory at import: keep it in ours
            (self.state_dir / ".vntrader").mkdir(parents=True, exist_ok=True)
            self.strategies = StrategyEngine(
                self, self.account.strategies, search_path=self.app.strategy_path
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
            self._save_snapshots(force=True)
            self.db.close()
        if self.link is not None:
            await self.link.close()
        self.log.info("trader %s stopped", self.account_id)

    # ================================================================== manager link

    async def _manager_loop(self) -> None:
        assert self.socket_path is not None
        delay = 0.05
        lost_since = time.monotonic()
        while not self._stop.is_set():
            try:
                reader, writer = await asyncio.open_unix_connection(str(self.socket_path))
            except OSError:
                if self.orphan_timeout and time.monotonic() - lost_since > self.orphan_timeout:
                    self.log.warning("no manager for %.0f s: stopping", self.orphan_timeout)
                    self.stop()
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX_DELAY)
                continue
            creds = peer_credentials(writer)
            if creds is not None and creds[1] != os.getuid():
                self.log.error("refusing a manager of uid %d at %s", creds[1], self.socket_path)
                writer.close()
                await asyncio.sleep(RECONNECT_MAX_DELAY)
                continue
            delay = 0.05
            link = Link(
                reader, writer, account_id=self.account_id, max_frame_bytes=self.app.socket.max_frame_bytes
            )
            self.link = link
            try:
                link.send_nowait("register", self.info())
                link.send_nowait("snapshot", self.snapshot())
                self.log.info("connected to manager at %s", self.socket_path)
                await self._serve(link)
            except ProtocolError as exc:
                self.log.error("manager link: %s; reconnecting", exc)
            except ConnectionError:
                self.log.warning("manager went away; trading on and reconnecting")
            except Exception:  # a bug must cost this connection, never the trader's link for good
                self.log.exception("manager link failed; reconnecting")
                await asyncio.sleep(RECONNECT_MAX_DELAY)
            finally:
                self.link = None
                await link.close()
                lost_since = time.monotonic()

    async def _serve(self, link: Link) -> None:
        """Answer the manager's requests until the link fails (fatal errors propagate)."""
        while True:
            try:
                msg = await link.recv()
            except ProtocolError as exc:
                if exc.fatal:
                    raise
                # the stream is intact: refuse this one request, readably, and carry on
                self.log.error("bad request from manager: %s", exc)
                if exc.req_id is not None:
                    link.send_nowait("reply", Reply(ok=False, error=f"request refused: {exc}"), exc.req_id)
                continue
            self._dispatch(link, msg)

    def _dispatch(self, link: Link, msg: Message) -> None:
        handler = self._handlers.get(msg.type)
        if handler is None:
            self.log.error("unexpected message type '%s' from manager", msg.type)
            if msg.req_id is not None:
                link.send_nowait("reply", Reply(ok=False, error=f"not a request: {msg.type}"), msg.req_id)
            return
        reply: Reply | None = None
        try:
            with self._unit() as outbox:
                reply = handler(msg.data)
                if msg.req_id is not None:
                    outbox.append(("reply", reply, msg.req_id))  # in the same write as its updates
        except Exception as exc:
            self.log.exception("%s failed", msg.type)
            if reply is None and msg.req_id is not None:
                self._send(
                    [("reply", Reply(ok=False, error=f"internal error in {msg.type}: {exc}"), msg.req_id)]
                )

    @contextlib.contextmanager
    def _unit(self) -> Iterator[list[Outgoing]]:
        """One request = one database commit; what it produced is reported after the commit.

        A request may save an order several times (SUBMITTING, NOTTRADED, fills); batching
        them costs one commit, and holding back the messages keeps the rule that nothing is
        reported before it is on disk. The messages then leave in one write.
        """
        if self._outbox is not None:  # nested: join the outer unit
            yield self._outbox
            return
        self._outbox = outbox = []
        self._failed_write = None
        try:
            if self.db is None:
                yield outbox
            else:
                with self.db.batch():
                    yield outbox
            if self._failed_write is not None:  # a write inside a gateway event failed
                self._storage_failed(self._failed_write, outbox)
        except sqlite3.Error as exc:
            self._storage_failed(exc, outbox)
            raise
        finally:
            self._failed_write = None
            self._outbox = None
            self._send(outbox)

    def _event_failed(self, what: str, exc: Exception) -> None:
        if isinstance(exc, sqlite3.Error | OSError):
            self.log.critical("%s: database write failed (%s): account %s HALTED", what, exc, self.account_id)
            self._failed_write = exc
            self._set_trading_state(TradingState.HALTED)
            self.emit("status", self.info())
        else:
            self.log.exception("%s failed", what)

    def _storage_failed(self, exc: Exception, outbox: list[Outgoing]) -> None:
        """The database refused a write: what the venue has is still reported (hiding a live
        order would be worse), but no request is answered as a success and the account stops
        taking new orders until an operator has looked."""
        self._set_trading_state(TradingState.HALTED)
        self.log.critical("database write failed (%s): account %s HALTED", exc, self.account_id)
        for i, (msg_type, data, req_id) in enumerate(outbox):
            if msg_type == "reply":
                error = (
                    f"NOT SAVED: the database write failed ({exc}); what this request did at the venue "
                    f"is shown but not on disk. {self.account_id} is HALTED: check the venue, then resume"
                )
                outbox[i] = ("reply", Reply(ok=False, error=error, result=data.result), req_id)
        outbox.append(("status", self.info(), None))

    def emit(self, msg_type: MessageType, data: Any) -> None:
        """Report a change to the manager, if one is connected (a snapshot catches up later)."""
        if self._outbox is not None:
            self._outbox.append((msg_type, data, None))
            return
        self._send([(msg_type, data, None)])

    def _send(self, messages: list[Outgoing]) -> None:
        link = self.link
        if not messages or link is None or link.closed:
            return
        if link.backlog > BACKLOG_LIMIT:
            # the manager has stopped reading (suspended?): drop what the next update
            # replaces anyway; orders, trades and replies always go
            kept = [m for m in messages if m[0] not in _REPLACEABLE]
            if len(kept) < len(messages) and not self._dropping:
                self._dropping = True
                self.log.warning("manager is not reading (%d bytes queued): dropping quotes", link.backlog)
            messages = kept
        elif self._dropping:
            self._dropping = False
            self.log.warning("manager is reading again")
        try:
            link.send_many(messages)
        except ConnectionError:
            pass

    async def _heartbeat_loop(self) -> None:
        interval = self.app.manager.heartbeat_interval
        while True:
            await asyncio.sleep(interval)
            self.emit("heartbeat", self.info())

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
        )

    # ================================================================== periodic

    async def _snapshot_loop(self) -> None:
        interval = self.app.database.snapshot_interval
        next_equity = time.monotonic() + interval
        while True:
            await asyncio.sleep(1.0)
            force = time.monotonic() >= next_equity
            if force:
                next_equity += interval
            try:
                self._save_snapshots(force=force)
            except Exception:  # keep snapshotting: the next round may succeed
                self.log.exception("saving position/account snapshots failed")
            if self.strategies is not None:
                try:
                    self.strategies.on_timer()
                except Exception:
                    self.log.exception("strategy timer failed")

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
        self.db.save_order(order)  # durable before anyone hears of it
        self.oms.update_order(order)
        self.emit("order", order)
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
            self._recon.fill()
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
            n = self._cancel_all(None)
            self.log.critical("venue back: %d cancels sent for the kill switch pulled while it was down", n)

    def _finish_reconciliation(self) -> None:
        recon, self._recon = self._recon, None
        assert recon is not None
        for order in recon.unlisted(self.oms.active_orders, self.oms.trades.values()):
            self.log.warning("order %s settled: %s %s", order.order_id, order.status.name, order.status_msg)
            self.on_order(order)
        self.log.log(logging.WARNING if recon.changed else logging.INFO, "%s", recon.summary())

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

    # ================================================================== requests

    def _on_order_req(self, req: OrderRequest) -> Reply:
        req.account_id = self.account_id
        return self.place_order(req)

    def place_order(self, req: OrderRequest) -> Reply:
        """Risk-check and send an order. The reply carries ``order_id`` either way.

        A plain CLOSE on an exchange that tells today's lots from yesterday's (SHFE, INE)
        is sent as the close policy's explicit CLOSEYESTERDAY / CLOSETODAY orders (see
        ``Oms.close_requests``), whatever the venue: no gateway decides what a plain CLOSE means.
        """
        if _close_to_split(req):
            closed = position_direction_closed_by(req.direction)
            try:
                legs = self.oms.close_requests(
                    req.vt_symbol, closed, req.volume, req.price, order_type=req.type, reference=req.reference
                )
            except ValueError as exc:
                order = self._record_local_rejection(req, f"closable: {exc}")
                return Reply(ok=False, error=order.status_msg, result={"order_id": order.order_id})
            replies = self._place_legs(legs)
            return replies[0] if len(replies) == 1 else _one_reply(replies)
        return self._place_one(req)

    def _place_legs(self, requests: list[OrderRequest]) -> list[Reply]:
        """Send the orders a close became (``Oms.close_requests``: the one close policy, for
        the console's close, a plain CLOSE order and the strategies alike). One reply per
        order, its result carrying the leg's ``offset`` and ``volume``."""
        replies: list[Reply] = []
        for req in requests:
            reply = self._place_one(req)
            reply.result = {"offset": req.offset.name, "volume": req.volume, **(reply.result or {})}
            replies.append(reply)
        return replies

    def _place_one(self, req: OrderRequest) -> Reply:
        """Risk-check and send one order, offsets as they are."""
        assert self.gateway is not None
        contract = self.oms.contracts.get(req.vt_symbol) or self.gateway.get_contract(req.vt_symbol)
        rejection = self.risk.check(
            req,
            trading_state=self.trading_state,
            gateway_status=self.gateway_status,
            contract=contract,
            gateway_message=self.gateway_message,
        )
        if rejection is not None:
            order = self._record_local_rejection(req, str(rejection))
            return Reply(ok=False, error=str(rejection), result={"order_id": order.order_id})
        sent = self.risk.record_order(req)
        try:
            order_id = self.gateway.send_order(req)
        except Exception as exc:
            self.log.exception("gateway send_order failed")
            order = self._record_local_rejection(req, f"gateway error: {exc}")
            return Reply(ok=False, error=order.status_msg, result={"order_id": order.order_id})
        sent.order_id = order_id
        order = self.oms.orders.get(order_id)
        status = order.status if order is not None else Status.SUBMITTING
        if status is Status.REJECTED:
            assert order is not None
            return Reply(ok=False, error=order.status_msg, result={"order_id": order_id})
        return Reply(ok=True, result={"order_id": order_id, "status": status.name})

    def _record_local_rejection(self, req: OrderRequest, reason: str) -> Order:
        """A refused order is kept too, so the operator can see what was refused and why."""
        stamp = now()
        order = req.refused(self.account_id, local_order_id(stamp), reason, stamp)
        self.on_order(order)
        return order

    def _venue_down(self) -> Reply | None:
        if self.gateway_status is GatewayStatus.CONNECTED:
            return None
        why = venue_state(self.gateway_status, self.gateway_message)
        return Reply(ok=False, error=f"venue not connected ({why}); cancel not sent")

    def _on_cancel_req(self, req: CancelRequest) -> Reply:
        if (down := self._venue_down()) is not None:
            return down
        order = self.oms.orders.get(req.order_id)
        if order is None:
            return Reply(ok=False, error=f"unknown order {req.order_id}")
        if not order.is_active:
            return Reply(ok=False, error=f"order {req.order_id} is already {order.status.name}")
        rejection = self.risk.check_cancel()
        if rejection is not None:
            return Reply(ok=False, error=str(rejection))
        assert self.gateway is not None
        self.gateway.cancel_order(CancelRequest(order_id=req.order_id, account_id=self.account_id))
        self.risk.record_cancel()
        status = self.oms.orders[req.order_id].status
        return Reply(ok=True, result={"order_id": req.order_id, "status": status.name})

    def cancel_order(self, order_id: str) -> Reply:
        """Cancel one working order (the strategy engine re-pricing an exit)."""
        return self._on_cancel_req(CancelRequest(order_id=order_id, account_id=self.account_id))

    def _cancel_all(self, vt_symbol: str | None) -> int:
        """Cancel every working order. Not held back by the cancel-rate limits: emptying
        the book is the safe direction (kill switch, shutdown, the operator's X)."""
        assert self.gateway is not None
        orders = self.oms.working_orders(vt_symbol)
        for order in orders:
            self.gateway.cancel_order(CancelRequest(order_id=order.order_id, account_id=self.account_id))
            self.risk.record_cancel()
        return len(orders)

    def _on_cancel_all_req(self, req: CancelAllRequest) -> Reply:
        if (down := self._venue_down()) is not None:
            return down
        n = self._cancel_all(req.vt_symbol)
        still = len(self.oms.working_orders(req.vt_symbol))
        return Reply(ok=True, result={"cancel_sent": n, "still_working": still})

    def _on_close_req(self, req: CloseRequest) -> Reply:
        pos = self.oms.position(req.vt_symbol, req.direction)
        what = f"{req.direction.name.lower()} {req.vt_symbol}"
        if pos is None:
            return Reply(ok=False, error=f"no {what} position to close")
        volume = (
            req.volume if req.volume is not None else self.oms.closable(req.vt_symbol, req.direction).total
        )
        if volume <= 0:
            return Reply(ok=False, error=f"nothing closable in {what}: all of it is in working close orders")
        price = req.price
        if price is None:
            tick = self.oms.ticks.get(req.vt_symbol)
            if tick is None:
                return Reply(ok=False, error=f"no quote for {req.vt_symbol}: give a price")
            price = tick.bid_price_1 if req.direction is Direction.LONG else tick.ask_price_1
        try:
            legs = self.oms.close_requests(
                req.vt_symbol, req.direction, volume, price, order_type=req.type, reference=req.reference
            )
        except ValueError as exc:
            return Reply(ok=False, error=str(exc))
        combined = _one_reply(self._place_legs(legs))
        assert isinstance(combined.result, dict)
        combined.result.pop("order_id", None)  # a close answers with its orders, leg by leg
        return combined

    def _on_strategy_req(self, cmd: StrategyCommand) -> Reply:
        if cmd.action in ("auto_on", "auto_off"):
            self._set_trading_state(self.trading_state, auto_trading=cmd.action == "auto_on")
            self.log.warning("auto-trading %s", "ON" if self.auto_trading else "OFF")
            self.emit("status", self.info())
            return Reply(ok=True, result=self.info())
        if self.strategies is None:
            return Reply(
                ok=False, error=f"{self.account_id} runs no strategies (unknown instance '{cmd.name}')"
            )
        if cmd.action == "start":
            return self.strategies.start(cmd.name)
        return self.strategies.stop(cmd.name)

    def _on_kill_req(self, _: Any) -> Reply:
        """The kill switch: HALTED, every strategy stopped, every working order cancelled."""
        self._set_trading_state(TradingState.HALTED)
        stopped = self.strategies.stop_all() if self.strategies is not None else 0
        cancelled = self._cancel_all(None) if self.gateway_status is GatewayStatus.CONNECTED else 0
        self.log.critical(
            "KILL SWITCH: %s HALTED, %d strategies stopped, %d cancels sent",
            self.account_id,
            stopped,
            cancelled,
        )
        self.emit("status", self.info())
        still = len(self.oms.active_orders)
        result = {"strategies_stopped": stopped, "cancel_sent": cancelled, "still_working": still}
        if still and self.gateway_status is not GatewayStatus.CONNECTED:
            self._cancel_on_reconnect = True
            return Reply(
                ok=False,
                error=f"venue not connected: {still} orders could not be cancelled yet "
                "(they will be the moment it reconnects)",
                result=result,
            )
        return Reply(ok=True, result=result)

    def _on_state_req(self, req: StateRequest) -> Reply:
        if req.state is not self.trading_state:
            self.log.warning("trading state %s -> %s", self.trading_state.name, req.state.name)
        self._set_trading_state(req.state)
        self.emit("status", self.info())
        return Reply(ok=True, result=self.info())

    def _on_subscribe_req(self, req: SubscribeRequest) -> Reply:
        assert self.gateway is not None
        for vt_symbol in req.symbols:
            self.gateway.subscribe(vt_symbol)
        return Reply(ok=True)

    def _on_quote(self, tick: Tick) -> Reply:
        """A real quote from this paper account's ``market_data_from`` account."""
        feed = getattr(self.gateway, "feed_quote", None)
        if self.account.market_data_from is None or feed is None:
            return Reply(ok=False, error="quotes are relayed only to paper (sim) accounts")
        feed(tick)
        return Reply(ok=True)

    def _on_quote_source(self, news: QuoteSourceStatus) -> Reply:
        """Whether this paper account's quote source is up (see ``gateways/sim.py``)."""
        tell = getattr(self.gateway, "set_quote_source", None)
        if self.account.market_data_from is None or tell is None:
            return Reply(ok=False, error="quote source news is only for paper (sim) accounts")
        tell(news.source, news.up, news.message)
        return Reply(ok=True)

    def _on_history_req(self, req: HistoryRequest) -> Reply:
        db = self.db
        assert db is not None
        limit = max(1, min(req.limit, 20_000))
        since = datetime.fromtimestamp(req.since, CHINA_TZ) if req.since is not None else None
        if req.kind == "orders":
            result: Any = db.load_orders(since=since, limit=limit)
        elif req.kind == "trades":
            result = db.load_trades(since=since, limit=limit)
        elif req.kind == "account_snapshots":
            result = db.load_equity(since=since, limit=limit)
        elif req.kind == "triggers":
            result = db.load_triggers(since=since, limit=limit)
        elif req.kind == "bars":
            if not req.vt_symbol:
                return Reply(ok=False, error="bars history needs vt_symbol")
            result = db.load_bars(req.vt_symbol, limit=limit)
        else:
            return Reply(ok=False, error=f"history of '{req.kind}' is not kept")
        return Reply(ok=True, result=result)

    def _on_shutdown(self, req: ShutdownRequest) -> Reply:
        self.stop(cancel_orders=req.cancel_orders)
        return Reply(ok=True)


# ====================================================================== process entry


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="qtrader-trader", description="Run one account's trader.")
    p.add_argument("--account-id", required=True, help="account to run (from the config)")
    p.add_argument("--config", help="config file (default: see README, config resolution)")
    p.add_argument("--data-dir", help="data directory (databases, logs, state)")
    p.add_argument("--socket-path", help="manager socket to join (default: from the config)")
    p.add_argument(
        "--mode",
        choices=["managed", "standalone"],
        default="managed",
        help="standalone: no manager, log to the terminal",
    )
    p.add_argument(
        "--orphan-timeout",
        type=float,
        default=0.0,
        help="stop after this many seconds without a manager (0: never)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        loaded = load_config(args.config)
    except ConfigError as exc:
        print(f"qtrader-trader: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    app = loaded.config
    account = next((a for a in app.accounts if a.account_id == args.account_id), None)
    if account is None:
        known = ", ".join(a.account_id for a in app.accounts)
        print(
            f"qtrader-trader: {loaded.source.name}: no account '{args.account_id}' (configured: {known})",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    data_dir = cfg_paths.data_dir(app, args.data_dir)
    standalone = args.mode == "standalone"
    setup_trader_logging(data_dir, account.account_id, app.log.level, to_terminal=standalone)
    socket_path: Path | None = None
    if not standalone:
        socket_path = (
            Path(args.socket_path).resolve()  # before the chdir below
            if args.socket_path
            else cfg_paths.trader_socket_path(cfg_paths.socket_dir(app), account.account_id)
        )
    # vnpy picks its working folder from the current directory at import time:
    # give every account its own before any gateway is imported.
    state_dir = cfg_paths.account_state_dir(data_dir, account.account_id)
    (state_dir / ".vntrader").mkdir(parents=True, exist_ok=True)
    os.chdir(state_dir)
    trader = Trader(
        account, app, data_dir=data_dir, socket_path=socket_path, orphan_timeout=args.orphan_timeout
    )
    trader.freeze_gc = True
    return asyncio.run(_run_process(trader))


async def _run_process(trader: Trader) -> int:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, trader.stop)
    try:
        await trader.run()
    except AccountBusy as exc:
        print(f"qtrader-trader {trader.account_id}: {exc}", file=sys.stderr)
        return EXIT_ALREADY_RUNNING
    if trader.fatal is not None:
        print(f"venue refused: {trader.fatal}", file=sys.stderr)  # the manager's crash reason
        return EXIT_VENUE_REFUSED
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
