"""Strategy exits are kept at the market: re-priced when it runs away, within limits."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from core import exit_chase as engine_module
from core.exit_chase import CHASE_AFTER, MAX_CHASES, ExitChaser
from core.models import (
    CHINA_TZ,
    Direction,
    GatewayStatus,
    Offset,
    Order,
    OrderRequest,
    Position,
    Status,
    Tick,
    TradingState,
)
from core.oms import Oms
from core.protocol import Reply
from core.strategy_engine import StrategyEngine

SYMBOL = "rb2605.SHFE"
T0 = datetime(2026, 11, 23, 10, 0, tzinfo=CHINA_TZ)


class Host:
    """The engine's trader: a real OMS; orders rest until the test says otherwise."""

    account_id = "X1"

    def __init__(self) -> None:
        self.oms = Oms("X1")
        self.db = None
        self.auto_trading = True
        self.gateway_status = GatewayStatus.CONNECTED
        self.trading_state = TradingState.ACTIVE
        self.protective_kept = False
        self.log = logging.getLogger("qtrader.test.chase")
        self.sent: list[OrderRequest] = []
        self.cancels: list[str] = []

    def place_order(self, req: OrderRequest) -> Reply:
        self.sent.append(req)
        order = Order(
            account_id="X1",
            order_id=f"o{len(self.sent)}",
            vt_symbol=req.vt_symbol,
            direction=req.direction,
            offset=req.offset,
            type=req.type,
            price=req.price,
            volume=req.volume,
            status=Status.NOTTRADED,
            datetime=T0,
            reference=req.reference,
        )
        self.oms.update_order(order)
        return Reply(ok=True, result={"order_id": order.order_id, "status": "NOTTRADED"})

    def cancel_order(self, order_id: str) -> Reply:
        self.cancels.append(order_id)
        return Reply(ok=True)

    def emit(self, msg_type: str, data: Any) -> None:
        pass


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def _tick(bid: float, ask: float) -> Tick:
    return Tick(
        account_id="X1",
        vt_symbol=SYMBOL,
        datetime=T0,
        last_price=bid,
        bid_price_1=bid,
        bid_volume_1=10,
        ask_price_1=ask,
        ask_volume_1=10,
    )


@pytest.fixture
def setup() -> tuple[StrategyEngine, Host, Clock]:
    host, clock = Host(), Clock()
    host.oms.update_position(
        Position(
            account_id="X1", vt_symbol=SYMBOL, direction=Direction.LONG, volume=3, yd_volume=0, price=3100
        )
    )
    host.oms.update_tick(_tick(3100, 3101))
    engine = StrategyEngine(host, [], clock=clock)  # type: ignore[arg-type]
    return engine, host, clock


def _exit(engine: StrategyEngine, volume: float = 3) -> str:
    """A stop-loss of the long: sell CLOSETODAY at the bid."""
    strategy = SimpleNamespace(name="guard", vt_symbol=SYMBOL)
    (reply,) = engine._close(strategy, Direction.LONG, volume, 3100)  # type: ignore[arg-type]
    assert reply.ok
    return reply.result["order_id"]


def _market(engine: StrategyEngine, host: Host, bid: float) -> None:
    tick = _tick(bid, bid + 1)
    host.oms.update_tick(tick)
    engine.on_tick(tick)


def _venue_cancels(engine: StrategyEngine, host: Host, order_id: str, traded: float = 0) -> None:
    order = host.oms.orders[order_id]
    done = Order(
        **{
            **{f: getattr(order, f) for f in order.__struct_fields__},
            "status": Status.CANCELLED,
            "traded": traded,
        }
    )
    host.oms.update_order(done)
    engine.on_order(done)


def test_an_exit_the_market_left_is_re_sent_at_the_new_best_price(
    setup: tuple[StrategyEngine, Host, Clock],
) -> None:
    engine, host, clock = setup
    first = _exit(engine)
    assert host.sent[0].price == 3100 and host.sent[0].offset is Offset.CLOSETODAY
    _market(engine, host, 3097)  # the market falls through the exit at once
    assert host.cancels == []  # given CHASE_AFTER to fill first
    clock.now += timedelta(seconds=CHASE_AFTER)
    _market(engine, host, 3096)
    assert host.cancels == [first]
    _market(engine, host, 3095)
    assert host.cancels == [first]  # one cancel per order, not one per tick
    _venue_cancels(engine, host, first, traded=1)  # one lot filled before the cancel
    again = host.sent[-1]
    assert (again.direction, again.offset, again.volume, again.price, again.reference) == (
        Direction.SHORT,
        Offset.CLOSETODAY,
        2,
        3095,
        "guard",
    )


def test_a_market_that_stays_at_the_exit_is_left_alone(setup: tuple[StrategyEngine, Host, Clock]) -> None:
    engine, host, clock = setup
    _exit(engine)
    clock.now += timedelta(seconds=CHASE_AFTER * 10)
    _market(engine, host, 3100)  # still bid at our price: the exit is in the queue
    _market(engine, host, 3102)  # above it: it will fill
    assert host.cancels == []


def test_a_cancel_the_engine_did_not_ask_for_is_never_re_sent(
    setup: tuple[StrategyEngine, Host, Clock],
) -> None:
    engine, host, clock = setup
    first = _exit(engine)
    _venue_cancels(engine, host, first)  # the operator's X, or the kill switch
    assert len(host.sent) == 1
    clock.now += timedelta(seconds=CHASE_AFTER)
    _market(engine, host, 3090)
    assert host.cancels == []


@pytest.mark.parametrize(
    ("change", "value"),
    [
        ("trading_state", TradingState.HALTED),
        ("auto_trading", False),
        ("gateway_status", GatewayStatus.DISCONNECTED),
    ],
)
def test_nothing_is_re_sent_when_the_engine_may_not_act(
    setup: tuple[StrategyEngine, Host, Clock], change: str, value: Any, caplog: pytest.LogCaptureFixture
) -> None:
    engine, host, clock = setup
    first = _exit(engine)
    clock.now += timedelta(seconds=CHASE_AFTER)
    _market(engine, host, 3095)
    assert host.cancels == [first]
    setattr(host, change, value)  # e.g. the kill switch, between our cancel and its confirmation
    _venue_cancels(engine, host, first)
    assert len(host.sent) == 1
    assert any("NOT re-sent" in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)


def test_after_max_chases_the_exit_is_left_to_the_operator(
    setup: tuple[StrategyEngine, Host, Clock], caplog: pytest.LogCaptureFixture
) -> None:
    engine, host, clock = setup
    order_id = _exit(engine)
    bid = 3100
    for _ in range(MAX_CHASES):
        clock.now += timedelta(seconds=CHASE_AFTER)
        bid -= 2
        _market(engine, host, bid)
        assert host.cancels[-1] == order_id
        _venue_cancels(engine, host, order_id)
        order_id = f"o{len(host.sent)}"
    assert len(host.sent) == 1 + MAX_CHASES
    clock.now += timedelta(seconds=CHASE_AFTER)
    _market(engine, host, bid - 5)
    assert host.cancels[-1] != order_id  # no sixth re-price
    assert any("left to the operator" in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)
    assert engine_module.MAX_CHASES == MAX_CHASES


def test_a_turn_around_whose_open_is_refused_reads_partial_not_rejected(
    setup: tuple[StrategyEngine, Host, Clock],
) -> None:
    from core.models import StrategyTrigger
    from strategies.base import Signal

    engine, host, clock = setup
    host.oms.update_position(
        Position(
            account_id="X1", vt_symbol=SYMBOL, direction=Direction.SHORT, volume=1, yd_volume=0, price=3100
        )
    )
    sent = host.place_order

    def refuse_opens(req: OrderRequest) -> Reply:
        if req.offset is Offset.OPEN:
            return Reply(
                ok=False, error="max_position_per_contract: 1 + 1 > 1", result={"order_id": "LOCAL.1"}
            )
        return sent(req)

    host.place_order = refuse_opens  # type: ignore[method-assign]
    instance = SimpleNamespace(name="trend", vt_symbol=SYMBOL, pos=-1.0, risk=SimpleNamespace(max_position=5))
    signal = Signal(action="buy", condition="cross up", price=3101, volume=2, datetime=clock.now)
    trigger = StrategyTrigger(
        account_id="X1",
        datetime=clock.now,
        instance="trend",
        vt_symbol=SYMBOL,
        condition="cross up",
        price=3101,
        action="buy",
        result="pending",
    )
    engine._decide(instance, signal, trigger)  # type: ignore[arg-type]
    assert trigger.result == "partial"
    assert trigger.order_id == "o1,LOCAL.1"
    assert trigger.error == "sent o1; refused: max_position_per_contract: 1 + 1 > 1"


def test_a_protective_strategys_exit_is_still_chased_through_a_halt_that_kept_it(
    setup: tuple[StrategyEngine, Host, Clock],
) -> None:
    engine, host, clock = setup
    engine.exits = ExitChaser(
        host,  # type: ignore[arg-type]
        clock=clock,
        price=engine._price,
        passes_halt=lambda name: name == "guard",  # the kill switch kept it running
    )
    first = _exit(engine)
    host.trading_state = TradingState.HALTED
    clock.now += timedelta(seconds=CHASE_AFTER)
    _market(engine, host, 3095)
    assert host.cancels == [first]
    _venue_cancels(engine, host, first)
    assert len(host.sent) == 2 and host.sent[-1].price == 3095 and host.sent[-1].reference == "guard"
