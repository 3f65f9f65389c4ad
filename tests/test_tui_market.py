"""The Market panel's limits and statistics, the Depth panel, and the order form's live quote and
±tick keys (issue 15, defect 7), driven like an operator over ``FakeClient``'s fixed quotes."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

import msgspec
import pytest
from textual.pilot import Pilot
from textual.widgets import Input, Static

from core.models import CHINA_TZ, Contract, Exchange
from tests.fake_client import FakeClient, tick
from tui import format as fmt
from tui.app import QTraderApp
from tui.dialogs.order_entry import OrderEntryDialog, step_price
from tui.widgets.depth import DepthView
from tui.widgets.market import MarketTable

WIDE = (160, 45)
AU = "au2612.SHFE"  # tick 0.02, five levels; pre-settlement 905.60, limits 968.99 / 842.21
AG = "ag2612.SHFE"
M = "m2705.DCE"  # level 1 only


async def until(pilot: Pilot[int], predicate: Callable[[], object], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await pilot.pause(0.02)


def plain(widget: Static) -> str:
    return widget.content.plain  # type: ignore[union-attr]


def depth_lines(app: QTraderApp) -> dict[str, str]:
    """The Depth panel by line label ("Ask 5", "Last", "Bid 1", "Limit up" ...): the rest of the line."""
    lines = {}
    for line in plain(app.screen.query_one("#depth", DepthView)).splitlines():
        label, rest = line[:9].strip(), line[9:].split()
        if label.startswith(("Ask", "Bid", "Last")):
            label, rest = line[:6].strip(), line[6:].split()
        if label:
            lines[label] = " ".join(rest)
    return lines


def market_line(app: QTraderApp, vt_symbol: str) -> str:
    table = app.screen.query_one("#market", MarketTable)
    return table.render_line(1 + table.row_keys.index(vt_symbol)).text


async def test_the_market_panel_shows_limits_pre_settlement_and_open_interest_at_160() -> None:
    app = QTraderApp(FakeClient())
    async with app.run_test(size=WIDE) as pilot:
        await pilot.pause()
        table = app.screen.query_one("#market", MarketTable)
        header = table.render_line(0).text
        for label in ("OI", "PreSettle", "Limit up", "Limit dn", "Bid", "Ask"):
            assert f" {label} " in header, (label, header)
        row = market_line(app, AU).split()
        # last, change, bid, bidv, ask, askv, volume, OI, pre-settlement, limit-up, limit-down
        assert row[-4:] == ["214,890", "905.60", "968.99", "842.21"], row
        assert market_line(app, "rb2705.SHFE").split()[-4:] == ["2,311,870", "3,151", "3,372", "2,930"]


async def test_the_depth_panel_shows_five_levels_of_the_selected_contract_and_follows_the_cursor() -> None:
    client = FakeClient()
    app = QTraderApp(client)
    async with app.run_test(size=WIDE) as pilot:
        await pilot.pause()
        assert app.screen.query_one("#depth-box").border_title == f"Depth {AU}"
        lines = depth_lines(app)
        assert [lines[f"Ask {n}"] for n in (5, 4, 3, 2, 1)] == [
            "912.44 27",
            "912.42 22",
            "912.40 17",
            "912.38 12",
            "912.36 7",
        ]
        assert lines["Last"] == "912.34 +0.74%"
        assert [lines[f"Bid {n}"] for n in (1, 2, 3, 4, 5)] == [
            "912.32 12",
            "912.30 19",
            "912.28 26",
            "912.26 33",
            "912.24 40",
        ]
        assert (lines["Limit up"], lines["Limit dn"], lines["PreSettle"], lines["OI"]) == (
            "968.99",
            "842.21",
            "905.60",
            "214,890",
        )

        await pilot.press("down")  # the Market panel has the focus: the next contract
        await until(pilot, lambda: depth_lines(app).get("Ask 1") == "12,088 31", "the depth of ag2612")
        assert app.screen.query_one("#depth-box").border_title == f"Depth {AG}"

        # a new quote of the selected contract is drawn; one of another contract is not needed
        client.apply("DQ1", "tick", tick(AG, "DQ1", ask_price_1=12_090, ask_volume_1=3))
        await until(pilot, lambda: depth_lines(app).get("Ask 1") == "12,090 3", "the new ask of ag2612")

        market = app.screen.query_one("#market", MarketTable)
        await pilot.press(*["down"] * (market.row_keys.index(M) - market.cursor_row))  # level 1 only
        await until(pilot, lambda: depth_lines(app).get("Bid 1") == "2,946 150", "the depth of m2705")
        lines = depth_lines(app)
        assert lines["Ask 1"] == "2,947 98"
        for n in (2, 3, 4, 5):  # blanks, never zeros
            assert lines.get(f"Ask {n}", "") == "" and lines.get(f"Bid {n}", "") == "", lines


async def test_the_order_form_shows_the_live_bid_and_ask_of_its_contract() -> None:
    client = FakeClient()
    app = QTraderApp(client)
    async with app.run_test(size=WIDE) as pilot:
        await pilot.press("b")
        entry = app.screen
        assert isinstance(entry, OrderEntryDialog)
        quote = entry.query_one("#entry-quote", Static)
        assert "Bid 912.32 x12   Ask 912.36 x7   Last 912.34" in plain(quote)
        assert "Limit up 968.99   Limit down 842.21   Tick 0.02" in plain(quote)
        price = entry.query_one("#price", Input)
        assert price.value == "912.36"

        client.apply("DQ1", "tick", tick(AU, "DQ1", bid_price_1=912.40, bid_volume_1=4, ask_price_1=912.44))
        await until(
            pilot, lambda: "Bid 912.40 x4   Ask 912.44 x7" in plain(quote), "the new quote in the form"
        )
        assert price.value == "912.36"  # the operator's price never moves by itself
        client.apply("DQ1", "tick", tick(AG, "DQ1", bid_price_1=12_000))  # another contract: no change
        await pilot.pause(0.05)
        assert "Bid 912.40 x4" in plain(quote)

        # the quote follows the symbol typed in the form
        await pilot.press("shift+tab", "shift+tab", "shift+tab", "shift+tab", "shift+tab")
        assert app.focused is entry.query_one("#symbol", Input)
        entry.query_one("#symbol", Input).value = AG
        await until(pilot, lambda: "Bid 12,000 x45" in plain(quote), "the quote of ag2612")


async def test_plus_and_minus_move_the_price_by_one_tick_within_the_limits() -> None:
    app = QTraderApp(FakeClient())
    async with app.run_test(size=WIDE) as pilot:
        await pilot.press("b")
        entry = app.screen
        assert isinstance(entry, OrderEntryDialog)
        price = entry.query_one("#price", Input)
        error = entry.query_one("#entry-error", Static)
        await pilot.press("shift+tab")  # from the volume to the price
        assert app.focused is price and price.value == "912.36"
        await pilot.press("plus")
        assert price.value == "912.38"
        await pilot.press("minus", "minus", "minus")
        assert price.value == "912.32"
        await pilot.press("up", "up")
        assert price.value == "912.36"
        await pilot.press("down")
        assert price.value == "912.34"
        await pilot.press(*["plus"] * 100)  # a hundred ticks of 0.02: exactly 2.00, no float drift
        assert price.value == "914.34"

        price.value = "968.94"  # near limit-up 968.99 (the grid's last price under it is 968.98)
        await pilot.press("plus", "plus")
        assert price.value == "968.98"
        await pilot.press("plus")
        assert price.value == "968.98"
        assert "limit-up 968.99" in plain(error)
        price.value = "842.26"  # near limit-down 842.21 (the grid's first price above it is 842.22)
        await pilot.press("minus", "minus", "minus", "minus")
        assert price.value == "842.22"
        assert "limit-down 842.21" in plain(error)

        price.value = "912.33"  # off the grid: to the grid price on that side
        await pilot.press("plus")
        assert price.value == "912.34"
        price.value = "912.33"
        await pilot.press("minus")
        assert price.value == "912.32"
        price.value = ""  # nothing typed: from the price a buy pays
        await pilot.press("plus")
        assert price.value == "912.38"
        price.value = "abc"
        await pilot.press("plus")
        assert price.value == "abc" and "not a price" in plain(error)

        # the form still reviews with Enter in the price field, with the stepped price
        price.value = "912.30"
        await pilot.press("plus")
        await pilot.press("enter")
        await pilot.pause()
        assert not isinstance(app.screen, OrderEntryDialog)
        confirm_rows = dict(app.screen.rows)  # type: ignore[attr-defined]
        assert confirm_rows["Price"] == "912.32"


def _contract(pricetick: float) -> Contract:
    return Contract(vt_symbol="x.SHFE", symbol="x", exchange=Exchange.SHFE, size=10, pricetick=pricetick)


@pytest.mark.parametrize(
    ("pricetick", "start", "steps", "expected"),
    [
        (0.02, "900.00", 100, "902.00"),
        (0.2, "3978.6", 7, "3980.0"),
        (0.1, "0.3", -1, "0.2"),
        (0.1, "0.1", -1, "0.1"),  # never below one tick
        (5, "20,815", 1, "20820"),
        (5, "20812", 1, "20815"),
        (5, "20812", -1, "20810"),
        (0.5, "781.5", -3, "780.0"),
    ],
)
def test_step_price_is_decimal_exact(pricetick: float, start: str, steps: int, expected: str) -> None:
    assert step_price(start, _contract(pricetick), None, steps) == expected


def test_step_price_stays_within_the_limits_and_refuses_what_is_not_a_price() -> None:
    au = _contract(0.02)
    quote = tick(AU, "DQ1")
    assert step_price("1000", au, quote, -1) == "968.98"  # beyond limit-up: back inside
    assert step_price("800", au, quote, 1) == "842.22"
    for text in ("", "abc", "nan", "inf"):
        with pytest.raises(ValueError, match="not a price"):
            step_price(text, au, quote, 1)


# ====================================================================== the State column


class _Clock:
    """The console's exchange clock, moved by the test."""

    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def __call__(self) -> datetime:
        return self.moment


def market_states(app: QTraderApp) -> dict[str, str]:
    table = app.screen.query_one("#market", MarketTable)
    return {key: market_line(app, key).split()[1] for key in table.row_keys}


async def test_the_market_panel_shows_each_contracts_session_state() -> None:
    # Friday 2026-11-20, a second before the day session closes (FakeClient's quotes are of that day)
    clock = _Clock(datetime(2026, 11, 20, 14, 59, 59, 800_000, tzinfo=CHINA_TZ))
    app = QTraderApp(FakeClient(), clock=clock)
    async with app.run_test(size=WIDE) as pilot:
        await pilot.pause()
        table = app.screen.query_one("#market", MarketTable)
        assert table.render_line(0).text.split()[:3] == ["Symbol", "State", "Last"]
        assert market_states(app) == {
            "au2612.SHFE": "open",
            "ag2612.SHFE": "open",
            "cu2701.SHFE": "open",
            "sc2701.INE": "open",
            "IF2612.CFFEX": "open",
            "rb2705.SHFE": "open",
            "m2705.DCE": "open",
            "TA705.CZCE": "open",
        }
        # 15:00 passes with no quote: the timer set for that instant redraws the column
        clock.moment = datetime(2026, 11, 20, 15, 0, 1, tzinfo=CHINA_TZ)
        await until(
            pilot, lambda: set(market_states(app).values()) == {"closed"}, "every market closed at 15:00"
        )

        clock.moment = datetime(2026, 11, 20, 20, 56, tzinfo=CHINA_TZ)  # the night's call auction
        table.refresh_states()
        states = market_states(app)
        assert states["rb2705.SHFE"] == states["au2612.SHFE"] == states["TA705.CZCE"] == "auction"
        assert states["IF2612.CFFEX"] == "closed"  # no night session at CFFEX

        clock.moment = datetime(2026, 11, 20, 23, 30, tzinfo=CHINA_TZ)  # Friday night, for Monday
        table.refresh_states()
        states = market_states(app)
        assert states["au2612.SHFE"] == states["sc2701.INE"] == states["cu2701.SHFE"] == "night"
        assert states["rb2705.SHFE"] == states["m2705.DCE"] == states["TA705.CZCE"] == "closed"  # ended 23:00


def test_the_header_trading_day_skips_holidays_and_believes_a_venue_ahead_of_the_calendar() -> None:
    eve = datetime(2026, 9, 30, 21, 30, tzinfo=CHINA_TZ)  # the eve of National Day
    assert "trading day 2026-10-08" in fmt.clock_note(eve).plain
    assert "trading day 2026-10-08" in fmt.clock_note(eve, "20260930").plain  # a venue not logged in again
    assert "trading day 2026-10-09" in fmt.clock_note(eve, "20261009").plain  # the venue knows better


async def test_the_state_column_reads_the_venues_clock() -> None:
    """A sim started at ``sim.clock_start`` says how far its clock is ahead (``clock_offset``):
    the column shows that venue's state, not the console's."""
    clock = _Clock(datetime(2026, 11, 20, 14, 30, tzinfo=CHINA_TZ))
    app = QTraderApp(FakeClient(), clock=clock)
    async with app.run_test(size=WIDE) as pilot:
        await pilot.pause()
        state = app.client.state("DQ1")
        assert state.info is not None and market_states(app)["rb2705.SHFE"] == "open"
        state.info = msgspec.structs.replace(state.info, clock_offset=7 * 3600.0)  # the venue is at 21:30
        table = app.screen.query_one("#market", MarketTable)
        table.show(state)
        states = market_states(app)
        assert states["rb2705.SHFE"] == states["au2612.SHFE"] == "night"
        assert states["IF2612.CFFEX"] == "closed"


async def test_the_state_column_is_given_up_at_80_columns() -> None:
    app = QTraderApp(FakeClient())
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert "state" not in app.screen.query_one("#market", MarketTable).shown_columns
