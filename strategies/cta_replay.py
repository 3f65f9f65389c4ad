"""A vnpy ``CtaTemplate`` replayed over 1-minute bars in its host, matched as vnpy's
``BacktestingEngine`` matches (ARCHITECTURE.md, "Strategies"; the batch command of README.md,
"Replay").

``CtaReplay`` plays the engine's part for one ``CtaHost`` (``strategies/cta_host.py``): the host
sends its orders through ``place`` / ``cancel`` as in a trader, and the replay rests them and
crosses them against the NEXT bar, in the order vnpy's bar mode does (``new_bar``: resting limit
orders, then stop orders, then the template's ``on_bar``, then the day's close):

- a limit order still SUBMITTING is reported NOTTRADED first; a buy fills whole when the bar's
  low is at or below its price, at the better of its price and the bar's open (a sell: high,
  the higher of the two); it is reported ALLTRADED, then ``pos`` moves, then ``on_trade``;
- a stop order (held in the host) triggers when the bar's high reaches a buy stop (the low a sell
  stop) and fills whole at the worse of the stop price and the open: ``on_stop_order``
  (TRIGGERED), ``on_order`` (ALLTRADED), ``pos``, ``on_trade``; the limit orders and stops
  crossed are those waiting when the bar came, so one cancelled by an earlier fill's
  ``on_trade`` on the same bar still fills, as in vnpy's backtester;
- the days are calendar days of the bars' datetimes; each day's P&L is vnpy's ``DailyResult``:
  holding P&L on the day's starting position from the previous close, trading P&L of each trade
  to the day's close, commission = ``rate`` x turnover (volume x size x price), slippage =
  volume x size x ``slippage`` (a cost, never moved into the fill price), net = total - both.

Order ids are the replay's own (``REPLAY.<n>``), trade ids ``<n>``; ``load_bar`` gives nothing
(the file is the whole history: the template warms up on its first bars, as in vnpy's backtester
with an empty database); the orders keep the offset the template sent (no close split: vnpy's
backtester has none either) and are not subject to a trader's risk rules.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from core.models import Account, Bar, Contract, Direction, Offset, Order, OrderType, Position, Status, Trade

from .base import Signal, Strategy
from .cta_host import CtaHost

__all__ = ["CtaReplay", "DailyResult", "ReplayRisk", "to_vn_bars"]

REPLAY_ACCOUNT = "REPLAY"


@dataclass
class ReplayRisk:
    """A replayed instance's own limits: none (vnpy's backtester has none)."""

    stop_loss_pct: float | None = None
    take_profit_pct: float | None = None
    max_position: int = 1 << 30


@dataclass
class DailyResult:
    """One calendar day of a replay, as vnpy's ``DailyResult.calculate_pnl`` computes it."""

    date: date
    close_price: float
    pre_close: float = 0.0
    trades: list[Trade] = field(default_factory=list)
    start_pos: float = 0.0
    end_pos: float = 0.0
    turnover: float = 0.0
    commission: float = 0.0
    slippage: float = 0.0
    trading_pnl: float = 0.0
    holding_pnl: float = 0.0
    total_pnl: float = 0.0
    net_pnl: float = 0.0

    def calculate(
        self, pre_close: float, start_pos: float, size: float, rate: float, slippage: float
    ) -> None:
        self.pre_close = pre_close or 1  # vnpy: 1 on the first day (its start_pos is 0 anyway)
        self.start_pos = self.end_pos = start_pos
        self.holding_pnl = start_pos * (self.close_price - self.pre_close) * size
        for trade in self.trades:
            change = trade.volume if trade.direction is Direction.LONG else -trade.volume
            self.end_pos += change
            turnover = trade.volume * size * trade.price
            self.trading_pnl += change * (self.close_price - trade.price) * size
            self.slippage += trade.volume * size * slippage
            self.turnover += turnover
            self.commission += turnover * rate
        self.total_pnl = self.trading_pnl + self.holding_pnl
        self.net_pnl = self.total_pnl - self.commission - self.slippage


def to_vn_bars(bars: Sequence[Bar]) -> list[Any]:
    """Our 1-minute bars as vnpy ``BarData`` (what a template's ``on_bar`` takes)."""
    from vnpy.trader.constant import Exchange, Interval
    from vnpy.trader.object import BarData

    out: list[Any] = []
    exchanges: dict[str, Any] = {}
    for bar in bars:
        symbol, _, exchange = bar.vt_symbol.rpartition(".")
        vn_exchange = exchanges.get(exchange)
        if vn_exchange is None:
            vn_exchange = exchanges[exchange] = Exchange[exchange]
        out.append(
            BarData(
                symbol=symbol,
                exchange=vn_exchange,
                datetime=bar.datetime,
                interval=Interval.MINUTE,
                volume=bar.volume,
                turnover=bar.turnover,
                open_interest=bar.open_interest,
                open_price=bar.open_price,
                high_price=bar.high_price,
                low_price=bar.low_price,
                close_price=bar.close_price,
                gateway_name=REPLAY_ACCOUNT,
            )
        )
    return out


class CtaReplay:
    """One ``CtaTemplate`` in its host over a list of bars: the host's engine and the matcher."""

    saves_state = False  # nothing is kept: the host skips sync_data after each trade
    engine_type = "BACKTESTING"  # the template's get_engine_type(), as in vnpy's backtester
    reports_new_stops = False  # as vnpy's backtester: on_stop_order on trigger and cancel only

    def __init__(
        self,
        host_cls: type[CtaHost],
        contract: Contract,
        setting: Mapping[str, Any] | None = None,
        *,
        rate: float = 0.0,
        slippage: float = 0.0,
        capital: float = 1_000_000,
        name: str | None = None,
    ) -> None:
        self._contract = contract
        self.vt_symbol = contract.vt_symbol
        self.rate, self.slippage, self.capital = rate, slippage, capital
        self.logs: list[str] = []
        self.orders: dict[str, Order] = {}  # every order, by id
        self.trades: list[Trade] = []
        self.daily: dict[date, DailyResult] = {}
        self._active: dict[str, Order] = {}  # resting limit orders, oldest first
        self._order_count = 0
        self._datetime: datetime | None = None
        from vnpy.trader.constant import Direction as VnDirection

        self._vn_long = VnDirection.LONG
        self.host: CtaHost = host_cls(
            self, name or host_cls.class_name, self.vt_symbol, setting or {}, ReplayRisk()
        )

    # ------------------------------------------------------------------ the run

    def run(self, bars: Sequence[Any]) -> None:
        """Init and start the template, feed it ``bars`` (vnpy ``BarData``, oldest first), stop it."""
        host = self.host
        if bars:
            self._datetime = bars[0].datetime
        host.on_init()
        host.on_start()
        on_bar = host.cta.on_bar  # host.replay_bar, inlined: one call a bar less
        cross_limit, cross_stop = self._cross_limit, self._cross_stop
        active, stops = self._active, host._stops
        daily = self.daily
        day: date | None = None
        result: DailyResult | None = None
        for bar in bars:
            self._datetime = bar.datetime
            if active:
                cross_limit(bar)
            if stops:
                cross_stop(bar)
            host._clock = bar.datetime
            on_bar(bar)
            today = bar.datetime.date()
            if today != day:
                day = today
                result = daily.get(today)
                if result is None:
                    result = daily[today] = DailyResult(today, bar.close_price)
            assert result is not None
            result.close_price = bar.close_price
        host.on_stop()
        self._settle()

    def _cross_limit(self, bar: Any) -> None:
        """vnpy's ``cross_limit_order`` in bar mode."""
        host = self.host
        low, high, best = bar.low_price, bar.high_price, bar.open_price
        for order in list(self._active.values()):
            if order.status is Status.SUBMITTING:
                order.status = Status.NOTTRADED
                host.on_order(order)
            long = order.direction is Direction.LONG
            if long:
                if not (order.price >= low and low > 0):
                    continue
                price = min(order.price, best)
            else:
                if not (order.price <= high and high > 0):
                    continue
                price = max(order.price, best)
            self._active.pop(order.order_id, None)
            self._fill(order, price, bar.datetime)

    def _cross_stop(self, bar: Any) -> None:
        """vnpy's ``cross_stop_order`` in bar mode (the stop orders are the host's)."""
        host = self.host
        high, low, best = bar.high_price, bar.low_price, bar.open_price
        vn_long = self._vn_long
        for stop in host.waiting_stops():
            long = stop.direction is vn_long
            if long:
                if not stop.price <= high:
                    continue
                price = max(stop.price, best)
            else:
                if not stop.price >= low:
                    continue
                price = min(stop.price, best)
            order = self._new_order(
                Direction[stop.direction.name], Offset[stop.offset.name], stop.price, stop.volume
            )
            host.stop_triggered(stop, order.order_id)
            self._fill(order, price, bar.datetime)

    def _fill(self, order: Order, price: float, at: datetime) -> None:
        price = float(price)  # a template's int arithmetic stays a price
        order.traded, order.traded_price, order.status, order.update_time = (
            order.volume,
            price,
            Status.ALLTRADED,
            at,
        )
        host = self.host
        host.on_order(order)
        trade = Trade(
            account_id=REPLAY_ACCOUNT,
            trade_id=str(len(self.trades) + 1),
            order_id=order.order_id,
            vt_symbol=self.vt_symbol,
            direction=order.direction,
            offset=order.offset,
            price=price,
            volume=order.volume,
            datetime=at,
            commission=order.volume * self._contract.size * price * self.rate,
            reference=host.name,
        )
        self.trades.append(trade)
        host.apply_trade(trade)
        host.on_trade(trade)

    def _new_order(self, direction: Direction, offset: Offset, price: float, volume: float) -> Order:
        self._order_count += 1
        at = self._datetime or datetime.now()
        order = Order(
            account_id=REPLAY_ACCOUNT,
            order_id=f"{REPLAY_ACCOUNT}.{self._order_count}",
            vt_symbol=self.vt_symbol,
            direction=direction,
            offset=offset,
            type=OrderType.LIMIT,
            price=price,
            volume=volume,
            datetime=at,
            reference=self.host.name,
        )
        self.orders[order.order_id] = order
        return order

    def _settle(self) -> None:
        for trade in self.trades:
            self.daily[trade.datetime.date()].trades.append(trade)
        pre_close, start_pos = 0.0, 0.0
        for result in self.daily.values():
            result.calculate(pre_close, start_pos, self._contract.size, self.rate, self.slippage)
            pre_close, start_pos = result.close_price, result.end_pos

    # ------------------------------------------------------------------ results

    @property
    def last_datetime(self) -> datetime | None:
        """The time of the bar being (or last) replayed."""
        return self._datetime

    @property
    def net_pnl(self) -> float:
        return sum(r.net_pnl for r in self.daily.values())

    def summary(self) -> dict[str, Any]:
        """The run's figures (a subset of vnpy's ``calculate_statistics``, same meaning)."""
        days = list(self.daily.values())
        balance, peak, max_dd = float(self.capital), float(self.capital), 0.0
        for r in days:
            balance += r.net_pnl
            peak = max(peak, balance)
            max_dd = min(max_dd, balance - peak)
        return {
            "start_date": days[0].date.isoformat() if days else "",
            "end_date": days[-1].date.isoformat() if days else "",
            "total_days": len(days),
            "profit_days": sum(1 for r in days if r.net_pnl > 0),
            "loss_days": sum(1 for r in days if r.net_pnl < 0),
            "capital": self.capital,
            "end_balance": balance,
            "max_drawdown": max_dd,
            "total_net_pnl": self.net_pnl,
            "total_commission": sum(r.commission for r in days),
            "total_slippage": sum(r.slippage for r in days),
            "total_turnover": sum(r.turnover for r in days),
            "total_trade_count": len(self.trades),
        }

    # ------------------------------------------------------------------ the host's engine (CtaContext)

    def place(
        self,
        strategy: Strategy,
        *,
        direction: Direction,
        offset: Offset,
        price: float,
        volume: float,
        condition: str,
        action: str,
    ) -> list[str]:
        if not (volume > 0 and math.isfinite(price)):
            self.log(strategy, "WARNING", f"{condition}: refused (volume {volume:g}, price {price!r})")
            return []
        order = self._new_order(direction, offset, price, volume)
        self._active[order.order_id] = order
        return [order.order_id]

    def cancel(self, strategy: Strategy, order_id: str) -> str | None:
        order = self._active.pop(order_id, None)
        if order is None:
            return f"order {order_id} is not working"
        order.status = Status.CANCELLED
        self.host.on_order(order)
        return None

    def defer(self, strategy: Strategy, what: str, call: Callable[[], Any]) -> None:
        call()  # no venue event to wait for: vnpy's backtester calls the template at once too

    def load_bars(self, vt_symbol: str, since: datetime) -> list[Bar]:
        return []

    def publish_later(self, strategy: Strategy) -> None:
        pass

    def save_state(self) -> None:
        pass

    def emit(self, strategy: Strategy, signal: Signal) -> None:
        self.log(strategy, "WARNING", f"signal ignored in a replay: {signal.condition}")

    def account(self) -> Account | None:
        return None

    def position(self, vt_symbol: str, direction: Direction) -> Position | None:
        return None

    def contract(self, vt_symbol: str) -> Contract | None:
        return self._contract if vt_symbol == self.vt_symbol else None

    def log(self, strategy: Strategy, level: str, message: str) -> None:
        self.logs.append(f"{self._datetime or ''} {level} {message}")
