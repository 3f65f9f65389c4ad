"""ConsoleClient: the only door from the console into the trading core.

The console never touches a socket, a trader or a database: it reads
``AccountState``s, subscribes to ``Change``s and sends commands, each of which
returns exactly one ``Reply`` (``ok``, a readable ``error``, a ``result``).
``LocalConsoleClient`` drives an in-process ``TradingManager``;
``RemoteConsoleClient`` speaks the control protocol to a running daemon
(``qtrader-tui --attach``, see core/control.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from core.aggregator import AccountState, Change, DataAggregator
from core.control import send_control
from core.manager import TradingManager, typed_history
from core.models import (
    CancelRequest,
    CloseRequest,
    ConditionalRequest,
    Direction,
    OrderRequest,
    ReverseRequest,
    TraderInfo,
    TraderStatus,
    TradingState,
)
from core.oms import closable_volume
from core.protocol import (
    CancelAllRequest,
    ConditionalCommand,
    ConsoleState,
    Empty,
    HistoryKind,
    HistoryRequest,
    KillRequest,
    Link,
    Message,
    ProtocolError,
    Reply,
    RequestType,
    StateRequest,
    StrategyCommand,
    TraderCommand,
    TraderStatusUpdate,
    WatchlistRequest,
)
from core.requests import PendingReplies
from core.watchlist import main_contract

# The console's whole view of the core: these clients, the state they read
# (``AccountState``, ``Change``), the closable-volume rule its order entry shows, and
# the shared vocabulary of core.models and core.protocol.
__all__ = [
    "DAEMON_LOST",
    "AccountState",
    "Change",
    "ConsoleClient",
    "LocalConsoleClient",
    "RemoteConsoleClient",
    "closable_volume",
]

log = logging.getLogger("qtrader.client")


class ConsoleClient(ABC):
    """What the console may see and do."""

    # ------------------------------------------------------------------ reading

    @property
    @abstractmethod
    def account_ids(self) -> list[str]:
        """Configured accounts, in configuration order."""

    @abstractmethod
    def state(self, account_id: str) -> AccountState:
        """Live state of one account (do not mutate)."""

    @abstractmethod
    def subscribe(self, callback: Callable[[Change], None]) -> Callable[[], None]:
        """Call ``callback`` on every change; returns the unsubscribe function."""

    @abstractmethod
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
        """Stored rows from the account's database (orders, trades, account_snapshots, ...);
        ``every`` thins account_snapshots to one point per that many seconds; ``since`` /
        ``until`` (epoch seconds, ``until`` exclusive) bound trades, triggers and the reports
        (``trade_report``: a ``TradeReport``; ``strategy_stats``: ``InstanceStats`` each)."""

    # ------------------------------------------------------------------ watchlist

    @abstractmethod
    async def watchlist(self, account_id: str, req: WatchlistRequest) -> Reply:
        """Edit the account's watchlist or ask its trader for contracts (``WatchlistRequest``)."""

    async def set_watchlist(self, account_id: str, symbols: list[str]) -> Reply:
        """The account's watchlist becomes ``symbols`` (saved by its trader, subscribed at once)."""
        return await self.watchlist(account_id, WatchlistRequest(action="set", symbols=symbols))

    async def listed_contracts(self, account_id: str, product: str = "") -> list[str]:
        """The futures the account's venue lists (of ``product``; "" for all), for completion;
        [] when the trader cannot say (not connected)."""
        reply = await self.watchlist(account_id, WatchlistRequest(action="listed", product=product))
        if not reply.ok or not isinstance(reply.result, dict):
            return []
        return [str(s) for s in reply.result.get("contracts", [])]

    async def main_contract(self, account_id: str, product: str, *, wait: float = 5.0) -> Reply:
        """The main contract (主力合约) of ``product``: the listed month with the largest open
        interest. The trader subscribes the product's listed months; their quotes carry the
        open interest; this waits up to ``wait`` s for a quote of each (condition-based) and
        decides among those quoted. ``result``: ``main``, ``open_interest`` by contract,
        ``unquoted`` (listed, no quote in time)."""
        reply = await self.watchlist(account_id, WatchlistRequest(action="probe", product=product))
        if not reply.ok:
            return reply
        listed = [str(s) for s in (reply.result or {}).get("contracts", [])]
        if not listed:
            return Reply(ok=False, error=f"{account_id}: the venue lists no {product} futures")
        quoted = asyncio.Event()

        def all_quoted() -> bool:
            ticks = self.state(account_id).ticks
            return all(s in ticks and ticks[s].open_interest > 0 for s in listed)

        def on_change(change: Change) -> None:
            if change.account_id == account_id and change.kind in ("tick", "snapshot") and all_quoted():
                quoted.set()

        unsubscribe = self.subscribe(on_change)
        try:
            if not all_quoted():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(quoted.wait(), wait)
        finally:
            unsubscribe()
        ticks = self.state(account_id).ticks
        main, interest = main_contract(ticks, listed)
        unquoted = [s for s in listed if s not in interest]
        if main is None:
            return Reply(ok=False, error=f"{account_id}: no quote for any {product} month within {wait:g} s")
        return Reply(ok=True, result={"main": main, "open_interest": interest, "unquoted": unquoted})

    def host_of(self, account_id: str) -> str:
        """The host whose daemon runs the account ("" when one core runs them all: a console
        attached over Redis sees several, core/redis_client.py)."""
        return ""

    # ------------------------------------------------------------------ trading

    @abstractmethod
    async def send_order(self, account_id: str, req: OrderRequest) -> Reply:
        """Risk-check and send; ``result["order_id"]`` is set whether accepted or refused.

        A plain SHFE/INE CLOSE becomes its legs (CLOSEYESTERDAY, then CLOSETODAY): then
        ``order_id`` lists them comma-joined, ``orders`` has each leg, and a reply that is not
        ok with ``partial`` set means some of them are working at the venue."""

    @abstractmethod
    async def cancel_order(self, account_id: str, order_id: str) -> Reply: ...

    @abstractmethod
    async def cancel_all(self, account_id: str, vt_symbol: str | None = None) -> Reply: ...

    @abstractmethod
    async def close_position(
        self,
        account_id: str,
        vt_symbol: str,
        direction: Direction,
        *,
        volume: float | None = None,
        price: float | None = None,
    ) -> Reply:
        """Close (part of) a position; the trader picks offsets (SHFE today/yesterday)."""

    @abstractmethod
    async def reverse_position(
        self,
        account_id: str,
        vt_symbol: str,
        direction: Direction,
        *,
        volume: float | None = None,
        timeout: float = 10.0,
    ) -> Reply:
        """反手, done by the trader: close the ``direction`` position (explicit offsets), then
        open the same volume the other way once every close leg has filled; if the close is
        refused, cancelled or not filled within ``timeout`` s, the open is not sent.
        ``result``: ``close`` (its legs) and ``open`` (its result, or what it waits for)."""

    @abstractmethod
    async def create_conditional(self, account_id: str, req: ConditionalRequest) -> Reply:
        """Arm a conditional order in the trader (``core/conditional.py``); ``result["cond_id"]``."""

    @abstractmethod
    async def conditional_command(self, account_id: str, command: ConditionalCommand) -> Reply:
        """Cancel one conditional order, or re-arm those the kill switch suspended."""

    @abstractmethod
    async def set_trading_state(self, account_id: str, state: TradingState) -> Reply: ...

    @abstractmethod
    async def strategy_command(self, account_id: str, command: StrategyCommand) -> Reply: ...

    @abstractmethod
    async def kill_switch(
        self, account_id: str | None = None, *, keep_protective: bool = False
    ) -> dict[str, Reply]:
        """HALT + stop strategies + cancel all working orders; one account or all (None).
        ``keep_protective``: the protective strategies (stop guards) keep running and their
        closes still go out, as if the account were REDUCING (``core.protocol.KillRequest``)."""

    @abstractmethod
    async def status(self, account_id: str) -> Reply:
        """Ask the trader itself (``result`` is a TraderInfo)."""

    # ------------------------------------------------------------------ processes

    @abstractmethod
    async def start_trader(self, account_id: str) -> Reply: ...

    @abstractmethod
    async def stop_trader(self, account_id: str) -> Reply: ...

    @abstractmethod
    async def restart_trader(self, account_id: str) -> Reply: ...


class LocalConsoleClient(ConsoleClient):
    """ConsoleClient over a TradingManager running in this process."""

    def __init__(self, manager: TradingManager) -> None:
        self.manager = manager

    @property
    def account_ids(self) -> list[str]:
        return self.manager.account_ids

    def state(self, account_id: str) -> AccountState:
        return self.manager.state(account_id)

    def subscribe(self, callback: Callable[[Change], None]) -> Callable[[], None]:
        return self.manager.aggregator.subscribe(callback)

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
        return await self.manager.history(
            account_id, kind, since=since, until=until, limit=limit, vt_symbol=vt_symbol, every=every
        )

    async def watchlist(self, account_id: str, req: WatchlistRequest) -> Reply:
        return await self.manager.watchlist(account_id, req)

    async def send_order(self, account_id: str, req: OrderRequest) -> Reply:
        return await self.manager.send_order(account_id, req)

    async def cancel_order(self, account_id: str, order_id: str) -> Reply:
        return await self.manager.cancel_order(account_id, order_id)

    async def cancel_all(self, account_id: str, vt_symbol: str | None = None) -> Reply:
        return await self.manager.cancel_all(account_id, vt_symbol)

    async def close_position(
        self,
        account_id: str,
        vt_symbol: str,
        direction: Direction,
        *,
        volume: float | None = None,
        price: float | None = None,
    ) -> Reply:
        return await self.manager.close_position(account_id, vt_symbol, direction, volume=volume, price=price)

    async def reverse_position(
        self,
        account_id: str,
        vt_symbol: str,
        direction: Direction,
        *,
        volume: float | None = None,
        timeout: float = 10.0,
    ) -> Reply:
        return await self.manager.reverse_position(
            account_id, vt_symbol, direction, volume=volume, timeout=timeout
        )

    async def create_conditional(self, account_id: str, req: ConditionalRequest) -> Reply:
        return await self.manager.create_conditional(account_id, req)

    async def conditional_command(self, account_id: str, command: ConditionalCommand) -> Reply:
        return await self.manager.conditional_command(account_id, command)

    async def set_trading_state(self, account_id: str, state: TradingState) -> Reply:
        return await self.manager.set_trading_state(account_id, state)

    async def strategy_command(self, account_id: str, command: StrategyCommand) -> Reply:
        return await self.manager.strategy_command(account_id, command)

    async def kill_switch(
        self, account_id: str | None = None, *, keep_protective: bool = False
    ) -> dict[str, Reply]:
        return await self.manager.kill_switch(account_id, keep_protective=keep_protective)

    async def status(self, account_id: str) -> Reply:
        return await self.manager.status(account_id)

    async def start_trader(self, account_id: str) -> Reply:
        return await self.manager.start_trader(account_id)

    async def stop_trader(self, account_id: str) -> Reply:
        return await self.manager.stop_trader(account_id)

    async def restart_trader(self, account_id: str) -> Reply:
        return await self.manager.restart_trader(account_id)


#: What a console shows while it is not attached, and the reply to a command it could not send.
DAEMON_LOST = "connection to the daemon lost"


class WireConsoleClient(ConsoleClient):
    """What the clients over a wire share: state from their own ``aggregator``, and every
    command one request with one reply through ``_request`` (the control socket's, or the
    command streams on Redis). A subclass says how long its slower requests may take."""

    aggregator: DataAggregator
    #: history and watchlist requests (a report; quotes to wait for): None is ``_request``'s default
    SLOW_REQUEST_TIMEOUT: float | None = None

    async def _request(
        self, account_id: str, msg_type: RequestType, data: Any, timeout: float | None = None
    ) -> Reply:
        raise NotImplementedError

    def _reverse_timeout(self, timeout: float) -> float | None:
        """How long to wait for a reverse's reply when the trader may take ``timeout``."""
        return None

    # ------------------------------------------------------------------ ConsoleClient

    @property
    def account_ids(self) -> list[str]:
        return list(self.aggregator.states)

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
        req = HistoryRequest(
            kind=kind, since=since, until=until, limit=limit, vt_symbol=vt_symbol, every=every
        )
        return typed_history(
            kind, await self._request(account_id, "history_req", req, timeout=self.SLOW_REQUEST_TIMEOUT)
        )

    async def watchlist(self, account_id: str, req: WatchlistRequest) -> Reply:
        return await self._request(account_id, "watchlist_req", req, timeout=self.SLOW_REQUEST_TIMEOUT)

    async def send_order(self, account_id: str, req: OrderRequest) -> Reply:
        return await self._request(account_id, "order_req", req)

    async def cancel_order(self, account_id: str, order_id: str) -> Reply:
        return await self._request(account_id, "cancel_req", CancelRequest(order_id=order_id))

    async def cancel_all(self, account_id: str, vt_symbol: str | None = None) -> Reply:
        return await self._request(account_id, "cancel_all_req", CancelAllRequest(vt_symbol=vt_symbol))

    async def close_position(
        self,
        account_id: str,
        vt_symbol: str,
        direction: Direction,
        *,
        volume: float | None = None,
        price: float | None = None,
    ) -> Reply:
        req = CloseRequest(vt_symbol=vt_symbol, direction=direction, volume=volume, price=price)
        return await self._request(account_id, "close_req", req)

    async def reverse_position(
        self,
        account_id: str,
        vt_symbol: str,
        direction: Direction,
        *,
        volume: float | None = None,
        timeout: float = 10.0,
    ) -> Reply:
        req = ReverseRequest(vt_symbol=vt_symbol, direction=direction, volume=volume, timeout=timeout)
        return await self._request(account_id, "reverse_req", req, timeout=self._reverse_timeout(timeout))

    async def create_conditional(self, account_id: str, req: ConditionalRequest) -> Reply:
        return await self._request(account_id, "cond_req", req)

    async def conditional_command(self, account_id: str, command: ConditionalCommand) -> Reply:
        return await self._request(account_id, "cond_cmd_req", command)

    async def set_trading_state(self, account_id: str, state: TradingState) -> Reply:
        return await self._request(account_id, "state_req", StateRequest(state=state))

    async def strategy_command(self, account_id: str, command: StrategyCommand) -> Reply:
        return await self._request(account_id, "strategy_req", command)

    async def status(self, account_id: str) -> Reply:
        reply = await self._request(account_id, "info_req", Empty())
        if reply.ok and reply.result is not None:
            reply.result = msgspec.convert(reply.result, TraderInfo)
        return reply

    async def start_trader(self, account_id: str) -> Reply:
        return await self._request(account_id, "trader_req", TraderCommand(action="start"), timeout=60.0)

    async def stop_trader(self, account_id: str) -> Reply:
        return await self._request(account_id, "trader_req", TraderCommand(action="stop"), timeout=60.0)

    async def restart_trader(self, account_id: str) -> Reply:
        return await self._request(account_id, "trader_req", TraderCommand(action="restart"), timeout=60.0)


class RemoteConsoleClient(WireConsoleClient):
    """ConsoleClient over a running daemon's control socket (``qtrader-tui --attach``).

    It keeps its own ``DataAggregator``, filled from the daemon's stream, so the console
    reads state exactly as it does over a local manager. Commands are requests with one
    reply each. If the daemon goes away, every account shows DISCONNECTED, commands in
    flight are answered "outcome unknown" (never "rejected": the daemon may have acted),
    and the client attaches again by itself, starting from a fresh state.
    """

    RETRY_SECONDS = 1.0

    @staticmethod
    async def discover(path: Path, timeout: float = 5.0) -> list[tuple[str, str]]:
        """The daemon's accounts as (account_id, gateway), in its order: an attached console
        shows what the daemon runs, whatever the console's own config lists. Raises
        ``ConnectionError`` with the reason when no daemon answers."""
        reply = await send_control(path, "status_req", Empty(), timeout=timeout)
        if not reply.ok or not isinstance(reply.result, dict):
            raise ConnectionError(reply.error or "the daemon sent no account list")
        return [
            (account_id, str(row.get("gateway", "")) if isinstance(row, dict) else "")
            for account_id, row in reply.result.items()
        ]

    def __init__(self, path: Path, accounts: list[tuple[str, str]], *, timeout: float = 20.0) -> None:
        """``accounts``: (account_id, gateway) from the config the daemon runs."""
        self.path = path
        self.timeout = timeout
        self.aggregator = DataAggregator()
        for account_id, gateway in accounts:
            self.aggregator.add_account(account_id, gateway)
            self.aggregator.set_status(account_id, TraderStatus.CONNECTING, "attaching to the daemon")
        self._link: Link | None = None
        self._pending = PendingReplies()  # req_id 0 is the attach, answered in _on_attached
        self._task: asyncio.Task[None] | None = None
        self._attached = asyncio.Event()
        self._closing = False

    # ------------------------------------------------------------------ connection

    async def connect(self, wait: float = 5.0) -> None:
        """Start attaching (and re-attaching); wait up to ``wait`` s for the first attach."""
        self._task = asyncio.create_task(self._run(), name="console-attach")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._attached.wait(), wait)

    async def close(self) -> None:
        """Detach; the daemon and its traders keep running."""
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._link is not None:
            await self._link.close()

    @property
    def attached(self) -> bool:
        return self._attached.is_set()

    async def _run(self) -> None:
        while not self._closing:
            try:
                reader, writer = await asyncio.open_unix_connection(str(self.path))
            except OSError as exc:
                self._lost(f"no daemon at {self.path} ({exc.strerror or exc}); retrying")
                await asyncio.sleep(self.RETRY_SECONDS)
                continue
            link = Link(reader, writer, account_id="console")
            self._link = link
            try:
                link.send_nowait("attach", Empty(), 0)
                while True:
                    try:
                        msg = link.recv_nowait() or await link.recv()
                    except ProtocolError as exc:
                        if exc.fatal:
                            raise ConnectionError(str(exc)) from None
                        log.error("daemon sent a bad frame: %s", exc)
                        continue
                    self._on_message(msg)
            except ConnectionError:
                pass
            except Exception:  # our own bug must not end the re-attaching for good
                log.exception("attached console: handling the daemon's stream failed; re-attaching")
            finally:
                self._link = None
                await link.close()
                self._lost(f"{DAEMON_LOST}; attaching again")
            await asyncio.sleep(self.RETRY_SECONDS)

    def _on_message(self, msg: Message) -> None:
        if msg.type == "reply":
            if msg.req_id == 0:  # the attach
                self._on_attached(msg.data)
                return
            self._pending.resolve(msg.req_id, msg.data)
            return
        agg = self.aggregator
        state = agg.states.get(msg.account_id)
        if state is None:
            return  # an account this console's config does not have
        if msg.type == "console_state":
            view: ConsoleState = msg.data
            agg.reset(msg.account_id)  # nothing of a previous attach (or daemon run) lingers
            if view.snapshot is not None:
                agg.apply(
                    msg.account_id,
                    Message.new(type="snapshot", account_id=msg.account_id, data=view.snapshot),
                )
            for entry in view.logs:
                agg.apply(msg.account_id, Message.new(type="log", account_id=msg.account_id, data=entry))
            self._apply_status(msg.account_id, view.trader)
        elif msg.type == "trader_status":
            self._apply_status(msg.account_id, msg.data)
        else:
            agg.apply(msg.account_id, msg)

    def _on_attached(self, reply: Reply) -> None:
        if not reply.ok:
            log.error("the daemon refused to attach: %s", reply.error)
            return
        theirs = set(reply.result.get("accounts", ())) if isinstance(reply.result, dict) else set()
        for account_id in self.aggregator.states:
            if account_id not in theirs:  # the console's config differs from the daemon's
                self.aggregator.reset(account_id)
                self.aggregator.set_status(
                    account_id, TraderStatus.STOPPED, "not run by this daemon (its config differs)"
                )
        unknown = sorted(theirs - set(self.aggregator.states))
        if unknown:
            log.warning("the daemon also runs %s, not in this console's config", ", ".join(unknown))
        self._attached.set()

    def _apply_status(self, account_id: str, update: TraderStatusUpdate) -> None:
        self.aggregator.set_trader(account_id, update.status, update.message, update.pid, update.restarts)

    def _lost(self, why: str) -> None:
        self._attached.clear()
        self._pending.fail_all(DAEMON_LOST)
        for account_id, state in self.aggregator.states.items():
            if state.status is not TraderStatus.DISCONNECTED or state.status_message != why:
                self.aggregator.set_status(account_id, TraderStatus.DISCONNECTED, why)

    async def _request(
        self, account_id: str, msg_type: RequestType, data: Any, timeout: float | None = None
    ) -> Reply:
        link = self._link
        if link is None or not self.attached:
            return Reply(ok=False, error="not attached to the daemon; nothing was sent")
        limit = timeout or self.timeout
        try:
            return await self._pending.request(
                lambda req_id: link.send_nowait(msg_type, data, req_id, account_id=account_id),
                timeout=limit,
                unanswered=f"the daemon did not answer within {limit:g} s",
            )
        except ConnectionError:
            return Reply(ok=False, error="not attached to the daemon; nothing was sent")

    async def kill_switch(
        self, account_id: str | None = None, *, keep_protective: bool = False
    ) -> dict[str, Reply]:
        req = KillRequest(keep_protective=keep_protective)
        reply = await self._request(account_id or "", "kill_req", req, timeout=60.0)
        if isinstance(reply.result, dict) and reply.result:
            return {a: msgspec.convert(r, Reply) for a, r in reply.result.items()}
        targets = [account_id] if account_id else self.account_ids
        return dict.fromkeys(targets, reply)
