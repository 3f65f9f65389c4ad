"""Moving-average cross: trend following on two simple moving averages of bar closes."""

from __future__ import annotations

from core.models import Bar

from .base import Param, Strategy, crossed


class MaCrossStrategy(Strategy):
    """Always in the market in the direction of the last cross of two SMAs of the bar close.

    Rule, evaluated on each completed bar once ``slow_window + 1`` bars are known:

    - fast SMA crosses ABOVE the slow SMA (golden cross): if the instance is short, ``close`` the
      short, then ``buy`` ``volume`` lots; if it is already long, ``hold``;
    - fast SMA crosses BELOW (death cross): mirror image (``close`` a long, then ``sell``).

    A cross is a change of side of ``fast - slow`` (see ``crossed``): a touch that turns back is
    not a cross. Signals carry the bar close as price and the bar end time.
    """

    parameters = {
        "fast_window": Param(10, int, min=1, max=1000, help="bars in the fast SMA"),
        "slow_window": Param(30, int, min=2, max=1000, help="bars in the slow SMA"),
        "volume": Param(1, int, min=1, max=10000, help="lots per entry"),
    }

    fast_window: int
    slow_window: int
    volume: int

    def validate(self) -> None:
        if self.fast_window >= self.slow_window:
            raise self.param_error("fast_window", f"less than slow_window ({self.slow_window})")

    def bars_needed(self) -> int:
        return self.slow_window + 1

    def on_bar(self, bar: Bar) -> None:
        super().on_bar(bar)
        if not self.inited:
            return
        fast = self.am.sma(self.fast_window, array=True)
        slow = self.am.sma(self.slow_window, array=True)
        cross = crossed(fast, slow)
        if not cross:
            return
        price = bar.close_price
        fast_text, slow_text = self.fmt_pair(fast[-1], slow[-1])
        f, s = f"MA{self.fast_window}", f"MA{self.slow_window}"
        if cross > 0:
            condition = f"{f} crossed above {s} at {self.fmt(price)} ({f} {fast_text} > {s} {slow_text})"
            self.enter_position(1, price, self.volume, condition, "ma_cross_up")
        else:
            condition = f"{f} crossed below {s} at {self.fmt(price)} ({f} {fast_text} < {s} {slow_text})"
            self.enter_position(-1, price, self.volume, condition, "ma_cross_down")
