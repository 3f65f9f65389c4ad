"""The account's day at CTP as the gateway has reported it (``DayBook``).

It answers what the listener is to be told of a notice: an order snapshot older than the one
reported (the RESTART replay after a reconnect walks the day's notices again) gives the newer
state back instead, so no order goes backwards; an order's average fill price follows its
reported fills; a complete position answer flattens a position it no longer lists. It also keeps
what ``query`` pushes again, and the references of the orders this process sent (CTP does not
carry them: any other order, from an earlier process or another terminal, has ``reference=""``
for the trader to resolve).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from core.models import Account, Direction, Order, Position, Tick, Trade
from gateways.ctp.fields import (
    account_from_vnpy,
    is_stale,
    order_from_vnpy,
    position_from_vnpy,
    tick_from_vnpy,
    trade_from_vnpy,
)


class DayBook:
    """Orders, fills, positions and funds of the day, as reported; vnpy objects in, ours out."""

    def __init__(self, account_id: str) -> None:
        self.account_id = account_id
        self.orders: dict[str, Order] = {}
        self.trades: dict[str, Trade] = {}
        self.references: dict[str, str] = {}  # order id -> reference, for the orders we sent
        self.positions: dict[tuple[str, Direction], Position] = {}
        self.account: Account | None = None
        self._fills: dict[str, tuple[float, float]] = {}  # order id -> (volume, notional)
        self._pending_positions: dict[tuple[str, Direction], Any] = {}  # the answer so far
        self._volumes: dict[str, float] = {}  # vt_symbol -> the last tick's day volume

    @property
    def working(self) -> int:
        return sum(o.is_active for o in self.orders.values())

    def tick(self, data: Any) -> Tick:
        previous = self._volumes.get(data.vt_symbol)
        self._volumes[data.vt_symbol] = data.volume
        last_volume = data.volume - previous if previous is not None and data.volume >= previous else 0
        return tick_from_vnpy(data, self.account_id, last_volume)

    def order(self, data: Any, scrub: Callable[[str], str]) -> Order:
        """The order to report for a notice: the notice's, or the newer state held when it is stale
        (the order is still listed at the venue)."""
        known = self.orders.get(data.orderid)
        order = order_from_vnpy(data, self.account_id, known, self.references.get(data.orderid, ""))
        order.status_msg = scrub(order.status_msg)
        order = self._with_fills(order)
        if known is not None and is_stale(order, known):
            return known
        self.orders[order.order_id] = order
        return order

    def trade(self, data: Any, trading_day: str) -> Trade:
        """A fill notice as our trade (``trading_day``: the login's, when CTP leaves it out)."""
        return trade_from_vnpy(data, self.account_id, trading_day, self.references.get(data.orderid, ""))

    def add_fill(self, trade: Trade) -> Order | None:
        """``trade`` is reported: its order, when the fill moved its average price."""
        self.trades[trade.trade_id] = trade
        volume, notional = self._fills.get(trade.order_id, (0.0, 0.0))
        self._fills[trade.order_id] = (volume + trade.volume, notional + trade.volume * trade.price)
        order = self.orders.get(trade.order_id)
        if order is None:
            return None
        updated = self._with_fills(order)
        if updated.traded_price == order.traded_price:
            return None
        self.orders[order.order_id] = updated
        return updated

    def _with_fills(self, order: Order) -> Order:
        volume, notional = self._fills.get(order.order_id, (0.0, 0.0))
        if not volume:
            return order
        return msgspec.structs.replace(order, traded_price=notional / volume)

    def position_row(self, data: Any) -> None:
        """One row of a position answer (kept until the answer is complete)."""
        self._pending_positions[(data.vt_symbol, Direction(data.direction.name))] = data

    def positions_answered(self, extras: dict[tuple[str, str], dict[str, float]]) -> list[Position]:
        """A complete position answer: the positions to report, flat for those it no longer lists."""
        pending, self._pending_positions = self._pending_positions, {}
        reported: dict[tuple[str, Direction], Position] = {}
        for key, data in pending.items():
            extra = extras.get((data.symbol, key[1].name), {})
            reported[key] = position_from_vnpy(data, self.account_id, extra)
        for key, gone in self.positions.items():
            if key not in reported and gone.volume:
                reported[key] = Position(account_id=self.account_id, vt_symbol=key[0], direction=key[1])
        self.positions = {k: p for k, p in reported.items() if p.volume}
        return list(reported.values())

    def positions_failed(self) -> None:
        """A position answer came with an error: the rows so far are not the whole book (a key left
        over from them could outlive its position); the next complete answer lists every row."""
        self._pending_positions.clear()

    def funds(self, data: Any, trading_day: str) -> Account:
        self.account = account_from_vnpy(data, self.account_id, trading_day)
        return self.account
