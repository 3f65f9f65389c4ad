"""Product table of the simulated exchange and symbol parsing.

A *product* (``au``, ``TA``, ``IF``) carries the trading parameters every month of it shares:
multiplier, price tick, margin ratio, exchange fees, daily limit band and a base price the
synthetic market starts near. ``get_contract("au2612.SHFE")`` builds a ``Contract`` for any
month of a known product.

Symbols follow the exchanges' own spelling, case included: SHFE, INE, DCE and GFEX write the
product in lower case with a four-digit ``YYMM`` month (``au2612``, ``i2605``); CFFEX in upper
case with ``YYMM`` (``IF2612``); CZCE in upper case with a three-digit ``YMM`` month (``TA605``).
A product on the wrong exchange (``au2612.DCE``) or in the wrong case is unknown.

Figures: multipliers and price ticks are the exchanges' contract specifications. Margin
ratios, fees, limit bands and base prices are plausible values of the kind a broker shows
(exchange minimum margin plus a broker add-on; exchange fees without broker mark-up; prices
near 2025/2026 levels), written from general knowledge, not copied from a current fee notice.
They make the simulation realistic in scale, not authoritative.
"""

from __future__ import annotations

import re
from datetime import date

import msgspec

from core.models import Contract, Exchange, split_vt_symbol


class ProductSpec(msgspec.Struct, frozen=True, kw_only=True):
    """Trading parameters shared by every month of one product."""

    product: str
    exchange: Exchange
    name: str
    size: float  # contract multiplier (units of the quote per lot)
    pricetick: float
    margin_ratio: float
    commission_rate: float = 0.0  # fraction of turnover, per side
    commission_per_lot: float = 0.0  # yuan per lot, per side
    close_today_commission_rate: float | None = None  # None: same as opening
    close_today_commission_per_lot: float | None = None
    limit_pct: float  # daily price limit band around the previous settlement
    base_price: float  # where a fresh synthetic market starts (before a per-month offset)


def _p(
    product: str,
    exchange: Exchange,
    name: str,
    size: float,
    tick: float,
    margin: float,
    limit: float,
    base: float,
    *,
    rate: float = 0.0,
    lot: float = 0.0,
    ct_rate: float | None = None,
    ct_lot: float | None = None,
) -> ProductSpec:
    return ProductSpec(
        product=product,
        exchange=exchange,
        name=name,
        size=size,
        pricetick=tick,
        margin_ratio=margin,
        commission_rate=rate,
        commission_per_lot=lot,
        close_today_commission_rate=ct_rate,
        close_today_commission_per_lot=ct_lot,
        limit_pct=limit,
        base_price=base,
    )


_SHFE, _INE, _DCE, _CZCE, _CFFEX, _GFEX = (
    Exchange.SHFE,
    Exchange.INE,
    Exchange.DCE,
    Exchange.CZCE,
    Exchange.CFFEX,
    Exchange.GFEX,
)

#: Every product the simulated exchange lists, keyed by product code (exchange spelling).
PRODUCTS: dict[str, ProductSpec] = {
    spec.product: spec
    for spec in (
        # SHFE: metals and steel. Fees by lot or by turnover; some close-today fees differ.
        _p("au", _SHFE, "黄金", 1000, 0.02, 0.12, 0.10, 960.0, lot=10.0, ct_lot=0.0),
        _p("ag", _SHFE, "白银", 15, 1, 0.15, 0.12, 12000.0, rate=0.00005),
        _p("cu", _SHFE, "铜", 5, 10, 0.10, 0.08, 86000.0, rate=0.00005, ct_rate=0.0001),
        _p("al", _SHFE, "铝", 5, 5, 0.10, 0.07, 20800.0, lot=3.0),
        _p("zn", _SHFE, "锌", 5, 5, 0.10, 0.07, 22500.0, lot=3.0),
        _p("ni", _SHFE, "镍", 1, 10, 0.12, 0.10, 122000.0, lot=3.0),
        _p("rb", _SHFE, "螺纹钢", 10, 1, 0.09, 0.07, 3150.0, rate=0.0001),
        _p("hc", _SHFE, "热轧卷板", 10, 1, 0.09, 0.07, 3300.0, rate=0.0001),
        _p("ru", _SHFE, "天然橡胶", 10, 5, 0.10, 0.08, 15500.0, lot=3.0),
        # INE
        _p("sc", _INE, "原油", 1000, 0.1, 0.12, 0.10, 480.0, lot=20.0, ct_lot=0.0),
        # DCE
        _p("i", _DCE, "铁矿石", 100, 0.5, 0.13, 0.11, 780.0, rate=0.0001, ct_rate=0.0002),
        _p("m", _DCE, "豆粕", 10, 1, 0.09, 0.07, 2950.0, lot=1.5),
        _p("y", _DCE, "豆油", 10, 2, 0.09, 0.07, 8100.0, lot=2.5),
        _p("p", _DCE, "棕榈油", 10, 2, 0.10, 0.08, 8800.0, lot=2.5),
        _p("c", _DCE, "玉米", 10, 1, 0.08, 0.06, 2250.0, lot=1.2),
        # CZCE
        _p("TA", _CZCE, "PTA", 5, 2, 0.08, 0.07, 4700.0, lot=3.0),
        _p("MA", _CZCE, "甲醇", 10, 1, 0.09, 0.07, 2350.0, lot=2.0, ct_lot=6.0),
        _p("SR", _CZCE, "白糖", 10, 1, 0.08, 0.06, 5500.0, lot=3.0),
        _p("CF", _CZCE, "棉花", 5, 5, 0.08, 0.06, 13500.0, lot=4.3),
        _p("SA", _CZCE, "纯碱", 20, 1, 0.10, 0.08, 1300.0, lot=3.5),
        # CFFEX: stock index futures; close-today costs ten times the opening fee
        _p("IF", _CFFEX, "沪深300", 300, 0.2, 0.12, 0.10, 4600.0, rate=0.000023, ct_rate=0.00023),
        _p("IH", _CFFEX, "上证50", 300, 0.2, 0.12, 0.10, 3000.0, rate=0.000023, ct_rate=0.00023),
        _p("IC", _CFFEX, "中证500", 200, 0.2, 0.14, 0.10, 7200.0, rate=0.000023, ct_rate=0.00023),
        _p("IM", _CFFEX, "中证1000", 200, 0.2, 0.15, 0.10, 7400.0, rate=0.000023, ct_rate=0.00023),
        # GFEX
        _p("si", _GFEX, "工业硅", 5, 5, 0.11, 0.09, 9000.0, lot=5.0),
        _p("lc", _GFEX, "碳酸锂", 1, 20, 0.12, 0.09, 76000.0, rate=0.00008),
    )
}

_SYMBOL = re.compile(r"([A-Za-z]{1,3})(\d{3,4})")


def parse_symbol(symbol: str, exchange: Exchange) -> tuple[str, str] | None:
    """``("au2612", SHFE)`` -> ``("au", "2612")``; None unless a listed product and a valid month.

    CZCE months have three digits (``TA605``: 2026-05), every other exchange four (``YYMM``).
    """
    match = _SYMBOL.fullmatch(symbol)
    if match is None:
        return None
    product, month = match.group(1), match.group(2)
    spec = PRODUCTS.get(product)
    if spec is None or spec.exchange is not exchange:
        return None
    if len(month) != (3 if exchange is Exchange.CZCE else 4):
        return None
    if not 1 <= int(month[-2:]) <= 12:
        return None
    return product, month


def get_product(vt_symbol: str) -> ProductSpec | None:
    """The product of ``vt_symbol`` (``au2612.SHFE`` -> the ``au`` spec), or None if unknown."""
    try:
        symbol, exchange = split_vt_symbol(vt_symbol)
    except ValueError:
        return None
    parsed = parse_symbol(symbol, exchange)
    return PRODUCTS[parsed[0]] if parsed is not None else None


def get_contract(vt_symbol: str, account_id: str = "") -> Contract | None:
    """A fresh ``Contract`` for any month of a known product, or None if the symbol is unknown."""
    try:
        symbol, exchange = split_vt_symbol(vt_symbol)
    except ValueError:
        return None
    parsed = parse_symbol(symbol, exchange)
    if parsed is None:
        return None
    spec = PRODUCTS[parsed[0]]
    return Contract(
        vt_symbol=vt_symbol,
        symbol=symbol,
        exchange=exchange,
        name=f"{spec.name}{parsed[1]}",
        product=spec.product,
        size=spec.size,
        pricetick=spec.pricetick,
        margin_ratio=spec.margin_ratio,
        commission_rate=spec.commission_rate,
        commission_per_lot=spec.commission_per_lot,
        close_today_commission_rate=spec.close_today_commission_rate,
        close_today_commission_per_lot=spec.close_today_commission_per_lot,
        limit_pct=spec.limit_pct,
        account_id=account_id,
    )


#: months the sim exchange lists of each product (from the current month)
LISTED_MONTHS = 12


def listed_months(product: str, today: date) -> list[str]:
    """The vt_symbols of ``product`` ("" for every product; any case) for ``LISTED_MONTHS``
    consecutive months from ``today``'s month, spelled the exchange's way (CZCE ``TA605``)."""
    specs = [s for name, s in PRODUCTS.items() if not product or name.lower() == product.lower()]
    out: list[str] = []
    for spec in specs:
        for n in range(LISTED_MONTHS):
            year, month = divmod(today.month - 1 + n, 12)
            year += today.year
            digits = (
                f"{year % 10}{month + 1:02d}"
                if spec.exchange is Exchange.CZCE
                else f"{year % 100:02d}{month + 1:02d}"
            )
            out.append(f"{spec.product}{digits}.{spec.exchange.name}")
    return out


def unknown_reason(vt_symbol: str) -> str:
    """Why ``vt_symbol`` is not a contract of the simulated exchange, in words a trader can act on."""
    try:
        symbol, exchange = split_vt_symbol(vt_symbol)
    except ValueError as exc:
        return str(exc)
    match = _SYMBOL.fullmatch(symbol)
    if match is None:
        return f"unknown contract {vt_symbol}: expected product letters + month digits (e.g. au2612)"
    product, month = match.group(1), match.group(2)
    spec = PRODUCTS.get(product)
    if spec is None:
        return f"unknown contract {vt_symbol}: product '{product}' is not listed on the sim exchange"
    if spec.exchange is not exchange:
        return (
            f"unknown contract {vt_symbol}: {product} is listed on {spec.exchange.name}, not {exchange.name}"
        )
    digits = 3 if exchange is Exchange.CZCE else 4
    if len(month) != digits:
        return f"unknown contract {vt_symbol}: {exchange.name} months have {digits} digits"
    return f"unknown contract {vt_symbol}: month {month[-2:]} is not 01..12"
