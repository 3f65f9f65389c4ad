"""Conditional orders (core/conditional.py) in a real trader in this process: sim venue, real
risk rules, real database; the ticks that cross a trigger are made here, so every crossing is
exact. The rules themselves get hypothesis: a conditional order fires exactly when (and the
first time) its condition holds, and never again."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from config import load_config_file
from core.conditional import FOUND_AT_VENUE, NONE_AT_VENUE, ConditionalBook, holds, trailed
from core.models import (
    CHINA_TZ,
    CancelRequest,
    CondExpiry,
    ConditionalOrder,
    ConditionalRequest,
    CondKind,
    CondPrice,
    CondState,
    Contract,
    Direction,
    Exchange,
    GatewayStatus,
    Offset,
    OrderRequest,
    ReverseRequest,
    Status,
    Tick,
    TradingState,
    TriggerOp,
    TriggerSource,
    now,
)
from core.oms import Oms
from core.protocol import ConditionalCommand, KillRequest, Message, Reply, StateRequest
from core.trader import Trader
from storage import AccountDatabase
from tests.conftest import CoreEnv, sim_account, wait_until
from tests.test_trader_unit import FakeLink

SYMBOL = "rb2705.SHFE"


# --------------------------------------------------------------------------- the rules


@given(
    prices=st.lists(st.integers(min_value=0, max_value=60), min_size=1, max_size=40),
    trigger=st.integers(min_value=1, max_value=60),
    op=st.sampled_from(list(TriggerOp)),
)
def test_it_fires_exactly_at_the_first_tick_that_crosses_and_never_again(
    prices: list[int], trigger: int, op: TriggerOp
) -> None:
    sent = _feed_book(prices, trigger, op, trailing=0)
    expected = next(
        (i for i, p in enumerate(prices) if p > 0 and (p >= trigger if op is TriggerOp.GE else p <= trigger)),
        None,
    )
    assert sent == ([] if expected is None else [expected])


@given(
    prices=st.lists(st.integers(min_value=1, max_value=200), min_size=1, max_size=40),
    start=st.integers(min_value=1, max_value=200),
    distance=st.integers(min_value=1, max_value=20),
    op=st.sampled_from(list(TriggerOp)),
)
def test_a_trailing_trigger_follows_by_whole_ticks_only_towards_the_price_and_fires_once(
    prices: list[int], start: int, distance: int, op: TriggerOp
) -> None:
    level = float(start)
    fired = None
    for i, p in enumerate(prices):
        if holds(op, p, level):
            fired = i
            break
        moved = trailed(op, p, level, distance, 1.0)
        if moved is not None:
            assert moved == int(moved)  # on the grid
            assert (moved >= level + 1) if op is TriggerOp.LE else (moved <= level - 1)
            assert moved == (p - distance if op is TriggerOp.LE else p + distance)
            level = moved
    assert _feed_book(prices, start, op, trailing=distance) == ([] if fired is None else [fired])


class _BookHost:
    """Just enough of a trader for the book: a real database, orders recorded, not sent."""

    def __init__(self, db: AccountDatabase) -> None:
        import logging

        self.account_id = "H1"
        self.log = logging.getLogger("test.conditional")
        self.oms = Oms("H1")
        self.db = db
        self.gateway_status = GatewayStatus.CONNECTED
        self.trading_state = TradingState.ACTIVE
        self.auto_trading = False
        self.sent: list[OrderRequest] = []
        self.contract = Contract(
            vt_symbol="x2705.DCE", symbol="x2705", exchange=Exchange.DCE, size=10, pricetick=1.0
        )

    def emit(self, msg_type: str, data: Any) -> None:
        pass

    def contract_of(self, vt_symbol: str) -> Contract | None:
        return self.contract

    def quote(self, vt_symbol: str) -> None:
        pass

    def venue_now(self) -> Any:
        return now()

    def market_closed(self, vt_symbol: str) -> str | None:
        return None

    def place_conditional_order(self, req: OrderRequest, *, manual: bool) -> Reply:
        self.sent.append(req)
        return Reply(ok=True, result={"order_id": f"O{len(self.sent)}"})

    def place_conditional_close(self, *args: Any) -> Reply:
        raise AssertionError("an entry never closes")

    def unit(self) -> Any:
        import contextlib

        return contextlib.nullcontext()


def _feed_book(prices: list[int], trigger: int, op: TriggerOp, *, trailing: int) -> list[int]:
    """Indexes of the ticks after which the book sent an order."""
    with (
        tempfile.TemporaryDirectory() as tmp,
        AccountDatabase(Path(tmp) / "t.db", checkpoint_tick=None) as db,
    ):
        host = _BookHost(db)
        book = ConditionalBook(host)  # type: ignore[arg-type]

        async def run() -> list[int]:
            stamp = now()
            book._save(
                ConditionalOrder(
                    account_id="H1",
                    cond_id="C1",
                    vt_symbol="x2705.DCE",
                    kind=CondKind.ENTRY,
                    source=TriggerSource.LAST,
                    op=op,
                    trigger_price=float(trigger),
                    direction=Direction.LONG,
                    offset=Offset.OPEN,
                    volume=1,
                    price_type=CondPrice.BEST,
                    trailing=float(trailing),
                    created_at=stamp,
                    updated_at=stamp,
                )
            )
            sent_at: list[int] = []
            for i, p in enumerate(prices):
                tick = Tick(
                    vt_symbol="x2705.DCE", datetime=stamp, last_price=float(p), bid_price_1=p, ask_price_1=p
                )
                before = len(host.sent)
                book.on_tick(tick)
                await asyncio.sleep(0)  # the send leaves after the tick
                sent_at += [i] * (len(host.sent) - before)
            stored = db.load_conditionals()
            assert len(stored) == 1
            assert stored[0].state is (CondState.TRIGGERED if sent_at else CondState.PENDING)
            return sent_at

        return asyncio.run(run())


# --------------------------------------------------------------------------- a trader


@pytest.fixture
async def trader(core_env: CoreEnv) -> AsyncIterator[Trader]:
    core_env.write_config(sim_account("CO1", SYMBOL, rate=0, mode="embedded"))
    t, task = await _start(core_env)
    try:
        yield t
    finally:
        t.stop()
        await task


async def _start(env: CoreEnv) -> tuple[Trader, asyncio.Task[None]]:
    config = load_config_file(env.config_path)
    t = Trader(config.accounts[0], config, data_dir=env.data_dir, socket_path=None)
    task = asyncio.create_task(t.run())
    await wait_until(lambda: t.gateway_status is GatewayStatus.CONNECTED and SYMBOL in t.oms.ticks)
    return t, task


def _request(trader: Trader, msg_type: str, data: object) -> Reply:
    """One request as the manager sends it, its one reply."""
    link = FakeLink()
    trader.link = link  # type: ignore[assignment]
    trader._dispatch(link, Message.new(type=msg_type, req_id=7, data=data))  # type: ignore[arg-type]
    (reply,) = [d for t, d, r in link.sent if t == "reply" and r == 7]
    return reply


def _tick(trader: Trader, last: float, **fields: float) -> Tick:
    """A quote of SYMBOL at ``last`` (its book one tick each side), as the venue would push."""
    real = trader.oms.ticks[SYMBOL]
    pricetick = trader.oms.contracts[SYMBOL].pricetick
    values: dict[str, Any] = {
        "bid_price_1": last - pricetick,
        "ask_price_1": last + pricetick,
        "bid_volume_1": 10,
        "ask_volume_1": 10,
        **fields,
    }
    return Tick(
        vt_symbol=SYMBOL,
        datetime=now(),
        last_price=last,
        limit_up=real.limit_up,
        limit_down=real.limit_down,
        pre_settlement=real.pre_settlement,
        **values,
    )


async def _push(trader: Trader, last: float, **fields: float) -> None:
    trader.on_tick(_tick(trader, last, **fields))
    await asyncio.sleep(0)  # a fired order leaves after the tick
    await asyncio.sleep(0)


def _entry(trader: Trader, op: TriggerOp, ticks_away: int, **kw: Any) -> ConditionalRequest:
    last = trader.oms.ticks[SYMBOL].last_price
    step = trader.oms.contracts[SYMBOL].pricetick
    return ConditionalRequest(
        vt_symbol=SYMBOL,
        op=op,
        trigger_price=last + ticks_away * step,
        direction=kw.pop("direction", Direction.LONG),
        volume=kw.pop("volume", 1),
        **kw,
    )


def _stop_loss(trader: Trader, lots: int, *, ticks_below: int = 5, **kw: Any) -> ConditionalRequest:
    """A stop-loss on the long position: SELL CLOSE ``lots`` once last is ``ticks_below`` ticks down."""
    return _entry(
        trader,
        TriggerOp.LE,
        -ticks_below,
        kind=CondKind.STOP_LOSS,
        direction=Direction.SHORT,
        offset=Offset.CLOSE,
        volume=lots,
        **kw,
    )


def _cond(trader: Trader, cond_id: str) -> ConditionalOrder:
    (stored,) = [c for c in trader.db.load_conditionals(limit=1000) if c.cond_id == cond_id]  # type: ignore[union-attr]
    return stored


async def _long(trader: Trader, lots: int) -> None:
    tick = trader.oms.ticks[SYMBOL]
    buy = OrderRequest(vt_symbol=SYMBOL, direction=Direction.LONG, price=tick.limit_up, volume=lots)
    assert _request(trader, "order_req", buy).ok
    await wait_until(
        lambda: (p := trader.oms.position(SYMBOL, Direction.LONG)) is not None and p.volume == lots
    )


async def test_an_entry_fires_once_when_crossed_through_the_risk_rules(trader: Trader) -> None:
    reply = _request(trader, "cond_req", _entry(trader, TriggerOp.GE, 5))
    assert reply.ok, reply.error
    cond_id = reply.result["cond_id"]
    assert _cond(trader, cond_id).state is CondState.PENDING  # on disk before the reply
    trigger = _cond(trader, cond_id).trigger_price
    orders_before = set(trader.oms.orders)

    await _push(trader, trigger - 1)  # not yet
    assert _cond(trader, cond_id).state is CondState.PENDING
    await _push(trader, trigger)  # crosses
    await wait_until(lambda: _cond(trader, cond_id).order_id)
    stored = _cond(trader, cond_id)
    assert stored.state is CondState.TRIGGERED and stored.message.startswith("sent")
    new = set(trader.oms.orders) - orders_before
    assert new == {stored.order_id}
    order = trader.oms.orders[stored.order_id]
    assert (
        order.direction is Direction.LONG and order.offset is Offset.OPEN and order.price == trigger + 1
    )  # the ask
    for _ in range(3):  # it never fires again
        await _push(trader, trigger + 3)
    assert set(trader.oms.orders) - orders_before == {stored.order_id}


async def test_creation_refuses_with_reasons(trader: Trader) -> None:
    refused = _request(trader, "cond_req", _entry(trader, TriggerOp.LE, 2))
    assert not refused.ok and "already holds" in refused.error
    off_grid = _entry(trader, TriggerOp.GE, 5)
    off_grid.trigger_price += 0.3
    assert "tick grid" in _request(trader, "cond_req", off_grid).error
    stop = _entry(
        trader, TriggerOp.LE, -5, kind=CondKind.STOP_LOSS, direction=Direction.SHORT, offset=Offset.CLOSE
    )
    assert "no long" in _request(trader, "cond_req", stop).error
    await _long(trader, 1)
    wrong_way = _entry(
        trader, TriggerOp.GE, 5, kind=CondKind.STOP_LOSS, direction=Direction.SHORT, offset=Offset.CLOSE
    )
    assert "use <=" in _request(trader, "cond_req", wrong_way).error
    assert trader.db.load_conditionals() == []  # type: ignore[union-attr]  # nothing refused is kept


async def test_a_refusal_at_firing_is_kept_with_its_reason(trader: Trader) -> None:
    req = _entry(trader, TriggerOp.GE, 5, price_type=CondPrice.LIMIT)
    req.price = trader.oms.ticks[SYMBOL].limit_up + 100 * trader.oms.contracts[SYMBOL].pricetick
    cond_id = _request(trader, "cond_req", req).result["cond_id"]
    await _push(trader, req.trigger_price)
    await wait_until(lambda: _cond(trader, cond_id).order_id)
    stored = _cond(trader, cond_id)
    assert stored.state is CondState.TRIGGERED and stored.message.startswith("refused:"), stored.message
    assert "limit" in stored.message
    assert trader.oms.orders[stored.order_id].status is Status.REJECTED


async def test_paused_while_halted_or_the_venue_is_down(trader: Trader) -> None:
    cond_id = _request(trader, "cond_req", _entry(trader, TriggerOp.GE, 5)).result["cond_id"]
    trigger = _cond(trader, cond_id).trigger_price
    assert _request(trader, "state_req", StateRequest(state=TradingState.HALTED)).ok
    await _push(trader, trigger + 2)
    assert _cond(trader, cond_id).state is CondState.PENDING
    assert _request(trader, "state_req", StateRequest(state=TradingState.ACTIVE)).ok
    trader.on_status(GatewayStatus.DISCONNECTED, "test: line down")
    await _push(trader, trigger + 2)
    assert _cond(trader, cond_id).state is CondState.PENDING
    trader.on_status(GatewayStatus.CONNECTED, "test: back")
    await _push(trader, trigger + 2)
    await wait_until(lambda: _cond(trader, cond_id).order_id)
    assert _cond(trader, cond_id).state is CondState.TRIGGERED


async def test_the_kill_switch_suspends_and_only_a_rearm_after_resume_brings_them_back(
    trader: Trader,
) -> None:
    cond_id = _request(trader, "cond_req", _entry(trader, TriggerOp.GE, 5)).result["cond_id"]
    trigger = _cond(trader, cond_id).trigger_price
    killed = _request(trader, "kill_req", KillRequest())
    assert killed.result["conditionals_suspended"] == 1
    assert _cond(trader, cond_id).state is CondState.SUSPENDED
    rearm = _request(trader, "cond_cmd_req", ConditionalCommand(action="rearm"))
    assert not rearm.ok and "HALTED" in rearm.error
    assert _request(trader, "state_req", StateRequest(state=TradingState.ACTIVE)).ok
    await _push(trader, trigger + 2)
    assert _cond(trader, cond_id).state is CondState.SUSPENDED  # a resume alone does not re-arm
    rearm = _request(trader, "cond_cmd_req", ConditionalCommand(action="rearm"))
    assert rearm.ok and rearm.result["rearmed"] == 1
    await _push(trader, trigger + 2)
    await wait_until(lambda: _cond(trader, cond_id).order_id)
    assert _cond(trader, cond_id).state is CondState.TRIGGERED


async def test_a_trailing_stop_loss_follows_then_closes_with_explicit_offsets(trader: Trader) -> None:
    await _long(trader, 2)
    step = trader.oms.contracts[SYMBOL].pricetick
    last = trader.oms.ticks[SYMBOL].last_price
    req = _stop_loss(trader, 2, ticks_below=10, trailing=10 * step)
    reply = _request(trader, "cond_req", req)
    assert reply.ok, reply.error
    cond_id = reply.result["cond_id"]
    assert "stop-loss, trailing" in reply.result["words"]
    await _push(trader, last + 20 * step)  # up 20 ticks: the stop follows to 10 below
    assert _cond(trader, cond_id).trigger_price == last + 10 * step
    await _push(trader, last + 5 * step)  # down again: the stop stays
    assert _cond(trader, cond_id).trigger_price == last + 10 * step
    await _push(trader, last + 10 * step)  # hit
    await wait_until(lambda: _cond(trader, cond_id).order_id)
    stored = _cond(trader, cond_id)
    assert stored.state is CondState.TRIGGERED, stored.message
    (order,) = [trader.oms.orders[o] for o in stored.order_id.split(",")]
    assert order.offset is Offset.CLOSETODAY and order.direction is Direction.SHORT and order.volume == 2


async def test_a_stop_whose_position_is_closed_is_cancelled_and_sends_nothing(trader: Trader) -> None:
    await _long(trader, 1)
    last = trader.oms.ticks[SYMBOL].last_price
    step = trader.oms.contracts[SYMBOL].pricetick
    stop = _stop_loss(trader, 1, ticks_below=5)
    cond_id = _request(trader, "cond_req", stop).result["cond_id"]
    sell = OrderRequest(
        vt_symbol=SYMBOL,
        direction=Direction.SHORT,
        offset=Offset.CLOSE,
        price=trader.oms.ticks[SYMBOL].limit_down,
        volume=1,
    )
    assert _request(trader, "order_req", sell).ok
    await wait_until(
        lambda: (
            trader.oms.position(SYMBOL, Direction.LONG) is None
            or trader.oms.position(SYMBOL, Direction.LONG).volume == 0
        )
    )  # type: ignore[union-attr]
    # flat: the stop that protected it is cancelled, and a later long is not closed by it
    await wait_until(lambda: _cond(trader, cond_id).state is CondState.CANCELLED)
    assert _cond(trader, cond_id).message == "its long position was closed"
    await _long(trader, 2)  # (not 1: the duplicate rule)
    orders = set(trader.oms.orders)
    await _push(trader, last - 5 * step)
    assert set(trader.oms.orders) == orders


async def test_a_day_order_expires_with_its_trading_day(trader: Trader) -> None:
    cond_id = _request(trader, "cond_req", _entry(trader, TriggerOp.GE, 5, expiry=CondExpiry.DAY)).result[
        "cond_id"
    ]
    trader.conditionals.expire_due(now())
    assert _cond(trader, cond_id).state is CondState.PENDING
    trader.conditionals.expire_due(now() + timedelta(days=30))  # surely another trading day
    stored = _cond(trader, cond_id)
    assert stored.state is CondState.EXPIRED and "expired" in stored.message


async def test_cancel(trader: Trader) -> None:
    cond_id = _request(trader, "cond_req", _entry(trader, TriggerOp.GE, 5)).result["cond_id"]
    assert _request(trader, "cond_cmd_req", ConditionalCommand(action="cancel", cond_id=cond_id)).ok
    assert _cond(trader, cond_id).state is CondState.CANCELLED
    again = _request(trader, "cond_cmd_req", ConditionalCommand(action="cancel", cond_id=cond_id))
    assert not again.ok and "already CANCELLED" in again.error
    unknown = _request(trader, "cond_cmd_req", ConditionalCommand(action="cancel", cond_id="COND.nope"))
    assert not unknown.ok and "unknown" in unknown.error


async def test_a_triggered_one_found_without_its_order_at_start_is_said_so_never_sent(
    core_env: CoreEnv,
) -> None:
    core_env.write_config(sim_account("CO1", SYMBOL, rate=0, mode="embedded"))
    t, task = await _start(core_env)
    cond_id = _request(t, "cond_req", _entry(t, TriggerOp.GE, 5)).result["cond_id"]
    cond = _cond(t, cond_id)
    # what a SIGKILL between the TRIGGERED commit and the send leaves behind
    t.db.save_conditional(msgspec.structs.replace(cond, state=CondState.TRIGGERED, message="fired"))  # type: ignore[union-attr]
    t.stop()
    await task
    t, task = await _start(core_env)
    try:
        stored = _cond(t, cond_id)
        # the venue's push lists no order of it: it never went out, and nothing is sent now
        assert stored.state is CondState.TRIGGERED and stored.message == NONE_AT_VENUE and not stored.order_id
        orders = set(t.oms.orders)
        await _push(t, cond.trigger_price + 1)
        assert set(t.oms.orders) == orders
        assert cond_id in {c.cond_id for c in t.snapshot().conditionals}
    finally:
        t.stop()
        await task


def test_hostile_requests_are_refused_at_decode() -> None:
    from core.protocol import SchemaError, decode_payload

    base = {"vt_symbol": SYMBOL, "op": "GE", "trigger_price": 3700.0, "direction": "LONG", "volume": 1}
    for bad in (
        {"trigger_price": float("inf")},
        {"trigger_price": -1},
        {"volume": 0.5},
        {"volume": 1e9},
        {"vt_symbol": "x" * 100},
        {"offset_ticks": 10**6},
        {"op": "NE"},
        {"reference": "a\nb"},
    ):
        payload = msgspec.json.encode({"type": "cond_req", "req_id": 1, "data": {**base, **bad}})
        with pytest.raises(SchemaError):
            decode_payload(payload)
    assert decode_payload(msgspec.json.encode({"type": "cond_req", "data": base})).data.volume == 1


# --------------------------------------------------------------------------- reverse


async def _resting_reverse(trader: Trader, timeout: float) -> tuple[Reply, set[str]]:
    """A long of 2 and a reverse whose close cannot fill: the quote says the bid is 30 ticks
    above where the venue's book is, so the close at that bid rests."""
    await _long(trader, 2)
    step = trader.oms.contracts[SYMBOL].pricetick
    await _push(trader, trader.oms.ticks[SYMBOL].last_price + 30 * step)
    before = set(trader.oms.orders)
    reply = _request(
        trader, "reverse_req", ReverseRequest(vt_symbol=SYMBOL, direction=Direction.LONG, timeout=timeout)
    )
    return reply, before


def _opens(trader: Trader, before: set[str]) -> list[str]:
    return [o for o in set(trader.oms.orders) - before if trader.oms.orders[o].offset is Offset.OPEN]


async def test_a_reverse_whose_close_does_not_fill_in_time_sends_no_open(
    trader: Trader, caplog: pytest.LogCaptureFixture
) -> None:
    reply, before = await _resting_reverse(trader, timeout=0.3)
    assert reply.ok, reply.error
    assert "once the close fills" in reply.result["open"]
    (leg,) = reply.result["close"]
    assert trader.oms.orders[leg["order_id"]].is_active
    await wait_until(lambda: "did not fill within 0.3 s" in caplog.text, what="the operator told")
    assert "the open is NOT sent" in caplog.text and "still working" in caplog.text
    assert _opens(trader, before) == []


async def test_a_reverse_whose_close_is_cancelled_sends_no_open(
    trader: Trader, caplog: pytest.LogCaptureFixture
) -> None:
    reply, before = await _resting_reverse(trader, timeout=30)
    (leg,) = reply.result["close"]
    assert _request(trader, "cancel_req", CancelRequest(order_id=leg["order_id"])).ok
    await wait_until(lambda: "CANCELLED" in caplog.text and "the open is NOT sent" in caplog.text)
    assert _opens(trader, before) == []


async def test_a_reverse_opens_once_the_close_fills_later(trader: Trader) -> None:
    reply, before = await _resting_reverse(trader, timeout=30)
    (leg,) = reply.result["close"]
    # the market comes up to the resting close: it fills, and only then the open goes out
    trader.gateway.engine._markets[SYMBOL].last += 40  # type: ignore[union-attr]
    trader.gateway.step(SYMBOL)  # type: ignore[union-attr]
    await wait_until(lambda: not trader.oms.orders[leg["order_id"]].is_active)
    assert trader.oms.orders[leg["order_id"]].status is Status.ALLTRADED
    await wait_until(lambda: _opens(trader, before), what="the open sent after the fill")
    (open_id,) = _opens(trader, before)
    opened = trader.oms.orders[open_id]
    assert opened.direction is Direction.SHORT and opened.volume == 2


async def test_a_reverse_is_refused_up_front_when_it_could_not_open(trader: Trader) -> None:
    await _long(trader, 1)
    assert _request(trader, "state_req", StateRequest(state=TradingState.REDUCING)).ok
    before = set(trader.oms.orders)
    reply = _request(trader, "reverse_req", ReverseRequest(vt_symbol=SYMBOL, direction=Direction.LONG))
    assert not reply.ok and "REDUCING" in reply.error and "nothing was sent" in reply.error
    assert set(trader.oms.orders) == before


# --------------------------------------------------------------------------- strategies


async def test_a_strategy_places_a_conditional_order_that_fires_in_its_name(core_env: CoreEnv) -> None:
    strategy_dir = core_env.root / "user_strategies"
    strategy_dir.mkdir()
    (strategy_dir / "scripted.py").write_text(
        "from strategies.base import Strategy\n\n\nclass Scripted(Strategy):\n"
        "    def bars_needed(self) -> int:\n        return 0\n"
    )
    account = sim_account("CO1", SYMBOL, rate=0, mode="embedded").replace(
        "    gateway: sim\n", "    gateway: sim\n    auto_trading: true\n"
    )
    strategies = f"""
    strategies:
      - name: s1
        class: Scripted
        symbol: {SYMBOL}
"""
    core_env.write_config(account + strategies, extra=f"strategy_path: {strategy_dir}")
    t, task = await _start(core_env)
    try:
        await wait_until(lambda: t.strategies is not None and "s1" in t.strategies.instances)
        engine = t.strategies
        assert engine is not None
        inst = engine.instances["s1"]
        reply = engine.place_conditional(inst, _entry(t, TriggerOp.GE, 5))
        assert reply.ok, reply.error
        cond_id = reply.result["cond_id"]
        assert _cond(t, cond_id).reference == "s1"
        trigger = t.db.load_triggers()[-1]  # type: ignore[union-attr]
        assert trigger.instance == "s1" and trigger.action == "conditional" and trigger.order_id == cond_id
        # another strategy's (or the operator's) cancel by reference is refused
        assert not t.conditionals.cancel(cond_id, reference="s2").ok
        await _push(t, _cond(t, cond_id).trigger_price)
        await wait_until(lambda: _cond(t, cond_id).order_id)
        order = t.oms.orders[_cond(t, cond_id).order_id]
        assert order.reference == "s1"
    finally:
        t.stop()
        await task


async def test_an_attaching_console_gets_the_conditional_orders_and_the_number_armed_is_bounded(
    trader: Trader, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core import conditional
    from core.aggregator import DataAggregator
    from core.control import console_state

    cond_id = _request(trader, "cond_req", _entry(trader, TriggerOp.GE, 5)).result["cond_id"]
    agg = DataAggregator()
    agg.add_account("CO1", "sim")
    agg.apply("CO1", Message.new(type="snapshot", account_id="CO1", data=trader.snapshot()))
    assert agg.states["CO1"].conditionals[cond_id].state is CondState.PENDING
    view = console_state(agg.states["CO1"], 16 * 1024 * 1024)
    assert view.snapshot is not None and [c.cond_id for c in view.snapshot.conditionals] == [cond_id]

    monkeypatch.setattr(conditional, "MAX_LIVE", 1)
    refused = _request(trader, "cond_req", _entry(trader, TriggerOp.GE, 6))
    assert not refused.ok and "already armed" in refused.error


async def test_a_triggered_one_whose_order_reached_the_venue_but_not_the_database_gets_its_id(
    core_env: CoreEnv,
) -> None:
    import sqlite3

    from storage import database_path

    core_env.write_config(sim_account("CO1", SYMBOL, rate=0, mode="embedded"))
    t, task = await _start(core_env)
    cond_id = _request(t, "cond_req", _entry(t, TriggerOp.GE, 5)).result["cond_id"]
    cond = _cond(t, cond_id)
    stamp = now()
    t.db.save_conditional(  # type: ignore[union-attr]
        msgspec.structs.replace(cond, state=CondState.TRIGGERED, message="fired", triggered_at=stamp)
    )
    # its order went out (a resting buy) and the trader died before recording it
    tick = t.oms.ticks[SYMBOL]
    resting = OrderRequest(vt_symbol=SYMBOL, direction=Direction.LONG, price=tick.limit_down, volume=1)
    sent_id = t.gateway.send_order(resting)  # type: ignore[union-attr]
    t.stop()
    await task
    with sqlite3.connect(database_path(core_env.data_dir, "CO1")) as conn:
        conn.execute("DELETE FROM orders WHERE order_id = ?", (sent_id,))
    t, task = await _start(core_env)
    try:
        await wait_until(lambda: _cond(t, cond_id).order_id, what="the venue's order matched to it")
        stored = _cond(t, cond_id)
        assert stored.order_id == sent_id and stored.message.startswith(FOUND_AT_VENUE)
        assert stored.state is CondState.TRIGGERED
    finally:
        t.stop()
        await task


async def test_a_conditional_order_on_a_contract_off_the_watchlist_subscribes_its_quotes(
    trader: Trader,
) -> None:
    other = "ag2612.SHFE"
    assert other not in trader.oms.ticks
    req = ConditionalRequest(
        vt_symbol=other, op=TriggerOp.GE, trigger_price=99_999, direction=Direction.LONG, volume=1
    )
    reply = _request(trader, "cond_req", req)
    assert reply.ok, reply.error
    await wait_until(lambda: other in trader.oms.ticks, what="its quotes, which it watches")
    assert other in trader.conditionals.symbols()


async def test_a_tick_while_the_market_is_closed_does_not_fire_it(core_env: CoreEnv) -> None:
    """A tick the venue pushes outside the contract's sessions (the closing print, a settlement
    update after 15:00) must not consume a conditional order: its order would be refused
    ``market closed`` and the position left unprotected at the next open. It waits (PENDING)
    and fires on the first crossing tick of an open market."""
    core_env.write_config(
        sim_account("CO1", SYMBOL, rate=0, mode="embedded").replace(
            "tick_rate: 0}", 'tick_rate: 0, sessions: true, clock_start: "2026-12-04T09:30:00+08:00"}'
        )
    )
    t, task = await _start(core_env)
    try:
        assert t.account.sim.sessions
        cond_id = _request(t, "cond_req", _entry(t, TriggerOp.GE, 5)).result["cond_id"]
        trigger = _cond(t, cond_id).trigger_price
        venue_clock = t.gateway.now  # type: ignore[union-attr]
        closed_at = datetime(2026, 12, 4, 15, 20, tzinfo=CHINA_TZ)  # Friday, after the day close
        t.gateway.now = lambda: closed_at  # type: ignore[union-attr,method-assign]
        orders = set(t.oms.orders)
        await _push(t, trigger + 1)
        stored = _cond(t, cond_id)
        assert stored.state is CondState.PENDING, stored.message
        assert set(t.oms.orders) == orders  # nothing sent, nothing refused
        t.gateway.now = venue_clock  # type: ignore[union-attr,method-assign]
        await _push(t, trigger + 1)  # open again: it fires, once
        await wait_until(lambda: _cond(t, cond_id).order_id)
        assert _cond(t, cond_id).message.startswith("sent"), _cond(t, cond_id).message
    finally:
        t.stop()
        await task


async def test_a_stop_whose_position_was_closed_while_the_venue_was_away_is_cancelled(
    trader: Trader,
) -> None:
    """A position closed while the trader was not listening (a lost session, a restart: the
    close reaches it in the venue's push, while it reconciles) takes its stop-loss with it,
    once the push is applied: it never closes a position opened later."""
    await _long(trader, 1)
    last = trader.oms.ticks[SYMBOL].last_price
    step = trader.oms.contracts[SYMBOL].pricetick
    stop = _stop_loss(trader, 1, ticks_below=5)
    cond_id = _request(trader, "cond_req", stop).result["cond_id"]
    trader.on_status(GatewayStatus.DISCONNECTED, "test: session lost")
    # the close that happened meanwhile (another terminal, a forced close), as the venue replays it
    assert trader.gateway is not None
    trader.gateway.send_order(
        OrderRequest(
            vt_symbol=SYMBOL,
            direction=Direction.SHORT,
            offset=Offset.CLOSETODAY,
            price=trader.oms.ticks[SYMBOL].limit_down,
            volume=1,
            reference="elsewhere",
        )
    )
    await wait_until(
        lambda: (p := trader.oms.position(SYMBOL, Direction.LONG)) is None or p.volume == 0,
        what="the long closed at the venue",
    )
    trader.on_status(GatewayStatus.CONNECTED, "test: back")
    stored = _cond(trader, cond_id)
    assert stored.state is CondState.CANCELLED, stored.message
    assert stored.message == "its long position was closed"
    await _long(trader, 2)  # a new long: the old stop does not close it
    orders = set(trader.oms.orders)
    await _push(trader, last - 5 * step)
    assert set(trader.oms.orders) == orders


async def test_a_stop_hit_while_working_closes_hold_its_lots_waits_and_is_not_consumed(
    trader: Trader,
) -> None:
    """A stop-loss hit while the operator's own close order holds every lot (a take-profit
    resting above) sends nothing it could not, and is not used up as if the position were gone:
    it says so and waits; once that close is cancelled, the next crossing tick fires it."""
    await _long(trader, 2)
    last = trader.oms.ticks[SYMBOL].last_price
    step = trader.oms.contracts[SYMBOL].pricetick
    stop = _stop_loss(trader, 2, ticks_below=5)
    cond_id = _request(trader, "cond_req", stop).result["cond_id"]
    resting = _request(
        trader,
        "order_req",
        OrderRequest(
            vt_symbol=SYMBOL,
            direction=Direction.SHORT,
            offset=Offset.CLOSETODAY,
            price=trader.oms.ticks[SYMBOL].limit_up,
            volume=2,
        ),
    )
    assert resting.ok, resting.error
    resting_id = resting.result["order_id"]
    await wait_until(lambda: trader.oms.orders[resting_id].is_active)
    orders = set(trader.oms.orders)
    await _push(trader, last - 5 * step)  # hit: nothing closable
    stored = _cond(trader, cond_id)
    assert stored.state is CondState.PENDING, stored.message
    assert "working close orders" in stored.message
    assert set(trader.oms.orders) == orders
    assert _request(trader, "cancel_req", CancelRequest(order_id=resting_id)).ok
    await wait_until(lambda: not trader.oms.orders[resting_id].is_active)
    await _push(trader, last - 6 * step)
    await wait_until(lambda: _cond(trader, cond_id).order_id)
    stored = _cond(trader, cond_id)
    assert stored.state is CondState.TRIGGERED and stored.message.startswith("sent"), stored.message


async def test_one_that_fires_as_the_kill_switch_is_pulled_is_suspended_not_sent(trader: Trader) -> None:
    """Fired on a tick, its send still to leave, the kill switch comes first: nothing is sent
    and it is SUSPENDED like every pending one (re-armed by the operator), not used up; one that
    fires as the venue goes away is armed again, its order not sent."""
    halted = _request(trader, "cond_req", _entry(trader, TriggerOp.GE, 5)).result["cond_id"]
    trigger = _cond(trader, halted).trigger_price
    orders = set(trader.oms.orders)
    trader.on_tick(_tick(trader, trigger))  # fires; its order leaves after the tick
    assert _request(trader, "kill_req", KillRequest()).ok
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    stored = _cond(trader, halted)
    assert stored.state is CondState.SUSPENDED and not stored.order_id, stored.message
    assert set(trader.oms.orders) == orders
    trader._set_trading_state(TradingState.ACTIVE)
    assert _request(trader, "cond_cmd_req", ConditionalCommand(action="rearm")).ok
    assert _cond(trader, halted).state is CondState.PENDING

    trader.on_tick(_tick(trader, trigger))  # fires again (nothing went out), and the venue goes
    trader.on_status(GatewayStatus.DISCONNECTED, "test: session lost")
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    stored = _cond(trader, halted)
    assert stored.state is CondState.PENDING and not stored.order_id, stored.message
    assert set(trader.oms.orders) == orders


async def test_a_reverse_is_refused_up_front_while_another_order_on_the_contract_works(
    trader: Trader,
) -> None:
    """A working order on the contract that is not a close of this position (an open resting
    below, a close of the other side) would leave a position the operator never confirmed once
    it fills, or meet the reverse's own orders: nothing is sent, and the reply names it."""
    await _long(trader, 2)
    resting = OrderRequest(
        vt_symbol=SYMBOL,
        direction=Direction.LONG,
        offset=Offset.OPEN,
        price=trader.oms.ticks[SYMBOL].limit_down,
        volume=1,
    )
    reply = _request(trader, "order_req", resting)
    assert reply.ok, reply.error
    resting_id = reply.result["order_id"]
    await wait_until(lambda: trader.oms.orders[resting_id].is_active)
    before = set(trader.oms.orders)
    reply = _request(trader, "reverse_req", ReverseRequest(vt_symbol=SYMBOL, direction=Direction.LONG))
    assert not reply.ok and resting_id in reply.error and "nothing was sent" in reply.error, reply.error
    assert set(trader.oms.orders) == before


async def test_a_stop_and_a_take_profit_hit_on_one_tick_close_the_lots_once(trader: Trader) -> None:
    """A stop on the bid and a take-profit on the ask, both hit by one wide quote: one close of
    the position's lot goes out, never two; the other sends nothing and says so."""
    await _long(trader, 1)
    last = trader.oms.ticks[SYMBOL].last_price
    step = trader.oms.contracts[SYMBOL].pricetick
    await _push(trader, last)  # a quote one tick each side

    def protect(kind: CondKind, source: TriggerSource, op: TriggerOp, ticks: int) -> str:
        req = ConditionalRequest(
            vt_symbol=SYMBOL,
            kind=kind,
            source=source,
            op=op,
            trigger_price=last + ticks * step,
            direction=Direction.SHORT,
            offset=Offset.CLOSE,
            volume=1,
        )
        reply = _request(trader, "cond_req", req)
        assert reply.ok, reply.error
        return reply.result["cond_id"]

    stop = protect(CondKind.STOP_LOSS, TriggerSource.BID, TriggerOp.LE, -5)
    take = protect(CondKind.TAKE_PROFIT, TriggerSource.ASK, TriggerOp.GE, 5)
    before = set(trader.oms.orders)
    await _push(trader, last, bid_price_1=last - 5 * step, ask_price_1=last + 5 * step)
    await wait_until(lambda: all(_cond(trader, c).state is not CondState.PENDING for c in (stop, take)))
    await wait_until(lambda: any(_cond(trader, c).order_id for c in (stop, take)))
    sent = [trader.oms.orders[o] for o in set(trader.oms.orders) - before]
    assert [(o.direction, o.volume) for o in sent] == [(Direction.SHORT, 1)]
    other = next(_cond(trader, c) for c in (stop, take) if not _cond(trader, c).order_id)
    assert other.state is CondState.CANCELLED and other.message.startswith("nothing sent: "), other.message
