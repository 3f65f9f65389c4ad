"""Depth panel: the book of the contract selected in the Market panel, five levels each side.

A ladder, as trading terminals draw it: asks from the fifth level down to the best, the last
price, then bids from the best down to the fifth; under it the day's limits, the
pre-settlement and the open interest. A level the venue did not report (most CTP fronts send
level 1 only) is blank, never a zero. Prices are colored against the pre-settlement like the
Market panel's last price.
"""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget
from textual.widgets import Static

from core.client import AccountState
from core.models import DEPTH_LEVELS, Contract, Level, Tick
from tui import format as fmt

LABEL = 6  # "Ask 5 "
PRICE = 10
VOLUME = 7
WIDTH = LABEL + PRICE + VOLUME  # what a line needs: the panel is this wide plus its border


class DepthView(Static):
    """``show(state, vt_symbol)`` draws that contract's book; it redraws only when it changed."""

    def __init__(self, *, scheme: str = "cn", id: str | None = None) -> None:
        super().__init__(id=id)
        self.scheme = scheme
        #: the contract shown (None: nothing selected)
        self.vt_symbol: str | None = None
        self._shown: Text | None = None

    def show(self, state: AccountState, vt_symbol: str | None) -> None:
        self.vt_symbol = vt_symbol
        tick = state.ticks.get(vt_symbol) if vt_symbol else None
        contract = state.contracts.get(vt_symbol) if vt_symbol else None
        text = self._ladder(tick, contract) if tick is not None else self._empty(vt_symbol)
        if text != self._shown:
            # a new height needs a layout (a redraw of the screen); new figures do not
            lines = text.plain.count("\n")
            self.update(text, layout=self._shown is None or lines != self._shown.plain.count("\n"))
            self._shown = text
        title = f"Depth {vt_symbol}" if vt_symbol else "Depth"
        box = self.parent
        if isinstance(box, Widget) and box.border_title != title:
            box.border_title = title

    @staticmethod
    def _empty(vt_symbol: str | None) -> Text:
        return Text(f"no quote for {vt_symbol} yet" if vt_symbol else "select a contract", style="italic")

    def _ladder(self, tick: Tick, contract: Contract | None) -> Text:
        base = tick.pre_settlement or tick.pre_close
        up, down = fmt.UP_DOWN.get(self.scheme, fmt.UP_DOWN["cn"])

        def style_of(price: float) -> str:
            if not base or not price:
                return ""
            return up if price > base else down if price < base else ""

        out = Text(no_wrap=True, overflow="crop")

        def level(label: str, lvl: Level) -> None:
            price, volume = lvl
            out.append(f"{label:<{LABEL}}", style="dim")
            if price:  # reported: its price and volume
                out.append(f"{fmt.price(price, contract):>{PRICE}}", style=style_of(price))
                out.append(f"{fmt.volume(volume):>{VOLUME}}")
            out.append("\n")

        for n in range(DEPTH_LEVELS, 0, -1):
            level(f"Ask {n}", tick.asks[n - 1])
        last = fmt.price(tick.last_price, contract)
        change = fmt.pct(tick.change_pct) if base else ""
        out.append(f"{'Last':<{LABEL}}", style="bold")
        out.append(f"{last:>{PRICE}}", style=style_of(tick.last_price) or "bold")
        out.append(f"{change:>{VOLUME}}", style=style_of(tick.last_price))
        out.append("\n")
        for n in range(1, DEPTH_LEVELS + 1):
            level(f"Bid {n}", tick.bids[n - 1])
        out.append("\n")
        for label, value in (
            ("Limit up", fmt.price(tick.limit_up, contract)),
            ("Limit dn", fmt.price(tick.limit_down, contract)),
            ("PreSettle", fmt.price(tick.pre_settlement, contract)),
            ("OI", fmt.volume(tick.open_interest)),
        ):
            out.append(f"{label:<{WIDTH - PRICE}}", style="dim")
            out.append(f"{value:>{PRICE}}\n")
        out.rstrip()
        return out
