"""Redis Streams link: change events from three publishing daemons to one attached console, and
the order round trip console -> daemon -> reply over Redis next to the same over the control
socket, in one run against a real ``redis-server`` (tests/redis_server.py).

Events: three processes, each a daemon's publishing half (its ``TradingManager`` aggregator and
``RedisPublisher``, with no trader: the bench folds typed ``tick`` messages into the aggregator
as fast as it can, as traders' streams would), to one ``RedisConsoleClient`` that decodes each
entry and folds it into its own aggregator; counted when the console's subscriber sees them.
Orders: one real daemon (``qtrader-tui --no-ui`` with ``publish:``) and its sim trader; each
order rests (limit-down) and is cancelled; ``RedisConsoleClient`` and ``RemoteConsoleClient``
(the control socket) take turns, so both see the same load.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import subprocess
import sys
import time
from typing import Any

from bench.harness import BenchEnv, make_env, sim_account, wait_until
from bench.report import percentile, print_json, print_table, summary_us
from config import PublishConfig, load_config_file
from config import paths as cfg_paths
from core.aggregator import Change
from core.client import RemoteConsoleClient
from core.models import Direction, Offset, OrderRequest, Tick, TraderStatus, now
from core.protocol import Message
from core.redis_client import RedisConsoleClient
from tests.redis_server import RedisServer

HOSTS = 3
BENCH_LIMITS = {
    "max_orders_per_second": 100000,
    "max_cancels_per_second": 100000,
    "max_active_orders": 100000,
    "max_daily_orders": 1000000,
    "max_daily_cancels": 1000000,
    "duplicate_window": 0,
}


def _tick(account_id: str, i: int) -> Tick:
    return Tick(
        account_id=account_id,
        vt_symbol="au2612.SHFE",
        datetime=now(),
        last_price=912.0 + (i % 50) * 0.02,
        volume=1000 + i,
        bid_price_1=911.98,
        bid_volume_1=5,
        ask_price_1=912.02,
        ask_volume_1=7,
    )


async def _publish(url: str, host: str, count: int, ready: Any, go: Any, done: Any) -> None:
    from core.control import ControlServer
    from core.manager import TradingManager
    from core.redis_publish import RedisPublisher

    env = make_env()
    account_id = f"EV{host}"
    config = env.write(sim_account(account_id, ["au2612.SHFE"]))
    manager = TradingManager(config, config_path=env.config_path, data_dir=env.data_dir)
    control = ControlServer(manager, env.root / "control.sock")  # answers commands; never served here
    publisher = RedisPublisher(manager, control, PublishConfig(url=url, host=host, snapshot_interval=1.0))
    await publisher.claim()
    publisher.start()
    await wait_until(lambda: publisher.up)
    ready.set()
    while not go.is_set():
        await asyncio.sleep(0.001)
    agg = manager.aggregator
    for i in range(count):
        agg.apply(account_id, Message.new(type="tick", account_id=account_id, data=_tick(account_id, i)))
        if i % 100 == 0:
            await asyncio.sleep(0)  # the trader links' reads yield like this between chunks
    # up until the console has read it all: a host that stops is "host down", and not read on
    while not done.is_set():
        await asyncio.sleep(0.01)
    await publisher.stop()
    env.cleanup()


def _publisher_main(url: str, host: str, count: int, ready: Any, go: Any, done: Any) -> None:
    asyncio.run(_publish(url, host, count, ready, go, done))


async def _events(url: str, count: int) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    readies = [ctx.Event() for _ in range(HOSTS)]
    go, done = ctx.Event(), ctx.Event()
    procs = [
        ctx.Process(target=_publisher_main, args=(url, f"b{i}", count, readies[i], go, done))
        for i in range(HOSTS)
    ]
    for p in procs:
        p.start()
    await asyncio.to_thread(lambda: all(r.wait(60) for r in readies))
    console = RedisConsoleClient(url, await RedisConsoleClient.discover(url))
    await console.connect()
    await wait_until(lambda: console.attached)
    seen = 0

    def count_tick(change: Change) -> None:
        nonlocal seen
        if change.kind == "tick":
            seen += 1

    console.subscribe(count_tick)
    t0 = time.perf_counter()
    go.set()
    await wait_until(lambda: seen >= HOSTS * count, 300)
    elapsed = time.perf_counter() - t0
    done.set()
    await console.close()
    for p in procs:
        p.join(60)
    return {"events": seen, "elapsed": elapsed}


def _write_daemon_config(env: BenchEnv, url: str) -> None:
    symbols = ["au2612.SHFE", "rb2705.SHFE", "m2705.DCE"]
    env.write(sim_account("ORD", symbols, **BENCH_LIMITS))
    with env.config_path.open("a") as f:
        f.write(f"publish: {{url: '{url}', host: orders}}\n")


async def _orders(url: str, n: int) -> dict[str, list[float]]:
    env = make_env()
    _write_daemon_config(env, url)
    config = load_config_file(env.config_path)
    proc = subprocess.Popen(  # noqa: ASYNC220 (started once, before anything is timed)
        [
            sys.executable,
            "-m",
            "tui.cli",
            "--no-ui",
            "--config",
            str(env.config_path),
            "--data-dir",
            str(env.data_dir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    over_redis: RedisConsoleClient | None = None
    over_socket: RemoteConsoleClient | None = None
    try:

        async def published() -> list[tuple[str, str, str]]:
            while True:
                found = await RedisConsoleClient.discover(url)
                if any(a == "ORD" for a, _, _ in found):
                    return found
                await asyncio.sleep(0.1)

        over_redis = RedisConsoleClient(url, await asyncio.wait_for(published(), 60))
        await over_redis.connect()
        path = cfg_paths.control_socket_path(cfg_paths.socket_dir(config))
        over_socket = RemoteConsoleClient(path, [("ORD", "sim")])
        await over_socket.connect()
        for client in (over_redis, over_socket):
            state = client.state("ORD")
            await wait_until(
                lambda s=state: s.status is TraderStatus.CONNECTED and "m2705.DCE" in s.ticks, 60
            )
        tick = over_socket.state("ORD").ticks["m2705.DCE"]
        req = OrderRequest(
            vt_symbol="m2705.DCE",
            direction=Direction.LONG,
            offset=Offset.OPEN,
            price=tick.limit_down,
            volume=1,
        )
        samples: dict[str, list[float]] = {"redis": [], "socket": []}
        for i in range(2 * (n + 100)):
            name, client = ("redis", over_redis) if i % 2 == 0 else ("socket", over_socket)
            t0 = time.perf_counter()
            reply = await client.send_order("ORD", req)
            t1 = time.perf_counter()
            if not reply.ok:
                raise RuntimeError(f"order refused over {name}: {reply.error}")
            cancel = await client.cancel_order("ORD", reply.result["order_id"])
            if not cancel.ok:
                raise RuntimeError(f"cancel refused over {name}: {cancel.error}")
            if i >= 200:  # warm-up excluded
                samples[name].append(t1 - t0)
            if i % 50 == 0:
                await asyncio.sleep(0.01)  # paced bursts, as an operator or strategy sends them
        return samples
    finally:
        for client in (over_redis, over_socket):
            if client is not None:
                await client.close()
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        env.cleanup()


def _cells(figures: dict[str, float]) -> list[float]:
    return [figures[k] for k in ("p50_us", "p90_us", "p99_us", "mean_us", "max_us")]


def run(*, quick: bool = False) -> dict[str, Any]:
    count = 20_000 if quick else 100_000
    n = 300 if quick else 2000
    server = RedisServer()
    server.start()
    try:
        events = asyncio.run(_events(server.url, count))
        orders = asyncio.run(_orders(server.url, n))
    finally:
        server.close()
    rate = events["events"] / events["elapsed"]
    o_redis, o_socket = summary_us(orders["redis"]), summary_us(orders["socket"])
    for figures_of, samples in ((o_redis, orders["redis"]), (o_socket, orders["socket"])):
        figures_of["p90_us"] = round(percentile([s * 1e6 for s in samples], 90), 1)
    ratio_p99 = o_redis["p99_us"] / o_socket["p99_us"]
    ratio_p50 = o_redis["p50_us"] / o_socket["p50_us"]
    print_table(
        f"redis: {HOSTS} publishing daemons -> one attached console ({HOSTS} x {count:,} tick changes)",
        ["measure", "value", "target"],
        [("change events/s, end to end", round(rate), ">= 20,000")],
    )
    print_table(
        f"redis: order round trip console -> daemon -> trader -> reply ({n} each, taking turns)",
        ["path", "p50 us", "p90 us", "p99 us", "mean us", "max us", "target p99"],
        [
            ("over Redis Streams", *_cells(o_redis), f"<= 3x socket ({3 * o_socket['p99_us']:,.0f})"),
            ("over the control socket", *_cells(o_socket), "-"),
            ("ratio p50 / p99", round(ratio_p50, 2), "", round(ratio_p99, 2), "", "", "<= 3"),
        ],
    )
    figures = {
        "events": events["events"],
        "events_per_s": round(rate),
        "target_events_per_s": 20_000,
        "orders": n,
        **{f"redis_order_{k}": v for k, v in o_redis.items()},
        **{f"socket_order_{k}": v for k, v in o_socket.items()},
        "ratio_order_p50": round(ratio_p50, 2),
        "ratio_order_p99": round(ratio_p99, 2),
        "target_ratio_order_p99": 3,
    }
    print_json("redis", figures)
    return figures
