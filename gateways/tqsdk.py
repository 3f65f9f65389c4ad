"""TqsdkGateway: one TqSdk account (``TqSim``, ``TqKq`` or a real ``TqAccount``) behind ``Gateway``.

Threads. A ``TqApi`` owns its own asyncio loop and is not thread-safe, so each gateway runs
one dedicated thread (``tqsdk-<account>``) that constructs the ``TqApi``, calls ``wait_update``
in a loop and is the only code that touches it. Requests from the trader's loop (orders,
cancels, subscriptions, queries) travel on a thread-safe queue and run on that thread between
two ``wait_update`` calls; the thread wakes its ``wait_update`` at once when a request arrives
(and polls every 0.2 s anyway). Everything TqSdk reports travels back as one batch per round,
through ``loop.call_soon_threadsafe``: the listener is only ever called on the trader's loop.

Events. After every ``wait_update`` the thread compares TqSdk's books (subscribed quotes,
account, positions, orders, trades) with what it pushed last and pushes the differences, so
nothing is missed when TqSdk waits internally (``insert_order`` may). Orders and trades come
first, then positions, then the account (pushed at most once a second unless an order or
trade moved). Contracts are pushed with a subscription's first quote.

Ids. ``send_order`` picks the order id itself (``tq<start time, base 36>-<n>``, unique for
the account's lifetime) and hands it to ``insert_order(order_id=...)``, so it returns at once;
each order is reported SUBMITTING before ``send_order`` returns. Trade ids are TqSdk's prefixed
with the trade's trading day (``20260105-<id>``), as exchanges reuse theirs across days.

Offsets. SHFE/INE: a CLOSE is split by the position the trader last heard of: yesterday's
free lots with CLOSEYESTERDAY (TqSdk ``CLOSE``) first, the rest with CLOSETODAY, like
``Oms.split_close``. When both legs are needed ``send_order`` returns the first leg's id and the
second leg is ``<id>-2``; both are reported at once. CLOSEYESTERDAY is sent as ``CLOSE``.
Elsewhere any close is sent as TqSdk ``CLOSE`` and keeps the trader's offset.

Order states. ALIVE without an exchange order id is SUBMITTING, then NOTTRADED / PARTTRADED.
FINISHED with nothing left is ALLTRADED; with some fills CANCELLED; with no fill CANCELLED when
we asked to cancel it, when it was immediate-or-cancel (FAK, FOK, market) or when TqSdk's
message says it was withdrawn (contains 撤 and no 拒), otherwise REJECTED. Rejected and
cancelled orders carry TqSdk's ``last_msg`` in ``status_msg``; an ``insert_order`` that raises
(an unsupported market order, a missing permission) is REJECTED with the exception's text.

Connection. Construction failures (no network: ``requests`` errors; md front unreachable:
``TqTimeoutError`` after TqSdk's own 60 s) are reported as DISCONNECTED "... retry in N s" and
retried on 5, 10, 30, 60 s, then every 60 s; the trader keeps running. A refusal that cannot
heal by retrying with the same settings (the auth service rejecting the login, a licence
without the needed feature) calls ``listener.on_fatal``: the trader exits and its restart
re-reads the config, so a corrected password takes effect. Mid-session, TqSdk reconnects by
itself; its connection notices (``TqNotify``: codes 2019112911 lost, 2019112910 reconnecting,
2019112902 restored) become DISCONNECTED, CONNECTING and, after a full re-push, CONNECTED.
A ``wait_update`` that raises ends the session: it is closed and rebuilt on the same schedule;
working orders a new session no longer knows (a ``TqSim`` session does not survive) are
reported CANCELLED with the reason. CONNECTED is sent once the account, positions, every
order, today's trades and the quotes subscribed so far have all been pushed again, changed or
not (a subscription waits at most 30 s).
While not CONNECTED, ``send_order`` rejects at once and orders still queued are rejected.

Secrets. Passwords never leave this module: messages (status, logs, order reasons) are
scrubbed of the configured secrets and URLs are cut to scheme://host:port (a real account's
trading URL may embed credentials). TqSdk's own logger ("TqApi", whose debug records carry the
auth token) is detached from the process's handlers, and TqSdk writes no log file
(``debug=False``) and prints nothing (``disable_print=True``).

Settings (the account's ``tqsdk:`` section): ``account_type`` (tqsim | tqkq | account),
``broker``/``user``/``password`` (account only), ``auth_user``/``auth_password``, ``auth_url``
(TqSdk reads ``TQ_AUTH_URL`` when ``TqAuth`` is built: set under a lock for that moment only,
so several gateways in one process are safe), ``md_url`` (``TqApi(_md_url=...)``),
``init_balance`` (TqSim).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import itertools
import logging
import math
import os
import queue
import re
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from core.models import (
    CHINA_TZ,
    Account,
    CancelRequest,
    Contract,
    Direction,
    Exchange,
    GatewayStatus,
    Offset,
    Order,
    OrderRequest,
    OrderType,
    Position,
    Status,
    Tick,
    Trade,
    now,
    split_vt_symbol,
    trading_day_of,
)
from gateways.base import Gateway, GatewayListener

if TYPE_CHECKING:
    from tqsdk import TqApi, TqAuth, TqNotify

log = logging.getLogger(__name__)

RETRY_DELAYS: tuple[float, ...] = (5.0, 10.0, 30.0, 60.0)  # then the last one, forever
POLL_SECONDS = 0.2  # longest wait_update; requests normally wake it at once
SUBSCRIBE_TIMEOUT = 30.0  # CONNECTED waits at most this long for a subscription's first quote
ACCOUNT_PUSH_SECONDS = 1.0  # the account moves with every quote: push it at most this often
CLOSE_JOIN_SECONDS = 10.0
NOTIFY_LOST, NOTIFY_RECONNECTING, NOTIFY_RESTORED = 2019112911, 2019112910, 2019112902
MASK = "***"

_AUTH_ENV_LOCK = threading.Lock()  # TQ_AUTH_URL is process-wide: one TqAuth built at a time
_URL = re.compile(r"\b([a-z][a-z0-9+.-]*)://([^\s/'\"<>]+)[^\s'\"<>]*", re.IGNORECASE)
_FUTURES_EXCHANGES = frozenset(e.value for e in Exchange)


# ====================================================================== settings and text


class TqsdkSettingsView(Protocol):
    """What the gateway reads of its validated ``tqsdk:`` settings (config.schema.TqsdkSettings)."""

    account_type: str
    auth_user: str
    auth_password: str
    broker: str
    user: str
    password: str
    auth_url: str | None
    md_url: str | None
    init_balance: float


class Scrubber:
    """Makes a text safe to show: secrets (and their base64 forms) masked, URLs cut to host."""

    def __init__(self, secrets: Sequence[str]) -> None:
        forms: set[str] = set()
        for secret in secrets:
            raw = secret.encode()
            forms |= {secret, base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()}
        self._forms = sorted((f for f in forms if len(f) >= 3), key=len, reverse=True)

    def __call__(self, text: str, limit: int = 400) -> str:
        text = _URL.sub(lambda m: f"{m.group(1)}://{m.group(2).rpartition('@')[2]}", text)
        for form in self._forms:
            text = text.replace(form, MASK)
        return text if len(text) <= limit else text[: limit - 1] + "…"


def describe(exc: BaseException) -> str:
    """``ExceptionType: message``, the way a status line shows an error."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def is_refusal(exc: BaseException) -> bool:
    """The venue refused these settings for good (bad login, missing licence feature)."""
    text = str(exc)
    return text.startswith("用户权限认证失败") or "需要购买后才能使用" in text


def _num(value: Any) -> float:
    """TqSdk's numbers (NaN while unknown) as plain floats, 0 for unknown."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0.0
    return number if math.isfinite(number) else 0.0


def to_tq_symbol(vt_symbol: str) -> str:
    """``rb2601.SHFE`` -> ``SHFE.rb2601`` (ValueError if malformed)."""
    symbol, exchange = split_vt_symbol(vt_symbol)
    return f"{exchange.value}.{symbol}"


def to_vt_symbol(exchange_id: str, instrument_id: str) -> str:
    return f"{instrument_id}.{exchange_id}"


def _quote_time(text: str) -> datetime:
    """TqSdk's ``2026-01-05 10:00:00.000000`` (China time) as an aware datetime."""
    fmt = "%Y-%m-%d %H:%M:%S.%f" if "." in text else "%Y-%m-%d %H:%M:%S"
    return datetime.strptime(text, fmt).replace(tzinfo=CHINA_TZ)


def _ns_time(nanoseconds: Any) -> datetime:
    ns = int(_num(nanoseconds))
    return datetime.fromtimestamp(ns / 1e9, CHINA_TZ) if ns > 0 else now()


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        number, rest = divmod(number, 36)
        out = digits[rest] + out
        if not number:
            return out


# ====================================================================== orders


@dataclass(frozen=True, slots=True)
class OrderLeg:
    """One TqSdk order of a request (a SHFE/INE close may take two)."""

    order_id: str
    offset: Offset  # ours, as reported
    tq_offset: str  # TqSdk's: OPEN, CLOSE or CLOSETODAY
    volume: int


@dataclass(frozen=True, slots=True)
class OrderMeta:
    """What TqSdk does not keep about an order we sent."""

    vt_symbol: str
    direction: Direction
    offset: Offset
    type: OrderType
    price: float
    volume: float
    reference: str
    datetime: datetime


def tq_offset(offset: Offset, exchange: Exchange) -> str:
    """Our offset as TqSdk spells it (``CLOSE`` is yesterday's on SHFE/INE)."""
    if offset is Offset.OPEN:
        return "OPEN"
    if offset is Offset.CLOSETODAY and exchange.has_close_today:
        return "CLOSETODAY"
    return "CLOSE"


def our_offset(tq: str, exchange_id: str) -> Offset:
    """A TqSdk order's offset in our terms (for orders placed elsewhere)."""
    if tq == "OPEN":
        return Offset.OPEN
    if tq == "CLOSETODAY":
        return Offset.CLOSETODAY
    return Offset.CLOSEYESTERDAY if exchange_id in ("SHFE", "INE") else Offset.CLOSE


def our_order_type(order: Mapping[str, Any]) -> OrderType:
    if order.get("price_type") in ("ANY", "BEST", "FIVELEVEL"):
        return OrderType.MARKET
    if order.get("time_condition") == "IOC":
        return OrderType.FOK if order.get("volume_condition") == "ALL" else OrderType.FAK
    return OrderType.LIMIT


def order_status(order: Mapping[str, Any], otype: OrderType, cancel_asked: bool) -> Status:
    """TqSdk's ALIVE/FINISHED plus volumes and message, as our status (module docstring)."""
    total = int(_num(order.get("volume_orign")))
    left = int(_num(order.get("volume_left")))
    if order.get("status") != "FINISHED":
        if not order.get("exchange_order_id"):
            return Status.SUBMITTING
        return Status.PARTTRADED if left < total else Status.NOTTRADED
    if left <= 0:
        return Status.ALLTRADED
    if left < total or cancel_asked or otype in (OrderType.FAK, OrderType.FOK, OrderType.MARKET):
        return Status.CANCELLED
    msg = str(order.get("last_msg") or "")
    return Status.CANCELLED if "撤" in msg and "拒" not in msg else Status.REJECTED


def split_close(
    volume: int, exchange: Exchange, offset: Offset, position: Position | None
) -> list[tuple[Offset, int]]:
    """Legs of one request: a SHFE/INE CLOSE becomes yesterday's free lots, then today's."""
    if offset is not Offset.CLOSE or not exchange.has_close_today:
        return [(offset, volume)]
    yd_free = td_free = 0
    if position is not None:
        yd_free = max(int(position.yd_volume - position.yd_frozen), 0)
        td_free = max(int((position.volume - position.yd_volume) - (position.frozen - position.yd_frozen)), 0)
    from_yd = min(volume, yd_free)
    if from_yd == volume or td_free == 0:
        return [(Offset.CLOSEYESTERDAY, volume)]  # the venue judges what cannot be covered
    legs = [(Offset.CLOSEYESTERDAY, from_yd)] if from_yd else []
    return [*legs, (Offset.CLOSETODAY, volume - from_yd)]


# ====================================================================== TqSdk objects


@functools.cache
def _stoppable_api_class() -> type[TqApi]:
    """TqApi whose every wait, its constructor's included, gives up once ``stop`` is set.

    The constructor may wait 60 s for an unreachable md front; slicing ``wait_update`` into
    ``POLL_SECONDS`` pieces lets ``close()`` end it. Slices that time out leave TqSdk's change
    tracking untouched, so the slicing is invisible otherwise. Imported late: tqsdk takes
    seconds to import and must not delay the trader's loop.
    """
    from tqsdk import TqApi

    class StoppableTqApi(TqApi):
        def __init__(self, stop: threading.Event, *args: Any, **kwargs: Any) -> None:
            self._qt_stop = stop
            super().__init__(*args, **kwargs)

        def wait_update(self, deadline: float | None = None, _task: Any = None) -> bool:
            while True:
                end = time.time() + POLL_SECONDS
                if deadline is not None:
                    end = min(end, deadline)
                if super().wait_update(deadline=end, _task=_task):
                    return True
                if self._qt_stop.is_set() or (deadline is not None and time.time() >= deadline):
                    return False

    return StoppableTqApi


def _quiet_tqsdk_logging() -> None:
    # TqSdk's debug records, and those of the websockets client it uses, carry request headers
    # (the auth token): keep them away from the process's handlers. TqSdk's WARNING and above
    # still reach stderr through logging's last resort.
    logging.getLogger("TqApi").propagate = False
    ws_log = logging.getLogger("websockets.client")
    if ws_log.level == logging.NOTSET:
        ws_log.setLevel(logging.INFO)


# ====================================================================== the gateway (loop side)


Event = tuple[str, tuple[Any, ...]]


class TqsdkGateway(Gateway):
    """One TqSdk account (see the module docstring).

    ``retry_delays`` (keyword only) replaces the reconnect schedule, for tests.
    """

    name: ClassVar[str] = "tqsdk"

    def __init__(
        self,
        account_id: str,
        settings: TqsdkSettingsView,
        listener: GatewayListener,
        state_dir: Path,
        *,
        retry_delays: Sequence[float] = RETRY_DELAYS,
    ) -> None:
        super().__init__(account_id, settings, listener, state_dir)
        self.config = settings
        self.scrub = Scrubber(tuple(s for s in (settings.password, settings.auth_password) if s))
        self.retry_delays = tuple(retry_delays) or RETRY_DELAYS
        self.status = GatewayStatus.DISCONNECTED
        self._loop: asyncio.AbstractEventLoop | None = None
        self._worker: _Worker | None = None
        self._thread: threading.Thread | None = None
        self._contracts: dict[str, Contract] = {}
        self._positions: dict[tuple[str, Direction], Position] = {}
        self._id_prefix = f"tq{_base36(time.time_ns() // 1_000_000)}-"
        self._ids = itertools.count(1)

    # ------------------------------------------------------------------ Gateway interface

    async def connect(self) -> None:
        if self._thread is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._worker = _Worker(self, self._loop)
        self._thread = threading.Thread(target=self._worker.run, name=f"tqsdk-{self.account_id}", daemon=True)
        self._set_status(GatewayStatus.CONNECTING, f"connecting to TqSdk ({self.config.account_type})")
        self._thread.start()

    async def close(self) -> None:
        thread, worker = self._thread, self._worker
        if thread is None or worker is None:
            return
        worker.stop.set()
        worker.wake()
        deadline = time.monotonic() + CLOSE_JOIN_SECONDS
        while thread.is_alive() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        await asyncio.sleep(0)  # deliver the thread's last batch before the closing status
        self._thread = self._worker = None
        if thread.is_alive():  # only a TqSdk call that ignores the stop flag can hold it this long
            self.listener.on_log(
                "WARNING", "TqSdk thread did not stop in time; it ends with its current call"
            )
        self._set_status(GatewayStatus.DISCONNECTED, "TqSdk closed")

    def subscribe(self, vt_symbol: str) -> None:
        try:
            tq_symbol = to_tq_symbol(vt_symbol)
        except ValueError as exc:
            self.listener.on_log("WARNING", f"subscribe {vt_symbol}: {exc}")
            return
        self._request(("subscribe", tq_symbol))

    def send_order(self, req: OrderRequest) -> str:
        order_id = f"{self._id_prefix}{next(self._ids)}"
        problem, exchange = self._check_order(req)
        if problem or exchange is None:
            return self._reject_now(order_id, req, problem)
        position = self._positions.get((req.vt_symbol, req.direction.opposite))
        legs = [
            OrderLeg(order_id if i == 0 else f"{order_id}-{i + 1}", offset, tq_offset(offset, exchange), lots)
            for i, (offset, lots) in enumerate(split_close(int(req.volume), exchange, req.offset, position))
        ]
        moment = now()
        for leg in legs:
            meta = OrderMeta(
                vt_symbol=req.vt_symbol,
                direction=req.direction,
                offset=leg.offset,
                type=req.type,
                price=req.price,
                volume=leg.volume,
                reference=req.reference,
                datetime=moment,
            )
            self.listener.on_order(_new_order(self.account_id, leg.order_id, meta, Status.SUBMITTING))
            self._request(("order", leg, meta))
        return order_id

    def cancel_order(self, req: CancelRequest) -> None:
        if self.status is not GatewayStatus.CONNECTED:
            self.listener.on_log("WARNING", f"cancel {req.order_id}: TqSdk not connected")
            return
        self._request(("cancel", req.order_id))

    def query(self) -> None:
        self._request(("query",))

    def get_contract(self, vt_symbol: str) -> Contract | None:
        return self._contracts.get(vt_symbol)

    # ------------------------------------------------------------------ internals

    @property
    def thread_alive(self) -> bool:
        """Whether the TqSdk thread runs (for tests and diagnostics)."""
        return self._thread is not None and self._thread.is_alive()

    def _request(self, request: tuple[Any, ...]) -> None:
        if self._worker is None:
            self.listener.on_log("WARNING", f"TqSdk {request[0]}: gateway not started")
            return
        self._worker.requests.put(request)
        self._worker.wake()

    def _check_order(self, req: OrderRequest) -> tuple[str, Exchange | None]:
        """Why an order cannot go to TqSdk ("" if it can), and its exchange."""
        try:
            _, exchange = split_vt_symbol(req.vt_symbol)
        except ValueError as exc:
            return str(exc), None
        if self.status is not GatewayStatus.CONNECTED or self._worker is None:
            return "TqSdk not connected", exchange
        if req.type is OrderType.STOP:
            return "TqSdk takes no STOP orders", exchange
        if req.volume < 1 or req.volume != int(req.volume):
            return f"volume {req.volume:g} is not a whole number of lots", exchange
        return "", exchange

    def _reject_now(self, order_id: str, req: OrderRequest, reason: str) -> str:
        meta = OrderMeta(
            vt_symbol=req.vt_symbol,
            direction=req.direction,
            offset=req.offset,
            type=req.type,
            price=req.price,
            volume=req.volume,
            reference=req.reference,
            datetime=now(),
        )
        self.listener.on_order(_new_order(self.account_id, order_id, meta, Status.REJECTED, reason))
        return order_id

    def _set_status(self, status: GatewayStatus, message: str) -> None:
        self.status = status
        self.listener.on_status(status, message)

    def _deliver(self, batch: list[Event]) -> None:
        """On the loop: one round of the thread's events, in order."""
        for method, args in batch:
            if self._thread is None and method != "on_log":
                continue  # closed: nothing after the closing status
            first = args[0] if args else None
            if isinstance(first, Contract):
                self._contracts[first.vt_symbol] = first
            elif isinstance(first, Position):
                self._positions[first.key] = first
            elif isinstance(first, GatewayStatus):
                self.status = first
            try:
                getattr(self.listener, method)(*args)
            except Exception:  # one failing handler must not drop the rest of the round
                log.exception("TqSdk gateway: listener %s failed", method)


def _new_order(
    account_id: str, order_id: str, meta: OrderMeta, status: Status, status_msg: str = ""
) -> Order:
    return Order(
        account_id=account_id,
        order_id=order_id,
        vt_symbol=meta.vt_symbol,
        direction=meta.direction,
        offset=meta.offset,
        type=meta.type,
        price=meta.price,
        volume=meta.volume,
        status=status,
        datetime=meta.datetime,
        update_time=now(),
        reference=meta.reference,
        status_msg=status_msg,
    )


# ====================================================================== the TqSdk thread


class _Worker:
    """Everything that runs on the TqSdk thread: the TqApi, its books and what was pushed."""

    def __init__(self, gateway: TqsdkGateway, loop: asyncio.AbstractEventLoop) -> None:
        self.gw = gateway
        self.loop = loop
        self.account_id = gateway.account_id
        self.cfg = gateway.config
        self.scrub = gateway.scrub
        self.stop = threading.Event()
        self.requests: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self.api: TqApi | None = None
        self.auth: TqAuth | None = None
        self.notify: TqNotify | None = None
        self._idle = False  # inside the serve loop's own wait_update (safe to wake)
        self._events: list[Event] = []
        # what the trader wants and what it was told: survives a session rebuild (so a position
        # the new session lacks is pushed flat); every CONNECTED follows a forced full push
        self._symbols: dict[str, None] = {}
        self._meta: dict[str, OrderMeta] = {}
        self._cancel_asked: set[str] = set()
        self._order_sig: dict[str, tuple[Any, ...]] = {}
        self._final: set[str] = set()
        self._trades_seen: set[str] = set()
        self._pos_sig: dict[tuple[str, Direction], tuple[Any, ...]] = {}
        self._account_sig: tuple[Any, ...] = ()
        self._account_due = 0.0
        # one session's state
        self._quotes: dict[str, Any] = {}
        self._quote_sig: dict[str, tuple[Any, ...]] = {}
        self._sub_tasks: dict[str, asyncio.Task[None]] = {}
        self._down: set[str] = set()
        self._ready = False

    # ------------------------------------------------------------------ thread main

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # the thread must say why it ends, never die silently
            self._emit("on_log", "ERROR", f"TqSdk thread failed: {self.scrub(describe(exc))}")
            self._emit(
                "on_status", GatewayStatus.DISCONNECTED, f"TqSdk thread failed: {self.scrub(describe(exc))}"
            )
        finally:
            self._flush()

    def _run(self) -> None:
        _quiet_tqsdk_logging()
        failures = 0
        while not self.stop.is_set():
            self._reject_queued("TqSdk not connected")
            try:
                api = self._open()
            except Exception as exc:
                if self.stop.is_set():
                    return
                if is_refusal(exc):
                    reason = f"TqSdk refused the login: {self.scrub(describe(exc))}"
                    self._emit("on_fatal", reason)
                    self._emit("on_status", GatewayStatus.DISCONNECTED, reason)
                    return
                failures = self._wait_retry("TqSdk connect failed", exc, failures)
                continue
            try:
                self._serve(api)  # returns only once stop is set
            except Exception as exc:
                if self.stop.is_set():
                    return
                self._close_api()
                failures = self._wait_retry("TqSdk session failed", exc, 0 if self._ready else failures)
            finally:
                self._close_api()

    def _wait_retry(self, what: str, exc: Exception, failures: int) -> int:
        delays = self.gw.retry_delays
        delay = delays[min(failures, len(delays) - 1)]
        self._emit(
            "on_status",
            GatewayStatus.DISCONNECTED,
            f"{what}: {self.scrub(describe(exc))}; retry in {delay:g} s",
        )
        self._reject_queued("TqSdk not connected")
        self._flush()
        self.stop.wait(delay)
        return failures + 1

    def _open(self) -> TqApi:
        """Build auth, account and TqApi (blocking; TqSdk logs in and loads its books)."""
        from tqsdk import TqAccount, TqAuth, TqKq, TqNotify, TqSim

        cfg = self.cfg
        with _AUTH_ENV_LOCK:
            before = os.environ.get("TQ_AUTH_URL")
            if cfg.auth_url:
                os.environ["TQ_AUTH_URL"] = cfg.auth_url
            try:
                auth = TqAuth(cfg.auth_user, cfg.auth_password)
            finally:
                if cfg.auth_url:
                    if before is None:
                        os.environ.pop("TQ_AUTH_URL", None)
                    else:
                        os.environ["TQ_AUTH_URL"] = before
        if cfg.account_type == "tqsim":
            account: Any = TqSim(init_balance=cfg.init_balance, account_id=self.account_id)
        elif cfg.account_type == "tqkq":
            account = TqKq()
        else:
            account = TqAccount(cfg.broker, cfg.user, cfg.password)
        kwargs: dict[str, Any] = {"auth": auth, "disable_print": True, "debug": False}
        if cfg.md_url:
            kwargs["_md_url"] = cfg.md_url
        loop = asyncio.SelectorEventLoop()  # ours, so a construction that fails can be cleaned up
        try:
            api = _stoppable_api_class()(self.stop, account, loop=loop, **kwargs)
        except BaseException:
            _discard_loop(loop)
            raise
        self.auth = auth
        self.notify = TqNotify(api)
        self.notify.get_notifies()  # the construction's own "connected" notices
        self.api = api
        return api

    def _close_api(self) -> None:
        api, self.api, self.notify = self.api, None, None
        self._sub_tasks.clear()
        if api is not None:
            try:
                api.close()
            except Exception as exc:
                self._emit("on_log", "WARNING", f"TqSdk close: {self.scrub(describe(exc))}")

    # ------------------------------------------------------------------ one session

    def _serve(self, api: TqApi) -> None:
        """Run one TqApi until stop (returns) or failure (raises)."""
        self._quotes, self._quote_sig, self._down, self._ready = {}, {}, set(), False
        for tq_symbol in self._symbols:
            self._subscribe(tq_symbol)
        while not self.stop.is_set():
            self._handle_requests()
            if not self._ready and all(task.done() for task in self._sub_tasks.values()):
                # everything, not just what changed: the trader reconciles on what it hears before
                # CONNECTED, and the signatures of the last session survive into this one
                self._publish(force=True)
                self._report_lost_orders()
                self._ready = True
                if not self._down:
                    self._emit("on_status", GatewayStatus.CONNECTED, self._connected_text())
            self._flush()
            self._idle = True
            try:
                api.wait_update(deadline=time.time() + POLL_SECONDS)
            finally:
                self._idle = False
            self._handle_notices()
            self._publish()

    def _connected_text(self) -> str:
        md = self.scrub(self.cfg.md_url or "TqSdk's md front")
        return f"TqSdk connected ({self.cfg.account_type}, market data {md})"

    def wake(self) -> None:
        """From any thread: end the serve loop's current ``wait_update`` early."""
        api = self.api
        if api is None:
            return
        with contextlib.suppress(RuntimeError, AttributeError):  # loop closed meanwhile
            api._loop.call_soon_threadsafe(self._on_wake)

    def _on_wake(self) -> None:
        # runs inside TqApi's loop; only our own wait is cut short, never one TqSdk waits in
        api = self.api
        if self._idle and api is not None:
            set_timeout = getattr(api, "_set_wait_timeout", None)
            if set_timeout is not None:
                set_timeout()

    # ------------------------------------------------------------------ requests

    def _handle_requests(self) -> None:
        while True:
            try:
                request = self.requests.get_nowait()
            except queue.Empty:
                return
            kind = request[0]
            if kind == "subscribe":
                if request[1] not in self._symbols:
                    self._symbols[request[1]] = None
                    self._subscribe(request[1])
            elif kind == "order":
                self._insert(request[1], request[2])
            elif kind == "cancel":
                self._cancel(request[1])
            elif kind == "query":
                self._publish(force=True)

    def _reject_queued(self, reason: str) -> None:
        """Orders queued while there is no session are refused, never sent late."""
        kept: list[tuple[Any, ...]] = []
        while True:
            try:
                request = self.requests.get_nowait()
            except queue.Empty:
                break
            if request[0] == "order":
                leg, meta = request[1], request[2]
                self._emit(
                    "on_order", _new_order(self.account_id, leg.order_id, meta, Status.REJECTED, reason)
                )
            elif request[0] == "cancel":
                self._emit("on_log", "WARNING", f"cancel {request[1]}: {reason}")
            elif request[0] == "subscribe":
                kept.append(request)
        for request in kept:
            self.requests.put(request)

    def _subscribe(self, tq_symbol: str) -> None:
        api, auth = self.api, self.auth
        if api is None or auth is None or tq_symbol in self._quotes or tq_symbol in self._sub_tasks:
            return
        try:
            auth._has_md_grants(tq_symbol)  # TqSdk would raise this inside its own task
        except Exception as exc:
            self._emit("on_log", "WARNING", f"subscribe {tq_symbol}: {self.scrub(str(exc))}")
            return
        self._sub_tasks[tq_symbol] = api.create_task(self._await_quote(api, tq_symbol))

    async def _await_quote(self, api: TqApi, tq_symbol: str) -> None:
        """Inside TqApi's loop: wait for a subscription's contract info and first quote."""
        try:
            quote = api.get_quote(tq_symbol)
            await asyncio.wait_for(_awaited(quote), SUBSCRIBE_TIMEOUT)
        except TimeoutError:
            self._emit(
                "on_log",
                "WARNING",
                f"subscribe {tq_symbol}: no quote from TqSdk within {SUBSCRIBE_TIMEOUT:g} s (unknown contract?)",
            )
        except Exception as exc:  # an exception leaving a TqSdk task would end the session
            self._emit("on_log", "WARNING", f"subscribe {tq_symbol}: {self.scrub(describe(exc))}")
        else:
            self._quotes[tq_symbol] = quote

    def _insert(self, leg: OrderLeg, meta: OrderMeta) -> None:
        api = self.api
        assert api is not None
        self._meta[leg.order_id] = meta
        symbol, exchange = split_vt_symbol(meta.vt_symbol)
        market = meta.type is OrderType.MARKET
        try:
            api.insert_order(
                symbol=f"{exchange.value}.{symbol}",
                direction="BUY" if meta.direction is Direction.LONG else "SELL",
                offset=leg.tq_offset,
                volume=leg.volume,
                limit_price=None if market else float(meta.price),
                advanced=meta.type.value if meta.type in (OrderType.FAK, OrderType.FOK) else None,
                order_id=leg.order_id,
            )
        except Exception as exc:
            reason = self.scrub(str(exc) or describe(exc))
            self._final.add(leg.order_id)
            self._emit("on_order", _new_order(self.account_id, leg.order_id, meta, Status.REJECTED, reason))

    def _cancel(self, order_id: str) -> None:
        api = self.api
        assert api is not None
        order = api.get_order().get(order_id)
        if order is None:
            self._emit("on_log", "WARNING", f"cancel {order_id}: unknown to TqSdk")
            return
        if order.status == "FINISHED":
            self._emit("on_log", "WARNING", f"cancel {order_id}: already finished")
            self._order_sig.pop(order_id, None)
            self._final.discard(order_id)  # re-push its real state
            return
        self._cancel_asked.add(order_id)
        try:
            api.cancel_order(order_id)
        except Exception as exc:
            self._emit("on_log", "WARNING", f"cancel {order_id}: {self.scrub(describe(exc))}")

    # ------------------------------------------------------------------ publishing

    def _publish(self, force: bool = False) -> None:
        """Push what changed in TqSdk's books since the last push (everything if ``force``)."""
        api = self.api
        if api is None:
            return
        self._publish_quotes(force)
        moved = self._publish_orders(api, force)
        moved = self._publish_trades(api, force) or moved
        self._publish_positions(api, force)
        self._publish_account(api, force or moved)

    def _publish_quotes(self, force: bool) -> None:
        for tq_symbol, quote in self._quotes.items():
            sig = (
                quote.datetime,
                quote.last_price,
                quote.bid_price1,
                quote.ask_price1,
                quote.bid_volume1,
                quote.ask_volume1,
                quote.volume,
                quote.open_interest,
                quote.upper_limit,
                quote.lower_limit,
            )
            first = tq_symbol not in self._quote_sig
            if not force and self._quote_sig.get(tq_symbol) == sig:
                continue
            self._quote_sig[tq_symbol] = sig
            if first:
                self._emit("on_contract", self._contract(tq_symbol, quote))
            self._emit("on_tick", self._tick(tq_symbol, quote))

    def _publish_orders(self, api: TqApi, force: bool) -> bool:
        moved = False
        for order_id, tq_order in api.get_order().items():
            if order_id in self._final or tq_order.exchange_id not in _FUTURES_EXCHANGES:
                continue
            order = self._order(order_id, tq_order)
            sig = (order.status, order.traded, order.traded_price, order.status_msg)
            if force or self._order_sig.get(order_id) != sig:
                self._order_sig[order_id] = sig
                self._emit("on_order", order)
                moved = True
            if not order.is_active:
                self._final.add(order_id)
        return moved

    def _publish_trades(self, api: TqApi, force: bool) -> bool:
        moved = False
        for trade_id, tq_trade in api.get_trade().items():
            if (
                trade_id in self._trades_seen and not force
            ) or tq_trade.exchange_id not in _FUTURES_EXCHANGES:
                continue
            self._trades_seen.add(trade_id)
            self._emit("on_trade", self._trade(trade_id, tq_trade))
            moved = True
        return moved

    def _publish_positions(self, api: TqApi, force: bool) -> None:
        seen: set[tuple[str, Direction]] = set()
        for tq_pos in api.get_position().values():
            if tq_pos.exchange_id not in _FUTURES_EXCHANGES:
                continue
            for position in self._positions(tq_pos):
                seen.add(position.key)
                self._push_position(position, force)
        for key in [k for k in self._pos_sig if k not in seen]:  # gone with a rebuilt session
            self._push_position(
                Position(account_id=self.account_id, vt_symbol=key[0], direction=key[1]), force
            )

    def _push_position(self, position: Position, force: bool) -> None:
        sig = (
            position.volume,
            position.yd_volume,
            position.frozen,
            position.yd_frozen,
            position.price,
            position.margin,
        )
        known = self._pos_sig.get(position.key)
        if known is None and not position.volume:
            return  # a side never held: nothing to say
        if (force and position.volume) or known != sig:
            self._pos_sig[position.key] = sig
            self._emit("on_position", position)
        if not position.volume:
            self._pos_sig.pop(position.key, None)

    def _publish_account(self, api: TqApi, urgent: bool) -> None:
        account = self._account(api.get_account())
        sig = (account.balance, account.available, account.margin, account.frozen, account.commission)
        clock = time.monotonic()
        if sig == self._account_sig and not urgent:
            return
        if not urgent and clock < self._account_due:
            return
        self._account_sig = sig
        self._account_due = clock + ACCOUNT_PUSH_SECONDS
        self._emit("on_account", account)

    def _report_lost_orders(self) -> None:
        """Working orders the (rebuilt) session does not know will never be heard of again.

        Run after a forced push: every order the session lists was pushed there (known here by
        the same test ``_publish_orders`` applies), every other order of ours still working is
        settled here, so none is left for the trader to settle without a reason.
        """
        api = self.api
        assert api is not None
        known = {
            order_id
            for order_id, tq_order in api.get_order().items()
            if tq_order.exchange_id in _FUTURES_EXCHANGES
        }
        for order_id, meta in self._meta.items():
            if order_id in self._final or order_id in known:
                continue
            self._final.add(order_id)
            reason = "unknown to the new TqSdk session" + (
                " (a TqSim session does not survive a reconnect)" if self.cfg.account_type == "tqsim" else ""
            )
            self._emit("on_order", _new_order(self.account_id, order_id, meta, Status.CANCELLED, reason))

    # ------------------------------------------------------------------ notices

    def _handle_notices(self) -> None:
        notify = self.notify
        if notify is None:
            return
        for notice in notify.get_notifies():
            code = notice.get("code")
            conn = str(notice.get("conn_id") or "")
            text = self.scrub(str(notice.get("content") or ""))
            if code == NOTIFY_LOST:
                self._down.add(conn)
                self._emit(
                    "on_status",
                    GatewayStatus.DISCONNECTED,
                    f"TqSdk connection lost: {text}; TqSdk reconnects",
                )
            elif code == NOTIFY_RECONNECTING:
                self._emit("on_status", GatewayStatus.CONNECTING, f"TqSdk reconnecting: {text}")
            elif code == NOTIFY_RESTORED:
                self._down.discard(conn)
                if self._ready and not self._down:
                    self._publish(force=True)
                    self._emit("on_status", GatewayStatus.CONNECTED, f"TqSdk connection restored: {text}")
            else:
                level = str(notice.get("level") or "INFO").upper()
                self._emit(
                    "on_log", level if level in ("INFO", "WARNING", "ERROR") else "INFO", f"TqSdk: {text}"
                )

    # ------------------------------------------------------------------ mapping

    def _contract(self, tq_symbol: str, quote: Any) -> Contract:
        exchange_id, _, instrument = tq_symbol.partition(".")
        size = _num(quote.volume_multiple) or 1.0
        margin = _num(quote.get("margin"))
        settle = _num(quote.pre_settlement) or _num(quote.last_price)
        return Contract(
            vt_symbol=to_vt_symbol(exchange_id, instrument),
            symbol=instrument,
            exchange=Exchange(exchange_id),
            name=str(quote.instrument_name or instrument),
            product=str(quote.product_id or ""),
            size=size,
            pricetick=_num(quote.price_tick) or 1.0,
            min_volume=max(int(_num(quote.min_limit_order_volume)), 1),
            margin_ratio=margin / (settle * size) if margin and settle else 0.1,
            commission_per_lot=_num(quote.get("commission")),
            account_id=self.account_id,
        )

    def _tick(self, tq_symbol: str, quote: Any) -> Tick:
        exchange_id, _, instrument = tq_symbol.partition(".")
        return Tick(
            account_id=self.account_id,
            vt_symbol=to_vt_symbol(exchange_id, instrument),
            datetime=_quote_time(quote.datetime) if quote.datetime else now(),
            last_price=_num(quote.last_price),
            volume=_num(quote.volume),
            turnover=_num(quote.amount),
            open_interest=_num(quote.open_interest),
            pre_settlement=_num(quote.pre_settlement),
            pre_close=_num(quote.pre_close),
            open_price=_num(quote.open),
            high_price=_num(quote.highest),
            low_price=_num(quote.lowest),
            limit_up=_num(quote.upper_limit),
            limit_down=_num(quote.lower_limit),
            bid_price_1=_num(quote.bid_price1),
            bid_volume_1=_num(quote.bid_volume1),
            ask_price_1=_num(quote.ask_price1),
            ask_volume_1=_num(quote.ask_volume1),
        )

    def _order(self, order_id: str, tq: Any) -> Order:
        meta = self._meta.get(order_id)
        total = _num(tq.volume_orign)
        traded = total - _num(tq.volume_left)
        otype = meta.type if meta is not None else our_order_type(tq)
        status = order_status(tq, otype, order_id in self._cancel_asked)
        final_msg = status in (Status.REJECTED, Status.CANCELLED)
        return Order(
            account_id=self.account_id,
            order_id=order_id,
            vt_symbol=to_vt_symbol(tq.exchange_id, tq.instrument_id),
            direction=Direction.LONG if tq.direction == "BUY" else Direction.SHORT,
            offset=meta.offset if meta is not None else our_offset(tq.offset, tq.exchange_id),
            type=otype,
            price=meta.price if meta is not None else _num(tq.limit_price),
            volume=total,
            traded=traded,
            traded_price=_num(tq.trade_price) if traded else 0.0,
            status=status,
            datetime=meta.datetime if meta is not None else _ns_time(tq.insert_date_time),
            update_time=now(),
            reference=meta.reference if meta is not None else "",  # the trader knows it, or it is external
            status_msg=self.scrub(str(tq.last_msg or "")) if final_msg else "",
        )

    def _trade(self, trade_id: str, tq: Any) -> Trade:
        meta = self._meta.get(tq.order_id)
        moment = _ns_time(tq.trade_date_time)
        return Trade(
            account_id=self.account_id,
            trade_id=f"{trading_day_of(moment):%Y%m%d}-{trade_id}",
            order_id=tq.order_id,
            vt_symbol=to_vt_symbol(tq.exchange_id, tq.instrument_id),
            direction=Direction.LONG if tq.direction == "BUY" else Direction.SHORT,
            offset=meta.offset if meta is not None else our_offset(tq.offset, tq.exchange_id),
            price=_num(tq.price),
            volume=_num(tq.volume),
            datetime=moment,
            commission=_num(tq.get("commission")),
            reference=meta.reference if meta is not None else "",  # the trader knows it, or it is external
        )

    def _positions(self, tq: Any) -> list[Position]:
        vt_symbol = to_vt_symbol(tq.exchange_id, tq.instrument_id)
        rows = []
        for direction, side in ((Direction.LONG, "long"), (Direction.SHORT, "short")):
            rows.append(
                Position(
                    account_id=self.account_id,
                    vt_symbol=vt_symbol,
                    direction=direction,
                    volume=_num(tq[f"pos_{side}_his"]) + _num(tq[f"pos_{side}_today"]),
                    yd_volume=_num(tq[f"pos_{side}_his"]),
                    frozen=_num(tq[f"volume_{side}_frozen"]),
                    yd_frozen=_num(tq[f"volume_{side}_frozen_his"]),
                    price=_num(tq[f"position_price_{side}"]),
                    pnl=_num(tq[f"position_profit_{side}"]),
                    last_price=_num(tq.get("last_price")),
                    margin=_num(tq[f"margin_{side}"]),
                )
            )
        return rows

    def _account(self, tq: Any) -> Account:
        return Account(
            account_id=self.account_id,
            balance=_num(tq.balance),
            available=_num(tq.available),
            margin=_num(tq.margin),
            frozen=_num(tq.frozen_margin) + _num(tq.frozen_commission) + _num(tq.frozen_premium),
            commission=_num(tq.commission),
            close_pnl=_num(tq.close_profit),
            position_pnl=_num(tq.position_profit),
            pre_balance=_num(tq.pre_balance),
            trading_day=f"{trading_day_of(now()):%Y%m%d}",
            datetime=now(),
        )

    # ------------------------------------------------------------------ bridge

    def _emit(self, method: str, *args: Any) -> None:
        self._events.append((method, args))

    def _flush(self) -> None:
        if not self._events:
            return
        batch, self._events = self._events, []
        with contextlib.suppress(RuntimeError):  # the trader's loop is gone: nobody to tell
            self.loop.call_soon_threadsafe(self.gw._deliver, batch)


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


def _discard_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Close the loop of a TqApi whose construction failed (TqSdk leaves it open when its
    login fails): its never-started tasks are cancelled, so nothing leaks or warns."""
    if loop.is_closed():
        return
    try:
        tasks = asyncio.all_tasks(loop)
        for task in tasks:
            task.cancel()
        if tasks:
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
    finally:
        loop.close()
