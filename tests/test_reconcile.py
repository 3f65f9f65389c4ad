"""Reconciliation on (re)connect (ARCHITECTURE.md, "Invariants" 2): the venue's view of the day against the database.

A trader in this process on the sim exchange (whose state outlives the trader, as a
broker's does). The database is damaged the way a SIGKILL at the worst moment would
leave it, then the trader starts again and must repair it before trading resumes.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta

import msgspec
import pytest

from core.models import (
    EXTERNAL,
    NOT_AT_VENUE,
    Direction,
    GatewayStatus,
    Offset,
    Order,
    OrderRequest,
    OrderType,
    Status,
    Trade,
    now,
)
from core.reconcile import RECOVERED_FROM_FILLS
from core.trader import Trader
from storage import AccountDatabase, database_path
from tests.conftest import CoreEnv, sim_account, wait_until

SYMBOL = "m2705.DCE"


@pytest.fixture
def start_trader(core_env: CoreEnv) -> Callable[[], object]:
    config = core_env.write_config(sim_account("U1", SYMBOL, rate=0))

    @asynccontextmanager
    async def run() -> AsyncIterator[Trader]:
        t = Trader(config.accounts[0], config, data_dir=core_env.data_dir, socket_path=None)
        task = asyncio.create_task(t.run())
        await wait_until(lambda: t.gateway_status is GatewayStatus.CONNECTED and SYMBOL in t.oms.ticks)
        try:
            yield t
        finally:
            t.stop()
            await task

    return run


def _summaries(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("reconciled after")]


def _resting(trader: Trader) -> OrderRequest:
    tick = trader.oms.ticks[SYMBOL]
    return OrderRequest(vt_symbol=SYMBOL, direction=Direction.LONG, price=tick.limit_down, volume=1)


def _buy_at_ask(trader: Trader, volume: int = 2) -> str:
    tick = trader.oms.ticks[SYMBOL]
    reply = trader.place_order(
        OrderRequest(vt_symbol=SYMBOL, direction=Direction.LONG, price=tick.ask_price_1, volume=volume)
    )
    assert reply.ok, reply.error
    return reply.result["order_id"]


async def test_a_fill_the_database_missed_is_recorded_once_on_restart(
    start_trader: Callable[[], object], core_env: CoreEnv, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="qtrader.trader.U1")
    async with start_trader() as trader:  # type: ignore[attr-defined]
        order_id = _buy_at_ask(trader)
        await wait_until(lambda: trader.oms.orders[order_id].status is Status.ALLTRADED)
    # a SIGKILL after the venue filled but before our commit: the database still says working
    path = database_path(core_env.data_dir, "U1")
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE orders SET status = 'NOTTRADED', traded = 0 WHERE order_id = ?", (order_id,))
        conn.execute("DELETE FROM trades")
    caplog.clear()
    async with start_trader() as trader:  # type: ignore[attr-defined]
        assert trader.oms.orders[order_id].status is Status.ALLTRADED
        assert trader.place_order(_resting(trader)).ok  # trading resumed after reconciling
    (summary,) = _summaries(caplog)
    assert "1 missed fill(s) recorded" in summary and "1 working order(s) settled" in summary
    with AccountDatabase(path) as db:
        trades = db.load_trades()
        assert sum(t.volume for t in trades if t.order_id == order_id) == 2
        stored = db.load_order(order_id)
        assert stored is not None and stored.status is Status.ALLTRADED
    # a second restart finds nothing to repair, and records nothing twice
    caplog.clear()
    async with start_trader():  # type: ignore[attr-defined]
        pass
    assert _summaries(caplog) == [_summaries(caplog)[0]]
    assert "records match the venue" in _summaries(caplog)[0]
    with AccountDatabase(path) as db:
        assert len(db.load_trades()) == len(trades)


async def test_a_fill_whose_order_was_never_saved_gets_its_order_written_back(
    start_trader: Callable[[], object], core_env: CoreEnv, caplog: pytest.LogCaptureFixture
) -> None:
    """The commit of the request that sent it failed (a full disk): the venue has the order
    and its fill, the database neither. The venue lists only working orders and today's
    trades, so the restart records the fill and writes its order back from it."""
    caplog.set_level(logging.INFO, logger="qtrader.trader.U1")
    async with start_trader() as trader:  # type: ignore[attr-defined]
        order_id = _buy_at_ask(trader)
        await wait_until(lambda: trader.oms.orders[order_id].status is Status.ALLTRADED)
        placed = trader.oms.orders[order_id]
    path = database_path(core_env.data_dir, "U1")
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM orders WHERE order_id = ?", (order_id,))
        conn.execute("DELETE FROM trades")
    caplog.clear()
    async with start_trader() as trader:  # type: ignore[attr-defined]
        assert trader.oms.orders[order_id].status is Status.ALLTRADED
    (summary,) = _summaries(caplog)
    assert "1 missed fill(s) recorded" in summary and "1 unsaved order(s) written back" in summary
    with AccountDatabase(path) as db:
        stored = db.load_order(order_id)
        trades = db.load_trades()
    assert stored is not None and stored.status is Status.ALLTRADED
    assert stored.status_msg == RECOVERED_FROM_FILLS
    assert stored.traded == stored.volume == sum(t.volume for t in trades) == 2
    assert (stored.direction, stored.offset, stored.reference) == (placed.direction, placed.offset, "manual")
    assert stored.traded_price == pytest.approx(placed.traded_price)
    assert {t.order_id for t in trades} == {order_id}


async def test_a_working_order_the_venue_does_not_list_is_settled(
    start_trader: Callable[[], object], core_env: CoreEnv, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="qtrader.trader.U1")
    path = database_path(core_env.data_dir, "U1")
    ghost = _order("ghost-1", Status.NOTTRADED, 0, "manual", volume=1)
    with AccountDatabase(path) as db:  # sent just before a crash; it never reached the venue
        db.save_order(ghost)
    async with start_trader() as trader:  # type: ignore[attr-defined]
        settled = trader.oms.orders["ghost-1"]
        assert settled.status is Status.CANCELLED and settled.status_msg == NOT_AT_VENUE
        assert "ghost-1" not in trader.oms.active_orders
    (summary,) = _summaries(caplog)
    assert "1 working order(s) settled" in summary
    with AccountDatabase(path) as db:
        stored = db.load_order("ghost-1")
        assert stored is not None and stored.status is Status.CANCELLED


async def test_a_reconnect_refuses_orders_until_reconciled_and_marks_external_orders(
    start_trader: Callable[[], object], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="qtrader.trader.U1")
    async with start_trader() as trader:  # type: ignore[attr-defined]
        ours = _buy_at_ask(trader, volume=1)
        await wait_until(lambda: trader.oms.orders[ours].status is Status.ALLTRADED)
        caplog.clear()
        trader.on_status(GatewayStatus.DISCONNECTED, "front disconnected: 4097")
        refused = trader.place_order(_resting(trader))
        assert not refused.ok and "not connected" in (refused.error or "")
        # the venue's replay after the reconnect: an order placed elsewhere (no reference)
        # with its fill, and our own fill again (already recorded: ignored)
        moment = now()
        outside = Order(
            account_id="U1",
            order_id="9_99_1",
            vt_symbol=SYMBOL,
            direction=Direction.SHORT,
            offset=Offset.OPEN,
            type=OrderType.LIMIT,
            price=3100.0,
            volume=1,
            traded=1,
            traded_price=3100.0,
            status=Status.ALLTRADED,
            datetime=moment,
            reference="",
        )
        trader.on_order(outside)
        trader.on_trade(
            Trade(
                account_id="U1",
                trade_id="20261121.DCE.777",
                order_id="9_99_1",
                vt_symbol=SYMBOL,
                direction=Direction.SHORT,
                offset=Offset.OPEN,
                price=3100.0,
                volume=1,
                datetime=moment,
                reference="",
            )
        )
        for trade in list(trader.oms.trades.values()):
            if trade.order_id == ours:
                trader.on_trade(trade)
        assert trader.oms.orders["9_99_1"].reference == EXTERNAL
        assert trader.oms.trades["20261121.DCE.777"].reference == EXTERNAL
        assert not _summaries(caplog)  # not before CONNECTED
        trader.on_status(GatewayStatus.CONNECTED, "logged in")
        (summary,) = _summaries(caplog)
        assert "1 missed fill(s) recorded" in summary and "1 external order(s)" in summary
        assert trader.place_order(_resting(trader)).ok
        assert trader.db is not None
        stored = trader.db.load_order("9_99_1")
        assert stored is not None and stored.reference == EXTERNAL


def _order(order_id: str, status: Status, traded: float, reference: str, volume: float = 2) -> Order:
    return Order(
        account_id="U1",
        order_id=order_id,
        vt_symbol=SYMBOL,
        direction=Direction.LONG,
        offset=Offset.OPEN,
        type=OrderType.LIMIT,
        price=3000.0,
        volume=volume,
        traded=traded,
        traded_price=3000.0 if traded else 0.0,
        status=status,
        datetime=now() - timedelta(hours=1),
        reference=reference,
    )


async def test_an_old_order_of_ours_keeps_its_strategy_and_replays_never_go_backwards(
    start_trader: Callable[[], object],
) -> None:
    async with start_trader() as trader:  # type: ignore[attr-defined]
        assert trader.db is not None
        # in the database but not in memory (older than what a start loads)
        trader.db.save_order(_order("1_7_1", Status.ALLTRADED, 2, "grid1"))
        assert "1_7_1" not in trader.oms.orders
        # the venue replays the day's notices of it, without our reference, oldest first
        for status, traded in ((Status.SUBMITTING, 0), (Status.NOTTRADED, 0), (Status.ALLTRADED, 2)):
            trader.on_order(_order("1_7_1", status, traded, ""))
            stored = trader.db.load_order("1_7_1")
            assert stored is not None and (stored.status, stored.reference) == (Status.ALLTRADED, "grid1")
        assert trader.oms.orders["1_7_1"].reference == "grid1"
        trader.on_trade(
            Trade(
                account_id="U1",
                trade_id="20261121.DCE.5",
                order_id="1_7_1",
                vt_symbol=SYMBOL,
                direction=Direction.LONG,
                offset=Offset.OPEN,
                price=3000.0,
                volume=2,
                datetime=now(),
                reference="",
            )
        )
        assert trader.oms.trades["20261121.DCE.5"].reference == "grid1"
        # an order we settled as not at the venue takes the venue's word when it shows up
        settled = _order("1_7_2", Status.CANCELLED, 0, "manual")
        settled.status_msg = NOT_AT_VENUE
        trader.on_order(settled)
        trader.on_order(_order("1_7_2", Status.NOTTRADED, 0, ""))
        assert trader.oms.orders["1_7_2"].status is Status.NOTTRADED
        assert "1_7_2" in trader.oms.active_orders


def test_settling_never_lowers_what_an_order_has_traded() -> None:
    from core.reconcile import Reconciliation

    recon = Reconciliation("test")
    partly = _order("p1", Status.PARTTRADED, 2, "manual", volume=3)
    one_fill_loaded = Trade(
        account_id="U1",
        trade_id="t1",
        order_id="p1",
        vt_symbol=SYMBOL,
        direction=Direction.LONG,
        offset=Offset.OPEN,
        price=3000.0,
        volume=1,
        datetime=now(),
    )
    (settled,) = recon.unlisted({"p1": partly}, [one_fill_loaded])
    assert (settled.traded, settled.status) == (2, Status.CANCELLED)
    full = _order("p2", Status.PARTTRADED, 1, "manual", volume=2)
    fills = [
        msgspec.structs.replace(one_fill_loaded, trade_id=f"t{i}", order_id="p2", price=3000.0 + i)
        for i in (2, 4)
    ]
    (settled,) = recon.unlisted({"p2": full}, fills)
    assert (settled.traded, settled.traded_price, settled.status) == (2, 3003.0, Status.ALLTRADED)
