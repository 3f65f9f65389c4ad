"""Order path: manager request -> trader (own process) -> risk -> sim gateway -> accepted reply.

Each order is written to the account's database before the reply, as in
production. Orders rest (priced at limit-down) and are cancelled one by one,
so the book stays small; cancels are timed too.

The floor, measured in the same run: a bare asyncio Unix-socket ping-pong between two
processes, a frame the size of our order request out and one the size of its reply back,
with the same count, pairs and pauses. ``p50_ratio`` and ``p99_ratio`` are the order
path's percentiles over the floor's.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness import make_env, sim_account, wait_until
from bench.report import percentile, print_json, print_table, summary_us
from core.manager import TradingManager
from core.models import Direction, Offset, OrderRequest, TraderStatus
from core.protocol import HEADER, Message, Reply, encode_frame

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


# --------------------------------------------------------------------------- the floor


def _frames() -> tuple[bytes, bytes]:
    """A frame the size of our order request, and one the size of its reply."""
    req = OrderRequest(
        vt_symbol="m2705.DCE",
        direction=Direction.LONG,
        offset=Offset.OPEN,
        price=3012.0,
        volume=1,
        account_id="BENCH",
    )
    ping = encode_frame(
        Message.new(type="order_req", account_id="BENCH", seq=1, ts=time.time(), req_id=1, data=req)
    )
    reply = Reply(ok=True, result={"order_id": "BENCH.sim.1764790000.000123"})
    pong = encode_frame(
        Message.new(type="reply", account_id="BENCH", seq=1, ts=time.time(), req_id=1, data=reply)
    )
    return ping, pong


async def _echo(path: str, pong: bytes) -> None:
    reader, writer = await asyncio.open_unix_connection(path)
    try:
        while True:
            (length,) = HEADER.unpack(await reader.readexactly(HEADER.size))
            await reader.readexactly(length)
            writer.write(pong)
    except asyncio.IncompleteReadError:
        writer.close()


def _echo_main(path: str, pong: bytes) -> None:
    asyncio.run(_echo(path, pong))


async def _measure_floor(n: int) -> list[float]:
    ping, pong = _frames()
    tmp = Path(tempfile.mkdtemp(prefix="qtrader-bench-"))
    path = str(tmp / "pp.sock")
    conn: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await conn.put((reader, writer))

    server = await asyncio.start_unix_server(serve, path=path)
    proc = mp.get_context("spawn").Process(target=_echo_main, args=(path, pong))
    proc.start()
    reader, writer = await asyncio.wait_for(conn.get(), 60)

    async def one() -> float:
        t0 = time.perf_counter()
        writer.write(ping)
        (length,) = HEADER.unpack(await reader.readexactly(HEADER.size))
        await reader.readexactly(length)
        return time.perf_counter() - t0

    rtts: list[float] = []
    for i in range(n + 200):
        first = await one()
        await one()  # the cancel's round trip, as the order path does
        if i >= 200:
            rtts.append(first)
        if i % 50 == 0:
            await asyncio.sleep(0.01)
    writer.close()
    proc.join(30)
    server.close()
    os.unlink(path)
    os.rmdir(tmp)
    return rtts


def _cells(figures: dict[str, float]) -> list[float]:
    return [figures[k] for k in ("p50_us", "p90_us", "p99_us", "p99_9_us", "mean_us", "max_us")]


def run(*, quick: bool = False) -> dict[str, Any]:
    n = 500 if quick else 5000
    floor = asyncio.run(_measure_floor(n))
    result = asyncio.run(_measure(n))
    o = summary_us(result["orders"])
    c = summary_us(result["cancels"])
    f = summary_us(floor)
    for figures_of, samples in ((o, result["orders"]), (c, result["cancels"]), (f, floor)):
        us = [s * 1e6 for s in samples]
        figures_of["p90_us"] = round(percentile(us, 90), 1)
        figures_of["p99_9_us"] = round(percentile(us, 99.9), 1)
    print_table(
        f"order: manager -> trader process -> sim gateway -> reply ({n} each, 5 contracts ticking at 2/s)",
        ["request", "p50 us", "p90 us", "p99 us", "p99.9 us", "mean us", "max us", "target"],
        [
            ("order -> accepted", *_cells(o), "-"),
            ("cancel -> cancelled", *_cells(c), "-"),
            ("floor: bare ping-pong", *_cells(f), "-"),
        ],
    )
    p50_ratio = o["p50_us"] / f["p50_us"]
    p99_ratio = o["p99_us"] / f["p99_us"]
    print_table(
        "order: against the floor (same run)",
        ["measure", "value", "target"],
        [
            ("p50_ratio (order p50 / floor p50)", round(p50_ratio, 2), "<= 2.5"),
            ("p99_ratio (order p99 / floor p99)", round(p99_ratio, 2), "<= 3"),
        ],
    )
    figures = {
        "n": n,
        "p50_ratio": round(p50_ratio, 2),
        "p99_ratio": round(p99_ratio, 2),
        "target_p50_ratio": 2.5,
        "target_p99_ratio": 3.0,
        **{f"order_{k}": v for k, v in o.items()},
        **{f"cancel_{k}": v for k, v in c.items()},
        **{f"floor_{k}": v for k, v in f.items()},
    }
    print_json("order", figures)
    return figures
