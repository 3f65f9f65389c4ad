"""The terminal bell for what an operator must not miss: fills, rejections, an account going
down, the kill switch (``ui.bell`` chooses which). A burst rings once."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import ClassVar

from core.client import AccountState, Change
from core.models import Status, TradingState

#: the events ``ui.bell`` may name (config.schema.BellEvent, the same names)
BELL_EVENTS = ("fill", "rejection", "disconnect", "kill_switch")


class Alerts:
    """Rings ``bell`` for the chosen events, at most once per ``GAP`` seconds."""

    GAP: ClassVar[float] = 1.0
    #: the time source (monotonic seconds); tests replace it
    clock: ClassVar[Callable[[], float]] = time.monotonic

    def __init__(self, events: Iterable[str], bell: Callable[[], None]) -> None:
        self.events = frozenset(events)
        unknown = self.events - set(BELL_EVENTS)
        if unknown:
            raise ValueError(f"unknown bell events {sorted(unknown)} (expected some of {BELL_EVENTS})")
        self._bell = bell
        self._last = float("-inf")
        self._halted: set[str] = set()  # accounts seen HALTED (the switch rings when pulled, once)
        self.rung = 0

    def ring(self, event: str) -> None:
        if event not in self.events:
            return
        now = type(self).clock()
        if now - self._last < self.GAP:
            return  # the same burst (a cancel-all's replies, a sweep of fills)
        self._last = now
        self.rung += 1
        self._bell()

    def on_change(self, change: Change, state: AccountState) -> None:
        """One change of an account (the console's subscription); ``state`` is after it."""
        if change.kind == "trade":
            self.ring("fill")
        elif change.kind == "order" and change.key is not None:
            order = state.orders.get(change.key)
            if order is not None and order.status is Status.REJECTED:
                self.ring("rejection")
        elif change.kind in ("status", "snapshot"):
            halted = state.info is not None and state.info.trading_state is TradingState.HALTED
            if halted and change.account_id not in self._halted:
                self._halted.add(change.account_id)
                if change.kind == "status":  # pulled now; a snapshot tells of one pulled before
                    self.ring("kill_switch")
            elif not halted:
                self._halted.discard(change.account_id)

    def on_down(self) -> None:
        """An account went down (disconnected or crashed), the first time since it was up."""
        self.ring("disconnect")

    def on_rejected(self) -> None:
        """A command the operator gave was refused."""
        self.ring("rejection")


class RiskDegreeWatch:
    """Says when an account's risk degree (margin / balance) reaches ``warning``: once per
    crossing. It warns again only after the degree has fallen ``HYSTERESIS`` below the
    threshold (5 points: 80 % warns, 76 % does not re-arm, 74.9 % does), so a degree that
    hovers at the threshold with every tick does not warn with every tick."""

    HYSTERESIS: ClassVar[float] = 0.05

    def __init__(self, warning: float) -> None:
        self.warning = warning
        self._warned: set[str] = set()  # accounts at or above the threshold, already told

    def crossed(self, account_id: str, degree: float | None) -> bool:
        """True when ``degree`` (None: no balance) has just reached the threshold."""
        if degree is None:
            return False
        if account_id in self._warned:
            if degree < self.warning - self.HYSTERESIS:
                self._warned.discard(account_id)
            return False
        if degree >= self.warning:
            self._warned.add(account_id)
            return True
        return False
