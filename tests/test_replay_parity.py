"""Our replay agrees with vnpy's own backtester (issue 11, point 3).

Seeded 1-minute bars (trends and reversals on rb's price grid, nothing downloaded) are written to a
CSV in vnpy's DataManager export format. Each shipped strategy runs twice: through our batch replay
(``core/replay.py``: the file read back, the template in ``strategies/cta_host.py``'s host,
``strategies/cta_replay.py``'s matcher) and through ``vnpy_ctastrategy``'s ``BacktestingEngine``
in-process (``history_data`` set directly, ``load_bar`` giving nothing, so it never touches a
database). Same trades (datetime, direction, offset, price, volume), same daily and net P&L.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from core.models import CHINA_TZ
from core.replay import prepare, run

SYMBOL = "rb2605.SHFE"
RATE = 0.0001
SLIPPAGE = 1.0
SIZE = 10.0  # rb, as the sim's contract table has it
PRICETICK = 1.0

#: class -> (setting, bars): enough bars for each to warm up (its window bars x its ArrayManager) and trade
STRATEGIES = {
    "double_ma_strategy:DoubleMaStrategy": ({}, 3_000),
    "atr_rsi_strategy:AtrRsiStrategy": ({}, 3_000),
    "boll_channel_strategy:BollChannelStrategy": ({}, 6_000),
    "king_keltner_strategy:KingKeltnerStrategy": ({}, 4_000),
    "turtle_signal_strategy:TurtleSignalStrategy": ({"entry_window": 10, "exit_window": 5}, 2_000),
    "dual_thrust_strategy:DualThrustStrategy": ({}, 8_000),
    "multi_timeframe_strategy:MultiTimeframeStrategy": ({}, 6_000),
}


def make_bars(n: int, seed: int = 11) -> list[tuple[datetime, float, float, float, float, int]]:
    """``n`` bars a minute apart: a random walk whose drift changes every 200 bars."""
    rand = random.Random(seed)
    t = datetime(2026, 3, 2, 9, 0)
    price, drift = 3600.0, 0.0
    rows = []
    for i in range(n):
        if i % 200 == 0:
            drift = rand.choice([-1.5, -0.8, 0.0, 0.8, 1.5])
        o = price
        c = max(100.0, o + round(rand.gauss(drift, 4)))
        h = max(o, c) + rand.randint(0, 4)
        low = min(o, c) - rand.randint(0, 4)
        rows.append((t, o, h, low, c, rand.randint(10, 500)))
        price, t = c, t + timedelta(minutes=1)
    return rows


def write_csv(path: Path, rows: list[tuple[datetime, float, float, float, float, int]]) -> None:
    with path.open("w") as f:
        f.write("symbol,exchange,datetime,open,high,low,close,volume,turnover,open_interest\n")
        for t, o, h, low, c, v in rows:
            f.write(f"rb2605,SHFE,{t:%Y-%m-%d %H:%M:%S},{o},{h},{low},{c},{v},{v * c * SIZE},1000\n")


def vnpy_backtest(cls: type, setting: dict, rows: list) -> tuple[list[tuple], dict, float]:
    from vnpy.trader.constant import Exchange, Interval
    from vnpy.trader.object import BarData
    from vnpy_ctastrategy.backtesting import BacktestingEngine

    engine = BacktestingEngine()
    engine.output = lambda msg: None
    engine.set_parameters(
        vt_symbol=SYMBOL,
        interval=Interval.MINUTE,
        start=rows[0][0],
        end=rows[-1][0],
        rate=RATE,
        slippage=SLIPPAGE,
        size=SIZE,
        pricetick=PRICETICK,
        capital=1_000_000,
    )
    engine.add_strategy(cls, setting)
    engine.load_bar = lambda *args, **kwargs: []  # the bars below are the whole history
    engine.history_data = [
        BarData(
            symbol="rb2605",
            exchange=Exchange.SHFE,
            datetime=t.replace(tzinfo=CHINA_TZ),
            interval=Interval.MINUTE,
            volume=v,
            turnover=v * c * SIZE,
            open_interest=1000,
            open_price=o,
            high_price=h,
            low_price=low,
            close_price=c,
            gateway_name="BACKTESTING",
        )
        for t, o, h, low, c, v in rows
    ]
    engine.run_backtesting()
    df = engine.calculate_result()
    trades = [
        (t.datetime, t.direction.name, t.offset.name, t.price, t.volume) for t in engine.get_all_trades()
    ]
    daily = {d: float(v) for d, v in df["net_pnl"].items()} if len(df) else {}
    return trades, daily, float(df["net_pnl"].sum()) if len(df) else 0.0


@pytest.mark.parametrize("spec", list(STRATEGIES))
def test_same_trades_and_pnl_as_vnpy_backtester(tmp_path: Path, spec: str) -> None:
    setting, n = STRATEGIES[spec]
    rows = make_bars(n)
    path = tmp_path / "bars.csv"
    write_csv(path, rows)

    import json

    job = prepare(
        f"vnpy_ctastrategy.strategies.{spec}",
        SYMBOL,
        path,
        setting=json.dumps(setting),
        rate=RATE,
        slippage=SLIPPAGE,
    )
    assert job.replay.contract(SYMBOL).size == SIZE  # from the sim's contract table
    replay = run(job)
    ours = [(t.datetime, t.direction.name, t.offset.name, t.price, t.volume) for t in replay.trades]

    theirs, their_daily, their_net = vnpy_backtest(type(job.replay.host).cta_class, setting, rows)

    assert len(ours) > 0, f"{spec} did not trade on {n} bars: the parity would prove nothing"
    assert ours == theirs
    assert replay.net_pnl == pytest.approx(their_net, abs=1e-6)
    assert {r.date: r.net_pnl for r in replay.daily.values()} == pytest.approx(their_daily, abs=1e-6)


class OcoStopStrategy:  # a CtaTemplate, built on first use (vnpy is imported lazily)
    pass


def _oco_class() -> type:
    """Two entry stops around the close, the other cancelled when one fills (one cancels
    other, as many strategies do in on_trade); flat again three bars later."""
    from vnpy_ctastrategy import CtaTemplate

    class OcoStop(CtaTemplate):
        author = "test"
        parameters: list[str] = []
        variables: list[str] = []

        def __init__(self, cta_engine, strategy_name, vt_symbol, setting):  # type: ignore[no-untyped-def]
            super().__init__(cta_engine, strategy_name, vt_symbol, setting)
            self.held = 0

        def on_init(self) -> None:
            pass

        def on_bar(self, bar) -> None:  # type: ignore[no-untyped-def]
            if self.pos == 0:
                self.cancel_all()
                self.buy(bar.close_price + 2, 1, stop=True)
                self.short(bar.close_price - 2, 1, stop=True)
            else:
                self.held += 1
                if self.held >= 3:
                    self.cancel_all()
                    if self.pos > 0:
                        self.sell(bar.close_price - 5, abs(self.pos))
                    else:
                        self.cover(bar.close_price + 5, abs(self.pos))

        def on_trade(self, trade) -> None:  # type: ignore[no-untyped-def]
            self.held = 0
            self.cancel_all()  # the other entry stop

    return OcoStop


def test_a_stop_cancelled_by_an_earlier_fill_on_the_same_bar_goes_as_in_vnpy(
    tmp_path: Path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """A wide bar crosses both entry stops: the first fills and its on_trade cancels the other.
    vnpy's backtester crosses the stops it listed before the bar (the cancelled one fills too);
    the replay must do the same, not stop with an error."""
    cls = _oco_class()
    import tests.test_replay_parity as me

    monkeypatch.setattr(me, "OcoStopStrategy", cls)
    rows = make_bars(600, seed=5)
    path = tmp_path / "bars.csv"
    write_csv(path, rows)
    job = prepare("tests.test_replay_parity:OcoStopStrategy", SYMBOL, path, rate=RATE, slippage=SLIPPAGE)
    replay = run(job)
    ours = [(t.datetime, t.direction.name, t.offset.name, t.price, t.volume) for t in replay.trades]
    theirs, _, their_net = vnpy_backtest(cls, {}, rows)
    assert len(theirs) > 10
    assert ours == theirs
    assert replay.net_pnl == pytest.approx(their_net, abs=1e-6)


class HalfTickStrategy:  # a CtaTemplate, built on first use
    pass


def _half_tick_class() -> type:
    """Limit orders at prices exactly half a tick off the grid (a midpoint, ``close - 2.9`` on a
    0.2 grid): vnpy rounds them with ``round_to`` (decimal, half to even)."""
    from vnpy_ctastrategy import CtaTemplate

    class HalfTick(CtaTemplate):
        author = "test"
        parameters: list[str] = []
        variables: list[str] = []

        def on_init(self) -> None:
            self.n = 0

        def on_bar(self, bar) -> None:  # type: ignore[no-untyped-def]
            self.n += 1
            self.cancel_all()
            offset = 2.9 + 0.2 * (self.n % 7)
            if self.pos == 0:
                self.buy(bar.close_price - offset, 1)
            else:
                self.sell(bar.close_price + offset, 1)

    return HalfTick


def test_prices_half_a_tick_off_the_grid_are_rounded_as_vnpy_rounds_them(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    cls = _half_tick_class()
    import tests.test_replay_parity as me

    monkeypatch.setattr(me, "HalfTickStrategy", cls)
    rows = make_bars(1_500, seed=3)
    path = tmp_path / "bars.csv"
    write_csv(path, rows)
    job = prepare("tests.test_replay_parity:HalfTickStrategy", SYMBOL, path, rate=RATE, pricetick=0.2)
    replay = run(job)
    ours = [(t.datetime, t.direction.name, t.offset.name, t.price, t.volume) for t in replay.trades]

    monkeypatch.setattr(me, "PRICETICK", 0.2)
    theirs, _, _ = vnpy_backtest(cls, {}, rows)
    assert len(theirs) > 20
    assert ours == theirs
