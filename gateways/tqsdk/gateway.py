"""``TqsdkGateway``: the trader's side of one TqSdk account, on the trader's loop.

It checks and numbers requests, queues them to the TqSdk thread (gateways/tqsdk/worker.py)
and hands that thread's batches of events to the listener.

Ids. ``send_order`` picks the order id itself (``tq<start time, base 36>-<n>``, unique for the
account's lifetime) and hands it to ``insert_order(order_id=...)``, so it returns at once; each
order is reported SUBMITTING before ``send_order`` returns. One request is one TqSdk order,
with the offset it names (gateways/tqsdk/mapping.py, Offsets).

Refused here, before TqSdk sees them: any order while not CONNECTED, a STOP order, a volume
that is not a whole number of lots, a malformed symbol. Such an order is reported REJECTED
before ``send_order`` returns, under a ``core.models.local_order_id`` (``LOCAL.<stamp>.<run>-<n>``),
the id scheme of every order refused before a venue.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from core.models import (
    CancelRequest,
    Contract,
    Direction,
    GatewayStatus,
    Offset,
    OrderRequest,
    OrderType,
    Status,
    local_order_id,
    now,
    split_vt_symbol,
)
from gateways.base import Gateway, GatewayListener
from gateways.tqsdk.mapping import SentOrder, to_tq_symbol
from gateways.tqsdk.scrub import Scrubber
from gateways.tqsdk.settings import TqsdkSettingsView
from gateways.tqsdk.worker import RETRY_DELAYS, Event, Worker

log = logging.getLogger("gateways.tqsdk")  # the source name the trader's log forwarding shows: "tqsdk"

CLOSE_JOIN_SECONDS = 10.0


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        number, rest = divmod(number, 36)
        out = digits[rest] + out
        if not number:
            return out


class TqsdkGateway(Gateway):
    """One TqSdk account (``TqSim``, ``TqKq`` or a real ``TqAccount``) behind ``Gateway``.

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
        self.retry_delays = tuple(retry_delays)  # the worker falls back to RETRY_DELAYS if empty
        self.status = GatewayStatus.DISCONNECTED
        self._loop: asyncio.AbstractEventLoop | None = None
        self._worker: Worker | None = None
        self._thread: threading.Thread | None = None
        self._contracts: dict[str, Contract] = {}
        self._id_prefix = f"tq{_base36(time.time_ns() // 1_000_000)}-"
        self._ids = itertools.count(1)

    # ------------------------------------------------------------------ Gateway interface

    async def connect(self) -> None:
        if self._thread is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._worker = Worker(
            self.account_id, self.config, self.scrub, self._loop, self._deliver, self.retry_delays
        )
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
        problem = self._check_order(req)
        if problem:
            return self._refuse(req, problem)
        order_id = f"{self._id_prefix}{next(self._ids)}"
        # a copy: kept for the order's life, whatever the caller does with its request
        sent = SentOrder(copy.copy(req), now())
        self.listener.on_order(sent.as_order(self.account_id, order_id, Status.SUBMITTING))
        self._request(("order", order_id, sent))
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

    def _check_order(self, req: OrderRequest) -> str:
        """Why an order cannot go to TqSdk ("" if it can)."""
        try:
            split_vt_symbol(req.vt_symbol)
        except ValueError as exc:
            return str(exc)
        if self.status is not GatewayStatus.CONNECTED or self._worker is None:
            return "TqSdk not connected"
        if req.type is OrderType.STOP:
            return "TqSdk takes no STOP orders"
        if req.offset is Offset.NONE:
            return "offset NONE is not valid for futures (use OPEN, CLOSE, CLOSETODAY or CLOSEYESTERDAY)"
        if req.direction is Direction.NET:
            return "TqSdk orders are LONG or SHORT, not NET"
        if req.volume < 1 or req.volume != int(req.volume):
            return f"volume {req.volume:g} is not a whole number of lots"
        return ""

    def _refuse(self, req: OrderRequest, reason: str) -> str:
        """Refuse before TqSdk sees it: a local id, the same scheme as the trader's own refusals."""
        moment = now()
        order = req.refused(self.account_id, local_order_id(moment), reason, moment)
        self.listener.on_order(order)
        return order.order_id

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
            elif isinstance(first, GatewayStatus):
                self.status = first
            try:
                getattr(self.listener, method)(*args)
            except Exception:  # one failing handler must not drop the rest of the round
                log.exception("TqSdk gateway: listener %s failed", method)
