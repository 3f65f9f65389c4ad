"""Replay speed: 1-minute bars per second through one vnpy CTA strategy, our replay
(``strategies/cta_replay.py``: the template in our host, our matcher) against vnpy's own
``BacktestingEngine`` on the same bars, in one run.

The bars are seeded (trends and reversals on rb's grid) and built once as vnpy ``BarData``; each
side runs over its own copy, alternately, ``ROUNDS`` times, and its best round counts (the least
disturbed by the other processes of a shared machine); the time is the process's CPU time
(``time.process_time``: both run on one thread, and a busy machine's waits are left out). Only
the run is timed: the template's
``on_init`` / ``on_start``, every bar, ``on_stop``, and the daily P&L (``calculate_result`` for vnpy).
Both runs must give the same trades, else the figures compare different work.
"""

from __future__ import annotations

import random
import time
from datetime import datetime, timedelta
from typing import Any

from bench.report import print_json, print_table
from core.models import CHINA_TZ, Bar
from gateways.sim_contracts import get_contract
from strategies import load_strategy_class
from strategies.cta_replay import CtaReplay, to_vn_bars

SYMBOL = "rb2605.SHFE"
STRATEGY = "vnpy_ctastrategy.strategies.atr_rsi_strategy:AtrRsiStrategy"
RATE, SLIPPAGE = 0.0001, 1.0
ROUNDS = 3


def make_bars(n: int, seed: int = 7) -> list[Bar]:
    rand = random.Random(seed)
    t = datetime(2026, 3, 2, 9, 0, tzinfo=CHINA_TZ)
    price, drift = 3600.0, 0.0
    bars = []
    for i in range(n):
        if i % 200 == 0:
            drift = rand.choice([-1.5, -0.8, 0.0, 0.8, 1.5])
        o = price
        c = max(100.0, o + round(rand.gauss(drift, 4)))
        v = rand.randint(10, 500)
        bars.append(
            Bar(
                vt_symbol=SYMBOL,
                datetime=t,
                open_price=o,
                high_price=max(o, c) + rand.randint(0, 4),
                low_price=min(o, c) - rand.randint(0, 4),
                close_price=c,
                volume=v,
                turnover=v * c * 10,
                open_interest=1000,
            )
        )
        price, t = c, t + timedelta(minutes=1)
    return bars


def _ours(host_cls: Any, bars: list[Any]) -> tuple[float, list[tuple], float]:
    contract = get_contract(SYMBOL)
    assert contract is not None
    start = time.process_time()
    replay = CtaReplay(host_cls, contract, {}, rate=RATE, slippage=SLIPPAGE)
    replay.run(bars)
    net = replay.net_pnl
    seconds = time.process_time() - start
    trades = [(t.datetime, t.direction.name, t.offset.name, t.price, t.volume) for t in replay.trades]
    return seconds, trades, net


def _vnpy(cta_class: type, bars: list[Any]) -> tuple[float, list[tuple], float]:
    from vnpy.trader.constant import Interval
    from vnpy_ctastrategy.backtesting import BacktestingEngine

    contract = get_contract(SYMBOL)
    assert contract is not None
    engine = BacktestingEngine()
    engine.output = lambda msg: None
    engine.set_parameters(
        vt_symbol=SYMBOL,
        interval=Interval.MINUTE,
        start=bars[0].datetime,
        end=bars[-1].datetime,
        rate=RATE,
        slippage=SLIPPAGE,
        size=contract.size,
        pricetick=contract.pricetick,
        capital=1_000_000,
    )
    engine.load_bar = lambda *args, **kwargs: []  # the bars are the whole history: no database
    engine.history_data = bars
    start = time.process_time()
    engine.add_strategy(cta_class, {})
    engine.run_backtesting()
    df = engine.calculate_result()
    net = float(df["net_pnl"].sum()) if len(df) else 0.0
    seconds = time.process_time() - start
    trades = [
        (t.datetime, t.direction.name, t.offset.name, t.price, t.volume) for t in engine.get_all_trades()
    ]
    return seconds, trades, net


def run(quick: bool = False) -> None:
    n = 20_000 if quick else 200_000
    host_cls = load_strategy_class(STRATEGY)
    bars = make_bars(n)
    best = {"ours": float("inf"), "vnpy": float("inf")}
    results: dict[str, tuple[list[tuple], float]] = {}
    for _ in range(1 if quick else ROUNDS):
        for side in ("vnpy", "ours"):
            copy = to_vn_bars(bars)
            if side == "ours":
                seconds, trades, net = _ours(host_cls, copy)
            else:
                seconds, trades, net = _vnpy(host_cls.cta_class, copy)
            best[side] = min(best[side], seconds)
            results[side] = (trades, net)
    same = results["ours"][0] == results["vnpy"][0] and abs(results["ours"][1] - results["vnpy"][1]) < 1e-6
    ours_rate, vnpy_rate = n / best["ours"], n / best["vnpy"]
    name = host_cls.class_name
    print_table(
        f"replay: {n:,} 1-minute bars through {name} (best of {1 if quick else ROUNDS})",
        ["engine", "seconds", "bars/s", "trades", "net P&L"],
        [
            [
                "qtrader replay",
                round(best["ours"], 3),
                round(ours_rate),
                len(results["ours"][0]),
                results["ours"][1],
            ],
            [
                "vnpy BacktestingEngine",
                round(best["vnpy"], 3),
                round(vnpy_rate),
                len(results["vnpy"][0]),
                results["vnpy"][1],
            ],
        ],
    )
    print(f"  same trades and net P&L: {'yes' if same else 'NO'}")
    print_json(
        "replay",
        {
            "strategy": name,
            "bars": n,
            "ours_bars_per_s": round(ours_rate),
            "vnpy_bars_per_s": round(vnpy_rate),
            "ratio": round(ours_rate / vnpy_rate, 3),
            "trades": len(results["ours"][0]),
            "same_trades": same,
        },
    )
