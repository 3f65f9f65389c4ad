"""IPC: sustained typed message rate trader -> manager over one Unix-socket link,
and the request/reply round trip, between two real processes.

The sender encodes ``tick`` messages with ``Link.send`` (as a trader does); the
receiver decodes each into a typed ``Tick`` with ``Link.recv`` (as the manager does).
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.report import print_json, print_table, summary_us
from core.models import Tick, now
from core.protocol import Link, Reply


def _tick(i: int) -> Tick:
    return Tick(
        account_id="DQ1",
        vt_symbol="au2612.SHFE",
        datetime=now(),
        last_price=912.0 + (i % 50) * 0.02,
        volume=1000 + i,
        bid_price_1=911.98,
        bid_volume_1=5,
        ask_price_1=912.02,
        ask_volume_1=7,
    )


async def _sender(path: str, count: int, pings: int) -> None:
    reader, writer = await asyncio.open_unix_connection(path)
    link = Link(reader, writer, account_id="DQ1")
    tick = _tick(0)
    for _ in range(count):
        await link.send("tick", tick)
    await writer.drain()
    # then answer pings, one reply each, like a trader answering requests
    for _ in range(pings):
        msg = await link.recv()
        link.send_nowait("reply", Reply(ok=True), msg.req_id)
    await link.close()


def _sender_main(path: str, count: int, pings: int) -> None:
    asyncio.run(_sender(path, count, pings))


async def _measure(count: int, pings: int) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="qtrader-bench-"))
    path = str(tmp / "ipc.sock")
    got: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        link = Link(reader, writer, account_id="manager")
        first = await link.recv()
        t0 = time.perf_counter()
        for _ in range(count - 1):
            msg = await link.recv()
            assert isinstance(msg.data, Tick)
        elapsed = time.perf_counter() - t0
        rtts = []
        from core.protocol import Empty

        for i in range(pings):
            s = time.perf_counter()
            link.send_nowait("status_req", Empty(), i + 1)
            reply = await link.recv()
            rtts.append(time.perf_counter() - s)
            assert reply.type == "reply"
        await got.put({"first": first, "elapsed": elapsed, "rtts": rtts})
        await link.close()

    server = await asyncio.start_unix_server(serve, path=path)
    proc = mp.get_context("spawn").Process(target=_sender_main, args=(path, count, pings))
    proc.start()
    result = await asyncio.wait_for(got.get(), 300)
    proc.join(30)
    server.close()
    os.unlink(path)
    os.rmdir(tmp)
    return result


def run(*, quick: bool = False) -> dict[str, Any]:
    count = 50_000 if quick else 500_000
    pings = 2_000 if quick else 20_000
    result = asyncio.run(_measure(count, pings))
    rate = (count - 1) / result["elapsed"]
    rtt = summary_us(result["rtts"])
    print_table(
        "ipc: one link between two processes (typed tick messages, msgspec frames)",
        ["measure", "value", "target"],
        [
            ("one-way typed messages/s", round(rate), ">= 250,000"),
            ("request -> reply p50 us", rtt["p50_us"], "-"),
            ("request -> reply p99 us", rtt["p99_us"], "-"),
        ],
    )
    figures = {
        "messages": count,
        "msgs_per_s": round(rate),
        "target_msgs_per_s": 250_000,
        **{f"rtt_{k}": v for k, v in rtt.items()},
    }
    print_json("ipc", figures)
    return figures
