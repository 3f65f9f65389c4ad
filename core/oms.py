"""Order management: one account's orders, trades, positions and funds.

The venue (gateway) is the source of truth for positions and funds, as a
broker's counter is; the OMS mirrors what the gateway reports and marks it to
market on every tick, so P&L moves between the venue's own updates. It also
knows which close orders are still working, which gives the closable volume
split into today's and yesterday's part (SHFE/INE) without waiting for the
venue: the trader uses that to pick offsets for a close and to reject a close
that cannot be filled.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from core.models import (
    Account,
    Contract,
    Direction,
    Offset,
    Order,
    OrderRequest,
    OrderType,
    Position,
    Status,
    Tick,
    Trade,
    position_pnl,
    split_vt_symbol,
)

PositionKey = tuple[str, Direction]


@dataclass(slots=True)
class Closable:
    """Volume of a position that new close orders may still take."""

    today: float
    yesterday: float

    @property
    def total(self) -> float:
        return self.today + self.yesterday


def position_direction_closed_by(order_direction: Direction) -> Direction:
    """A SELL close reduces a LONG position and a BUY close a SHORT one."""
    return Direction.SHORT if order_direction is Direction.LONG else Direction.LONG


def closable_volume(pos: Position | None, working: Iterable[Order]) -> Closable:
    """What of ``pos`` new close orders may still take, given the account's working orders.

    SHFE/INE: CLOSETODAY takes today's volume, CLOSE and CLOSEYESTERDAY yesterday's;
    elsewhere a close takes yesterday's volume first, then today's.
    """
    if pos is None:
        return Closable(0, 0)
    today = pos.volume - pos.yd_volume
    yesterday = pos.yd_volume
    _, exchange = split_vt_symbol(pos.vt_symbol)
    for order in working:
        if order.vt_symbol != pos.vt_symbol or not order.is_active or not order.offset.is_close:
            continue
        if position_direction_closed_by(order.direction) is not pos.direction:
            continue
        left = order.remaining
        if order.offset is Offset.CLOSETODAY and exchange.has_close_today:
            today -= left
        elif exchange.has_close_today:
            yesterday -= left
        else:
            from_yd = min(left, max(yesterday, 0))
            yesterday -= from_yd
            today -= left - from_yd
    return Closable(max(today, 0), max(yesterday, 0))


_PROGRESS = {Status.SUBMITTING: 0, Status.NOTTRADED: 1, Status.PARTTRADED: 2}


def regresses(known: Order, update: Order) -> bool:
    """True when ``update`` is an older state of ``known`` (a venue replaying the day's notices
    after a reconnect): fewer lots traded, or the same lots at an earlier stage. Finished
    states are never older than each other."""
    if update.traded != known.traded:
        return update.traded < known.traded
    return _PROGRESS.get(update.status, 3) < _PROGRESS.get(known.status, 3)


class Oms:
    """In-memory book of one account. Not thread-safe: used on the trader's loop."""

    def __init__(self, account_id: str) -> None:
        self.account_id = account_id
        self.contracts: dict[str, Contract] = {}
        self.ticks: dict[str, Tick] = {}
        self.orders: dict[str, Order] = {}
        self.active_orders: dict[str, Order] = {}
        self.trades: dict[str, Trade] = {}
        self.positions: dict[PositionKey, Position] = {}
        self.account: Account | None = None

    # ------------------------------------------------------------------ updates

    def update_contract(self, contract: Contract) -> None:
        self.contracts[contract.vt_symbol] = contract

    def update_order(self, order: Order) -> None:
        self.orders[order.order_id] = order
        if order.is_active:
            self.active_orders[order.order_id] = order
        else:
            self.active_orders.pop(order.order_id, None)

    def add_trade(self, trade: Trade) -> bool:
        """Record a trade; False when its id was already seen (a replay)."""
        if trade.trade_id in self.trades:
            return False
        self.trades[trade.trade_id] = trade
        return True

    def update_position(self, position: Position) -> Position:
        """Store the venue's position, marked at our latest price."""
        tick = self.ticks.get(position.vt_symbol)
        if tick is not None:
            self._mark(position, tick.last_price)
        if position.volume <= 0:
            self.positions.pop(position.key, None)
        else:
            self.positions[position.key] = position
        self._remark_account()
        return position

    def update_account(self, account: Account) -> Account:
        """Store the venue's funds, re-marked with our live position P&L."""
        self.account = account
        self._remark_account()
        return account

    def update_tick(self, tick: Tick) -> list[Position]:
        """Keep the tick; re-mark positions in its contract. Returns those whose P&L moved."""
        self.ticks[tick.vt_symbol] = tick
        changed: list[Position] = []
        for direction in (Direction.LONG, Direction.SHORT):
            pos = self.positions.get((tick.vt_symbol, direction))
            if pos is not None and pos.last_price != tick.last_price:
                self._mark(pos, tick.last_price)
                changed.append(pos)
        if changed:
            self._remark_account()
        return changed

    def _mark(self, pos: Position, last: float) -> None:
        contract = self.contracts.get(pos.vt_symbol)
        if contract is None or not last:
            return
        pos.last_price = last
        pos.pnl = position_pnl(pos.direction, pos.price, last, pos.volume, contract.size)

    def _remark_account(self) -> None:
        """Balance and available follow the live floating P&L of our positions."""
        account = self.account
        if account is None:
            return
        live = sum(p.pnl for p in self.positions.values())
        delta = live - account.position_pnl
        if delta:
            account.balance += delta
            account.available += delta
            account.position_pnl = live

    # ------------------------------------------------------------------ queries

    def working_orders(self, vt_symbol: str | None = None) -> list[Order]:
        orders: Iterable[Order] = self.active_orders.values()
        if vt_symbol is not None:
            orders = (o for o in orders if o.vt_symbol == vt_symbol)
        return list(orders)

    def position(self, vt_symbol: str, direction: Direction) -> Position | None:
        return self.positions.get((vt_symbol, direction))

    def closable(self, vt_symbol: str, direction: Direction) -> Closable:
        """Volume of the ``direction`` position not yet taken by working close orders."""
        return closable_volume(self.positions.get((vt_symbol, direction)), self.active_orders.values())

    def split_close(self, vt_symbol: str, direction: Direction, volume: float) -> list[tuple[Offset, float]]:
        """Offsets for closing ``volume`` of a ``direction`` position.

        SHFE/INE: yesterday's volume with CLOSEYESTERDAY first (usually the
        cheaper fee), then today's with CLOSETODAY. Elsewhere one CLOSE order,
        which the exchange applies to yesterday's volume first. Raises
        ValueError naming the numbers when there is not enough to close.
        """
        if volume <= 0:
            raise ValueError(f"close volume must be positive, got {volume:g}")
        avail = self.closable(vt_symbol, direction)
        if volume > avail.total + 1e-9:
            raise ValueError(
                f"close {volume:g} > closable {avail.total:g} ({direction.name.lower()} {vt_symbol}: "
                f"today {avail.today:g}, yesterday {avail.yesterday:g})"
            )
        _, exchange = split_vt_symbol(vt_symbol)
        if not exchange.has_close_today:
            return [(Offset.CLOSE, volume)]
        legs: list[tuple[Offset, float]] = []
        from_yd = min(volume, avail.yesterday)
        if from_yd > 0:
            legs.append((Offset.CLOSEYESTERDAY, from_yd))
        if volume - from_yd > 0:
            legs.append((Offset.CLOSETODAY, volume - from_yd))
        return legs

    def close_requests(
        self,
        vt_symbol: str,
        direction: Direction,
        volume: float,
        price: float,
        *,
        order_type: OrderType = OrderType.LIMIT,
        reference: str = "manual",
    ) -> list[OrderRequest]:
        """The orders that close ``volume`` of the ``direction`` position: the project's one
        close policy, whatever the venue (the console's close, a plain SHFE/INE CLOSE and the
        strategies' exits all come here). Offsets from ``split_close``; ValueError as there.
        """
        return [
            OrderRequest(
                vt_symbol=vt_symbol,
                direction=direction.opposite,
                offset=offset,
                type=order_type,
                price=price,
                volume=leg_volume,
                reference=reference,
                account_id=self.account_id,
            )
            for offset, leg_volume in self.split_close(vt_symbol, direction, volume)
        ]
