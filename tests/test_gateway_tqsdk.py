"""TqsdkGateway against a real TqApi + TqSim talking to the local fake servers (tests/fake_tq.py).

Offline and deterministic: the fake's venue time is fixed, every step waits for a condition.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from core.manager import TradingManager
from core.models import (
    Account,
    CancelRequest,
    Contract,
    Direction,
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
from gateways.tqsdk import Scrubber, TqsdkGateway, split_close
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


def settings(fake: FakeTq, **overrides: Any) -> dict[str, Any]:
    return {
        "account_type": "tqsim",
        "auth_user": fake.user,
        "auth_password": fake.password,
        "auth_url": fake.auth_url,
        "md_url": fake.md_url,
        "init_balance": 1_000_000.0,
        **overrides,
    }


def order(direction: Direction, offset: Offset, price: float, volume: float = 1) -> OrderRequest:
    return OrderRequest(vt_symbol=RB, direction=direction, offset=offset, price=price, volume=volume)


@pytest.fixture
def fake() -> Iterator[FakeTq]:
    with FakeTq() as server:
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

    # a CLOSE of today's SHFE position goes to TqSdk as CLOSETODAY (TqSim refuses CLOSE: 平昨仓手数不足)
    closed = gateway.send_order(order(Direction.SHORT, Offset.CLOSE, 3499, volume=2))
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


async def test_shfe_close_splits_yesterday_and_today(
    connected: tuple[TqsdkGateway, Recorder], fake: FakeTq
) -> None:
    gateway, rec = connected
    opened = gateway.send_order(order(Direction.LONG, Offset.OPEN, 3501, volume=2))
    await wait_until(lambda: rec.status_of(opened) is Status.ALLTRADED and rec.volume() == 2)

    fake.set_quote("SHFE.rb2601", datetime=TUESDAY)  # the next trading day: TqSim settles
    await wait_until(lambda: rec.positions[(RB, Direction.LONG)].yd_volume == 2, what="yesterday's position")
    today = gateway.send_order(order(Direction.LONG, Offset.OPEN, 3501))
    await wait_until(lambda: rec.volume() == 3, what="one more lot today")

    first = gateway.send_order(order(Direction.SHORT, Offset.CLOSE, 3499, volume=3))
    second = f"{first}-2"
    assert rec.orders[first].offset is Offset.CLOSEYESTERDAY and rec.orders[first].volume == 2
    assert rec.orders[second].offset is Offset.CLOSETODAY and rec.orders[second].volume == 1
    await wait_until(
        lambda: rec.status_of(first) is Status.ALLTRADED and rec.status_of(second) is Status.ALLTRADED
    )
    await wait_until(lambda: rec.volume() == 0, what="flat")
    assert rec.status_of(today) is Status.ALLTRADED


async def test_lost_md_connection_is_reported(connected: tuple[TqsdkGateway, Recorder], fake: FakeTq) -> None:
    gateway, rec = connected
    fake.drop_md_clients()
    await wait_until(lambda: rec.status is GatewayStatus.DISCONNECTED, what="connection lost")
    assert "TqSdk reconnects" in rec.statuses[-1][1] and "ws://127.0.0.1" in rec.statuses[-1][1]
    assert "/t/md/front" not in rec.statuses[-1][1]
    refused = gateway.send_order(order(Direction.LONG, Offset.OPEN, 3501))
    assert rec.status_of(refused) is Status.REJECTED


def test_split_close_rules() -> None:
    from core.models import Exchange

    pos = Position(
        account_id="A", vt_symbol=RB, direction=Direction.LONG, volume=5, yd_volume=3, frozen=1, yd_frozen=1
    )
    assert split_close(4, Exchange.SHFE, Offset.CLOSE, pos) == [
        (Offset.CLOSEYESTERDAY, 2),
        (Offset.CLOSETODAY, 2),
    ]
    assert split_close(2, Exchange.SHFE, Offset.CLOSE, pos) == [(Offset.CLOSEYESTERDAY, 2)]
    assert split_close(2, Exchange.SHFE, Offset.CLOSE, None) == [(Offset.CLOSEYESTERDAY, 2)]
    assert split_close(4, Exchange.DCE, Offset.CLOSE, pos) == [(Offset.CLOSE, 4)]
    assert split_close(1, Exchange.INE, Offset.CLOSETODAY, pos) == [(Offset.CLOSETODAY, 1)]


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
    gateway = TqsdkGateway("TQ1", dead, rec, tmp_path)
    await gateway.connect()
    await wait_until(lambda: rec.status is GatewayStatus.DISCONNECTED, what="first failure")
    assert "ConnectionError" in rec.statuses[-1][1] and "retry in 5 s" in rec.statuses[-1][1]
    assert gateway.thread_alive  # waiting for its next attempt, not dead
    refused = gateway.send_order(order(Direction.LONG, Offset.OPEN, 3501))
    assert rec.orders[refused].status is Status.REJECTED and "not connected" in rec.orders[refused].status_msg
    await gateway.close()  # interrupts the 5 s wait
    assert not gateway.thread_alive
    assert rec.statuses[-1] == (GatewayStatus.DISCONNECTED, "TqSdk closed")

    fast = TqsdkGateway("TQ1", dead, Recorder(), tmp_path, retry_delays=(0.05,))
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
      auth_password: {fake.password}
      auth_url: {fake.auth_url}
      md_url: {fake.md_url}
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
