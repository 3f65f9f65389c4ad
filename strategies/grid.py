"""Grid: buys a fixed size on each grid line the price falls through below a base price, and
sells each lot again one line higher."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.models import Tick

from .base import Param, Strategy, StrategyContext, StrategyRisk


class GridStrategy(Strategy):
    """A long-only grid below ``base_price``, on ticks.

    Lines: ``line(k) = base - k x step`` for ``k = 1 .. levels``, ``step = grid_step`` price ticks
    (the contract's ``pricetick``); ``line(0)`` is the base itself. With ``n`` levels held:

    - the price at or below ``line(n + 1)`` (and ``n < levels``) -> ``buy`` ``volume`` lots,
      level ``n + 1`` is held;
    - the price at or above ``line(n - 1)``, the line above level ``n``'s entry -> ``close``
      ``volume`` lots, level ``n`` is released.

    A jump through several lines gives one signal per line. The first price seen sets the base
    when ``base_price`` is 0; a configured base above the first price buys the lines already
    passed at once. Levels are the grid's own book, moved by its signals (not by fills): with
    auto-trading off the grid still walks its levels, and a close for a level while this instance
    holds nothing is recorded as ``hold``.
    """

    variables = ("base", "step", "held")  # the grid survives a restart where it was
    parameters = {
        "grid_step": Param(10, int, min=1, max=100000, help="distance between grid lines, in price ticks"),
        "levels": Param(5, int, min=1, max=100, help="number of lines below the base"),
        "volume": Param(1, int, min=1, max=10000, help="lots per line"),
        "base_price": Param(0.0, float, min=0, help="top of the grid; 0 = the first price seen"),
    }

    grid_step: int
    levels: int
    volume: int
    base_price: float

    def __init__(
        self,
        context: StrategyContext,
        name: str,
        vt_symbol: str,
        params: Mapping[str, Any],
        risk: StrategyRisk,
    ) -> None:
        super().__init__(context, name, vt_symbol, params, risk)
        self.base: float | None = None
        self.step = 0.0
        self.held = 0  # levels held (1 .. held)
        self._moves = 0  # level changes so far: each one is a new decision (its own key)
        self._missing_contract_logged = False

    def bars_needed(self) -> int:
        return 0

    def on_start(self) -> None:
        super().on_start()
        full = self.levels * self.volume
        if self.risk.max_position < full:
            self.log(
                f"risk.max_position {self.risk.max_position} < levels x volume = {full}: the engine will "
                f"refuse buys beyond {self.risk.max_position} lot(s)",
                "WARNING",
            )

    def line(self, level: int) -> float:
        """Price of grid line ``level`` (0 = the base)."""
        assert self.base is not None
        return round(self.base - level * self.step, 10)

    def on_tick(self, tick: Tick) -> None:
        super().on_tick(tick)
        if tick.vt_symbol != self.vt_symbol or tick.last_price <= 0 or not self.running:
            return
        price = tick.last_price
        if self.base is None and not self._set_up(price):
            return
        eps = self.step * 1e-6
        # a price that gaps through several lines in one tick makes ONE signal for all of them
        # (several identical orders in the same instant would be refused as duplicates)
        first = self.held + 1
        while self.held < self.levels and price <= self.line(self.held + 1) + eps:
            self.held += 1
        if self.held >= first:
            last = self.held
            lines = f"level {last}" if last == first else f"levels {first}-{last}"
            self.buy(
                price,
                self.volume * (last - first + 1),
                f"grid: price {self.fmt(price)} fell through {lines} at {self.fmt(self.line(last))}",
                key=self._key(f"buy:{first}-{last}"),
            )
            return
        top = self.held
        while self.held > 0 and price >= self.line(self.held - 1) - eps:
            self.held -= 1
        if self.held < top:
            closed = top - self.held
            lowest_above = self.held
            above = "the base" if lowest_above == 0 else f"level {lowest_above}"
            if closed == 1:
                lines, bought = f"level {top}", self.fmt(self.line(top))
            else:
                lines = f"levels {self.held + 1}-{top}"
                bought = f"{self.fmt(self.line(self.held + 1))} .. {self.fmt(self.line(top))}"
            condition = (
                f"grid: price {self.fmt(price)} rose through {above} at {self.fmt(self.line(lowest_above))}, "
                f"closing {lines} (bought at {bought})"
            )
            key = self._key(f"close:{self.held + 1}-{top}")
            if self.pos > 0:
                self.close(price, condition, volume=self.volume * closed, key=key)
            else:
                self.hold(price, f"{condition}: this instance holds no position", key=key)

    def _key(self, move: str) -> str:
        """A key of its own for every level change: buying a level back and closing it again,
        within a second, are new decisions, not a signal emitted twice."""
        self._moves += 1
        return self.event_key(f"grid:{move}#{self._moves}")

    def _set_up(self, price: float) -> bool:
        contract = self.context.contract(self.vt_symbol)
        if contract is None:
            if not self._missing_contract_logged:
                self.log(
                    f"grid waits for the contract of {self.vt_symbol} (grid_step is in price ticks)",
                    "WARNING",
                )
                self._missing_contract_logged = True
            return False
        self.step = self.grid_step * contract.pricetick
        self.base = self.base_price or price
        lowest = self.line(self.levels)
        self.log(
            f"grid: base {self.fmt(self.base)}, step {self.fmt(self.step)} ({self.grid_step} ticks), "
            f"{self.levels} levels down to {self.fmt(lowest)}, {self.volume} lot(s) each"
        )
        return True
