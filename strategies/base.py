"""The strategy base class and the vocabulary between strategies and the strategy engine.

A strategy DECIDES; it never sends orders. Each decision is a ``Signal`` handed to the engine
through ``StrategyContext.emit``; the engine validates it, records it as a strategy trigger and,
when the account's auto-trading is on, turns it into orders (ARCHITECTURE.md, "Strategies").

What the base class does for every strategy:

- parameters: declared as ``Param`` in ``parameters``, validated on construction (unknown name,
  wrong type, out of range -> ``StrategyError`` naming instance, parameter and expectation) and set
  as attributes (``self.fast_window``);
- bars and indicators: ticks go through vnpy's ``BarGenerator`` (1-minute bars, and ``bar_window``
  -minute bars above that) into vnpy's ``ArrayManager`` (TA-Lib); ``on_bar`` receives the
  strategy's bars. vnpy is imported on first use, so a trader without bar strategies never loads it;
- the instance's own book: ``pos`` (net lots, + long / - short), ``avg_price`` and ``pnl``
  (realised + floating, x contract multiplier), from the trades the engine passes to
  ``apply_trade``;
- the per-instance risk guard from its ``StrategyRisk`` limits (stop-loss / take-profit in % of the
  entry price, checked on every tick);
- warm-up on history with emission suppressed.

Times: ``Bar.datetime`` is the START of the bar (vnpy's convention); a bar is complete at
``datetime + interval``, and that end time is the time of the decisions taken on it, so the
engine's staleness check (signals older than 60 s) sees a fresh signal.

What the engine does with an instance:

- create it (``StrategyError`` = a configuration problem to show the operator), replay the
  instance's past trades through ``apply_trade`` (idempotent by trade id), ``warm_up`` with the
  last ``warm_up_minutes`` 1-minute bars, ``on_init`` once, then ``on_start``; ``on_stop`` to
  stop it; it stores the 1-minute bars of the symbols of instances that ``stores_bars``;
- deliver ``on_tick`` for its symbol, ``apply_trade`` then ``on_trade`` for its trades, ``on_order``
  for its orders, and call ``flush_bar(now)`` from a timer a few seconds after each minute;
- execute ``buy``/``sell`` as "close this instance's opposite lots first, open the rest" (see
  ``Signal``: a reversal is one signal) and ``close`` as closing ``volume`` lots of the position
  in ``direction`` (the trader picks close-today / close-yesterday). Check a close against the
  ACCOUNT's closable volume: a stop guard closes lots that other instances or the operator opened.
- keys: bar and tick decisions carry ``<name>@<event time>`` keys (``event_key``), so the 5-minute
  duplicate rule only catches the same decision emitted twice, never a new cross or a stop-loss of
  a new position.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

import msgspec

from core.models import (
    CHINA_TZ,
    Account,
    Bar,
    Contract,
    Direction,
    Offset,
    Order,
    Position,
    StrategyState,
    Tick,
    Trade,
    decimals_of,
    now,
    split_vt_symbol,
)
from core.sessions import session_of, table_of

if TYPE_CHECKING:
    from vnpy.trader.object import BarData

__all__ = [
    "GUARD_REPEAT_SECONDS",
    "PCT_EPSILON",
    "Param",
    "Signal",
    "SignalLatch",
    "Strategy",
    "StrategyContext",
    "StrategyError",
    "crossed",
]

#: A guard condition (stop-loss, take-profit, trailing exit) that keeps holding is emitted again
#: after this many seconds, so a rejected close is retried without flooding the trigger log.
GUARD_REPEAT_SECONDS = 60.0

#: Slack for percentage thresholds, so that a move of exactly 2 % meets a 2 % limit despite float noise.
PCT_EPSILON = 1e-9

#: Bar windows BarGenerator aggregates correctly (it closes a window when (minute + 1) % window == 0).
_BAR_WINDOWS = (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60)

_KIND_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}

_INTERVAL_RE = re.compile(r"^(\d+)([mh])$")


class StrategyError(Exception):
    """A strategy cannot be created or loaded as configured (bad parameters, unknown class ...).

    The message is meant for the operator: it names the instance, the parameter and what was
    expected; ``param`` is the parameter's name when one parameter is at fault (a configuration
    check points at ``params.<param>`` with it).
    """

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class Param:
    """A declared strategy parameter: default, type and inclusive range."""

    default: Any
    kind: type  # int | float | bool | str
    min: float | None = None
    max: float | None = None
    help: str = ""

    def expectation(self) -> str:
        """What a valid value looks like, in words: ``an integer between 1 and 500``."""
        text = _KIND_NAMES.get(self.kind, self.kind.__name__)
        if self.min is not None and self.max is not None:
            return f"{text} between {self.min:g} and {self.max:g}"
        if self.min is not None:
            return f"{text} >= {self.min:g}"
        if self.max is not None:
            return f"{text} <= {self.max:g}"
        return text

    def check(self, value: Any) -> Any:
        """The value converted to ``kind`` (an int is accepted for a float); ValueError if invalid."""
        if self.kind is bool:
            ok = isinstance(value, bool)
        elif self.kind is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif self.kind is float:
            ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
            if ok:
                value = float(value)
        else:
            ok = isinstance(value, self.kind)
        if not ok:
            raise ValueError(f"must be {self.expectation()}, got {value!r} ({type(value).__name__})")
        if (self.min is not None and value < self.min) or (self.max is not None and value > self.max):
            raise ValueError(f"must be {self.expectation()}, got {value!r}")
        return value


class Signal(msgspec.Struct, kw_only=True):
    """A decision of a strategy, before any execution.

    ``buy`` trades ``volume`` lots up: the engine first closes this instance's SHORT position (up
    to ``volume`` lots), then opens long with the rest; ``sell`` is the mirror image. So a
    reversal is ONE signal: short 1 -> long 1 is ``buy`` 2. ``close`` reduces the position given
    by ``direction`` by ``volume`` lots (the account's position: a stop guard closes lots other
    instances opened); ``hold`` records a decision to do nothing (volume 0).
    """

    action: Literal["buy", "sell", "close", "hold"]
    condition: str  # in words with the numbers
    price: float  # reference price; the engine prices the order
    volume: float  # lots
    direction: Direction | None = None  # for close: the POSITION direction to reduce
    datetime: datetime  # when the condition held (bar end time or tick time)
    key: str = ""  # what makes two signals "the same" for duplicate suppression


class StrategyRisk(Protocol):
    """An instance's own limits, as the engine hands them over (its config's ``risk:`` section).

    A protocol so that strategies need nothing from the configuration package:
    ``config.schema.StrategyRiskConfig`` has these attributes, and so may any test double.
    """

    #: Loss that closes the instance's position, in % of its entry price; None = no stop-loss.
    stop_loss_pct: float | None
    #: Gain that closes it, in % of the entry price; None = no take-profit.
    take_profit_pct: float | None
    #: Most lots the instance may hold (the engine refuses signals beyond it).
    max_position: int


class StrategyContext(Protocol):
    """What a strategy may ask of the engine that runs it."""

    def emit(self, strategy: Strategy, signal: Signal) -> None: ...
    def account(self) -> Account | None: ...
    def position(self, vt_symbol: str, direction: Direction) -> Position | None: ...
    def contract(self, vt_symbol: str) -> Contract | None: ...
    def log(self, strategy: Strategy, level: str, message: str) -> None: ...


class SignalLatch:
    """Emit-once memory for conditions checked on every tick.

    A guard condition (say, "loss beyond 2 %") holds on every tick until the position is closed;
    emitting it each time would flood the trigger log (and, with auto-trading off, nothing ever
    closes it), and a price wobbling around the limit would emit it again and again. ``ready``
    lets a condition through once per ``state`` (a tuple describing the position it was computed
    for), again when the state changes (a fill, a new position), and again ``repeat`` seconds later
    if it still holds (a rejected or unexecuted close is asked for again). ``clear`` forgets it.
    """

    def __init__(self, repeat: float = GUARD_REPEAT_SECONDS) -> None:
        self.repeat = repeat
        self._fired: dict[str, tuple[tuple[Any, ...], datetime]] = {}

    def ready(self, name: str, state: tuple[Any, ...], at: datetime) -> bool:
        """True if ``name`` may be emitted now for ``state``; marks it emitted."""
        fired = self._fired.get(name)
        if fired is not None and fired[0] == state and (at - fired[1]).total_seconds() < self.repeat:
            return False
        self._fired[name] = (state, at)
        return True

    def clear(self, name: str | None = None) -> None:
        """Re-arm one condition (or all)."""
        if name is None:
            self._fired.clear()
        else:
            self._fired.pop(name, None)


class _Leg:
    """One direction of the instance's own position (China futures keep long and short apart)."""

    __slots__ = ("price", "volume")

    def __init__(self) -> None:
        self.volume = 0.0
        self.price = 0.0

    def add(self, volume: float, price: float) -> None:
        total = self.volume + volume
        self.price = (self.price * self.volume + price * volume) / total
        self.volume = total

    def reduce(self, volume: float) -> float:
        """Take up to ``volume`` lots off this leg; returns the lots actually taken."""
        taken = min(volume, self.volume)
        self.volume = round(self.volume - taken, 8)
        if self.volume <= 0:
            self.volume, self.price = 0.0, 0.0
        return taken


def import_talib() -> None:
    """Import TA-Lib, if it is not imported yet, without its pandas and polars wrappers.

    TA-Lib imports pandas (when installed) only to let its functions take a ``pandas.Series``:
    that costs a trader about 0.2 s and 35 MB, for strategies that pass numpy arrays (vnpy's
    ``ArrayManager`` does). So pandas and polars are kept out while TA-Lib imports (a strategy
    may still import pandas itself, and then pass TA-Lib ``series.to_numpy()``). Called before
    vnpy's tools or any strategy module is imported, which may import TA-Lib.
    """
    if "talib" in sys.modules:
        return
    kept_out = [name for name in ("pandas", "polars") if name not in sys.modules]
    for name in kept_out:
        sys.modules[name] = None  # type: ignore[assignment]  # "import pandas" raises ImportError
    try:
        import talib  # noqa: F401
    except ImportError:
        pass  # not installed: the import that needs it says so
    finally:
        for name in kept_out:
            if sys.modules.get(name, False) is None:
                del sys.modules[name]


def _vnpy() -> Any:
    """vnpy's bar and indicator tools, imported on first use.

    Importing vnpy costs about 0.1 s (numpy, talib; pandas kept out: ``import_talib``) and
    vnpy picks its working folder (``.vntrader`` in the current directory, else in the home
    directory, which it creates) at import time; a trader without bar strategies pays neither.
    """
    import_talib()
    from vnpy.trader import constant, object, utility

    return constant, object, utility


def to_vn_tick(tick: Tick) -> Any:
    """Our tick as vnpy's TickData (enums by name), for vnpy's BarGenerator."""
    constant, obj, _ = _vnpy()
    symbol, exchange = split_vt_symbol(tick.vt_symbol)
    return obj.TickData(
        symbol=symbol,
        exchange=constant.Exchange[exchange.name],
        datetime=tick.datetime,
        gateway_name=tick.account_id or "qtrader",
        volume=tick.volume,
        turnover=tick.turnover,
        open_interest=tick.open_interest,
        last_price=tick.last_price,
        last_volume=tick.last_volume,
        limit_up=tick.limit_up,
        limit_down=tick.limit_down,
        open_price=tick.open_price,
        high_price=tick.high_price,
        low_price=tick.low_price,
        pre_close=tick.pre_close,
        bid_price_1=tick.bid_price_1,
        bid_volume_1=tick.bid_volume_1,
        ask_price_1=tick.ask_price_1,
        ask_volume_1=tick.ask_volume_1,
    )


class Strategy:
    """Base of every strategy; subclasses declare ``parameters`` and override the ``on_*`` hooks.

    A subclass that trades on bars overrides ``on_bar`` (calling ``super().on_bar(bar)`` first,
    then returning while ``not self.inited``) and ``bars_needed``; one that trades on ticks
    overrides ``on_tick`` (calling ``super().on_tick(tick)`` first) and returns 0 from
    ``bars_needed`` (no bar machinery, no vnpy). Decisions go through ``buy``/``sell``/``close``/
    ``hold``; they are emitted only while the instance is running and not warming up.
    """

    class_name: ClassVar[str] = "Strategy"
    parameters: ClassVar[dict[str, Param]] = {}
    bar_window: ClassVar[int] = 1
    #: Attributes that are the strategy's own memory (a grid's base and levels): saved by the
    #: engine and restored after a restart, as long as the parameters are the same.
    variables: ClassVar[tuple[str, ...]] = ()
    #: A protective strategy only ever closes (it guards positions, whoever opened them):
    #: the kill switch may keep it running, its closes passing the HALT (core/protocol.py,
    #: ``KillRequest``). Its buy and sell signals, if it had any, are never executed then.
    PROTECTIVE: ClassVar[bool] = False
    #: Ticks keep coming while the instance is stopped (not after it raised): a vnpy template
    #: keeps building its bars while not trading, as vnpy's engine feeds every inited strategy.
    TICKS_WHEN_STOPPED: ClassVar[bool] = False

    #: Attribute names a parameter may not take (they would overwrite the base class's state).
    _RESERVED: ClassVar[frozenset[str]] = frozenset(
        {
            "context",
            "name",
            "vt_symbol",
            "symbol",
            "exchange",
            "risk",
            "pos",
            "avg_price",
            "pnl",
            "realized_pnl",
            "commission",
            "running",
            "inited",
            "error",
            "last_price",
            "am",
            "params",
            "now",
        }
    )

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "class_name" not in cls.__dict__:
            cls.class_name = cls.__name__
        # Mistakes in a strategy's declarations are the author's, caught when the class is defined.
        if cls.bar_window not in _BAR_WINDOWS:
            raise TypeError(
                f"{cls.__name__}.bar_window must be one of {_BAR_WINDOWS}, not {cls.bar_window!r}"
            )
        for pname, param in cls.parameters.items():
            if not pname.isidentifier() or pname.startswith("_"):
                raise TypeError(f"{cls.__name__}: parameter name {pname!r} is not a public identifier")
            if pname in cls._RESERVED or hasattr(Strategy, pname):
                raise TypeError(f"{cls.__name__}: parameter name {pname!r} clashes with a Strategy attribute")
            if param.kind not in _KIND_NAMES:
                raise TypeError(f"{cls.__name__}: parameter {pname!r} kind must be int, float, bool or str")
            try:
                param.check(param.default)
            except ValueError as exc:
                raise TypeError(f"{cls.__name__}: default of parameter {pname!r} {exc}") from None

    def __init__(
        self,
        context: StrategyContext,
        name: str,
        vt_symbol: str,
        params: Mapping[str, Any],
        risk: StrategyRisk,
    ) -> None:
        self.context = context
        self.name = name
        self.vt_symbol = vt_symbol
        self.risk = risk
        try:
            self.symbol, self.exchange = split_vt_symbol(vt_symbol)
        except ValueError as exc:
            raise StrategyError(f"strategy '{name}' ({self.class_name}): {exc}") from None

        self.pos = 0.0
        self.avg_price = 0.0
        self.pnl = 0.0
        self.realized_pnl = 0.0
        self.commission = 0.0
        self.running = False
        self.inited = False
        self.error = ""
        self.last_price = 0.0

        self._long = _Leg()
        self._short = _Leg()
        self._trade_ids: set[str] = set()
        self._size: float | None = None
        self._decimals: int | None = None
        self._clock: datetime | None = None
        self._last_tick_time: datetime | None = None
        self._warming = False
        self._guard_latch = SignalLatch()

        self._set_params(params)
        self.validate()

        size = self.bars_needed()
        if size > 0:
            constant, _, utility = _vnpy()
            self._vn_exchange = constant.Exchange[self.exchange.name]
            self._vn_minute = constant.Interval.MINUTE
            self.am = utility.ArrayManager(size)
            self._bg = utility.BarGenerator(self._on_minute_bar, self.bar_window, self._on_window_bar)
            #: the contract's trading sessions: a window bar never spans a break (None: unknown)
            self._sessions = table_of(self.vt_symbol)
            self._session: tuple[datetime, datetime] | None = None  # the window's session
        else:
            self.am = None
            self.inited = True

    # ------------------------------------------------------------------ parameters

    def _set_params(self, params: Mapping[str, Any]) -> None:
        unknown = [key for key in params if key not in self.parameters]
        if unknown:
            known = ", ".join(self.parameters) or "none"
            raise StrategyError(
                f"strategy '{self.name}' ({self.class_name}): unknown parameter '{unknown[0]}' "
                f"(known parameters: {known})",
                param=unknown[0],
            )
        for pname, param in self.parameters.items():
            value = params.get(pname, param.default)
            try:
                value = param.check(value)
            except ValueError as exc:
                raise StrategyError(
                    f"strategy '{self.name}' ({self.class_name}): parameter '{pname}' {exc}", param=pname
                ) from None
            setattr(self, pname, value)

    def validate(self) -> None:
        """Cross-parameter checks of a subclass (``fast_window < slow_window``); raise via ``param_error``."""

    def param_error(self, pname: str, expectation: str) -> StrategyError:
        """A ``StrategyError`` for parameter ``pname`` of this instance: "... must be <expectation>"."""
        value = getattr(self, pname, None)
        return StrategyError(
            f"strategy '{self.name}' ({self.class_name}): parameter '{pname}' must be {expectation}, "
            f"got {value!r}",
            param=pname,
        )

    @classmethod
    def check_params(cls, name: str, params: Mapping[str, Any]) -> None:
        """The constructor's parameter checks (unknown names, types, ranges, ``validate``) without
        creating an instance: no context, no bars, no vnpy. For checking a configuration at start;
        raises ``StrategyError`` with ``param`` set. A ``validate`` that needs more than the
        parameters is left to the real construction."""
        probe = cls.__new__(cls)
        probe.name = name
        probe._set_params(params)
        try:
            probe.validate()
        except StrategyError:
            raise
        except Exception:  # reads state only a running instance has: its construction will tell
            return

    @property
    def params(self) -> dict[str, Any]:
        """Current parameter values by name."""
        return {pname: getattr(self, pname) for pname in self.parameters}

    def bars_needed(self) -> int:
        """Bars (of ``bar_window`` minutes) the indicators need: the ArrayManager's size.

        0 means the strategy works on ticks only: no bars are built and vnpy is not loaded.
        """
        return 100

    @property
    def stores_bars(self) -> bool:
        """Whether the engine keeps 1-minute bars of this instance's symbol in the account's
        database (the history of the next warm-up, or of a vnpy template's ``load_bar``)."""
        return self.am is not None

    @property
    def warm_up_minutes(self) -> int:
        """How many 1-minute bars of history ``warm_up`` needs to make the instance ``inited``."""
        return self.bars_needed() * self.bar_window

    # ------------------------------------------------------------------ contract data

    @property
    def size(self) -> float:
        """Contract multiplier (1 until the contract is known)."""
        if self._size is None:
            contract = self.context.contract(self.vt_symbol)
            if contract is None:
                return 1.0
            self._size = contract.size
        return self._size

    @property
    def decimals(self) -> int:
        """Decimals of the contract's price tick (2 until the contract is known)."""
        if self._decimals is None:
            contract = self.context.contract(self.vt_symbol)
            if contract is None:
                return 2
            self._decimals = decimals_of(contract.pricetick)
        return self._decimals

    def fmt(self, price: float) -> str:
        """A price printed with the contract's precision."""
        return f"{price:.{self.decimals}f}"

    def fmt_pair(self, a: float, b: float) -> tuple[str, str]:
        """Two indicator values printed with enough decimals to tell them apart (at least 2)."""
        digits = max(2, self.decimals)
        while True:
            left, right = f"{a:.{digits}f}", f"{b:.{digits}f}"
            if left != right or digits >= 8:
                return left, right
            digits += 1

    @property
    def now(self) -> datetime:
        """Time of the event being handled: tick time, or the end time of the bar."""
        return self._clock or now()

    def event_key(self, name: str) -> str:
        """``name@<event time>``: a duplicate-suppression key unique to this bar or tick.

        Two crosses at different bars are different decisions; the engine's 5-minute duplicate
        window must only catch the same decision emitted twice.
        """
        return f"{name}@{self.now.isoformat(timespec='seconds')}"

    # ------------------------------------------------------------------ the instance's own book

    def saved_state(self) -> dict[str, Any]:
        """What ``restore_state`` needs after a restart (JSON-ready)."""
        return {"params": self.params, "variables": {v: getattr(self, v) for v in self.variables}}

    def restore_state(self, saved: Mapping[str, Any]) -> bool:
        """Take back the saved ``variables``; not when the parameters changed since (the saved
        memory would describe another grid). True if restored."""
        if not self.variables or saved.get("params") != self.params:
            if self.variables:
                self.log("parameters changed since the last run: starting afresh", "WARNING")
            return False
        values = saved.get("variables", {})
        for name in self.variables:
            if name in values:
                setattr(self, name, values[name])
        self.log(f"restored {', '.join(f'{n}={values.get(n)!r}' for n in self.variables)}")
        return True

    def leg_volume(self, direction: Direction) -> float:
        """Lots of this instance's own ``direction`` leg."""
        return (self._long if direction is Direction.LONG else self._short).volume

    def apply_trade(self, trade: Trade) -> None:
        """Book one trade of this instance (the engine calls this before ``on_trade``).

        Idempotent by trade id. OPEN trades add to the leg of their direction; CLOSE trades reduce
        the opposite leg, and lots beyond what this instance holds (a guard closing the account's
        position) are not booked; offset NONE nets against the opposite leg first.
        """
        if trade.vt_symbol != self.vt_symbol or trade.trade_id in self._trade_ids:
            return
        self._trade_ids.add(trade.trade_id)
        own = self._long if trade.direction is Direction.LONG else self._short
        other = self._short if trade.direction is Direction.LONG else self._long
        other_sign = -1.0 if trade.direction is Direction.LONG else 1.0  # the other leg's P&L sign
        volume = trade.volume
        if trade.offset is not Offset.OPEN:
            cost = other.price
            taken = other.reduce(volume)
            self.realized_pnl += other_sign * (trade.price - cost) * taken * self.size
            if trade.offset.is_close:
                if volume - taken > 1e-9:
                    self.log(
                        f"trade {trade.trade_id} closes {volume - taken:g} lot(s) beyond this instance's "
                        f"position; not booked to it",
                        "DEBUG",
                    )
                volume = 0.0
            else:
                volume -= taken
        if volume > 1e-9:
            own.add(volume, trade.price)
        self.commission += trade.commission
        self.pos = round(self._long.volume - self._short.volume, 8)
        if self.pos > 0:
            self.avg_price = self._long.price
        elif self.pos < 0:
            self.avg_price = self._short.price
        else:
            self.avg_price = 0.0
        if not self.last_price:
            self.last_price = trade.price
        self._update_pnl()

    def _update_pnl(self) -> None:
        floating = 0.0
        if self.last_price:
            size = self.size
            floating += (self.last_price - self._long.price) * self._long.volume * size
            floating += (self._short.price - self.last_price) * self._short.volume * size
        self.pnl = self.realized_pnl + floating - self.commission  # net of fees, like the account

    # ------------------------------------------------------------------ lifecycle and events

    def on_init(self) -> None:
        """Called once when the engine has loaded the instance: its trades booked, its saved
        variables restored and its warm-up done, before any ``on_start``."""

    def on_start(self) -> None:
        """The engine starts the instance; overrides must call ``super().on_start()``."""
        self.running = True

    def on_stop(self) -> None:
        """The engine stops the instance; overrides must call ``super().on_stop()``."""
        self.running = False

    def on_tick(self, tick: Tick) -> None:
        """Marks and P&L, the risk guard, then the bar generator (which may call ``on_bar``)."""
        if tick.vt_symbol != self.vt_symbol or tick.last_price <= 0:
            return
        self._clock = self._last_tick_time = tick.datetime
        self.last_price = tick.last_price
        self._update_pnl()
        self.check_risk(tick.last_price)
        if self.am is not None:
            self._bg.update_tick(self._to_vn_tick(tick))

    def on_bar(self, bar: Bar) -> None:
        """A completed bar of ``bar_window`` minutes: update the ArrayManager and ``inited``."""
        self._clock = bar.datetime + timedelta(minutes=_interval_minutes(bar.interval, self.bar_window))
        if self._last_tick_time is None or self._clock > self._last_tick_time:
            self.last_price = bar.close_price  # history or a bar feed: the close is the newest price
            self._update_pnl()
        if self.am is not None:
            # ArrayManager only reads the OHLC/volume/turnover/open_interest attributes, which our
            # Bar has under the same names, so no conversion is needed here.
            self.am.update_bar(bar)
            self.inited = self.am.inited

    def on_order(self, order: Order) -> None:
        """An order of this instance changed."""

    def on_trade(self, trade: Trade) -> None:
        """A trade of this instance (already booked by ``apply_trade``)."""

    def feed_bar(self, bar: Bar) -> None:
        """A bar from outside (history, a bar feed): 1-minute bars are aggregated to ``bar_window``;
        bars already of ``bar_window`` minutes go straight to ``on_bar``."""
        if self.am is None:
            return
        minutes = _interval_minutes(bar.interval, 0)
        if minutes == self.bar_window:
            self.on_bar(bar)
        elif minutes == 1:
            self._on_minute_bar(self._to_vn_bar(bar))
        else:
            raise StrategyError(
                f"strategy '{self.name}' ({self.class_name}): cannot use {bar.interval!r} bars "
                f"(needs 1m or {self.bar_window}m)"
            )

    def flush_bar(self, at: datetime) -> None:
        """Complete the 1-minute bar in progress if its minute is over at ``at``.

        BarGenerator closes a minute only when the next minute's first tick arrives; before a
        session break or on an illiquid contract that can be much later (and the decision would
        then be stale). The engine may call this from a timer a few seconds after each minute;
        calling it before the minute is over does nothing.
        """
        if self.am is None:
            return
        current = self._bg.bar
        if current is not None and at >= current.datetime.replace(second=0, microsecond=0) + timedelta(
            minutes=1
        ):
            self._bg.generate()

    def warm_up(self, bars: Iterable[Bar]) -> None:
        """Feed history (1-minute bars, oldest first) through ``on_bar`` without emitting signals."""
        self._warming = True
        try:
            for bar in bars:
                self.feed_bar(bar)
        finally:
            self._warming = False

    def state(self) -> StrategyState:
        """This instance as the console shows it."""
        account = self.context.account()
        return StrategyState(
            account_id=account.account_id if account else "",
            name=self.name,
            class_name=self.class_name,
            vt_symbol=self.vt_symbol,
            running=self.running,
            protective=self.PROTECTIVE,
            params=self.params,
            position=self.pos,
            pnl=self.pnl,
            error=self.error,
        )

    # ------------------------------------------------------------------ risk guard

    def check_risk(self, price: float) -> None:
        """Stop-loss / take-profit of this instance's position, in % of its entry price.

        Called by ``on_tick``. A condition is emitted once per position state (see
        ``SignalLatch``), again after ``GUARD_REPEAT_SECONDS`` if it holds then.
        """
        stop, take = self.risk.stop_loss_pct, self.risk.take_profit_pct
        if not self.running:
            return
        if not self.pos or self.avg_price <= 0 or (stop is None and take is None):
            self._guard_latch.clear()
            return
        side = "long" if self.pos > 0 else "short"
        change = (price / self.avg_price - 1.0) * 100.0 * (1.0 if self.pos > 0 else -1.0)
        what = f"{side} {abs(self.pos):g} @ {self.fmt(self.avg_price)}, last {self.fmt(price)}"
        if stop is not None and change <= -stop + PCT_EPSILON:
            kind, condition = "stop_loss", f"stop-loss: {what}: {change:+.2f}% <= {-stop:.2f}%"
        elif take is not None and change >= take - PCT_EPSILON:
            kind, condition = "take_profit", f"take-profit: {what}: {change:+.2f}% >= +{take:.2f}%"
        else:
            return
        if self._guard_latch.ready(kind, (self.pos, self.avg_price), self.now):
            self.close(price, condition, key=self.event_key(kind))

    # ------------------------------------------------------------------ signal helpers

    def buy(self, price: float, volume: float, condition: str, key: str = "") -> None:
        """Signal: open (or add to) a long position of ``volume`` lots."""
        self.emit_signal("buy", price, volume, condition, key=key)

    def sell(self, price: float, volume: float, condition: str, key: str = "") -> None:
        """Signal: open (or add to) a short position of ``volume`` lots."""
        self.emit_signal("sell", price, volume, condition, key=key)

    def close(self, price: float, condition: str, volume: float | None = None, key: str = "") -> None:
        """Signal: close ``volume`` lots (default: all) of THIS instance's position; no-op if flat."""
        if not self.pos:
            self.log(f"close ignored, no position: {condition}", "DEBUG")
            return
        held = abs(self.pos)
        lots = held if volume is None else min(volume, held)
        if lots <= 0:
            return
        direction = Direction.LONG if self.pos > 0 else Direction.SHORT
        self.emit_signal("close", price, lots, condition, direction=direction, key=key)

    def enter_position(self, side: int, price: float, volume: float, condition: str, key: str) -> None:
        """Go long (``side`` +1) or short (-1) with ``volume`` lots on one event.

        One signal: from flat, ``buy``/``sell`` ``volume``; from the opposite side, ``buy``/``sell``
        of the held lots plus ``volume`` (the engine closes the held lots first, then opens the
        rest); already on that side, ``hold``. Keys are ``<key>:<action>@<event time>``.
        """
        held = side * self.pos
        if held > 0:
            side_name = "long" if side > 0 else "short"
            self.hold(price, f"{condition}: already {side_name} {held:g}", key=self.event_key(f"{key}:hold"))
            return
        lots = volume
        if held < 0:
            old, new = ("short", "long") if side > 0 else ("long", "short")
            lots = -held + volume
            condition = f"{condition}: reverse {old} {-held:g} -> {new} {volume:g}"
        if side > 0:
            self.buy(price, lots, condition, key=self.event_key(f"{key}:buy"))
        else:
            self.sell(price, lots, condition, key=self.event_key(f"{key}:sell"))

    def hold(self, price: float, condition: str, key: str = "") -> None:
        """Signal: a recorded decision to do nothing."""
        self.emit_signal("hold", price, 0.0, condition, key=key)

    def emit_signal(
        self,
        action: Literal["buy", "sell", "close", "hold"],
        price: float,
        volume: float,
        condition: str,
        *,
        direction: Direction | None = None,
        key: str = "",
    ) -> None:
        """Hand one signal to the engine (dropped while warming up or not running).

        The low-level form of the helpers; a guard of the ACCOUNT's position (``StopGuardStrategy``)
        uses it to close lots this instance did not open.
        """
        if self._warming or not self.running:
            return
        signal = Signal(
            action=action,
            condition=condition,
            price=price,
            volume=float(volume),
            direction=direction,
            datetime=self.now,
            key=key,
        )
        self.context.emit(self, signal)

    def log(self, message: str, level: str = "INFO") -> None:
        """A log line attributed to this instance."""
        self.context.log(self, level, message)

    # ------------------------------------------------------------------ vnpy bridge

    def _to_vn_tick(self, tick: Tick) -> Any:
        return to_vn_tick(tick)

    def _to_vn_bar(self, bar: Bar) -> Any:
        _, obj, _ = _vnpy()
        return obj.BarData(
            symbol=self.symbol,
            exchange=self._vn_exchange,
            datetime=bar.datetime,
            gateway_name=bar.account_id or "qtrader",
            interval=self._vn_minute,
            volume=bar.volume,
            turnover=bar.turnover,
            open_interest=bar.open_interest,
            open_price=bar.open_price,
            high_price=bar.high_price,
            low_price=bar.low_price,
            close_price=bar.close_price,
        )

    def _from_vn_bar(self, vn_bar: BarData, window: int) -> Bar:
        return Bar(
            account_id="" if vn_bar.gateway_name == "qtrader" else vn_bar.gateway_name,
            vt_symbol=self.vt_symbol,
            interval=f"{window}m",
            datetime=vn_bar.datetime,
            open_price=vn_bar.open_price,
            high_price=vn_bar.high_price,
            low_price=vn_bar.low_price,
            close_price=vn_bar.close_price,
            volume=vn_bar.volume,
            turnover=vn_bar.turnover,
            open_interest=vn_bar.open_interest,
        )

    def _on_minute_bar(self, vn_bar: BarData) -> None:
        if self.bar_window == 1:
            self.on_bar(self._from_vn_bar(vn_bar, 1))
            return
        bg, start = self._bg, _aware(vn_bar.datetime)
        session = self._session
        if bg.window_bar is not None and session is not None and not session[0] <= start <= session[1]:
            self._close_window()  # a break lies between the window's last minute and this one
        self._window_end = start + timedelta(minutes=1)
        self._session = session_of(self._sessions, start) if self._sessions is not None else None
        bg.update_bar(vn_bar)
        if bg.window_bar is not None and self._session is not None and self._window_end >= self._session[1]:
            self._close_window()  # the session ends with this minute: so does the window

    def _close_window(self) -> None:
        """Complete the window bar in progress at a session break (vnpy's BarGenerator would
        go on filling it with the next session's minutes until the window's clock minute)."""
        bar, self._bg.window_bar = self._bg.window_bar, None
        self._on_window_bar(bar)

    def _on_window_bar(self, vn_bar: BarData) -> None:
        bar = self._from_vn_bar(vn_bar, self.bar_window)
        # A window that started mid-way (first bar of a session) is shorter than bar_window:
        # re-date it so that start + interval is the end of its last minute.
        bar.datetime = self._window_end - timedelta(minutes=self.bar_window)
        self.on_bar(bar)


def _aware(moment: datetime) -> datetime:
    """A bar's time as an aware datetime (history written without a zone is China time)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=CHINA_TZ)


def crossed(fast: Any, slow: Any) -> int:
    """+1 if ``fast`` crossed above ``slow`` at the last element, -1 if below, else 0.

    A cross is a change of side: the last difference is non-zero and the last non-zero difference
    before it has the other sign, so touching and turning back is not a cross, and a cross through
    an exact tie counts once, at the bar that leaves the tie. ``slow`` may be an array or a level.
    """
    import numpy as np

    diff = np.asarray(fast, dtype=float) - np.asarray(slow, dtype=float)
    scale = max(float(np.nanmax(np.abs(np.asarray(fast, dtype=float)))), 1.0)
    tolerance = scale * 1e-10  # TA-Lib's running sums leave float noise on equal averages
    last = diff[-1]
    if not math.isfinite(last) or abs(last) <= tolerance:
        return 0
    for previous in diff[-2::-1]:
        if not math.isfinite(previous):
            return 0
        if abs(previous) > tolerance:
            if (previous < 0) != (last < 0):
                return 1 if last > 0 else -1
            return 0
    return 0


def _interval_minutes(interval: str, default: int) -> int:
    match = _INTERVAL_RE.match(interval)
    if not match:
        return default
    count = int(match.group(1))
    return count * 60 if match.group(2) == "h" else count
