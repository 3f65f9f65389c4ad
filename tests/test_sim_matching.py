"""The sim exchange engine (gateways/sim_exchange.py): market, matching, accounting, roll.

Deterministic: a seeded engine and an injected clock. Orders are priced relative to the
current synthetic book (``depth``), so the tests do not depend on where a seed puts prices.
The hypothesis test at the bottom drives random sequences of orders, cancels, market steps and
day rolls and checks the invariants after every operation.
"""

from __future__ import annotations

import itertools
import math
import subprocess
import sys
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.models import (
    CHINA_TZ,
    Direction,
    Offset,
    Order,
    OrderRequest,
    OrderType,
    Status,
    Tick,
    Trade,
    depth_fields,
    on_tick_grid,
)
from core.sessions import trading_day_end, trading_day_of
from gateways import sim_exchange
from gateways.sim_exchange import SimError, SimExchange, Update
from gateways.sim_journal import (
    ExchangeState,
    StateJournal,
    apply_delta,
    decode_state,
    encode_state,
    load_state,
    save_state,
)
from gateways.sim_market import Market, stable_hash

AU = "au2612.SHFE"  # per-lot fee, close-today free, has close-today rules
RB = "rb2605.SHFE"
IRON = "i2605.DCE"  # by turnover, close-today fee doubled, no close-today rules
IF = "IF2612.CFFEX"
TA = "TA605.CZCE"

WEDNESDAY = datetime(2026, 11, 18, 10, 0, tzinfo=CHINA_TZ)
LONG, SHORT = Direction.LONG, Direction.SHORT


class Clock:
    """An injectable clock the test moves by hand."""

    def __init__(self, start: datetime = WEDNESDAY) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)

    def next_trading_day(self) -> None:
        """Jump past the end of the current trading day (to 21:00, in the night session)."""
        day = trading_day_of(self.now)
        self.now = trading_day_end(day) + timedelta(hours=1)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ex(clock: Clock) -> SimExchange:
    return SimExchange("DQ1", initial_balance=5_000_000, seed=7, clock=clock)


def order(
    ex: SimExchange,
    vt_symbol: str,
    direction: Direction,
    volume: float,
    price: float = 0.0,
    offset: Offset = Offset.OPEN,
    type: OrderType = OrderType.LIMIT,
) -> Update:
    return ex.send_order(
        OrderRequest(
            vt_symbol=vt_symbol, direction=direction, offset=offset, type=type, price=price, volume=volume
        )
    )


def final(update: Update) -> Order:
    last = [e for e in update.events if isinstance(e, Order)][-1]
    return last


def trades_of(update: Update) -> list[Trade]:
    return [e for e in update.events if isinstance(e, Trade)]


def book(ex: SimExchange, vt_symbol: str) -> tuple[list[tuple[float, int]], list[tuple[float, int]]]:
    ex.open_market(vt_symbol)
    return ex.depth(vt_symbol)


def buy_now(ex: SimExchange, vt_symbol: str, volume: int, offset: Offset = Offset.OPEN) -> Update:
    """Buy ``volume`` lots at once (a MARKET order that must fill completely)."""
    update = order(ex, vt_symbol, LONG, volume, offset=offset, type=OrderType.MARKET)
    assert final(update).status is Status.ALLTRADED, final(update).status_msg
    return update


def sell_now(ex: SimExchange, vt_symbol: str, volume: int, offset: Offset = Offset.OPEN) -> Update:
    update = order(ex, vt_symbol, SHORT, volume, offset=offset, type=OrderType.MARKET)
    assert final(update).status is Status.ALLTRADED, final(update).status_msg
    return update


# ====================================================================== trading day


@pytest.mark.parametrize(
    ("moment", "day"),
    [
        (datetime(2026, 11, 18, 10, 0), date(2026, 11, 18)),  # Wednesday day session
        (datetime(2026, 11, 18, 19, 59, 59), date(2026, 11, 18)),
        (datetime(2026, 11, 18, 20, 0), date(2026, 11, 19)),  # night session: next day
        (datetime(2026, 11, 19, 1, 30), date(2026, 11, 19)),  # after midnight, same night
        (datetime(2026, 11, 20, 21, 0), date(2026, 11, 23)),  # Friday night -> Monday
        (datetime(2026, 11, 21, 1, 0), date(2026, 11, 23)),  # Saturday early -> Monday
        (datetime(2026, 11, 22, 21, 0), date(2026, 11, 23)),  # Sunday -> Monday
        (datetime(2026, 11, 23, 9, 0), date(2026, 11, 23)),
    ],
)
def test_trading_day_of(moment: datetime, day: date) -> None:
    assert trading_day_of(moment.replace(tzinfo=CHINA_TZ)) == day


def test_trading_day_uses_china_time() -> None:
    utc_noon = datetime(2026, 11, 18, 12, 0, tzinfo=UTC)
    assert trading_day_of(utc_noon) == date(2026, 11, 19)  # 20:00 in China
    assert trading_day_of(utc_noon - timedelta(seconds=1)) == date(2026, 11, 18)


# ====================================================================== synthetic market


def test_market_walk_stays_on_grid_inside_limits(ex: SimExchange) -> None:
    for vt_symbol in (AU, IF, TA, IRON):
        ex.open_market(vt_symbol)
        contract = ex.get_contract(vt_symbol)
        assert contract is not None
        first = ex.tick(vt_symbol)
        assert first is not None
        pre = first.pre_settlement
        tick_size = contract.pricetick
        # limits = pre_settlement x (1 +- pct), rounded inward to the grid
        assert first.limit_up == pytest.approx(
            math.floor(pre * (1 + contract.limit_pct) / tick_size) * tick_size
        )
        assert first.limit_down == pytest.approx(
            math.ceil(pre * (1 - contract.limit_pct) / tick_size) * tick_size
        )
        volume = 0.0
        spreads = defaultdict(int)
        for _ in range(1500):
            tick, update = ex.step(vt_symbol)
            assert update is None
            for price in (
                tick.last_price,
                tick.bid_price_1,
                tick.ask_price_1,
                tick.high_price,
                tick.low_price,
            ):
                assert on_tick_grid(price, tick_size)
                assert first.limit_down <= price <= first.limit_up
            assert tick.low_price <= tick.last_price <= tick.high_price
            assert tick.bid_price_1 < tick.ask_price_1
            assert tick.bid_price_1 <= tick.last_price <= tick.ask_price_1
            assert tick.volume > volume and tick.turnover > 0 and tick.open_interest >= 0
            volume = tick.volume
            spreads[round((tick.ask_price_1 - tick.bid_price_1) / tick_size)] += 1
            bids, asks = ex.depth(vt_symbol)
            assert [p for p, _ in bids] == sorted((p for p, _ in bids), reverse=True)
            assert [p for p, _ in asks] == sorted(p for p, _ in asks)
            assert len(bids) <= 5 and len(asks) <= 5
        assert set(spreads) <= {1, 2}
        assert spreads[1] > spreads[2]  # one tick apart mostly


def test_ticks_carry_five_levels_each_side(ex: SimExchange) -> None:
    """Every tick reports the book five levels deep, as the engine holds it (``depth``): bids
    falling, asks rising, one tick apart, on the grid, inside the limits; the limits are the
    product's percentage around the pre-settlement the tick reports."""
    for vt_symbol in (AU, RB, IF, TA, IRON):
        ex.open_market(vt_symbol)
        contract = ex.get_contract(vt_symbol)
        assert contract is not None and contract.limit_pct > 0
        tick_size = contract.pricetick
        for _ in range(200):
            tick, _ = ex.step(vt_symbol)
            pre = tick.pre_settlement
            assert pre > 0
            assert tick.limit_up == pytest.approx(
                math.floor(pre * (1 + contract.limit_pct) / tick_size + 1e-9) * tick_size
            )
            assert tick.limit_down == pytest.approx(
                math.ceil(pre * (1 - contract.limit_pct) / tick_size - 1e-9) * tick_size
            )
            bids, asks = ex.depth(vt_symbol)
            assert list(tick.bids) == [(p, float(v)) for p, v in bids]  # nothing near a limit: 5 full levels
            assert list(tick.asks) == [(p, float(v)) for p, v in asks]
            bid_prices = [p for p, _ in tick.bids]
            ask_prices = [p for p, _ in tick.asks]
            assert all(b1 - b2 == pytest.approx(tick_size) for b1, b2 in itertools.pairwise(bid_prices))
            assert all(a2 - a1 == pytest.approx(tick_size) for a1, a2 in itertools.pairwise(ask_prices))
            for price, volume in (*tick.bids, *tick.asks):
                assert volume > 0 and on_tick_grid(price, tick_size)
                assert tick.limit_down <= price <= tick.limit_up


def test_a_book_at_a_limit_reports_the_levels_it_has(clock: Clock) -> None:
    """Limit-up: nothing is offered above it, so the ask side has one level and blanks."""
    contract = SimExchange("DQ1", seed=7, clock=clock).get_contract(AU)
    assert contract is not None
    market = Market(contract, 7, round(900 / contract.pricetick))
    market.last = market.up
    market.draw_book()
    tick = market.to_tick(WEDNESDAY, "DQ1")
    assert tick.ask_price_1 == tick.limit_up and tick.ask_volume_1 > 0
    assert tick.asks[1:] == ((0, 0),) * 4
    assert [p for p, _ in tick.bids] == [tick.limit_up - n * contract.pricetick for n in (1, 2, 3, 4, 5)]


def test_taken_levels_leave_the_reported_book(ex: SimExchange) -> None:
    """A buy that takes the first two ask levels: level 1 keeps its price with no volume (until
    the next step), and the levels after it are the prices that still have volume."""
    ex.open_market(RB)
    ex.step(RB)
    _, asks = ex.depth(RB)
    update = order(ex, RB, LONG, asks[0][1] + asks[1][1], price=asks[1][0])
    assert final(update).status is Status.ALLTRADED
    tick = ex.tick(RB)
    assert tick is not None
    assert (tick.ask_price_1, tick.ask_volume_1) == (asks[0][0], 0)
    assert list(tick.asks[1:4]) == [(p, float(v)) for p, v in asks[2:5]]
    assert tick.asks[4] == (0, 0)


def test_a_paper_market_takes_the_quotes_levels(clock: Clock) -> None:
    """A real quote's levels become the paper book where they fall within five ticks of its best
    prices (a gap stays a gap); a level-1 quote leaves levels 2-5 blank."""
    contract = SimExchange("DQ1", seed=7, clock=clock).get_contract(RB)
    assert contract is not None
    market = Market(contract, 7, 3500)
    quote = Tick(
        vt_symbol=RB,
        datetime=WEDNESDAY,
        last_price=3500,
        limit_up=3745,
        limit_down=3255,
        pre_settlement=3500,
        **depth_fields(
            [(3500, 5), (3499, 7), (3497, 9), (3496, 11), (3490, 13)],  # 3490: six ticks away
            [(3501, 6), (3502, 8), (3503, 10), (3504, 12), (3505, 14)],
        ),
    )
    market.apply(quote)
    tick = market.to_tick(WEDNESDAY, "P1")
    assert tick.bids == ((3500, 5), (3499, 7), (3497, 9), (3496, 11), (0, 0))
    assert tick.asks == quote.asks
    _, fills = market.depth()
    assert sum(v for _, v in fills) == 6 + 8 + 10 + 12 + 14  # what a paper order can fill against
    market.apply(
        Tick(vt_symbol=RB, datetime=WEDNESDAY, last_price=3500, **depth_fields([(3500, 5)], [(3501, 6)]))
    )
    tick = market.to_tick(WEDNESDAY, "P1")
    assert tick.bids == ((3500, 5), *((0, 0),) * 4) and tick.asks == ((3501, 6), *((0, 0),) * 4)


def test_market_is_reproducible_from_the_seed(clock: Clock) -> None:
    def run(seed: int) -> list[tuple[float, float, float]]:
        engine = SimExchange("DQ1", seed=seed, clock=clock)
        engine.open_market(AU)
        out = []
        for _ in range(50):
            tick, _ = engine.step(AU)
            out.append((tick.last_price, tick.bid_volume_1, tick.ask_volume_1))
        return out

    assert run(3) == run(3)
    assert run(3) != run(4)


def test_market_does_not_depend_on_python_hash_randomisation() -> None:
    code = (
        "from datetime import datetime; from core.models import CHINA_TZ;"
        "from gateways.sim_exchange import SimExchange;"
        "e = SimExchange('DQ1', seed=5, clock=lambda: datetime(2026, 11, 18, 10, tzinfo=CHINA_TZ));"
        "e.open_market('rb2605.SHFE');"
        "print([e.step('rb2605.SHFE')[0].last_price for _ in range(20)])"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={"PYTHONHASHSEED": seed, "PYTHONPATH": "."},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2")
    }
    assert len(outputs) == 1
    assert stable_hash("au2612.SHFE") == stable_hash("au2612.SHFE") != stable_hash("au2612.DCE")


# ====================================================================== rejections


def rejected(update: Update) -> str:
    result = final(update)
    assert result.status is Status.REJECTED
    assert not trades_of(update)
    assert update.events[0].status is Status.SUBMITTING  # type: ignore[union-attr]
    return result.status_msg


def test_reject_unknown_contract(ex: SimExchange) -> None:
    msg = rejected(order(ex, "au2612.DCE", LONG, 1, 900.0))
    assert msg == "unknown contract au2612.DCE: au is listed on SHFE, not DCE"
    assert "zz2612.SHFE" in rejected(order(ex, "zz2612.SHFE", LONG, 1, 900.0))


@pytest.mark.parametrize(
    ("volume", "text"),
    [
        (0, "volume must be a positive whole number of lots, got 0"),
        (-2, "volume must be a positive whole number of lots, got -2"),
        (1.5, "volume 1.5 is not a whole number of lots"),
        (math.nan, "volume must be a positive whole number of lots, got nan"),
    ],
)
def test_reject_bad_volume(ex: SimExchange, volume: float, text: str) -> None:
    _, asks = book(ex, AU)
    assert rejected(order(ex, AU, LONG, volume, asks[0][0])) == text


def test_reject_price_off_the_tick_grid(ex: SimExchange) -> None:
    assert (
        rejected(order(ex, AU, LONG, 1, 912.03)) == "price 912.03 is not on the 0.02 tick grid of au2612.SHFE"
    )
    assert (
        rejected(order(ex, IF, LONG, 1, 4600.1)) == "price 4600.1 is not on the 0.2 tick grid of IF2612.CFFEX"
    )


def test_reject_price_outside_the_limits(ex: SimExchange) -> None:
    ex.open_market(AU)
    tick = ex.tick(AU)
    assert tick is not None
    assert rejected(order(ex, AU, LONG, 1, 1100.0)) == f"price 1100.00 above limit-up {tick.limit_up:.2f}"
    assert rejected(order(ex, AU, SHORT, 1, 700.0)) == f"price 700.00 below limit-down {tick.limit_down:.2f}"
    # the limits themselves are fine
    assert final(order(ex, AU, LONG, 1, tick.limit_down)).status is Status.NOTTRADED
    assert "price must be a positive number" in rejected(order(ex, AU, LONG, 1, -1.0))


def test_reject_insufficient_funds(clock: Clock) -> None:
    ex = SimExchange("DQ1", initial_balance=50_000, seed=7, clock=clock)
    bids, _ = book(ex, AU)
    price = bids[2][0]  # a resting buy: no immediate fill, so no mark-to-market part
    contract = ex.get_contract(AU)
    assert contract is not None
    need = contract.margin(price, 1) + contract.commission(price, 1)
    msg = rejected(order(ex, AU, LONG, 1, price))
    assert msg == f"insufficient funds: needs {need:,.2f} margin+fee, available 50,000.00"
    assert ex.account().available == 50_000
    # a contract it can afford goes through
    bids, _ = book(ex, TA)
    assert final(order(ex, TA, LONG, 1, bids[1][0])).status is Status.NOTTRADED


def test_reject_insufficient_closable_volume(ex: SimExchange) -> None:
    buy_now(ex, IRON, 2)
    bids, _ = book(ex, IRON)
    msg = rejected(order(ex, IRON, SHORT, 3, bids[0][0], Offset.CLOSE))
    assert msg == "close 3 > closable 2 (long i2605.DCE)"
    # nothing to close on the short side
    _, asks = book(ex, IRON)
    assert (
        rejected(order(ex, IRON, LONG, 1, asks[0][0], Offset.CLOSE))
        == "close 1 > closable 0 (short i2605.DCE)"
    )
    # volume held by a working close order is not closable again
    working = final(order(ex, IRON, SHORT, 2, bids[0][0] + 20 * 0.5, Offset.CLOSE))
    assert working.status is Status.NOTTRADED
    assert (
        rejected(order(ex, IRON, SHORT, 1, bids[0][0], Offset.CLOSE))
        == "close 1 > closable 0 (long i2605.DCE)"
    )
    position = ex.position(IRON, LONG)
    assert position is not None and position.frozen == 2


def test_reject_stop_orders_and_bad_enums(ex: SimExchange) -> None:
    _, asks = book(ex, AU)
    assert "no native stop orders" in rejected(order(ex, AU, LONG, 1, asks[0][0], type=OrderType.STOP))
    assert "offset NONE" in rejected(order(ex, AU, LONG, 1, asks[0][0], offset=Offset.NONE))
    assert "direction NET" in rejected(order(ex, AU, Direction.NET, 1, asks[0][0]))


def test_rejection_changes_nothing(ex: SimExchange) -> None:
    before = ex.account()
    update = order(ex, AU, LONG, 1, 912.03)
    assert update.account is None and update.positions == []
    after = ex.account()
    assert (after.balance, after.available, after.frozen) == (before.balance, before.available, before.frozen)


# ====================================================================== order types


def test_limit_order_partial_fill_rests_and_cancels(ex: SimExchange) -> None:
    _, asks = book(ex, AU)
    price, level_volume = asks[0]
    update = order(ex, AU, LONG, level_volume + 3, price)
    result = final(update)
    assert result.status is Status.PARTTRADED
    assert result.traded == level_volume
    fills = trades_of(update)
    assert [(t.price, t.volume) for t in fills] == [(price, level_volume)]
    assert ex.account().frozen > 0
    assert [o.order_id for o in ex.working_orders()] == [update.order_id]
    cancelled = ex.cancel_order(update.order_id)
    after = final(cancelled)
    assert after.status is Status.CANCELLED and after.traded == level_volume
    assert ex.account().frozen == 0
    assert ex.working_orders() == []


def test_aggressive_limit_walks_the_book_but_never_through_its_price(ex: SimExchange) -> None:
    _, asks = book(ex, AU)
    limit = asks[1][0]  # takes level 1 and level 2, not level 3
    want = asks[0][1] + asks[1][1] + 5
    update = order(ex, AU, LONG, want, limit)
    fills = trades_of(update)
    assert [(t.price, t.volume) for t in fills] == [asks[0], asks[1]]
    assert all(t.price <= limit for t in fills)
    assert final(update).status is Status.PARTTRADED
    assert final(update).traded_price == pytest.approx(
        (asks[0][0] * asks[0][1] + asks[1][0] * asks[1][1]) / (asks[0][1] + asks[1][1])
    )


def test_consumed_volume_stays_consumed_until_the_next_step(ex: SimExchange) -> None:
    bids, _ = book(ex, AU)
    price, volume = bids[0]
    first = order(ex, AU, SHORT, volume, price, type=OrderType.FAK)
    assert final(first).status is Status.ALLTRADED
    second = order(ex, AU, SHORT, 1, price, type=OrderType.FAK)
    assert final(second).status is Status.CANCELLED
    assert final(second).traded == 0
    assert "FAK" in final(second).status_msg
    ex.step(AU)
    bids, _ = ex.depth(AU)
    assert bids[0][1] > 0  # a new book after the step


def test_fak_fills_what_it_can_and_cancels_the_rest(ex: SimExchange) -> None:
    _, asks = book(ex, AU)
    price, volume = asks[0]
    update = order(ex, AU, LONG, volume + 4, price, type=OrderType.FAK)
    result = final(update)
    assert result.status is Status.CANCELLED
    assert result.traded == volume
    assert (
        result.status_msg
        == f"FAK remainder cancelled: 4 of {volume + 4} lots unfilled at {price:.2f} or better"
    )
    assert ex.working_orders() == []
    assert ex.account().frozen == 0


def test_fok_all_or_nothing(ex: SimExchange) -> None:
    _, asks = book(ex, AU)
    limit = asks[1][0]
    available = asks[0][1] + asks[1][1]
    too_many = order(ex, AU, LONG, available + 1, limit, type=OrderType.FOK)
    result = final(too_many)
    assert result.status is Status.CANCELLED and result.traded == 0
    assert not trades_of(too_many)
    assert result.status_msg == (
        f"FOK cancelled: only {available} of {available + 1} lots available at {limit:.2f} or better; nothing filled"
    )
    assert ex.position(AU, LONG) is None
    exact = order(ex, AU, LONG, available, limit, type=OrderType.FOK)
    assert final(exact).status is Status.ALLTRADED
    assert [(t.price, t.volume) for t in trades_of(exact)] == [asks[0], asks[1]]


def test_market_order_fills_the_book_within_limits_and_cancels_the_rest(ex: SimExchange) -> None:
    bids, _ = book(ex, TA)
    everything = sum(v for _, v in bids)
    update = order(ex, TA, SHORT, everything + 7, type=OrderType.MARKET)
    result = final(update)
    assert [(t.price, t.volume) for t in trades_of(update)] == bids
    assert result.status is Status.CANCELLED and result.traded == everything
    assert "MARKET remainder cancelled: 7 of" in result.status_msg
    small = order(ex, TA, SHORT, 1, type=OrderType.MARKET)  # the book is empty until the next step
    assert final(small).status is Status.CANCELLED and final(small).traded == 0
    ex.step(TA)
    assert final(order(ex, TA, SHORT, 1, type=OrderType.MARKET)).status is Status.ALLTRADED


def test_resting_order_fills_on_a_later_step_at_its_own_price(ex: SimExchange) -> None:
    bids, _ = book(ex, RB)
    limit = bids[0][0] - 2  # below the best bid: rests
    update = order(ex, RB, LONG, 50, limit)
    assert final(update).status is Status.NOTTRADED
    fills: list[Trade] = []
    for _ in range(2000):
        tick, step_update = ex.step(RB)
        if step_update is not None:
            step_fills = trades_of(step_update)
            assert tick.ask_price_1 <= limit  # the step's book crossed the order
            for trade in step_fills:
                assert trade.price == limit
                assert trade.volume <= 20 + 1  # at most the level-1 volume
            fills += step_fills
            last = final(step_update)
            assert last.order_id == update.order_id
            assert last.traded == sum(t.volume for t in fills)
            if last.status is Status.ALLTRADED:
                break
    else:
        pytest.fail("the random walk never crossed the resting order")
    assert sum(t.volume for t in fills) == 50
    assert ex.working_orders() == []
    assert ex.account().frozen == 0
    position = ex.position(RB, LONG)
    assert position is not None and position.volume == 50 and position.price == limit


def test_cancel_unknown_or_finished_order(ex: SimExchange) -> None:
    with pytest.raises(SimError, match="unknown order") as unknown:
        ex.cancel_order("123")
    assert unknown.value.order is None
    filled = buy_now(ex, AU, 1)
    with pytest.raises(SimError, match="already ALLTRADED") as finished:
        ex.cancel_order(filled.order_id)
    assert finished.value.order is not None
    assert finished.value.order.status is Status.ALLTRADED
    bids, _ = book(ex, AU)
    working = order(ex, AU, LONG, 1, bids[3][0])
    ex.cancel_order(working.order_id)
    with pytest.raises(SimError, match="already CANCELLED"):
        ex.cancel_order(working.order_id)


def test_finished_orders_are_remembered_within_a_bound(
    ex: SimExchange, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sim_exchange, "ORDER_MEMORY", 5)
    bids, _ = book(ex, AU)
    working = order(ex, AU, LONG, 1, bids[4][0]).order_id
    rejected_ids = [order(ex, AU, LONG, 1, 912.03).order_id for _ in range(10)]
    assert ex.get_order(rejected_ids[0]) is None  # forgotten: the oldest finished ones go first
    assert ex.get_order(rejected_ids[-1]) is not None
    assert ex.get_order(working) is not None  # a working order is never forgotten
    assert final(ex.cancel_order(working)).status is Status.CANCELLED


# ====================================================================== accounting


def test_open_and_close_same_day_realises_pnl_and_fees(ex: SimExchange) -> None:
    contract = ex.get_contract(IF)
    assert contract is not None
    opened = trades_of(buy_now(ex, IF, 2))
    cost = sum(t.price * t.volume for t in opened) / 2
    position = ex.position(IF, LONG)
    assert position is not None
    assert position.volume == 2 and position.yd_volume == 0 and position.price == pytest.approx(cost)
    assert position.margin == pytest.approx(contract.margin(cost, 2))
    for _ in range(30):
        ex.step(IF)
    closed = trades_of(sell_now(ex, IF, 2, Offset.CLOSE))
    exit_value = sum(t.price * t.volume for t in closed)
    account = ex.account()
    assert account.close_pnl == pytest.approx((exit_value - cost * 2) * contract.size)
    # IF: closing today's lots costs the close-today rate
    fees = sum(contract.commission(t.price, t.volume) for t in opened) + sum(
        contract.commission(t.price, t.volume, Offset.CLOSETODAY) for t in closed
    )
    assert account.commission == pytest.approx(fees)
    assert sum(t.commission for t in opened + closed) == pytest.approx(fees)
    assert account.position_pnl == 0 and account.margin == 0
    assert account.balance == pytest.approx(5_000_000 + account.close_pnl - fees)
    flat = ex.position(IF, LONG)
    assert flat is not None and flat.volume == 0


def test_short_position_pnl_is_negated(ex: SimExchange) -> None:
    contract = ex.get_contract(TA)
    assert contract is not None
    sold = trades_of(sell_now(ex, TA, 3))
    cost = sum(t.price * t.volume for t in sold) / 3
    for _ in range(40):
        ex.step(TA)
    position = ex.position(TA, SHORT)
    assert position is not None
    assert position.pnl == pytest.approx((cost - position.last_price) * 3 * contract.size)
    account = ex.account()
    assert account.position_pnl == pytest.approx(position.pnl)
    assert account.balance == pytest.approx(
        account.pre_balance + account.close_pnl + account.position_pnl - account.commission
    )
    assert account.available == pytest.approx(account.balance - account.margin - account.frozen)


def test_frozen_holds_margin_and_fee_of_working_opens(ex: SimExchange) -> None:
    contract = ex.get_contract(AU)
    assert contract is not None
    bids, _ = book(ex, AU)
    price = bids[2][0]
    before = ex.account().available
    order(ex, AU, LONG, 3, price)
    account = ex.account()
    per_lot = contract.margin(price, 1) + contract.commission(price, 1)
    assert account.frozen == pytest.approx(3 * per_lot)
    assert account.available == pytest.approx(before - 3 * per_lot)


# ====================================================================== close rules


def test_shfe_close_today_versus_close_yesterday(ex: SimExchange, clock: Clock) -> None:
    contract = ex.get_contract(AU)
    assert contract is not None
    buy_now(ex, AU, 2)
    clock.next_trading_day()
    rolled = ex.check_roll()
    assert rolled is not None and rolled.rolled
    buy_now(ex, AU, 1)
    position = ex.position(AU, LONG)
    assert position is not None and (position.volume, position.yd_volume) == (3, 2)
    bids, _ = book(ex, AU)
    low = bids[0][0]
    # CLOSE and CLOSEYESTERDAY only close yesterday's lots on SHFE ...
    assert rejected(order(ex, AU, SHORT, 3, low, Offset.CLOSE)) == (
        "close 3 > closable 2 (long au2612.SHFE, yesterday's volume); today's 1 close only with CLOSETODAY"
    )
    assert "closable 2" in rejected(order(ex, AU, SHORT, 3, low, Offset.CLOSEYESTERDAY))
    # ... and CLOSETODAY only today's
    assert rejected(order(ex, AU, SHORT, 2, low, Offset.CLOSETODAY)) == (
        "close-today 2 > closable today 1 (long au2612.SHFE); yesterday's 2 close with CLOSE/CLOSEYESTERDAY"
    )
    today = sell_now(ex, AU, 1, Offset.CLOSETODAY)
    assert sum(t.commission for t in trades_of(today)) == contract.commission(low, 1, Offset.CLOSETODAY)
    position = ex.position(AU, LONG)
    assert position is not None and (position.volume, position.yd_volume) == (2, 2)
    yesterday = sell_now(ex, AU, 2, Offset.CLOSEYESTERDAY)
    assert sum(t.commission for t in trades_of(yesterday)) == pytest.approx(2 * contract.commission_per_lot)
    position = ex.position(AU, LONG)
    assert position is not None and (position.volume, position.yd_volume) == (0, 0)


def test_shfe_working_close_orders_freeze_their_own_bucket(ex: SimExchange, clock: Clock) -> None:
    buy_now(ex, AU, 2)
    clock.next_trading_day()
    ex.check_roll()
    buy_now(ex, AU, 2)
    _, asks = book(ex, AU)
    high = asks[-1][0] + 1.0  # a sell far above the book rests
    order(ex, AU, SHORT, 1, high, Offset.CLOSETODAY)
    order(ex, AU, SHORT, 2, high, Offset.CLOSE)
    position = ex.position(AU, LONG)
    assert position is not None
    assert (position.frozen, position.yd_frozen) == (3, 2)
    assert "closable 0" in rejected(order(ex, AU, SHORT, 1, high, Offset.CLOSEYESTERDAY))
    assert final(order(ex, AU, SHORT, 1, high, Offset.CLOSETODAY)).status is Status.NOTTRADED


def test_other_exchanges_close_yesterday_first_then_today(ex: SimExchange, clock: Clock) -> None:
    contract = ex.get_contract(IRON)
    assert contract is not None
    buy_now(ex, IRON, 2)
    clock.next_trading_day()
    ex.check_roll()
    buy_now(ex, IRON, 2)
    # CLOSETODAY on DCE is an ordinary close: yesterday's lots go first
    update = sell_now(ex, IRON, 3, Offset.CLOSETODAY)
    position = ex.position(IRON, LONG)
    assert position is not None and (position.volume, position.yd_volume) == (1, 0)
    fills = trades_of(update)
    # two yesterday lots at the normal rate, one today lot at the close-today rate
    expected = 0.0
    yd_left = 2
    for t in fills:
        from_yd = min(yd_left, int(t.volume))
        yd_left -= from_yd
        expected += contract.commission(t.price, from_yd, Offset.CLOSE)
        expected += contract.commission(t.price, t.volume - from_yd, Offset.CLOSETODAY)
    assert sum(t.commission for t in fills) == pytest.approx(expected)
    msg = rejected(order(ex, IRON, SHORT, 2, fills[0].price, Offset.CLOSEYESTERDAY))
    assert msg == "close 2 > closable 1 (long i2605.DCE)"


# ====================================================================== the day roll


def test_day_roll(ex: SimExchange, clock: Clock) -> None:
    buy_now(ex, AU, 2)
    sell_now(ex, TA, 1)
    far_below = ex.tick(AU).limit_down  # type: ignore[union-attr]
    working = order(ex, AU, LONG, 1, far_below)
    for _ in range(20):
        ex.step(AU)
        ex.step(TA)
    before = ex.account()
    au_last = ex.tick(AU).last_price  # type: ignore[union-attr]
    assert ex.check_roll() is None  # not yet
    clock.now = datetime(2026, 11, 18, 20, 0, tzinfo=CHINA_TZ)
    update = ex.check_roll()
    assert update is not None and update.rolled
    expired = [e for e in update.events if isinstance(e, Order)]
    assert [(o.order_id, o.status, o.status_msg) for o in expired] == [
        (working.order_id, Status.CANCELLED, "expired at end of trading day 20261118")
    ]
    assert ex.trading_day == "20261119"
    after = ex.account()
    assert after.trading_day == "20261119"
    assert after.pre_balance == pytest.approx(before.balance)
    assert after.balance == pytest.approx(before.balance)
    assert (after.commission, after.close_pnl, after.position_pnl, after.frozen) == (0, 0, 0, 0)
    assert ex.trades() == [] and ex.working_orders() == []
    position = ex.position(AU, LONG)
    assert position is not None
    assert (position.volume, position.yd_volume, position.price) == (2, 2, au_last)
    assert {(p.vt_symbol, p.direction) for p in update.positions} == {(AU, LONG), (TA, SHORT)}
    tick = ex.tick(AU)
    assert tick is not None
    contract = ex.get_contract(AU)
    assert contract is not None
    assert tick.pre_settlement == au_last and tick.volume == 0
    assert tick.limit_up == pytest.approx(math.floor(au_last * (1 + contract.limit_pct) / 0.02) * 0.02)
    # the roll is noticed by a market step as well, and Friday night belongs to Monday
    clock.now = datetime(2026, 11, 20, 21, 0, tzinfo=CHINA_TZ)
    _, stepped = ex.step(AU)
    assert stepped is not None and stepped.rolled
    assert ex.trading_day == "20261123"


def test_roll_then_cancel_reports_the_expiry(ex: SimExchange, clock: Clock) -> None:
    bids, _ = book(ex, AU)
    working = order(ex, AU, LONG, 1, bids[3][0])
    clock.next_trading_day()
    update = ex.cancel_order(working.order_id)
    assert update.rolled
    assert final(update).status_msg.startswith("expired at end of trading day")


# ====================================================================== persistence


def test_state_round_trip(ex: SimExchange, clock: Clock) -> None:
    buy_now(ex, AU, 2)
    clock.next_trading_day()
    ex.check_roll()
    buy_now(ex, AU, 1)
    sell_now(ex, TA, 2)
    bids, _ = book(ex, AU)
    working = order(ex, AU, SHORT, 1, bids[0][0] + 2.0, Offset.CLOSE)
    for _ in range(5):
        ex.step(TA)
    state = decode_state(encode_state(ex.to_state()))
    again = SimExchange("DQ1", seed=7, clock=clock, state=state)
    a, b = ex.account(), again.account()
    for name in (
        "balance",
        "available",
        "margin",
        "frozen",
        "commission",
        "close_pnl",
        "position_pnl",
        "pre_balance",
    ):
        assert getattr(a, name) == pytest.approx(getattr(b, name)), name
    assert again.trading_day == ex.trading_day
    assert again.positions() == ex.positions()
    assert again.working_orders() == ex.working_orders()
    assert again.trades() == ex.trades()
    # the working close still holds its yesterday lot, and ids keep growing
    position = again.position(AU, LONG)
    assert position is not None and (position.frozen, position.yd_frozen) == (1, 1)
    assert int(order(again, AU, LONG, 1, bids[4][0]).order_id) > int(working.order_id)
    again.cancel_order(working.order_id)


def test_state_that_does_not_add_up_is_refused(ex: SimExchange, clock: Clock) -> None:
    with pytest.raises(ValueError, match=r"(?i)expected `object`"):
        decode_state(b"[1, 2, 3]")
    with pytest.raises(ValueError, match="JSON"):
        decode_state(b"{not json")
    state = ex.to_state()
    with pytest.raises(ValueError, match="belongs to account"):
        SimExchange("DQ2", clock=clock, state=state)
    future = ExchangeState(**{**{f: getattr(state, f) for f in state.__struct_fields__}, "version": 99})
    with pytest.raises(ValueError, match="version"):
        decode_state(encode_state(future))


def test_fresh_ids_never_repeat_an_earlier_exchange(clock: Clock) -> None:
    first = SimExchange("DQ1", clock=clock)
    ids = [order(first, AU, LONG, 1, 900.0).order_id for _ in range(50)]
    clock.advance(seconds=1)
    second = SimExchange("DQ1", clock=clock)  # e.g. after the state file was lost
    assert int(order(second, AU, LONG, 1, 900.0).order_id) > max(int(i) for i in ids)


def test_a_lost_save_never_reuses_ids(ex: SimExchange, clock: Clock) -> None:
    saved = ex.to_state()  # the last state that reached the disk before a crash
    issued = [order(ex, AU, LONG, 1, 900.0).order_id for _ in range(10)]
    clock.advance(seconds=1)
    restarted = SimExchange("DQ1", seed=7, clock=clock, state=saved)
    assert int(order(restarted, AU, LONG, 1, 900.0).order_id) > max(int(i) for i in issued)


# ====================================================================== invariants (hypothesis)

SYMBOLS = (AU, IRON, TA, IF)

op_order = st.tuples(
    st.just("order"),
    st.sampled_from(SYMBOLS),
    st.sampled_from((LONG, SHORT)),
    st.sampled_from((Offset.OPEN, Offset.OPEN, Offset.CLOSE, Offset.CLOSETODAY, Offset.CLOSEYESTERDAY)),
    st.sampled_from((OrderType.LIMIT, OrderType.LIMIT, OrderType.FAK, OrderType.FOK, OrderType.MARKET)),
    st.integers(-6, 6),  # price: ticks away from the opposite best price (positive: aggressive)
    st.integers(1, 30),
)
# a close of (part of) a position that exists, so closes actually trade
op_close = st.tuples(
    st.just("close"),
    st.sampled_from(SYMBOLS),
    st.sampled_from((Offset.CLOSE, Offset.CLOSETODAY, Offset.CLOSEYESTERDAY)),
    st.sampled_from((OrderType.LIMIT, OrderType.FAK, OrderType.FOK, OrderType.MARKET)),
    st.integers(-3, 6),
    st.integers(1, 4),
)
op_cancel = st.tuples(st.just("cancel"), st.integers(0, 1000))
op_step = st.tuples(st.just("step"), st.sampled_from(SYMBOLS), st.integers(1, 6))
op_roll = st.tuples(st.just("roll"))
operations = st.lists(
    st.one_of(op_order, op_order, op_order, op_close, op_close, op_cancel, op_step, op_step, op_roll),
    min_size=10,
    max_size=50,
)


class Ledger:
    """What the test saw reported, to check the engine's books against."""

    def __init__(self) -> None:
        self.orders: dict[str, Order] = {}
        self.trades: list[Trade] = []

    def record(self, update: Update | None) -> None:
        if update is None:
            return
        for event in update.events:
            if isinstance(event, Trade):
                self.trades.append(event)
            else:
                self.orders[event.order_id] = event


def check_invariants(ex: SimExchange, ledger: Ledger, initial: float) -> None:
    contracts = {vt: ex.get_contract(vt) for vt in SYMBOLS}
    account = ex.account()
    positions = ex.positions()
    # the account identities
    assert account.balance == pytest.approx(
        account.pre_balance + account.close_pnl + account.position_pnl - account.commission, abs=1e-6
    )
    assert account.available == pytest.approx(account.balance - account.margin - account.frozen, abs=1e-6)
    assert account.margin == pytest.approx(sum(p.margin for p in positions), abs=1e-6)
    assert account.position_pnl == pytest.approx(sum(p.pnl for p in positions), abs=1e-6)
    assert account.frozen >= -1e-6
    working = ex.working_orders()
    if not any(o.offset is Offset.OPEN for o in working):
        assert account.frozen == 0
    # cash flow: everything since the start, independent of cost averaging and of rolls
    cash = 0.0
    for t in ledger.trades:
        size = contracts[t.vt_symbol].size  # type: ignore[union-attr]
        cash += (-1 if t.direction is LONG else 1) * t.price * t.volume * size - t.commission
    for p in positions:
        size = contracts[p.vt_symbol].size  # type: ignore[union-attr]
        cash += (1 if p.direction is LONG else -1) * p.volume * p.last_price * size
    assert account.balance - initial == pytest.approx(cash, abs=1e-4)
    # orders versus trades: never through a limit price; traded = sum of its trades <= volume
    traded: dict[str, float] = defaultdict(float)
    for t in ledger.trades:
        o = ledger.orders[t.order_id]
        traded[t.order_id] += t.volume
        assert on_tick_grid(t.price, contracts[t.vt_symbol].pricetick)  # type: ignore[union-attr]
        if o.type is not OrderType.MARKET:
            assert t.price <= o.price + 1e-9 if o.direction is LONG else t.price >= o.price - 1e-9
    for o in ledger.orders.values():
        assert traded[o.order_id] == o.traded <= o.volume
        if o.status is Status.ALLTRADED:
            assert o.traded == o.volume
        if o.status is Status.REJECTED or (o.type is OrderType.FOK and o.status is Status.CANCELLED):
            assert o.traded == 0
    # positions equal net filled volumes; frozen lots match the working close orders
    net: dict[tuple[str, Direction], float] = defaultdict(float)
    for t in ledger.trades:
        if t.offset is Offset.OPEN:
            net[(t.vt_symbol, t.direction)] += t.volume
        else:
            net[(t.vt_symbol, t.direction.opposite)] -= t.volume
    held: dict[tuple[str, Direction], float] = defaultdict(float)
    for o in working:
        assert o.status in (Status.NOTTRADED, Status.PARTTRADED)
        if o.offset.is_close:
            held[(o.vt_symbol, o.direction.opposite)] += o.volume - o.traded
    seen = set()
    for p in positions:
        key = (p.vt_symbol, p.direction)
        seen.add(key)
        assert p.volume == net[key]
        assert 0 <= p.yd_volume <= p.volume
        assert 0 <= p.yd_frozen <= p.frozen <= p.volume
        assert p.yd_frozen <= p.yd_volume
        assert p.frozen - p.yd_frozen <= p.volume - p.yd_volume
        assert p.frozen == held[key]
    assert all(v == 0 for k, v in net.items() if k not in seen)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ops=operations, initial=st.sampled_from((300_000.0, 3_000_000.0, 20_000_000.0)), seed=st.integers(0, 3)
)
def test_matching_invariants(ops: list[tuple], initial: float, seed: int) -> None:
    clock = Clock()
    ex = SimExchange("DQ1", initial_balance=initial, seed=seed, clock=clock)
    ledger = Ledger()
    for vt_symbol in SYMBOLS:
        ex.open_market(vt_symbol)
    persisted = ex.to_state()  # what the journal would rebuild: snapshot + every delta since
    for op in ops:
        kind = op[0]
        if kind in ("order", "close"):
            if kind == "order":
                _, vt_symbol, direction, offset, type_, away, volume = op
            else:
                _, vt_symbol, offset, type_, away, volume = op
                held = [p for p in ex.positions() if p.vt_symbol == vt_symbol and p.volume > p.frozen]
                if not held:
                    continue
                direction = held[0].direction.opposite
                volume = min(volume, held[0].volume - held[0].frozen)
            contract = ex.get_contract(vt_symbol)
            assert contract is not None
            bids, asks = ex.depth(vt_symbol)
            tick = ex.tick(vt_symbol)
            assert tick is not None
            if direction is LONG:
                best = asks[0][0] if asks else tick.ask_price_1
            else:
                best = bids[0][0] if bids else tick.bid_price_1
            price = contract.round_price(best + away * contract.pricetick * (1 if direction is LONG else -1))
            update = order(ex, vt_symbol, direction, volume, price, offset, type_)
            ledger.record(update)
            result = final(update)
            if offset is Offset.OPEN and result.status is not Status.REJECTED:
                assert ex.account().available >= -1e-6  # accepting an open never overdraws
        elif kind == "cancel":
            ids = sorted(ledger.orders)
            if ids:
                try:
                    ledger.record(ex.cancel_order(ids[op[1] % len(ids)]))
                except SimError as exc:
                    assert "cancel" in str(exc)
        elif kind == "step":
            for _ in range(op[2]):
                _, update = ex.step(op[1])
                ledger.record(update)
        else:
            clock.next_trading_day()
            ledger.record(ex.check_roll())
        check_invariants(ex, ledger, initial)
        delta = ex.take_delta()
        if delta is None:
            persisted = ex.to_state()
        else:
            apply_delta(persisted, delta)
    check_restored(ex, decode_state(encode_state(persisted)), clock)


def check_restored(ex: SimExchange, state: ExchangeState, clock: Clock) -> None:
    """An exchange rebuilt from snapshot + deltas has the live exchange's books."""
    again = SimExchange("DQ1", seed=ex.seed, clock=clock, state=state)

    def books(engine: SimExchange) -> tuple:
        return (
            sorted(
                (p.vt_symbol, p.direction, p.volume, p.yd_volume, p.frozen, p.yd_frozen, p.price)
                for p in engine.positions()
            ),
            engine.working_orders(),
            engine.trades(),
            engine.trading_day,
        )

    assert books(again) == books(ex)
    a, b = ex.account(), again.account()
    for name in ("pre_balance", "close_pnl", "commission", "frozen", "margin"):
        assert getattr(a, name) == pytest.approx(getattr(b, name), abs=1e-6), name
    # the id counter came along (or, after a long gap, the clock moved it further on)
    live = int(order(ex, "zz2612.SHFE", LONG, 1, 1.0).order_id)
    assert int(order(again, "zz2612.SHFE", LONG, 1, 1.0).order_id) >= live


def test_delta_replay_is_idempotent_and_stale_journals_are_ignored(
    ex: SimExchange, clock: Clock, tmp_path
) -> None:
    path = tmp_path / "sim_exchange.json"
    journal = StateJournal(path)
    snapshot = ex.to_state(new_generation=True)
    save_state(path, snapshot)
    journal.reset(snapshot.generation)
    buy_now(ex, TA, 2)
    delta = ex.take_delta()
    assert delta is not None and [t.volume for t in delta.trades] and delta.positions
    journal.append(delta)
    journal.append(delta)  # replaying a line twice does no harm
    journal.close()
    state, note = load_state(path)
    assert note == "" and state is not None
    assert sum(t.volume for t in state.trades) == 2
    assert [(p.vt_symbol, p.volume) for p in state.positions] == [(TA, 2)]
    # a crash between writing snapshot N+1 and resetting the journal: the old journal is stale
    save_state(path, ex.to_state(new_generation=True))
    state, note = load_state(path)
    assert note == "" and state is not None and state.generation == snapshot.generation + 1
    assert sum(t.volume for t in state.trades) == 2
    assert ex.take_delta() is not None  # nothing pending, but scalars always travel
