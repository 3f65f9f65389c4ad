"""The shared vocabulary of qtrader-tui: plain msgspec structs and enums.

Every other part of the system (wire protocol, gateways, OMS, storage, console)
speaks in these objects. Enumerations have value == name, so they travel and
are stored by NAME exactly as vnpy's constants are named (vnpy's own enum
values change with the process locale and are never sent).

Times are timezone-aware datetimes in China Standard Time (``CHINA_TZ``).
Symbols are written ``symbol.EXCHANGE`` (``au2612.SHFE``), like vnpy's vt_symbol.
"""

from __future__ import annotations

import itertools
import math
import os
import re
import time
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from enum import StrEnum
from typing import Annotated, Any

import msgspec

CHINA_TZ = timezone(timedelta(hours=8), "CST")


def now() -> datetime:
    """Current time in China Standard Time."""
    return datetime.now(CHINA_TZ)


#: Told apart from venue ids at a glance; unique for the account's life (a new process
#: starts a new run, to the microsecond, and counts within it).
LOCAL_ORDER_PREFIX = "LOCAL."
_LOCAL_RUN = f"{time.time_ns() // 1000:x}"
_LOCAL_SEQ = itertools.count(1)


def _new_run() -> None:
    """A forked process is a new run (a trader forked by the zygote, core/zygote.py: without
    this every fork, and every restart of one account, would share the zygote's run)."""
    global _LOCAL_RUN, _LOCAL_SEQ, _COND_SEQ
    _LOCAL_RUN = f"{time.time_ns() // 1000:x}"
    _LOCAL_SEQ = itertools.count(1)
    _COND_SEQ = itertools.count(1)


os.register_at_fork(after_in_child=_new_run)


def local_order_id(moment: datetime) -> str:
    """The id of an order refused before it reached any venue (risk, a venue that is down,
    a gateway's own checks): ``LOCAL.<YYYYmmddHHMMSS>.<run>-<n>``, one scheme for every gateway."""
    return f"{LOCAL_ORDER_PREFIX}{moment:%Y%m%d%H%M%S}.{_LOCAL_RUN}-{next(_LOCAL_SEQ)}"


# Words with one meaning across the core, the wire and the console (which compares against them).

#: ``reference`` of an order or fill that was not placed through qtrader.
EXTERNAL = "external"

#: ``status_msg`` of a working order that a reconnect found no longer listed at the venue.
NOT_AT_VENUE = "not working at the venue after reconnect (never reached it, or expired with its trading day)"

#: How the answer to a request ends when nobody knows what became of it (no reply in time, the
#: link lost on the way): it was sent, so it may have been acted on. Never worded as a rejection.
OUTCOME_UNKNOWN = "outcome unknown, it may have acted (check its orders before resending)"


class Direction(StrEnum):
    LONG = "LONG"
    SHORT = "SHORT"
    NET = "NET"

    @property
    def opposite(self) -> Direction:
        return Direction.SHORT if self is Direction.LONG else Direction.LONG


class Offset(StrEnum):
    NONE = "NONE"
    OPEN = "OPEN"
    CLOSE = "CLOSE"
    CLOSETODAY = "CLOSETODAY"
    CLOSEYESTERDAY = "CLOSEYESTERDAY"

    @property
    def is_close(self) -> bool:
        return self in (Offset.CLOSE, Offset.CLOSETODAY, Offset.CLOSEYESTERDAY)


class Status(StrEnum):
    SUBMITTING = "SUBMITTING"
    NOTTRADED = "NOTTRADED"
    PARTTRADED = "PARTTRADED"
    ALLTRADED = "ALLTRADED"
    CANCELLED = "CANCELLED"
    REJECTED = "REJECTED"

    @property
    def is_active(self) -> bool:
        return self in ACTIVE_STATUSES


ACTIVE_STATUSES = frozenset({Status.SUBMITTING, Status.NOTTRADED, Status.PARTTRADED})


class OrderType(StrEnum):
    LIMIT = "LIMIT"
    MARKET = "MARKET"
    STOP = "STOP"
    FAK = "FAK"
    FOK = "FOK"


class Exchange(StrEnum):
    SHFE = "SHFE"
    INE = "INE"
    DCE = "DCE"
    CZCE = "CZCE"
    CFFEX = "CFFEX"
    GFEX = "GFEX"

    @property
    def has_close_today(self) -> bool:
        """SHFE and INE distinguish close-today from close-yesterday."""
        return self in (Exchange.SHFE, Exchange.INE)


class TradingState(StrEnum):
    """Per-account trading permission (ARCHITECTURE.md, "Orders and risk")."""

    ACTIVE = "ACTIVE"
    REDUCING = "REDUCING"  # only orders that reduce a position
    HALTED = "HALTED"  # no new orders; cancels allowed


class GatewayStatus(StrEnum):
    """Connection state of a trader's venue, as the trader sees it."""

    CONNECTING = "CONNECTING"
    CONNECTED = "CONNECTED"
    DISCONNECTED = "DISCONNECTED"


class TraderStatus(StrEnum):
    """A trader as the manager sees it: the console's status light."""

    CONNECTING = "CONNECTING"  # process starting, registering, or venue logging in
    CONNECTED = "CONNECTED"  # registered and the venue is up
    DISCONNECTED = "DISCONNECTED"  # process alive, link or venue down
    STOPPED = "STOPPED"  # stopped on purpose (or disabled)
    CRASHED = "CRASHED"  # exited or hung; a restart is scheduled or given up


class Struct(msgspec.Struct, kw_only=True):
    """Base for model structs: keyword-only construction.

    The structs that stream by the thousand (ticks, bars, orders, trades, positions, accounts,
    equity points) are ``gc=False``: their fields are all scalars (text, numbers, enums,
    datetimes), so they can never be part of a reference cycle and the garbage collector need not
    track them (cheaper to build, fewer collections; tests/test_protocol.py checks the fields)."""


# What a request may carry, bounded where it is decoded (ARCHITECTURE.md, "Bad input"): a field
# out of bounds refuses the request with the field named, and nothing of it is kept. Structs
# built in-process (strategies, the console) are not checked again.

MAX_SYMBOL_LENGTH = 40  # ``IO2612-C-4000.CFFEX`` is 19
MAX_NAME_LENGTH = 64  # order ids, references (strategy instances), account ids
MAX_VOLUME = 100_000.0  # lots in one request: far above any venue's per-order limit
MAX_PRICE = 1e9  # every listed futures price is far below it; the check stops inf and 1e308
#: printable text: no line break or other control character (a newline in a symbol would forge
#: lines of the daemon's output and the logs)
PRINTABLE = r"^[^\x00-\x1f\x7f]*\Z"

SYMBOL_PATTERN = r"^[A-Za-z0-9_\-]+\.[A-Z0-9]+\Z"
SymbolField = Annotated[str, msgspec.Meta(min_length=3, max_length=MAX_SYMBOL_LENGTH, pattern=SYMBOL_PATTERN)]
NameField = Annotated[str, msgspec.Meta(max_length=MAX_NAME_LENGTH, pattern=PRINTABLE)]
VolumeField = Annotated[float, msgspec.Meta(gt=0, le=MAX_VOLUME, multiple_of=1)]  # whole lots
PriceField = Annotated[float, msgspec.Meta(ge=0, le=MAX_PRICE)]  # finite; 0 = none (market)
DecisionField = Annotated[str, msgspec.Meta(max_length=4 * MAX_NAME_LENGTH, pattern=PRINTABLE)]


def product_of(vt_symbol: str) -> str:
    """The product letters of a symbol: ``rb`` of ``rb2610.SHFE``, ``SA`` of ``SA605.CZCE``
    ("" if it does not start with letters)."""
    match = re.match(r"[A-Za-z]+", vt_symbol)
    return match.group(0) if match else ""


def split_vt_symbol(vt_symbol: str) -> tuple[str, Exchange]:
    """``"au2612.SHFE"`` -> ``("au2612", Exchange.SHFE)``; ValueError if malformed."""
    symbol, sep, exchange = vt_symbol.rpartition(".")
    if not sep or not symbol:
        raise ValueError(f"'{vt_symbol}' is not symbol.EXCHANGE (e.g. au2612.SHFE)")
    try:
        return symbol, Exchange(exchange)
    except ValueError:
        names = ", ".join(e.name for e in Exchange)
        raise ValueError(f"'{vt_symbol}': unknown exchange '{exchange}' (expected {names})") from None


def decimals_of(tick: float) -> int:
    """Number of decimals needed to print prices on a tick grid of ``tick``."""
    for digits in range(8):
        if abs(round(tick, digits) - tick) < 1e-9:
            return digits
    return 8


def on_tick_grid(price: float, tick: float) -> bool:
    """True when ``price`` is a whole number of ``tick`` (within float noise)."""
    if tick <= 0:
        return True
    steps = price / tick
    return math.isclose(steps, round(steps), rel_tol=0.0, abs_tol=1e-6)


class Contract(Struct, kw_only=True):
    """A tradable futures contract and its trading parameters."""

    vt_symbol: str
    symbol: str
    exchange: Exchange
    name: str = ""
    product: str = ""
    size: float  # contract multiplier
    pricetick: float
    min_volume: int = 1
    margin_ratio: float = 0.1
    commission_rate: float = 0.0  # fraction of turnover, per side (opening; closing unless set below)
    commission_per_lot: float = 0.0  # currency per lot, per side
    close_commission_rate: float | None = None  # CLOSE / CLOSEYESTERDAY; None: same as commission_rate
    close_commission_per_lot: float | None = None  # None: same as commission_per_lot
    close_today_commission_rate: float | None = None  # CLOSETODAY; None: same as commission_rate
    close_today_commission_per_lot: float | None = None  # None: same as commission_per_lot
    limit_pct: float = 0.0  # daily limit band around pre-settlement; 0 = none
    account_id: str = ""

    @property
    def decimals(self) -> int:
        return decimals_of(self.pricetick)

    def notional(self, price: float, volume: float) -> float:
        return price * volume * self.size

    def margin(self, price: float, volume: float) -> float:
        return self.notional(price, volume) * self.margin_ratio

    def commission(self, price: float, volume: float, offset: Offset = Offset.OPEN) -> float:
        """The fee of a fill: OPEN (and NONE) at the opening rates, CLOSE and CLOSEYESTERDAY at the
        close rates, CLOSETODAY at the close-today rates (a rate left None is the opening one)."""
        own_rate: float | None = None
        own_per_lot: float | None = None
        if offset is Offset.CLOSETODAY:
            own_rate, own_per_lot = self.close_today_commission_rate, self.close_today_commission_per_lot
        elif offset in (Offset.CLOSE, Offset.CLOSEYESTERDAY):
            own_rate, own_per_lot = self.close_commission_rate, self.close_commission_per_lot
        rate = self.commission_rate if own_rate is None else own_rate
        per_lot = self.commission_per_lot if own_per_lot is None else own_per_lot
        return self.notional(price, volume) * rate + per_lot * volume

    def round_price(self, price: float) -> float:
        return round(round(price / self.pricetick) * self.pricetick, self.decimals)


def position_pnl(direction: Direction, cost: float, last: float, volume: float, size: float) -> float:
    """Position P&L = (last - cost) x volume x multiplier, negated for short (ARCHITECTURE.md, "Orders and risk")."""
    pnl = (last - cost) * volume * size
    return -pnl if direction is Direction.SHORT else pnl


DEPTH_LEVELS = 5
"""Book levels a tick carries each side: what SHFE/INE level-5 fronts, TqSdk and the sim report
(most CTP fronts report level 1 only: the rest stay 0)."""

Level = tuple[float, float]
"""One book level: (price, volume); (0, 0) for a level the venue did not report."""


class Tick(Struct, kw_only=True, omit_defaults=True, gc=False):
    """A quote: the last trade, the day's statistics, the price limits and the book, five levels
    each side as vnpy's ``TickData`` names them (``bid_price_1`` best). A level the venue did not
    report is 0 (and left off the wire: ``omit_defaults``, so a level-1 front pays nothing for
    levels 2-5)."""

    account_id: str = ""
    vt_symbol: str
    datetime: datetime
    last_price: float
    volume: float = 0  # cumulative for the trading day
    turnover: float = 0
    open_interest: float = 0
    last_volume: float = 0
    pre_settlement: float = 0
    pre_close: float = 0
    open_price: float = 0
    high_price: float = 0
    low_price: float = 0
    limit_up: float = 0
    limit_down: float = 0
    bid_price_1: float = 0
    bid_volume_1: float = 0
    ask_price_1: float = 0
    ask_volume_1: float = 0
    bid_price_2: float = 0
    bid_volume_2: float = 0
    ask_price_2: float = 0
    ask_volume_2: float = 0
    bid_price_3: float = 0
    bid_volume_3: float = 0
    ask_price_3: float = 0
    ask_volume_3: float = 0
    bid_price_4: float = 0
    bid_volume_4: float = 0
    ask_price_4: float = 0
    ask_volume_4: float = 0
    bid_price_5: float = 0
    bid_volume_5: float = 0
    ask_price_5: float = 0
    ask_volume_5: float = 0

    @property
    def change_pct(self) -> float:
        base = self.pre_settlement or self.pre_close
        return (self.last_price / base - 1.0) * 100.0 if base else 0.0

    @property
    def bids(self) -> tuple[Level, ...]:
        """The five bid levels, best (highest) first."""
        return (
            (self.bid_price_1, self.bid_volume_1),
            (self.bid_price_2, self.bid_volume_2),
            (self.bid_price_3, self.bid_volume_3),
            (self.bid_price_4, self.bid_volume_4),
            (self.bid_price_5, self.bid_volume_5),
        )

    @property
    def asks(self) -> tuple[Level, ...]:
        """The five ask levels, best (lowest) first."""
        return (
            (self.ask_price_1, self.ask_volume_1),
            (self.ask_price_2, self.ask_volume_2),
            (self.ask_price_3, self.ask_volume_3),
            (self.ask_price_4, self.ask_volume_4),
            (self.ask_price_5, self.ask_volume_5),
        )


def depth_fields(bids: Sequence[Level], asks: Sequence[Level]) -> dict[str, float]:
    """``Tick`` keyword arguments for up to ``DEPTH_LEVELS`` levels each side, best first:
    ``Tick(..., **depth_fields(bids, asks))``. Levels not given stay 0 (not reported)."""
    fields: dict[str, float] = {}
    for side, levels in (("bid", bids), ("ask", asks)):
        for n, (price, volume) in enumerate(levels[:DEPTH_LEVELS], start=1):
            fields[f"{side}_price_{n}"] = price
            fields[f"{side}_volume_{n}"] = volume
    return fields


class Bar(Struct, kw_only=True, gc=False):
    account_id: str = ""
    vt_symbol: str
    interval: str = "1m"
    datetime: datetime
    open_price: float
    high_price: float
    low_price: float
    close_price: float
    volume: float = 0
    turnover: float = 0
    open_interest: float = 0


class OrderRequest(Struct, kw_only=True):
    """What a user or strategy asks to send. ``reference`` names the origin
    (``manual`` or a strategy instance) for attribution."""

    vt_symbol: SymbolField
    direction: Direction
    offset: Offset = Offset.OPEN
    type: OrderType = OrderType.LIMIT
    price: PriceField = 0.0
    volume: VolumeField
    reference: NameField = "manual"
    account_id: NameField = ""
    #: The decision this order carries out, when a strategy sent it (``<instance>:<signal key>``):
    #: two orders of different decisions are never duplicates of each other, however alike (a
    #: grid's close of a level it bought back is a new decision). Empty: the operator's order
    #: (the trader empties it in every request from outside: only its strategy engine sets it).
    decision: DecisionField = ""

    def order(
        self, account_id: str, order_id: str, status: Status, moment: datetime, status_msg: str = ""
    ) -> Order:
        """The Order this request becomes: the one way every venue and the trader build it."""
        return Order(
            account_id=account_id,
            order_id=order_id,
            vt_symbol=self.vt_symbol,
            direction=self.direction,
            offset=self.offset,
            type=self.type,
            price=self.price,
            volume=self.volume,
            status=status,
            datetime=moment,
            update_time=moment,
            reference=self.reference,
            status_msg=status_msg,
        )

    def refused(self, account_id: str, order_id: str, reason: str, moment: datetime) -> Order:
        """This request as a REJECTED order that never left us: kept and shown like any other,
        so the operator sees what was refused and why."""
        return self.order(account_id, order_id, Status.REJECTED, moment, reason)


class CancelRequest(Struct, kw_only=True):
    order_id: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NAME_LENGTH, pattern=PRINTABLE)]
    account_id: NameField = ""


class CloseRequest(Struct, kw_only=True):
    """Close (part of) a position; the trader picks offsets and price."""

    vt_symbol: SymbolField
    direction: Direction  # direction of the POSITION to close
    volume: VolumeField | None = None  # None: all closable
    price: PriceField | None = None  # None: opposite best price
    type: OrderType = OrderType.LIMIT
    reference: NameField = "manual"
    account_id: NameField = ""


class Order(Struct, kw_only=True, gc=False):
    account_id: str
    order_id: str
    vt_symbol: str
    direction: Direction
    offset: Offset
    type: OrderType
    price: float
    volume: float
    traded: float = 0
    traded_price: float = 0.0  # average fill price
    status: Status = Status.SUBMITTING
    datetime: datetime
    update_time: datetime | None = None
    reference: str = "manual"
    status_msg: str = ""  # reason of a rejection or cancel

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def remaining(self) -> float:
        return self.volume - self.traded


class Trade(Struct, kw_only=True, gc=False):
    account_id: str
    trade_id: str
    order_id: str
    vt_symbol: str
    direction: Direction
    offset: Offset
    price: float
    volume: float
    datetime: datetime
    commission: float = 0.0
    reference: str = "manual"


class Position(Struct, kw_only=True, gc=False):
    """Keyed by (account_id, vt_symbol, direction). ``price`` is average cost."""

    account_id: str
    vt_symbol: str
    direction: Direction
    volume: float = 0
    yd_volume: float = 0
    frozen: float = 0
    yd_frozen: float = 0
    price: float = 0.0
    pnl: float = 0.0
    last_price: float = 0.0
    margin: float = 0.0

    @property
    def key(self) -> tuple[str, Direction]:
        return (self.vt_symbol, self.direction)

    @property
    def td_volume(self) -> float:
        return self.volume - self.yd_volume


class Account(Struct, kw_only=True, gc=False):
    account_id: str
    balance: float = 0.0
    available: float = 0.0
    margin: float = 0.0
    frozen: float = 0.0
    commission: float = 0.0
    close_pnl: float = 0.0
    position_pnl: float = 0.0
    pre_balance: float = 0.0
    trading_day: str = ""
    datetime: datetime | None = None

    @property
    def today_pnl(self) -> float:
        return self.balance - self.pre_balance if self.pre_balance else 0.0

    @property
    def risk_degree(self) -> float | None:
        """风险度: margin / balance (0.8 is 80 %); ``inf`` when margin is held with no balance
        left (at or below 0: the worst case, beyond any threshold); None with neither."""
        if not self.balance > 0:
            return math.inf if self.margin > 0 else None
        return self.margin / self.balance


class EquityPoint(Struct, kw_only=True, array_like=True, gc=False):
    """One point of an account's equity curve (compact on the wire)."""

    datetime: datetime
    balance: float
    available: float = 0.0
    margin: float = 0.0
    pnl: float = 0.0


class StrategyState(Struct, kw_only=True):
    account_id: str
    name: str
    class_name: str
    vt_symbol: str
    running: bool = False
    protective: bool = False  # only closes: may keep running through the kill switch
    params: dict[str, Any] = msgspec.field(default_factory=dict)
    position: float = 0
    pnl: float = 0.0
    error: str = ""


class StrategyTrigger(Struct, kw_only=True):
    account_id: str
    datetime: datetime
    instance: str
    vt_symbol: str
    condition: str
    price: float
    action: str  # buy / sell / close / hold
    result: str  # success / partial / failed / pending / not executed / rejected
    order_id: str = ""
    error: str = ""


class LogEntry(Struct, kw_only=True):
    account_id: str
    datetime: datetime
    level: str  # DEBUG / INFO / WARNING / ERROR
    message: str
    source: str = ""


class TraderInfo(Struct, kw_only=True):
    """What a trader says about itself (register, heartbeat, status)."""

    account_id: str
    gateway: str
    pid: int
    gateway_status: GatewayStatus = GatewayStatus.CONNECTING
    trading_state: TradingState = TradingState.ACTIVE
    auto_trading: bool = False
    trading_day: str = ""
    started_at: datetime | None = None
    message: str = ""  # last connection message (e.g. login failure text)
    exiting: bool = False  # on its way out for a restart (the venue refused us): a lost link is expected
    #: HALTED by a kill switch that kept the protective strategies: their closes still pass
    protective_kept: bool = False
    #: why the account is HALTED when no operator did it (a failed database write), saved with it
    halt_reason: str = ""
    #: Whose trader it is, checked by a manager before it adopts one (core/manager.py): the
    #: data directory it runs on, the configuration file it loaded, and the account at the
    #: venue that its orders reach (``AccountConfig.venue_identity``, no secret in it)
    data_dir: str = ""
    config_path: str = ""
    venue_identity: str = ""
    #: seconds the venue's clock is ahead of the wall clock (a sim's ``clock_start``; 0 for a
    #: real venue): the console reads the sessions of this account at the venue's time
    clock_offset: float = 0.0


# --------------------------------------------------------------------------- conditional orders


class TriggerSource(StrEnum):
    """Which price a conditional order watches."""

    LAST = "LAST"
    BID = "BID"
    ASK = "ASK"


class TriggerOp(StrEnum):
    """How the watched price is compared with the trigger price."""

    GE = "GE"  # >=
    LE = "LE"  # <=

    @property
    def sign(self) -> str:
        return ">=" if self is TriggerOp.GE else "<="


class CondKind(StrEnum):
    """What a conditional order is for (the console's words; the trader treats them alike,
    but a stop-loss or take-profit only ever closes)."""

    ENTRY = "ENTRY"
    STOP_LOSS = "STOP_LOSS"
    TAKE_PROFIT = "TAKE_PROFIT"


class CondPrice(StrEnum):
    """The price of the order a conditional sends: its own limit, or the opposite best
    (buy at the ask, sell at the bid) moved ``offset_ticks`` towards the other side."""

    LIMIT = "LIMIT"
    BEST = "BEST"


class CondExpiry(StrEnum):
    DAY = "DAY"  # until the trading day it was created in ends
    GTC = "GTC"  # good till cancelled


class CondState(StrEnum):
    """PENDING (armed) -> TRIGGERED (the order was sent, or refused: ``message``), or
    CANCELLED / EXPIRED; SUSPENDED by the kill switch until an operator re-arms it."""

    PENDING = "PENDING"
    SUSPENDED = "SUSPENDED"
    TRIGGERED = "TRIGGERED"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"

    @property
    def is_live(self) -> bool:
        return self in (CondState.PENDING, CondState.SUSPENDED)


_COND_SEQ = itertools.count(1)


def conditional_id(moment: datetime) -> str:
    """A conditional order's id: ``COND.<YYYYmmddHHMMSS>.<run>-<n>``, unique for the account's life."""
    return f"COND.{moment:%Y%m%d%H%M%S}.{_LOCAL_RUN}-{next(_COND_SEQ)}"


OffsetTicks = Annotated[int, msgspec.Meta(ge=0, le=1000)]


class ConditionalRequest(Struct, kw_only=True):
    """Create a conditional order: when ``source`` ``op`` ``trigger_price`` holds on a tick of
    ``vt_symbol``, send ``direction`` ``offset`` ``volume`` at ``price`` (LIMIT) or at the
    opposite best moved ``offset_ticks`` (BEST). ``trailing`` (> 0): the trigger price follows
    the watched price at that distance, only towards it (a trailing stop)."""

    vt_symbol: SymbolField
    kind: CondKind = CondKind.ENTRY
    source: TriggerSource = TriggerSource.LAST
    op: TriggerOp
    trigger_price: Annotated[float, msgspec.Meta(gt=0, le=MAX_PRICE)]
    direction: Direction
    offset: Offset = Offset.OPEN
    volume: VolumeField
    price_type: CondPrice = CondPrice.BEST
    price: PriceField = 0.0
    offset_ticks: OffsetTicks = 0
    trailing: Annotated[float, msgspec.Meta(ge=0, le=MAX_PRICE)] = 0.0
    expiry: CondExpiry = CondExpiry.GTC
    reference: NameField = "manual"
    account_id: NameField = ""


class ConditionalOrder(Struct, kw_only=True):
    """A conditional order as the trader keeps it (``conditional_orders`` table)."""

    account_id: str
    cond_id: str
    vt_symbol: str
    kind: CondKind
    source: TriggerSource
    op: TriggerOp
    trigger_price: float
    direction: Direction
    offset: Offset
    volume: float
    price_type: CondPrice
    price: float = 0.0
    offset_ticks: int = 0
    trailing: float = 0.0
    expiry: CondExpiry = CondExpiry.GTC
    trading_day: str = ""  # the trading day it was created in (DAY expiry)
    reference: str = "manual"
    state: CondState = CondState.PENDING
    message: str = ""  # why it is in its state (a refusal's reason, an expiry...)
    order_id: str = ""  # the order(s) it sent, comma-joined
    created_at: datetime
    updated_at: datetime
    triggered_at: datetime | None = None

    @property
    def is_live(self) -> bool:
        return self.state.is_live

    def condition_words(self) -> str:
        """``last <= 3650.0``"""
        return f"{self.source.name.lower()} {self.op.sign} {self.trigger_price:g}"

    def order_words(self) -> str:
        """``SELL CLOSE 2 @ bid``: the order it sends when it fires."""
        side = "BUY" if self.direction is Direction.LONG else "SELL"
        if self.price_type is CondPrice.LIMIT:
            at = f"{self.price:g}"
        else:
            at = "ask" if self.direction is Direction.LONG else "bid"
            if self.offset_ticks:
                at += f" {'+' if self.direction is Direction.LONG else '-'}{self.offset_ticks} ticks"
        return f"{side} {self.offset.name} {self.volume:g} @ {at}"

    def words(self) -> str:
        """``last <= 3650.0 → SELL CLOSE 2 @ bid (stop-loss, trailing 10)``"""
        notes = [self.kind.name.lower().replace("_", "-")]
        if self.trailing:
            notes.append(f"trailing {self.trailing:g}")
        if self.expiry is CondExpiry.DAY:
            notes.append("today only")
        return f"{self.condition_words()} → {self.order_words()} ({', '.join(notes)})"


class ReverseRequest(Struct, kw_only=True):
    """反手: close the position (the close policy's explicit offsets), then, once every close
    leg has filled, open the same volume the other way. Nothing is opened when the close is
    refused, cancelled or not filled within ``timeout`` seconds."""

    vt_symbol: SymbolField
    direction: Direction  # of the POSITION to reverse
    volume: VolumeField | None = None  # None: all closable
    timeout: Annotated[float, msgspec.Meta(gt=0, le=300)] = 10.0
    account_id: NameField = ""
