"""SimGateway (gateways/sim.py): events to a listener, the market task, persistence.

Most tests run with ``tick_rate`` 0 and step the market by hand; the two that run the market
task wait for conditions with a timeout. A "restart" is a second gateway on the same state
directory, with or without closing the first one (a crash does not close anything).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from config.schema import SimSettings
from core.models import (
    CHINA_TZ,
    LOCAL_ORDER_PREFIX,
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
)
from core.sessions import trading_day_end, trading_day_of
from gateways import sim
from gateways.sim import SimGateway
from gateways.sim_journal import decode_state
from tests.conftest import wait_until

AU = "au2612.SHFE"
RB = "rb2605.SHFE"
TA = "TA605.CZCE"
LONG, SHORT = Direction.LONG, Direction.SHORT


class Clock:
    """An injectable clock the test moves by hand (a Wednesday morning to start with)."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 18, 10, 0, tzinfo=CHINA_TZ)

    def __call__(self) -> datetime:
        return self.now

    def next_trading_day(self) -> None:
        self.now = trading_day_end(trading_day_of(self.now)) + timedelta(hours=1)


class Recorder:
    """A GatewayListener that records every event as (kind, payload)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []
        self.tick_times: list[float] = []

    def on_tick(self, tick: Tick) -> None:
        self.events.append(("tick", tick))

    def on_order(self, order: Order) -> None:
        self.events.append(("order", order))

    def on_trade(self, trade: Trade) -> None:
        self.events.append(("trade", trade))

    def on_position(self, position: Position) -> None:
        self.events.append(("position", position))

    def on_account(self, account: Account) -> None:
        self.events.append(("account", account))

    def on_contract(self, contract: Contract) -> None:
        self.events.append(("contract", contract))

    def on_status(self, status: GatewayStatus, message: str) -> None:
        self.events.append(("status", (status, message)))

    def on_log(self, level: str, message: str) -> None:
        self.events.append(("log", (level, message)))

    def on_fatal(self, message: str) -> None:
        self.events.append(("fatal", message))

    def of(self, kind: str) -> list[Any]:
        return [payload for k, payload in self.events if k == kind]

    def kinds(self) -> list[str]:
        return [k for k, _ in self.events]

    def clear(self) -> None:
        self.events.clear()


async def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    """Poll ``condition`` until it holds; fail after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            pytest.fail(f"condition not met within {timeout} s")
        await asyncio.sleep(0.01)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


def make(
    tmp_path: Path, rec: Recorder, clock: Clock, *, state_file: str | None = None, **settings: Any
) -> SimGateway:
    merged: dict[str, Any] = {"tick_rate": 0, "seed": 11, "initial_balance": 2_000_000}
    merged.update(settings)
    return SimGateway("DQ1", SimSettings(**merged), rec, tmp_path, state_file=state_file, clock=clock)


def req(
    vt_symbol: str,
    direction: Direction,
    volume: float,
    price: float = 0.0,
    offset: Offset = Offset.OPEN,
    type: OrderType = OrderType.LIMIT,
) -> OrderRequest:
    return OrderRequest(
        vt_symbol=vt_symbol, direction=direction, offset=offset, type=type, price=price, volume=volume
    )


def depth(gw: SimGateway, vt_symbol: str) -> tuple[list[tuple[float, int]], list[tuple[float, int]]]:
    assert gw.engine is not None
    gw.engine.open_market(vt_symbol)
    return gw.engine.depth(vt_symbol)


def state_file(tmp_path: Path) -> Path:
    return tmp_path / "sim_exchange.json"


def journal_file(tmp_path: Path) -> Path:
    return tmp_path / "sim_exchange.json.journal"


def matching(folder: Path, pattern: str) -> list[Path]:
    return sorted(folder.glob(pattern))


# ====================================================================== connect / subscribe


async def test_connect_reports_ready_and_pushes_account(tmp_path: Path, rec: Recorder, clock: Clock) -> None:
    gw = make(tmp_path, rec, clock, initial_balance=500_000)
    gw.subscribe(AU)  # before connect: remembered, pushed once connected
    assert rec.events == []
    await gw.connect()
    assert rec.of("status") == [(GatewayStatus.CONNECTED, "sim exchange ready")]
    assert [c.vt_symbol for c in rec.of("contract")] == [AU]
    assert [t.vt_symbol for t in rec.of("tick")] == [AU]  # a quote at once
    (account,) = rec.of("account")
    assert account.balance == account.available == account.pre_balance == 500_000
    assert account.trading_day == "20261118"
    # tick_rate 0: no market task at all, so an idle gateway costs nothing
    assert asyncio.all_tasks() == {asyncio.current_task()}
    await gw.close()
    assert rec.of("status")[-1] == (GatewayStatus.DISCONNECTED, "sim exchange closed")


async def test_subscribe_known_and_unknown(tmp_path: Path, rec: Recorder, clock: Clock) -> None:
    gw = make(tmp_path, rec, clock)
    await gw.connect()
    rec.clear()
    gw.subscribe("au2612.DCE")
    assert rec.events == [
        (
            "log",
            ("WARNING", "subscribe au2612.DCE: unknown contract au2612.DCE: au is listed on SHFE, not DCE"),
        )
    ]
    rec.clear()
    gw.subscribe(TA)
    assert rec.kinds() == ["contract", "tick"]
    contract = rec.of("contract")[0]
    assert (contract.vt_symbol, contract.size, contract.pricetick) == (TA, 5, 2)
    gw.step(TA)
    assert [t.vt_symbol for t in rec.of("tick")] == [TA, TA]
    assert gw.get_contract(TA) == contract
    assert gw.get_contract("zz2612.SHFE") is None
    await gw.close()


async def test_get_contract_and_orders_before_connect(tmp_path: Path, rec: Recorder, clock: Clock) -> None:
    gw = make(tmp_path, rec, clock)
    contract = gw.get_contract(AU)
    assert contract is not None and contract.size == 1000 and contract.account_id == "DQ1"
    order_id = gw.send_order(req(AU, LONG, 1, 900.0))
    (order,) = rec.of("order")
    assert order.order_id == order_id
    assert (order.status, order.status_msg) == (Status.REJECTED, "sim exchange not connected")
    gw.cancel_order(CancelRequest(order_id=order_id))
    assert rec.of("log")[-1] == ("WARNING", f"cancel {order_id}: sim exchange not connected")


# ====================================================================== orders


async def test_send_order_reports_everything_before_returning(
    tmp_path: Path, rec: Recorder, clock: Clock
) -> None:
    gw = make(tmp_path, rec, clock)
    await gw.connect()
    _, asks = depth(gw, AU)
    price, level_volume = asks[0]
    rec.clear()
    order_id = gw.send_order(req(AU, LONG, level_volume + 2, price))
    assert rec.kinds() == ["order", "trade", "order", "position", "account"]
    submitting, trade, after = rec.of("order")[0], rec.of("trade")[0], rec.of("order")[1]
    assert submitting.order_id == after.order_id == trade.order_id == order_id
    assert submitting.status is Status.SUBMITTING
    assert (after.status, after.traded) == (Status.PARTTRADED, level_volume)
    assert (trade.price, trade.volume) == (price, level_volume)
    (position,) = rec.of("position")
    assert (position.vt_symbol, position.direction, position.volume) == (AU, LONG, level_volume)
    account = rec.of("account")[0]
    assert account.frozen > 0 and account.commission == trade.commission
    await gw.close()


async def test_rejection_arrives_as_an_order_update(tmp_path: Path, rec: Recorder, clock: Clock) -> None:
    gw = make(tmp_path, rec, clock)
    await gw.connect()
    rec.clear()
    order_id = gw.send_order(req(AU, LONG, 1, 912.03))
    assert rec.kinds() == ["order", "order"]
    rejected = rec.of("order")[-1]
    assert rejected.order_id == order_id
    assert rejected.status is Status.REJECTED
    assert rejected.status_msg == "price 912.03 is not on the 0.02 tick grid of au2612.SHFE"
    await gw.close()


async def test_listener_gets_copies(tmp_path: Path, rec: Recorder, clock: Clock) -> None:
    gw = make(tmp_path, rec, clock)
    await gw.connect()
    _, asks = depth(gw, AU)
    order_id = gw.send_order(req(AU, LONG, asks[0][1] + 1, asks[0][0]))
    for _, payload in rec.events:  # the trader stamps and keeps what it receives
        if isinstance(payload, Order | Trade | Position | Account):
            payload.account_id = "MUTATED"
        if isinstance(payload, Order):
            payload.status = Status.CANCELLED
        if isinstance(payload, Position):
            payload.volume = 999
    assert gw.engine is not None
    engine_order = gw.engine.get_order(order_id)
    assert engine_order is not None
    assert engine_order.status is Status.PARTTRADED and engine_order.account_id == "DQ1"
    position = gw.engine.position(AU, LONG)
    assert position is not None and position.volume == asks[0][1]
    assert all(t.account_id == "DQ1" for t in gw.engine.trades())
    await gw.close()


async def test_cancel_working_unknown_and_finished(tmp_path: Path, rec: Recorder, clock: Clock) -> None:
    gw = make(tmp_path, rec, clock)
    await gw.connect()
    bids, _ = depth(gw, AU)
    working = gw.send_order(req(AU, LONG, 1, bids[3][0]))
    rec.clear()
    gw.cancel_order(CancelRequest(order_id=working))
    assert rec.kinds() == ["order", "account"]
    cancelled = rec.of("order")[0]
    assert (cancelled.order_id, cancelled.status) == (working, Status.CANCELLED)
    assert rec.of("account")[0].frozen == 0
    rec.clear()
    gw.cancel_order(CancelRequest(order_id="42"))
    assert rec.events == [("log", ("WARNING", "cancel 42: unknown order (not a working order of today)"))]
    rec.clear()
    gw.cancel_order(CancelRequest(order_id=working))  # already finished: log + unchanged order
    assert rec.kinds() == ["log", "order"]
    assert rec.of("log")[0] == ("WARNING", f"cancel {working}: order is already CANCELLED, nothing to cancel")
    assert rec.of("order")[0].status is Status.CANCELLED
    await gw.close()


async def test_query_repushes_account_positions_todays_orders_and_trades(
    tmp_path: Path, rec: Recorder, clock: Clock
) -> None:
    gw = make(tmp_path, rec, clock)
    await gw.connect()
    filled = gw.send_order(req(TA, SHORT, 2, type=OrderType.MARKET))
    bids, _ = depth(gw, AU)
    working = gw.send_order(req(AU, LONG, 1, bids[4][0]))
    rec.clear()
    gw.query()
    assert rec.kinds()[0] == "account"
    assert [(p.vt_symbol, p.direction, p.volume) for p in rec.of("position")] == [(TA, SHORT, 2)]
    # every order of the day (the trader reconciles against the complete list)
    assert [(o.order_id, o.status) for o in rec.of("order")] == [
        (filled, Status.ALLTRADED),
        (working, Status.NOTTRADED),
    ]
    assert {t.order_id for t in rec.of("trade")} == {filled}
    assert sum(t.volume for t in rec.of("trade")) == 2
    await gw.close()


async def test_manual_step_fills_a_resting_order(tmp_path: Path, rec: Recorder, clock: Clock) -> None:
    gw = make(tmp_path, rec, clock)
    await gw.connect()
    gw.subscribe(RB)
    bids, _ = depth(gw, RB)
    limit = bids[0][0] - 1
    order_id = gw.send_order(req(RB, LONG, 5, limit))
    rec.clear()
    for _ in range(2000):
        gw.step(RB)
        if rec.of("trade"):
            break
    trades = rec.of("trade")
    assert trades and all(t.price == limit and t.order_id == order_id for t in trades)
    kinds = rec.kinds()
    first_trade = kinds.index("trade")
    assert kinds[first_trade - 1] == "tick"  # the step's quote, then what it filled
    assert kinds[first_trade:] in (["trade", "order", "position", "account"],)
    await gw.close()


async def test_day_roll_noticed_by_a_market_step(tmp_path: Path, rec: Recorder, clock: Clock) -> None:
    gw = make(tmp_path, rec, clock)
    await gw.connect()
    gw.subscribe(AU)
    gw.send_order(req(AU, LONG, 1, type=OrderType.MARKET))
    assert gw.engine is not None
    tick = gw.engine.tick(AU)
    assert tick is not None
    working = gw.send_order(req(AU, LONG, 1, tick.limit_down))
    rec.clear()
    clock.next_trading_day()
    gw.step(AU)
    expired = rec.of("order")
    assert [(o.order_id, o.status) for o in expired] == [(working, Status.CANCELLED)]
    assert expired[0].status_msg == "expired at end of trading day 20261118"
    (position,) = rec.of("position")
    assert position.yd_volume == position.volume == 1
    assert rec.of("account")[-1].trading_day == "20261119"
    await gw.close()


# ====================================================================== the market task


async def test_market_task_spreads_ticks_and_pushes_the_account(
    tmp_path: Path, rec: Recorder, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sim, "ACCOUNT_PUSH_SECONDS", 0.2)
    loop = asyncio.get_running_loop()
    wakes: list[float] = []
    original = rec.on_tick

    def on_tick(tick: Tick) -> None:
        wakes.append(loop.time())
        original(tick)

    rec.on_tick = on_tick  # type: ignore[method-assign]
    gw = make(tmp_path, rec, clock, tick_rate=10.0)
    await gw.connect()
    symbols = [f"rb26{m:02d}.SHFE" for m in range(1, 13)] + [f"MA6{m:02d}.CZCE" for m in range(1, 9)]
    for vt_symbol in symbols:
        gw.subscribe(vt_symbol)
    gw.send_order(req(TA, LONG, 1, type=OrderType.MARKET))  # opens TA's market, not subscribed
    wakes.clear()
    rec.clear()
    await wait_for(lambda: len(rec.of("tick")) >= 200 and len(rec.of("account")) >= 1)
    ticks = rec.of("tick")
    assert {t.vt_symbol for t in ticks} == set(symbols)  # every subscribed contract ticks ...
    assert TA not in {t.vt_symbol for t in ticks}  # ... and only subscribed ones reach the listener
    # 20 contracts x 10/s = 200 ticks/s, delivered in slices (50 ms apart), never one burst
    per_wake: dict[float, int] = {}
    for moment in wakes:
        per_wake[moment] = per_wake.get(moment, 0) + 1
    assert len(per_wake) >= 10
    assert max(per_wake.values()) <= len(symbols) + 1
    await gw.close()
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_market_task_survives_a_failing_listener(tmp_path: Path, rec: Recorder, clock: Clock) -> None:
    failures = [1]
    original = rec.on_tick

    def on_tick(tick: Tick) -> None:
        if failures:
            failures.pop()
            raise RuntimeError("listener bug")
        original(tick)

    gw = make(tmp_path, rec, clock, tick_rate=50.0)
    await gw.connect()
    gw.subscribe(AU)
    rec.on_tick = on_tick  # type: ignore[method-assign]
    await wait_for(lambda: len(rec.of("tick")) >= 5)
    assert ("ERROR", "sim market step failed: RuntimeError('listener bug')") in rec.of("log")
    await gw.close()


# ====================================================================== persistence


async def test_state_survives_a_crash_and_restart(tmp_path: Path, clock: Clock) -> None:
    first = Recorder()
    a = make(tmp_path, first, clock)
    await a.connect()
    a.send_order(req(AU, LONG, 2, type=OrderType.MARKET))
    bids, _ = depth(a, AU)
    working = a.send_order(req(AU, SHORT, 1, bids[0][0] + 3.0, Offset.CLOSETODAY))
    # durable the moment send_order returns: no waiting, no close()
    assert working.encode() in journal_file(tmp_path).read_bytes()
    assert a.engine is not None
    before_account = a.engine.account()
    before_positions = a.engine.positions()
    old_ids = [o.order_id for o in first.of("order")] + [t.trade_id for t in first.of("trade")]
    # no close(): a crash. A new process opens the same state directory.
    second = Recorder()
    b = make(tmp_path, second, clock, initial_balance=1.0)  # ignored: the saved account wins
    await b.connect()
    account = second.of("account")[-1]
    assert account.balance == pytest.approx(before_account.balance)
    assert account.frozen == pytest.approx(before_account.frozen)
    assert second.of("position") == before_positions
    assert second.of("position")[0].frozen == 1  # held by the working close-today order
    assert any("state loaded" in msg for _, msg in second.of("log"))
    second.clear()
    b.query()
    assert [o.order_id for o in second.of("order")] == [working]
    assert sum(t.volume for t in second.of("trade")) == 2
    new_id = b.send_order(req(AU, LONG, 1, bids[4][0]))
    assert int(new_id) > max(int(i) for i in old_ids)
    b.cancel_order(CancelRequest(order_id=working))  # the restored order is really working
    assert second.of("order")[-1].status is Status.CANCELLED
    await b.close()


async def test_restart_on_a_new_trading_day_rolls_the_books(tmp_path: Path, clock: Clock) -> None:
    first = Recorder()
    a = make(tmp_path, first, clock)
    await a.connect()
    a.send_order(req(TA, LONG, 3, type=OrderType.MARKET))
    assert a.engine is not None
    tick = a.engine.tick(TA)
    assert tick is not None
    working = a.send_order(req(TA, LONG, 1, tick.limit_down))
    balance = a.engine.account().balance
    await a.close()
    clock.next_trading_day()
    second = Recorder()
    b = make(tmp_path, second, clock)
    await b.connect()
    expired = [o for o in second.of("order") if o.order_id == working]
    assert [o.status for o in expired] == [Status.CANCELLED]
    assert expired[0].status_msg == "expired at end of trading day 20261118"
    position = second.of("position")[-1]
    assert (position.vt_symbol, position.volume, position.yd_volume) == (TA, 3, 3)
    account = second.of("account")[-1]
    assert account.trading_day == "20261119"
    assert account.pre_balance == pytest.approx(balance) == account.balance
    await b.close()


@pytest.mark.parametrize(
    "content",
    [
        b"\x00\x01 not json at all",
        b'{"version": 1, "account_id": "DQ1"}',  # JSON, but not a state
        b'{"version": 1, "account_id": "DQ9", "trading_day": "20261118", "next_id": 5, '
        b'"pre_balance": 1.0, "close_pnl": 0.0, "commission": 0.0}',  # another account's
        b'{"version": 1, "account_id": "DQ1", "trading_day": "20261118", "next_id": 5, '
        b'"pre_balance": 1.0, "close_pnl": 0.0, "commission": 0.0, '
        b'"positions": [{"vt_symbol": "zz2612.SHFE", "direction": "LONG", "volume": 1, '
        b'"yd_volume": 0, "price": 1.0}]}',  # a contract the exchange does not list
    ],
)
async def test_corrupt_state_is_moved_aside(
    tmp_path: Path, rec: Recorder, clock: Clock, content: bytes
) -> None:
    state_file(tmp_path).write_bytes(content)
    journal_file(tmp_path).write_bytes(b'{"generation": 0}\n')
    gw = make(tmp_path, rec, clock, initial_balance=750_000)
    await gw.connect()
    errors = [msg for level, msg in rec.of("log") if level == "ERROR"]
    assert len(errors) == 1
    assert "is unreadable" in errors[0] and "moved aside to sim_exchange.json.corrupt-" in errors[0]
    assert "starting a fresh account with balance 750,000.00" in errors[0]
    (aside,) = matching(tmp_path, "sim_exchange.json.corrupt-*")
    assert aside.read_bytes() == content  # kept for a post-mortem, with its journal
    assert len(matching(tmp_path, "sim_exchange.json.journal.corrupt-*")) == 1
    assert rec.of("status") == [(GatewayStatus.CONNECTED, "sim exchange ready")]
    assert rec.of("account")[-1].balance == 750_000
    gw.flush()
    assert decode_state(state_file(tmp_path).read_bytes()).pre_balance == 750_000
    await gw.close()


async def test_changes_are_durable_before_they_are_reported(
    tmp_path: Path, rec: Recorder, clock: Clock
) -> None:
    gw = make(tmp_path, rec, clock)
    await gw.connect()
    gw.subscribe(AU)
    snapshot, journal = state_file(tmp_path).read_bytes(), journal_file(tmp_path).read_bytes()
    for _ in range(50):
        gw.step(AU)
    await asyncio.sleep(0)
    # 50 market ticks: not a byte written
    assert (state_file(tmp_path).read_bytes(), journal_file(tmp_path).read_bytes()) == (snapshot, journal)
    on_disk_when_reported: list[bool] = []
    original = rec.on_trade

    def on_trade(trade: Trade) -> None:
        on_disk_when_reported.append(trade.trade_id.encode() in journal_file(tmp_path).read_bytes())
        original(trade)

    rec.on_trade = on_trade  # type: ignore[method-assign]
    order_id = gw.send_order(req(AU, LONG, 1, type=OrderType.MARKET))
    assert on_disk_when_reported == [True]  # in the journal before the listener heard of it
    assert state_file(tmp_path).read_bytes() == snapshot  # one appended line, not a rewrite
    lines = journal_file(tmp_path).read_bytes().splitlines()
    assert len(lines) == 2  # header + this order's change
    assert json.loads(lines[0]) == {"generation": json.loads(snapshot)["generation"]}
    gw.flush()  # compaction: a new snapshot generation, an empty journal
    state = json.loads(state_file(tmp_path).read_bytes())
    assert state["version"] == 1 and state["account_id"] == "DQ1"
    assert [t["order_id"] for t in state["trades"]] == [order_id]
    assert journal_file(tmp_path).read_bytes().splitlines() == [
        json.dumps({"generation": state["generation"]}, separators=(",", ":")).encode()
    ]
    assert matching(tmp_path, "*.tmp") == []  # atomic: temp file renamed into place
    await gw.close()


async def test_journal_is_compacted_after_enough_changes(
    tmp_path: Path, rec: Recorder, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sim, "JOURNAL_COMPACT_LINES", 3)
    monkeypatch.setattr(sim, "COMPACT_QUIET_SECONDS", 0.2)
    gw = make(tmp_path, rec, clock)
    await gw.connect()
    ids = [gw.send_order(req(TA, LONG, 1, type=OrderType.MARKET)) for _ in range(3)]
    assert len(journal_file(tmp_path).read_bytes().splitlines()) == 4
    await asyncio.sleep(0)
    # not on the next order: once the orders pause
    assert len(journal_file(tmp_path).read_bytes().splitlines()) == 4
    await wait_until(lambda: len(journal_file(tmp_path).read_bytes().splitlines()) == 1)
    state = decode_state(state_file(tmp_path).read_bytes())
    assert {t.order_id for t in state.trades} == set(ids)
    await gw.close()


async def test_changes_that_never_pause_still_get_their_compaction(
    tmp_path: Path, rec: Recorder, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sim, "JOURNAL_COMPACT_LINES", 3)
    monkeypatch.setattr(sim, "COMPACT_QUIET_SECONDS", 60.0)  # never quiet for that long here
    gw = make(tmp_path, rec, clock)
    await gw.connect()
    lines = 0
    ids: list[str] = []
    while lines != 1:
        ids.append(gw.send_order(req(TA, LONG, 1, type=OrderType.MARKET)))
        lines = len(journal_file(tmp_path).read_bytes().splitlines())
        assert lines <= 1 + 2 * 3, "the journal grew past twice its lines"
        await asyncio.sleep(0)
        lines = len(journal_file(tmp_path).read_bytes().splitlines())
    assert len(ids) == 2 * 3  # compacted right after the change that made twice the lines
    state = decode_state(state_file(tmp_path).read_bytes())
    assert {t.order_id for t in state.trades} == set(ids)
    await gw.close()


async def test_torn_journal_line_is_skipped_with_a_warning(tmp_path: Path, clock: Clock) -> None:
    first = Recorder()
    a = make(tmp_path, first, clock)
    await a.connect()
    kept = a.send_order(req(TA, LONG, 1, type=OrderType.MARKET))
    with journal_file(tmp_path).open("ab") as f:
        f.write(b'{"trading_day": "2026')  # a power loss in the middle of an append
    second = Recorder()
    b = make(tmp_path, second, clock)
    await b.connect()
    warnings = [msg for level, msg in second.of("log") if level == "WARNING"]
    assert len(warnings) == 1 and "line 3 unreadable" in warnings[0]
    assert [(p.vt_symbol, p.volume) for p in second.of("position")] == [(TA, 1)]
    b.query()
    assert {t.order_id for t in second.of("trade")} == {kept}
    await b.close()


async def test_disk_trouble_is_reported_once_and_trading_goes_on(
    tmp_path: Path, rec: Recorder, clock: Clock
) -> None:
    (tmp_path / "blocker").write_text("a file where a folder should be")
    gw = make(tmp_path, rec, clock, state_file="blocker/dq1.json")
    await gw.connect()
    for _ in range(3):
        gw.send_order(req(TA, LONG, 1, type=OrderType.MARKET))
    errors = [msg for level, msg in rec.of("log") if level == "ERROR"]
    assert len([e for e in errors if e.startswith("could not save sim exchange state")]) == 1
    assert [o.status for o in rec.of("order")][-1] is Status.ALLTRADED
    assert gw.engine is not None and gw.engine.position(TA, LONG).volume == 3  # type: ignore[union-attr]
    await gw.close()


async def test_state_file_setting(tmp_path: Path, rec: Recorder, clock: Clock) -> None:
    gw = make(tmp_path, rec, clock, state_file="elsewhere/dq1.json")
    await gw.connect()
    gw.send_order(req(TA, LONG, 1, type=OrderType.MARKET))
    await gw.close()
    assert decode_state((tmp_path / "elsewhere" / "dq1.json").read_bytes()).positions[0].volume == 1
    assert not state_file(tmp_path).exists()


async def test_orders_after_close_are_refused(tmp_path: Path, rec: Recorder, clock: Clock) -> None:
    gw = make(tmp_path, rec, clock)
    await gw.connect()
    await gw.close()
    rec.clear()
    first = gw.send_order(req(TA, LONG, 1, type=OrderType.MARKET))
    refused = rec.of("order")[-1]
    assert refused.status_msg == "sim exchange not connected" and refused.order_id == first
    with pytest.raises(RuntimeError, match="not connected"):
        gw.step(TA)


async def test_orders_refused_before_the_exchange_have_local_ids_the_exchanges_keep_theirs(
    tmp_path: Path, rec: Recorder, clock: Clock
) -> None:
    gw = make(tmp_path, rec, clock)
    rejected = gw.send_order(req(TA, LONG, 1, price=1.0))  # not connected yet: refused locally
    await gw.connect()
    by_exchange = gw.send_order(req(TA, LONG, 1, price=2.0))  # below limit-down: the exchange says no
    paper = SimGateway(
        "P1", SimSettings(tick_rate=0), rec, tmp_path / "paper", external_quotes=True, clock=clock
    )
    await paper.connect()
    no_quote = paper.send_order(req(TA, LONG, 1, price=1.0))  # no real quote yet: refused locally
    ids = {o.order_id: o for o in rec.of("order") if o.status is Status.REJECTED}
    assert set(ids) == {rejected, by_exchange, no_quote}
    stamp = clock.now.strftime("%Y%m%d%H%M%S")
    for local in (rejected, no_quote):
        assert local.startswith(f"{LOCAL_ORDER_PREFIX}{stamp}."), local
    assert rejected != no_quote  # unique within the process, whichever gateway refused
    assert by_exchange.isdigit() and "below limit-down" in ids[by_exchange].status_msg
    await paper.close()
    await gw.close()
