"""Order path: manager request -> trader (own process) -> risk -> sim gateway -> accepted reply.

Each order is written to the account's database before the reply, as in
production. Orders rest (priced at limit-down) and are cancelled one by one,
so the book stays small; cancels are timed too.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.harness import make_env, sim_account, wait_until
from bench.report import percentile, print_json, print_table, summary_us
from core.manager import TradingManager
from core.models import Direction, Offset, OrderRequest, TraderStatus

SYMBOLS = ["au2612.SHFE", "rb2705.SHFE", "IF2612.CFFEX", "m2705.DCE", "TA705.CZCE"]


async def _measure(n: int) -> dict[str, Any]:
    env = make_env()
    # the same order thousands of times a minute: limits a real account would not have
    config = env.write(
        sim_account(
            "BENCH",
            SYMBOLS,
            max_orders_per_second=100000,
            max_cancels_per_second=100000,
            max_active_orders=100000,
            max_daily_orders=1000000,
            max_daily_cancels=1000000,
            duplicate_window=0,
        )
    )
    mgr = TradingManager(config, config_path=env.config_path, data_dir=env.data_dir)
    await mgr.start()
    try:
        state = mgr.state("BENCH")
        await wait_until(lambda: state.status is TraderStatus.CONNECTED and len(state.ticks) == len(SYMBOLS))
        tick = state.ticks["m2705.DCE"]
        req = OrderRequest(
            vt_symbol="m2705.DCE",
            direction=Direction.LONG,
            offset=Offset.OPEN,
            price=tick.limit_down,
            volume=1,
        )
        orders: list[float] = []
        cancels: list[float] = []
        for i in range(n + 200):
            t0 = time.perf_counter()
            reply = await mgr.send_order("BENCH", req)
            t1 = time.perf_counter()
            if not reply.ok:
                raise RuntimeError(f"order refused: {reply.error}")
            c = await mgr.cancel_order("BENCH", reply.result["order_id"])
            t2 = time.perf_counter()
            if not c.ok:
                raise RuntimeError(f"cancel refused: {c.error}")
            if i >= 200:  # warm-up excluded
                orders.append(t1 - t0)
                cancels.append(t2 - t1)
            if i % 50 == 0:
                await asyncio.sleep(0.01)  # paced bursts, as an operator or strategy sends them
        return {"orders": orders, "cancels": cancels}
    finally:
        await mgr.stop()
        env.cleanup()


def _cells(figures: dict[str, float]) -> list[float]:
    return [figures[k] for k in ("p50_us", "p90_us", "p99_us", "p99_9_us", "mean_us", "max_us")]


def run(*, quick: bool = False) -> dict[str, Any]:
    n = 500 if quick else 5000
    result = asyncio.run(_measure(n))
    o = summary_us(result["orders"])
    c = summary_us(result["cancels"])
    for figures_of, samples in ((o, result["orders"]), (c, result["cancels"])):
        us = [s * 1e6 for s in samples]
        figures_of["p90_us"] = round(percentile(us, 90), 1)
        figures_of["p99_9_us"] = round(percentile(us, 99.9), 1)
    print_table(
        f"order: manager -> trader process -> sim gateway -> reply ({n} each, 5 contracts ticking at 2/s)",
        ["request", "p50 us", "p90 us", "p99 us", "p99.9 us", "mean us", "max us", "target p99"],
        [
            ("order -> accepted", *_cells(o), "<= 1000 us"),
            ("cancel -> cancelled", *_cells(c), "-"),
        ],
    )
    figures = {"n": n, **{f"order_{k}": v for k, v in o.items()}, **{f"cancel_{k}": v for k, v in c.items()}}
    figures["target_order_p99_us"] = 1000
    print_json("order", figures)
    return figures
