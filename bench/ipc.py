"""IPC: sustained typed message rate trader -> manager over one Unix-socket link,
and the request/reply round trip, between two real processes.

The sender encodes ``tick`` messages with ``Link.send`` (as a trader does); the
receiver decodes each into a typed ``Tick`` with ``Link.recv`` (as the manager does).

The floor, measured in the same run with the same count: the naive stream of the same
frames as plain dicts (the same envelope and tick fields, seq and ts stamped per message),
msgspec-encoded, one ``writer.write`` per message, the receiver splitting the frames and
msgspec-decoding each into a dict, untyped and unvalidated. ``ratio_to_floor`` is our
typed rate over the floor's; each is the best of ``ROUNDS`` alternating rounds.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec

from bench.report import print_json, print_table, summary_us
from core.models import Tick, now
from core.protocol import HEADER, Link, Reply

ROUNDS = 5


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


async def _sender(path: str, count: int, pings: int, cpu: Any) -> None:
    reader, writer = await asyncio.open_unix_connection(path)
    link = Link(reader, writer, account_id="DQ1")
    tick = _tick(0)
    c0 = time.process_time()
    for _ in range(count):
        await link.send("tick", tick)
    await writer.drain()
    cpu.send(time.process_time() - c0)
    # then answer pings, one reply each, like a trader answering requests
    for _ in range(pings):
        msg = await link.recv()
        link.send_nowait("reply", Reply(ok=True), msg.req_id)
    await link.close()


def _sender_main(path: str, count: int, pings: int, cpu: Any) -> None:
    asyncio.run(_sender(path, count, pings, cpu))


async def _measure(count: int, pings: int) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="qtrader-bench-"))
    path = str(tmp / "ipc.sock")
    got: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        link = Link(reader, writer, account_id="manager")
        first = await link.recv()
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(count - 1):
            msg = link.recv_nowait() or await link.recv()  # as the manager's read loop does
            assert isinstance(msg.data, Tick)
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
        rtts = []
        from core.protocol import Empty

        for i in range(pings):
            s = time.perf_counter()
            link.send_nowait("status_req", Empty(), i + 1)
            reply = await link.recv()
            rtts.append(time.perf_counter() - s)
            assert reply.type == "reply"
        await got.put({"first": first, "elapsed": elapsed, "cpu": cpu, "rtts": rtts})
        await link.close()

    server = await asyncio.start_unix_server(serve, path=path)
    ctx = mp.get_context("spawn")
    theirs, ours = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_sender_main, args=(path, count, pings, ours))
    proc.start()
    result = await asyncio.wait_for(got.get(), 300)
    result["sender_cpu"] = theirs.recv()
    proc.join(30)
    server.close()
    os.unlink(path)
    os.rmdir(tmp)
    return result


# --------------------------------------------------------------------------- the floor


def _plain_tick() -> dict[str, Any]:
    """The envelope and payload of our tick frame, as plain builtins."""
    return {
        "type": "tick",
        "account_id": "DQ1",
        "seq": 0,
        "ts": 0.0,
        "req_id": None,
        "data": msgspec.to_builtins(_tick(0)),
    }


async def _floor_sender(path: str, count: int, cpu: Any) -> None:
    _reader, writer = await asyncio.open_unix_connection(path)
    c0 = time.process_time()
    encode = msgspec.json.encode
    pack = HEADER.pack
    msg = _plain_tick()
    for i in range(count):
        msg["seq"] = i + 1
        msg["ts"] = time.time()
        body = encode(msg)
        writer.write(pack(len(body)) + body)  # one write per message
        if writer.transport.get_write_buffer_size() > 1 << 20:
            await writer.drain()
    await writer.drain()
    cpu.send(time.process_time() - c0)
    writer.close()
    await writer.wait_closed()


def _floor_sender_main(path: str, count: int, cpu: Any) -> None:
    asyncio.run(_floor_sender(path, count, cpu))


async def _measure_floor(count: int) -> dict[str, float]:
    """Seconds the receiver took for messages 2..count of the naive stream, and the CPU
    seconds of each side."""
    tmp = Path(tempfile.mkdtemp(prefix="qtrader-bench-"))
    path = str(tmp / "floor.sock")
    got: asyncio.Queue[dict[str, float]] = asyncio.Queue()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        decode = msgspec.json.decode
        unpack = HEADER.unpack_from
        size = HEADER.size
        buf = b""
        n = 0
        t0 = c0 = 0.0
        while n < count:
            chunk = await reader.read(1 << 18)
            if not chunk:
                break
            buf += chunk
            pos = 0
            while len(buf) - pos >= size:
                (length,) = unpack(buf, pos)
                end = pos + size + length
                if len(buf) < end:
                    break
                msg = decode(buf[pos + size : end])
                assert msg["type"] == "tick"
                pos = end
                n += 1
                if n == 1:
                    t0, c0 = time.perf_counter(), time.process_time()
            buf = buf[pos:]
        await got.put({"elapsed": time.perf_counter() - t0, "cpu": time.process_time() - c0})
        writer.close()

    server = await asyncio.start_unix_server(serve, path=path)
    ctx = mp.get_context("spawn")
    theirs, ours = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_floor_sender_main, args=(path, count, ours))
    proc.start()
    result = await asyncio.wait_for(got.get(), 300)
    result["sender_cpu"] = theirs.recv()
    proc.join(30)
    server.close()
    os.unlink(path)
    os.rmdir(tmp)
    return result


def run(*, quick: bool = False) -> dict[str, Any]:
    count = 50_000 if quick else 200_000
    pings = 2_000 if quick else 20_000
    rates: list[float] = []
    floors: list[float] = []
    rtts: list[float] = []
    cpu: dict[str, list[float]] = {"sender": [], "receiver": [], "floor_sender": [], "floor_receiver": []}
    for _ in range(ROUNDS):
        result = asyncio.run(_measure(count, pings))
        rates.append((count - 1) / result["elapsed"])
        rtts.extend(result["rtts"])
        cpu["sender"].append(result["sender_cpu"] / count)
        cpu["receiver"].append(result["cpu"] / (count - 1))
        floor_result = asyncio.run(_measure_floor(count))
        floors.append((count - 1) / floor_result["elapsed"])
        cpu["floor_sender"].append(floor_result["sender_cpu"] / count)
        cpu["floor_receiver"].append(floor_result["cpu"] / (count - 1))
    rate, floor = max(rates), max(floors)
    ratio = rate / floor
    # CPU per message of each side (the least of the rounds): what the rate is made of
    us = {k: round(min(v) * 1e6, 2) for k, v in cpu.items()}
    rtt = summary_us(rtts)
    print_table(
        f"ipc: one link between two processes ({count:,} tick messages, best of {ROUNDS} rounds each)",
        ["measure", "value", "target"],
        [
            ("one-way typed messages/s (Link, typed Tick)", round(rate), "-"),
            ("floor: naive plain-dict stream messages/s", round(floor), "-"),
            ("ratio_to_floor (typed / floor)", round(ratio, 2), ">= 1.0"),
            ("CPU us per message, sender / receiver", f"{us['sender']} / {us['receiver']}", "-"),
            (
                "floor: CPU us per message, sender / receiver",
                f"{us['floor_sender']} / {us['floor_receiver']}",
                "-",
            ),
            ("request -> reply p50 us", rtt["p50_us"], "-"),
            ("request -> reply p99 us", rtt["p99_us"], "-"),
        ],
    )
    figures = {
        "messages": count,
        "msgs_per_s": round(rate),
        "msgs_per_s_rounds": [round(r) for r in rates],
        "floor_msgs_per_s": round(floor),
        "floor_msgs_per_s_rounds": [round(r) for r in floors],
        "ratio_to_floor": round(ratio, 3),
        "target_ratio_to_floor": 1.0,
        **{f"cpu_us_per_msg_{k}": v for k, v in us.items()},
        **{f"rtt_{k}": v for k, v in rtt.items()},
    }
    print_json("ipc", figures)
    return figures
