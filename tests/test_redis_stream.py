"""Snapshot then stream: a console attaching mid-flood, or falling behind the stream's cap,
ends with exactly the daemon's picture (nothing missed, nothing applied twice).

The daemon side is the real ``RedisPublisher`` over a real ``TradingManager``'s aggregator
(no trader: the test folds trades in as a trader's link would) and a real redis-server."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from config import PublishConfig, load_config_file
from core.control import ControlServer
from core.manager import TradingManager
from core.models import Direction, LogEntry, Offset, Trade, TraderInfo, TraderStatus, now
from core.protocol import ConsoleState, Message, TraderStatusUpdate
from core.redis_client import RedisConsoleClient
from core.redis_publish import RedisPublisher
from tests.conftest import CoreEnv, sim_account, wait_until
from tests.redis_server import RedisServer

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    try:
        server = RedisServer()
    except RuntimeError as exc:
        pytest.fail(str(exc))
    server.start()
    yield server
    server.close()


@pytest.fixture
async def publisher(core_env: CoreEnv, redis: RedisServer) -> AsyncIterator[RedisPublisher]:
    config = core_env.write_config(sim_account("F1", "au2612.SHFE"))
    manager = TradingManager(config, config_path=core_env.config_path, data_dir=core_env.data_dir)
    control = ControlServer(manager, core_env.root / "control.sock")
    settings = PublishConfig(url=redis.url, host="flood", snapshot_interval=0.2, stream_maxlen=200)
    # the trader has registered (a console's snapshot of an account starts with what it said)
    info = TraderInfo(account_id="F1", gateway="sim", pid=os.getpid())
    manager.aggregator.apply("F1", Message.new(type="register", account_id="F1", data=info))
    pub = RedisPublisher(manager, control, settings)
    assert await pub.claim()
    pub.start()
    await wait_until(lambda: pub.up, what="publishing")
    yield pub
    await pub.stop()


def _trade(i: int) -> Message:
    trade = Trade(
        account_id="F1",
        trade_id=f"T{i}",
        order_id=f"O{i}",
        vt_symbol="au2612.SHFE",
        direction=Direction.LONG,
        offset=Offset.OPEN,
        price=900.0 + i % 7,
        volume=1,
        datetime=now(),
    )
    return Message.new(type="trade", account_id="F1", data=trade)


async def _flood(pub: RedisPublisher, start: int, count: int) -> None:
    agg = pub.manager.aggregator
    for i in range(start, start + count):
        agg.apply("F1", _trade(i))
        if i % 20 == 0:
            await asyncio.sleep(0)  # a trader link's reads yield between chunks like this


async def test_attaching_mid_flood_misses_nothing_and_doubles_nothing(
    publisher: RedisPublisher, redis: RedisServer
) -> None:
    theirs = publisher.manager.aggregator.states["F1"]
    await _flood(publisher, 0, 150)
    flood = asyncio.create_task(_flood(publisher, 150, 3000))
    console = RedisConsoleClient(redis.url, await RedisConsoleClient.discover(redis.url))
    try:
        await console.connect()  # while the flood goes on: snapshot, then the stream after it
        ours = console.state("F1")
        await flood
        await wait_until(
            lambda: [t.trade_id for t in ours.trades] == [t.trade_id for t in theirs.trades],
            what="the console's trades equal the daemon's",
        )
        assert len({t.trade_id for t in ours.trades}) == len(ours.trades)  # none twice
        assert ours.trades[-1].trade_id == "T3149"
    finally:
        await console.close()


async def test_a_console_behind_the_streams_cap_starts_again_from_a_snapshot(
    publisher: RedisPublisher, redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import redis.asyncio as aioredis

    theirs = publisher.manager.aggregator.states["F1"]
    reading = asyncio.Event()
    reading.set()
    xread = aioredis.Redis.xread

    async def gated(self: aioredis.Redis, *args: object, **kwargs: object) -> object:
        await reading.wait()  # a console too busy to read
        return await xread(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(aioredis.Redis, "xread", gated)
    console = RedisConsoleClient(redis.url, await RedisConsoleClient.discover(redis.url))
    try:
        await console.connect()
        ours = console.state("F1")
        await _flood(publisher, 0, 10)
        await wait_until(lambda: len(ours.trades) == 10, what="the first trades")
        reading.clear()  # it stops reading while far more than the cap (200 entries) is written
        await asyncio.sleep(0.05)  # (whatever read was under way has returned)
        await _flood(publisher, 10, 2000)
        await wait_until(lambda: not publisher._queue, what="all written")
        reading.set()
        await wait_until(
            lambda: [t.trade_id for t in ours.trades] == [t.trade_id for t in theirs.trades],
            what="caught up through a snapshot",
        )
        assert ours.trades[-1].trade_id == "T2009"
    finally:
        await console.close()


async def test_a_host_that_comes_later_is_not_mixed_into_a_running_console(
    publisher: RedisPublisher, redis: RedisServer, tmp_path: Path
) -> None:
    console = RedisConsoleClient(redis.url, await RedisConsoleClient.discover(redis.url))
    config = load_config_file(publisher.manager.config_path)
    later_config = config.model_copy(
        update={"accounts": [config.accounts[0].model_copy(update={"account_id": "L1"})]}
    )
    later = TradingManager(later_config, config_path=publisher.manager.config_path, data_dir=tmp_path)
    later_pub = RedisPublisher(
        later, ControlServer(later, tmp_path / "c.sock"), PublishConfig(url=redis.url, host="later")
    )
    try:
        await console.connect()
        assert await later_pub.claim()
        later_pub.start()
        await wait_until(lambda: later_pub.up)
        await wait_until(lambda: "L1" in console._unseen, what="the new host's account seen")
        assert console.account_ids == ["F1"]  # the screens were laid out for F1 alone
        assert [a for a, _, _ in await RedisConsoleClient.discover(redis.url)] == ["F1", "L1"]
    finally:
        await later_pub.stop()
        await console.close()


async def test_a_hostile_snapshot_is_refused_with_words_and_costs_the_other_accounts_nothing(
    publisher: RedisPublisher, redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Another writer's snapshots (not a console_state, a run that is no number, no stream id)
    leave their accounts waiting, said in the log; the console does not drop its link for them
    (every account would show "link down", again at every reconnect)."""
    from core.redis_link import HostBeat, connect, encode_beat, encode_message, host_key, snapshot_key

    theirs = publisher.manager.aggregator.states["F1"]
    raw = connect(redis.url)
    try:
        accounts = [("EVIL1", "sim"), ("EVIL2", "sim"), ("EVIL3", "sim"), ("EVIL4", "sim")]
        beat = HostBeat(host="evil", run=7, pid=1, machine="elsewhere", accounts=accounts, started=0.0)
        await raw.set(host_key("evil"), encode_beat(beat), px=60_000)
        log_line = LogEntry(account_id="EVIL1", datetime=now(), level="INFO", message="not a state")
        not_a_state = encode_message("log", log_line, account_id="EVIL1")
        await raw.hset(snapshot_key("EVIL1"), mapping={"m": not_a_state, "id": "0-0", "run": "7"})
        await raw.hset(snapshot_key("EVIL2"), mapping={"m": not_a_state, "id": "0-0", "run": "seven"})
        await raw.hset(snapshot_key("EVIL3"), mapping={"m": not_a_state, "run": "7"})
        # a console_state, but a stream id that is none (XREAD would refuse every stream with it)
        state = ConsoleState(
            account_id="EVIL4", gateway="sim", trader=TraderStatusUpdate(status=TraderStatus.CONNECTED)
        )
        a_state = encode_message("console_state", state, account_id="EVIL4")
        await raw.hset(snapshot_key("EVIL4"), mapping={"m": a_state, "id": "next", "run": "7"})
        console = RedisConsoleClient(redis.url, await RedisConsoleClient.discover(redis.url))
        console.RETRY_SECONDS = 0.05
        try:
            await console.connect(wait=0.5)
            ours = console.state("F1")
            await _flood(publisher, 0, 50)
            await wait_until(
                lambda: [t.trade_id for t in ours.trades] == [t.trade_id for t in theirs.trades],
                what="F1's trades, whatever EVIL's snapshots hold",
            )
            await wait_until(
                lambda: all(f"EVIL{n} snapshot" in caplog.text for n in (1, 2, 3, 4)), what="each refused"
            )
            assert "link down" not in caplog.text and "link down" not in ours.status_message
        finally:
            await console.close()
    finally:
        await raw.aclose()


async def test_a_heartbeat_never_overwrites_another_daemons_of_the_same_host_name(
    publisher: RedisPublisher, redis: RedisServer
) -> None:
    """Another daemon took the host name while this one's keys had lapsed (the same name on
    two machines): this one stops publishing, naming it, instead of overwriting its heartbeat
    (both would then publish the same accounts and read one command group), and its stop
    leaves the other's heartbeat alone."""
    from core.redis_link import HostBeat, connect, decode_beat, encode_beat, host_key

    raw = connect(redis.url)
    try:
        other = HostBeat(
            host="flood", run=publisher.run + 1, pid=1, machine="elsewhere", accounts=[], started=0.0
        )
        await raw.set(host_key("flood"), encode_beat(other), px=60_000)
        await wait_until(lambda: publisher.taken, what="publishing stopped")
        assert "flood" in publisher.taken and "elsewhere" in publisher.taken, publisher.taken
        assert decode_beat(await raw.get(host_key("flood"))).run == other.run
        await publisher.stop()
        assert decode_beat(await raw.get(host_key("flood"))).run == other.run
    finally:
        await raw.aclose()


async def test_an_unreadable_stream_entry_is_said_once_and_skipped(
    publisher: RedisPublisher, redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Another writer's entry in an account's stream is refused once, in the log, and passed
    over; the entries after it are folded in as usual (a real entry lost would show as a gap
    in seq: from the next snapshot). It used to send the console back to the snapshot before
    it, to read it again, in a loop as fast as Redis answers, until a later snapshot."""
    from core.redis_link import connect, stream_key

    theirs = publisher.manager.aggregator.states["F1"]
    console = RedisConsoleClient(redis.url, await RedisConsoleClient.discover(redis.url))
    raw = connect(redis.url)
    try:
        await console.connect()
        ours = console.state("F1")
        await _flood(publisher, 0, 5)
        await wait_until(lambda: len(ours.trades) == 5, what="the first trades")
        await raw.xadd(stream_key("F1"), {"m": b"\xff not json"})
        await wait_until(lambda: "unreadable" in caplog.text, what="the entry refused")
        await _flood(publisher, 5, 20)
        await wait_until(
            lambda: [t.trade_id for t in ours.trades] == [t.trade_id for t in theirs.trades],
            what="the trades after it",
        )
        assert caplog.text.count("unreadable") == 1, caplog.text
    finally:
        await raw.aclose()
        await console.close()


async def test_a_command_with_no_reply_stream_is_dropped_and_acknowledged(
    publisher: RedisPublisher, redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Dropped, it is also acknowledged: left pending, every such command would stay in the
    group's pending list for the daemon's whole run (the stream's cap does not trim it)."""
    from core.redis_link import COMMAND_GROUP, command_key, connect

    raw = connect(redis.url)
    try:
        await raw.xadd(command_key("flood"), {"m": b"{}", "deadline": b"0", "reply": b"not a reply key"})
        await wait_until(lambda: "no usable reply stream" in caplog.text, what="the command dropped")

        async def pending() -> int:
            return (await raw.xpending(command_key("flood"), COMMAND_GROUP))["pending"]

        deadline = asyncio.get_running_loop().time() + 10
        while await pending() and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        assert await pending() == 0
    finally:
        await raw.aclose()
