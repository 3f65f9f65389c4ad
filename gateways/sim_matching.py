"""How an order meets the sim's book: whether it is acceptable, what it holds, where it fills.

LIMIT / FAK / FOK / MARKET orders take volume from the synthetic book level by level and fill at
each level's price; taken volume stays taken until the next market step redraws the book. A
LIMIT remainder rests; FAK and MARKET remainders are cancelled; FOK fills completely or is
cancelled with nothing filled. A resting order fills on a later market step whose opposite best
price crosses it, at its own limit price, for at most the opposite level-1 volume. No fill is
ever through a limit price. STOP orders are rejected: the exchange has no native stop orders.

These are the exchange's rules as functions of one order and one ``Market``, with no books and
no events; the engine (``gateways/sim_exchange.py``) applies what they decide to the account's
books and reports it. Prices are in ticks, as in the market.
"""

from __future__ import annotations

import math

import msgspec

from core.models import Contract, Direction, Offset, Order, OrderType, on_tick_grid
from gateways.sim_journal import WorkingOrderRecord
from gateways.sim_market import LEVELS, Market

_copy = msgspec.structs.replace  # a shallow copy; every field of our structs is immutable


def _num(value: float) -> str:
    """A price as the user wrote it (``912.03``, ``1100``), for messages about bad input."""
    return format(value, ".10g")


class WorkingOrder:
    """An order the exchange is working on, with what it holds while it works."""

    __slots__ = (
        "buy",
        "contract",
        "frozen_per_lot",
        "limit",
        "market",
        "order",
        "remaining",
        "td_part",
        "yd_part",
    )

    def __init__(self, order: Order, market: Market) -> None:
        self.order = order
        self.market = market
        self.contract = market.contract
        self.buy = order.direction is Direction.LONG
        self.limit = limit_ticks(order, market)  # for MARKET the limit price on the order's side
        self.remaining = int(order.volume - order.traded)
        self.frozen_per_lot = 0.0  # margin + fee per unfilled lot of an opening order
        self.yd_part = 0  # yesterday's lots a close order still holds
        self.td_part = 0  # today's lots a close order still holds

    def record(self) -> WorkingOrderRecord:
        return WorkingOrderRecord(
            order=_copy(self.order),
            frozen_per_lot=self.frozen_per_lot,
            yd_part=self.yd_part,
            td_part=self.td_part,
        )


def limit_ticks(order: Order, market: Market) -> int:
    """The order's limit in ticks; a MARKET order's is the price limit on its side."""
    if order.type is OrderType.MARKET:
        return market.up if order.direction is Direction.LONG else market.down
    return round(order.price / market.tick)


# ====================================================================== acceptance


def order_problem(order: Order) -> str | None:
    """Why ``order`` is not a valid futures order whatever the market (its type, direction,
    offset or volume), or None."""
    if order.type is OrderType.STOP:
        return "STOP orders are not supported: the sim exchange has no native stop orders"
    if order.direction not in (Direction.LONG, Direction.SHORT):
        return f"direction {order.direction.name} is not valid for an order (use LONG or SHORT)"
    if order.offset is Offset.NONE:
        return "offset NONE is not valid for futures (use OPEN, CLOSE, CLOSETODAY or CLOSEYESTERDAY)"
    volume = order.volume
    if not math.isfinite(volume) or volume <= 0:
        return f"volume must be a positive whole number of lots, got {_num(volume)}"
    if volume != int(volume):
        return f"volume {_num(volume)} is not a whole number of lots"
    return None


def price_problem(order: Order, contract: Contract, market: Market) -> str | None:
    """Why a priced order's price is not acceptable today (off the tick grid, outside the price
    limits), or None; MARKET orders have no price to check."""
    if order.type is OrderType.MARKET:
        return None
    price, fmt = order.price, market.dec
    if not math.isfinite(price) or price <= 0:
        return f"price must be a positive number, got {_num(price)}"
    if not on_tick_grid(price, contract.pricetick):
        return f"price {_num(price)} is not on the {_num(contract.pricetick)} tick grid of {order.vt_symbol}"
    ticks = round(price / market.tick)
    if ticks > market.up:
        return f"price {price:.{fmt}f} above limit-up {market.price(market.up):.{fmt}f}"
    if ticks < market.down:
        return f"price {price:.{fmt}f} below limit-down {market.price(market.down):.{fmt}f}"
    return None


def opening_cost(w: WorkingOrder) -> tuple[float, float]:
    """What one lot of an opening order must have available: (margin + fee at the worst fill it
    can get, the immediate mark-to-market loss of that fill away from the last price).

    Buys fill at or below their limit; sells at or above theirs (at most the best bid right
    now, or the limit price itself when resting); a MARKET order only takes today's book.
    Counting the loss too means accepting an order can never drive ``available`` below zero.
    """
    m, c = w.market, w.contract
    if w.order.type is OrderType.MARKET:
        if w.buy:
            levels = [m.ask1 + i for i in range(LEVELS) if m.ask_vol[i] > 0]
            high = low = levels[-1] if levels else m.ask1
        else:
            levels = [m.bid1 - i for i in range(LEVELS) if m.bid_vol[i] > 0]
            high, low = m.bid1, levels[-1] if levels else m.bid1
    elif w.buy:
        high = low = w.limit
    else:
        high, low = max(w.limit, m.bid1), w.limit
    worst = m.price(high)
    per_lot = c.margin(worst, 1) + c.commission(worst, 1, Offset.OPEN)
    move = (high - m.last) if w.buy else (m.last - low)
    return per_lot, max(0, move) * m.tick * m.size


def close_split(w: WorkingOrder, lots: int, yd_free: int, td_free: int) -> tuple[int, int] | str:
    """How a close of ``lots`` divides into (yesterday's lots, today's lots) of a position with
    ``yd_free`` / ``td_free`` lots free, by the exchange's close-today rules; or why it cannot.

    SHFE and INE close today's lots only with CLOSETODAY, and yesterday's with CLOSE or
    CLOSEYESTERDAY; the other exchanges close yesterday's lots first, whatever the offset.
    """
    order = w.order
    where = f"{order.direction.opposite.name.lower()} {order.vt_symbol}"
    if not w.contract.exchange.has_close_today:
        closable = yd_free + td_free
        if lots > closable:
            return f"close {lots} > closable {closable} ({where})"
        yd_part = min(lots, yd_free)
        return yd_part, lots - yd_part
    if order.offset is Offset.CLOSETODAY:
        if lots > td_free:
            hint = f"; yesterday's {yd_free} close with CLOSE/CLOSEYESTERDAY" if yd_free else ""
            return f"close-today {lots} > closable today {td_free} ({where}){hint}"
        return 0, lots
    if lots > yd_free:
        hint = f"; today's {td_free} close only with CLOSETODAY" if td_free else ""
        return f"close {lots} > closable {yd_free} ({where}, yesterday's volume){hint}"
    return lots, 0


# ====================================================================== taking volume


def _opposite(w: WorkingOrder) -> tuple[int, int, list[int]]:
    """(best opposite price, the direction prices worsen in, the opposite volumes by level)."""
    m = w.market
    return (m.ask1, 1, m.ask_vol) if w.buy else (m.bid1, -1, m.bid_vol)


def _through(w: WorkingOrder, price: int) -> bool:
    return (price > w.limit) if w.buy else (price < w.limit)


def volume_within_limit(w: WorkingOrder) -> int:
    """The opposite volume at the order's limit or better (what a FOK could take)."""
    base, sign, vols = _opposite(w)
    available = 0
    for i in range(LEVELS):
        if _through(w, base + sign * i):
            break
        available += vols[i]
    return available


def take_new(w: WorkingOrder) -> list[tuple[int, int]]:
    """Take a just-accepted order's volume from the book, best level first and never through
    its limit: the fills as (price in ticks, lots). The taken volume leaves the book."""
    base, sign, vols = _opposite(w)
    wanted = w.remaining
    fills = []
    for i in range(LEVELS):
        if not wanted:
            break
        price = base + sign * i
        if _through(w, price):
            break  # never through the limit price
        lots = min(vols[i], wanted)
        if lots > 0:
            vols[i] -= lots
            wanted -= lots
            fills.append((price, lots))
    return fills


def crossed(m: Market, resting: list[WorkingOrder]) -> list[WorkingOrder]:
    """The resting orders the book now crosses, in fill priority: best price, then oldest."""
    crossing = [w for w in resting if (w.limit >= m.ask1 if w.buy else w.limit <= m.bid1)]
    crossing.sort(key=lambda w: (-w.limit if w.buy else w.limit, int(w.order.order_id)))
    return crossing


def take_resting(w: WorkingOrder) -> int:
    """Take a crossed resting order's lots from the opposite level 1 (it fills at its own
    limit price): the lots taken, which leave the book."""
    vols = w.market.ask_vol if w.buy else w.market.bid_vol
    lots = min(vols[0], w.remaining)
    if lots > 0:
        vols[0] -= lots
    return lots
