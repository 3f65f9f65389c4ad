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
