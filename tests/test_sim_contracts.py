"""The sim exchange's product table and symbol parsing (gateways/sim_contracts.py)."""

from __future__ import annotations

import pytest

from core.models import Exchange, Offset
from gateways.sim_contracts import PRODUCTS, get_contract, get_product, parse_symbol, unknown_reason

# (vt_symbol, exchange, multiplier, price tick): the exchanges' contract specifications
REQUIRED = [
    ("au2612.SHFE", Exchange.SHFE, 1000, 0.02),
    ("ag2612.SHFE", Exchange.SHFE, 15, 1),
    ("rb2605.SHFE", Exchange.SHFE, 10, 1),
    ("cu2601.SHFE", Exchange.SHFE, 5, 10),
    ("al2601.SHFE", Exchange.SHFE, 5, 5),
    ("sc2601.INE", Exchange.INE, 1000, 0.1),
    ("i2605.DCE", Exchange.DCE, 100, 0.5),
    ("m2605.DCE", Exchange.DCE, 10, 1),
    ("p2605.DCE", Exchange.DCE, 10, 2),
    ("TA605.CZCE", Exchange.CZCE, 5, 2),
    ("MA605.CZCE", Exchange.CZCE, 10, 1),
    ("SR605.CZCE", Exchange.CZCE, 10, 1),
    ("IF2612.CFFEX", Exchange.CFFEX, 300, 0.2),
    ("IC2612.CFFEX", Exchange.CFFEX, 200, 0.2),
    ("IM2612.CFFEX", Exchange.CFFEX, 200, 0.2),
]


@pytest.mark.parametrize(("vt_symbol", "exchange", "size", "tick"), REQUIRED)
def test_required_products_have_real_multiplier_and_tick(
    vt_symbol: str, exchange: Exchange, size: float, tick: float
) -> None:
    contract = get_contract(vt_symbol, "DQ1")
    assert contract is not None
    assert contract.vt_symbol == vt_symbol
    assert contract.symbol == vt_symbol.split(".")[0]
    assert contract.exchange is exchange
    assert contract.size == size
    assert contract.pricetick == tick
    assert contract.account_id == "DQ1"
    assert contract.name.endswith(vt_symbol.split(".")[0][-4 if exchange is not Exchange.CZCE else -3 :])


@pytest.mark.parametrize("spec", list(PRODUCTS.values()), ids=list(PRODUCTS))
def test_every_product_is_plausible(spec) -> None:
    lower = spec.exchange in (Exchange.SHFE, Exchange.INE, Exchange.DCE, Exchange.GFEX)
    assert spec.product == (spec.product.lower() if lower else spec.product.upper())
    assert 0 < spec.limit_pct < 0.3
    # exchanges set margin at least as wide as the daily limit band
    assert spec.limit_pct <= spec.margin_ratio < 0.5
    assert spec.commission_rate > 0 or spec.commission_per_lot > 0
    assert spec.base_price / spec.pricetick > 100  # a tick is a small move
    # one lot is worth something between a few thousand and a few million yuan
    assert 5_000 < spec.base_price * spec.size < 5_000_000


@pytest.mark.parametrize(
    ("symbol", "exchange", "expected"),
    [
        ("au2612", Exchange.SHFE, ("au", "2612")),
        ("TA605", Exchange.CZCE, ("TA", "605")),
        ("i2605", Exchange.DCE, ("i", "2605")),
        ("IF2612", Exchange.CFFEX, ("IF", "2612")),
        ("TA2605", Exchange.CZCE, None),  # CZCE months have three digits
        ("au612", Exchange.SHFE, None),  # ... the others four
        ("au2613", Exchange.SHFE, None),  # no month 13
        ("au2600", Exchange.SHFE, None),
        ("AU2612", Exchange.SHFE, None),  # exchange spelling, case included
        ("ta605", Exchange.CZCE, None),
        ("au2612", Exchange.DCE, None),  # right product, wrong exchange
        ("zz2612", Exchange.SHFE, None),
        ("au", Exchange.SHFE, None),
        ("2612", Exchange.SHFE, None),
    ],
)
def test_parse_symbol(symbol: str, exchange: Exchange, expected: tuple[str, str] | None) -> None:
    assert parse_symbol(symbol, exchange) == expected


@pytest.mark.parametrize(
    "vt_symbol", ["au2612.DCE", "zz2612.SHFE", "au2612", "au2612.NYMEX", "TA2605.CZCE", "au2613.SHFE", ""]
)
def test_unknown_symbols_are_none_with_a_reason(vt_symbol: str) -> None:
    assert get_contract(vt_symbol) is None
    assert get_product(vt_symbol) is None
    assert unknown_reason(vt_symbol)


def test_unknown_reason_names_the_right_exchange() -> None:
    assert unknown_reason("au2612.DCE") == "unknown contract au2612.DCE: au is listed on SHFE, not DCE"
    assert "not listed" in unknown_reason("zz2612.SHFE")
    assert "3 digits" in unknown_reason("TA2605.CZCE")


def test_any_month_of_a_known_product() -> None:
    a, b = get_contract("rb2601.SHFE"), get_contract("rb2710.SHFE")
    assert a is not None and b is not None
    assert (a.size, a.pricetick, a.margin_ratio) == (b.size, b.pricetick, b.margin_ratio)
    assert a.name != b.name


def test_commission_by_lot_and_by_turnover() -> None:
    au = get_contract("au2612.SHFE")
    rb = get_contract("rb2605.SHFE")
    assert au is not None and rb is not None
    # au: per lot, whatever the price
    assert au.commission(900.0, 2) == au.commission(1000.0, 2) == 2 * au.commission_per_lot
    # rb: by turnover = price x volume x multiplier x rate
    assert rb.commission(3000.0, 2) == pytest.approx(3000.0 * 2 * 10 * rb.commission_rate)


def test_close_today_fees_differ_where_the_exchange_says_so() -> None:
    stock_index = get_contract("IF2612.CFFEX")
    assert stock_index is not None
    opening = stock_index.commission(4600.0, 1, Offset.OPEN)
    close_today = stock_index.commission(4600.0, 1, Offset.CLOSETODAY)
    assert close_today == pytest.approx(10 * opening)
    au = get_contract("au2612.SHFE")
    assert au is not None
    assert au.commission(960.0, 1, Offset.CLOSETODAY) < au.commission(960.0, 1, Offset.CLOSE)
    rb = get_contract("rb2605.SHFE")
    assert rb is not None
    assert rb.commission(3000.0, 1, Offset.CLOSETODAY) == rb.commission(3000.0, 1, Offset.CLOSE)


def test_get_contract_returns_fresh_objects() -> None:
    a = get_contract("au2612.SHFE")
    b = get_contract("au2612.SHFE")
    assert a == b
    assert a is not b
