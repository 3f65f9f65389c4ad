"""Hostile clients on the control socket (issue 14): one that never reads its replies, a flood
of history requests, twenty consoles at once; and strings from a trader that reach the
daemon's stdout. Real traders, the manager and its control server in this process."""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass

import pytest

from config import paths as cfg_paths
from config.paths import account_state_dir
from core import control as control_module
from core import manager as manager_module
from core.aggregator import AccountState, Change, DataAggregator
from core.client import RemoteConsoleClient
from core.control import MAX_IN_FLIGHT, ControlServer
from core.daemon import MAX_LINE_CHARS, StatusPrinter
from core.manager import TradingManager
from core.models import (
    Direction,
    LogEntry,
    Offset,
    Order,
    OrderRequest,
    OrderType,
    Status,
    StrategyTrigger,
    Trade,
    TraderStatus,
    now,
)
from core.protocol import (
    Empty,
    HistoryRequest,
    Link,
    Message,
    NotJson,
    SchemaError,
    TruncatedFrame,
    decode_payload,
)
from storage.database import AccountDatabase, database_path
from tests.conftest import CoreEnv, kept_log, sim_account, wait_until
from tests.wire_fuzz import Impostor

ACCOUNTS = sim_account("A1", "m2705.DCE, rb2705.SHFE", seed=4, rate=20) + sim_account(
    "A2", "au2612.SHFE, ag2612.SHFE", seed=5, rate=20
)
STORED_ORDERS = 3000  # A1's history: each reply to 'orders' of them is about 600 KB


@dataclass
class Core:
    manager: TradingManager
    control: ControlServer
    path: str
    ticks: dict[str, int]  # ticks folded in so far, by account

    def other_links(self, *mine: Link) -> int:
        return len(self.control._links) - len(mine)


def _stored_order(n: int) -> Order:
    return Order(
        account_id="A1",
        order_id=f"LOCAL.old-{n}",
        vt_symbol="m2705.DCE",
        direction=Direction.LONG,
        offset=Offset.OPEN,
        type=OrderType.LIMIT,
        price=3000.0,
        volume=1,
        status=Status.REJECTED,
        datetime=now(),
        status_msg="risk: " + "r" * 100,
    )


@pytest.fixture
async def core(core_env: CoreEnv) -> AsyncIterator[Core]:
    config = core_env.write_config(ACCOUNTS)
    core_env.data_dir.mkdir(parents=True, exist_ok=True)
    with AccountDatabase(database_path(core_env.data_dir, "A1")) as db:
        for n in range(STORED_ORDERS):
            db.save_order(_stored_order(n))
    mgr = TradingManager(config, config_path=core_env.config_path, data_dir=core_env.data_dir)
    path = cfg_paths.control_socket_path(mgr.sock_dir)
    await mgr.start()
    control = ControlServer(mgr, path)
    await control.start()
    ticks = {"A1": 0, "A2": 0}

    def count(change: Change) -> None:
        if change.kind == "tick":
            ticks[change.account_id] += 1

    mgr.aggregator.subscribe(count)
    try:
        await wait_until(
            lambda: all(mgr.state(a).status is TraderStatus.CONNECTED for a in ticks) and all(ticks.values()),
            timeout=60,
            what="both accounts streaming",
        )
        yield Core(mgr, control, str(path), ticks)
    finally:
        await control.stop()
        await mgr.stop()


@pytest.fixture
def control_log() -> Iterator[list[str]]:
    yield from kept_log(control_module.log, logging.WARNING)


@pytest.fixture
def manager_log() -> Iterator[list[str]]:
    yield from kept_log(manager_module.log, logging.ERROR)


async def _tick_rates(c: Core, seconds: float) -> dict[str, float]:
    """Ticks per second of each account over the next ``seconds``, as the manager folds them in."""
    before, started = dict(c.ticks), time.monotonic()
    await asyncio.sleep(seconds)  # a measuring window, not a wait for something to happen
    spent = time.monotonic() - started
    return {a: (c.ticks[a] - before[a]) / spent for a in before}


async def _raw_client(c: Core, account_id: str = "A1") -> Link:
    """A client of our own on the control socket, once the server has taken it in."""
    before = len(c.control._links)
    reader, writer = await asyncio.open_unix_connection(c.path)
    await wait_until(lambda: len(c.control._links) > before, what="the server taking the client in")
    return Link(reader, writer, account_id=account_id)


def _hang_up(link: Link) -> None:
    link.writer.transport.abort()  # not close(): that would wait to send what the server left unread


def _flood(link: Link, make: Callable[[int], tuple[str, object]]) -> asyncio.Task[int]:
    """Send requests for as long as the server reads them; the task's result: how many."""

    async def run() -> int:
        n = 0
        try:
            while True:
                n += 1
                msg_type, data = make(n)
                link.send_nowait(msg_type, data, n)  # type: ignore[arg-type]
                await link.writer.drain()  # blocks once the server stops reading us
        except ConnectionError:  # the server hung up on us
            return n

    return asyncio.create_task(run())


HISTORY = HistoryRequest(kind="orders", limit=STORED_ORDERS)


async def test_a_client_that_never_reads_costs_only_its_own_connection(
    core: Core, control_log: list[str]
) -> None:
    c = core
    watcher = RemoteConsoleClient(c.path, [("A1", "sim"), ("A2", "sim")])
    await watcher.connect()
    try:
        await wait_until(
            lambda: watcher.state("A2").status is TraderStatus.CONNECTED, what="a console attached"
        )
        base = await _tick_rates(c, 2.0)
        before = set(c.control._links)
        hog = await _raw_client(c)
        (theirs,) = set(c.control._links) - before  # the server's end of the hog's connection
        flood = _flood(hog, lambda n: ("history_req", HISTORY) if n % 2 else ("status_req", Empty()))
        worst = {"backlog": 0, "tasks": 0}

        def cut_off() -> bool:
            worst["backlog"] = max(worst["backlog"], theirs.backlog)
            worst["tasks"] = max(worst["tasks"], len(c.control._tasks))
            return theirs not in c.control._links

        await wait_until(cut_off, timeout=60, what="the client that never reads cut off")
        await asyncio.wait_for(flood, 10)  # its writes fail: the server hung up
        during = await _tick_rates(c, 2.0)
        _hang_up(hog)
        assert before <= c.control._links, "the watching console was never cut off"
    finally:
        await watcher.close()
    # it cost a bounded backlog (the limit and one reply) and a few requests in flight
    assert worst["backlog"] <= control_module.MAX_CONSOLE_BACKLOG + 2 * 1024 * 1024, worst
    assert worst["tasks"] <= MAX_IN_FLIGHT + 2, worst
    assert any("unread for" in m and "disconnected" in m for m in control_log), control_log
    for account in ("A1", "A2"):  # live data went on
        assert during[account] >= base[account] / 2, (base, during)


async def test_a_flood_of_history_requests_does_not_starve_live_data(core: Core) -> None:
    """Each of three clients floods A1 with history requests and reads every reply: A1's own
    ticks and A2's go on at (a generous share of) their rate without the flood."""
    c = core
    base = await _tick_rates(c, 3.0)
    clients = [await _raw_client(c) for _ in range(3)]
    answered = [0]

    async def read(link: Link) -> None:
        try:
            while True:
                msg = await link.recv()
                if msg.type == "reply":
                    assert msg.data.ok, msg.data.error
                    answered[0] += 1
        except (ConnectionError, TruncatedFrame):  # we hang up at the end, in the middle of a reply
            pass

    readers = [asyncio.create_task(read(link)) for link in clients]
    floods = [_flood(link, lambda n: ("history_req", HISTORY)) for link in clients]
    await wait_until(lambda: answered[0] >= 3, timeout=30, what="the flood answered")
    during = await _tick_rates(c, 3.0)
    for link in clients:
        _hang_up(link)  # its flood and reader end on it
    await asyncio.wait_for(asyncio.gather(*floods, *readers), 10)
    assert answered[0] >= 6, "the history requests were answered, in turn"
    for account in ("A1", "A2"):
        assert during[account] >= base[account] / 2, (base, during)
    assert c.manager.state("A1").status is TraderStatus.CONNECTED  # never killed as hung
    assert c.manager.state("A1").restarts == 0


async def test_twenty_consoles_attached_while_trading_and_one_that_stops_reading(core: Core) -> None:
    c = core
    consoles = [RemoteConsoleClient(c.path, [("A1", "sim"), ("A2", "sim")]) for _ in range(20)]
    for console in consoles:
        console.RETRY_SECONDS = 0.1
        await console.connect()
    try:
        await wait_until(
            lambda: all(k.state(a).ticks for k in consoles for a in ("A1", "A2")),
            timeout=60,
            what="twenty consoles mirroring both accounts",
        )
        stuck = await _raw_client(c)
        stuck.send_nowait("attach", Empty(), 1)
        flood = _flood(stuck, lambda n: ("history_req", HISTORY))
        orders: list[str] = []
        trader = consoles[0]
        for n in range(10):  # trading goes on, from one of the consoles, while it stops reading
            tick = trader.state("A2").ticks["ag2612.SHFE"]
            req = OrderRequest(
                vt_symbol="ag2612.SHFE",
                direction=Direction.LONG if n % 2 == 0 else Direction.SHORT,
                offset=Offset.OPEN if n % 2 == 0 else Offset.CLOSE,
                price=tick.limit_up if n % 2 == 0 else tick.limit_down,
                volume=1 + n // 2,  # each open and its close unlike the others (the duplicate rule)
            )
            reply = await trader.send_order("A2", req)
            assert reply.ok, reply.error
            orders.append(reply.result["order_id"])
        await wait_until(
            lambda: c.other_links() == 20, timeout=60, what="the one that stopped reading cut off"
        )
        await asyncio.wait_for(flood, 10)
        _hang_up(stuck)
        # every console saw every fill, and still streams
        await wait_until(
            lambda: all(
                all(
                    o in k.state("A2").orders and k.state("A2").orders[o].status is Status.ALLTRADED
                    for o in orders
                )
                for k in consoles
            ),
            timeout=30,
            what="every console seeing every fill",
        )
        seen = [dict(k.state("A1").ticks) for k in consoles]
        await wait_until(
            lambda: all(k.state("A1").ticks != s for k, s in zip(consoles, seen, strict=True)),
            what="every console still streaming",
        )
        assert all(k.attached for k in consoles)
    finally:
        for console in consoles:
            await console.close()


async def test_an_attached_console_that_stops_reading_and_asks_nothing_is_cut_off(
    core: Core, monkeypatch: pytest.MonkeyPatch, control_log: list[str]
) -> None:
    """Such a console is never in the read loop's way (it sends nothing): the stream itself
    hangs up on it once it has stayed behind too long, not only 16 MB later."""
    c = core
    monkeypatch.setattr(control_module, "READ_PAUSE_BYTES", 32 * 1024)  # the quotes reach it in seconds
    monkeypatch.setattr(control_module, "MAX_STALL_SECONDS", 1.0)
    silent = await _raw_client(c)
    silent.send_nowait("attach", Empty(), 1)
    await wait_until(
        lambda: c.other_links() == 0, timeout=60, what="the console that stopped reading cut off"
    )
    _hang_up(silent)
    assert any("unread for" in m for m in control_log), control_log
    assert not c.manager.aggregator._taps, "its stream is gone with it"
    client = RemoteConsoleClient(c.path, [("A1", "sim"), ("A2", "sim")])  # and the next one attaches
    await client.connect()
    try:
        await wait_until(
            lambda: client.state("A1").ticks and client.state("A2").ticks, what="a console streaming"
        )
    finally:
        await client.close()


async def test_connections_past_the_limit_are_refused_and_the_rest_served(
    core: Core, control_log: list[str]
) -> None:
    """A script that opens connection after connection must not take every file the core has
    (its traders' sockets need them too)."""
    c = core
    held = [await _raw_client(c) for _ in range(control_module.MAX_CLIENTS)]
    reader, writer = await asyncio.open_unix_connection(c.path)
    assert await asyncio.wait_for(reader.read(), 10) == b"", "one past the limit is hung up on"
    writer.close()
    assert any("clients already connected" in m for m in control_log), control_log
    _hang_up(held.pop())
    await wait_until(lambda: len(c.control._links) < control_module.MAX_CLIENTS, what="a place free")
    again = await _raw_client(c)
    again.send_nowait("status_req", Empty(), 1)
    reply = await asyncio.wait_for(again.recv(), 10)
    assert reply.type == "reply" and reply.data.ok, reply.data
    for link in [*held, again]:
        _hang_up(link)
    assert c.manager.state("A1").status is TraderStatus.CONNECTED


async def test_rows_too_large_from_whatever_registers_for_an_account_are_not_kept(
    core: Core, manager_log: list[str]
) -> None:
    """The account's state keeps hundreds of orders, trades, triggers and log lines: from a
    process that registered for the account (A2's trader stopped, one of ours in its place),
    one over MAX_ROW_BYTES is left out (a log line is cut), so they cannot fill the manager."""
    c = core
    assert (await c.manager.stop_trader("A2")).ok
    socket_path = cfg_paths.trader_socket_path(c.manager.sock_dir, "A2")
    impostor = await Impostor.connect(socket_path, account_state_dir(c.manager.data_dir, "A2"), "A2")
    fake = impostor.link
    identity = c.manager.proxies["A2"].account.venue_identity()
    fake.send_nowait("register", impostor.info("A2", c.manager.data_dir, c.manager.config_path, identity))
    state = c.manager.state("A2")
    try:
        await wait_until(lambda: c.manager.proxies["A2"].link is not None, what="ours registered for A2")
        await _send_rows(fake, state)
    finally:
        await impostor.stop()
    assert "big" not in state.orders
    entry = state.logs[-1]
    assert entry.message.startswith("mmm") and entry.message.endswith("(99000 more characters)")
    assert any("left out a 'order' of" in m for m in manager_log), manager_log


async def _send_rows(fake: Link, state: AccountState) -> None:

    def order(order_id: str, status_msg: str) -> Order:
        return Order(
            account_id="A2",
            order_id=order_id,
            vt_symbol="au2612.SHFE",
            direction=Direction.LONG,
            offset=Offset.OPEN,
            type=OrderType.LIMIT,
            price=900.0,
            volume=1,
            status=Status.REJECTED,
            datetime=now(),
            status_msg=status_msg,
        )

    fake.send_nowait("order", order("big", "r" * 100_000))
    fake.send_nowait("log", LogEntry(account_id="A2", datetime=now(), level="ERROR", message="m" * 100_000))
    fake.send_nowait("order", order("small", "refused"))
    await wait_until(lambda: "small" in state.orders, what="the ordinary order kept")


# ---------------------------------------------------------------- the daemon's stdout

FORGED = "\n14:00:00 A2     ORDER 1 ALLTRADED BUY OPEN au2612.SHFE 100/100 @ 1"


def _printed(messages: list[Message]) -> tuple[list[str], int]:
    aggregator = DataAggregator()
    aggregator.add_account("A1", "sim")
    out = io.StringIO()
    printer = StatusPrinter(aggregator, out)
    calls = [0]
    line = printer.line

    def counting(account_id: str, text: str) -> None:
        calls[0] += 1
        line(account_id, text)

    printer.line = counting  # type: ignore[method-assign]
    aggregator.subscribe(printer)
    for msg in messages:
        aggregator.apply("A1", msg)
    return out.getvalue().splitlines(), calls[0]


def test_what_a_trader_sends_never_forges_a_daemon_output_line() -> None:
    order = Order(
        account_id="A1",
        order_id="1\r\n14:00:00 A2 FILL",
        vt_symbol="au2612.SHFE" + FORGED,
        direction=Direction.LONG,
        offset=Offset.OPEN,
        type=OrderType.LIMIT,
        price=1.0,
        volume=1,
        status=Status.REJECTED,
        datetime=now(),
        status_msg="\x1b[2J\x1b[Hcleared" + "\u2028" + "x" * 100_000,
    )
    trade = Trade(
        account_id="A1",
        trade_id="t1",
        order_id="1",
        vt_symbol="au2612.SHFE\x85next",
        direction=Direction.LONG,
        offset=Offset.OPEN,
        price=1.0,
        volume=1,
        datetime=now(),
        reference="grid" + FORGED,
    )
    trigger = StrategyTrigger(
        account_id="A1",
        instance="g\n1",
        vt_symbol="au2612.SHFE",
        condition="c\r2",
        price=1.0,
        action="a\x003",
        result="r\u20294",
        datetime=now(),
    )
    entry = LogEntry(account_id="A1", datetime=now(), level="ERROR", message="boom" + FORGED * 1000)
    lines, calls = _printed(
        [
            Message.new(type="order", account_id="A1", data=order),
            Message.new(type="trade", account_id="A1", data=trade),
            Message.new(type="trigger", account_id="A1", data=trigger),
            Message.new(type="log", account_id="A1", data=entry),
        ]
    )
    assert calls == 4 and len(lines) == 4, lines  # one printed line per status line, none forged
    for line in lines:
        assert line.isprintable() and len(line) < MAX_LINE_CHARS + 100, line
        assert line.split()[1] == "A1"
    assert "\\n14:00:00 A2" in lines[0] and "\\x1b[2J" in lines[0] and "more characters" in lines[0]
    assert "\\x85next" in lines[1] and "grid\\n14:00:00" in lines[1]
    assert "g\\n1" in lines[2] and "\\x00" in lines[2] and "\\u2029" in lines[2]
    assert lines[3].endswith("more characters)")


# ---------------------------------------------------------------- decoding

BAD_UTF8 = [b'"\xff\xfe"', b'"\xc3\x28"', b'"\xed\xa0\x80"', b'"\x80"']


@pytest.mark.parametrize("raw", BAD_UTF8)
def test_a_string_of_invalid_utf8_is_refused_not_raised(raw: bytes) -> None:
    """msgspec raises UnicodeDecodeError (not a DecodeError) for such a string: it once went
    up through a trader's link and cost the connection (found by tests/test_wire_fuzz.py)."""
    in_data = b'{"type": "cancel_req", "req_id": 9, "data": {"order_id": ' + raw + b"}}"
    with pytest.raises(SchemaError) as refused:
        decode_payload(in_data)
    assert refused.value.req_id == 9 and "UTF-8" in str(refused.value)  # answered, with the reason
    in_envelope = b'{"type": "status_req", "account_id": ' + raw + b', "data": {}}'
    with pytest.raises(NotJson, match="UTF-8"):
        decode_payload(in_envelope)
