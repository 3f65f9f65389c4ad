"""The trader in this process, with no manager: request handling in detail."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from core.models import Direction, GatewayStatus, Order, OrderRequest, Status, TradingState
from core.protocol import CancelAllRequest, CancelRequest, Message, Reply, StateRequest
from core.trader import TRADING_STATE_BYTES, TRADING_STATE_FILE, Trader, saved_trading_state
from tests.conftest import CoreEnv, sim_account, wait_until


class FakeLink:
    """Collects what the trader sends, as the manager would receive it."""

    closed = False
    backlog = 0

    def __init__(self) -> None:
        self.sent: list[tuple[str, Any, int | None]] = []

    def send_many(self, messages: list[tuple[str, Any, int | None]]) -> None:
        self.sent.extend(messages)

    def send_nowait(self, msg_type: str, data: Any, req_id: int | None = None) -> None:
        self.sent.append((msg_type, data, req_id))

    async def close(self) -> None:
        self.closed = True


@pytest.fixture
async def trader(core_env: CoreEnv) -> AsyncIterator[Trader]:
    config = core_env.write_config(sim_account("U1", "m2705.DCE", rate=0))
    t = Trader(config.accounts[0], config, data_dir=core_env.data_dir, socket_path=None)
    task = asyncio.create_task(t.run())
    await wait_until(lambda: t.gateway_status is GatewayStatus.CONNECTED and "m2705.DCE" in t.oms.ticks)
    try:
        yield t
    finally:
        t.stop()
        await task


def _request(trader: Trader, link: FakeLink, msg_type: str, data: Any, req_id: int = 1) -> Reply:
    trader.link = link  # type: ignore[assignment]
    trader._dispatch(link, Message.new(type=msg_type, req_id=req_id, data=data))  # type: ignore[arg-type]
    replies = [d for t, d, r in link.sent if t == "reply" and r == req_id]
    assert len(replies) == 1, "exactly one reply per request"
    return replies[0]


def _resting(trader: Trader) -> OrderRequest:
    tick = trader.oms.ticks["m2705.DCE"]
    return OrderRequest(vt_symbol="m2705.DCE", direction=Direction.LONG, price=tick.limit_down, volume=1)


async def test_updates_leave_before_the_reply_in_one_batch(trader: Trader) -> None:
    link = FakeLink()
    reply = _request(trader, link, "order_req", _resting(trader))
    assert reply.ok
    types = [t for t, _, _ in link.sent]
    assert types[-1] == "reply"
    assert "order" in types[:-1]
    # persisted before it was reported
    assert trader.db is not None
    stored = trader.db.load_order(reply.result["order_id"])
    assert stored is not None and stored.status is Status.NOTTRADED


async def test_a_request_writes_and_reports_each_order_once_in_its_last_state(
    trader: Trader, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The venue changes a new order several times in one request (SUBMITTING, then filled):
    one row write and one message for it, in its last state, and its trade with it."""
    assert trader.db is not None
    saved: list[Status] = []
    real_save = trader.db.save_order

    def counting_save(order: Order) -> None:
        saved.append(order.status)
        real_save(order)

    monkeypatch.setattr(trader.db, "save_order", counting_save)
    tick = trader.oms.ticks["m2705.DCE"]
    marketable = OrderRequest(vt_symbol="m2705.DCE", direction=Direction.LONG, price=tick.limit_up, volume=1)
    link = FakeLink()
    reply = _request(trader, link, "order_req", marketable)
    assert reply.ok
    order_id = reply.result["order_id"]
    reported = [d for t, d, _ in link.sent if t == "order"]
    assert [(o.order_id, o.status) for o in reported] == [(order_id, Status.ALLTRADED)]
    assert [d.order_id for t, d, _ in link.sent if t == "trade"] == [order_id]
    assert saved == [Status.ALLTRADED]
    stored = trader.db.load_order(order_id)
    assert stored is not None and stored.status is Status.ALLTRADED and stored.traded == 1


async def test_an_order_the_venue_took_is_saved_even_when_its_handler_then_fails(
    trader: Trader, monkeypatch: pytest.MonkeyPatch
) -> None:
    placed: list[Reply] = []

    def place_then_fail(req: OrderRequest) -> Reply:
        placed.append(trader._place(req, manual=True))
        raise KeyError("boom after the send")

    monkeypatch.setitem(trader._handlers, "order_req", place_then_fail)
    link = FakeLink()
    reply = _request(trader, link, "order_req", _resting(trader))
    assert not reply.ok and "internal error in order_req" in reply.error
    order_id = placed[0].result["order_id"]
    assert trader.db is not None
    stored = trader.db.load_order(order_id)
    assert stored is not None and stored.status is Status.NOTTRADED  # on disk: the venue has it
    assert [d.status for t, d, _ in link.sent if t == "order"] == [Status.NOTTRADED]  # and shown


async def test_a_failed_commit_is_never_acknowledged_and_halts(
    trader: Trader, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert trader.db is not None
    real_batch = trader.db.batch

    @contextlib.contextmanager
    def failing_batch() -> Iterator[None]:
        with real_batch():
            yield
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(trader.db, "batch", failing_batch)
    link = FakeLink()
    reply = _request(trader, link, "order_req", _resting(trader))
    assert not reply.ok
    assert "NOT SAVED" in reply.error and "disk is full" in reply.error and "HALTED" in reply.error
    assert reply.result["order_id"]  # which order, so the operator can find it at the venue
    assert trader.trading_state is TradingState.HALTED
    # the order the venue has is still shown
    assert any(t == "order" for t, _, _ in link.sent)
    monkeypatch.setattr(trader.db, "batch", real_batch)
    refused = _request(trader, link, "order_req", _resting(trader), req_id=2)
    assert not refused.ok and "HALTED" in refused.error


async def test_a_halt_for_a_full_disk_is_saved_and_said_once(
    trader: Trader, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """No new file can be written (a full disk: here the state file's temporary name taken
    by a directory): the HALT is still saved, by rewriting the state file in place, with its
    reason; and however many orders are refused after it, the failure is said once."""
    assert trader.db is not None
    real_batch = trader.db.batch

    @contextlib.contextmanager
    def failing_batch() -> Iterator[None]:
        with real_batch():
            yield
        raise sqlite3.OperationalError("database or disk is full")

    (trader.state_dir / TRADING_STATE_FILE).with_suffix(".tmp").mkdir()  # no new file there
    monkeypatch.setattr(trader.db, "batch", failing_batch)
    link = FakeLink()
    with caplog.at_level(logging.INFO, logger=trader.log.name):
        first = _request(trader, link, "order_req", _resting(trader))
        refusals = [_request(trader, link, "order_req", _resting(trader), req_id=n) for n in range(2, 7)]
    assert not first.ok and first.error.startswith("NOT SAVED")
    for refused in refusals:
        assert not refused.ok and refused.error.startswith("halted: account is HALTED"), refused.error
        assert "NOT SAVED" in refused.error
    assert saved_trading_state(trader.state_dir) == (TradingState.HALTED, False)
    assert (trader.state_dir / TRADING_STATE_FILE).stat().st_size == TRADING_STATE_BYTES
    restored = Trader(trader.account, trader.app, data_dir=trader.data_dir, socket_path=None)
    assert restored.trading_state is TradingState.HALTED
    assert restored.halt_reason == "database write failed: database or disk is full"
    loud = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage() for r in loud] == [
        "database write failed: database or disk is full: account U1 HALTED; resume it once the disk is fixed"
    ]
    statuses = [d for t, d, _ in link.sent if t == "status"]
    assert len(statuses) == 1 and statuses[0].halt_reason  # the HALT told once, with its reason
    # resumed by the operator: a new failure is news again
    monkeypatch.setattr(trader.db, "batch", real_batch)
    assert _request(trader, link, "state_req", StateRequest(state=TradingState.ACTIVE), req_id=9).ok
    assert saved_trading_state(trader.state_dir) == (TradingState.ACTIVE, False)
    assert trader.halt_reason == ""


async def test_cancels_are_refused_while_the_venue_is_down(trader: Trader) -> None:
    link = FakeLink()
    placed = _request(trader, link, "order_req", _resting(trader))
    trader.gateway_status = GatewayStatus.DISCONNECTED
    one = _request(trader, link, "cancel_req", CancelRequest(order_id=placed.result["order_id"]), req_id=2)
    assert not one.ok and "venue not connected" in one.error
    every = _request(trader, link, "cancel_all_req", CancelAllRequest(), req_id=3)
    assert not every.ok and "cancel not sent" in every.error
    assert trader.oms.orders[placed.result["order_id"]].status is Status.NOTTRADED
    trader.gateway_status = GatewayStatus.CONNECTED


async def test_a_handler_bug_gets_one_error_reply(trader: Trader, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(_: Any) -> Reply:
        raise KeyError("boom")

    monkeypatch.setitem(trader._handlers, "status_req", broken)
    reply = _request(trader, FakeLink(), "status_req", None)
    assert not reply.ok and "internal error in status_req" in reply.error


async def test_a_failed_trade_write_inside_the_fill_halts_and_never_says_rejected(
    trader: Trader, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert trader.db is not None

    def full(_: object) -> bool:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(trader.db, "save_trade", full)
    tick = trader.oms.ticks["m2705.DCE"]
    marketable = OrderRequest(vt_symbol="m2705.DCE", direction=Direction.LONG, price=tick.limit_up, volume=1)
    reply = _request(trader, FakeLink(), "order_req", marketable)
    assert not reply.ok and "NOT SAVED" in reply.error and "HALTED" in reply.error
    order_id = reply.result["order_id"]
    assert not order_id.startswith("LOCAL.")  # the venue's order, not a made-up refusal
    assert trader.oms.orders[order_id].status is not Status.REJECTED
    assert trader.trading_state is TradingState.HALTED


async def test_a_kill_switch_pulled_while_the_venue_is_down_cancels_when_it_returns(trader: Trader) -> None:
    link = FakeLink()
    placed = _request(trader, link, "order_req", _resting(trader))
    order_id = placed.result["order_id"]
    trader.gateway_status = GatewayStatus.DISCONNECTED
    killed = _request(trader, link, "kill_req", None, req_id=2)
    assert not killed.ok and "could not be cancelled yet" in killed.error
    assert trader.trading_state is TradingState.HALTED
    assert trader.oms.orders[order_id].is_active
    trader.on_status(GatewayStatus.CONNECTED, "back")
    assert trader.oms.orders[order_id].status is Status.CANCELLED
