"""MA + RSI: moving-average crosses traded only when the RSI confirms the momentum."""

from __future__ import annotations

from core.models import Bar

from .base import Param, Strategy, crossed
from .rsi import rsi_bars


class MaRsiStrategy(Strategy):
    """A fast/slow SMA cross is the trigger, the RSI (TA-Lib, Wilder) the filter.

    Rule, evaluated on each completed bar:

    - golden cross (fast SMA crosses above slow): a short of this instance is closed in any case
      (the trend it bet on is over); then, if ``RSI > rsi_long`` the cross is confirmed and the
      strategy ``buy``s ``volume`` lots (``hold`` if already long); if not, it records ``hold``
      ("not confirmed") and stays flat;
    - death cross: mirror image (close a long; ``sell`` if ``RSI < rsi_short``, else ``hold``).

    Exits need no confirmation, entries do: a cross against weak momentum (RSI at or below 40 on
    a golden cross) is the classic whipsaw this filter is for.
    """

    parameters = {
        "fast_window": Param(10, int, min=1, max=1000, help="bars in the fast SMA"),
        "slow_window": Param(30, int, min=2, max=1000, help="bars in the slow SMA"),
        "rsi_window": Param(14, int, min=2, max=500, help="bars in the RSI"),
        "rsi_long": Param(40.0, float, min=1, max=99, help="a golden cross buys only if RSI > this"),
        "rsi_short": Param(60.0, float, min=1, max=99, help="a death cross sells only if RSI < this"),
        "volume": Param(1, int, min=1, max=10000, help="lots per entry"),
    }

    fast_window: int
    slow_window: int
    rsi_window: int
    rsi_long: float
    rsi_short: float
    volume: int

    def validate(self) -> None:
        if self.fast_window >= self.slow_window:
            raise self.param_error("fast_window", f"less than slow_window ({self.slow_window})")

    def bars_needed(self) -> int:
        return max(self.slow_window + 1, rsi_bars(self.rsi_window))

    def on_bar(self, bar: Bar) -> None:
        super().on_bar(bar)
        if not self.inited:
            return
        fast = self.am.sma(self.fast_window, array=True)
        slow = self.am.sma(self.slow_window, array=True)
        cross = crossed(fast, slow)
        if not cross:
            return
        rsi = float(self.am.rsi(self.rsi_window, array=True)[-1])
        price = bar.close_price
        fast_text, slow_text = self.fmt_pair(fast[-1], slow[-1])
        f, s, r = f"MA{self.fast_window}", f"MA{self.slow_window}", f"RSI{self.rsi_window}"
        if cross > 0:
            cond = f"{f} crossed above {s} at {self.fmt(price)} ({f} {fast_text} > {s} {slow_text})"
            confirmed = rsi > self.rsi_long
            check = f"{r} {rsi:.2f} {'>' if confirmed else '<='} {self.rsi_long:g}"
            key, exit_side = "ma_rsi_up", -1
        else:
            cond = f"{f} crossed below {s} at {self.fmt(price)} ({f} {fast_text} < {s} {slow_text})"
            confirmed = rsi < self.rsi_short
            check = f"{r} {rsi:.2f} {'<' if confirmed else '>='} {self.rsi_short:g}"
            key, exit_side = "ma_rsi_down", 1
        if confirmed:
            self.enter_position(cross, price, self.volume, f"{cond}, {check}", key)
            return
        if exit_side * self.pos > 0:
            held = "long" if self.pos > 0 else "short"
            self.close(price, f"{cond}: close {held} {abs(self.pos):g}", key=self.event_key(f"{key}:close"))
        self.hold(price, f"{cond}, not confirmed: {check}", key=self.event_key(f"{key}:hold"))
