"""TqsdkGateway against a real TqApi + TqSim talking to the local fake servers (tests/fake_tq.py).

Offline and deterministic: the fake's venue time is fixed, every step waits for a condition.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tqsdk import connect as tqsdk_connect

from config.schema import TqsdkSettings
from core.manager import TradingManager
from core.models import (
    LOCAL_ORDER_PREFIX,
    Account,
    CancelRequest,
    Contract,
    Direction,
    Exchange,
    GatewayStatus,
    Offset,
    Order,
    OrderRequest,
    OrderType,
    Position,
    Status,
    Tick,
    Trade,
    TraderStatus,
)
from gateways.tqsdk import NOTIFY_LOST, NOTIFY_RESTORED, Scrubber, TqsdkGateway, Worker
from gateways.tqsdk.mapping import our_offset, tq_offset
from storage import AccountDatabase, database_path
from tests.conftest import CoreEnv, wait_until
from tests.fake_tq import FakeTq, free_port

RB = "rb2601.SHFE"
TUESDAY = "2026-01-06 09:00:01.000000"


class Recorder:
    """A GatewayListener that keeps everything, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []
        self.orders: dict[str, Order] = {}
        self.trades: list[Trade] = []
        self.positions: dict[tuple[str, Direction], Position] = {}
        self.contracts: dict[str, Contract] = {}
        self.ticks: dict[str, Tick] = {}
        self.accounts: list[Account] = []
        self.statuses: list[tuple[GatewayStatus, str]] = []
        self.logs: list[tuple[str, str]] = []
        self.fatal: list[str] = []

    def on_tick(self, tick: Tick) -> None:
        self.events.append(("tick", tick))
        self.ticks[tick.vt_symbol] = tick

    def on_order(self, order: Order) -> None:
        self.events.append(("order", order))
        self.orders[order.order_id] = order

    def on_trade(self, trade: Trade) -> None:
        self.events.append(("trade", trade))
        self.trades.append(trade)

    def on_position(self, position: Position) -> None:
        self.events.append(("position", position))
        self.positions[position.key] = position

    def on_account(self, account: Account) -> None:
        self.events.append(("account", account))
        self.accounts.append(account)

    def on_contract(self, contract: Contract) -> None:
        self.events.append(("contract", contract))
        self.contracts[contract.vt_symbol] = contract

    def on_status(self, status: GatewayStatus, message: str) -> None:
        self.events.append(("status", status))
        self.statuses.append((status, message))

    def on_log(self, level: str, message: str) -> None:
        self.logs.append((level, message))

    def on_fatal(self, message: str) -> None:
        self.fatal.append(message)

    @property
    def status(self) -> GatewayStatus | None:
        return self.statuses[-1][0] if self.statuses else None

    def status_of(self, order_id: str) -> Status | None:
        order = self.orders.get(order_id)
        return order.status if order is not None else None

    def volume(self, direction: Direction = Direction.LONG) -> float:
        pos = self.positions.get((RB, direction))
        return pos.volume if pos is not None else 0.0

    def texts(self) -> list[str]:
        return [m for _, m in self.statuses] + [m for _, m in self.logs] + self.fatal

    def since_last(self, status: GatewayStatus) -> list[tuple[str, Any]]:
        """The events after the last ``status`` up to the first CONNECTED after it."""
        marks = [i for i, (kind, value) in enumerate(self.events) if kind == "status" and value is status]
        assert marks, f"no {status} yet"
        window = self.events[marks[-1] + 1 :]
        end = next(
            i
            for i, (kind, value) in enumerate(window)
            if kind == "status" and value is GatewayStatus.CONNECTED
        )
        return window[:end]

    def connects(self) -> int:
        return sum(status is GatewayStatus.CONNECTED for status, _ in self.statuses)


def settings(fake: FakeTq, **overrides: Any) -> TqsdkSettings:
    return TqsdkSettings(
        **{
            "account_type": "tqsim",
            "auth_user": fake.user,
            "auth_password": fake.password,
            "auth_url": fake.auth_url,
            "md_url": fake.md_url,
            "init_balance": 1_000_000.0,
            **overrides,
        }
    )


def order(direction: Direction, offset: Offset, price: float, volume: float = 1) -> OrderRequest:
    return OrderRequest(vt_symbol=RB, direction=direction, offset=offset, price=price, volume=volume)


@pytest.fixture(autouse=True)
def outside_tqsdk_maintenance(monkeypatch: pytest.MonkeyPatch) -> None:
    """TqSdk words a lost connection differently, and gives up on a first connect, during its
    daily maintenance (19:00-19:30 China time): these tests run at any hour, so TqSdk's clock
    is kept out of that half hour."""
    real = tqsdk_connect._cst_now

    def cst_now() -> datetime:
        moment = real()
        return moment - timedelta(minutes=31) if moment.hour == 19 and moment.minute <= 30 else moment

    monkeypatch.setattr(tqsdk_connect, "_cst_now", cst_now)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeTq]:
    with FakeTq() as server:
        # a configuration file names secrets by variable; a trader process inherits it
        monkeypatch.setenv("QT_TEST_TQ_PASSWORD", server.password)
        yield server


@pytest.fixture
async def connected(fake: FakeTq, tmp_path: Path) -> AsyncIterator[tuple[TqsdkGateway, Recorder]]:
    rec = Recorder()
    gateway = TqsdkGateway("TQ1", settings(fake), rec, tmp_path)
    await gateway.connect()
    gateway.subscribe(RB)
    gateway.query()
    try:
        await wait_until(lambda: rec.status is GatewayStatus.CONNECTED, what="CONNECTED")
        yield gateway, rec
    finally:
        await gateway.close()
        assert not gateway.thread_alive


async def test_connected_only_after_the_initial_data(connected: tuple[TqsdkGateway, Recorder]) -> None:
    gateway, rec = connected
    kinds = [kind for kind, _ in rec.events]
    ready = kinds.index("status", kinds.index("status") + 1)  # CONNECTING, then CONNECTED
    assert rec.events[ready][1] is GatewayStatus.CONNECTED
    before = kinds[:ready]
    assert "contract" in before and "tick" in before and "account" in before
    contract = gateway.get_contract(RB)
    assert contract is not None and contract.size == 10 and contract.pricetick == 1
    tick = rec.ticks[RB]
    assert (tick.bid_price_1, tick.ask_price_1, tick.limit_up) == (3499, 3501, 3850)
    assert rec.accounts[-1].balance == 1_000_000
    assert "md_url" not in str(rec.statuses) and "/t/md/front" not in str(rec.statuses)


async def test_ticks_carry_the_levels_the_venue_reports(
    connected: tuple[TqsdkGateway, Recorder], fake: FakeTq
) -> None:
    """TqSdk's bid_price1..5 / ask_price1..5 become the tick's five levels; levels a quote does
    not have (NaN in TqSdk) are 0; a change deep in the book alone is a new tick."""
    _, rec = connected
    tick = rec.ticks[RB]
    assert tick.bids == ((3499, 10), *((0, 0),) * 4)  # the fake starts with level 1 only
    assert (tick.pre_settlement, tick.open_interest, tick.limit_down) == (3500, 1000, 3150)
    deep: dict[str, float] = {}
    for n in range(2, 6):
        deep |= {f"bid_price{n}": 3500 - n, f"bid_volume{n}": 10 * n}
        deep |= {f"ask_price{n}": 3500 + n, f"ask_volume{n}": 11 * n}
    fake.set_quote("SHFE.rb2601", **deep)
    await wait_until(lambda: rec.ticks[RB].ask_price_5 == 3505, what="five levels")
    tick = rec.ticks[RB]
    assert tick.bids == ((3499, 10), (3498, 20), (3497, 30), (3496, 40), (3495, 50))
    assert tick.asks == ((3501, 10), (3502, 22), (3503, 33), (3504, 44), (3505, 55))
    fake.set_quote("SHFE.rb2601", bid_volume3=99)  # same venue time, same top of the book
    await wait_until(lambda: rec.ticks[RB].bid_volume_3 == 99, what="the level-3 change")


async def test_place_rest_cancel_and_fill(connected: tuple[TqsdkGateway, Recorder]) -> None:
    gateway, rec = connected
    resting = gateway.send_order(order(Direction.LONG, Offset.OPEN, 3490))
    assert rec.status_of(resting) is Status.SUBMITTING  # reported before send_order returned
    await wait_until(lambda: rec.status_of(resting) is Status.NOTTRADED, what="resting order")

    gateway.cancel_order(CancelRequest(order_id=resting))
    await wait_until(lambda: rec.status_of(resting) is Status.CANCELLED, what="cancelled")
    assert rec.orders[resting].status_msg == "已撤单"

    filled = gateway.send_order(order(Direction.LONG, Offset.OPEN, 3501, volume=2))
    await wait_until(lambda: rec.status_of(filled) is Status.ALLTRADED, what="filled at the ask")
    await wait_until(lambda: rec.volume() == 2, what="long position")
    trade = next(t for t in rec.trades if t.order_id == filled)
    assert (trade.price, trade.volume, trade.offset) == (3501, 2, Offset.OPEN)
    assert trade.trade_id.startswith("20260105-")
    pos = rec.positions[(RB, Direction.LONG)]
    assert (pos.yd_volume, pos.price, pos.margin) == (0, 3501, 7000)
    await wait_until(lambda: rec.accounts[-1].margin == 7000, what="margin in the account")
    assert len({resting, filled}) == 2 and all(i.startswith("tq") for i in (resting, filled))


async def test_shfe_close_today_and_a_rejection(
    connected: tuple[TqsdkGateway, Recorder], fake: FakeTq
) -> None:
    gateway, rec = connected
    opened = gateway.send_order(order(Direction.LONG, Offset.OPEN, 3501, volume=2))
    await wait_until(lambda: rec.status_of(opened) is Status.ALLTRADED and rec.volume() == 2)

    # no splitting: a plain SHFE CLOSE goes to TqSdk as CLOSE, yesterday's lots only, and today's
    # two lots cannot cover it (the trader sends today's lots as CLOSETODAY)
    plain = gateway.send_order(order(Direction.SHORT, Offset.CLOSE, 3499, volume=2))
    await wait_until(lambda: rec.status_of(plain) is Status.REJECTED, what="plain close refused")
    assert rec.orders[plain].status_msg == "平昨仓手数不足" and rec.orders[plain].offset is Offset.CLOSE

    closed = gateway.send_order(order(Direction.SHORT, Offset.CLOSETODAY, 3499, volume=2))
    await wait_until(lambda: rec.status_of(closed) is Status.ALLTRADED, what="close-today filled")
    assert rec.orders[closed].offset is Offset.CLOSETODAY
    await wait_until(lambda: rec.volume() == 0, what="position flat (a zero row was pushed)")

    refused = gateway.send_order(order(Direction.SHORT, Offset.CLOSETODAY, 3499))
    await wait_until(lambda: rec.status_of(refused) is Status.REJECTED, what="rejected")
    assert rec.orders[refused].status_msg == "平今仓手数不足"

    market = gateway.send_order(
        OrderRequest(vt_symbol=RB, direction=Direction.LONG, type=OrderType.MARKET, volume=1)
    )
    await wait_until(lambda: rec.status_of(market) is Status.REJECTED, what="SHFE market order refused")
    assert "不支持市价单" in rec.orders[market].status_msg


async def test_shfe_close_yesterday_and_today_go_as_given(
    connected: tuple[TqsdkGateway, Recorder], fake: FakeTq, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CLOSEYESTERDAY 3 and CLOSETODAY 2 are exactly two TqSdk orders, ``CLOSE`` 3 and
    ``CLOSETODAY`` 2, and TqSim's own close rules (yesterday's lots for CLOSE) take it flat."""
    gateway, rec = connected
    opened = gateway.send_order(order(Direction.LONG, Offset.OPEN, 3501, volume=3))
    await wait_until(lambda: rec.status_of(opened) is Status.ALLTRADED and rec.volume() == 3)
    fake.set_quote("SHFE.rb2601", datetime=TUESDAY)  # the next trading day: TqSim settles
    await wait_until(lambda: rec.positions[(RB, Direction.LONG)].yd_volume == 3, what="yesterday's position")
    today = gateway.send_order(order(Direction.LONG, Offset.OPEN, 3501, volume=2))
    await wait_until(lambda: rec.status_of(today) is Status.ALLTRADED and rec.volume() == 5)

    worker = gateway._worker
    assert worker is not None and worker.api is not None
    api = worker.api
    sent: list[dict[str, Any]] = []
    insert = api.insert_order

    def recording_insert(**kwargs: Any) -> Any:  # on the TqSdk thread
        sent.append(kwargs)
        return insert(**kwargs)

    monkeypatch.setattr(api, "insert_order", recording_insert)
    known = set(rec.orders)
    yesterday = gateway.send_order(order(Direction.SHORT, Offset.CLOSEYESTERDAY, 3499, volume=3))
    today_close = gateway.send_order(order(Direction.SHORT, Offset.CLOSETODAY, 3499, volume=2))
    await wait_until(
        lambda: (
            rec.status_of(yesterday) is Status.ALLTRADED and rec.status_of(today_close) is Status.ALLTRADED
        ),
        what="both closes filled",
    )
    await wait_until(lambda: rec.volume() == 0, what="flat")

    assert [(k["order_id"], k["offset"], k["volume"]) for k in sent] == [
        (yesterday, "CLOSE", 3),
        (today_close, "CLOSETODAY", 2),
    ]
    assert set(rec.orders) - known == {yesterday, today_close}  # reported as sent: one order each
    assert (rec.orders[yesterday].offset, rec.orders[yesterday].volume) == (Offset.CLOSEYESTERDAY, 3)
    assert (rec.orders[today_close].offset, rec.orders[today_close].volume) == (Offset.CLOSETODAY, 2)
    closes = {t.order_id: (t.offset, t.volume) for t in rec.trades if t.order_id in (yesterday, today_close)}
    assert closes == {yesterday: (Offset.CLOSEYESTERDAY, 3), today_close: (Offset.CLOSETODAY, 2)}
    tq_pos = api.get_position("SHFE.rb2601")
    assert (tq_pos.pos_long_his, tq_pos.pos_long_today) == (0, 0)  # TqSim's own books


async def test_lost_md_connection_is_reported(connected: tuple[TqsdkGateway, Recorder], fake: FakeTq) -> None:
    gateway, rec = connected
    mark = len(rec.statuses)
    fake.drop_md_clients()

    def down() -> list[str]:  # from the history: a quick reconnect must not hide it
        return [m for status, m in rec.statuses[mark:] if status is GatewayStatus.DISCONNECTED]

    await wait_until(down, what="connection lost")
    assert "TqSdk reconnects" in down()[0] and "ws://127.0.0.1" in down()[0]
    assert "/t/md/front" not in down()[0]
    refused = gateway.send_order(order(Direction.LONG, Offset.OPEN, 3501))
    assert rec.status_of(refused) is Status.REJECTED


def test_offsets_as_tqsdk_spells_them() -> None:
    closes = (Offset.CLOSE, Offset.CLOSETODAY, Offset.CLOSEYESTERDAY)
    for exchange in (Exchange.SHFE, Exchange.INE):
        assert [tq_offset(o, exchange) for o in closes] == ["CLOSE", "CLOSETODAY", "CLOSE"]
    for exchange in (Exchange.DCE, Exchange.CZCE, Exchange.CFFEX, Exchange.GFEX):
        assert [tq_offset(o, exchange) for o in closes] == ["CLOSE"] * 3
    assert {tq_offset(Offset.OPEN, e) for e in Exchange} == {"OPEN"}
    # and back, for orders placed elsewhere: TqSdk's CLOSE is yesterday's on SHFE/INE only
    assert [our_offset("CLOSE", x) for x in ("SHFE", "INE", "DCE")] == [
        Offset.CLOSEYESTERDAY,
        Offset.CLOSEYESTERDAY,
        Offset.CLOSE,
    ]
    assert our_offset("CLOSETODAY", "SHFE") is Offset.CLOSETODAY


def test_scrubber_hides_secrets_and_url_paths() -> None:
    scrub = Scrubber(["s3cret-pw"])
    assert scrub("login s3cret-pw failed") == "login *** failed"
    assert (
        scrub("与 sm://host:7/cfg/dXNlcg==/czNjcmV0LXB3/x 的网络连接断开") == "与 sm://host:7 的网络连接断开"
    )
    assert scrub("user:pw at wss://user:pw@md.example.com/t/md") == "user:pw at wss://md.example.com"


async def test_unreachable_auth_retries_until_closed(tmp_path: Path) -> None:
    closed_port = free_port()
    dead = {
        "account_type": "tqsim",
        "auth_user": "someone",
        "auth_password": "Pw-not-to-be-seen-42",
        "auth_url": f"http://127.0.0.1:{closed_port}",
        "md_url": f"ws://127.0.0.1:{closed_port}/md",
    }
    rec = Recorder()
    gateway = TqsdkGateway("TQ1", TqsdkSettings(**dead), rec, tmp_path)
    await gateway.connect()
    await wait_until(lambda: rec.status is GatewayStatus.DISCONNECTED, what="first failure")
    assert "ConnectionError" in rec.statuses[-1][1] and "retry in 5 s" in rec.statuses[-1][1]
    assert gateway.thread_alive  # waiting for its next attempt, not dead
    refused = gateway.send_order(order(Direction.LONG, Offset.OPEN, 3501))
    assert rec.orders[refused].status is Status.REJECTED and "not connected" in rec.orders[refused].status_msg
    assert refused.startswith(LOCAL_ORDER_PREFIX)  # refused here: never a TqSdk id
    await gateway.close()  # interrupts the 5 s wait
    assert not gateway.thread_alive
    assert rec.statuses[-1] == (GatewayStatus.DISCONNECTED, "TqSdk closed")

    fast = TqsdkGateway("TQ1", TqsdkSettings(**dead), Recorder(), tmp_path, retry_delays=(0.05,))
    rec = fast.listener  # type: ignore[assignment]
    await fast.connect()
    failures = lambda: sum(s is GatewayStatus.DISCONNECTED for s, _ in rec.statuses)  # noqa: E731
    await wait_until(lambda: failures() >= 3, what="three attempts")
    await fast.close()
    assert not fast.thread_alive
    assert not any("Pw-not-to-be-seen-42" in text for text in rec.texts())


async def test_refused_login_is_fatal_and_secret_free(fake: FakeTq, tmp_path: Path) -> None:
    rec = Recorder()
    gateway = TqsdkGateway("TQ1", settings(fake, auth_password="Wrong-Secret-42"), rec, tmp_path)
    await gateway.connect()
    await wait_until(lambda: rec.fatal, what="on_fatal")
    assert "refused" in rec.fatal[0] and "401" in rec.fatal[0]
    await wait_until(lambda: not gateway.thread_alive, what="thread ended, no retry")
    await gateway.close()
    assert not any("Wrong-Secret-42" in text for text in rec.texts())


def tqsdk_account(account_id: str, fake: FakeTq) -> str:
    return f"""
  - account_id: {account_id}
    gateway: tqsdk
    tqsdk:
      account_type: tqsim
      auth_user: {fake.user}
      auth_password: "${{QT_TEST_TQ_PASSWORD}}"
      auth_url: {fake.auth_url}
      md_url: {fake.md_url}
    # the fake server trades at any hour: no session rule (core/sessions.py)
    risk: {{market_hours: false}}
    watchlist: [{RB}]
"""


async def test_order_through_the_manager_fills_and_is_persisted(fake: FakeTq, core_env: CoreEnv) -> None:
    config = core_env.write_config(tqsdk_account("TQ1", fake), extra="log:\n  level: DEBUG\n")
    mgr = TradingManager(config, config_path=core_env.config_path, data_dir=core_env.data_dir)
    await mgr.start()
    try:
        state = mgr.state("TQ1")
        await wait_until(
            lambda: state.status is TraderStatus.CONNECTED and RB in state.ticks,
            timeout=40,
            what="trader connected",
        )
        reply = await mgr.send_order("TQ1", order(Direction.LONG, Offset.OPEN, 3501, volume=2))
        assert reply.ok, reply.error
        order_id = reply.result["order_id"]
        await wait_until(
            lambda: order_id in state.orders and state.orders[order_id].status is Status.ALLTRADED
        )
        await wait_until(lambda: (RB, Direction.LONG) in state.positions, what="position in the aggregator")
        assert state.positions[(RB, Direction.LONG)].volume == 2
        assert sum(t.volume for t in state.trades if t.order_id == order_id) == 2
    finally:
        await mgr.stop()
    db = AccountDatabase(database_path(core_env.data_dir, "TQ1"), readonly=True)
    try:
        stored = db.load_order(order_id)
        assert stored is not None and stored.status is Status.ALLTRADED and stored.traded == 2
        assert sum(t.volume for t in db.load_trades() if t.order_id == order_id) == 2
    finally:
        db.close()
    # even at DEBUG, neither the password nor the access token reach a log
    logs = "".join(p.read_text(errors="replace") for p in core_env.data_dir.rglob("*.log"))
    assert "fill BUY" in logs or "fill LONG" in logs
    assert fake.password not in logs
    assert fake.issued_tokens and not any(token in logs for token in fake.issued_tokens)


# ---------------------------------------------------------------------- session rebuilds


class _Row(dict[str, Any]):
    """A TqSdk entity stand-in: a mapping whose keys also read as attributes."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError as exc:
            raise AttributeError(name) from exc


def _tq_order(order_id: str, *, direction: str = "BUY", price: float = 3490, left: int = 1) -> _Row:
    return _Row(
        order_id=order_id,
        exchange_id="SHFE",
        instrument_id="rb2601",
        direction=direction,
        offset="OPEN",
        volume_orign=1,
        volume_left=left,
        limit_price=price,
        price_type="LIMIT",
        time_condition="GFD",
        volume_condition="ANY",
        status="ALIVE" if left else "FINISHED",
        exchange_order_id=f"x-{order_id}",
        last_msg="",
        insert_date_time=1_767_578_400_000_000_000,
        trade_price=price,
    )


class FakeBroker:
    """A real account's books at its broker: they outlive any one TqApi session.

    ``open`` (in place of ``Worker._open``) starts a session over them; ``fail()`` makes the
    session's next ``wait_update`` raise, as a broken TqApi does; order ids in ``lose`` vanish
    from the books when the next session opens (the venue no longer knows them); ``notice``
    queues a ``TqNotify`` notice (the broker doubles as the session's ``TqNotify``).
    """

    def __init__(self) -> None:
        self.orders: dict[str, _Row] = {"ext-1": _tq_order("ext-1", direction="SELL", price=3520)}
        self.trades = {
            "t1": _Row(
                order_id="ext-0",
                exchange_id="SHFE",
                instrument_id="rb2601",
                direction="BUY",
                offset="OPEN",
                price=3500.0,
                volume=2,
                trade_date_time=1_767_578_400_000_000_000,
                commission=6.0,
            )
        }
        fields = ("pos_{}_his", "pos_{}_today", "volume_{}_frozen", "volume_{}_frozen_his")
        fields += ("position_price_{}", "position_profit_{}", "margin_{}")
        pos = {name.format(side): 0.0 for name in fields for side in ("long", "short")}
        pos.update(
            exchange_id="SHFE",
            instrument_id="rb2601",
            pos_long_today=2,
            position_price_long=3500.0,
            margin_long=7000.0,
            last_price=3500.0,
        )
        self.positions = {"SHFE.rb2601": _Row(pos)}
        self.account = _Row(
            balance=1_000_000.0,
            available=993_000.0,
            margin=7000.0,
            frozen_margin=0.0,
            frozen_commission=0.0,
            frozen_premium=0.0,
            commission=6.0,
            close_profit=0.0,
            position_profit=0.0,
            pre_balance=1_000_006.0,
        )
        self.lose: set[str] = set()
        self.sessions: list[FakeSession] = []
        self.notices: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        self._fail = threading.Event()

    def fail(self) -> None:
        self._fail.set()

    def open(self, worker: Worker) -> FakeSession:
        for order_id in self.lose:
            self.orders.pop(order_id, None)
        self._fail.clear()
        session = FakeSession(self, worker.stop, self._fail)
        self.sessions.append(session)
        worker.api = session  # type: ignore[assignment]
        worker.notify = self  # type: ignore[assignment]
        return session

    def notice(self, code: int, content: str) -> None:
        """A ``TqNotify`` notice, seen after the session's next ``wait_update``."""
        self.notices.put({"code": code, "conn_id": "td", "content": content, "level": "WARNING"})

    def get_notifies(self) -> list[dict[str, Any]]:  # TqNotify's
        out = []
        while not self.notices.empty():
            out.append(self.notices.get())
        return out

    def working(self) -> set[str]:
        return {order_id for order_id, o in self.orders.items() if o.status == "ALIVE"}


class FakeSession:
    """The part of ``TqApi`` the gateway's worker uses, over a ``FakeBroker``'s books."""

    def __init__(self, broker: FakeBroker, stop: threading.Event, fail: threading.Event) -> None:
        self.broker = broker
        self.stop = stop
        self.fail = fail
        self.closed = False

    def wait_update(self, deadline: float | None = None) -> bool:
        if self.fail.is_set():
            raise ConnectionError("broker link reset")
        self.stop.wait(min(0.01, max((deadline or 0) - time.time(), 0)))
        return False

    def insert_order(self, *, order_id: str, direction: str, limit_price: float, **_: Any) -> None:
        self.broker.orders[order_id] = _tq_order(order_id, direction=direction, price=limit_price)

    def get_order(self) -> dict[str, _Row]:
        return self.broker.orders

    def get_trade(self) -> dict[str, _Row]:
        return self.broker.trades

    def get_position(self) -> dict[str, _Row]:
        return self.broker.positions

    def get_account(self) -> _Row:
        return self.broker.account

    def close(self) -> None:
        self.closed = True


@pytest.fixture
async def on_broker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[TqsdkGateway, Recorder, FakeBroker, str]]:
    """A real-account gateway over a ``FakeBroker``, CONNECTED, with one order of ours resting
    (its id is the fourth item) next to an external one."""
    broker = FakeBroker()
    monkeypatch.setattr(Worker, "_open", lambda worker: broker.open(worker))
    account = {"account_type": "account", "broker": "B", "user": "u", "password": "p"}
    rec = Recorder()
    gateway = TqsdkGateway(
        "TQ1",
        TqsdkSettings(**account, auth_user="a", auth_password="ap"),
        rec,
        tmp_path,
        retry_delays=(0.01,),
    )
    await gateway.connect()
    try:
        await wait_until(lambda: rec.status is GatewayStatus.CONNECTED, what="first CONNECTED")
        resting = gateway.send_order(order(Direction.LONG, Offset.OPEN, 3490))
        await wait_until(lambda: rec.status_of(resting) is Status.NOTTRADED, what="order resting")
        await wait_until(lambda: rec.accounts and rec.trades, what="first push complete")
        yield gateway, rec, broker, resting
    finally:
        await gateway.close()
        assert not gateway.thread_alive


def assert_full_push(rec: Recorder, broker: FakeBroker) -> dict[str, Order]:
    """Between the last DISCONNECTED and the CONNECTED after it, every order the venue lists as
    working was pushed, with the day's trades, the positions and the account; the orders pushed."""
    window = rec.since_last(GatewayStatus.DISCONNECTED)
    pushed = {o.order_id: o for kind, o in window if kind == "order"}
    assert broker.working() <= pushed.keys()
    assert all(pushed[order_id].status is Status.NOTTRADED for order_id in broker.working())
    assert {"trade", "position", "account"} <= {kind for kind, _ in window}
    return pushed


async def test_orders_refused_before_tqsdk_get_local_ids(
    on_broker: tuple[TqsdkGateway, Recorder, FakeBroker, str],
) -> None:
    gateway, rec, broker, _ = on_broker
    before = set(broker.orders)
    stop = gateway.send_order(
        OrderRequest(
            vt_symbol=RB, direction=Direction.LONG, type=OrderType.STOP, price=3600, volume=1, reference="s1"
        )
    )
    odd = gateway.send_order(order(Direction.LONG, Offset.OPEN, 3490, volume=1.5))
    assert stop != odd and all(i.startswith(LOCAL_ORDER_PREFIX) for i in (stop, odd))
    assert rec.status_of(stop) is Status.REJECTED and rec.status_of(odd) is Status.REJECTED  # at once
    assert (rec.orders[stop].status_msg, rec.orders[stop].reference) == ("TqSdk takes no STOP orders", "s1")
    assert "whole number" in rec.orders[odd].status_msg and rec.orders[odd].volume == 1.5
    no_offset = gateway.send_order(order(Direction.LONG, Offset.NONE, 3490))
    net = gateway.send_order(order(Direction.NET, Offset.OPEN, 3490))
    assert rec.orders[no_offset].status_msg.startswith("offset NONE is not valid")
    assert rec.orders[net].status_msg == "TqSdk orders are LONG or SHORT, not NET"
    # TqSdk never saw them: the next order of ours is the only one to reach the broker
    sent = gateway.send_order(order(Direction.LONG, Offset.OPEN, 3480))
    await wait_until(lambda: sent in broker.orders, what="the next order at the broker")
    assert set(broker.orders) - before == {sent} and sent.startswith("tq")


async def test_rebuilt_session_pushes_every_working_order_before_connected(
    on_broker: tuple[TqsdkGateway, Recorder, FakeBroker, str],
) -> None:
    """A real account's resting orders survive a rebuilt session: they are all pushed again
    before CONNECTED, changed or not, so the trader does not settle them as not working."""
    gateway, rec, broker, kept = on_broker
    lost = gateway.send_order(order(Direction.LONG, Offset.OPEN, 3480))
    await wait_until(lambda: rec.status_of(lost) is Status.NOTTRADED, what="second order resting")

    broker.lose.add(lost)
    broker.fail()
    await wait_until(lambda: rec.connects() == 2, what="CONNECTED again after the rebuild")
    assert len(broker.sessions) == 2 and broker.sessions[0].closed
    assert any("session failed" in m and "broker link reset" in m for _, m in rec.statuses)
    assert broker.working() == {"ext-1", kept}
    pushed = assert_full_push(rec, broker)
    # an order of ours the new session does not know is settled there, with the reason
    assert pushed[lost].status is Status.CANCELLED and "unknown to the new" in pushed[lost].status_msg
    assert rec.status_of(kept) is Status.NOTTRADED and rec.positions[(RB, Direction.LONG)].volume == 2


async def test_restored_connection_pushes_every_working_order_before_connected(
    on_broker: tuple[TqsdkGateway, Recorder, FakeBroker, str],
) -> None:
    """TqSdk's own reconnect (lost, then restored notices) re-pushes everything as well."""
    _, rec, broker, resting = on_broker
    broker.notice(NOTIFY_LOST, "与 wss://td.example.com/trade 的网络连接断开")
    await wait_until(lambda: rec.status is GatewayStatus.DISCONNECTED, what="connection lost")
    broker.notice(NOTIFY_RESTORED, "与 wss://td.example.com/trade 的网络连接已恢复")
    await wait_until(lambda: rec.connects() == 2, what="CONNECTED again after the notice")
    assert len(broker.sessions) == 1  # the same session throughout
    assert broker.working() == {"ext-1", resting}
    assert_full_push(rec, broker)


async def test_rebuilt_tqsim_session_reports_what_it_lost(
    fake: FakeTq, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A TqSim session does not survive: a resting order is reported CANCELLED with the reason
    and the position pushed flat, all before the new session's CONNECTED."""
    rec = Recorder()
    gateway = TqsdkGateway("TQ1", settings(fake), rec, tmp_path, retry_delays=(0.05,))
    await gateway.connect()
    gateway.subscribe(RB)
    try:
        await wait_until(lambda: rec.status is GatewayStatus.CONNECTED, what="CONNECTED")
        filled = gateway.send_order(order(Direction.LONG, Offset.OPEN, 3501))
        resting = gateway.send_order(order(Direction.LONG, Offset.OPEN, 3490))
        await wait_until(
            lambda: rec.status_of(filled) is Status.ALLTRADED and rec.status_of(resting) is Status.NOTTRADED,
            what="one fill, one resting order",
        )
        await wait_until(lambda: rec.volume() == 1, what="long position")

        worker = gateway._worker
        assert worker is not None and worker.api is not None

        def broken(*_: Any, **__: Any) -> bool:
            raise ConnectionError("TqApi broke")

        monkeypatch.setattr(worker.api, "wait_update", broken)
        await wait_until(lambda: rec.connects() == 2, what="CONNECTED again after the rebuild")

        window = rec.since_last(GatewayStatus.DISCONNECTED)
        orders = {o.order_id: o for kind, o in window if kind == "order"}
        assert orders.keys() == {resting}
        assert orders[resting].status is Status.CANCELLED and "TqSim" in orders[resting].status_msg
        flat = [p for kind, p in window if kind == "position" and p.key == (RB, Direction.LONG)]
        assert flat and flat[-1].volume == 0
        assert any(kind == "tick" for kind, _ in window) and any(kind == "account" for kind, _ in window)
        assert rec.status_of(filled) is Status.ALLTRADED
    finally:
        await gateway.close()
    assert not gateway.thread_alive
