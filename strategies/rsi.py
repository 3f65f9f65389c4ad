"""RSI reversal: buy when the RSI leaves the oversold zone, sell when it leaves the overbought zone."""

from __future__ import annotations

from core.models import Bar

from .base import Param, Strategy


def rsi_bars(rsi_window: int) -> int:
    """ArrayManager size for an RSI: TA-Lib's Wilder smoothing is seeded from the first
    ``rsi_window`` changes; five windows of history make that seed's weight negligible."""
    return 5 * rsi_window + 2


class RsiStrategy(Strategy):
    """Mean reversion on the RSI (TA-Lib, Wilder) of bar closes.

    Rule, evaluated on each completed bar (``RSI[-2]`` = previous bar, ``RSI[-1]`` = this bar):

    - RSI crosses UP through ``rsi_long`` (``RSI[-2] < rsi_long <= RSI[-1]``: leaving oversold):
      close a short of this instance, then ``buy`` ``volume`` lots (``hold`` if already long);
    - RSI crosses DOWN through ``rsi_short`` (``RSI[-2] > rsi_short >= RSI[-1]``: leaving
      overbought): close a long, then ``sell`` (``hold`` if already short).
    """

    parameters = {
        "rsi_window": Param(14, int, min=2, max=500, help="bars in the RSI"),
        "rsi_long": Param(30.0, float, min=1, max=99, help="buy when the RSI rises through this level"),
        "rsi_short": Param(70.0, float, min=1, max=99, help="sell when the RSI falls through this level"),
        "volume": Param(1, int, min=1, max=10000, help="lots per entry"),
    }

    rsi_window: int
    rsi_long: float
    rsi_short: float
    volume: int

    def validate(self) -> None:
        if self.rsi_long >= self.rsi_short:
            raise self.param_error("rsi_long", f"below rsi_short ({self.rsi_short:g})")

    def bars_needed(self) -> int:
        return rsi_bars(self.rsi_window)

    def on_bar(self, bar: Bar) -> None:
        super().on_bar(bar)
        if not self.inited:
            return
        rsi = self.am.rsi(self.rsi_window, array=True)
        before, now = float(rsi[-2]), float(rsi[-1])
        price = bar.close_price
        name = f"RSI{self.rsi_window}"
        if before < self.rsi_long <= now:
            condition = (
                f"{name} crossed up through {self.rsi_long:g} at {self.fmt(price)} "
                f"({name} {before:.2f} -> {now:.2f})"
            )
            self.enter_position(1, price, self.volume, condition, "rsi_up")
        elif before > self.rsi_short >= now:
            condition = (
                f"{name} crossed down through {self.rsi_short:g} at {self.fmt(price)} "
                f"({name} {before:.2f} -> {now:.2f})"
            )
            self.enter_position(-1, price, self.volume, condition, "rsi_down")
