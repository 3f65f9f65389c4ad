"""The bell: fills, rejections, an account going down and the kill switch ring it (as ui.bell
chooses), a burst rings once, and nothing else does."""

from __future__ import annotations

import typing

import msgspec
import pytest

from config.schema import BellEvent, UiConfig
from core.models import Direction, Offset, Order, OrderType, Status, Trade, TraderStatus, TradingState
from core.protocol import Reply
from tests.fake_client import NOW, FakeClient
from tui.alerts import BELL_EVENTS, Alerts
from tui.app import QTraderApp

ALL = BELL_EVENTS


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(Alerts, "clock", clock)
    return clock


def _trade(n: int) -> Trade:
    return Trade(
        account_id="DQ1",
        trade_id=f"T-9{n:03d}",
        order_id="DQ1-0005",
        vt_symbol="au2612.SHFE",
        direction=Direction.LONG,
        offset=Offset.OPEN,
        price=910.0,
        volume=1,
        datetime=NOW,
        reference="au_ma_rsi",
    )


def _order(order_id: str, status: Status) -> Order:
    return Order(
        account_id="DQ1",
        order_id=order_id,
        vt_symbol="au2612.SHFE",
        direction=Direction.LONG,
        offset=Offset.OPEN,
        type=OrderType.LIMIT,
        price=900.0,
        volume=1,
        status=status,
        datetime=NOW,
        status_msg="max_position: 4 > limit 3" if status is Status.REJECTED else "",
    )


async def _app(client: FakeClient, bell: typing.Iterable[str]) -> tuple[QTraderApp, list[int]]:
    app = QTraderApp(client, bell=bell)
    rings: list[int] = []
    app.bell = lambda: rings.append(1)  # type: ignore[method-assign]
    return app, rings


def test_the_config_names_the_same_events_and_rings_all_by_default() -> None:
    assert set(typing.get_args(BellEvent)) == set(BELL_EVENTS)
    assert set(UiConfig().bell) == set(BELL_EVENTS)
    with pytest.raises(ValueError, match="bell"):
        UiConfig.model_validate({"bell": ["fills"]})
    with pytest.raises(ValueError, match="unknown bell events"):
        Alerts(["fills"], lambda: None)


async def test_each_event_rings_and_a_burst_rings_once(clock: Clock) -> None:
    client = FakeClient()
    app, rings = await _app(client, ALL)
    async with app.run_test(size=(160, 45)) as pilot:
        await pilot.pause()
        assert rings == [], "starting, with an account crashed and a rejected order in the book: quiet"

        client.apply("DQ1", "order", _order("DQ1-0100", Status.SUBMITTING))  # a plain order: quiet
        client.apply("DQ1", "tick", msgspec.structs.replace(client.state("DQ1").ticks["au2612.SHFE"]))
        assert rings == []

        client.apply("DQ1", "trade", _trade(1))
        assert len(rings) == 1, "a fill rings"
        client.apply("DQ1", "trade", _trade(2))
        clock.now += 0.5
        client.apply("DQ1", "trade", _trade(3))
        assert len(rings) == 1, "a sweep of fills within a second is one ring"

        clock.now += 2
        client.apply("DQ1", "order", _order("DQ1-0101", Status.REJECTED))
        assert len(rings) == 2, "a rejected order rings"

        clock.now += 2
        client.aggregator.set_status("DQ2", TraderStatus.DISCONNECTED, "CTP trade front disconnected")
        assert len(rings) == 3, "an account going down rings"
        clock.now += 2
        client.aggregator.set_status("DQ2", TraderStatus.CONNECTING, "retry 1 in 5 s")
        client.aggregator.set_status("DQ2", TraderStatus.DISCONNECTED, "still down")
        assert len(rings) == 3, "still down: not again"

        clock.now += 2
        info = client.state("DQ1").info
        assert info is not None
        halted = msgspec.structs.replace(info, trading_state=TradingState.HALTED)
        client.apply("DQ1", "heartbeat", halted)
        assert len(rings) == 4, "the kill switch rings"
        clock.now += 2
        client.apply("DQ1", "heartbeat", msgspec.structs.replace(halted, message="still halted"))
        assert len(rings) == 4, "once, when pulled"

        clock.now += 2
        client.reply_next("cancel_all", Reply(ok=False, error="venue: not connected"))
        app.run_command("cancel all in DQ1", client.cancel_all("DQ1"))
        for _ in range(100):
            if len(rings) == 5:
                break
            await pilot.pause(0.01)
        assert len(rings) == 5, "a refused command rings"


async def test_only_the_chosen_events_ring(clock: Clock) -> None:
    client = FakeClient()
    app, rings = await _app(client, ["rejection"])
    async with app.run_test(size=(160, 45)) as pilot:
        await pilot.pause()
        client.apply("DQ1", "trade", _trade(1))
        clock.now += 2
        client.aggregator.set_status("DQ2", TraderStatus.DISCONNECTED, "down")
        assert rings == []
        clock.now += 2
        client.apply("DQ1", "order", _order("DQ1-0101", Status.REJECTED))
        assert rings == [1]
