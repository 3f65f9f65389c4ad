"""The TqSdk thread: the only code that touches a ``TqApi``.

A ``TqApi`` owns its own asyncio loop and is not thread-safe, so each gateway runs one dedicated
thread (``tqsdk-<account>``) that constructs the ``TqApi``, calls ``wait_update`` in a loop and
is the only code that touches it. Requests from the trader's loop (orders, cancels,
subscriptions, queries) travel on a thread-safe queue and run on that thread between two
``wait_update`` calls; the thread wakes its ``wait_update`` at once when a request arrives (and
polls every 0.2 s anyway). Everything TqSdk reports travels back as one batch per round, through
``loop.call_soon_threadsafe``: the listener is only ever called on the trader's loop.

Connection. Construction failures are reported as DISCONNECTED "... retry in N s" and retried
on 5, 10, 30, 60 s, then every 60 s; the trader keeps running. A refusal that cannot heal by
retrying with the same settings calls ``listener.on_fatal``: the trader exits and its restart
re-reads the config, so a corrected password takes effect. Mid-session, TqSdk reconnects by
itself; its connection notices (``TqNotify``: codes 2019112911 lost, 2019112910 reconnecting,
2019112902 restored) become DISCONNECTED, CONNECTING and, after a full re-push, CONNECTED.
A ``wait_update`` that raises ends the session: it is closed and rebuilt on the same schedule;
working orders a new session no longer knows (a ``TqSim`` session does not survive) are
reported CANCELLED with the reason. CONNECTED is sent once the account, positions, every
order, today's trades and the quotes subscribed so far have all been pushed again, changed or
not (a subscription waits at most 30 s). Orders still queued while there is no session are
rejected, never sent late.

An ``insert_order`` that raises (an unsupported market order, a missing permission) is REJECTED
with the exception's text.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from core.models import Direction, GatewayStatus, OrderType, Status, split_vt_symbol
from gateways.tqsdk.mapping import SentOrder, tq_offset
from gateways.tqsdk.publisher import Publisher
from gateways.tqsdk.scrub import Scrubber, describe
from gateways.tqsdk.session import POLL_SECONDS, is_refusal, open_api, quiet_tqsdk_logging
from gateways.tqsdk.settings import TqsdkSettingsView

if TYPE_CHECKING:
    from tqsdk import TqApi, TqAuth, TqNotify

RETRY_DELAYS: tuple[float, ...] = (5.0, 10.0, 30.0, 60.0)  # then the last one, forever
SUBSCRIBE_TIMEOUT = 30.0  # CONNECTED waits at most this long for a subscription's first quote
NOTIFY_LOST, NOTIFY_RECONNECTING, NOTIFY_RESTORED = 2019112911, 2019112910, 2019112902

#: one listener call: the method's name and its arguments
Event = tuple[str, tuple[Any, ...]]


class Worker:
    """Everything that runs on the TqSdk thread: the TqApi, its requests and its books.

    ``deliver`` receives each round's events, called on ``loop`` (the trader's).
    """

    def __init__(
        self,
        account_id: str,
        settings: TqsdkSettingsView,
        scrub: Scrubber,
        loop: asyncio.AbstractEventLoop,
        deliver: Callable[[list[Event]], None],
        retry_delays: Sequence[float] = RETRY_DELAYS,
    ) -> None:
        self.account_id = account_id
        self.cfg = settings
        self.scrub = scrub
        self.loop = loop
        self.deliver = deliver
        self.retry_delays = tuple(retry_delays) or RETRY_DELAYS
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
        self.publisher = Publisher(account_id, scrub, self._emit)
        # one session's state
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
        quiet_tqsdk_logging()
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
        delays = self.retry_delays
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
        """Start a session (blocking; TqSdk logs in and loads its books)."""
        from tqsdk import TqNotify

        api, auth = open_api(self.cfg, self.account_id, self.stop)
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
        self.publisher.new_session()
        self._down, self._ready = set(), False
        for tq_symbol in self._symbols:
            self._subscribe(tq_symbol)
        while not self.stop.is_set():
            self._handle_requests()
            if not self._ready and all(task.done() for task in self._sub_tasks.values()):
                # everything, not just what changed: the trader reconciles on what it hears before
                # CONNECTED, and the signatures of the last session survive into this one
                self._publish(force=True)
                self.publisher.report_lost_orders(api, self._lost_reason())
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

    def _publish(self, force: bool = False) -> None:
        if self.api is not None:
            self.publisher.publish(self.api, force)

    def _connected_text(self) -> str:
        md = self.scrub(self.cfg.md_url or "TqSdk's md front")
        return f"TqSdk connected ({self.cfg.account_type}, market data {md})"

    def _lost_reason(self) -> str:
        tqsim = " (a TqSim session does not survive a reconnect)" if self.cfg.account_type == "tqsim" else ""
        return f"unknown to the new TqSdk session{tqsim}"

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
                order_id, sent = request[1], request[2]
                self._emit("on_order", sent.as_order(self.account_id, order_id, Status.REJECTED, reason))
            elif request[0] == "cancel":
                self._emit("on_log", "WARNING", f"cancel {request[1]}: {reason}")
            elif request[0] == "subscribe":
                kept.append(request)
        for request in kept:
            self.requests.put(request)

    def _subscribe(self, tq_symbol: str) -> None:
        api, auth = self.api, self.auth
        if api is None or auth is None or tq_symbol in self.publisher.quotes or tq_symbol in self._sub_tasks:
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
            self.publisher.quotes[tq_symbol] = quote

    def _insert(self, order_id: str, sent: SentOrder) -> None:
        """One TqSdk order, exactly as asked: no splitting (the trader splits SHFE/INE closes)."""
        api = self.api
        assert api is not None
        self.publisher.sent[order_id] = sent
        req = sent.req
        symbol, exchange = split_vt_symbol(req.vt_symbol)
        market = req.type is OrderType.MARKET
        try:
            api.insert_order(
                symbol=f"{exchange.value}.{symbol}",
                direction="BUY" if req.direction is Direction.LONG else "SELL",
                offset=tq_offset(req.offset, exchange),
                volume=int(req.volume),
                limit_price=None if market else float(req.price),
                advanced=req.type.value if req.type in (OrderType.FAK, OrderType.FOK) else None,
                order_id=order_id,
            )
        except Exception as exc:
            reason = self.scrub(str(exc) or describe(exc))
            self.publisher.final.add(order_id)
            self._emit("on_order", sent.as_order(self.account_id, order_id, Status.REJECTED, reason))

    def _cancel(self, order_id: str) -> None:
        api = self.api
        assert api is not None
        order = api.get_order().get(order_id)
        if order is None:
            self._emit("on_log", "WARNING", f"cancel {order_id}: unknown to TqSdk")
            return
        if order.status == "FINISHED":
            self._emit("on_log", "WARNING", f"cancel {order_id}: already finished")
            self.publisher.repush_order(order_id)  # its real state
            return
        self.publisher.cancel_asked.add(order_id)
        try:
            api.cancel_order(order_id)
        except Exception as exc:
            self._emit("on_log", "WARNING", f"cancel {order_id}: {self.scrub(describe(exc))}")

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

    # ------------------------------------------------------------------ bridge

    def _emit(self, method: str, *args: Any) -> None:
        self._events.append((method, args))

    def _flush(self) -> None:
        if not self._events:
            return
        batch, self._events = self._events, []
        with contextlib.suppress(RuntimeError):  # the trader's loop is gone: nobody to tell
            self.loop.call_soon_threadsafe(self.deliver, batch)


async def _awaited(awaitable: Any) -> Any:
    return await awaitable
