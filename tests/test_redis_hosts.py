"""Daemons on several hosts publish over Redis Streams; one console attaches to all of them.

Every test runs a real ``redis-server`` (tests/redis_server.py) and real daemons
(``qtrader-tui --no-ui`` with ``publish:``), each with its own data and socket directory as
if on its own machine. The console is ``RedisConsoleClient``; a daemon's own picture is read
over its control socket (``RemoteConsoleClient``), its record from its account databases.
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from config import paths as cfg_paths
from core.client import RemoteConsoleClient
from core.models import Direction, Offset, OrderRequest, TraderStatus
from core.redis_client import RedisConsoleClient
from core.redis_link import COMMAND_GROUP, command_key, connect, encode_message, reply_key
from storage.database import database_path
from tests.conftest import CoreEnv, _kill_leftover_traders, sim_account, wait_until
from tests.redis_server import RedisServer
from tests.test_daemon import Daemon

pytestmark = pytest.mark.timeout(120)

SECRET = "s3cr3t-Passw0rd-never-in-redis"
REDIS_PASSWORD = "trading-user-pw-never-in-redis"
WATCH_PASSWORD = "watch-user-pw"
# the README's two ACL lines (a trading user for daemons and consoles, a watch-only user)
TRADING_ACL = (
    f"user qtrader on >{REDIS_PASSWORD} resetkeys ~qtrader:* resetchannels "
    "-@all +@read +@write +@stream +@keyspace +@scripting +@connection -@dangerous"
)
WATCH_ACL = f"user qtwatch on >{WATCH_PASSWORD} resetkeys ~qtrader:* resetchannels -@all +@read +@connection -@dangerous"
DISABLED_CTP = """
  - account_id: REAL1
    gateway: ctp
    enabled: false
    ctp: {userid: "u1", password: "${QT_TEST_SECRET}", brokerid: "9999",
          td_address: "tcp://127.0.0.1:1", md_address: "tcp://127.0.0.1:2", auth_code: "${QT_TEST_SECRET}"}
"""


class Host:
    """One daemon 'on its own machine': own data, socket directory and config."""

    def __init__(self, name: str, accounts_yaml: str, url: str, publish_extra: str = "") -> None:
        self.name = name
        root = Path(tempfile.mkdtemp(prefix="qt-"))
        self.env = CoreEnv(
            root=root, data_dir=root / "data", sock_dir=root / "s", config_path=root / "config.yaml"
        )
        self.config = self.env.write_config(
            accounts_yaml,
            extra=f"publish: {{url: '{url}', host: {name}, snapshot_interval: 0.5{publish_extra}}}\n",
        )
        self.daemon: Daemon | None = None

    def start(self) -> Daemon:
        self.daemon = Daemon(self.env)
        return self.daemon

    @property
    def control_path(self) -> Path:
        return cfg_paths.control_socket_path(cfg_paths.socket_dir(self.config))

    def own_client(self) -> RemoteConsoleClient:
        """The daemon's own picture, over its control socket."""
        return RemoteConsoleClient(
            self.control_path, [(a.account_id, a.gateway) for a in self.config.accounts]
        )

    def order_ids_in_db(self, account_id: str) -> set[str]:
        with sqlite3.connect(database_path(self.env.data_dir, account_id)) as conn:
            return {row[0] for row in conn.execute("SELECT order_id FROM orders")}

    def close(self) -> None:
        if self.daemon is not None:
            self.daemon.kill()
        _kill_leftover_traders(self.env.data_dir)
        shutil.rmtree(self.env.root, ignore_errors=True)


@pytest.fixture
def make_redis() -> Iterator[Callable[..., RedisServer]]:
    servers: list[RedisServer] = []

    def make(**kwargs: object) -> RedisServer:
        try:
            server = RedisServer(**kwargs)  # type: ignore[arg-type]
        except RuntimeError as exc:
            pytest.fail(str(exc))
        servers.append(server)
        server.start()
        return server

    yield make
    for server in servers:
        server.close()


@pytest.fixture
def hosts() -> Iterator[list[Host]]:
    made: list[Host] = []
    yield made
    for host in made:
        host.close()


@pytest.fixture
async def clients() -> AsyncIterator[list[RedisConsoleClient | RemoteConsoleClient]]:
    made: list[RedisConsoleClient | RemoteConsoleClient] = []
    yield made
    for client in made:
        await client.close()


def _buy(
    client: RedisConsoleClient | RemoteConsoleClient,
    account_id: str,
    vt_symbol: str,
    *,
    fill: bool,
    volume: int = 1,
) -> OrderRequest:
    tick = client.state(account_id).ticks[vt_symbol]
    return OrderRequest(
        vt_symbol=vt_symbol,
        direction=Direction.LONG,
        offset=Offset.OPEN,
        price=tick.limit_up if fill else tick.limit_down,
        volume=volume,  # apart from the last order's: the duplicate rule refuses a repeat within 1 s
    )


def _live(client: RedisConsoleClient | RemoteConsoleClient, account_id: str) -> bool:
    state = client.state(account_id)
    return state.status is TraderStatus.CONNECTED and state.info is not None and bool(state.ticks)


def _picture(client: RedisConsoleClient | RemoteConsoleClient, account_id: str) -> tuple[object, ...]:
    """What must be the same seen from the console and from the daemon itself."""
    state = client.state(account_id)
    return (
        state.status,
        state.pid,
        state.info.trading_state if state.info else None,
        {key: (p.volume, p.frozen) for key, p in state.positions.items()},
        {oid: (o.status, o.traded) for oid, o in state.orders.items()},
        [t.trade_id for t in state.trades],
        set(state.contracts),
    )


async def test_one_console_trades_on_three_hosts_through_a_redis_restart_and_a_dead_host(
    make_redis: Callable[..., RedisServer],
    hosts: list[Host],
    clients: list[RedisConsoleClient | RemoteConsoleClient],
) -> None:
    redis = make_redis()
    symbols = {"A1": "m2705.DCE", "A2": "rb2705.SHFE", "A3": "au2612.SHFE"}
    for i, (account_id, symbol) in enumerate(symbols.items(), start=1):
        host = Host(f"h{i}", sim_account(account_id, symbol, seed=i), redis.url)
        hosts.append(host)
        host.start()
    for host in hosts:
        assert host.daemon is not None
        await asyncio.to_thread(host.daemon.wait_for_line, "REDIS publishing 1 accounts")
    found = await RedisConsoleClient.discover(redis.url)
    assert found == [("A1", "sim", "h1"), ("A2", "sim", "h2"), ("A3", "sim", "h3")]
    console = RedisConsoleClient(redis.url, found)
    console.RETRY_SECONDS = 0.2
    clients.append(console)
    await console.connect()
    own = {}
    for host in hosts:
        own[host.config.accounts[0].account_id] = client = host.own_client()
        clients.append(client)
        await client.connect()
    await wait_until(lambda: all(_live(console, a) for a in symbols), 30, "every account live in the console")
    assert [console.host_of(a) for a in symbols] == ["h1", "h2", "h3"]

    acked: dict[str, set[str]] = {a: set() for a in symbols}
    for account_id, symbol in symbols.items():
        for fill in (True, False):
            reply = await console.send_order(account_id, _buy(console, account_id, symbol, fill=fill))
            assert reply.ok, reply.error
            acked[account_id].add(reply.result["order_id"])
    for account_id in symbols:
        await wait_until(
            lambda a=account_id: acked[a] <= set(console.state(a).orders) and console.state(a).positions,
            what=f"{account_id}'s orders and position in the console",
        )
        await wait_until(
            lambda a=account_id: _picture(console, a) == _picture(own[a], a),
            what=f"{account_id}: the console's state equals its daemon's",
        )

    history = await console.history("A1", "orders")  # from the account's database, over Redis
    assert history.ok and acked["A1"] <= {o.order_id for o in history.result}

    # Redis goes away: the daemons trade on; the console says "link down" and sends nothing
    redis.stop()
    await wait_until(
        lambda: all(console.state(a).status_message.startswith("link down") for a in symbols),
        15,
        "link down on every account",
    )
    refused = await console.send_order("A1", _buy(own["A1"], "A1", symbols["A1"], fill=True))
    assert not refused.ok and "link down" in refused.error and "nothing was sent" in refused.error
    during = await own["A2"].send_order("A2", _buy(own["A2"], "A2", symbols["A2"], fill=True, volume=2))
    assert during.ok, during.error  # trading never waits for Redis
    acked["A2"].add(during.result["order_id"])

    # back (empty: no persistence): publishing resumes from fresh snapshots, the console catches up
    redis.start()
    await wait_until(
        lambda: (
            all(_live(console, a) for a in symbols)
            and during.result["order_id"] in console.state("A2").orders
        ),
        30,
        "the console caught up after the Redis restart",
    )
    for host in hosts:  # each daemon said so, once, and went on
        assert host.daemon is not None
        await asyncio.to_thread(host.daemon.wait_for_line, "REDIS publishing 1 accounts", 2)
        assert sum("REDIS link down" in line for line in host.daemon.lines) == 1
    for account_id, symbol in symbols.items():
        reply = await console.send_order(account_id, _buy(console, account_id, symbol, fill=True, volume=3))
        assert reply.ok, reply.error
        acked[account_id].add(reply.result["order_id"])
    for account_id in symbols:
        await wait_until(
            lambda a=account_id: _picture(console, a) == _picture(own[a], a),
            what=f"{account_id}: the console's state equals its daemon's after the restart",
        )

    # a host dies: its account shows host down after the heartbeat lapses; commands are refused
    dead = hosts[2]
    assert dead.daemon is not None
    dead.daemon.proc.kill()
    dead.daemon.proc.wait()
    await wait_until(
        lambda: console.state("A3").status_message.startswith("host down: h3"), 15, "A3 host down"
    )
    assert console.state("A3").status is TraderStatus.DISCONNECTED
    gone = await console.send_order("A3", _buy(console, "A3", symbols["A3"], fill=True))
    assert not gone.ok and gone.error.startswith("host down: h3") and "nothing was sent" in gone.error
    assert _live(console, "A1") and _live(console, "A2")  # the other hosts carry on

    # Redis away and back again: the dead host is still named as down, not left at "link down"
    redis.stop()
    await wait_until(lambda: console.state("A3").status_message.startswith("link down"), 15, "A3 link down")
    redis.start()
    await wait_until(
        lambda: (
            _live(console, "A1")
            and _live(console, "A2")
            and console.state("A3").status_message.startswith("host down: h3")
        ),
        30,
        "A3 host down again once Redis is back",
    )

    # every acknowledged order is in its account's database, and nothing else: none ran twice
    for host in hosts:
        account_id = host.config.accounts[0].account_id
        assert host.order_ids_in_db(account_id) == acked[account_id]


async def test_refusals_deadlines_watch_only_and_no_secret_in_redis(
    make_redis: Callable[..., RedisServer],
    hosts: list[Host],
    clients: list[RedisConsoleClient | RemoteConsoleClient],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    redis = make_redis(acl_lines=["user default off", TRADING_ACL, WATCH_ACL])
    monkeypatch.setenv("QT_TEST_SECRET", SECRET)
    monkeypatch.setenv("QT_REDIS_PW", REDIS_PASSWORD)
    creds = ", username: qtrader, password: '${QT_REDIS_PW}'"
    h1 = Host("h1", sim_account("A1", "m2705.DCE", seed=1) + DISABLED_CTP, redis.url, creds)
    hosts.append(h1)
    daemon = h1.start()
    await asyncio.to_thread(daemon.wait_for_line, "REDIS publishing 2 accounts")

    # the same account from another host is refused while h1 lives, naming both hosts
    other = Host("h9", sim_account("A1", "m2705.DCE", seed=2), redis.url, creds)
    hosts.append(other)
    refused = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "tui.cli", "--no-ui", "--config", str(other.env.config_path),
         "--data-dir", str(other.env.data_dir)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "account A1 is already published" in refused.stdout and "host h1" in refused.stdout
    assert "host h9 refuses" in refused.stdout
    assert not list(other.env.data_dir.glob("trading_*.db"))  # refused before any trader started

    console = RedisConsoleClient(
        redis.url,
        await RedisConsoleClient.discover(redis.url, username="qtrader", password=REDIS_PASSWORD),
        username="qtrader",
        password=REDIS_PASSWORD,
    )
    console.RETRY_SECONDS = 0.2
    clients.append(console)
    await console.connect()
    await wait_until(lambda: _live(console, "A1"), 30, "A1 live")
    placed = await console.send_order("A1", _buy(console, "A1", "m2705.DCE", fill=False))
    assert placed.ok, placed.error
    trader_pid = console.state("A1").pid
    assert trader_pid is not None  # the trader process never had the Redis password
    environ = await asyncio.to_thread(Path(f"/proc/{trader_pid}/environ").read_bytes)
    assert REDIS_PASSWORD.encode() not in environ

    # a watch-only user sees everything and can send nothing: Redis refuses, the console says so
    watcher = RedisConsoleClient(
        redis.url,
        await RedisConsoleClient.discover(redis.url, username="qtwatch", password=WATCH_PASSWORD),
        username="qtwatch",
        password=WATCH_PASSWORD,
    )
    clients.append(watcher)
    await watcher.connect()
    await wait_until(lambda: _live(watcher, "A1") and placed.result["order_id"] in watcher.state("A1").orders)
    denied = await watcher.send_order("A1", _buy(watcher, "A1", "m2705.DCE", fill=True))
    assert not denied.ok and "refused by Redis" in denied.error and "may only watch" in denied.error

    # a command past its deadline is answered "expired, not sent", and nothing is sent
    raw = connect(redis.url, username="qtrader", password=REDIS_PASSWORD)
    try:
        req = _buy(console, "A1", "m2705.DCE", fill=True)
        expired = await _raw_command(raw, "h1", "A1", req, deadline=time.time() - 1, req_id=7001)
        assert not expired.ok and expired.error.startswith("expired, not sent"), expired.error

        # a restarted daemon never runs old commands: one sent while it was down, expired by
        # the time it is back, is answered so; the ones it ran before are not run again
        daemon.proc.terminate()
        assert daemon.proc.wait(30) == 0
        # one taken by the previous run (read, never answered: it died in between) within
        # its deadline: the new run must not run it again (it may have been sent already)
        taken_reply = reply_key("test-7003")
        payload = encode_message("order_req", req, account_id="A1", req_id=7003)
        fields = {"m": payload, "deadline": repr(time.time() + 60), "reply": taken_reply}
        await raw.xadd(command_key("h1"), fields)
        got = await raw.xreadgroup(COMMAND_GROUP, "h1-previous-run", {command_key("h1"): ">"}, count=10)
        assert [e for _, entries in got for e in entries], "the previous run took it"
        pending = asyncio.create_task(
            _raw_command(raw, "h1", "A1", req, deadline=time.time() + 0.5, req_id=7002, wait=30)
        )
        await asyncio.sleep(1.0)  # past that deadline: nothing can have run it yet
        restarted = h1.start()
        late = await pending
        assert not late.ok and late.error.startswith("expired, not sent"), late.error
        await asyncio.to_thread(restarted.wait_for_line, "REDIS publishing 2 accounts")
        await wait_until(lambda: _live(console, "A1"), 30, "A1 live again in the console")
        again = await console.send_order("A1", _buy(console, "A1", "m2705.DCE", fill=False, volume=2))
        assert again.ok, again.error  # the restarted daemon answers (so it has read its stream)
        assert h1.order_ids_in_db("A1") == {placed.result["order_id"], again.result["order_id"]}
        assert not await raw.exists(taken_reply)  # never answered: never run

        # nothing secret ever reached Redis: not the account's, not Redis's own password
        everything = await _dump(raw)
        assert b"A1" in everything and b"REAL1" in everything
        assert SECRET.encode() not in everything and REDIS_PASSWORD.encode() not in everything
    finally:
        await raw.aclose()


async def _raw_command(
    raw: object,
    host: str,
    account_id: str,
    req: OrderRequest,
    *,
    deadline: float | str,
    req_id: int,
    wait: float = 15,
    ts: float | None = None,
    entry_id: str = "*",
) -> object:
    """Send a command the way a console does, with a deadline of our choosing (and its ``ts``,
    its entry id: a console's clock, the time Redis took it); its one reply."""
    import msgspec

    from core.protocol import Message
    from core.redis_link import decode_message

    key = reply_key(f"test-{req_id}")
    if ts is None:
        payload = encode_message("order_req", req, account_id=account_id, req_id=req_id)
    else:
        msg = Message.new(type="order_req", account_id=account_id, seq=0, ts=ts, req_id=req_id, data=req)
        payload = msgspec.json.encode(msg)
    fields = {
        "m": payload,
        "deadline": deadline if isinstance(deadline, str) else repr(deadline),
        "reply": key,
    }
    await raw.xadd(command_key(host), fields, id=entry_id)  # type: ignore[attr-defined]
    until = time.monotonic() + wait
    got = None
    while not got and time.monotonic() < until:  # short blocks: the client's socket timeout is 10 s
        got = await raw.xread({key: b"0-0"}, block=1000, count=10)  # type: ignore[attr-defined]
    assert got, f"no reply to command {req_id} within {wait:g} s"
    entries = got[0][1]
    assert len(entries) == 1  # exactly one reply
    return decode_message(entries[0][1][b"m"]).data


async def _dump(raw: object) -> bytes:
    """Every value of every key, as bytes."""
    out = bytearray()
    async for key in raw.scan_iter(match="*"):  # type: ignore[attr-defined]
        out += key
        kind = (await raw.type(key)).decode()  # type: ignore[attr-defined]
        if kind == "string":
            out += await raw.get(key) or b""  # type: ignore[attr-defined]
        elif kind == "hash":
            for k, v in (await raw.hgetall(key)).items():  # type: ignore[attr-defined]
                out += k + v
        elif kind == "stream":
            for _id, fields in await raw.xrange(key):  # type: ignore[attr-defined]
                for k, v in fields.items():
                    out += k + v
    return bytes(out)


async def test_a_deadline_is_kept_whatever_the_console_clock_says(
    make_redis: Callable[..., RedisServer],
    hosts: list[Host],
    clients: list[RedisConsoleClient | RemoteConsoleClient],
) -> None:
    """The deadline is the console's clock's, the daemon's clock may be hours apart: how long a
    command may wait (its deadline less its ``ts``, one clock) is held against how long it did
    wait (its entry id, Redis's clock). A deadline that is no time at all is refused."""
    redis = make_redis()
    h1 = Host("h1", sim_account("A1", "m2705.DCE", seed=1), redis.url)
    hosts.append(h1)
    daemon = h1.start()
    await asyncio.to_thread(daemon.wait_for_line, "REDIS publishing 1 accounts")
    console = RedisConsoleClient(redis.url, await RedisConsoleClient.discover(redis.url))
    clients.append(console)
    await console.connect()
    await wait_until(lambda: _live(console, "A1"), 30, "A1 live")
    req = _buy(console, "A1", "m2705.DCE", fill=False)
    raw = connect(redis.url)
    try:
        # a console an hour ahead sent it 30 s ago (its host was away): 5 s to live, long dead
        sec, usec = await raw.time()
        sent_ms = (sec * 1_000_000 + usec) // 1000 - 30_000
        ahead = time.time() + 3600
        stale = await _raw_command(
            raw, "h1", "A1", req, deadline=ahead + 5, req_id=8001, ts=ahead, entry_id=f"{sent_ms}-0"
        )
        assert not stale.ok and stale.error.startswith("expired, not sent"), stale.error
        for n, text in enumerate(["nan", "inf", "-inf"]):
            odd = await _raw_command(raw, "h1", "A1", req, deadline=text, req_id=8002 + n)
            assert not odd.ok and "deadline" in odd.error, odd.error
        # a console an hour ahead, sending now: its command is in time
        ahead = time.time() + 3600
        fresh = await _raw_command(raw, "h1", "A1", req, deadline=ahead + 5, req_id=8010, ts=ahead)
        assert fresh.ok, fresh.error
        assert h1.order_ids_in_db("A1") == {fresh.result["order_id"]}  # the others never ran
    finally:
        await raw.aclose()
