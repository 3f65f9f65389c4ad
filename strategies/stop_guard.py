"""Stop guard: protects the ACCOUNT's position in one symbol, whoever opened it."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from core.models import Direction, Position, Tick

from .base import PCT_EPSILON, Param, SignalLatch, Strategy, StrategyContext, StrategyRisk


@dataclass
class _GuardState:
    """What the guard remembers about one direction's position; reset when it is gone."""

    first_done: bool = False
    best: float = 0.0  # best price since the first take-profit


class StopGuardStrategy(Strategy):
    """Exits for the account's long and short positions in ``vt_symbol``, on every tick.

    For each direction with a position (``context.position``; entry = its average cost, P&L in %
    of it, negated for short), checked in this order:

    1. stop-loss: loss >= ``stop_loss_pct`` -> ``close`` everything closable;
    2. first take-profit (once per position): profit >= ``first_take_profit_pct`` -> ``close``
       ``round(volume x first_take_profit_ratio)`` lots (at least 1, at most all); from then on
       the best price is tracked;
    3. trailing take-profit (after the first): the price retraces ``trailing_pct`` % from the best
       price since the first take-profit -> ``close`` the rest.

    Closable = volume - frozen (lots already in closing orders are not asked for twice). The state
    of a direction resets when its position is gone. Stop-loss and trailing exits are emitted once
    per position state and repeated after a minute if still due (``SignalLatch``). The guard
    closes lots it did not open: its signals carry the position's direction and the engine checks
    them against the account's position, not this instance's (which stays flat).
    """

    PROTECTIVE = True  # it only closes: the kill switch may keep it guarding

    parameters = {
        "stop_loss_pct": Param(2.0, float, min=0.01, max=100, help="close all at this loss, % of cost"),
        "first_take_profit_pct": Param(5.0, float, min=0.01, max=1000, help="first partial exit, % profit"),
        "first_take_profit_ratio": Param(
            0.6, float, min=0.01, max=1.0, help="share closed at the first exit"
        ),
        "trailing_pct": Param(
            1.5, float, min=0.01, max=100, help="close the rest on this % retrace from best"
        ),
    }

    stop_loss_pct: float
    first_take_profit_pct: float
    first_take_profit_ratio: float
    trailing_pct: float

    def __init__(
        self,
        context: StrategyContext,
        name: str,
        vt_symbol: str,
        params: Mapping[str, Any],
        risk: StrategyRisk,
    ) -> None:
        super().__init__(context, name, vt_symbol, params, risk)
        self.guards = {Direction.LONG: _GuardState(), Direction.SHORT: _GuardState()}
        self._latch = SignalLatch()

    def bars_needed(self) -> int:
        return 0

    def on_tick(self, tick: Tick) -> None:
        super().on_tick(tick)
        if tick.vt_symbol != self.vt_symbol or tick.last_price <= 0 or not self.running:
            return
        for direction in (Direction.LONG, Direction.SHORT):
            self.guard(direction, tick.last_price)

    def guard(self, direction: Direction, price: float) -> None:
        """Check one direction's position against the three exits at ``price``."""
        state = self.guards[direction]
        position = self.context.position(self.vt_symbol, direction)
        if position is None or position.volume <= 0:
            if state.first_done:
                self.log(f"{direction.name.lower()} position gone; guard state reset")
            self.guards[direction] = _GuardState()
            self._latch.clear(f"stop_loss:{direction.name}")
            self._latch.clear(f"trailing:{direction.name}")
            return
        if position.price <= 0:
            return
        sign = 1.0 if direction is Direction.LONG else -1.0
        change = (price / position.price - 1.0) * 100.0 * sign
        closable = max(position.volume - position.frozen, 0.0)
        side = direction.name.lower()
        what = f"{side} {position.volume:g} @ {self.fmt(position.price)}, last {self.fmt(price)}"
        snapshot = (position.volume, position.frozen, position.price)

        if change <= -self.stop_loss_pct + PCT_EPSILON:
            name = f"stop_loss:{direction.name}"
            if closable > 0 and self._latch.ready(name, snapshot, self.now):
                condition = (
                    f"stop-loss: {what}: {change:+.2f}% <= {-self.stop_loss_pct:.2f}%, close {closable:g}"
                )
                self._close(direction, price, closable, condition, name)
            return

        if not state.first_done:
            if change >= self.first_take_profit_pct - PCT_EPSILON and closable > 0:
                lots = self._first_lots(position)
                lots = min(lots, closable)
                state.first_done, state.best = True, price
                condition = (
                    f"first take-profit: {what}: {change:+.2f}% >= +{self.first_take_profit_pct:.2f}%, "
                    f"close {lots:g} of {position.volume:g} ({self.first_take_profit_ratio:.0%})"
                )
                self._close(direction, price, lots, condition, f"first_take_profit:{direction.name}")
            return

        state.best = max(state.best, price) if sign > 0 else min(state.best, price)
        retrace = (state.best - price) / state.best * 100.0 * sign
        name = f"trailing:{direction.name}"
        if (
            retrace >= self.trailing_pct - PCT_EPSILON
            and closable > 0
            and self._latch.ready(name, snapshot, self.now)
        ):
            condition = (
                f"trailing take-profit: {what}, best {self.fmt(state.best)} since the first "
                f"take-profit: retraced {retrace:.2f}% >= {self.trailing_pct:.2f}%, close {closable:g}"
            )
            self._close(direction, price, closable, condition, name)

    def _first_lots(self, position: Position) -> float:
        """Lots of the first take-profit: the ratio of the position, rounded half up, in [1, volume]."""
        lots = math.floor(position.volume * self.first_take_profit_ratio + 0.5)
        return float(min(max(lots, 1), position.volume))

    def _close(self, direction: Direction, price: float, volume: float, condition: str, name: str) -> None:
        self.emit_signal("close", price, volume, condition, direction=direction, key=self.event_key(name))
