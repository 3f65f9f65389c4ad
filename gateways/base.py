"""The one interface every venue implements, and the events it pushes.

Contract with the trader:

- ``on_status(CONNECTED, ...)`` is sent only once the venue is logged in *and* the
  initial queries (contracts, account, positions, every working order and all of
  today's trades, at least) have been pushed; every order and trade pushed before it
  is reconciliation data (a working order of ours that is not listed is settled from
  the listed trades, see core/reconcile.py).
  Any loss of the connection is ``on_status(DISCONNECTED, reason)``; a gateway that
  reconnects by itself goes through CONNECTING and its queries again.
- ``on_fatal(reason)`` means the venue refused us (login or authentication failed,
  front unreachable) and this gateway will not recover by itself: the trader
  exits and its manager restarts it on the venue back-off (5 s, 10 s, 30 s, 60 s,
  then every 60 s). ``reason`` carries the venue's own error text.
- Ids are unique for the account's lifetime (trade ids include the trading day
  where a venue reuses them), and no secret ever appears in a message or log.

A gateway lives inside one trader process, on that process's asyncio loop.
Venues that need their own thread (vnpy's EventEngine, TqApi) bridge their
callbacks onto the loop with ``loop.call_soon_threadsafe`` before calling the
listener, so a listener is always called on the trader's loop.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, Protocol

from core.models import (
    Account,
    CancelRequest,
    Contract,
    GatewayStatus,
    Order,
    OrderRequest,
    Position,
    Tick,
    Trade,
    now,
)


class GatewayListener(Protocol):
    """Receiver of a gateway's events (the trader)."""

    def on_tick(self, tick: Tick) -> None: ...
    def on_order(self, order: Order) -> None: ...
    def on_trade(self, trade: Trade) -> None: ...
    def on_position(self, position: Position) -> None: ...
    def on_account(self, account: Account) -> None: ...
    def on_contract(self, contract: Contract) -> None: ...
    def on_status(self, status: GatewayStatus, message: str) -> None: ...
    def on_log(self, level: str, message: str) -> None: ...
    def on_fatal(self, message: str) -> None: ...


class Gateway(ABC):
    """A connection to one trading account at one venue."""

    name: ClassVar[str]

    def __init__(
        self,
        account_id: str,
        settings: Any,
        listener: GatewayListener,
        state_dir: Path,
    ) -> None:
        self.account_id = account_id
        self.settings = settings
        self.listener = listener
        self.state_dir = state_dir

    @abstractmethod
    async def connect(self) -> None:
        """Start connecting; status arrives through ``listener.on_status``."""

    @abstractmethod
    async def close(self) -> None:
        """Disconnect and release every resource (threads, timers, files)."""

    @abstractmethod
    def subscribe(self, vt_symbol: str) -> None:
        """Start market data for ``vt_symbol``."""

    @abstractmethod
    def send_order(self, req: OrderRequest) -> str:
        """Send an order and return its order id.

        One request is one order at the venue, with exactly the offset it names (the
        trader has already applied the close policy; no gateway splits or re-picks
        offsets). Order updates (including a rejection with its reason in
        ``status_msg``) arrive through ``listener.on_order``; a venue that
        decides synchronously may call the listener before returning. A request the
        gateway refuses before the venue sees it is reported REJECTED under a
        ``core.models.local_order_id``.
        """

    @abstractmethod
    def cancel_order(self, req: CancelRequest) -> None:
        """Ask to cancel a working order; the result arrives as an order update."""

    @abstractmethod
    def query(self) -> None:
        """Re-push account, positions, working orders and today's trades."""

    def now(self) -> datetime:
        """The venue's time, which the trader's session rule reads (``core/sessions.py``):
        the wall clock in China time, unless a venue keeps its own (the sim's ``clock``)."""
        return now()

    @abstractmethod
    def get_contract(self, vt_symbol: str) -> Contract | None:
        """The contract's parameters, if the venue knows it."""

    def listed_contracts(self, product: str) -> list[str]:
        """The futures of ``product`` ("" for every product) that the venue lists beyond the
        contracts it has reported (``listener.on_contract``), for the console's completion and
        main-contract lookup. A venue that reports its whole contract list at login (CTP,
        TqSdk) has nothing to add: the default is none."""
        return []
