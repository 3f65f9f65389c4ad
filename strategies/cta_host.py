"""vnpy CTA strategies, unchanged: a host that is one of our strategies to the engine and plays
vnpy's ``CtaEngine`` to a ``vnpy_ctastrategy.CtaTemplate`` instance (ARCHITECTURE.md, "Strategies").

A config entry names the class as vnpy users know it (``class:
vnpy_ctastrategy.strategies.double_ma_strategy:DoubleMaStrategy``, or a class in
``strategy_path``) with ``setting`` (or ``params``) by parameter name; ``host_class`` makes the
engine-facing class for it (its ``parameters`` are the template's, typed by their defaults).

What the template gets, as vnpy's live ``CtaEngine`` gives it:

- ``on_init`` once at load (after the instance's trades are booked): ``load_bar(days)`` reads the
  account's stored 1-minute bars; then the variables saved by ``sync_data`` are restored (``pos``
  excepted: it is the instance's own book, from its recorded trades); ``inited``;
- ``on_start`` / ``on_stop`` (``trading``; a stop cancels the instance's orders and syncs). Template
  code that raises stops the instance (the engine says why) with ``trading`` and ``inited`` off, as
  vnpy does; starting it again runs ``on_init`` again first;
- ``on_tick``, ``on_order``, ``on_trade`` (``pos`` updated first), ``on_stop_order``: delivered
  after the gateway event that caused them, in order, as vnpy's event queue does, so an order the
  template sends is never sent from inside a venue's own processing. Ticks keep coming while the
  instance is stopped (its bars go on; it sends nothing, not trading), as vnpy feeds every
  inited template;
- ``buy``/``sell``/``short``/``cover``: limit orders through the engine (``CtaContext.place``):
  the account's risk rules, the instance's ``max_position`` for opens, its name as reference, a
  strategy trigger for each (condition ``"DoubleMaStrategy.buy 3650 x1"``), and for a close on
  SHFE/INE the close policy's CLOSEYESTERDAY then CLOSETODAY legs. The ids of the orders that went
  out are returned; a refused order comes back through ``on_order`` as REJECTED;
- ``stop=True``: a local stop order held here (in memory, not one of the trader's conditional orders),
  triggered when a tick's last price crosses it, sent as a limit at the limit-up / limit-down
  price (else the 5th, then the 1st level) as ``CtaEngine.check_stop_order`` does, reported via
  ``on_stop_order`` (WAITING, TRIGGERED, CANCELLED). A triggered stop that sends nothing (auto-
  trading off, refused) is tried again after ``GUARD_REPEAT_SECONDS``, not on every tick;
- ``cancel_order`` / ``cancel_all``, ``write_log``, ``put_event``, ``sync_data``,
  ``get_pricetick``, ``get_size``, ``get_engine_type`` (LIVE).

A replay (``strategies/cta_replay.py``) plays the engine's part instead: it feeds bars straight to
``on_bar`` (``replay_bar``), crosses the host's stop orders itself (``waiting_stops``,
``stop_triggered``), and says what differs by attributes of its own: ``engine_type``
BACKTESTING, ``saves_state`` False (no ``sync_data`` after each trade), ``reports_new_stops``
False (``on_stop_order`` on trigger and cancel only, as vnpy's backtester).

Not supported (logged when called): ``load_tick`` (ticks are not stored: nothing loaded),
``load_bar`` at an interval other than a minute, ``send_email``, ``lock``/``net`` order modes
(sent as plain orders), server-side stop orders.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from core.models import CHINA_TZ, Bar, Direction, Offset, Order, Tick, Trade
from core.sessions import SessionTable, session_of, table_of

from .base import GUARD_REPEAT_SECONDS, Param, Strategy, StrategyContext, StrategyError, StrategyRisk

if TYPE_CHECKING:
    from vnpy_ctastrategy import CtaTemplate, StopOrder

__all__ = ["CtaContext", "CtaHost", "host_class", "is_cta_class", "keep_windows_in_sessions"]

#: vnpy's prefix of local stop order ids (``vnpy_ctastrategy.base.STOPORDER_PREFIX``).
STOPORDER_PREFIX = "STOP"

#: Variables vnpy never syncs (``CtaEngine.sync_strategy_data``).
_NOT_SYNCED = ("inited", "trading")

_CALLS = {
    (Direction.LONG, False): ("buy", "buy"),
    (Direction.SHORT, True): ("sell", "close"),
    (Direction.SHORT, False): ("short", "sell"),
    (Direction.LONG, True): ("cover", "close"),
}


class CtaContext(StrategyContext, Protocol):
    """What the host needs of the engine beyond a strategy's context (``core/strategy_engine.py``)."""

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
    ) -> list[str]: ...
    def cancel(self, strategy: Strategy, order_id: str) -> str | None: ...
    def load_bars(self, vt_symbol: str, since: datetime) -> list[Bar]: ...
    def defer(self, strategy: Strategy, what: str, call: Callable[[], Any]) -> None: ...
    def publish_later(self, strategy: Strategy) -> None: ...
    def save_state(self) -> None: ...


def keep_windows_in_sessions(bg: Any, table: SessionTable) -> None:
    """Make vnpy ``BarGenerator`` ``bg`` close its window bar at a session break: vnpy closes a
    window only at its clock minute (``(minute + 1) % window == 0``), so a 30-minute window
    would hold 10:00-10:14 and 10:30-10:44. The window in progress is completed when the
    session of its minutes ends, or when a minute of another session arrives first. Once per
    generator (the template's own ``update_bar`` calls go through it)."""
    if getattr(bg, "_in_sessions", False):
        return
    update = bg.update_bar
    session: list[tuple[datetime, datetime] | None] = [None]

    def complete() -> None:
        bar, bg.window_bar = bg.window_bar, None
        if bg.on_window_bar:
            bg.on_window_bar(bar)

    def update_bar(bar: Any) -> None:
        start = bar.datetime if bar.datetime.tzinfo is not None else bar.datetime.replace(tzinfo=CHINA_TZ)
        current = session[0]
        if bg.window_bar is not None and current is not None and not current[0] <= start <= current[1]:
            complete()  # a break lies between the window's last minute and this one
        session[0] = current = session_of(table, start)
        update(bar)
        if bg.window_bar is not None and current is not None and start + timedelta(minutes=1) >= current[1]:
            complete()  # the session ends with this minute: so does the window

    bg.update_bar = update_bar
    bg._in_sessions = True


def is_cta_class(obj: object) -> bool:
    """A subclass of vnpy's ``CtaTemplate`` (checked without importing vnpy)."""
    if not isinstance(obj, type):
        return False
    return any(
        c.__name__ == "CtaTemplate" and c.__module__.startswith("vnpy_ctastrategy") for c in obj.__mro__[1:]
    )


_HOSTS: dict[type, type[CtaHost]] = {}


def host_class(cta_class: type) -> type[CtaHost]:
    """The engine-facing class of a ``CtaTemplate`` subclass (one per class)."""
    host = _HOSTS.get(cta_class)
    if host is not None:
        return host
    parameters: dict[str, Param] = {}
    for pname in getattr(cta_class, "parameters", []):
        default = getattr(cta_class, pname, None)
        kind = type(default) if type(default) in (int, float, bool, str) else object
        parameters[pname] = Param(default, kind)
    host = type(
        cta_class.__name__,
        (CtaHost,),
        {"cta_class": cta_class, "class_name": cta_class.__name__, "__module__": __name__},
    )
    # set after creation: the template's names are checked against the template, not ours
    host.parameters = parameters
    _HOSTS[cta_class] = host
    return host


def _plain(value: Any) -> Any:
    """A variable's value as JSON can hold it (numpy scalars to Python numbers)."""
    item = getattr(value, "item", None)
    if callable(item) and not isinstance(value, int | float | str | bool):
        try:
            return item()
        except (TypeError, ValueError):
            return value
    return value


class _Engine:
    """What a ``CtaTemplate`` calls on ``self.cta_engine``: vnpy's ``CtaEngine`` methods, by name."""

    def __init__(self, host: CtaHost) -> None:
        self.host = host

    def send_order(
        self,
        strategy: CtaTemplate,
        direction: Any,
        offset: Any,
        price: float,
        volume: float,
        stop: bool,
        lock: bool,
        net: bool,
    ) -> list[str]:
        return self.host._send(direction, offset, price, volume, stop=stop, lock=lock, net=net)

    def cancel_order(self, strategy: CtaTemplate, vt_orderid: str) -> None:
        self.host._cancel(vt_orderid)

    def cancel_all(self, strategy: CtaTemplate) -> None:
        self.host._cancel_all()

    def write_log(self, msg: str, strategy: CtaTemplate | None = None) -> None:
        self.host.log(str(msg))

    def send_email(self, msg: str, strategy: CtaTemplate | None = None) -> None:
        self.host.log(f"send_email is not supported; the message was: {msg}", "WARNING")

    def get_engine_type(self) -> Any:
        from vnpy_ctastrategy.base import EngineType

        return EngineType[getattr(self.host.context, "engine_type", "LIVE")]  # a replay: BACKTESTING

    def get_pricetick(self, strategy: CtaTemplate) -> float | None:
        contract = self.host.context.contract(self.host.vt_symbol)
        return contract.pricetick if contract is not None else None

    def get_size(self, strategy: CtaTemplate) -> float | None:
        contract = self.host.context.contract(self.host.vt_symbol)
        return contract.size if contract is not None else None

    def load_bar(
        self, vt_symbol: str, days: int, interval: Any, callback: Callable[..., Any], use_database: bool
    ) -> list[Any]:
        return self.host._load_bar(vt_symbol, days, interval)

    def load_tick(self, vt_symbol: str, days: int, callback: Callable[..., Any]) -> list[Any]:
        self.host.log("load_tick is not supported (ticks are not stored): nothing loaded", "WARNING")
        return []

    def put_strategy_event(self, strategy: CtaTemplate) -> None:
        host = self.host
        host.context.publish_later(host)  # type: ignore[attr-defined]  # the engine is a CtaContext

    def sync_strategy_data(self, strategy: CtaTemplate) -> None:
        self.host._sync()


class CtaHost(Strategy):
    """One ``CtaTemplate`` instance inside our engine (made per class by ``host_class``)."""

    cta_class: ClassVar[type]
    TICKS_WHEN_STOPPED: ClassVar[bool] = True  # vnpy feeds every inited template, trading or not

    def __init__(
        self,
        context: StrategyContext,
        name: str,
        vt_symbol: str,
        params: Mapping[str, Any],
        risk: StrategyRisk,
    ) -> None:
        super().__init__(context, name, vt_symbol, params, risk)
        self.inited = False  # until on_init
        self._active: set[str] = set()  # the template's orders still working (vnpy's strategy_orderid_map)
        self._finished: set[str] = set()  # orders over while being sent (the sim fills at once)
        self._stops: dict[str, StopOrder] = {}
        self._stop_retry: dict[str, datetime] = {}
        self._stop_count = 0
        self._restored: dict[str, Any] | None = None
        self._synced: dict[str, Any] | None = None
        self._warned: set[str] = set()
        self._report_new_stops = getattr(context, "reports_new_stops", True)
        self._grid: tuple[Any, float, int] = (None, 1.0, 0)  # (contract, pricetick, decimals)
        self._sides: dict[
            tuple[Any, Any], tuple[Direction, Offset, str]
        ] = {}  # vnpy's (direction, offset): ours, the call
        from vnpy.trader.constant import Exchange

        self._vn_exchange = Exchange[self.exchange.name]
        self.cta: CtaTemplate = self.cta_class(_Engine(self), name, vt_symbol, dict(self._setting))
        self._bars_in_sessions()
        self.variables = tuple(self.cta.variables)  # type: ignore[misc]  # non-empty: the engine saves it

    def _bars_in_sessions(self) -> None:
        """Live, the template's own minute-window BarGenerators close a window bar at a session
        break too (see ``keep_windows_in_sessions``); the template's code is untouched."""
        table = table_of(self.vt_symbol)
        if table is None or getattr(self.context, "engine_type", "LIVE") != "LIVE":
            return  # a replay keeps vnpy's backtester's bars (tests/test_replay_parity.py)
        from vnpy.trader.constant import Interval
        from vnpy.trader.utility import BarGenerator

        for value in vars(self.cta).values():
            if isinstance(value, BarGenerator) and value.window > 1 and value.interval is Interval.MINUTE:
                keep_windows_in_sessions(value, table)

    @property
    def ctx(self) -> CtaContext:
        return self.context  # type: ignore[return-value]  # the engine is a CtaContext

    # ------------------------------------------------------------------ parameters (the template's)

    def _set_params(self, params: Mapping[str, Any]) -> None:
        unknown = [key for key in params if key not in self.parameters]
        if unknown:
            known = ", ".join(self.parameters) or "none"
            raise StrategyError(
                f"strategy '{self.name}' ({self.class_name}): unknown parameter '{unknown[0]}' "
                f"(known parameters: {known})",
                param=unknown[0],
            )
        setting: dict[str, Any] = {}
        for pname, param in self.parameters.items():
            if pname not in params:
                continue  # vnpy's update_setting: the class default stays
            try:
                setting[pname] = param.check(params[pname])
            except ValueError as exc:
                raise StrategyError(
                    f"strategy '{self.name}' ({self.class_name}): parameter '{pname}' {exc}", param=pname
                ) from None
        self._setting = setting

    @property
    def params(self) -> dict[str, Any]:
        cta = getattr(self, "cta", None)
        if cta is not None:
            return {k: _plain(v) for k, v in cta.get_parameters().items()}
        return {**{k: p.default for k, p in self.parameters.items()}, **self._setting}

    def bars_needed(self) -> int:
        return 0  # the template builds its own bars (vnpy's BarGenerator in its on_init)

    @property
    def stores_bars(self) -> bool:
        return True  # load_bar reads the account's stored 1-minute bars

    # ------------------------------------------------------------------ saved variables

    def saved_state(self) -> dict[str, Any]:
        variables = self._synced if self._synced is not None else (self._restored or {})
        return {"params": self.params, "variables": variables}

    def restore_state(self, saved: Mapping[str, Any]) -> bool:
        """Keep the saved variables for ``on_init`` (vnpy restores them after the template's
        ``on_init``, whatever the parameters)."""
        values = saved.get("variables")
        if not isinstance(values, dict):
            return False
        self._restored = dict(values)
        return True

    def _sync(self) -> None:
        """vnpy's ``sync_strategy_data``: the variables, less ``inited``/``trading``, saved now."""
        data = {k: _plain(v) for k, v in self.cta.get_variables().items() if k not in _NOT_SYNCED}
        self._synced = data
        self.ctx.save_state()

    # ------------------------------------------------------------------ lifecycle

    def on_init(self) -> None:
        cta = self.cta
        try:
            cta.on_init()
            self._bars_in_sessions()  # a template may build its BarGenerators here
            if self._restored:
                for vname in cta.variables:
                    value = self._restored.get(vname)
                    if vname in _NOT_SYNCED or value is None:
                        continue
                    if vname == "pos":
                        if value != self.pos:
                            self.log(
                                f"saved pos {value:g} but the recorded trades give {self.pos:g}: "
                                "the trades win",
                                "WARNING",
                            )
                        continue
                    setattr(cta, vname, value)
                restored = ", ".join(f"{k}={v!r}" for k, v in self._restored.items() if k != "pos")
                self.log(f"restored {restored}")
        except Exception:
            cta.inited = False
            raise
        cta.pos = self.pos
        cta.inited = True
        self.inited = True
        self.log("inited")

    def on_start(self) -> None:
        super().on_start()
        if not self.cta.inited:  # its on_init failed, or its code raised since (vnpy: init it again)
            self.on_init()
        self._call(self.cta.on_start)
        self.cta.trading = True
        self._publish_later()

    def on_stop(self) -> None:
        super().on_stop()
        cta = self.cta
        if not cta.trading:
            return
        try:
            self._call(cta.on_stop)
        finally:
            cta.trading = False
            self._cancel_all()
            self._sync()
            self._publish_later()

    def _call(self, func: Callable[..., Any], *args: Any) -> None:
        """Template code: an exception stops it as vnpy does (trading and inited off) and is
        raised on to the engine, which stops the instance and says why."""
        try:
            func(*args)
        except Exception:
            self.cta.trading = False
            self.cta.inited = False
            raise

    def _publish_later(self) -> None:
        self.ctx.publish_later(self)

    # ------------------------------------------------------------------ events from the engine

    def on_tick(self, tick: Tick) -> None:
        super().on_tick(tick)  # marks, P&L, the instance's own stop-loss / take-profit
        if tick.vt_symbol != self.vt_symbol or tick.last_price <= 0 or not self.cta.inited:
            return
        self.ctx.defer(self, "on_tick", lambda: self._deliver_tick(tick))

    def _deliver_tick(self, tick: Tick) -> None:
        if not self.cta.inited:
            return
        from strategies.base import to_vn_tick

        self._clock = tick.datetime
        vn_tick = to_vn_tick(tick)
        for level in range(2, 6):  # our ticks carry five levels; to_vn_tick copies the first
            for side in ("bid", "ask"):
                for what in ("price", "volume"):
                    attr = f"{side}_{what}_{level}"
                    setattr(vn_tick, attr, getattr(tick, attr, 0) or 0)
        self._check_stops(tick)
        self._call(self.cta.on_tick, vn_tick)

    def apply_trade(self, trade: Trade) -> None:
        super().apply_trade(trade)
        pos = self.pos
        if not self.running:  # trades replayed at load, or filled while stopped: pos only
            self.cta.pos = pos
            return

        def update() -> None:
            self.cta.pos = pos

        self.ctx.defer(self, "pos", update)

    def on_trade(self, trade: Trade) -> None:
        self.ctx.defer(self, "on_trade", lambda: self._deliver_trade(trade))

    def _deliver_trade(self, trade: Trade) -> None:
        if not self.cta.inited:
            return
        self._call(self.cta.on_trade, self._vn_trade(trade))
        if self.cta.trading and getattr(self.ctx, "saves_state", True):  # a replay keeps nothing
            self._sync()
        self._publish_later()

    def on_order(self, order: Order) -> None:
        if not order.is_active:
            self._active.discard(order.order_id)
            self._finished.add(order.order_id)
        self.ctx.defer(self, "on_order", lambda: self._deliver_order(order))

    def _deliver_order(self, order: Order) -> None:
        if self.cta.inited:
            self._call(self.cta.on_order, self._vn_order(order))

    # ------------------------------------------------------------------ orders

    def _send(
        self, direction: Any, offset: Any, price: float, volume: float, *, stop: bool, lock: bool, net: bool
    ) -> list[str]:
        if lock or net:
            self._warn_once("lock", "lock/net order modes are not supported: sent as plain orders")
        side = self._sides.get((direction, offset))
        if side is None:
            try:
                ours_direction, ours_offset = Direction[direction.name], Offset[offset.name]
                call, _ = _CALLS[(ours_direction, ours_offset.is_close)]  # a net order has no side
            except (KeyError, AttributeError, TypeError):
                self.log(f"order refused: direction {direction!r} / offset {offset!r} unknown", "ERROR")
                return []
            side = self._sides[(direction, offset)] = (ours_direction, ours_offset, call)
        ours_direction, ours_offset, call = side
        contract = self.context.contract(self.vt_symbol)
        if contract is None:
            self.log(f"order refused: contract {self.vt_symbol} not known yet", "WARNING")
            return []
        try:
            numbers = math.isfinite(price) and math.isfinite(volume)
        except TypeError:
            numbers = False
        if not numbers:
            self.log(f"order refused: price {price!r} x {volume!r} is not a number", "ERROR")
            return []
        grid = self._grid
        if grid[0] is not contract:  # the grid of this contract object, worked out once
            grid = self._grid = (contract, contract.pricetick, contract.decimals)
        tick = grid[1]
        steps = price / tick
        grid_steps = round(steps)
        if abs(abs(steps - grid_steps) - 0.5) < 1e-6:  # half a tick off: vnpy's round_to decides
            grid_steps = round(Decimal(str(price)) / Decimal(str(tick)))  # decimal, half to even
        price = round(grid_steps * tick, grid[2])  # vnpy's round_to: Contract.round_price
        volume = round(volume / contract.min_volume) * contract.min_volume
        if stop:
            return self._send_stop(direction, offset, price, volume, lock, net)
        return self._send_limit(
            ours_direction,
            ours_offset,
            price,
            volume,
            f"{self.class_name}.{call} {self.fmt(price)} x{volume:g}",
        )

    def _send_limit(
        self, direction: Direction, offset: Offset, price: float, volume: float, condition: str
    ) -> list[str]:
        _, action = _CALLS[(direction, offset.is_close)]
        self._finished.clear()
        ids = self.ctx.place(
            self,
            direction=direction,
            offset=offset,
            price=price,
            volume=volume,
            condition=condition,
            action=action,
        )
        self._active.update(i for i in ids if i not in self._finished)
        self._finished.clear()
        return ids

    def _send_stop(
        self, direction: Any, offset: Any, price: float, volume: float, lock: bool, net: bool
    ) -> list[str]:
        self._stop_count += 1
        stop_id = f"{STOPORDER_PREFIX}.{self.name}.{self._stop_count}"
        stop_order = _vn_stop_order()(
            vt_symbol=self.vt_symbol,
            direction=direction,
            offset=offset,
            price=price,
            volume=volume,
            stop_orderid=stop_id,
            strategy_name=self.name,
            datetime=self.now,
            lock=lock,
            net=net,
        )
        self._stops[stop_id] = stop_order
        if self._report_new_stops:  # vnpy's live engine does; its backtester (and a replay) not
            self._call(self.cta.on_stop_order, stop_order)
        return [stop_id]

    def _check_stops(self, tick: Tick) -> None:
        """vnpy's ``CtaEngine.check_stop_order`` for this instance's stop orders."""
        from vnpy_ctastrategy.base import StopOrderStatus

        last = tick.last_price
        for stop_id, stop_order in list(self._stops.items()):
            if stop_id not in self._stops:
                continue  # cancelled by the template as an earlier one triggered: never sent
            direction = Direction[stop_order.direction.name]
            long = direction is Direction.LONG
            if not ((long and last >= stop_order.price) or (not long and last <= stop_order.price)):
                continue
            retry = self._stop_retry.get(stop_id)
            if retry is not None and tick.datetime < retry:
                continue
            if long:
                price = tick.limit_up or tick.ask_price_5 or tick.ask_price_1 or last
            else:
                price = tick.limit_down or tick.bid_price_5 or tick.bid_price_1 or last
            offset = Offset[stop_order.offset.name]
            call, _ = _CALLS[(direction, offset.is_close)]
            condition = (
                f"{self.class_name}.{call} stop {self.fmt(stop_order.price)} x{stop_order.volume:g}: "
                f"last {self.fmt(last)} crossed it ({stop_id})"
            )
            ids = self._send_limit(direction, offset, price, stop_order.volume, condition)
            if not ids:
                self._stop_retry[stop_id] = tick.datetime + timedelta(seconds=GUARD_REPEAT_SECONDS)
                continue
            self._stops.pop(stop_id, None)
            self._stop_retry.pop(stop_id, None)
            stop_order.status = StopOrderStatus.TRIGGERED
            stop_order.vt_orderids = ids
            self._call(self.cta.on_stop_order, stop_order)

    def _cancel(self, vt_orderid: str) -> None:
        stop_order = self._stops.pop(vt_orderid, None)
        if stop_order is not None:
            self._stop_retry.pop(vt_orderid, None)
            stop_order.status = _vn().StopOrderStatus.CANCELLED
            self._call(self.cta.on_stop_order, stop_order)
            return
        if vt_orderid not in self._active:
            self.log(f"cancel failed: no working order {vt_orderid} of this strategy", "WARNING")
            return
        error = self.ctx.cancel(self, vt_orderid)
        if error:
            self.log(f"cancel of {vt_orderid} failed: {error}", "WARNING")

    def _cancel_all(self) -> None:
        for vt_orderid in [*self._active, *self._stops]:
            self._cancel(vt_orderid)

    @property
    def stop_orders(self) -> dict[str, StopOrder]:
        """The instance's waiting stop orders, by id."""
        return dict(self._stops)

    # ------------------------------------------------------------------ a replay drives it (strategies/cta_replay.py)

    def waiting_stops(self) -> list[StopOrder]:
        """The waiting stop orders, oldest first (a replay matcher crosses them itself)."""
        return list(self._stops.values())

    def stop_triggered(self, stop_order: StopOrder, order_id: str) -> None:
        """A replay matcher triggered ``stop_order`` and filled it as order ``order_id`` (vnpy's
        ``BacktestingEngine.cross_stop_order``): TRIGGERED, reported via ``on_stop_order``. It
        may have been cancelled since the matcher listed the bar's waiting stops (by the
        ``on_trade`` of an earlier fill on the same bar): vnpy's backtester fills it all the
        same, and so does the replay."""
        stop_id = stop_order.stop_orderid
        self._stops.pop(stop_id, None)
        self._stop_retry.pop(stop_id, None)
        stop_order.status = _vn().StopOrderStatus.TRIGGERED
        stop_order.vt_orderids.append(order_id)
        self._call(self.cta.on_stop_order, stop_order)

    def replay_bar(self, bar: Any) -> None:
        """A bar of a replay straight to the template's ``on_bar`` (vnpy's backtester in bar mode:
        no ticks, the template's own bar generator takes it from there)."""
        self._clock = bar.datetime
        self.cta.on_bar(bar)  # a replay ends at the first exception: no _call (one frame a bar less)

    # ------------------------------------------------------------------ history

    def _load_bar(self, vt_symbol: str, days: int, interval: Any) -> list[Any]:
        from vnpy.trader.constant import Interval
        from vnpy.trader.object import BarData

        if interval is not Interval.MINUTE:
            self.log(f"load_bar: only 1-minute bars are stored; {interval} is not supported", "WARNING")
            return []
        if vt_symbol != self.vt_symbol:
            self.log(f"load_bar: only {self.vt_symbol} is loaded, not {vt_symbol}", "WARNING")
            return []
        since = self.now - timedelta(days=days)
        bars = self.ctx.load_bars(vt_symbol, since)
        self.log(f"load_bar({days}): {len(bars)} stored 1-minute bars")
        account = self.context.account()
        gateway = account.account_id if account else "qtrader"
        return [
            BarData(
                symbol=self.symbol,
                exchange=self._vn_exchange,
                datetime=bar.datetime,
                interval=Interval.MINUTE,
                volume=bar.volume,
                turnover=bar.turnover,
                open_interest=bar.open_interest,
                open_price=bar.open_price,
                high_price=bar.high_price,
                low_price=bar.low_price,
                close_price=bar.close_price,
                gateway_name=gateway,
            )
            for bar in bars
        ]

    # ------------------------------------------------------------------ vnpy's objects

    def _vn_order(self, order: Order) -> Any:
        vn = _vn()
        data = vn.OrderData(
            symbol=self.symbol,
            exchange=self._vn_exchange,
            orderid=order.order_id,
            type=vn.types[order.type],
            direction=vn.directions[order.direction],
            offset=vn.offsets[order.offset],
            price=order.price,
            volume=order.volume,
            traded=order.traded,
            status=vn.statuses[order.status],
            datetime=order.datetime,
            reference=order.reference,
            gateway_name=order.account_id,
        )
        data.vt_orderid = order.order_id  # the id the template got from buy/sell/short/cover
        return data

    def _vn_trade(self, trade: Trade) -> Any:
        vn = _vn()
        data = vn.TradeData(
            symbol=self.symbol,
            exchange=self._vn_exchange,
            orderid=trade.order_id,
            tradeid=trade.trade_id,
            direction=vn.directions[trade.direction],
            offset=vn.offsets[trade.offset],
            price=trade.price,
            volume=trade.volume,
            datetime=trade.datetime,
            gateway_name=trade.account_id,
        )
        data.vt_orderid, data.vt_tradeid = trade.order_id, trade.trade_id
        return data

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self.log(message, "WARNING")


class _VnNames:
    """vnpy's classes and our enums' vnpy twins (by name), looked up once."""

    def __init__(self) -> None:
        from vnpy.trader import constant
        from vnpy.trader.object import OrderData, TradeData
        from vnpy_ctastrategy.base import StopOrder, StopOrderStatus

        from core.models import OrderType, Status

        self.OrderData, self.TradeData, self.StopOrder = OrderData, TradeData, StopOrder
        self.StopOrderStatus = StopOrderStatus
        self.directions = {d: constant.Direction[d.name] for d in Direction}
        self.offsets = {o: constant.Offset[o.name] for o in Offset}
        self.types = {t: constant.OrderType[t.name] for t in OrderType}
        self.statuses = {s: constant.Status[s.name] for s in Status}


_VN: list[_VnNames] = []


def _vn() -> _VnNames:
    """vnpy's names (imported at first use, not with this module)."""
    if not _VN:
        _VN.append(_VnNames())
    return _VN[0]


def _vn_stop_order() -> type:
    return _vn().StopOrder
