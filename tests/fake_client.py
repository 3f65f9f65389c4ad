"""FakeClient: a ConsoleClient over fixed data, for console tests and screenshots.

It is backed by a real ``DataAggregator`` filled, through the same messages a
trader sends, with three accounts whose every value and time is fixed (the
afternoon session of 2026-11-20, CST), so the screens it produces are the same
on every run. There are no processes and no live market: nothing changes
unless a test pushes a message with ``apply``.

Commands do nothing but record themselves in ``calls`` and answer
``Reply(ok=True, ...)``; a test can queue another answer for a command with
``reply_next``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import msgspec

from core.aggregator import AccountState, Change, DataAggregator
from core.client import ConsoleClient
from core.models import (
    CHINA_TZ,
    Account,
    ConditionalRequest,
    Contract,
    Direction,
    EquityPoint,
    Exchange,
    GatewayStatus,
    LogEntry,
    Offset,
    Order,
    OrderRequest,
    OrderType,
    Position,
    Status,
    StrategyState,
    StrategyTrigger,
    Tick,
    Trade,
    TraderInfo,
    TraderStatus,
    TradingState,
    decimals_of,
    depth_fields,
)
from core.protocol import (
    ConditionalCommand,
    HistoryKind,
    Message,
    Reply,
    Snapshot,
    StrategyCommand,
    Watchlist,
    WatchlistRequest,
)
from core.trade_stats import strategy_stats, trade_report

NOW = datetime(2026, 11, 20, 14, 30, 0, tzinfo=CHINA_TZ)
TRADING_DAY = "20261120"
ACCOUNT_IDS = ["DQ1", "DQ2", "DQ3"]


def at(hour: int, minute: int, second: int = 0) -> datetime:
    """A time of the fixed trading day."""
    return NOW.replace(hour=hour, minute=minute, second=second)


# --------------------------------------------------------------------------- contracts

# (vt_symbol, multiplier, price tick, margin ratio, fee rate, fee per lot)
_SPECS: list[tuple[str, float, float, float, float, float]] = [
    ("au2612.SHFE", 1000, 0.02, 0.12, 0.0, 10.0),
    ("ag2612.SHFE", 15, 1, 0.15, 0.00005, 0.0),
    ("cu2701.SHFE", 5, 10, 0.10, 0.00005, 0.0),
    ("rb2705.SHFE", 10, 1, 0.09, 0.0001, 0.0),
    ("al2701.SHFE", 5, 5, 0.10, 0.0, 3.0),
    ("sc2701.INE", 1000, 0.1, 0.12, 0.0, 20.0),
    ("i2705.DCE", 100, 0.5, 0.13, 0.0001, 0.0),
    ("m2705.DCE", 10, 1, 0.09, 0.0, 1.5),
    ("TA705.CZCE", 5, 2, 0.08, 0.0, 3.0),
    ("MA705.CZCE", 10, 1, 0.09, 0.0, 2.0),
    ("IF2612.CFFEX", 300, 0.2, 0.12, 0.000023, 0.0),
    ("IC2612.CFFEX", 200, 0.2, 0.14, 0.000023, 0.0),
]


def contract(vt_symbol: str, account_id: str) -> Contract:
    """The fixed specification of one of the fake's contracts."""
    for sym, size, tick, margin, rate, per_lot in _SPECS:
        if sym == vt_symbol:
            symbol, exchange = sym.split(".")
            return Contract(
                vt_symbol=sym,
                symbol=symbol,
                exchange=Exchange(exchange),
                product=symbol.rstrip("0123456789"),
                size=size,
                pricetick=tick,
                margin_ratio=margin,
                commission_rate=rate,
                commission_per_lot=per_lot,
                limit_pct=0.07,
                account_id=account_id,
            )
    raise KeyError(vt_symbol)


# --------------------------------------------------------------------------- quotes

# (vt_symbol, last, pre-settlement, bid, bid volume, ask, ask volume, volume, open interest)
_QUOTES: dict[str, tuple[float, float, float, float, float, float, float, float]] = {
    "au2612.SHFE": (912.34, 905.60, 912.32, 12, 912.36, 7, 186_512, 214_890),
    "ag2612.SHFE": (12_087, 12_140, 12_086, 45, 12_088, 31, 742_305, 508_117),
    "cu2701.SHFE": (86_210, 85_900, 86_200, 6, 86_220, 4, 61_874, 187_402),
    "rb2705.SHFE": (3_148, 3_151, 3_147, 310, 3_148, 122, 1_204_551, 2_311_870),
    "al2701.SHFE": (20_815, 20_815, 20_810, 25, 20_815, 18, 98_300, 356_210),
    "sc2701.INE": (478.3, 482.1, 478.2, 9, 478.4, 11, 98_770, 37_412),
    "i2705.DCE": (781.5, 776.0, 781.0, 88, 781.5, 64, 402_115, 918_004),
    "m2705.DCE": (2_947, 2_962, 2_946, 150, 2_947, 98, 880_412, 3_402_117),
    "TA705.CZCE": (4_712, 4_690, 4_710, 220, 4_712, 175, 512_006, 1_020_448),
    "MA705.CZCE": (2_356, 2_349, 2_355, 66, 2_357, 40, 330_240, 801_990),
    "IF2612.CFFEX": (3_978.4, 3_962.0, 3_978.2, 3, 3_978.6, 2, 64_210, 158_330),
    "IC2612.CFFEX": (7_215.2, 7_240.0, 7_214.8, 2, 7_215.6, 1, 31_040, 112_708),
}


def depth(vt_symbol: str, bid: float, bidv: float, ask: float, askv: float) -> dict[str, float]:
    """The book behind a fixed quote: five levels a tick apart on SHFE and INE (their level-5
    fronts), level 1 only elsewhere (as most CTP fronts report)."""
    if not vt_symbol.endswith((".SHFE", ".INE")):
        return depth_fields([(bid, bidv)], [(ask, askv)])
    step = next(spec[2] for spec in _SPECS if spec[0] == vt_symbol)
    digits = decimals_of(step)
    bids = [(round(bid - n * step, digits), bidv + 7 * n) for n in range(5)]
    asks = [(round(ask + n * step, digits), askv + 5 * n) for n in range(5)]
    return depth_fields(bids, asks)


def tick(vt_symbol: str, account_id: str, moment: datetime = NOW, **changes: float) -> Tick:
    """The fixed quote of ``vt_symbol``; ``changes`` override fields (a new price...)."""
    last, pre, bid, bidv, ask, askv, volume, oi = _QUOTES[vt_symbol]
    fields: dict[str, Any] = {
        "last_price": last,
        "pre_settlement": pre,
        **depth(vt_symbol, bid, bidv, ask, askv),
        "volume": volume,
        "open_interest": oi,
        "limit_up": round(pre * 1.07, 2),
        "limit_down": round(pre * 0.93, 2),
        **changes,
    }
    return Tick(account_id=account_id, vt_symbol=vt_symbol, datetime=moment, **fields)


def equity_curve(
    start: float, points: int = 50, *, drift: float = 0.0, swing: float = 0.0
) -> list[EquityPoint]:
    """``points`` snapshots every 5 minutes up to 14:25: a smooth, fixed wave."""
    first = NOW - timedelta(minutes=5 * points)
    curve = []
    for n in range(points):
        balance = round(start + drift * n + swing * math.sin(n / 4.0) + swing * 0.3 * math.sin(n * 1.7), 2)
        curve.append(
            EquityPoint(datetime=first + timedelta(minutes=5 * n), balance=balance, available=balance * 0.8)
        )
    return curve


def stored_equity(curve: list[EquityPoint], days: int = 6) -> list[EquityPoint]:
    """What the account's database holds: ``days`` of half-hourly points before ``curve``
    (a slow drift and a wave), then ``curve`` itself."""
    first = curve[0]
    n = days * 48
    earlier = [
        EquityPoint(
            datetime=first.datetime - timedelta(minutes=30 * (n - k)),
            balance=round(first.balance - 40.0 * (n - k) + first.balance * 0.004 * math.sin(k / 9.0), 2),
            available=first.available,
        )
        for k in range(n)
    ]
    return [*earlier, *curve]


# --------------------------------------------------------------------------- accounts


def _dq1() -> tuple[Snapshot, list[LogEntry]]:
    aid = "DQ1"
    watch = [
        "au2612.SHFE",
        "ag2612.SHFE",
        "cu2701.SHFE",
        "sc2701.INE",
        "IF2612.CFFEX",
        "rb2705.SHFE",
        "m2705.DCE",
        "TA705.CZCE",
    ]
    positions = [
        Position(
            account_id=aid,
            vt_symbol="au2612.SHFE",
            direction=Direction.LONG,
            volume=3,
            yd_volume=2,
            price=905.20,
            last_price=912.34,
            pnl=21_420.0,
            margin=328_442.40,
        ),
        Position(
            account_id=aid,
            vt_symbol="IF2612.CFFEX",
            direction=Direction.SHORT,
            volume=1,
            yd_volume=1,
            price=3_950.0,
            last_price=3_978.4,
            pnl=-8_520.0,
            margin=143_222.40,
        ),
    ]

    def order(
        order_id: str,
        when: datetime,
        vt_symbol: str,
        direction: Direction,
        offset: Offset,
        price: float,
        volume: float,
        status: Status,
        traded: float = 0,
        msg: str = "",
        reference: str = "manual",
    ) -> Order:
        return Order(
            account_id=aid,
            order_id=order_id,
            vt_symbol=vt_symbol,
            direction=direction,
            offset=offset,
            type=OrderType.LIMIT,
            price=price,
            volume=volume,
            traded=traded,
            traded_price=price if traded else 0.0,
            status=status,
            datetime=when,
            update_time=when,
            reference=reference,
            status_msg=msg,
        )

    orders = [
        order(
            "DQ1-0001",
            at(9, 3, 12),
            "au2612.SHFE",
            Direction.LONG,
            Offset.OPEN,
            905.20,
            1,
            Status.ALLTRADED,
            traded=1,
            reference="au_ma_rsi",
        ),
        order(
            "DQ1-0002",
            at(10, 41, 7),
            "m2705.DCE",
            Direction.LONG,
            Offset.OPEN,
            2_940,
            5,
            Status.CANCELLED,
            msg="cancelled by operator",
        ),
        order(
            "DQ1-0003",
            at(13, 52, 40),
            "IF2612.CFFEX",
            Direction.SHORT,
            Offset.OPEN,
            3_990.0,
            20,
            Status.REJECTED,
            msg="risk: notional 23,940,000.00 > max_order_notional 20,000,000",
        ),
        order(
            "DQ1-0004",
            at(14, 12, 5),
            "cu2701.SHFE",
            Direction.SHORT,
            Offset.OPEN,
            86_300,
            2,
            Status.PARTTRADED,
            traded=1,
        ),
        order(
            "DQ1-0005",
            at(14, 27, 51),
            "au2612.SHFE",
            Direction.LONG,
            Offset.OPEN,
            910.00,
            2,
            Status.NOTTRADED,
            reference="au_ma_rsi",
        ),
    ]
    trades = [
        Trade(
            account_id=aid,
            trade_id="T-1001",
            order_id="DQ1-0001",
            vt_symbol="au2612.SHFE",
            direction=Direction.LONG,
            offset=Offset.OPEN,
            price=905.20,
            volume=1,
            datetime=at(9, 3, 12),
            commission=10.0,
            reference="au_ma_rsi",
        ),
        Trade(
            account_id=aid,
            trade_id="T-1002",
            order_id="DQ1-0004",
            vt_symbol="cu2701.SHFE",
            direction=Direction.SHORT,
            offset=Offset.OPEN,
            price=86_300,
            volume=1,
            datetime=at(14, 12, 9),
            commission=21.58,
        ),
    ]
    strategies = [
        StrategyState(
            account_id=aid,
            name="au_ma_rsi",
            class_name="MaRsiStrategy",
            vt_symbol="au2612.SHFE",
            running=True,
            position=3,
            pnl=21_410.0,
        ),
        StrategyState(
            account_id=aid,
            name="if_breakout",
            class_name="BreakoutStrategy",
            vt_symbol="IF2612.CFFEX",
            running=False,
            position=-1,
            pnl=-8_520.0,
            error="stopped by operator",
        ),
    ]

    def trigger(
        when: datetime,
        instance: str,
        vt_symbol: str,
        condition: str,
        price: float,
        action: str,
        result: str,
        order_id: str = "",
        error: str = "",
    ) -> StrategyTrigger:
        return StrategyTrigger(
            account_id=aid,
            datetime=when,
            instance=instance,
            vt_symbol=vt_symbol,
            condition=condition,
            price=price,
            action=action,
            result=result,
            order_id=order_id,
            error=error,
        )

    triggers = [
        trigger(at(9, 3, 12), "au_ma_rsi", "au2612.SHFE", "MA10 905.1 > MA30 903.8, RSI 38 < 40", 905.20, "buy", "success", "DQ1-0001"),
        trigger(at(13, 52, 40), "if_breakout", "IF2612.CFFEX", "close 3,990.0 < 20-bar low 3,991.2", 3_990.0, "sell", "rejected", error="risk: max_order_notional"),
        trigger(at(14, 20, 0), "au_ma_rsi", "au2612.SHFE", "RSI 55 between 40 and 60", 911.80, "hold", "not executed"),
        trigger(at(14, 27, 51), "au_ma_rsi", "au2612.SHFE", "MA10 911.9 > MA30 908.4, pullback to 910.00", 910.00, "buy", "pending", "DQ1-0005"),
    ]  # fmt: skip
    account = Account(
        account_id=aid,
        balance=1_023_456.78,
        available=290_241.98,
        margin=471_664.80,
        frozen=261_550.00,
        commission=31.58,
        close_pnl=0.0,
        position_pnl=12_900.0,
        pre_balance=1_010_588.36,
        trading_day=TRADING_DAY,
        datetime=NOW,
    )
    snap = Snapshot(
        info=TraderInfo(
            account_id=aid,
            gateway="sim",
            pid=4101,
            gateway_status=GatewayStatus.CONNECTED,
            trading_state=TradingState.ACTIVE,
            auto_trading=True,
            trading_day=TRADING_DAY,
            started_at=at(8, 55),
        ),
        account=account,
        contracts=[contract(s, aid) for s in watch],
        ticks=[tick(s, aid) for s in watch],
        positions=positions,
        orders=orders,
        trades=trades,
        strategies=strategies,
        triggers=triggers,
        equity=equity_curve(1_000_000.0, drift=450.0, swing=6_000.0),
    )
    logs = [
        LogEntry(
            account_id=aid,
            datetime=at(13, 52, 40),
            level="WARNING",
            message="order refused by risk: notional 23,940,000.00 > max_order_notional 20,000,000",
            source="risk",
        ),
        LogEntry(
            account_id=aid,
            datetime=at(14, 27, 51),
            level="INFO",
            message="au_ma_rsi: buy 2 au2612.SHFE @ 910.00 sent (DQ1-0005)",
            source="strategy",
        ),
    ]
    return snap, logs


def _dq2() -> tuple[Snapshot, list[LogEntry]]:
    aid = "DQ2"
    watch = ["rb2705.SHFE", "i2705.DCE", "m2705.DCE", "TA705.CZCE", "MA705.CZCE"]
    snap = Snapshot(
        info=TraderInfo(
            account_id=aid,
            gateway="sim",
            pid=4102,
            gateway_status=GatewayStatus.CONNECTED,
            trading_state=TradingState.REDUCING,
            trading_day=TRADING_DAY,
        ),
        account=Account(
            account_id=aid,
            balance=1_987_310.50,
            available=1_936_513.00,
            margin=50_797.50,
            commission=12.40,
            close_pnl=-5_777.10,
            position_pnl=-3_100.0,
            pre_balance=1_996_200.00,
            trading_day=TRADING_DAY,
            datetime=NOW,
        ),
        contracts=[contract(s, aid) for s in watch],
        ticks=[tick(s, aid) for s in watch],
        positions=[
            Position(
                account_id=aid,
                vt_symbol="i2705.DCE",
                direction=Direction.LONG,
                volume=5,
                yd_volume=0,
                price=787.7,
                last_price=781.5,
                pnl=-3_100.0,
                margin=50_797.50,
            )
        ],
        equity=equity_curve(2_000_000.0, drift=-90.0, swing=2_500.0),
    )
    return snap, []


def _dq3() -> tuple[Snapshot, list[LogEntry]]:
    aid = "DQ3"
    watch = ["IF2612.CFFEX", "IC2612.CFFEX", "al2701.SHFE"]
    snap = Snapshot(
        info=TraderInfo(
            account_id=aid,
            gateway="sim",
            pid=4103,
            gateway_status=GatewayStatus.CONNECTED,
            trading_day=TRADING_DAY,
        ),
        account=Account(
            account_id=aid,
            balance=500_000.00,
            available=500_000.00,
            pre_balance=500_000.00,
            trading_day=TRADING_DAY,
            datetime=at(14, 2),
        ),
        contracts=[contract(s, aid) for s in watch],
        ticks=[tick(s, aid, at(14, 2, 11)) for s in watch],
        equity=equity_curve(500_000.0, points=12, swing=800.0),
    )
    log = LogEntry(
        account_id=aid,
        datetime=at(14, 2, 11),
        level="ERROR",
        message="trader exited: RuntimeError: sim state file is corrupt",
        source="manager",
    )
    return snap, [log]


# --------------------------------------------------------------------------- the client


#: months the fake venue lists beyond the quoted ones, with their open interest: a probe for
#: rb quotes them, and rb2710 (not rb2705) has the most
OTHER_MONTHS: dict[str, float] = {"rb2701.SHFE": 1_050_300, "rb2710.SHFE": 2_904_455}


class FakeClient(ConsoleClient):
    """Three fixed accounts: DQ1 (busy), DQ2 (reducing), DQ3 (crashed)."""

    def __init__(self) -> None:
        self.aggregator = DataAggregator()
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self._replies: dict[str, list[Reply]] = {}
        self._order_seq = 0
        self.stored_equity: dict[str, list[EquityPoint]] = {}  # the databases' equity curves
        for aid, build in zip(ACCOUNT_IDS, (_dq1, _dq2, _dq3), strict=True):
            self.aggregator.add_account(aid, "sim")
            snap, logs = build()
            self.stored_equity[aid] = stored_equity(snap.equity)
            self.apply(aid, "snapshot", snap)
            for entry in logs:
                self.apply(aid, "log", entry)
            self.aggregator.set_status(aid, TraderStatus.CONNECTED)
        self.aggregator.set_status(
            "DQ3",
            TraderStatus.CRASHED,
            "exit code 1 (RuntimeError: sim state file is corrupt); restart in 2 s",
        )
        self.aggregator.states["DQ3"].pid = None

    # ------------------------------------------------------------------ test helpers

    def apply(self, account_id: str, msg_type: str, data: Any) -> None:
        """Feed one trader message, as the manager would (subscribers are told)."""
        self.aggregator.apply(account_id, Message.new(type=msg_type, account_id=account_id, data=data))

    def reply_next(self, command: str, reply: Reply) -> None:
        """Answer the next call of ``command`` (``send_order``, ``cancel_all``...) with ``reply``."""
        self._replies.setdefault(command, []).append(reply)

    def called(self, command: str) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
        """Arguments of every call of ``command`` so far."""
        return [(args, kwargs) for name, args, kwargs in self.calls if name == command]

    def _record(self, command: str, *args: Any, result: Any = None, **kwargs: Any) -> Reply:
        self.calls.append((command, args, kwargs))
        queued = self._replies.get(command)
        if queued:
            return queued.pop(0)
        return Reply(ok=True, result=result)

    # ------------------------------------------------------------------ reading

    @property
    def account_ids(self) -> list[str]:
        return list(ACCOUNT_IDS)

    def state(self, account_id: str) -> AccountState:
        return self.aggregator.states[account_id]

    def subscribe(self, callback: Callable[[Change], None]) -> Callable[[], None]:
        return self.aggregator.subscribe(callback)

    async def history(
        self,
        account_id: str,
        kind: HistoryKind,
        *,
        since: float | None = None,
        limit: int = 1000,
        vt_symbol: str | None = None,
        every: float | None = None,
        until: float | None = None,
    ) -> Reply:
        """Account snapshots from ``stored_equity`` (since, thinned like the database: the
        last point of each ``every`` seconds, the newest ``limit``); other kinds: none."""
        rows: list[Any] = []
        if kind == "account_snapshots":
            points = [
                p for p in self.stored_equity[account_id] if since is None or p.datetime.timestamp() >= since
            ]
            if every:
                last: dict[int, EquityPoint] = {}
                for p in points:
                    last[int(p.datetime.timestamp() * 1_000_000) // round(every * 1_000_000)] = p
                points = list(last.values())
            rows = points[-limit:]
        result: Any = rows
        if kind in ("trade_report", "strategy_stats"):  # the trader's own figures, from the fixed fills
            state = self.state(account_id)
            trades = [
                t
                for t in state.trades
                if (until is None or t.datetime.timestamp() < until)
                and (kind == "trade_report" or since is None or t.datetime.timestamp() >= since)
            ]

            def size(vt_symbol: str) -> float | None:
                known = state.contracts.get(vt_symbol)
                return known.size if known is not None else None

            start = datetime.fromtimestamp(since, CHINA_TZ) if since is not None else None
            if kind == "trade_report":
                result = trade_report(trades, size, since=start, vt_symbol=vt_symbol, limit=limit)
            else:
                result = strategy_stats(trades, state.triggers, size, state.strategies)
        return self._record(
            "history",
            account_id,
            kind,
            since=since,
            until=until,
            limit=limit,
            vt_symbol=vt_symbol,
            every=every,
            result=result,
        )

    # ------------------------------------------------------------------ trading

    async def watchlist(self, account_id: str, req: WatchlistRequest) -> Reply:
        """As a trader answers: ``set`` (known contracts only) tells the new list; ``listed``
        every contract of the fake venue; ``probe`` quotes the product's months."""
        venue = sorted({sym for sym, *_ in _SPECS} | set(OTHER_MONTHS))
        if req.action == "listed":
            found = [s for s in venue if not req.product or s.startswith(req.product)]
            return self._record("watchlist", account_id, req, result={"contracts": found})
        if req.action == "probe":
            found = [s for s in venue if re.match(rf"{req.product}\d", s)]
            for vt_symbol in found:
                self._quote(account_id, vt_symbol)
            return self._record("watchlist", account_id, req, result={"contracts": found})
        unknown = [s for s in req.symbols if s not in venue]
        if unknown:
            self._record("watchlist", account_id, req)
            return Reply(
                ok=False, error=f"unknown at the venue: {', '.join(unknown)}; the watchlist is unchanged"
            )
        for vt_symbol in req.symbols:  # subscribed: quoted at once
            self._quote(account_id, vt_symbol)
        self.apply(account_id, "watchlist", Watchlist(symbols=list(req.symbols)))
        return self._record("watchlist", account_id, req, result={"watchlist": list(req.symbols)})

    def _quote(self, account_id: str, vt_symbol: str) -> None:
        """A month of ``OTHER_MONTHS`` subscribed: its contract and a quote (rb2705's, with
        its own open interest)."""
        if vt_symbol not in OTHER_MONTHS or vt_symbol in self.state(account_id).ticks:
            return
        symbol = vt_symbol.split(".")[0]
        spec = msgspec.structs.replace(
            contract("rb2705.SHFE", account_id), vt_symbol=vt_symbol, symbol=symbol
        )
        self.apply(account_id, "contract", spec)
        quote = tick("rb2705.SHFE", account_id, open_interest=OTHER_MONTHS[vt_symbol])
        self.apply(account_id, "tick", msgspec.structs.replace(quote, vt_symbol=vt_symbol))

    async def send_order(self, account_id: str, req: OrderRequest) -> Reply:
        self._order_seq += 1
        return self._record("send_order", account_id, req, result={"order_id": f"FAKE-{self._order_seq}"})

    async def cancel_order(self, account_id: str, order_id: str) -> Reply:
        return self._record("cancel_order", account_id, order_id)

    async def cancel_all(self, account_id: str, vt_symbol: str | None = None) -> Reply:
        return self._record("cancel_all", account_id, vt_symbol)

    async def close_position(
        self,
        account_id: str,
        vt_symbol: str,
        direction: Direction,
        *,
        volume: float | None = None,
        price: float | None = None,
    ) -> Reply:
        return self._record("close_position", account_id, vt_symbol, direction, volume=volume, price=price)

    async def reverse_position(
        self,
        account_id: str,
        vt_symbol: str,
        direction: Direction,
        *,
        volume: float | None = None,
        timeout: float = 10.0,
    ) -> Reply:
        return self._record(
            "reverse_position", account_id, vt_symbol, direction, volume=volume, timeout=timeout
        )

    async def create_conditional(self, account_id: str, req: ConditionalRequest) -> Reply:
        return self._record("create_conditional", account_id, req, result={"cond_id": "COND.FAKE-1"})

    async def conditional_command(self, account_id: str, command: ConditionalCommand) -> Reply:
        return self._record("conditional_command", account_id, command)

    async def set_trading_state(self, account_id: str, state: TradingState) -> Reply:
        return self._record("set_trading_state", account_id, state)

    async def strategy_command(self, account_id: str, command: StrategyCommand) -> Reply:
        return self._record("strategy_command", account_id, command)

    async def kill_switch(
        self, account_id: str | None = None, *, keep_protective: bool = False
    ) -> dict[str, Reply]:
        targets = [account_id] if account_id is not None else self.account_ids
        return {a: self._record("kill_switch", a, keep_protective=keep_protective) for a in targets}

    async def status(self, account_id: str) -> Reply:
        return self._record("status", account_id, result=self.state(account_id).info)

    # ------------------------------------------------------------------ processes

    async def start_trader(self, account_id: str) -> Reply:
        return self._record("start_trader", account_id)

    async def stop_trader(self, account_id: str) -> Reply:
        return self._record("stop_trader", account_id)

    async def restart_trader(self, account_id: str) -> Reply:
        return self._record("restart_trader", account_id)
