"""TradingManager: the parent of every trader, and the one object the console's client uses.

For every enabled account the manager listens on ``<socket_dir>/trader-<ID>.sock``, starts
the account's trader (core/supervisor.py: processes, watchdog, restarts) and keeps the
versioned state of every account (``DataAggregator``) from what the traders stream. Paper
accounts get their source's quotes relayed (core/paper_quotes.py).

Every command routed to a trader gets exactly one ``Reply``: the trader's, or one made
here when the trader cannot answer (not connected, disconnected before answering, no
answer in time).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from config import AppConfig
from config import paths as cfg_paths
from core.aggregator import AccountState, DataAggregator
from core.lockfile import lock_holder
from core.models import (
    Bar,
    ConditionalRequest,
    Direction,
    EquityPoint,
    GatewayStatus,
    LogEntry,
    Order,
    OrderRequest,
    ReverseRequest,
    StrategyTrigger,
    Trade,
    TraderInfo,
    TraderStatus,
    TradingState,
    now,
)
from core.paper_quotes import QuoteRelay
from core.protocol import (
    MAX_ROW_BYTES,
    CancelAllRequest,
    CancelRequest,
    CloseRequest,
    ConditionalCommand,
    Empty,
    HistoryKind,
    HistoryRequest,
    KillRequest,
    Link,
    Message,
    ProtocolError,
    Reply,
    RequestType,
    ShutdownRequest,
    StateRequest,
    StrategyCommand,
    WatchlistRequest,
    encoded_size,
    peer_credentials,
)
from core.requests import PendingReplies
from core.supervisor import RestartPolicy, Supervision, TraderProxy, pid_alive
from core.trade_stats import InstanceStats, TradeReport
from core.trader_process import ACCOUNT_LOCK_FILE
from core.zygote import Zygote, ZygoteProcess, launch_zygote

log = logging.getLogger("qtrader.manager")

REGISTER_TIMEOUT = 5.0  # a new connection must say who it is within this
#: What a trader streams that the account's state keeps hundreds of: no such row of a venue's
#: is ever near ``MAX_ROW_BYTES`` (requests are bounded), so a larger one is not kept.
_KEPT_ROWS = frozenset({"order", "trade", "trigger", "conditional", "log"})
MAX_LOG_CHARS = 1000  # a log line from a trader is cut here, not dropped

HISTORY_TYPES: dict[str, Any] = {
    "orders": list[Order],
    "trades": list[Trade],
    "account_snapshots": list[EquityPoint],
    "triggers": list[StrategyTrigger],
    "bars": list[Bar],
    "trade_report": TradeReport,
    "strategy_stats": list[InstanceStats],
}


def typed_history(kind: str, reply: Reply) -> Reply:
    """A ``history_req`` reply with its rows decoded into their models (they travel as JSON)."""
    if reply.ok and kind in HISTORY_TYPES:
        reply.result = msgspec.convert(reply.result, HISTORY_TYPES[kind])
    return reply


class TradingManager(Supervision):
    """Parent of all traders; the one object the console's client talks to."""

    def __init__(
        self,
        config: AppConfig,
        *,
        config_path: Path,
        data_dir: Path,
        sock_dir: Path | None = None,
        zygote: Zygote | bool = True,
    ) -> None:
        """``zygote``: a trader zygote launched already (core/zygote.py: the console launches
        it first thing), True to launch one at ``start``, False to start every trader the
        plain way (a fresh ``python -m core.trader``)."""
        self.config = config
        self.config_path = config_path
        self.data_dir = data_dir
        self.sock_dir = sock_dir or cfg_paths.socket_dir(config)
        self.aggregator = DataAggregator()
        self.proxies: dict[str, TraderProxy] = {}
        self._req_ids = itertools.count(1)
        self._watchdog: asyncio.Task[None] | None = None
        self._stopping = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._history_turns: dict[str, asyncio.Lock] = {}
        self.zygote: Zygote | None = zygote if isinstance(zygote, Zygote) else None
        self._launch_zygote = zygote is True
        for account in config.accounts:
            self.aggregator.add_account(account.account_id, account.gateway)
            if not account.enabled:
                self.aggregator.set_status(account.account_id, TraderStatus.STOPPED, "disabled in config")
        self.quotes = QuoteRelay(config.accounts, self.proxies, self.aggregator)

    # ================================================================== lifecycle

    def _background(self, coro: Any, name: str) -> None:
        """Run ``coro`` as a task the manager keeps a reference to until it ends."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def account_ids(self) -> list[str]:
        return [a.account_id for a in self.config.accounts]

    async def start(self) -> None:
        """Listen for every enabled account and start its trader."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.sock_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self._launch_zygote and any(a.enabled and a.mode == "process" for a in self.config.accounts):
            self._launch_zygote = False
            self.zygote = launch_zygote(self.config, self.data_dir)
        for account in self.config.accounts:
            if not account.enabled:
                continue
            proxy = TraderProxy(
                account=account,
                socket_path=cfg_paths.trader_socket_path(self.sock_dir, account.account_id),
                policy=RestartPolicy.from_config(self.config.manager),
                pending=PendingReplies(self._req_ids),  # ids unique across accounts, for the logs
            )
            self.proxies[account.account_id] = proxy
            await self._listen(proxy)
        # all at once: forks from the zygote are asked for together, answered in one turn
        await asyncio.gather(*(self._spawn(proxy) for proxy in self.proxies.values()))
        self._watchdog = asyncio.create_task(self._watch(), name="manager-watchdog")

    async def stop(self, *, cancel_orders: bool = False) -> None:
        """Stop every trader (asking each to cancel its working orders if told), then close sockets."""
        self._stopping = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
        await asyncio.gather(
            *(self._stop_proxy(p, cancel_orders=cancel_orders) for p in self.proxies.values()),
            return_exceptions=True,
        )
        await self._close_sockets()
        if self.zygote is not None:
            await self.zygote.stop()

    async def _close_sockets(self) -> None:
        for proxy in self.proxies.values():
            if proxy.server is None:
                continue  # never listened: the socket file, if any, is someone else's
            proxy.server.close()
            with contextlib.suppress(Exception):
                await proxy.server.wait_closed()
            proxy.server = None
            with contextlib.suppress(FileNotFoundError):
                proxy.socket_path.unlink()

    async def adopt(self, account_ids: list[str]) -> None:
        """Listen for these accounts' running traders, starting none and restarting none:
        the command line's kill switch on traders left without a manager (core/orphans.py).
        A trader joins within about a second of the socket appearing (it retries that often)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.sock_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        for account in self.config.accounts:
            if account.account_id not in account_ids or not account.enabled:
                continue
            proxy = TraderProxy(
                account=account,
                socket_path=cfg_paths.trader_socket_path(self.sock_dir, account.account_id),
                policy=RestartPolicy.from_config(self.config.manager),
                pending=PendingReplies(self._req_ids),
                wanted=False,  # never (re)started from here
            )
            self.proxies[account.account_id] = proxy
            await self._listen(proxy)

    async def detach(self) -> None:
        """Hang up on every trader and stop listening, leaving them running: they trade on
        and join the next manager by themselves (the end of ``adopt``)."""
        self._stopping = True
        await self._close_sockets()  # first: no trader reconnects in between
        for proxy in self.proxies.values():
            if proxy.link is not None:
                await self._drop_link(proxy, proxy.link, "the manager detached")

    def terminate_children(self) -> list[int]:
        """Last resort when the owner is dying without an event loop to ``stop()``:
        SIGTERM every trader process this manager started (each stops cleanly on it)."""
        sent = []
        for proxy in self.proxies.values():
            proc = proxy.proc
            if proc is not None and proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    if isinstance(proc, ZygoteProcess):  # by its pidfd: its pid may be reused
                        proc.send_signal(signal.SIGTERM)
                    else:
                        os.kill(proc.pid, signal.SIGTERM)
                    sent.append(proc.pid)
        if self.zygote is not None:
            self.zygote.close()
        return sent

    async def start_trader(self, account_id: str) -> Reply:
        proxy = self.proxies.get(account_id)
        if proxy is None:
            return self._no_such_account(account_id)
        proxy.wanted = True
        proxy.policy.reset()
        proxy.refusals = 0  # the operator may have fixed the login: no 60 s wait
        if proxy.running:
            return Reply(ok=True, result="already running")
        self._cancel_restart(proxy)
        await self._spawn(proxy)
        return Reply(ok=True)

    async def stop_trader(self, account_id: str, *, cancel_orders: bool = False) -> Reply:
        proxy = self.proxies.get(account_id)
        if proxy is None:
            return self._no_such_account(account_id)
        await self._stop_proxy(proxy, cancel_orders=cancel_orders)
        return Reply(ok=True)

    async def restart_trader(self, account_id: str) -> Reply:
        reply = await self.stop_trader(account_id)
        if not reply.ok:
            return reply
        return await self.start_trader(account_id)

    def _no_such_account(self, account_id: str) -> Reply:
        known = ", ".join(self.proxies) or "none"
        return Reply(ok=False, error=f"no running account '{account_id}' (running: {known})")

    # ================================================================== sockets

    async def _listen(self, proxy: TraderProxy) -> None:
        path = proxy.socket_path
        if path.exists():
            try:
                _r, w = await asyncio.open_unix_connection(str(path))
            except OSError:
                path.unlink()  # stale socket of a manager that is gone
            else:
                w.close()
                raise RuntimeError(f"another manager already serves {proxy.account_id} at {path}")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)  # socket file 0600 from the first instant
        try:
            sock.bind(str(path))  # synchronous: the umask never spans an await
        except OSError:
            sock.close()
            raise
        finally:
            os.umask(old_umask)
        proxy.server = await asyncio.start_unix_server(
            lambda r, w: self._on_connection(proxy, r, w), sock=sock
        )

    async def _on_connection(
        self, proxy: TraderProxy, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        creds = peer_credentials(writer)
        if creds is not None and creds[1] != os.getuid():
            log.warning("%s: refused a connection from uid %d (pid %d)", proxy.account_id, creds[1], creds[0])
            writer.close()
            return
        link = Link(reader, writer, account_id="manager", max_frame_bytes=self.config.socket.max_frame_bytes)
        try:
            first = await asyncio.wait_for(link.recv(), REGISTER_TIMEOUT)
        except (ProtocolError, ConnectionError, TimeoutError) as exc:
            log.error(
                "%s: bad first frame on %s: %s; connection closed", proxy.account_id, proxy.socket_path, exc
            )
            await link.close()
            return
        if first.type != "register" or not isinstance(first.data, TraderInfo):
            log.error(
                "%s: first message was '%s', not register; connection closed", proxy.account_id, first.type
            )
            await link.close()
            return
        if first.data.account_id != proxy.account_id:
            log.error(
                "%s: a trader for '%s' connected to this account's socket; connection closed",
                proxy.account_id,
                first.data.account_id,
            )
            await link.close()
            return
        pid = creds[0] if creds else first.data.pid
        why = self._not_ours(proxy, first.data, pid)
        if why is not None:
            self._refuse(proxy, pid, why)
            await link.close()
            return
        await self._serve_link(proxy, link, first.data, pid)

    def _not_ours(self, proxy: TraderProxy, info: TraderInfo, pid: int) -> str | None:
        """Why the trader ``pid`` that registered ``info`` is not this manager's (None: it is).

        Ours runs on our data directory, loaded our configuration file, trades the account
        at the venue that our configuration names, and holds the account's lock in our data
        directory (the kernel's word: a process that merely says so does not). A trader left
        by an earlier manager of the same data directory and configuration is all of that;
        a stray of another daemon, or any other process of the user that connects to the
        socket in a restart window, is not (ARCHITECTURE.md, "Processes")."""
        if not info.data_dir or Path(info.data_dir).resolve() != self.data_dir.resolve():
            return f"it runs on the data directory {info.data_dir or '(not said)'}, not {self.data_dir}"
        if not info.config_path or Path(info.config_path).resolve() != self.config_path.resolve():
            return (
                f"it was started with the configuration {info.config_path or '(not said)'}, "
                f"not {self.config_path}"
            )
        ours = proxy.account.venue_identity()
        if info.venue_identity != ours:
            return f"it trades {info.venue_identity or '(not said)'}, where this configuration has {ours}"
        lock = cfg_paths.account_state_dir(self.data_dir, proxy.account_id) / ACCOUNT_LOCK_FILE
        holder = lock_holder(lock)
        if holder != pid:
            held = "nobody" if holder is None else f"pid {holder}"
            return f"it does not hold the account's lock ({lock} is held by {held})"
        return None

    def _refuse(self, proxy: TraderProxy, pid: int, why: str) -> None:
        """Turn away a trader that is not ours, saying so once (it knocks again every second).
        Nothing is sent to it; one we started ourselves (the file changed under us) is stopped."""
        aid = proxy.account_id
        if proxy.foreign != (pid, why):
            proxy.foreign = (pid, why)
            words = f"refused a trader (pid {pid}) that is not this manager's: {why}"
            log.error("%s: %s", aid, words)
            entry = LogEntry(account_id=aid, datetime=now(), level="ERROR", message=words, source="manager")
            self.aggregator.apply(aid, Message.new(type="log", account_id=aid, data=entry))
        if proxy.proc is not None and proxy.proc.pid == pid and proxy.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proxy.proc.terminate()

    async def _serve_link(self, proxy: TraderProxy, link: Link, info: TraderInfo, pid: int) -> None:
        if proxy.link is not None:
            if proxy.pid is not None and pid != proxy.pid and pid_alive(proxy.pid) and pid != os.getpid():
                # two live traders for one account (e.g. one left over from a console that was
                # killed with its data directory removed): keep ours, stop the intruder
                log.error(
                    "%s: a second trader (pid %d) tried to join while pid %d runs the account; "
                    "told it to shut down",
                    proxy.account_id,
                    pid,
                    proxy.pid,
                )
                link.send_nowait("shutdown", ShutdownRequest(cancel_orders=False), 0)
                await link.close()
                return
            log.warning("%s: the trader reconnected; the old connection is dropped", proxy.account_id)
            await self._drop_link(proxy, proxy.link, "the trader reconnected before replying")
        proxy.link = link
        self._set_pid(proxy, pid)  # the kernel's word, not the message's
        proxy.last_seen = time.monotonic()
        self._cancel_restart(proxy)  # an adopted trader that joined by itself
        self.aggregator.apply(proxy.account_id, _register_message(info))
        self._refresh_status(proxy)
        log.info("%s: trader registered (pid %d)", proxy.account_id, pid)
        aid = proxy.account_id
        try:
            await self._receive(proxy, link)
        except ConnectionError:
            pass
        finally:
            if proxy.link is link:
                await self._drop_link(proxy, link, "the trader went away before replying")
                proxy.link_lost_at = time.monotonic()
                info = self.aggregator.states[aid].info
                expected = info is not None and info.exiting  # its status already says why
                if not self._stopping and proxy.wanted and proxy.running and not expected:
                    self.aggregator.set_status(aid, TraderStatus.DISCONNECTED, "link to trader lost")
            else:
                await link.close()

    async def _receive(self, proxy: TraderProxy, link: Link) -> None:
        """Fold what a registered trader streams into its account's state (its replies resolve
        our requests, its ticks go on to its paper accounts) until the link ends
        (``ConnectionError``) or a frame breaks it."""
        aid = proxy.account_id
        paper = self.quotes.registered(proxy)
        while True:
            try:
                msg = link.recv_nowait() or await link.recv()
            except ProtocolError as exc:
                if exc.fatal:
                    log.error("%s: %s; closing the link", aid, exc)
                    return
                log.error("%s: dropped a bad frame: %s", aid, exc)
                continue
            proxy.last_seen = time.monotonic()
            if msg.type == "reply":
                proxy.pending.resolve(msg.req_id, msg.data)
                continue
            if msg.type in _KEPT_ROWS and not _bounded_row(aid, msg):
                continue
            if not self.aggregator.apply(aid, msg):
                log.error("%s: unexpected message type '%s' from trader", aid, msg.type)
                continue
            if paper and msg.type == "tick":
                self.quotes.relay(paper, msg.data)
            if msg.type in ("status", "heartbeat", "snapshot"):
                self._refresh_status(proxy)

    async def _drop_link(self, proxy: TraderProxy, link: Link, reason: str) -> None:
        if proxy.link is link:
            proxy.link = None
        proxy.pending.fail_all(f"{proxy.account_id}: {reason}")
        await link.close()

    def _refresh_status(self, proxy: TraderProxy) -> None:
        state = self.aggregator.states[proxy.account_id]
        info = state.info
        if proxy.link is None or info is None:
            return
        if info.gateway_status is GatewayStatus.CONNECTED:
            proxy.refusals = 0
        status = {
            GatewayStatus.CONNECTED: TraderStatus.CONNECTED,
            GatewayStatus.CONNECTING: TraderStatus.CONNECTING,
            GatewayStatus.DISCONNECTED: TraderStatus.DISCONNECTED,
        }[info.gateway_status]
        self.aggregator.set_status(proxy.account_id, status, info.message)

    # ================================================================== commands

    async def request(
        self, account_id: str, msg_type: RequestType, data: Any, *, timeout: float | None = None
    ) -> Reply:
        """Send one request to a trader; always returns exactly one Reply."""
        proxy = self.proxies.get(account_id)
        if proxy is None:
            return self._no_such_account(account_id)
        link = proxy.link
        if link is None or link.closed:
            status = self.aggregator.states[account_id].status.name.lower()
            return Reply(ok=False, error=f"{account_id} trader is not connected ({status}); nothing was sent")
        limit = timeout if timeout is not None else self.config.manager.request_timeout
        try:
            return await proxy.pending.request(
                lambda req_id: link.send_nowait(msg_type, data, req_id),
                timeout=limit,
                unanswered=f"{account_id} did not answer {msg_type} within {limit:g} s",
            )
        except ConnectionError:
            return Reply(ok=False, error=f"{account_id} trader link closed; nothing was sent")

    async def send_order(self, account_id: str, req: OrderRequest) -> Reply:
        req.account_id = account_id
        return await self.request(account_id, "order_req", req)

    async def cancel_order(self, account_id: str, order_id: str) -> Reply:
        return await self.request(
            account_id, "cancel_req", CancelRequest(order_id=order_id, account_id=account_id)
        )

    async def cancel_all(self, account_id: str, vt_symbol: str | None = None) -> Reply:
        return await self.request(
            account_id, "cancel_all_req", CancelAllRequest(vt_symbol=vt_symbol, account_id=account_id)
        )

    async def close_position(
        self,
        account_id: str,
        vt_symbol: str,
        direction: Direction,
        *,
        volume: float | None = None,
        price: float | None = None,
        reference: str = "manual",
    ) -> Reply:
        req = CloseRequest(
            vt_symbol=vt_symbol,
            direction=direction,
            volume=volume,
            price=price,
            reference=reference,
            account_id=account_id,
        )
        return await self.request(account_id, "close_req", req)

    async def reverse_position(
        self,
        account_id: str,
        vt_symbol: str,
        direction: Direction,
        *,
        volume: float | None = None,
        timeout: float = 10.0,
    ) -> Reply:
        """反手 in the trader: close, then open the other way once the close has filled."""
        req = ReverseRequest(
            vt_symbol=vt_symbol, direction=direction, volume=volume, timeout=timeout, account_id=account_id
        )
        return await self.request(account_id, "reverse_req", req)

    async def create_conditional(self, account_id: str, req: ConditionalRequest) -> Reply:
        req.account_id = account_id
        return await self.request(account_id, "cond_req", req)

    async def conditional_command(self, account_id: str, command: ConditionalCommand) -> Reply:
        return await self.request(account_id, "cond_cmd_req", command)

    async def set_trading_state(self, account_id: str, state: TradingState) -> Reply:
        return await self.request(account_id, "state_req", StateRequest(state=state))

    async def strategy_command(self, account_id: str, command: StrategyCommand) -> Reply:
        return await self.request(account_id, "strategy_req", command)

    async def kill_switch(
        self, account_id: str | None = None, *, keep_protective: bool = False
    ) -> dict[str, Reply]:
        """HALT, stop strategies, cancel every working order: one account, or all (None).
        ``keep_protective``: the protective strategies keep running (``KillRequest``)."""
        targets = [account_id] if account_id is not None else list(self.proxies)
        req = KillRequest(keep_protective=keep_protective)
        replies = await asyncio.gather(*(self.request(a, "kill_req", req) for a in targets))
        return dict(zip(targets, replies, strict=True))

    async def status(self, account_id: str) -> Reply:
        reply = await self.request(account_id, "status_req", Empty())
        if reply.ok:
            reply.result = msgspec.convert(reply.result, TraderInfo)
        return reply

    async def watchlist(self, account_id: str, req: WatchlistRequest) -> Reply:
        """Edit the account's watchlist, or ask its trader for contracts (``WatchlistRequest``)."""
        return await self.request(account_id, "watchlist_req", req)

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
        """Stored rows of ``kind`` (typed: list[Order], list[Trade], list[Bar], TradeReport, ...).

        One history request at a time per account, whoever asks (the consoles, the control
        socket's clients): the rest wait their turn here, so a flood of them never stands
        between the trader and its live data (ARCHITECTURE.md, "Messages")."""
        req = HistoryRequest(
            kind=kind, since=since, until=until, limit=limit, vt_symbol=vt_symbol, every=every
        )
        turn = self._history_turns.setdefault(account_id, asyncio.Lock())
        async with turn:
            reply = await self.request(account_id, "history_req", req, timeout=15.0)
        return typed_history(kind, reply)

    def state(self, account_id: str) -> AccountState:
        return self.aggregator.states[account_id]

    def on_change(self, callback: Callable[..., None]) -> Callable[[], None]:
        return self.aggregator.subscribe(callback)


def _bounded_row(account_id: str, msg: Message) -> bool:
    """Whether a row from the account's trader (whatever process registered for it) may be
    kept: the account's state holds hundreds of orders, trades, triggers and log lines, so
    one over ``MAX_ROW_BYTES`` is left out (a log line is cut instead), as snapshots leave
    such rows out (``protocol.fit_snapshot``)."""
    size = encoded_size(msg.data)
    if size <= MAX_ROW_BYTES:
        return True
    if isinstance(msg.data, LogEntry):
        text = msg.data.message
        msg.data.message = f"{text[:MAX_LOG_CHARS]}... ({len(text) - MAX_LOG_CHARS} more characters)"
        msg.data.source = msg.data.source[:MAX_LOG_CHARS]
        if encoded_size(msg.data) <= MAX_ROW_BYTES:
            return True
    log.error(
        "%s: left out a '%s' of %d bytes from the trader (over %d: no venue sends such a row)",
        account_id,
        msg.type,
        size,
        MAX_ROW_BYTES,
    )
    return False


def _register_message(info: TraderInfo) -> Message:
    return Message.new(type="register", account_id=info.account_id, data=info)
