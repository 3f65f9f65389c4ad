"""Pre-trade risk checks, run in the trader before any order reaches a gateway.

Manual and strategy orders go through the same rules (ARCHITECTURE.md, "Orders and risk"). Every
rejection names its rule and the numbers, e.g.
``order_rate: 11 orders in 1 s > limit 10``. Counters that need memory (rates,
daily totals, duplicates) are fed by ``record_order`` / ``record_cancel`` once
an order or cancel has actually been sent.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime

from config.schema import RiskConfig
from core.models import (
    LOCAL_ORDER_PREFIX,
    Contract,
    Direction,
    GatewayStatus,
    Offset,
    Order,
    OrderRequest,
    OrderType,
    TradingState,
    now,
    on_tick_grid,
)
from core.oms import Oms, position_direction_closed_by
from core.sessions import trading_day_of, when_closed

RATE_WINDOW = 1.0  # seconds: order and cancel rates are per second


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why an order (or cancel) may not be sent."""

    rule: str
    detail: str

    def __str__(self) -> str:
        return f"{self.rule}: {self.detail}"


@dataclass(slots=True)
class _Sent:
    at: float
    req: OrderRequest
    order_id: str


def venue_state(status: GatewayStatus, message: str) -> str:
    """A venue's state in a refusal: ``disconnected: <the venue's own words>``."""
    return status.name.lower() + (f": {message}" if message else "")


class RiskEngine:
    """The account's pre-trade gate. ``check`` returns None when the order may go."""

    def __init__(self, config: RiskConfig, oms: Oms, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.oms = oms
        self.clock = clock
        self._orders: deque[float] = deque()  # send times within the rate window
        self._cancels: deque[float] = deque()
        self._recent: deque[_Sent] = deque()  # for duplicate detection
        self._day: date | None = None
        self.orders_today = 0
        self.cancels_today = 0

    # ------------------------------------------------------------------ counters

    def start_day(self, orders: list[Order]) -> None:
        """Count today's orders already on record (after a restart): daily limits hold across restarts."""
        today = trading_day_of(now())
        self._day = today
        self.orders_today = sum(
            1
            for o in orders
            if trading_day_of(o.datetime) == today and not o.order_id.startswith(LOCAL_ORDER_PREFIX)
        )
        self.cancels_today = 0  # cancels are not on record; counted from here on

    def _roll_day(self) -> None:
        today = trading_day_of(now())
        if today != self._day:
            self._day = today
            self.orders_today = 0
            self.cancels_today = 0

    def record_order(self, req: OrderRequest, order_id: str = "") -> _Sent:
        """An order is being sent to the venue (counted before the call: an order sent from
        within that call must see this one). Set ``order_id`` on the result once known."""
        t = self.clock()
        self._orders.append(t)
        sent = _Sent(t, req, order_id)
        if self.config.duplicate_window > 0:  # else never read (nor pruned): keep none
            self._recent.append(sent)
        self.orders_today += 1
        return sent

    def withdraw(self, sent: _Sent) -> None:
        """An order counted by ``record_order`` never left us (the gateway refused it on our
        side, or failed): it counts for no limit, live as after a restart (``start_day``
        leaves ``LOCAL.`` orders out too)."""
        with contextlib.suppress(ValueError):
            self._orders.remove(sent.at)
        with contextlib.suppress(ValueError):
            self._recent.remove(sent)
        self.orders_today = max(self.orders_today - 1, 0)

    def record_cancel(self) -> None:
        """A cancel was sent to the venue."""
        self._cancels.append(self.clock())
        self.cancels_today += 1

    @staticmethod
    def _in_window(times: deque[float], now_t: float, window: float) -> int:
        while times and now_t - times[0] >= window:
            times.popleft()
        return len(times)

    # ------------------------------------------------------------------ orders

    def check(
        self,
        req: OrderRequest,
        *,
        trading_state: TradingState,
        gateway_status: GatewayStatus,
        contract: Contract | None,
        gateway_message: str = "",
        moment: datetime | None = None,
    ) -> Rejection | None:
        """None when ``req`` may go, else the first rule it breaks. ``moment``: the venue's
        time when the trading sessions apply (``core/sessions.py``), None when they do not."""
        cfg = self.config
        if gateway_status is not GatewayStatus.CONNECTED:
            return Rejection(
                "venue", f"not connected ({venue_state(gateway_status, gateway_message)}); order not sent"
            )
        if contract is None:
            return Rejection("contract", f"unknown contract {req.vt_symbol}")
        if moment is not None and (opens := when_closed(req.vt_symbol, moment)) is not None:
            return Rejection("market closed", opens)
        vol = req.volume
        if not math.isfinite(vol) or not math.isfinite(req.price):
            return Rejection("number", f"price and volume must be finite numbers, got {req.price} x {vol}")
        if vol <= 0 or vol != int(vol):
            return Rejection("volume", f"volume must be a positive whole number of lots, got {vol:g}")
        if vol % contract.min_volume:
            return Rejection("volume", f"volume {vol:g} is not a multiple of {contract.min_volume}")
        if vol > cfg.max_order_volume:
            return Rejection("max_order_volume", f"volume {vol:g} > limit {cfg.max_order_volume}")
        if trading_state is TradingState.HALTED:
            return Rejection("halted", "account is HALTED: no new orders (cancels are allowed)")
        reduces = self._reduces(req)
        if trading_state is TradingState.REDUCING and not reduces:
            return Rejection("reducing", "account is REDUCING: only orders that reduce a position")
        if req.type is not OrderType.MARKET:
            price_problem = self._check_price(req, contract)
            if price_problem is not None:
                return price_problem
        if cfg.max_order_notional is not None:
            notional = contract.notional(self._worst_price(req), vol)
            if notional > cfg.max_order_notional:
                return Rejection(
                    "max_order_notional", f"notional {notional:,.2f} > limit {cfg.max_order_notional:,.2f}"
                )
        return self._check_flow(req, reduces)

    def _check_flow(self, req: OrderRequest, reduces: bool) -> Rejection | None:
        """The rules that depend on what was sent before and what is working."""
        cfg = self.config
        t = self.clock()
        rate = self._in_window(self._orders, t, RATE_WINDOW) + 1
        if rate > cfg.max_orders_per_second:
            return Rejection("order_rate", f"{rate} orders in 1 s > limit {cfg.max_orders_per_second}")
        active = len(self.oms.active_orders) + 1
        if active > cfg.max_active_orders:
            return Rejection("active_orders", f"{active} working orders > limit {cfg.max_active_orders}")
        self._roll_day()
        if self.orders_today + 1 > cfg.max_daily_orders:
            return Rejection(
                "daily_orders", f"{self.orders_today + 1} orders today > limit {cfg.max_daily_orders}"
            )
        if not req.offset.is_close and not reduces:
            held = self._exposure(req.vt_symbol, req.direction)
            if held + req.volume > cfg.max_position_per_contract:
                side = req.direction.name.lower()
                return Rejection(
                    "position_limit",
                    f"{held:g} + {req.volume:g} lots {side} {req.vt_symbol} > limit {cfg.max_position_per_contract}",
                )
        if cfg.check_self_trade:
            crossed = self._self_cross(req)
            if crossed is not None:
                return crossed
        if cfg.duplicate_window > 0:
            return self._duplicate(req, t)
        return None

    def check_cancel(self) -> Rejection | None:
        """Rate and daily limits of cancels (a cancel is never blocked by the trading state)."""
        cfg = self.config
        rate = self._in_window(self._cancels, self.clock(), RATE_WINDOW) + 1
        if rate > cfg.max_cancels_per_second:
            return Rejection("cancel_rate", f"{rate} cancels in 1 s > limit {cfg.max_cancels_per_second}")
        self._roll_day()
        if self.cancels_today + 1 > cfg.max_daily_cancels:
            return Rejection(
                "daily_cancels", f"{self.cancels_today + 1} cancels today > limit {cfg.max_daily_cancels}"
            )
        return None

    # ------------------------------------------------------------------ details

    def _check_price(self, req: OrderRequest, contract: Contract) -> Rejection | None:
        d = contract.decimals
        if req.price <= 0:
            return Rejection("price", f"price must be positive, got {req.price:.{d}f}")
        if not on_tick_grid(req.price, contract.pricetick):
            return Rejection(
                "tick_grid",
                f"price {req.price:.{d + 1}f} is not on the {contract.pricetick:g} grid of {req.vt_symbol}",
            )
        tick = self.oms.ticks.get(req.vt_symbol)
        if tick is not None:
            if tick.limit_up and req.price > tick.limit_up + 1e-9:
                return Rejection(
                    "price_limit", f"price {req.price:.{d}f} above limit-up {tick.limit_up:.{d}f}"
                )
            if tick.limit_down and req.price < tick.limit_down - 1e-9:
                return Rejection(
                    "price_limit", f"price {req.price:.{d}f} below limit-down {tick.limit_down:.{d}f}"
                )
        return None

    def _worst_price(self, req: OrderRequest) -> float:
        """The price an order may trade at: its limit, or for a market order the day's limit
        price on its side (else the last price)."""
        if req.type is not OrderType.MARKET:
            return req.price
        tick = self.oms.ticks.get(req.vt_symbol)
        if tick is None:
            return req.price
        bound = tick.limit_up if req.direction is Direction.LONG else tick.limit_down
        return bound or tick.last_price

    def _reduces(self, req: OrderRequest) -> bool:
        if not req.offset.is_close:
            return False
        closed = position_direction_closed_by(req.direction)
        return self.oms.closable(req.vt_symbol, closed).total >= req.volume

    def _exposure(self, vt_symbol: str, direction: Direction) -> float:
        """Lots held plus lots in working opening orders, on one side of one contract."""
        pos = self.oms.position(vt_symbol, direction)
        held = pos.volume if pos is not None else 0.0
        for order in self.oms.active_orders.values():
            if order.vt_symbol == vt_symbol and order.direction is direction and order.offset is Offset.OPEN:
                held += order.remaining
        return held

    def _self_cross(self, req: OrderRequest) -> Rejection | None:
        buying = req.direction is Direction.LONG
        for order in self.oms.active_orders.values():
            if order.vt_symbol != req.vt_symbol or order.direction is req.direction:
                continue
            market = req.type is OrderType.MARKET
            crosses = market or (req.price >= order.price if buying else req.price <= order.price)
            if crosses:
                mine = "buy" if buying else "sell"
                theirs = "sell" if buying else "buy"
                at = "at market" if market else f"at {req.price:g}"
                return Rejection(
                    "self_trade",
                    f"{mine} {at} would cross our working {theirs} at {order.price:g} (order {order.order_id})",
                )
        return None

    def _duplicate(self, req: OrderRequest, t: float) -> Rejection | None:
        window = self.config.duplicate_window
        while self._recent and t - self._recent[0].at >= window:
            self._recent.popleft()
        for sent in self._recent:
            r = sent.req
            if (
                r.vt_symbol == req.vt_symbol
                and r.direction is req.direction
                and r.offset is req.offset
                and r.type is req.type
                and r.price == req.price
                and r.volume == req.volume
                and r.decision == req.decision
            ):
                return Rejection(
                    "duplicate",
                    f"same order as {sent.order_id} {t - sent.at:.2f} s ago (window {window:g} s)",
                )
        return None
