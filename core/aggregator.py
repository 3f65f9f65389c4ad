"""DataAggregator: the manager's live, versioned picture of every account.

Traders stream changes; the aggregator folds them into one ``AccountState``
per account and tells subscribers what changed (account, kind, key). Every
state carries a ``version`` that grows with each change, and a version per
kind, so a console can redraw only what moved since its last frame.

The console reads these states; it never mutates them.
"""

from __future__ import annotations

import logging
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from core.models import (
    Account,
    ConditionalOrder,
    Contract,
    Direction,
    EquityPoint,
    LogEntry,
    Order,
    Position,
    StrategyState,
    StrategyTrigger,
    Tick,
    Trade,
    TraderInfo,
    TraderStatus,
)
from core.protocol import Message, Snapshot, Watchlist

log = logging.getLogger("qtrader.aggregator")

MAX_FINISHED_ORDERS = 500
MAX_TRADES = 500
MAX_EQUITY_POINTS = 5000
MAX_TRIGGERS = 500
MAX_LOGS = 500
MAX_FINISHED_CONDITIONALS = 200

# kinds of change, as passed to subscribers
KINDS = (
    "status",
    "account",
    "tick",
    "contract",
    "position",
    "order",
    "trade",
    "equity",
    "strategy",
    "trigger",
    "conditional",
    "log",
    "watchlist",
    "snapshot",
)


@dataclass(frozen=True, slots=True)
class Change:
    """``key`` identifies the row: vt_symbol for ticks, order id for orders,
    (vt_symbol, direction) for positions, None for whole-state changes."""

    account_id: str
    kind: str
    key: Any = None


@dataclass
class AccountState:
    """Everything known about one account. Read-only for consumers."""

    account_id: str
    gateway: str
    status: TraderStatus = TraderStatus.CONNECTING
    status_message: str = ""
    info: TraderInfo | None = None
    pid: int | None = None  # the trader's process (None while not running)
    restarts: int = 0
    account: Account | None = None
    ticks: dict[str, Tick] = field(default_factory=dict)
    contracts: dict[str, Contract] = field(default_factory=dict)
    positions: dict[tuple[str, Direction], Position] = field(default_factory=dict)
    orders: OrderedDict[str, Order] = field(default_factory=OrderedDict)
    trades: deque[Trade] = field(default_factory=lambda: deque(maxlen=MAX_TRADES))
    equity: deque[EquityPoint] = field(default_factory=lambda: deque(maxlen=MAX_EQUITY_POINTS))
    strategies: dict[str, StrategyState] = field(default_factory=dict)
    triggers: deque[StrategyTrigger] = field(default_factory=lambda: deque(maxlen=MAX_TRIGGERS))
    #: conditional orders by id: every live one and the recent finished ones
    conditionals: dict[str, ConditionalOrder] = field(default_factory=dict)
    logs: deque[LogEntry] = field(default_factory=lambda: deque(maxlen=MAX_LOGS))
    #: the Market panel's contracts, in order; None until the trader says (then every quote)
    watchlist: list[str] | None = None
    version: int = 0
    versions: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))

    @property
    def working_orders(self) -> list[Order]:
        return [o for o in self.orders.values() if o.is_active]

    def _bump(self, kind: str) -> None:
        self.version += 1
        self.versions[kind] = self.version


class DataAggregator:
    """Folds trader messages into ``AccountState``s and notifies subscribers."""

    def __init__(self) -> None:
        self.states: dict[str, AccountState] = {}
        self._subscribers: list[Callable[[Change], None]] = []
        self._taps: list[Callable[[str, Message], None]] = []
        self._appliers: dict[str, Callable[[AccountState, Any], Any]] = {
            "register": self._apply_info,
            "heartbeat": self._apply_heartbeat,
            "status": self._apply_info,
            "snapshot": self._apply_snapshot,
            "account": self._apply_account,
            "tick": self._apply_tick,
            "contract": self._apply_contract,
            "position": self._apply_position,
            "order": self._apply_order,
            "trade": self._apply_trade,
            "equity": self._apply_equity,
            "strategy": self._apply_strategy,
            "trigger": self._apply_trigger,
            "conditional": self._apply_conditional,
            "log": self._apply_log,
            "watchlist": self._apply_watchlist,
        }

    # ------------------------------------------------------------------ subscription

    def subscribe(self, callback: Callable[[Change], None]) -> Callable[[], None]:
        """Call ``callback(change)`` on every change; returns the unsubscribe function."""
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return unsubscribe

    def tap(self, callback: Callable[[str, Message], None]) -> Callable[[], None]:
        """Call ``callback(account_id, message)`` with every message folded in (an attached
        console's stream); returns the function that removes the tap."""
        self._taps.append(callback)

        def untap() -> None:
            if callback in self._taps:
                self._taps.remove(callback)

        return untap

    def _notify(self, change: Change) -> None:
        for callback in list(self._subscribers):
            try:
                callback(change)
            except Exception:
                log.exception("change subscriber failed on %s", change)

    # ------------------------------------------------------------------ state

    def add_account(self, account_id: str, gateway: str) -> AccountState:
        state = self.states.get(account_id)
        if state is None:
            state = self.states[account_id] = AccountState(account_id=account_id, gateway=gateway)
        return state

    def set_status(self, account_id: str, status: TraderStatus, message: str = "") -> None:
        state = self.states[account_id]
        if state.status is status and state.status_message == message:
            return
        state.status = status
        state.status_message = message
        state._bump("status")
        self._notify(Change(account_id, "status"))

    def set_trader(
        self, account_id: str, status: TraderStatus, message: str, pid: int | None, restarts: int
    ) -> None:
        """The manager's whole view of a trader at once (an attached console's mirror)."""
        state = self.states[account_id]
        if (state.status, state.status_message, state.pid, state.restarts) == (
            status,
            message,
            pid,
            restarts,
        ):
            return
        state.status, state.status_message, state.pid, state.restarts = status, message, pid, restarts
        state._bump("status")
        self._notify(Change(account_id, "status"))

    def set_pid(self, account_id: str, pid: int | None) -> None:
        state = self.states[account_id]
        if state.pid != pid:
            state.pid = pid
            state._bump("status")
            self._notify(Change(account_id, "status"))

    def reset(self, account_id: str) -> None:
        """Forget everything the account's trader told us (a console re-attaching to a
        daemon that restarted must not show the previous run's orders and positions)."""
        state = self.states[account_id]
        state.info = state.account = None
        state.watchlist = None
        for mapping in (
            state.ticks,
            state.contracts,
            state.positions,
            state.orders,
            state.strategies,
            state.conditionals,
        ):
            mapping.clear()
        for sequence in (state.trades, state.equity, state.triggers, state.logs):
            sequence.clear()
        for kind in KINDS:
            state._bump(kind)
        for kind in KINDS:
            self._notify(Change(account_id, kind))

    def count_restart(self, account_id: str) -> None:
        state = self.states[account_id]
        state.restarts += 1
        state._bump("status")
        self._notify(Change(account_id, "status"))

    def apply(self, account_id: str, msg: Message) -> bool:
        """Fold one trader message in. False for types the aggregator does not keep."""
        applier = self._appliers.get(msg.type)
        state = self.states.get(account_id)
        if applier is None or state is None:
            return False
        key = applier(state, msg.data)
        kind = "status" if msg.type in ("register", "heartbeat") else msg.type
        if key is _UNCHANGED:
            return True
        for callback in list(self._taps):
            try:
                callback(account_id, msg)
            except Exception:
                log.exception("aggregator tap failed on %s", msg.type)
        state._bump(kind)
        self._notify(Change(account_id, kind, key))
        return True

    # ------------------------------------------------------------------ appliers

    def _apply_info(self, state: AccountState, info: TraderInfo) -> None:
        state.info = info
        return None

    def _apply_heartbeat(self, state: AccountState, info: TraderInfo) -> Any:
        old = state.info
        state.info = info
        if old is not None and (
            old.gateway_status is info.gateway_status
            and old.trading_state is info.trading_state
            and old.auto_trading == info.auto_trading
            and old.message == info.message
            and old.halt_reason == info.halt_reason
        ):
            return _UNCHANGED
        return None

    def _apply_snapshot(self, state: AccountState, snap: Snapshot) -> None:
        state.info = snap.info
        state.account = snap.account
        state.contracts = {c.vt_symbol: c for c in snap.contracts}
        state.ticks = {t.vt_symbol: t for t in snap.ticks}
        state.positions = {p.key: p for p in snap.positions}
        state.orders = OrderedDict((o.order_id, o) for o in snap.orders)
        state.trades = deque(snap.trades, maxlen=MAX_TRADES)
        state.equity = deque(snap.equity, maxlen=MAX_EQUITY_POINTS)
        state.strategies = {s.name: s for s in snap.strategies}
        state.triggers = deque(snap.triggers, maxlen=MAX_TRIGGERS)
        state.watchlist = list(snap.watchlist) if snap.watchlist is not None else None
        state.conditionals = {c.cond_id: c for c in snap.conditionals}
        for kind in KINDS:
            state.versions[kind] = state.version + 1
        return None

    def _apply_account(self, state: AccountState, account: Account) -> None:
        state.account = account
        return None

    def _apply_tick(self, state: AccountState, tick: Tick) -> str:
        state.ticks[tick.vt_symbol] = tick
        return tick.vt_symbol

    def _apply_contract(self, state: AccountState, contract: Contract) -> str:
        state.contracts[contract.vt_symbol] = contract
        return contract.vt_symbol

    def _apply_position(self, state: AccountState, pos: Position) -> tuple[str, Direction]:
        if pos.volume <= 0:
            state.positions.pop(pos.key, None)
        else:
            state.positions[pos.key] = pos
        return pos.key

    def _apply_order(self, state: AccountState, order: Order) -> str:
        orders = state.orders
        orders[order.order_id] = order
        orders.move_to_end(order.order_id)
        if len(orders) > MAX_FINISHED_ORDERS * 2:
            self._trim_orders(orders)
        return order.order_id

    @staticmethod
    def _trim_orders(orders: OrderedDict[str, Order]) -> None:
        finished = [oid for oid, o in orders.items() if not o.is_active]
        for oid in finished[: max(0, len(finished) - MAX_FINISHED_ORDERS)]:
            del orders[oid]

    def _apply_trade(self, state: AccountState, trade: Trade) -> str:
        state.trades.append(trade)
        return trade.trade_id

    def _apply_equity(self, state: AccountState, point: EquityPoint) -> None:
        state.equity.append(point)
        return None

    def _apply_strategy(self, state: AccountState, strategy: StrategyState) -> str:
        state.strategies[strategy.name] = strategy
        return strategy.name

    def _apply_trigger(self, state: AccountState, trigger: StrategyTrigger) -> None:
        state.triggers.append(trigger)
        return None

    def _apply_conditional(self, state: AccountState, cond: ConditionalOrder) -> str:
        conditionals = state.conditionals
        conditionals.pop(cond.cond_id, None)
        conditionals[cond.cond_id] = cond  # the newest change last
        if len(conditionals) > MAX_FINISHED_CONDITIONALS * 2:
            finished = [cid for cid, c in conditionals.items() if not c.is_live]
            for cid in finished[: max(0, len(finished) - MAX_FINISHED_CONDITIONALS)]:
                del conditionals[cid]
        return cond.cond_id

    def _apply_log(self, state: AccountState, entry: LogEntry) -> None:
        state.logs.append(entry)
        return None

    def _apply_watchlist(self, state: AccountState, watchlist: Watchlist) -> None:
        state.watchlist = list(watchlist.symbols)
        return None


_UNCHANGED: Any = object()
