"""Supervision of traders: start, watch, kill, restart with back-off.

A trader runs as an OS process (mode ``process``) or as an asyncio task in the manager's
process (mode ``embedded``, for debugging); a trader left running by an earlier manager is
adopted when it joins. One that exits is restarted at once, then on a growing back-off
while it keeps failing; a restart storm (``max_restarts`` within ``restart_window``) cools
down first. One that misses heartbeats past the timeout is hung: it is killed, then
restarted. A venue that refuses the login is no crash: it is retried on the venue's own
back-off (5 s, 10 s, 30 s, 60 s, then every 60 s by default) until it connects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from config import AccountConfig, AppConfig, ManagerConfig
from core import zygote as zygote_module
from core.aggregator import DataAggregator
from core.logs import embedded_trader_logger, rotate_worker_output, worker_output_path
from core.models import TraderStatus
from core.protocol import Link, Reply, RequestType, ShutdownRequest
from core.requests import PendingReplies
from core.trader_process import EXIT_ALREADY_RUNNING, EXIT_CONFIG, EXIT_VENUE_REFUSED
from core.zygote import Zygote, ZygoteProcess

if TYPE_CHECKING:
    from core.trader import Trader  # imported to run one: embedded mode only

log = logging.getLogger("qtrader.manager")

STOP_GRACE = 6.0  # a trader asked to shut down gets this long before SIGKILL
ADOPT_WAIT = 5.0  # how long a trader left by an earlier manager gets to join us


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
    proc: asyncio.subprocess.Process | ZygoteProcess | None = None
    task: asyncio.Task[None] | None = None  # embedded mode
    embedded: Trader | None = None
    pid: int | None = None
    wanted: bool = True
    spawning: bool = False
    started_at: float = 0.0
    last_seen: float = 0.0
    link_lost_at: float = 0.0
    restart_handle: asyncio.TimerHandle | None = None
    refusals: int = 0  # consecutive exits that were not crashes (venue refused, account held...)
    #: why the last trader that knocked was not ours (``TradingManager._not_ours``), and its pid
    foreign: tuple[int, str] | None = None
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


class Supervision:
    """Mixed into ``TradingManager``: the life of every account's trader."""

    if TYPE_CHECKING:  # provided by TradingManager
        config: AppConfig
        config_path: Path
        data_dir: Path
        aggregator: DataAggregator
        proxies: dict[str, TraderProxy]
        zygote: Zygote | None
        _stopping: bool

        def _background(self, coro: Any, name: str) -> None: ...
        async def request(
            self, account_id: str, msg_type: RequestType, data: Any, *, timeout: float | None = None
        ) -> Reply: ...

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
            from core.trader import Trader

            trader = Trader(
                proxy.account,
                self.config,
                data_dir=self.data_dir,
                socket_path=proxy.socket_path,
                logger=embedded_trader_logger(self.data_dir, proxy.account_id),
                config_path=self.config_path,
            )
            proxy.embedded = trader
            proxy.task = asyncio.create_task(trader.run(), name=f"trader-{proxy.account_id}")
            proxy.task.add_done_callback(lambda t: self._on_exit(proxy, _task_code(t), None))
            self._set_pid(proxy, os.getpid())
            return
        output = rotate_worker_output(self.data_dir, proxy.account_id)
        command = self.trader_command(proxy.account_id)
        env = self.trader_environment(proxy.account_id)
        with open(output, "ab") as out:  # noqa: ASYNC230 - local file, instant
            proc: asyncio.subprocess.Process | ZygoteProcess | None = None
            zygote = self._usable_zygote()
            if zygote is not None:  # forked, imports done: what follows is the same
                proc = await zygote.spawn(command, env, out.fileno())
            if proc is None:
                proc = await asyncio.create_subprocess_exec(
                    *command,
                    stdin=asyncio.subprocess.DEVNULL,
                    env=env,
                    stdout=out,
                    stderr=asyncio.subprocess.STDOUT,
                    start_new_session=True,  # the terminal's Ctrl+C goes to us, not to the traders
                )
        proxy.proc = proc
        if proxy.link is None:  # else a trader left running joined meanwhile: it is the account's
            self._set_pid(proxy, proc.pid)
        if self._stopping or not proxy.wanted:  # stopped while it was being started
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
        log.info("%s: trader started (pid %d)", proxy.account_id, proc.pid)
        self._background(self._wait_process(proxy, proc), f"wait-{proxy.account_id}")

    def _usable_zygote(self) -> Zygote | None:
        """The zygote to fork this start from; one given up is launched again ``RELAUNCH_AFTER``
        later (until then, and if that fails, traders start the plain way)."""
        zygote = self.zygote
        if zygote is None or zygote.dead is None or zygote.dead == "stopped":
            return zygote
        if time.monotonic() - zygote.died_at < zygote_module.RELAUNCH_AFTER:
            return None
        fresh = zygote_module.launch_zygote(self.config, self.data_dir)
        if fresh is None:
            zygote.died_at = time.monotonic()  # try again later
            return None
        self.zygote = fresh
        return fresh

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

    def trader_environment(self, account_id: str) -> dict[str, str]:
        """Our environment without the variables of other accounts' secrets: a trader holds
        only its own credentials (ARCHITECTURE.md, "Invariants" 6), and loads the file so."""
        withheld = self.config.secret_variables_of_others(account_id)
        return {name: value for name, value in os.environ.items() if name not in withheld}

    async def _wait_process(
        self, proxy: TraderProxy, proc: asyncio.subprocess.Process | ZygoteProcess
    ) -> None:
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
            holder = self._last_words(aid, ours=True) or "another trader process holds the account"
            if proxy.refusals == 0:  # the first time, a joining trader is the usual case: be quick
                self.aggregator.set_status(aid, TraderStatus.CONNECTING, f"{holder}; waiting for it to join")
                proxy.refusals += 1
                self._schedule_restart(proxy, ADOPT_WAIT)
            else:
                self._retry_later(proxy, TraderStatus.DISCONNECTED, f"{holder} and has not joined")
            return
        if code == EXIT_CONFIG:
            # the file changed under a running daemon and no longer loads: not a crash, and no
            # use retrying every few seconds; the file is read again at each try
            words = self._last_words(aid, ours=True) or "the configuration does not load"
            self._retry_later(proxy, TraderStatus.CRASHED, f"configuration refused: {words}")
            return
        if proxy.foreign is not None and pid is not None and proxy.foreign[0] == pid:
            # one we started but could not adopt (its file now names another login): stopped
            self._retry_later(proxy, TraderStatus.CRASHED, f"not adopted: {proxy.foreign[1]}")
            return
        if code == EXIT_VENUE_REFUSED or refused is not None:
            self._retry_later(
                proxy,
                TraderStatus.DISCONNECTED,
                refused or self._last_words(aid).removeprefix("venue refused: "),
            )
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

    def _retry_later(self, proxy: TraderProxy, status: TraderStatus, reason: str) -> None:
        """Not a crash (the venue refused the login or is unreachable, the account is held by
        another process, the configuration no longer loads): retry on the back-off of
        ``manager.venue_backoff`` (5 s, 10 s, 30 s, 60 s, then every 60 s by default), saying
        when, until it connects."""
        schedule = self.config.manager.venue_backoff
        delay = schedule[min(proxy.refusals, len(schedule) - 1)]
        proxy.refusals += 1
        upcoming = ", ".join(f"{d:g} s" for d in schedule[proxy.refusals :]) or f"every {schedule[-1]:g} s"
        log.error("%s: %s; retry %d in %g s", proxy.account_id, reason, proxy.refusals, delay)
        self.aggregator.set_status(
            proxy.account_id, status, f"{reason}; retry {proxy.refusals} in {delay:g} s (then {upcoming})"
        )
        self._schedule_restart(proxy, delay)

    def _set_pid(self, proxy: TraderProxy, pid: int | None) -> None:
        # an embedded trader runs in our process: show our pid, but never treat it as the
        # trader's (a kill would kill the manager)
        proxy.pid = None if proxy.account.mode == "embedded" else pid
        self.aggregator.set_pid(proxy.account_id, pid)

    def _last_words(self, account_id: str, *, ours: bool = False) -> str:
        """The last line a crashed trader process printed (usually the exception); with
        ``ours``, the last line the trader itself printed (``qtrader-trader[ ID]: ...``, given
        without that), so that a message of several lines (a configuration error and its ``^``
        marker) is named by its first."""
        path = worker_output_path(self.data_dir, account_id)
        try:
            with open(path, "rb") as f:
                f.seek(max(0, path.stat().st_size - 4096))
                lines = [ln.strip() for ln in f.read().decode(errors="replace").splitlines() if ln.strip()]
        except OSError:
            return ""
        if ours:
            lines = [ln.partition(": ")[2] for ln in lines if ln.startswith("qtrader-trader")]
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
        period = min(cfg.heartbeat_interval, cfg.heartbeat_timeout / 4)
        last_round = resumed_at = time.monotonic()
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            paused = now - last_round - period
            last_round = now
            if paused > cfg.heartbeat_timeout / 2:
                # this process did not run (SIGSTOP, a suspended machine, swapping): the traders'
                # heartbeats of that time wait unread in our sockets. Their silence was ours:
                # judge them from now on, never kill healthy traders for our own pause.
                log.warning(
                    "the manager was paused for %.1f s: heartbeat clocks restart now, no trader is "
                    "judged by that silence",
                    paused,
                )
                resumed_at = now
                continue
            for proxy in self.proxies.values():
                if not proxy.wanted or proxy.restart_handle is not None or proxy.spawning:
                    continue
                if proxy.link is not None:
                    silent = now - max(proxy.last_seen, resumed_at)
                    if silent > cfg.heartbeat_timeout:
                        self._kill(
                            proxy, f"no heartbeat for {silent:.1f} s (timeout {cfg.heartbeat_timeout:g} s)"
                        )
                elif proxy.running:
                    since = now - max(proxy.started_at, proxy.link_lost_at, resumed_at)
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
        # an adopted trader (not our child); ``proc`` is then the start we tried while it held
        # the account, which may still be on its way up: it must not take the account over
        # when the adopted one lets go of it, so it is stopped too, and both are waited for
        adopted = (
            proxy.pid
            if proxy.pid is not None
            and proxy.task is None
            and proxy.pid != os.getpid()
            and (proxy.proc is None or proxy.proc.pid != proxy.pid)
            else None
        )
        if adopted is not None and proxy.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                proxy.proc.terminate()
        if proxy.link is not None:
            await self.request(
                proxy.account_id, "shutdown", ShutdownRequest(cancel_orders=cancel_orders), timeout=2.0
            )
        elif proxy.proc is not None and adopted is None:
            with contextlib.suppress(ProcessLookupError):
                proxy.proc.terminate()
        elif proxy.embedded is not None:
            proxy.embedded.stop(cancel_orders=cancel_orders)
        elif adopted is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(adopted, signal.SIGTERM)
        if proxy.proc is not None or proxy.task is not None:
            try:
                await asyncio.wait_for(proxy.exited.wait(), STOP_GRACE)
            except TimeoutError:
                self._kill(proxy, f"did not stop within {STOP_GRACE:g} s")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(proxy.exited.wait(), 2.0)
        if adopted is not None:  # not our child: watch its pid
            deadline = time.monotonic() + STOP_GRACE
            while pid_alive(adopted) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if pid_alive(adopted):
                why = f"did not stop within {STOP_GRACE:g} s"
                log.error("%s: %s; killing pid %s", proxy.account_id, why, adopted)
                self.aggregator.set_status(proxy.account_id, TraderStatus.CRASHED, why)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(adopted, signal.SIGKILL)
            self._set_pid(proxy, None)
        if self.aggregator.states[proxy.account_id].status is not TraderStatus.STOPPED:
            self.aggregator.set_status(proxy.account_id, TraderStatus.STOPPED, "stopped")


def _task_code(task: asyncio.Task[None]) -> int:
    if task.cancelled():
        return -signal.SIGKILL
    exc = task.exception()
    if exc is not None:
        log.error("embedded trader failed", exc_info=exc)
        return 1
    return 0
