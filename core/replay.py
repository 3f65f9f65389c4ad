"""The batch replay: one vnpy ``CtaTemplate`` over a file of 1-minute bars, no console, no daemon
(``qtrader-tui --replay``; README.md, "Replay"). The printing is the console's (``tui/replay_report.py``).

Everything the command is given is checked here first, each problem one ``ReplayInputError``
line (the command exits 2): the class (``pkg.module:Class``, a ``CtaTemplate`` subclass), the
setting (a JSON object of the template's parameters), the symbol (the sim's contract table gives
size and price tick unless both are given), the numbers, and the file (``gateways/sim_replay.py``:
bars only here; a tick file is refused). The run itself is ``strategies/cta_replay.py``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from core.models import Contract, split_vt_symbol
from gateways.sim_contracts import get_contract, unknown_reason
from gateways.sim_replay import ReplayFileError, read_replay
from strategies import StrategyError, load_strategy_class
from strategies.cta_host import CtaHost
from strategies.cta_replay import CtaReplay, to_vn_bars

__all__ = ["ReplayInputError", "ReplayJob", "ReplayRunError", "prepare", "run"]


class ReplayInputError(ValueError):
    """Bad input to the batch replay: one readable line."""


class ReplayRunError(RuntimeError):
    """The template's own code raised during the replay."""


@dataclass
class ReplayJob:
    """A checked batch replay, ready to run: the template in its host, and the bars."""

    replay: CtaReplay
    bars: list[Any]  # vnpy BarData


def _number(name: str, value: float | None, *, positive: bool = False) -> None:
    if value is None:
        return
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise ReplayInputError(
            f"--{name} {value:g}: expected a finite number {'> 0' if positive else '>= 0'}"
        )


def prepare(
    strategy: str,
    vt_symbol: str,
    bars_path: str | Path,
    *,
    setting: str | None = None,
    capital: float = 1_000_000,
    rate: float = 0.0,
    slippage: float = 0.0,
    size: float | None = None,
    pricetick: float | None = None,
) -> ReplayJob:
    """The job for these arguments, or ``ReplayInputError`` saying what is wrong with them."""
    if ":" not in strategy:
        raise ReplayInputError(
            f"--strategy '{strategy}': write 'package.module:ClassName' (a CtaTemplate subclass)"
        )
    try:
        cls = load_strategy_class(strategy)
    except StrategyError as exc:
        raise ReplayInputError(str(exc)) from None
    if not issubclass(cls, CtaHost):
        raise ReplayInputError(
            f"--strategy '{strategy}' is not a vnpy CtaTemplate subclass (only those replay)"
        )
    params: dict[str, Any] = {}
    if setting:
        try:
            params = json.loads(setting)
        except ValueError as exc:
            raise ReplayInputError(f"--setting is not JSON: {exc}") from None
        if not isinstance(params, dict):
            raise ReplayInputError(
                "--setting: expected a JSON object of parameters by name, e.g. '{\"fast_window\": 5}'"
            )
    for name, value, positive in (
        ("capital", capital, False),
        ("rate", rate, False),
        ("slippage", slippage, False),
        ("size", size, True),
        ("pricetick", pricetick, True),
    ):
        _number(name, value, positive=positive)
    try:
        symbol, exchange = split_vt_symbol(vt_symbol)
    except ValueError as exc:
        raise ReplayInputError(f"--symbol: {exc}") from None
    contract = get_contract(vt_symbol)
    if contract is None:
        if size is None or pricetick is None:
            raise ReplayInputError(
                f"--symbol: {unknown_reason(vt_symbol)}; give --size and --pricetick for it"
            )
        contract = Contract(
            vt_symbol=vt_symbol, symbol=symbol, exchange=exchange, size=size, pricetick=pricetick
        )
    else:
        changes = {k: v for k, v in (("size", size), ("pricetick", pricetick)) if v is not None}
        contract = msgspec.structs.replace(contract, **changes)
    try:
        data = read_replay(bars_path, vt_symbol)
    except ReplayFileError as exc:
        raise ReplayInputError(f"--bars {exc}") from None
    if data.kind != "bars":
        raise ReplayInputError(
            f"--bars {bars_path}: a tick file (column 'last_price'); the batch replay takes 1-minute bars"
        )
    try:
        replay = CtaReplay(cls, contract, params, rate=rate, slippage=slippage, capital=capital)
    except StrategyError as exc:
        raise ReplayInputError(f"--setting: {exc}") from None
    return ReplayJob(replay=replay, bars=to_vn_bars(data.bars))


def run(job: ReplayJob) -> CtaReplay:
    """The replay of ``job``, run to its end; ``ReplayRunError`` when the template's code raised."""
    replay = job.replay
    try:
        replay.run(job.bars)
    except Exception as exc:
        at = f" at {replay.last_datetime:%Y-%m-%d %H:%M}" if replay.last_datetime else ""
        name = type(replay.host).class_name
        raise ReplayRunError(f"{name} raised{at}: {type(exc).__name__}: {exc}") from exc
    return replay
