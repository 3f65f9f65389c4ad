"""The one SHFE/INE close policy: the trader decides the offsets, never a gateway.

A plain CLOSE, the console's close and a strategy's exit of the same position all become
the same explicit orders (yesterday's lots with CLOSEYESTERDAY first, then CLOSETODAY),
before any venue sees them. Each gateway's own test shows it sends exactly the offsets it
is given; here the trader in this process (sim venue, requests recorded as the gateway gets
them) shows what it gives.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from core.models import Direction, GatewayStatus, Offset, OrderRequest, Position, Status, TradingState, now
from core.protocol import CloseRequest, Reply
from core.trader import Trader
from gateways.sim import SimGateway
from tests.conftest import CoreEnv, sim_account, wait_until

RB = "rb2705.SHFE"
M = "m2705.DCE"


@pytest.fixture
def risk() -> str:
    """The account's risk section (YAML); a test overrides it with its own limits."""
    return ""


@pytest.fixture
async def trader(core_env: CoreEnv, monkeypatch: pytest.MonkeyPatch, risk: str) -> AsyncIterator[Trader]:
    sent: list[OrderRequest] = []
    real_send = SimGateway.send_order

    def recording_send(self: SimGateway, req: OrderRequest) -> str:
        sent.append(req)
        return real_send(self, req)

    monkeypatch.setattr(SimGateway, "send_order", recording_send)
    config = core_env.write_config(sim_account("U1", f"{RB}, {M}", rate=0) + risk)
    t = Trader(config.accounts[0], config, data_dir=core_env.data_dir, socket_path=None)
    t.sent = sent  # type: ignore[attr-defined]
    task = asyncio.create_task(t.run())
    await wait_until(
        lambda: t.gateway_status is GatewayStatus.CONNECTED and RB in t.oms.ticks and M in t.oms.ticks
    )
    # a long position as the venue reports it: 3 lots from yesterday, 2 opened today
    for vt_symbol in (RB, M):
        t.oms.update_position(
            Position(
                account_id="U1",
                vt_symbol=vt_symbol,
                direction=Direction.LONG,
                volume=5,
                yd_volume=3,
                price=1.0,
            )
        )
    try:
        yield t
    finally:
        t.stop()
        await task


def _legs(trader: Trader) -> list[tuple[Offset, float, str]]:
    return [(r.offset, r.volume, r.reference) for r in trader.sent]  # type: ignore[attr-defined]


def _plain_close(vt_symbol: str, volume: float, price: float) -> OrderRequest:
    return OrderRequest(
        vt_symbol=vt_symbol, direction=Direction.SHORT, offset=Offset.CLOSE, price=price, volume=volume
    )


async def test_a_plain_shfe_close_is_sent_as_yesterday_then_today(trader: Trader) -> None:
    price = trader.oms.ticks[RB].bid_price_1
    reply = trader.place_order(_plain_close(RB, 5, price))
    assert _legs(trader) == [(Offset.CLOSEYESTERDAY, 3, "manual"), (Offset.CLOSETODAY, 2, "manual")]
    ids = reply.result["order_id"].split(",")
    assert len(ids) == 2 and all(trader.oms.orders[i].offset.is_close for i in ids)
    assert [o["offset"] for o in reply.result["orders"]] == ["CLOSEYESTERDAY", "CLOSETODAY"]


async def test_a_plain_close_of_yesterdays_lots_only_is_one_order(trader: Trader) -> None:
    price = trader.oms.ticks[RB].bid_price_1
    reply = trader.place_order(_plain_close(RB, 2, price))
    assert _legs(trader) == [(Offset.CLOSEYESTERDAY, 2, "manual")]
    assert "," not in reply.result["order_id"]


async def test_the_console_close_sends_the_same_orders(trader: Trader) -> None:
    reply = trader._on_close_req(CloseRequest(vt_symbol=RB, direction=Direction.LONG))
    assert _legs(trader) == [(Offset.CLOSEYESTERDAY, 3, "manual"), (Offset.CLOSETODAY, 2, "manual")]
    assert [(o["offset"], o["volume"]) for o in reply.result["orders"]] == [
        ("CLOSEYESTERDAY", 3),
        ("CLOSETODAY", 2),
    ]
    assert "order_id" not in reply.result  # a close answers leg by leg


async def test_a_strategy_exit_builds_the_same_orders(trader: Trader) -> None:
    requests = trader.oms.close_requests(RB, Direction.LONG, 5, 3000.0, reference="trend")
    assert [(r.offset, r.volume, r.direction, r.reference) for r in requests] == [
        (Offset.CLOSEYESTERDAY, 3, Direction.SHORT, "trend"),
        (Offset.CLOSETODAY, 2, Direction.SHORT, "trend"),
    ]


async def test_elsewhere_a_plain_close_stays_one_close(trader: Trader) -> None:
    price = trader.oms.ticks[M].bid_price_1
    trader.place_order(_plain_close(M, 5, price))
    assert _legs(trader) == [(Offset.CLOSE, 5, "manual")]


async def test_a_plain_close_over_the_closable_volume_is_refused_locally(trader: Trader) -> None:
    price = trader.oms.ticks[RB].bid_price_1
    reply = trader.place_order(_plain_close(RB, 6, price))
    assert not reply.ok
    assert "closable" in reply.error and "today 2, yesterday 3" in reply.error
    assert _legs(trader) == []  # nothing reached the venue
    refused = trader.oms.orders[reply.result["order_id"]]
    assert refused.status is Status.REJECTED and refused.offset is Offset.CLOSE


@pytest.mark.parametrize("volume", [0, -1, 1.5, float("nan")])
async def test_a_bad_close_volume_gets_the_risk_rules_words(trader: Trader, volume: float) -> None:
    reply: Reply = trader.place_order(_plain_close(RB, volume, trader.oms.ticks[RB].bid_price_1))
    assert not reply.ok
    assert reply.error.startswith(("volume", "number")), reply.error
    assert _legs(trader) == []


async def test_a_plain_close_on_a_halted_account_is_one_refusal_in_the_states_words(trader: Trader) -> None:
    trader._set_trading_state(TradingState.HALTED)
    before = len(trader.oms.orders)
    reply = trader.place_order(_plain_close(RB, 5, trader.oms.ticks[RB].bid_price_1))
    assert not reply.ok and reply.error.startswith("halted: account is HALTED")
    assert len(trader.oms.orders) == before + 1  # the request, kept once, not once per leg
    assert trader.oms.orders[reply.result["order_id"]].offset is Offset.CLOSE
    assert _legs(trader) == []


async def test_a_plain_close_while_the_venue_is_down_says_so(trader: Trader) -> None:
    trader.on_status(GatewayStatus.DISCONNECTED, "front lost")
    reply = trader.place_order(_plain_close(RB, 5, trader.oms.ticks[RB].bid_price_1))
    assert not reply.ok and reply.error.startswith("venue: not connected"), reply.error
    assert _legs(trader) == []


@pytest.mark.parametrize("risk", ["    risk: {max_order_volume: 4}\n"])
async def test_size_limits_hold_for_the_whole_close(trader: Trader) -> None:
    reply = trader.place_order(_plain_close(RB, 5, trader.oms.ticks[RB].bid_price_1))
    assert not reply.ok and reply.error == "max_order_volume: volume 5 > limit 4"
    assert _legs(trader) == []  # not sent as 3 + 2 under the limit


@pytest.mark.parametrize("risk", ["    risk: {max_orders_per_second: 1, duplicate_window: 0}\n"])
async def test_a_close_sent_in_part_says_what_is_working(
    trader: Trader, monkeypatch: pytest.MonkeyPatch
) -> None:
    def resting(gateway: SimGateway, req: OrderRequest) -> str:  # the venue takes it and it rests
        trader.sent.append(req)  # type: ignore[attr-defined]
        order = req.order("U1", f"v{len(trader.sent)}", Status.NOTTRADED, now())  # type: ignore[attr-defined]
        trader.on_order(order)
        return order.order_id

    monkeypatch.setattr(SimGateway, "send_order", resting)
    # the whole request passes (the 1st order in the second); its second leg is the 2nd
    reply = trader.place_order(_plain_close(RB, 5, trader.oms.ticks[RB].bid_price_1))
    assert not reply.ok and reply.result["partial"]
    sent, refused = reply.result["orders"]
    assert (sent["order_id"], sent["status"]) == ("v1", "NOTTRADED")
    assert trader.oms.orders[refused["order_id"]].status is Status.REJECTED
    assert reply.error == (
        "sent CLOSEYESTERDAY 3 (order v1); refused CLOSETODAY 2: order_rate: 2 orders in 1 s > limit 1"
    )
    assert reply.result["order_id"] == f"v1,{refused['order_id']}"
    assert _legs(trader) == [(Offset.CLOSEYESTERDAY, 3, "manual")]
