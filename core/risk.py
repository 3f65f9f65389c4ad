"""Pre-trade risk checks, run in the trader before any order reaches a gateway.

Every rejection names its rule and the numbers, e.g.
``tick_grid: price 912.03 is not on the 0.02 grid of au2612.SHFE``. Manual and
strategy orders go through the same checks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from config.schema import RiskConfig
from core.models import (
    Contract,
    Direction,
    GatewayStatus,
    OrderRequest,
    OrderType,
    TradingState,
    on_tick_grid,
)
from core.oms import Oms, position_direction_closed_by


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why an order may not be sent."""

    rule: str
    detail: str

    def __str__(self) -> str:
        return f"{self.rule}: {self.detail}"


class RiskEngine:
    """The account's pre-trade gate. ``check`` returns None when the order may go."""

    def __init__(self, config: RiskConfig, oms: Oms) -> None:
        self.config = config
        self.oms = oms

    def check(
        self,
        req: OrderRequest,
        *,
        trading_state: TradingState,
        gateway_status: GatewayStatus,
        contract: Contract | None,
    ) -> Rejection | None:
        if gateway_status is not GatewayStatus.CONNECTED:
            return Rejection("venue", f"not connected ({gateway_status.name.lower()}); order not sent")
        if contract is None:
            return Rejection("contract", f"unknown contract {req.vt_symbol}")
        vol = req.volume
        if not math.isfinite(vol) or not math.isfinite(req.price):
            return Rejection("number", f"price and volume must be finite numbers, got {req.price} x {vol}")
        if vol <= 0 or vol != int(vol):
            return Rejection("volume", f"volume must be a positive whole number of lots, got {vol:g}")
        if vol % contract.min_volume:
            return Rejection("volume", f"volume {vol:g} is not a multiple of {contract.min_volume}")
        if vol > self.config.max_order_volume:
            return Rejection("max_order_volume", f"volume {vol:g} > limit {self.config.max_order_volume}")
        if trading_state is TradingState.HALTED:
            return Rejection("halted", "account is HALTED: no new orders (cancels are allowed)")
        if trading_state is TradingState.REDUCING and not self._reduces(req):
            return Rejection("reducing", "account is REDUCING: only orders that reduce a position")
        if req.type is not OrderType.MARKET:
            price_problem = self._check_price(req, contract)
            if price_problem is not None:
                return price_problem
        limit = self.config.max_order_notional
        if limit is not None:
            notional = contract.notional(self._worst_price(req), vol)
            if notional > limit:
                return Rejection("max_order_notional", f"notional {notional:,.2f} > limit {limit:,.2f}")
        return None

    def _check_price(self, req: OrderRequest, contract: Contract) -> Rejection | None:
        d = contract.decimals
        if req.price <= 0:
            return Rejection("price", f"price must be positive, got {req.price:.{d}f}")
        if not on_tick_grid(req.price, contract.pricetick):
            return Rejection(
                "tick_grid",
                f"price {req.price:.{d + 1}f} is not on the {contract.pricetick:g} grid of {req.vt_symbol}",
            )
        tick = self.oms.ticks.get(req.vt_symbol)
        if tick is not None:
            if tick.limit_up and req.price > tick.limit_up + 1e-9:
                return Rejection(
                    "price_limit", f"price {req.price:.{d}f} above limit-up {tick.limit_up:.{d}f}"
                )
            if tick.limit_down and req.price < tick.limit_down - 1e-9:
                return Rejection(
                    "price_limit", f"price {req.price:.{d}f} below limit-down {tick.limit_down:.{d}f}"
                )
        return None

    def _worst_price(self, req: OrderRequest) -> float:
        """The price an order may trade at: its limit, or for a market order the day's limit
        price on its side (else the last price)."""
        if req.type is not OrderType.MARKET:
            return req.price
        tick = self.oms.ticks.get(req.vt_symbol)
        if tick is None:
            return req.price
        bound = tick.limit_up if req.direction is Direction.LONG else tick.limit_down
        return bound or tick.last_price

    def _reduces(self, req: OrderRequest) -> bool:
        if not req.offset.is_close:
            return False
        closed = position_direction_closed_by(req.direction)
        return self.oms.closable(req.vt_symbol, closed).total >= req.volume
