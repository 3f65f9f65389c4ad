"""The trading core's control socket: ``<socket_dir>/control.sock``.

Served by whichever process runs the core: the daemon (``qtrader-tui --no-ui``) and
the plain console (``qtrader-tui``) alike (``ServedManager``), so ``--status``,
``--kill``, ``--resume`` and ``--attach`` work from another shell against either.

Same framing and typed messages as the trader links (core/protocol.py), same
privacy (0600, peers of another uid refused). Requests answered here, one
reply each (the envelope's ``account_id`` names the account):

- ``kill_req`` - the kill switch; an empty ``account_id`` means every account (the
  command line never keeps the protective strategies; an attached console may ask to);
- ``state_req`` - set an account's trading state (e.g. resume: ACTIVE);
- ``status_req`` - every account's status line;
- ``attach`` - an attached console (``qtrader-tui --attach``): the reply lists the
  accounts, then one ``console_state`` per account follows (everything the daemon
  knows of it), then every message the daemon's aggregator folds in, as it
  happens, plus ``trader_status`` when a status light changes;
- the console's commands: ``order_req``, ``cancel_req``, ``cancel_all_req``,
  ``close_req``, ``reverse_req``, ``cond_req``, ``cond_cmd_req``, ``strategy_req``,
  ``history_req``, ``info_req`` (the trader's own status) and ``trader_req`` (start / stop /
  restart a trader).

Requests are answered concurrently (a slow one does not hold up the others), each
with exactly one reply.

A client costs at most its own connection (ARCHITECTURE.md, "Messages"), and no more
than ``MAX_CLIENTS`` are connected at once (one more is refused): no more than
``MAX_IN_FLIGHT`` of its requests are answered at once and its ``history_req`` are
answered one after the other, in turn; while more than ``READ_PAUSE_BYTES`` of what
it was sent lie unread, its next requests are not read. It is disconnected, and the log
says so, when it does not catch up within ``MAX_STALL_SECONDS`` (a client that never reads
its replies), stays more than ``READ_PAUSE_BYTES`` behind for as long (an attached
console that stopped reading), or leaves more than ``MAX_CONSOLE_BACKLOG`` bytes unread
(one that cannot keep up with the stream). An attached console attaches again and starts
from a fresh state. ``qtrader-tui --kill DQ1`` / ``--kill all`` is the
command-line client; ``core.client.RemoteConsoleClient`` is the console's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from config import paths as cfg_paths
from core.aggregator import AccountState, Change
from core.manager import TradingManager
from core.models import OUTCOME_UNKNOWN
from core.protocol import (
    ConsoleState,
    Empty,
    KillRequest,
    Link,
    Message,
    MessageType,
    ProtocolError,
    Reply,
    RequestType,
    Snapshot,
    TraderCommand,
    TraderStatusUpdate,
    encoded_size,
    fit_rows,
    fit_snapshot,
    peer_credentials,
)

log = logging.getLogger("qtrader.control")

#: Bytes a client may leave unread before it is disconnected (an attached console re-attaches).
MAX_CONSOLE_BACKLOG = 16 * 1024 * 1024
#: While more than this lies unread by a client, its next requests wait in the socket.
READ_PAUSE_BYTES = 1024 * 1024
#: A client that does not catch up (read most of that) within this long is disconnected.
MAX_STALL_SECONDS = 10.0
#: Requests of one client answered at once; its next ones wait in the socket.
MAX_IN_FLIGHT = 8
#: Clients connected at once (consoles, command lines); one more is refused, and logged.
MAX_CLIENTS = 64

#: What the command line says when no core answers on the control socket.
NO_CORE = "no qtrader core (console or daemon) listening"

#: Requests whose envelope's ``account_id`` may be empty (the kill switch: every account).
_ANY_ACCOUNT: frozenset[MessageType] = frozenset({"kill_req", "status_req"})


class ControlBusy(RuntimeError):
    """Another live core already answers on the control socket."""


async def _answers(path: Path) -> bool:
    """True when something accepts connections at ``path`` (a stale file does not)."""
    try:
        _reader, writer = await asyncio.open_unix_connection(str(path))
    except OSError:
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


class ControlServer:
    """Serves operator commands to a running core (daemon or plain console)."""

    def __init__(self, manager: TradingManager, path: Path) -> None:
        self.manager = manager
        self.path = path
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._links: set[Link] = set()
        self._stopping = False
        self._handlers = self._table()

    async def check_free(self) -> None:
        """Raise ``ControlBusy`` when another core serves this socket. The pid file keeps one
        core to a data directory, but two data directories may share a socket directory."""
        if self.path.exists() and await _answers(self.path):
            raise ControlBusy(
                f"another qtrader core already serves {self.path} (a different data directory with "
                "the same socket directory?); set socket.socket_dir apart"
            )

    async def start(self) -> None:
        await self.check_free()
        if self.path.exists():
            self.path.unlink()  # left by a core that died: nobody answers on it
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)
        try:
            sock.bind(str(self.path))
        except OSError:
            sock.close()
            raise
        finally:
            os.umask(old_umask)
        self._server = await asyncio.start_unix_server(self._serve, sock=sock)

    async def stop(self) -> None:
        """Stop listening and hang up on every console (an attached one never hangs up by
        itself, and Python 3.12+ ``wait_closed`` waits for every connection)."""
        self._stopping = True
        for link in list(self._links):
            link.writer.transport.abort()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    def discard(self) -> None:
        """After a crash, with no loop left to ``stop()``: remove our socket file if it is
        still there (nobody answers on it once this process has gone)."""
        if self._server is not None:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        creds = peer_credentials(writer)
        if creds is not None and creds[1] != os.getuid():
            log.warning("control: refused uid %d (pid %d)", creds[1], creds[0])
            writer.close()
            return
        if len(self._links) >= MAX_CLIENTS:  # a runaway script must not take the core's files
            log.warning(
                "control: refused a connection (pid %s): %d clients already connected",
                creds[0] if creds else "?",
                MAX_CLIENTS,
            )
            writer.transport.abort()
            return
        link = Link(
            reader, writer, account_id="daemon", max_frame_bytes=self.manager.config.socket.max_frame_bytes
        )
        # drain() waits while more than READ_PAUSE_BYTES are unread: the read loop's brake
        writer.transport.set_write_buffer_limits(high=READ_PAUSE_BYTES)
        client = _Client(link)
        detach: list[Callable[[], None]] = []
        self._links.add(link)
        try:
            while True:
                if not await self._caught_up(link):
                    return
                await client.slots.acquire()
                try:
                    msg = await link.recv()
                except ProtocolError as exc:
                    client.slots.release()
                    if exc.fatal:
                        return
                    if exc.req_id is not None:
                        client.deliver("reply", Reply(ok=False, error=f"request refused: {exc}"), exc.req_id)
                    continue
                if msg.type == "attach":
                    client.slots.release()
                    if not detach:
                        detach = self._attach(client, msg.req_id)
                    else:
                        client.deliver("reply", Reply(ok=False, error="already attached"), msg.req_id)
                    continue
                task = asyncio.create_task(self._answer(client, msg), name=f"control-{msg.type}")
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        except ConnectionError:
            pass
        finally:
            self._links.discard(link)
            for undo in detach:
                undo()
            await link.close()

    async def _answer(self, client: _Client, msg: Message) -> None:
        try:
            if msg.type == "history_req":
                async with client.history:  # one at a time per client: a flood is answered in turn
                    reply = await self.answer(msg)
            else:
                reply = await self.answer(msg)
        finally:
            client.slots.release()
        client.deliver("reply", reply, msg.req_id)

    async def answer(self, msg: Message) -> Reply:
        """The one reply to one request, as this socket gives it (and the daemon's Redis
        command stream: core/redis_publish.py)."""
        if self._stopping:
            return Reply(ok=False, error="the core is stopping; nothing was done")
        try:
            return await self._handle(msg)
        except Exception as exc:  # one reply per request, even for our own bug
            log.exception("control: %s failed", msg.type)
            return Reply(ok=False, error=f"internal error in {msg.type}: {exc}")

    @staticmethod
    async def _caught_up(link: Link) -> bool:
        """Wait while more than ``READ_PAUSE_BYTES`` sent to this client lie unread (its next
        requests wait in the socket meanwhile) until it has read most of it; False, after
        hanging up on it, when it has not within ``MAX_STALL_SECONDS``."""
        try:
            await asyncio.wait_for(link.writer.drain(), MAX_STALL_SECONDS)
        except TimeoutError:
            log.warning(
                "control: a client left %d bytes unread for %g s; disconnected",
                link.backlog,
                MAX_STALL_SECONDS,
            )
            link.writer.transport.abort()
            return False
        return True

    def _attach(self, client: _Client, req_id: int | None) -> list[Callable[[], None]]:
        """Reply, send every account's state, then stream: all in one go on the loop, so
        no message can fall between the states and the stream."""
        mgr = self.manager
        link = client.link
        states = mgr.aggregator.states
        link.send_nowait("reply", Reply(ok=True, result={"accounts": list(states)}), req_id)
        for account_id, state in states.items():  # whole, whatever is unread: it starts from these
            view = console_state(state, mgr.config.socket.max_frame_bytes // 2)
            link.send_nowait("console_state", view, account_id=account_id)

        def forward(account_id: str, msg: Message) -> None:
            client.deliver(msg.type, msg.data, account_id=account_id)

        def status(change: Change) -> None:
            if change.kind == "status":
                state = states[change.account_id]
                client.deliver("trader_status", trader_status(state), account_id=change.account_id)

        log.info("control: a console attached")
        return [mgr.aggregator.tap(forward), mgr.aggregator.subscribe(status)]

    async def _handle(self, msg: Message) -> Reply:
        mgr = self.manager
        aid = msg.account_id
        if msg.type not in _ANY_ACCOUNT and aid not in mgr.aggregator.states:
            return Reply(ok=False, error=f"no account '{aid}' in this core ({', '.join(mgr.account_ids)})")
        handler = self._handlers.get(msg.type)
        if handler is None:
            return Reply(ok=False, error=f"'{msg.type}' is not a control request")
        return await handler(aid, msg.data)

    # ------------------------------------------------------------------ requests
    # Looked up on the manager at each call (not bound once): one place to stand in for it.

    def _table(self) -> dict[MessageType, Callable[[str, Any], Awaitable[Reply]]]:
        mgr = self.manager
        return {
            "order_req": lambda aid, req: mgr.send_order(aid, req),
            "cancel_req": lambda aid, req: mgr.cancel_order(aid, req.order_id),
            "cancel_all_req": lambda aid, req: mgr.cancel_all(aid, req.vt_symbol),
            "close_req": lambda aid, req: mgr.close_position(
                aid, req.vt_symbol, req.direction, volume=req.volume, price=req.price
            ),
            "reverse_req": lambda aid, req: mgr.reverse_position(
                aid, req.vt_symbol, req.direction, volume=req.volume, timeout=req.timeout
            ),
            "cond_req": lambda aid, req: mgr.create_conditional(aid, req),
            "cond_cmd_req": lambda aid, cmd: mgr.conditional_command(aid, cmd),
            "strategy_req": lambda aid, cmd: mgr.strategy_command(aid, cmd),
            "history_req": lambda aid, req: mgr.history(
                aid,
                req.kind,
                since=req.since,
                until=req.until,
                limit=req.limit,
                vt_symbol=req.vt_symbol,
                every=req.every,
            ),
            "watchlist_req": lambda aid, req: mgr.watchlist(aid, req),
            "info_req": lambda aid, _: mgr.status(aid),
            "trader_req": self._on_trader_req,
            "kill_req": self._on_kill_req,
            "state_req": lambda aid, req: mgr.set_trading_state(aid, req.state),
            "status_req": self._on_status_req,
        }

    async def _on_trader_req(self, account_id: str, cmd: TraderCommand) -> Reply:
        mgr = self.manager
        action = {"start": mgr.start_trader, "stop": mgr.stop_trader, "restart": mgr.restart_trader}
        return await action[cmd.action](account_id)

    async def _on_kill_req(self, account_id: str, req: KillRequest) -> Reply:
        mgr = self.manager
        target = account_id or None
        if target is not None and target not in mgr.proxies:
            return Reply(ok=False, error=f"no running account '{target}' (running: {', '.join(mgr.proxies)})")
        kept = " (protective strategies kept running)" if req.keep_protective else ""
        log.critical("control: KILL SWITCH for %s%s", target or "all accounts", kept)
        replies = await mgr.kill_switch(target, keep_protective=req.keep_protective)
        failed = [f"{a}: {r.error}" for a, r in replies.items() if not r.ok]
        result: dict[str, Any] = {a: r for a, r in replies.items()}  # each account's own reply
        return Reply(ok=not failed, error="; ".join(failed), result=result)

    async def _on_status_req(self, _account_id: str, _: Empty) -> Reply:
        mgr = self.manager
        return Reply(ok=True, result={a: _status(mgr, a) for a in mgr.account_ids})


class _Client:
    """What the control server keeps of one connection: its link, its free request slots,
    the turn of its history requests, and since when it has been behind."""

    def __init__(self, link: Link) -> None:
        self.link = link
        self.slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        self.history = asyncio.Lock()
        self.behind_since: float | None = None  # more than READ_PAUSE_BYTES unread since then

    def deliver(
        self, msg_type: MessageType, data: Any, req_id: int | None = None, account_id: str | None = None
    ) -> None:
        """Queue one frame for the client, or hang up on it when it leaves more than
        ``MAX_CONSOLE_BACKLOG`` bytes unread, or more than ``READ_PAUSE_BYTES`` for longer than
        ``MAX_STALL_SECONDS`` (an attached console that stopped reading and asks nothing):
        a client that does not read costs its own connection, never the core's memory."""
        link = self.link
        if link.closed:
            return
        link.send_nowait(msg_type, data, req_id, account_id=account_id)
        backlog = link.backlog
        if backlog > MAX_CONSOLE_BACKLOG:
            why = f"left {backlog} bytes unread (more than {MAX_CONSOLE_BACKLOG})"
        elif backlog <= READ_PAUSE_BYTES:
            self.behind_since = None
            return
        else:
            now = time.monotonic()
            if self.behind_since is None:
                self.behind_since = now
            if now - self.behind_since <= MAX_STALL_SECONDS:
                return
            why = f"left {backlog} bytes unread for {now - self.behind_since:.0f} s"
        log.warning("control: a client %s; disconnected", why)
        link.writer.transport.abort()  # drop what it did not read; a console re-attaches afresh


class ServedManager:
    """A ``TradingManager`` and its control socket, started and stopped together: the core
    of the daemon and of the plain console alike (ARCHITECTURE.md, "Processes").

    The socket is checked before any trader starts (a second core on the same socket
    directory is refused while nothing has moved yet), and it goes away before the traders
    are stopped, so no command arrives for a core that is stopping.
    """

    def __init__(self, manager: TradingManager, path: Path | None = None) -> None:
        self.manager = manager
        self.control = ControlServer(manager, path or cfg_paths.control_socket_path(manager.sock_dir))

    @property
    def path(self) -> Path:
        return self.control.path

    async def start(self) -> None:
        """Start the manager, then serve its control socket; on a failure, whatever did
        start is stopped again and the error is raised."""
        await self.control.check_free()
        try:
            await self.manager.start()
            await self.control.start()
        except BaseException:
            await self.control.stop()
            await self.manager.stop()
            raise

    async def stop(self, *, cancel_orders: bool = False) -> None:
        await self.control.stop()
        await self.manager.stop(cancel_orders=cancel_orders)


def trader_status(state: AccountState) -> TraderStatusUpdate:
    return TraderStatusUpdate(
        status=state.status, message=state.status_message, pid=state.pid, restarts=state.restarts
    )


def console_state(state: AccountState, max_bytes: int) -> ConsoleState:
    """One account as an attaching console needs it, in at most about ``max_bytes`` (whatever
    the account's history holds: see protocol.fit_snapshot)."""
    snapshot = None
    logs, _ = fit_rows(list(state.logs), max_bytes // 10)
    if state.info is not None:
        snapshot, note = fit_snapshot(
            Snapshot(
                info=state.info,
                account=state.account,
                contracts=list(state.contracts.values()),
                ticks=list(state.ticks.values()),
                positions=list(state.positions.values()),
                orders=list(state.orders.values()),
                trades=list(state.trades),
                strategies=list(state.strategies.values()),
                triggers=list(state.triggers),
                equity=list(state.equity),
                watchlist=list(state.watchlist) if state.watchlist is not None else None,
                conditionals=list(state.conditionals.values()),
            ),
            max_bytes - encoded_size(logs),
        )
        if note:
            log.warning("control: %s console state: %s", state.account_id, note)
    return ConsoleState(
        account_id=state.account_id,
        gateway=state.gateway,
        trader=trader_status(state),
        snapshot=snapshot,
        logs=logs,
    )


def _status(mgr: TradingManager, account_id: str) -> dict[str, Any]:
    state = mgr.state(account_id)
    info = state.info
    return {
        "status": state.status.name,
        "gateway": state.gateway,
        "message": state.status_message,
        "trading_state": info.trading_state.name if info else None,
        "balance": state.account.balance if state.account else None,
        "today_pnl": state.account.today_pnl if state.account else None,
        "working_orders": len(state.working_orders),
        "positions": len(state.positions),
        "strategies_running": sum(s.running for s in state.strategies.values()),
    }


async def send_control(
    path: Path, msg_type: RequestType, data: Any, account_id: str = "", timeout: float = 15.0
) -> Reply:
    """One request to a running core (the command-line client)."""
    try:
        reader, writer = await asyncio.open_unix_connection(str(path))
    except OSError as exc:
        return Reply(ok=False, error=f"{NO_CORE} at {path} ({exc.strerror or exc})")
    link = Link(reader, writer, account_id=account_id)
    try:
        try:
            link.send_nowait(msg_type, data if data is not None else Empty(), 1)
        except ConnectionError as exc:
            return Reply(ok=False, error=f"the core closed the connection ({exc}); nothing was sent")
        try:
            msg = await asyncio.wait_for(link.recv(), timeout)
        except (TimeoutError, ConnectionError, ProtocolError) as exc:
            # sent: the core may have acted on it (a kill switch, say)
            why = str(exc) or type(exc).__name__
            return Reply(ok=False, error=f"the core did not answer ({why}): {OUTCOME_UNKNOWN}")
        reply = msg.data
        return reply if isinstance(reply, Reply) else Reply(ok=False, error=f"unexpected answer '{msg.type}'")
    finally:
        await link.close()
