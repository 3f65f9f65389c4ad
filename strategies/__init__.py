"""Strategies: the ``Strategy`` base class, the built-in strategies and the class loader.

Importing this package is cheap: vnpy (bars and TA-Lib indicators) is imported when the first
bar strategy is created, not here.
"""

from __future__ import annotations

from .base import (
    GUARD_REPEAT_SECONDS,
    Param,
    Signal,
    SignalLatch,
    Strategy,
    StrategyContext,
    StrategyError,
    crossed,
)
from .grid import GridStrategy
from .loader import BUILTINS, load_strategy_class
from .ma_cross import MaCrossStrategy
from .ma_rsi import MaRsiStrategy
from .rsi import RsiStrategy
from .stop_guard import StopGuardStrategy

__all__ = [
    "BUILTINS",
    "GUARD_REPEAT_SECONDS",
    "GridStrategy",
    "MaCrossStrategy",
    "MaRsiStrategy",
    "Param",
    "RsiStrategy",
    "Signal",
    "SignalLatch",
    "StopGuardStrategy",
    "Strategy",
    "StrategyContext",
    "StrategyError",
    "crossed",
    "load_strategy_class",
]
