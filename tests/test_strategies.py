"""Strategies: the base class (parameters, own book, risk guard, bars, warm-up) and each built-in
firing exactly at the bars or ticks where its rule says so, with the action and nothing else."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path

import msgspec
import pytest

from config.schema import StrategyRiskConfig
from core.models import (
    CHINA_TZ,
    Account,
    Bar,
    Contract,
    Direction,
    Exchange,
    Offset,
    Position,
    Tick,
    Trade,
)
from strategies import (
    GridStrategy,
    MaCrossStrategy,
    MaRsiStrategy,
    Param,
    RsiStrategy,
    Signal,
    StopGuardStrategy,
    Strategy,
    StrategyError,
    crossed,
)

RB = Contract(vt_symbol="rb2601.SHFE", symbol="rb2601", exchange=Exchange.SHFE, size=10, pricetick=1)
AU = Contract(vt_symbol="au2612.SHFE", symbol="au2612", exchange=Exchange.SHFE, size=1000, pricetick=0.02)
T0 = datetime(2025, 1, 2, 9, 0, tzinfo=CHINA_TZ)


@pytest.fixture(autouse=True)
def _vntrader_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """vnpy picks (and creates) its .vntrader folder at import time: keep it out of $HOME."""
    (tmp_path / ".vntrader").mkdir()
    monkeypatch.chdir(tmp_path)


class FakeContext:
    """The engine as a strategy sees it; records signals and logs.

    With ``fill=True`` every buy/sell/close is filled at once at its price and booked through
    ``apply_trade``/``on_trade``, as the engine with auto-trading on and an instant fill would.
    """

    def __init__(self, contract: Contract | None = RB, fill: bool = False) -> None:
        self.contracts = {contract.vt_symbol: contract} if contract else {}
        self.fill = fill
        self.signals: list[Signal] = []
        self.logs: list[tuple[str, str]] = []
        self.positions: dict[tuple[str, Direction], Position] = {}
        self._ids = itertools.count(1)

    def emit(self, strategy: Strategy, signal: Signal) -> None:
        self.signals.append(signal)
        if not self.fill or signal.action == "hold":
            return
        if signal.action == "close":
            assert signal.direction is not None
            self._trade(strategy, signal.direction.opposite, Offset.CLOSE, signal.price, signal.volume)
            return
        # as the engine does: buy/sell first close the instance's opposite lots, then open the rest
        direction = Direction.LONG if signal.action == "buy" else Direction.SHORT
        held = -strategy.pos if direction is Direction.LONG else strategy.pos
        closing = min(max(held, 0), signal.volume)
        if closing:
            self._trade(strategy, direction, Offset.CLOSE, signal.price, closing)
        if signal.volume - closing > 0:
            self._trade(strategy, direction, Offset.OPEN, signal.price, signal.volume - closing)

    def _trade(
        self, strategy: Strategy, direction: Direction, offset: Offset, price: float, volume: float
    ) -> None:
        trade = make_trade(strategy.vt_symbol, direction, offset, price, volume, next(self._ids))
        strategy.apply_trade(trade)
        strategy.on_trade(trade)

    def account(self) -> Account | None:
        return Account(account_id="DQ1")

    def position(self, vt_symbol: str, direction: Direction) -> Position | None:
        return self.positions.get((vt_symbol, direction))

    def contract(self, vt_symbol: str) -> Contract | None:
        return self.contracts.get(vt_symbol)

    def log(self, strategy: Strategy, level: str, message: str) -> None:
        self.logs.append((level, message))

    def set_position(self, direction: Direction, volume: float, price: float, frozen: float = 0) -> None:
        self.positions[(RB.vt_symbol, direction)] = Position(
            account_id="DQ1",
            vt_symbol=RB.vt_symbol,
            direction=direction,
            volume=volume,
            price=price,
            frozen=frozen,
        )

    def actions(self) -> list[tuple[str, float, Direction | None]]:
        return [(s.action, s.volume, s.direction) for s in self.signals]


def make_trade(
    vt_symbol: str, direction: Direction, offset: Offset, price: float, volume: float, n: int
) -> Trade:
    return Trade(
        account_id="DQ1",
        trade_id=f"T{n}",
        order_id=f"O{n}",
        vt_symbol=vt_symbol,
        direction=direction,
        offset=offset,
        price=price,
        volume=volume,
        datetime=T0,
    )


def make(
    cls: type[Strategy],
    params: dict[str, object] | None = None,
    *,
    ctx: FakeContext | None = None,
    risk: StrategyRiskConfig | None = None,
    vt_symbol: str = RB.vt_symbol,
    start: bool = True,
) -> tuple[Strategy, FakeContext]:
    ctx = ctx or FakeContext()
    strategy = cls(ctx, "s1", vt_symbol, params or {}, risk or StrategyRiskConfig())
    if start:
        strategy.on_start()
    return strategy, ctx


def bars(closes: Sequence[float], start: datetime = T0) -> list[Bar]:
    """One 1-minute bar per close (open = previous close), starting at ``start``."""
    out = []
    previous = closes[0]
    for i, close in enumerate(closes):
        out.append(
            Bar(
                vt_symbol=RB.vt_symbol,
                datetime=start + timedelta(minutes=i),
                open_price=previous,
                high_price=max(previous, close),
                low_price=min(previous, close),
                close_price=close,
                volume=10,
            )
        )
        previous = close
    return out


def vee(down: int, up: int, down_again: int, top: float = 4100) -> list[float]:
    """Closes falling by 1 for ``down`` bars, rising by 1 for ``up``, falling for ``down_again``."""
    closes = [top - i for i in range(down)]
    for _ in range(up):
        closes.append(closes[-1] + 1)
    for _ in range(down_again):
        closes.append(closes[-1] - 1)
    return closes


def sma_cross_bars(closes: Sequence[float], fast: int, slow: int) -> list[tuple[int, int]]:
    """Oracle in plain Python: (index, +1/-1) where sign(SMA fast - SMA slow) changes side."""
    out, side = [], 0
    for i in range(slow - 1, len(closes)):
        diff = sum(closes[i - fast + 1 : i + 1]) / fast - sum(closes[i - slow + 1 : i + 1]) / slow
        new = (diff > 1e-9) - (diff < -1e-9)
        if new and side and new != side:
            out.append((i, new))
        side = new or side
    return out


def run_bars(strategy: Strategy, ctx: FakeContext, series: Sequence[Bar]) -> dict[int, list[Signal]]:
    """Feed bars; the signals emitted at each bar index."""
    fired: dict[int, list[Signal]] = {}
    for i, bar in enumerate(series):
        before = len(ctx.signals)
        strategy.on_bar(bar)
        if len(ctx.signals) > before:
            fired[i] = ctx.signals[before:]
    return fired


def ticks(prices: Sequence[float], start: datetime = T0, step: float = 1.0) -> Iterator[Tick]:
    for i, price in enumerate(prices):
        yield Tick(vt_symbol=RB.vt_symbol, datetime=start + timedelta(seconds=i * step), last_price=price)


def feed(strategy: Strategy, prices: Sequence[float], start: datetime = T0, step: float = 1.0) -> None:
    for tick in ticks(prices, start, step):
        strategy.on_tick(tick)


# ====================================================================== parameters


def test_parameters_default_and_override_become_attributes() -> None:
    strategy, _ = make(MaCrossStrategy, {"fast_window": 5})
    assert (strategy.fast_window, strategy.slow_window, strategy.volume) == (5, 30, 1)
    assert strategy.params == {"fast_window": 5, "slow_window": 30, "volume": 1}
    assert isinstance(make(RsiStrategy, {"rsi_long": 25})[0].rsi_long, float)  # an int is a fine float


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"fast_windw": 5},
            "strategy 's1' (MaCrossStrategy): unknown parameter 'fast_windw' "
            "(known parameters: fast_window, slow_window, volume)",
        ),
        (
            {"fast_window": "10"},
            "strategy 's1' (MaCrossStrategy): parameter 'fast_window' must be an integer between 1 and 1000, "
            "got '10' (str)",
        ),
        (
            {"fast_window": 2.5},
            "strategy 's1' (MaCrossStrategy): parameter 'fast_window' must be an integer between 1 and 1000, "
            "got 2.5 (float)",
        ),
        (
            {"volume": True},
            "strategy 's1' (MaCrossStrategy): parameter 'volume' must be an integer between 1 and 10000, "
            "got True (bool)",
        ),
        (
            {"fast_window": 0},
            "strategy 's1' (MaCrossStrategy): parameter 'fast_window' must be an integer between 1 and 1000, got 0",
        ),
        (
            {"fast_window": 30},
            "strategy 's1' (MaCrossStrategy): parameter 'fast_window' must be less than slow_window (30), got 30",
        ),
    ],
)
def test_parameter_errors_name_instance_parameter_and_expectation(params: dict, message: str) -> None:
    with pytest.raises(StrategyError) as info:
        make(MaCrossStrategy, params)
    assert str(info.value) == message


def test_float_parameter_range_and_cross_checks() -> None:
    with pytest.raises(
        StrategyError, match=r"'first_take_profit_ratio' must be a number between 0.01 and 1, got 1.5"
    ):
        make(StopGuardStrategy, {"first_take_profit_ratio": 1.5})
    with pytest.raises(StrategyError, match=r"'rsi_long' must be below rsi_short \(70\), got 75.0"):
        make(RsiStrategy, {"rsi_long": 75})


def test_bad_symbol_is_a_strategy_error() -> None:
    with pytest.raises(
        StrategyError, match=r"strategy 's1' \(GridStrategy\): 'rb2601\.XXX': unknown exchange"
    ):
        make(GridStrategy, vt_symbol="rb2601.XXX")


def test_a_declaration_mistake_fails_when_the_class_is_defined() -> None:
    with pytest.raises(TypeError, match="clashes with a Strategy attribute"):

        class _Bad(Strategy):
            parameters = {"pos": Param(1, int)}

    with pytest.raises(TypeError, match="default of parameter 'n' must be an integer >= 1"):

        class _Bad2(Strategy):
            parameters = {"n": Param(0, int, min=1)}

    with pytest.raises(TypeError, match="bar_window"):

        class _Bad3(Strategy):
            bar_window = 7


# ====================================================================== own book and P&L


def test_apply_trade_tracks_position_average_price_and_pnl_with_the_multiplier() -> None:
    strategy, _ = make(MaCrossStrategy)
    strategy.apply_trade(make_trade(RB.vt_symbol, Direction.LONG, Offset.OPEN, 4000, 1, 1))
    strategy.apply_trade(make_trade(RB.vt_symbol, Direction.LONG, Offset.OPEN, 4030, 2, 2))
    assert (strategy.pos, strategy.avg_price) == (3, 4020)
    strategy.on_tick(Tick(vt_symbol=RB.vt_symbol, datetime=T0, last_price=4050))
    assert strategy.pnl == pytest.approx((4050 - 4020) * 3 * 10)
    strategy.apply_trade(make_trade(RB.vt_symbol, Direction.SHORT, Offset.CLOSETODAY, 4040, 2, 3))
    assert (strategy.pos, strategy.avg_price) == (1, 4020)
    assert strategy.realized_pnl == pytest.approx(20 * 2 * 10)
    assert strategy.pnl == pytest.approx(400 + 30 * 10)
    # a replayed trade is not booked twice
    strategy.apply_trade(make_trade(RB.vt_symbol, Direction.SHORT, Offset.CLOSETODAY, 4040, 2, 3))
    assert strategy.pos == 1


def test_short_position_pnl_and_closing_beyond_own_position_is_not_booked() -> None:
    strategy, _ = make(StopGuardStrategy)
    strategy.apply_trade(make_trade(RB.vt_symbol, Direction.SHORT, Offset.OPEN, 4000, 2, 1))
    assert (strategy.pos, strategy.avg_price) == (-2, 4000)
    strategy.on_tick(Tick(vt_symbol=RB.vt_symbol, datetime=T0, last_price=3990))
    assert strategy.pnl == pytest.approx(10 * 2 * 10)
    # closes 3 short lots: 2 are ours, 1 belonged to someone else (a guard closing the account's lots)
    strategy.apply_trade(make_trade(RB.vt_symbol, Direction.LONG, Offset.CLOSE, 3980, 3, 2))
    assert (strategy.pos, strategy.avg_price) == (0, 0)
    assert strategy.pnl == pytest.approx(20 * 2 * 10)
    # a guard's close of a position it never opened leaves it flat (not short)
    strategy.apply_trade(make_trade(RB.vt_symbol, Direction.SHORT, Offset.CLOSE, 3980, 1, 3))
    assert strategy.pos == 0


def test_pnl_without_a_known_contract_uses_multiplier_1() -> None:
    strategy, _ = make(MaCrossStrategy, ctx=FakeContext(contract=None))
    strategy.apply_trade(make_trade(RB.vt_symbol, Direction.LONG, Offset.OPEN, 100, 1, 1))
    strategy.on_tick(Tick(vt_symbol=RB.vt_symbol, datetime=T0, last_price=103))
    assert strategy.pnl == pytest.approx(3)


def test_state_for_the_console() -> None:
    strategy, _ = make(MaCrossStrategy, {"volume": 2})
    strategy.apply_trade(make_trade(RB.vt_symbol, Direction.LONG, Offset.OPEN, 4000, 2, 1))
    state = strategy.state()
    assert (state.account_id, state.name, state.class_name, state.vt_symbol) == (
        "DQ1",
        "s1",
        "MaCrossStrategy",
        "rb2601.SHFE",
    )
    assert state.running and state.position == 2 and state.params["volume"] == 2


# ====================================================================== base risk guard


def test_risk_guard_stop_loss_closes_this_instances_long() -> None:
    risk = StrategyRiskConfig(stop_loss_pct=2.0, take_profit_pct=5.0)
    strategy, ctx = make(MaCrossStrategy, risk=risk)
    strategy.apply_trade(make_trade(RB.vt_symbol, Direction.LONG, Offset.OPEN, 4000, 2, 1))
    feed(strategy, [3990, 3921, 3920, 3915])
    assert ctx.actions() == [("close", 2, Direction.LONG)]
    signal = ctx.signals[0]
    assert signal.condition == "stop-loss: long 2 @ 4000, last 3920: -2.00% <= -2.00%"
    assert signal.price == 3920 and signal.datetime == T0 + timedelta(seconds=2)
    assert signal.key == "stop_loss@2025-01-02T09:00:02+08:00"


def test_risk_guard_take_profit_on_a_short_and_repeat_after_a_minute() -> None:
    risk = StrategyRiskConfig(stop_loss_pct=2.0, take_profit_pct=5.0)
    strategy, ctx = make(MaCrossStrategy, risk=risk)
    strategy.apply_trade(make_trade(RB.vt_symbol, Direction.SHORT, Offset.OPEN, 4000, 1, 1))
    feed(strategy, [3900, 3801, 3800, 3790], step=10)
    assert ctx.actions() == [("close", 1, Direction.SHORT)]
    assert ctx.signals[0].condition == "take-profit: short 1 @ 4000, last 3800: +5.00% >= +5.00%"
    # still due a minute later (e.g. the close was rejected): asked again, once
    feed(strategy, [3795, 3795], start=T0 + timedelta(seconds=85))
    assert ctx.actions() == [("close", 1, Direction.SHORT)] * 2


def test_risk_guard_is_once_per_position_state_and_quiet_when_flat_or_stopped() -> None:
    risk = StrategyRiskConfig(stop_loss_pct=1.0)
    strategy, ctx = make(MaCrossStrategy, risk=risk)
    feed(strategy, [3000, 2000])  # flat: nothing to guard
    strategy.apply_trade(make_trade(RB.vt_symbol, Direction.LONG, Offset.OPEN, 4000, 1, 1))
    feed(strategy, [3960, 3990, 3959])  # wobbling around the limit: asked once
    assert [s.price for s in ctx.signals] == [3960]
    strategy.apply_trade(make_trade(RB.vt_symbol, Direction.LONG, Offset.OPEN, 3950, 1, 2))
    feed(strategy, [3900], start=T0 + timedelta(seconds=5))  # a new position state: asked again
    assert [(s.price, s.volume) for s in ctx.signals] == [(3960, 1), (3900, 2)]
    strategy.on_stop()
    feed(strategy, [3800], start=T0 + timedelta(minutes=5))
    assert len(ctx.signals) == 2


# ====================================================================== bars, warm-up, windows


def test_ticks_build_one_minute_bars_and_signals_carry_the_bar_end_time() -> None:
    strategy, ctx = make(MaCrossStrategy, {"fast_window": 1, "slow_window": 2})
    # one tick per minute at :30; a bar completes when the next minute's first tick arrives
    prices = [100, 99, 98, 99, 100]
    for i, price in enumerate(prices):
        strategy.on_tick(
            Tick(vt_symbol=RB.vt_symbol, datetime=T0 + timedelta(minutes=i, seconds=30), last_price=price)
        )
    # bars 09:00..09:03 are complete (09:04's is still open); fast(1) crosses above slow(2) on the
    # 09:03 bar (close 99 > SMA2 98.5 after 98 < 98.5): decided at its end, 09:04
    assert ctx.actions() == [("buy", 1, None)]
    signal = ctx.signals[0]
    assert signal.datetime == T0 + timedelta(minutes=4)
    assert signal.condition == "MA1 crossed above MA2 at 99 (MA1 99.00 > MA2 98.50)"
    assert signal.key == "ma_cross_up:buy@2025-01-02T09:04:00+08:00"


def test_flush_bar_completes_a_minute_that_no_later_tick_closes() -> None:
    strategy, ctx = make(MaCrossStrategy, {"fast_window": 1, "slow_window": 2})
    for i, price in enumerate([100, 99, 98, 99]):
        strategy.on_tick(
            Tick(vt_symbol=RB.vt_symbol, datetime=T0 + timedelta(minutes=i, seconds=30), last_price=price)
        )
    assert ctx.signals == []  # the 09:03 bar is still open
    strategy.flush_bar(T0 + timedelta(minutes=3, seconds=59))  # its minute is not over: no-op
    assert ctx.signals == []
    strategy.flush_bar(T0 + timedelta(minutes=4, seconds=2))
    assert ctx.actions() == [("buy", 1, None)]
    assert ctx.signals[0].datetime == T0 + timedelta(minutes=4)
    strategy.flush_bar(T0 + timedelta(minutes=5))  # nothing in progress
    assert len(ctx.signals) == 1


class _FiveMinuteRecorder(Strategy):
    """Records the 5-minute bars it receives."""

    bar_window = 5

    def __init__(self, *args: object) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.received: list[Bar] = []

    def bars_needed(self) -> int:
        return 2

    def on_bar(self, bar: Bar) -> None:
        super().on_bar(bar)
        self.received.append(bar)


def test_bar_window_aggregates_minute_bars_into_window_bars() -> None:
    strategy, _ = make(_FiveMinuteRecorder)
    assert strategy.class_name == "_FiveMinuteRecorder"
    closes = [10, 11, 12, 13, 14, 15, 9, 16, 17, 18, 19]
    strategy.warm_up(bars(closes, start=T0 + timedelta(minutes=2)))  # 09:02 .. 09:12
    got = [
        (b.datetime.strftime("%H:%M"), b.interval, b.open_price, b.high_price, b.low_price, b.close_price)
        for b in strategy.received
    ]
    # 09:02-09:04 is a short first window (dated 09:00 like the full window), then 09:05-09:09
    assert got == [("09:00", "5m", 10, 12, 10, 12), ("09:05", "5m", 12, 16, 9, 16)]
    assert strategy.received[1].volume == 50
    assert strategy.inited
    assert strategy.warm_up_minutes == 10


def test_warm_up_emits_nothing_then_live_bars_do() -> None:
    closes = vee(40, 40, 40)
    series = bars(closes)
    strategy, ctx = make(MaCrossStrategy)
    assert not strategy.inited
    strategy.warm_up(series[:60])  # contains the golden cross at bar 52
    assert strategy.inited and ctx.signals == []
    fired = run_bars(strategy, ctx, series[60:])
    assert {60 + i: [s.action for s in sig] for i, sig in fired.items()} == {92: ["sell"]}


def test_a_stopped_strategy_emits_nothing() -> None:
    strategy, ctx = make(MaCrossStrategy, start=False)
    run_bars(strategy, ctx, bars(vee(40, 40, 40)))
    assert ctx.signals == [] and strategy.inited


def test_crossed_needs_a_change_of_side() -> None:
    assert crossed([1, 2], [2, 2]) == 0  # reaching a tie is not a cross ...
    assert crossed([1, 2, 3], [2, 2, 2]) == 1  # ... leaving it on the other side is
    assert crossed([3, 2, 3], [2, 2, 2]) == 0  # back to the side it came from
    assert crossed([3, 2, 1], [2, 2, 2]) == -1
    assert crossed([1, 3, 4], [2, 2, 2]) == 0  # crossed one bar earlier, not now
    assert crossed([float("nan"), 2], [1, 1]) == 0


# ====================================================================== MaCrossStrategy


def test_ma_cross_fires_exactly_at_the_crosses_and_reverses_the_position() -> None:
    closes = vee(40, 40, 40)
    assert sma_cross_bars(closes, 10, 30) == [(52, 1), (92, -1)]  # the oracle agrees with the rule
    strategy, ctx = make(MaCrossStrategy, ctx=FakeContext(fill=True))
    fired = run_bars(strategy, ctx, bars(closes))
    assert {i: [(s.action, s.volume, s.direction) for s in sig] for i, sig in fired.items()} == {
        52: [("buy", 1, None)],
        92: [("sell", 2, None)],  # one signal: close long 1, open short 1
    }
    assert fired[52][0].condition == "MA10 crossed above MA30 at 4074 (MA10 4069.50 > MA30 4068.57)"
    assert fired[92][0].condition == (
        "MA10 crossed below MA30 at 4088 (MA10 4092.50 < MA30 4093.43): reverse long 1 -> short 1"
    )
    assert strategy.pos == -1


def test_ma_cross_without_fills_alternates_buy_and_sell_and_holds_when_already_in() -> None:
    closes = vee(40, 40, 40)
    strategy, ctx = make(MaCrossStrategy, {"volume": 3})
    fired = run_bars(strategy, ctx, bars(closes))
    assert {i: [(s.action, s.volume) for s in sig] for i, sig in fired.items()} == {
        52: [("buy", 3)],
        92: [("sell", 3)],
    }

    strategy, ctx = make(MaCrossStrategy)
    strategy.apply_trade(make_trade(RB.vt_symbol, Direction.LONG, Offset.OPEN, 4000, 1, 1))
    fired = run_bars(strategy, ctx, bars(closes[:60]))
    assert [(s.action, s.condition.rsplit(": ", 1)[-1]) for s in fired[52]] == [("hold", "already long 1")]


# ====================================================================== RsiStrategy


def _rsi_closes() -> list[float]:
    """80 falling bars (RSI 0), a +10 jump (RSI 0 -> 43.48), 20 rising bars (RSI up to 81.60),
    then -3 bars (RSI 81.60 -> 67.92 at bar 101)."""
    closes = [4100 - i for i in range(80)]
    closes.append(closes[-1] + 10)
    for _ in range(20):
        closes.append(closes[-1] + 1)
    for _ in range(5):
        closes.append(closes[-1] - 3)
    return closes


def test_rsi_buys_leaving_oversold_and_sells_leaving_overbought() -> None:
    strategy, ctx = make(RsiStrategy, ctx=FakeContext(fill=True))
    assert strategy.bars_needed() == 72
    fired = run_bars(strategy, ctx, bars(_rsi_closes()))
    assert {i: [(s.action, s.volume, s.direction) for s in sig] for i, sig in fired.items()} == {
        80: [("buy", 1, None)],
        101: [("sell", 2, None)],
    }
    assert fired[80][0].condition == "RSI14 crossed up through 30 at 4031 (RSI14 0.00 -> 43.48)"
    assert fired[101][0].condition == (
        "RSI14 crossed down through 70 at 4048 (RSI14 81.60 -> 67.92): reverse long 1 -> short 1"
    )
    assert strategy.pos == -1


def test_rsi_levels_are_parameters() -> None:
    # with rsi_long 45 the jump (43.48) is not enough; the next bar (46.01) crosses
    strategy, ctx = make(RsiStrategy, {"rsi_long": 45, "rsi_short": 90})
    fired = run_bars(strategy, ctx, bars(_rsi_closes()))
    assert {i: [s.action for s in sig] for i, sig in fired.items()} == {81: ["buy"]}


# ====================================================================== MaRsiStrategy


def test_ma_rsi_confirmed_crosses_trade() -> None:
    closes = vee(100, 40, 40)
    assert sma_cross_bars(closes, 10, 30) == [(112, 1), (152, -1)]
    strategy, ctx = make(MaRsiStrategy, ctx=FakeContext(fill=True))
    fired = run_bars(strategy, ctx, bars(closes))
    assert {i: [(s.action, s.volume, s.direction) for s in sig] for i, sig in fired.items()} == {
        112: [("buy", 1, None)],
        152: [("sell", 2, None)],
    }
    assert (
        fired[112][0].condition
        == "MA10 crossed above MA30 at 4014 (MA10 4009.50 > MA30 4008.57), RSI14 61.84 > 40"
    )
    assert fired[152][0].condition == (
        "MA10 crossed below MA30 at 4028 (MA10 4032.50 < MA30 4033.43), RSI14 36.19 < 60: "
        "reverse long 1 -> short 1"
    )
    assert strategy.pos == -1


def test_ma_rsi_unconfirmed_crosses_hold_but_still_exit() -> None:
    closes = vee(100, 40, 40)
    strategy, ctx = make(MaRsiStrategy, {"rsi_long": 70, "rsi_short": 30}, ctx=FakeContext(fill=True))
    strategy.apply_trade(make_trade(RB.vt_symbol, Direction.SHORT, Offset.OPEN, 4100, 1, 99))
    fired = run_bars(strategy, ctx, bars(closes))
    assert {i: [(s.action, s.volume, s.direction) for s in sig] for i, sig in fired.items()} == {
        112: [("close", 1, Direction.SHORT), ("hold", 0, None)],
        152: [("hold", 0, None)],
    }
    assert fired[112][1].condition.endswith("not confirmed: RSI14 61.84 <= 70")
    assert fired[152][0].condition.endswith("not confirmed: RSI14 36.19 >= 30")
    assert strategy.pos == 0


# ====================================================================== StopGuardStrategy


def test_stop_guard_stop_loss_on_a_long_closes_all_once() -> None:
    strategy, ctx = make(StopGuardStrategy)
    ctx.set_position(Direction.LONG, 5, 4000)
    feed(strategy, [3990, 3921, 3920, 3919])
    assert ctx.actions() == [("close", 5, Direction.LONG)]
    assert ctx.signals[0].condition == "stop-loss: long 5 @ 4000, last 3920: -2.00% <= -2.00%, close 5"
    # the close order is working (frozen): nothing more to ask for
    ctx.set_position(Direction.LONG, 5, 4000, frozen=5)
    feed(strategy, [3900], start=T0 + timedelta(minutes=5))
    assert len(ctx.signals) == 1
    assert strategy.pos == 0  # the guard holds nothing itself


def test_stop_guard_long_first_take_profit_then_trailing_exit() -> None:
    strategy, ctx = make(StopGuardStrategy)
    ctx.set_position(Direction.LONG, 5, 4000)
    feed(strategy, [4100, 4199, 4200, 4210])
    assert ctx.actions() == [("close", 3, Direction.LONG)]  # round(5 x 0.6) = 3, once
    assert (
        ctx.signals[0].condition
        == "first take-profit: long 5 @ 4000, last 4200: +5.00% >= +5.00%, close 3 of 5 (60%)"
    )
    ctx.set_position(Direction.LONG, 2, 4000)  # filled
    feed(strategy, [4300, 4236, 4250, 4235, 4230], start=T0 + timedelta(seconds=10))
    # best 4300; 4236 is 1.49% below it, 4235 is 1.51%
    assert ctx.actions() == [("close", 3, Direction.LONG), ("close", 2, Direction.LONG)]
    assert ctx.signals[1].condition == (
        "trailing take-profit: long 2 @ 4000, last 4235, best 4300 since the first take-profit: "
        "retraced 1.51% >= 1.50%, close 2"
    )
    assert ctx.signals[1].price == 4235


def test_stop_guard_short_stop_loss_first_take_profit_and_trailing() -> None:
    strategy, ctx = make(StopGuardStrategy)
    ctx.set_position(Direction.SHORT, 4, 4000)
    feed(strategy, [4079, 4080])
    assert ctx.actions() == [("close", 4, Direction.SHORT)]
    assert ctx.signals[0].condition == "stop-loss: short 4 @ 4000, last 4080: -2.00% <= -2.00%, close 4"
    ctx.signals.clear()

    ctx.positions.clear()
    feed(strategy, [4000], start=T0 + timedelta(seconds=10))  # position gone: state resets
    ctx.set_position(Direction.SHORT, 4, 4000)
    feed(strategy, [3801, 3800, 3790], start=T0 + timedelta(seconds=20))
    assert ctx.actions() == [("close", 2, Direction.SHORT)]  # round(4 x 0.6) = 2
    ctx.set_position(Direction.SHORT, 2, 4000)
    feed(strategy, [3700, 3755, 3756], start=T0 + timedelta(seconds=30))
    # best 3700; 3755 is 1.486% above it, 3756 is 1.51%
    assert ctx.actions() == [("close", 2, Direction.SHORT), ("close", 2, Direction.SHORT)]
    assert "retraced 1.51% >= 1.50%" in ctx.signals[1].condition


def test_stop_guard_first_take_profit_is_once_per_position_and_state_resets() -> None:
    strategy, ctx = make(StopGuardStrategy, {"first_take_profit_ratio": 0.5})
    ctx.set_position(Direction.LONG, 1, 4000)
    feed(strategy, [4200, 4300])
    assert ctx.actions() == [("close", 1, Direction.LONG)]  # 1 lot x 0.5 rounds to the whole lot
    feed(strategy, [4400], start=T0 + timedelta(seconds=5))  # not filled, not repeated
    assert len(ctx.signals) == 1
    ctx.positions.clear()
    feed(strategy, [4400], start=T0 + timedelta(seconds=6))
    ctx.set_position(Direction.LONG, 4, 4400)
    feed(strategy, [4620], start=T0 + timedelta(seconds=7))  # +5% on the new position
    assert ctx.actions()[-1] == ("close", 2, Direction.LONG)
    assert len(ctx.signals) == 2


def test_stop_guard_guards_both_directions_of_a_locked_position() -> None:
    strategy, ctx = make(StopGuardStrategy)
    ctx.set_position(Direction.LONG, 1, 4000)
    ctx.set_position(Direction.SHORT, 1, 4250)
    feed(strategy, [4200])  # long +5.00 %, short +1.18 %
    assert ctx.actions() == [("close", 1, Direction.LONG)]


# ====================================================================== GridStrategy


def _au_ticks(strategy: Strategy, prices: Sequence[float], start: datetime = T0) -> None:
    for i, price in enumerate(prices):
        strategy.on_tick(
            Tick(vt_symbol=AU.vt_symbol, datetime=start + timedelta(seconds=i), last_price=price)
        )


def test_grid_buys_at_each_line_down_and_closes_one_line_up() -> None:
    ctx = FakeContext(contract=AU, fill=True)
    strategy, _ = make(
        GridStrategy, {"grid_step": 10, "levels": 5, "volume": 2}, ctx=ctx, vt_symbol=AU.vt_symbol
    )
    # base 901.00, step 10 x 0.02 = 0.20: lines 900.80, 900.60, 900.40, 900.20, 900.00
    _au_ticks(strategy, [901.00, 900.90, 900.80, 900.50, 900.70])
    assert ctx.actions() == [("buy", 2, None), ("buy", 2, None)]
    assert [s.condition for s in ctx.signals] == [
        "grid: price 900.80 fell through level 1 at 900.80",
        "grid: price 900.50 fell through level 2 at 900.60",
    ]
    _au_ticks(strategy, [900.80], start=T0 + timedelta(seconds=10))
    assert ctx.actions()[2:] == [("close", 2, Direction.LONG)]
    assert (
        ctx.signals[2].condition
        == "grid: price 900.80 rose through level 1 at 900.80, closing level 2 (bought at 900.60)"
    )
    assert strategy.pos == 2 and strategy.held == 1
    # a jump through four lines buys levels 2..5 in ONE signal (the grid is full after that):
    # several identical orders in one instant would be refused as duplicates
    _au_ticks(strategy, [899.00, 898.00], start=T0 + timedelta(seconds=20))
    assert ctx.actions()[3:] == [("buy", 8, None)]
    assert ctx.signals[3].condition == "grid: price 899.00 fell through levels 2-5 at 900.00"
    # all the way back up to the base closes every level, again as one signal
    _au_ticks(strategy, [901.00], start=T0 + timedelta(seconds=30))
    assert ctx.actions()[4:] == [("close", 10, Direction.LONG)]
    assert (
        ctx.signals[-1].condition
        == "grid: price 901.00 rose through the base at 901.00, closing levels 1-5 (bought at 900.80 .. 900.00)"
    )
    assert strategy.pos == 0 and strategy.held == 0
    assert len({s.key for s in ctx.signals}) == len(ctx.signals)


def test_grid_with_a_configured_base_and_no_fills() -> None:
    ctx = FakeContext(contract=AU)
    strategy, _ = make(
        GridStrategy, {"grid_step": 5, "levels": 2, "base_price": 900.0}, ctx=ctx, vt_symbol=AU.vt_symbol
    )
    # lines 899.90, 899.80: the first price already below the first line buys it at once
    _au_ticks(strategy, [899.86, 899.70, 899.60, 900.00])
    assert ctx.actions() == [("buy", 1, None), ("buy", 1, None), ("hold", 0, None)]
    assert ctx.signals[2].condition.endswith(
        "closing levels 1-2 (bought at 899.90 .. 899.80): this instance holds no position"
    )


def test_grid_warns_when_max_position_cannot_hold_the_grid() -> None:
    ctx = FakeContext(contract=AU)
    make(GridStrategy, {"levels": 5, "volume": 2}, ctx=ctx, vt_symbol=AU.vt_symbol)
    assert ctx.logs == [
        ("WARNING", "risk.max_position 1 < levels x volume = 10: the engine will refuse buys beyond 1 lot(s)")
    ]


def test_grid_waits_for_its_contract() -> None:
    ctx = FakeContext(contract=None)
    risk = StrategyRiskConfig(max_position=5)
    strategy, _ = make(GridStrategy, ctx=ctx, vt_symbol=AU.vt_symbol, risk=risk)
    _au_ticks(strategy, [900.0, 899.0, 898.0])
    assert ctx.signals == [] and strategy.base is None
    assert [level for level, _ in ctx.logs] == ["WARNING"]


# ====================================================================== all built-ins on a long random walk


@pytest.mark.parametrize(
    ("cls", "params"),
    [
        (MaCrossStrategy, {}),
        (RsiStrategy, {}),
        (MaRsiStrategy, {}),
        (StopGuardStrategy, {"stop_loss_pct": 0.3, "first_take_profit_pct": 0.3, "trailing_pct": 0.1}),
        (GridStrategy, {"grid_step": 2, "levels": 3}),
    ],
)
def test_builtins_survive_a_random_walk_with_well_formed_signals(cls: type[Strategy], params: dict) -> None:
    rng = random.Random(7)
    risk = StrategyRiskConfig(stop_loss_pct=1.0, take_profit_pct=1.5, max_position=5)
    strategy, ctx = make(cls, params, ctx=FakeContext(fill=True), risk=risk)
    price = 4000.0
    for i in range(3000):  # a tick every 5 s: 250 one-minute bars
        price = max(1.0, price + rng.choice((-2, -1, 0, 1, 2)))
        if cls is StopGuardStrategy and i % 200 == 0:  # someone else's positions to guard
            ctx.set_position(Direction.LONG, 3, price)
            ctx.set_position(Direction.SHORT, 2, price)
        strategy.on_tick(
            Tick(vt_symbol=RB.vt_symbol, datetime=T0 + timedelta(seconds=5 * i), last_price=price)
        )
    assert ctx.signals, "a 4-hour random walk should trigger something"
    for signal in ctx.signals:
        assert signal.condition and signal.price > 0
        assert (signal.volume == 0) == (signal.action == "hold")
        assert (signal.direction is not None) == (signal.action == "close")
    times = [s.datetime for s in ctx.signals]
    assert times == sorted(times)
    assert abs(strategy.pos) <= 5


def test_instance_pnl_is_net_of_commission() -> None:
    strategy, _ = make(MaCrossStrategy)
    buy = msgspec.structs.replace(
        make_trade(RB.vt_symbol, Direction.LONG, Offset.OPEN, 4000, 1, 1), commission=4.0
    )
    sell = msgspec.structs.replace(
        make_trade(RB.vt_symbol, Direction.SHORT, Offset.CLOSETODAY, 4010, 1, 2), commission=4.0
    )
    strategy.apply_trade(buy)
    strategy.apply_trade(sell)
    assert strategy.realized_pnl == pytest.approx(100)
    assert (strategy.commission, strategy.pnl) == (pytest.approx(8), pytest.approx(92))
