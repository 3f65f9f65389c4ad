"""TradingManager: starts, watches and restarts traders, routes their commands.

For every enabled account the manager listens on
``<socket_dir>/trader-<ID>.sock`` and starts the account's trader, either as
an OS process (mode ``process``) or as an asyncio task in this process (mode
``embedded``, for debugging). A trader that exits is restarted at once; one
that misses heartbeats past the timeout is killed and restarted; repeated
failures back off, and a restart storm triggers a cool-down.

Every command sent to a trader gets exactly one ``Reply``: the trader's, or
one made here when the trader cannot answer (not connected, disconnected
before answering, no answer in time).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from config import AccountConfig, AppConfig, ManagerConfig
from config import paths as cfg_paths
from core.aggregator import AccountState, Change, DataAggregator
from core.logs import embedded_trader_logger, rotate_worker_output, worker_output_path
from core.models import (
    Bar,
    Direction,
    EquityPoint,
    GatewayStatus,
    Order,
    OrderRequest,
    StrategyTrigger,
    Tick,
    Trade,
    TraderInfo,
    TraderStatus,
    TradingState,
)
from core.protocol import (
    CancelAllRequest,
    CancelRequest,
    CloseRequest,
    Empty,
    HistoryKind,
    HistoryRequest,
    Link,
    Message,
    ProtocolError,
    QuoteSourceStatus,
    Reply,
    RequestType,
    ShutdownRequest,
    StateRequest,
    StrategyCommand,
    SubscribeRequest,
    peer_credentials,
)
from core.requests import PendingReplies
from core.trader import EXIT_ALREADY_RUNNING, EXIT_VENUE_REFUSED, Trader  # light: storage loads lazily

log = logging.getLogger("qtrader.manager")

REGISTER_TIMEOUT = 5.0  # a new connection must say who it is within this
STOP_GRACE = 6.0  # a trader asked to shut down gets this long before SIGKILL
ADOPT_WAIT = 5.0  # how long a trader left by an earlier manager gets to join us

HISTORY_TYPES: dict[str, Any] = {
    "orders": list[Order],
    "trades": list[Trade],
    "account_snapshots": list[EquityPoint],
    "triggers": list[StrategyTrigger],
    "bars": list[Bar],
}


def typed_history(kind: str, reply: Reply) -> Reply:
    """A ``history_req`` reply with its rows decoded into their models (they travel as JSON)."""
    if reply.ok and kind in HISTORY_TYPES:
        reply.result = msgspec.convert(reply.result, HISTORY_TYPES[kind])
    return reply


@dataclass
class RestartPolicy:
    """Backoff per consecutive failure, reset after a stable run; cool-down on storms."""

    backoff: list[float]
    max_restarts: int
    window: float
    cooldown: float
    stable_after: float
    failures: int = 0
    recent: deque[float] = field(default_factory=deque)

    @classmethod
    def from_config(cls, cfg: ManagerConfig) -> RestartPolicy:
        return cls(
            backoff=list(cfg.restart_backoff) or [0.0],
            max_restarts=cfg.max_restarts,
            window=cfg.restart_window,
            cooldown=cfg.cooldown,
            stable_after=cfg.stable_after,
        )

    def next_delay(self, now: float, uptime: float) -> tuple[float, str]:
        """Delay before the next restart and a word on why."""
        if uptime >= self.stable_after:
            self.failures = 0
        while self.recent and now - self.recent[0] > self.window:
            self.recent.popleft()
        if len(self.recent) >= self.max_restarts:
            self.recent.clear()
            self.failures = 0
            return self.cooldown, (
                f"{self.max_restarts} restarts within {self.window:g} s: cooling down {self.cooldown:g} s"
            )
        delay = self.backoff[min(self.failures, len(self.backoff) - 1)]
        self.failures += 1
        self.recent.append(now + delay)
        return delay, f"restart in {delay:g} s"

    def reset(self) -> None:
        self.failures = 0
        self.recent.clear()


@dataclass
class TraderProxy:
    """The manager's handle on one account's trader."""

    account: AccountConfig
    socket_path: Path
    policy: RestartPolicy
    server: asyncio.Server | None = None
    link: Link | None = None
    proc: asyncio.subprocess.Process | None = None
    task: asyncio.Task[None] | None = None  # embedded mode
    embedded: Trader | None = None
    pid: int | None = None
    wanted: bool = True
    spawning: bool = False
    started_at: float = 0.0
    last_seen: float = 0.0
    link_lost_at: float = 0.0
    restart_handle: asyncio.TimerHandle | None = None
    venue_refusals: int = 0  # consecutive exits because the venue refused the login
    pending: PendingReplies = field(default_factory=PendingReplies)
    exited: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def account_id(self) -> str:
        return self.account.account_id

    @property
    def running(self) -> bool:
        if self.proc is not None:
            return self.proc.returncode is None
        if self.task is not None:
            return not self.task.done()
        if self.account.mode == "embedded":
            return False  # an embedded trader is its task, never a pid (ours!)
        return self.pid is not None and pid_alive(self.pid)  # adopted trader


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs; an exited process waiting to be reaped (zombie) is dead."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (FileNotFoundError, IndexError):
        # gone between the two checks, or a system without /proc (then trust kill)
        return not os.path.isdir("/proc/self")


class TradingManager:
    """Parent of all traders; the one object the console's client talks to."""

    def __init__(
        self,
        config: AppConfig,
        *,
        config_path: Path,
        data_dir: Path,
        sock_dir: Path | None = None,
    ) -> None:
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
        #: source account -> the paper accounts matching against its quotes
        self.paper: dict[str, list[str]] = {}
        for account in config.accounts:
            if account.enabled and account.market_data_from is not None:
                self.paper.setdefault(account.market_data_from, []).append(account.account_id)
        for account in config.accounts:
            self.aggregator.add_account(account.account_id, account.gateway)
            if not account.enabled:
                self.aggregator.set_status(account.account_id, TraderStatus.STOPPED, "disabled in config")
        if self.paper:
            self.aggregator.subscribe(self._watch_quote_sources)

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
        for proxy in self.proxies.values():
            await self._spawn(proxy)
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
        for proxy in self.proxies.values():
            if proxy.server is None:
                continue  # never listened: the socket file, if any, is someone else's
            proxy.server.close()
            with contextlib.suppress(Exception):
                await proxy.server.wait_closed()
            proxy.server = None
            with contextlib.suppress(FileNotFoundError):
                proxy.socket_path.unlink()

    def terminate_children(self) -> list[int]:
        """Last resort when the owner is dying without an event loop to ``stop()``:
        SIGTERM every trader process this manager started (each stops cleanly on it)."""
        sent = []
        for proxy in self.proxies.values():
            proc = proxy.proc
            if proc is not None and proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGTERM)
                    sent.append(proc.pid)
        return sent

    async def start_trader(self, account_id: str) -> Reply:
        proxy = self.proxies.get(account_id)
        if proxy is None:
            return self._no_such_account(account_id)
        proxy.wanted = True
        proxy.policy.reset()
        proxy.venue_refusals = 0  # the operator may have fixed the login: no 60 s wait
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
        await self._serve_link(proxy, link, first.data, creds[0] if creds else first.data.pid)

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
        self._subscribe_for_paper(aid)
        if proxy.account.market_data_from is not None:
            self._tell_paper(proxy.account.market_data_from, [aid])
        paper = self.paper.get(aid, ())
        try:
            while True:
                try:
                    msg = await link.recv()
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
                if not self.aggregator.apply(aid, msg):
                    log.error("%s: unexpected message type '%s' from trader", aid, msg.type)
                    continue
                if paper and msg.type == "tick":
                    self._relay_quote(paper, msg.data)
                if msg.type in ("status", "heartbeat", "snapshot"):
                    self._refresh_status(proxy)
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

    async def _drop_link(self, proxy: TraderProxy, link: Link, reason: str) -> None:
        if proxy.link is link:
            proxy.link = None
        proxy.pending.fail_all(f"{proxy.account_id}: {reason}")
        await link.close()

    def _subscribe_for_paper(self, account_id: str) -> None:
        """Ask a paper account's quote source for the paper account's contracts."""
        account = self.proxies[account_id].account
        pairs = [(account_id, p) for p in self.paper.get(account_id, ())]
        if account.market_data_from is not None:
            pairs.append((account.market_data_from, account_id))
        for source_id, paper_id in pairs:
            source, paper = self.proxies.get(source_id), self.proxies.get(paper_id)
            if source is None or paper is None or source.link is None:
                continue
            acc = paper.account
            symbols = list(dict.fromkeys([*acc.watchlist, *(s.symbol for s in acc.strategies)]))
            with contextlib.suppress(ConnectionError):  # its link is closing: it asks again on return
                source.link.send_nowait("subscribe_req", SubscribeRequest(symbols=symbols), 0)

    def _watch_quote_sources(self, change: Change) -> None:
        if change.kind == "status" and change.account_id in self.paper:
            self._tell_paper(change.account_id, self.paper[change.account_id])

    def _tell_paper(self, source_id: str, paper_ids: Iterable[str]) -> None:
        """Tell paper accounts whether their quote source is up (they refuse orders while
        it is not: no real book to match against)."""
        state = self.aggregator.states.get(source_id)
        if state is None:
            return
        up = state.status is TraderStatus.CONNECTED
        news = QuoteSourceStatus(
            source=source_id,
            up=up,
            message="" if up else f"{state.status.name}: {state.status_message or 'no reason given'}",
        )
        for paper_id in paper_ids:
            proxy = self.proxies.get(paper_id)
            if proxy is not None and proxy.link is not None:
                with contextlib.suppress(ConnectionError):
                    proxy.link.send_nowait("quote_source", news)

    def _relay_quote(self, paper_ids: Iterable[str], tick: Tick) -> None:
        for paper_id in paper_ids:
            proxy = self.proxies.get(paper_id)
            if proxy is not None and proxy.link is not None:
                # a paper link going down must never cost the source's link (we are in its loop)
                with contextlib.suppress(ConnectionError):
                    proxy.link.send_nowait("quote", tick)

    def _refresh_status(self, proxy: TraderProxy) -> None:
        state = self.aggregator.states[proxy.account_id]
        info = state.info
        if proxy.link is None or info is None:
            return
        if info.gateway_status is GatewayStatus.CONNECTED:
            proxy.venue_refusals = 0
        status = {
            GatewayStatus.CONNECTED: TraderStatus.CONNECTED,
            GatewayStatus.CONNECTING: TraderStatus.CONNECTING,
            GatewayStatus.DISCONNECTED: TraderStatus.DISCONNECTED,
        }[info.gateway_status]
        self.aggregator.set_status(proxy.account_id, status, info.message)

    # ================================================================== processes

    async def _spawn(self, proxy: TraderProxy) -> None:
        proxy.restart_handle = None
        if self._stopping or not proxy.wanted or proxy.running or proxy.spawning:
            return
        proxy.spawning = True
        try:
            await self._spawn_now(proxy)
        finally:
            proxy.spawning = False

    async def _spawn_now(self, proxy: TraderProxy) -> None:
        proxy.exited = asyncio.Event()
        proxy.started_at = proxy.last_seen = time.monotonic()
        self.aggregator.set_status(proxy.account_id, TraderStatus.CONNECTING, "starting")
        if proxy.account.mode == "embedded":
            trader = Trader(
                proxy.account,
                self.config,
                data_dir=self.data_dir,
                socket_path=proxy.socket_path,
                logger=embedded_trader_logger(self.data_dir, proxy.account_id),
            )
            proxy.embedded = trader
            proxy.task = asyncio.create_task(trader.run(), name=f"trader-{proxy.account_id}")
            proxy.task.add_done_callback(lambda t: self._on_exit(proxy, _task_code(t), None))
            self._set_pid(proxy, os.getpid())
            return
        output = rotate_worker_output(self.data_dir, proxy.account_id)
        with open(output, "ab") as out:  # noqa: ASYNC230 - local file, instant
            proc = await asyncio.create_subprocess_exec(
                *self.trader_command(proxy.account_id),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,  # the terminal's Ctrl+C goes to us, not to the traders
            )
        proxy.proc = proc
        self._set_pid(proxy, proc.pid)
        if self._stopping or not proxy.wanted:  # stopped while it was being started
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
        log.info("%s: trader started (pid %d)", proxy.account_id, proc.pid)
        self._background(self._wait_process(proxy, proc), f"wait-{proxy.account_id}")

    def trader_command(self, account_id: str) -> list[str]:
        """The command line of an account's trader process."""
        proxy = self.proxies[account_id]
        return [
            sys.executable,
            "-m",
            "core.trader",
            "--account-id",
            account_id,
            "--config",
            str(self.config_path),
            "--data-dir",
            str(self.data_dir),
            "--socket-path",
            str(proxy.socket_path),
        ]

    async def _wait_process(self, proxy: TraderProxy, proc: asyncio.subprocess.Process) -> None:
        code = await proc.wait()
        if proxy.proc is proc:
            proxy.proc = None
            self._on_exit(proxy, code, proc.pid)

    def _on_exit(self, proxy: TraderProxy, code: int, pid: int | None) -> None:
        aid = proxy.account_id
        proxy.task = None if proxy.task is not None and proxy.task.done() else proxy.task
        refused = proxy.embedded.fatal if proxy.embedded is not None else None
        proxy.embedded = None
        proxy.exited.set()
        if pid is not None and proxy.pid == pid:
            self._set_pid(proxy, None)
        if self._stopping or not proxy.wanted:
            self.aggregator.set_status(aid, TraderStatus.STOPPED, f"stopped (exit {code})")
            log.info("%s: trader stopped (exit %s)", aid, code)
            return
        if code == EXIT_ALREADY_RUNNING:
            # a trader left by an earlier manager still holds the account: it
            # reconnects by itself, and registering cancels this fallback restart
            if proxy.link is not None:
                log.info("%s: the account's running trader (pid %s) was adopted", aid, proxy.pid)
                return
            self.aggregator.set_status(
                aid,
                TraderStatus.CONNECTING,
                "another trader process holds the account; waiting for it to join",
            )
            self._schedule_restart(proxy, ADOPT_WAIT)
            return
        if code == EXIT_VENUE_REFUSED or refused is not None:
            self._venue_refused(proxy, refused or self._last_words(aid).removeprefix("venue refused: "))
            return
        uptime = time.monotonic() - proxy.started_at
        delay, why = proxy.policy.next_delay(time.monotonic(), uptime)
        how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        reason = self._last_words(aid) if code > 0 else ""
        if reason:
            how += f" ({reason})"
        log.error("%s: trader %s after %.1f s; %s", aid, how, uptime, why)
        self.aggregator.set_status(aid, TraderStatus.CRASHED, f"{how}; {why}")
        self.aggregator.count_restart(aid)
        self._schedule_restart(proxy, delay)

    def _venue_refused(self, proxy: TraderProxy, reason: str) -> None:
        """The venue refused the login (or was unreachable): not a crash. Retry on the venue
        back-off (5 s, 10 s, 30 s, 60 s, then every 60 s by default) until it connects."""
        schedule = self.config.manager.venue_backoff
        delay = schedule[min(proxy.venue_refusals, len(schedule) - 1)]
        proxy.venue_refusals += 1
        upcoming = (
            ", ".join(f"{d:g} s" for d in schedule[proxy.venue_refusals :]) or f"every {schedule[-1]:g} s"
        )
        log.error(
            "%s: venue refused: %s; retry %d in %g s", proxy.account_id, reason, proxy.venue_refusals, delay
        )
        self.aggregator.set_status(
            proxy.account_id,
            TraderStatus.DISCONNECTED,
            f"{reason}; retry {proxy.venue_refusals} in {delay:g} s (then {upcoming})",
        )
        self._schedule_restart(proxy, delay)

    def _set_pid(self, proxy: TraderProxy, pid: int | None) -> None:
        # an embedded trader runs in our process: show our pid, but never treat it as the
        # trader's (a kill would kill the manager)
        proxy.pid = None if proxy.account.mode == "embedded" else pid
        self.aggregator.set_pid(proxy.account_id, pid)

    def _last_words(self, account_id: str) -> str:
        """The last line a crashed trader process printed (usually the exception)."""
        path = worker_output_path(self.data_dir, account_id)
        try:
            with open(path, "rb") as f:
                f.seek(max(0, path.stat().st_size - 4096))
                lines = [ln.strip() for ln in f.read().decode(errors="replace").splitlines() if ln.strip()]
        except OSError:
            return ""
        return lines[-1][:200] if lines else ""

    def _schedule_restart(self, proxy: TraderProxy, delay: float) -> None:
        self._cancel_restart(proxy)
        loop = asyncio.get_running_loop()
        proxy.restart_handle = loop.call_later(
            delay, lambda: self._background(self._spawn(proxy), f"spawn-{proxy.account_id}")
        )

    @staticmethod
    def _cancel_restart(proxy: TraderProxy) -> None:
        if proxy.restart_handle is not None:
            proxy.restart_handle.cancel()
            proxy.restart_handle = None

    def _kill(self, proxy: TraderProxy, why: str) -> None:
        log.error("%s: %s; killing pid %s", proxy.account_id, why, proxy.pid)
        self.aggregator.set_status(proxy.account_id, TraderStatus.CRASHED, why)
        if proxy.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                proxy.proc.kill()
        elif proxy.task is not None:
            proxy.task.cancel()
        elif proxy.pid is not None and proxy.pid != os.getpid():
            with contextlib.suppress(ProcessLookupError):
                os.kill(proxy.pid, signal.SIGKILL)

    async def _watch(self) -> None:
        """Heartbeat watchdog: hung traders are killed (and then restarted)."""
        cfg = self.config.manager
        startup_limit = max(15.0, cfg.heartbeat_timeout * 3)
        while True:
            await asyncio.sleep(min(cfg.heartbeat_interval, cfg.heartbeat_timeout / 4))
            now = time.monotonic()
            for proxy in self.proxies.values():
                if not proxy.wanted or proxy.restart_handle is not None or proxy.spawning:
                    continue
                if proxy.link is not None:
                    silent = now - proxy.last_seen
                    if silent > cfg.heartbeat_timeout:
                        self._kill(
                            proxy, f"no heartbeat for {silent:.1f} s (timeout {cfg.heartbeat_timeout:g} s)"
                        )
                elif proxy.running:
                    since = now - max(proxy.started_at, proxy.link_lost_at)
                    if since > startup_limit:
                        self._kill(proxy, f"not connected {since:.0f} s after start")
                elif proxy.proc is None and proxy.task is None:
                    # an adopted trader (not our child) that has gone away
                    self._set_pid(proxy, None)
                    self._on_exit(proxy, -signal.SIGKILL, None)

    async def _stop_proxy(self, proxy: TraderProxy, *, cancel_orders: bool) -> None:
        proxy.wanted = False
        self._cancel_restart(proxy)
        while proxy.spawning:  # a start in flight: let it finish, then stop what it started
            await asyncio.sleep(0.01)
        if not proxy.running:
            if self.aggregator.states[proxy.account_id].status is not TraderStatus.STOPPED:
                self.aggregator.set_status(proxy.account_id, TraderStatus.STOPPED, "stopped")
            return
        if proxy.link is not None:
            await self.request(
                proxy.account_id, "shutdown", ShutdownRequest(cancel_orders=cancel_orders), timeout=2.0
            )
        elif proxy.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                proxy.proc.terminate()
        elif proxy.embedded is not None:
            proxy.embedded.stop(cancel_orders=cancel_orders)
        elif proxy.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proxy.pid, signal.SIGTERM)
        if proxy.proc is not None or proxy.task is not None:
            try:
                await asyncio.wait_for(proxy.exited.wait(), STOP_GRACE)
            except TimeoutError:
                self._kill(proxy, f"did not stop within {STOP_GRACE:g} s")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(proxy.exited.wait(), 2.0)
        elif proxy.pid is not None:  # adopted: not our child, watch its pid
            deadline = time.monotonic() + STOP_GRACE
            while pid_alive(proxy.pid) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if pid_alive(proxy.pid):
                self._kill(proxy, f"did not stop within {STOP_GRACE:g} s")
            self._set_pid(proxy, None)
        if self.aggregator.states[proxy.account_id].status is not TraderStatus.STOPPED:
            self.aggregator.set_status(proxy.account_id, TraderStatus.STOPPED, "stopped")

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

    async def set_trading_state(self, account_id: str, state: TradingState) -> Reply:
        return await self.request(account_id, "state_req", StateRequest(state=state))

    async def strategy_command(self, account_id: str, command: StrategyCommand) -> Reply:
        return await self.request(account_id, "strategy_req", command)

    async def kill_switch(self, account_id: str | None = None) -> dict[str, Reply]:
        """HALT, stop strategies, cancel every working order: one account, or all (None)."""
        targets = [account_id] if account_id is not None else list(self.proxies)
        replies = await asyncio.gather(*(self.request(a, "kill_req", Empty()) for a in targets))
        return dict(zip(targets, replies, strict=True))

    async def status(self, account_id: str) -> Reply:
        reply = await self.request(account_id, "status_req", Empty())
        if reply.ok:
            reply.result = msgspec.convert(reply.result, TraderInfo)
        return reply

    async def history(
        self,
        account_id: str,
        kind: HistoryKind,
        *,
        since: float | None = None,
        limit: int = 1000,
        vt_symbol: str | None = None,
    ) -> Reply:
        """Stored rows of ``kind`` (typed: list[Order], list[Trade], list[Bar], ...)."""
        req = HistoryRequest(kind=kind, since=since, limit=limit, vt_symbol=vt_symbol)
        return typed_history(kind, await self.request(account_id, "history_req", req, timeout=15.0))

    def state(self, account_id: str) -> AccountState:
        return self.aggregator.states[account_id]

    def on_change(self, callback: Callable[..., None]) -> Callable[[], None]:
        return self.aggregator.subscribe(callback)


def _register_message(info: TraderInfo) -> Message:
    return Message(type="register", account_id=info.account_id, data=info)


def _task_code(task: asyncio.Task[None]) -> int:
    if task.cancelled():
        return -signal.SIGKILL
    exc = task.exception()
    if exc is not None:
        log.error("embedded trader failed", exc_info=exc)
        return 1
    return 0
